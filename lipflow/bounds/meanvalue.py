"""Local Lipschitz bounds of whole flows from an enclosure of the flow's Jacobian over a box, with
mean-value boxes that do not wrap (theory ``lem:mean-value-flow``).

For F = F_K o ... o F_1 on a box X_0 with centre c and half-widths r:

* the Jacobian of the composition over the box is enclosed by the ball-matrix product
  ``P_k = J_k(X_{k-1}) ... J_1(X_0)`` (``arb`` balls, python-flint), each factor enclosed over a
  box X_{k-1} containing F_{k-1} o ... o F_1(X_0);
* those boxes come from the mean-value theorem on the composition, not from layer-by-layer
  interval images: X_k = ball(F_k o ... o F_1(c)) + |P_k| r, intersected with the one-layer
  interval image of X_{k-1} (both contain the exact image); so they grow like the flow's
  Jacobian times r, not exponentially with depth (the wrapping effect);
* Lip(F) on X_0 <= sup ||P_K||_2 <= ||mid P_K||_2 + ||rad P_K||_2 (certified SVD bound and the
  geometric mean of the radius's 1- and inf-norms).

The inverse is the same recursion through F_K^-1, ..., F_1^-1 on an output box, each inverse
factor ``J_k^-1`` enclosed over a box of the block's *input* side (couplings: the block-triangular
inverse; linear layers and residual blocks: arb's rigorous inverse of the ball matrix).
Boxes are split into ``splits`` pieces (bisecting the widest side) for tighter enclosures.

Supported blocks: AdditiveCoupling, AffineCoupling (MLP or Constant conditioners), Permutation,
ActNorm, InvertibleLinear, Residual. Needs the ``certified`` extra (python-flint); otherwise
:class:`MeanValueUnavailableError` is raised and callers fall back to ``lem:composition``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as onp
import sympy

from lipflow.blocks.base import Block, Params
from lipflow.blocks.coupling import AdditiveCoupling, AffineCoupling
from lipflow.blocks.flow import Flow
from lipflow.blocks.linear import ActNorm, InvertibleLinear, Permutation
from lipflow.blocks.residual import Residual
from lipflow.bounds.result import LipschitzBound, check_direction
from lipflow.bounds.rigorous import Box, _inflate, gamma, singular_value_bounds, up
from lipflow.errors import LipflowError, UnboundedError

__all__ = [
    "JacobianEnclosure",
    "MeanValueUnavailableError",
    "Preparation",
    "flow_jacobian_enclosure",
    "meanvalue_lipschitz",
    "prepare",
    "supported",
]

SUPPORTED = (AdditiveCoupling, AffineCoupling, Permutation, ActNorm, InvertibleLinear, Residual)
BITS = 128
#: interval refinements of a residual block's inverse image (``lem:mean-value-flow``, item 3)
REFINE_STEPS = 4
L_mv = sympy.Symbol("L_mv", nonnegative=True)


class MeanValueUnavailableError(LipflowError):
    """The mean-value method cannot run here (flint missing, or an unsupported block)."""


def supported(flow: Block) -> bool:
    """Whether every block of ``flow`` has a Jacobian enclosure here (and flint is installed)."""
    from lipflow.precision.arb import flint_available

    blocks = flow.blocks if isinstance(flow, Flow) else (flow,)
    return flint_available() and all(isinstance(b, SUPPORTED) for b in blocks)


# ---- ball helpers -------------------------------------------------------------------------------
def _flint() -> Any:
    from lipflow.precision.arb import flint

    return flint


def _lower(ball: Any) -> float:
    from lipflow.analysis.certify import _lower as lower

    return lower(ball)


def _upper(ball: Any) -> float:
    from lipflow.analysis.certify import _upper as upper

    return upper(ball)


def _hull_balls(lo: onp.ndarray, hi: onp.ndarray) -> onp.ndarray:
    from lipflow.precision.arb import hull

    return onp.asarray([[hull(float(a), float(b)) for a, b in zip(lo, hi, strict=True)]], dtype=object)


def _ends(balls: onp.ndarray) -> tuple[onp.ndarray, onp.ndarray]:
    row = balls[0]
    lo = onp.array([_lower(b) for b in row])
    hi = onp.array([_upper(b) for b in row])
    if not (onp.all(onp.isfinite(lo)) and onp.all(onp.isfinite(hi))):
        raise UnboundedError("a ball enclosure is not finite (overflow); shrink the box")
    return lo, hi


def _to_arb_mat(m: onp.ndarray) -> Any:
    return _flint().arb_mat([[m[i, j] for j in range(m.shape[1])] for i in range(m.shape[0])])


def _from_arb_mat(a: Any) -> onp.ndarray:
    return onp.asarray([[a[i, j] for j in range(a.ncols())] for i in range(a.nrows())], dtype=object)


def _ball_inverse(m: onp.ndarray) -> onp.ndarray:
    """A ball matrix containing A^-1 for every A in the ball matrix ``m`` (arb's rigorous solve)."""
    try:
        return _from_arb_mat(_to_arb_mat(m).inv())
    except (ZeroDivisionError, ValueError):
        raise UnboundedError("a Jacobian enclosure contains a singular matrix; shrink the box") from None


# ---- per-block Jacobian enclosures, column convention J[i, j] = dF_i / dx_j -------------------
def _lipswish_slope(h: onp.ndarray, ctx: Any) -> onp.ndarray:
    """lipswish'(h) over balls: the closed form intersected with the mean-value form
    f'(m) +- K rad, K = beta (1/2 + 1/e) / scale >= |f''| (``lem:mean-value-flow``)."""
    from lipflow.blocks.conditioners import ACTIVATIONS
    from lipflow.precision import elementwise as ew

    flint = _flint()
    closed = onp.asarray(ACTIVATIONS["lipswish"].derivative(ctx, h), dtype=object)
    beta, scale = flint.arb(ew.LIPSWISH_BETA), flint.arb(ew.LIPSWISH_SCALE)
    k = beta * (flint.arb(1) / 2 + flint.arb(-1).exp()) / scale
    out = onp.empty_like(closed)
    for index, ball in onp.ndenumerate(h):
        m = flint.arb(ball.mid())
        at_mid = onp.asarray(ACTIVATIONS["lipswish"].derivative(ctx, onp.asarray([m], dtype=object)))[0]
        spread = k * flint.arb(ball.rad())
        form = at_mid + flint.arb(0, _upper(spread))
        lo, hi = max(_lower(form), _lower(closed[index])), min(_upper(form), _upper(closed[index]))
        out[index] = flint.arb(lo).union(flint.arb(hi)) if lo <= hi else form
    return out


def _residual_slope(name: str, h: onp.ndarray, ctx: Any) -> onp.ndarray:
    from lipflow.analysis.certify import _slope

    return _lipswish_slope(h, ctx) if name == "lipswish" else _slope(name, h, ctx)


def _residual_jacobian(block: Residual, p: Params, x: onp.ndarray, ctx: Any) -> onp.ndarray:
    from lipflow.blocks.conditioners import ACTIVATIONS

    _slope = _residual_slope
    phi = ACTIVATIONS[block.activation]
    weights, biases = p["weights"], p["biases"]
    if len(weights) == 1:
        jac_t = weights[0][None, :, :]
    else:
        h = ctx.dot(x, weights[0]) + biases[0]
        product = weights[0][None, :, :] * _slope(block.activation, h, ctx)[:, None, :]
        for w, b in zip(weights[1:-1], biases[1:-1], strict=True):
            h = ctx.dot(phi.apply(ctx, h), w) + b
            product = onp.matmul(product, w) * _slope(block.activation, h, ctx)[:, None, :]
        jac_t = onp.matmul(product, weights[-1])
    eye = ctx.cast(onp.eye(block.dim))
    return eye[None] + onp.transpose(jac_t, (0, 2, 1))


def _block_jacobian(block: Block, p: Params, x: onp.ndarray, ctx: Any, inverse: bool) -> onp.ndarray:
    """Enclosure (d, d) of J_F (or J_{F^-1} = J_F^-1) over the input-side balls ``x`` (1, d)."""
    from lipflow.analysis.certify import _block_jacobians

    if isinstance(block, InvertibleLinear):
        lower, upper = block._triangles(p, ctx)
        jac = onp.matmul(onp.matmul(ctx.cast(onp.eye(block.dim)[list(block.perm)]), lower), upper)
        return _ball_inverse(jac) if inverse else jac
    if isinstance(block, Residual):
        jac = _residual_jacobian(block, p, x, ctx)[0]
        return _ball_inverse(jac) if inverse else jac
    jac, inv, _ = _block_jacobians(block, p, x, ctx)
    return (inv if inverse else jac)[0]


# ---- images of balls ------------------------------------------------------------------------------
def _residual_inverse_balls(block: Residual, p: Params, p64: Params, y: onp.ndarray, ctx: Any,
                            lip_g: float) -> onp.ndarray:
    """Balls containing F^-1(y) for every y in the balls ``y`` (1, d): from x~ = F^-1(mid y) in
    float64, ||x~ - F^-1(y)|| <= ||x~ + g(x~) - y|| / (1 - c) (``lem:banach``) for every such y."""
    mid = onp.array([[float(b.mid()) for b in y[0]]])
    x_tilde = onp.asarray(block._inverse(p64, mid, _f64()), dtype=onp.float64)
    if not onp.all(onp.isfinite(x_tilde)):
        raise UnboundedError("inverse of the ball centre is not finite")
    xb = ctx.cast(x_tilde)
    residual = xb + block.g(p, xb, ctx) - y
    flint = _flint()
    norm = sum((flint.arb(r.abs_upper()) ** 2 for r in residual[0]), flint.arb(0)).sqrt()
    radius = _upper(norm / (1 - _flint().arb(lip_g)))
    if not math.isfinite(radius):
        raise UnboundedError("residual inverse ball radius is not finite")
    delta = onp.asarray([flint.arb(0, radius) for _ in xb[0]], dtype=object)
    # refine: x* - x~ = (y - x~ - g(x~)) - (g(x*) - g(x~)) in -residual - [J_g](X) delta (mean value)
    for _ in range(REFINE_STEPS):
        region = xb[0] + delta
        jac_g = _residual_jacobian(block, p, region[None, :], ctx)[0] - ctx.cast(onp.eye(block.dim))
        candidate = -residual[0] - onp.dot(jac_g, delta)  # column convention: J_g[i, j] = dg_i/dx_j
        narrowed = []
        for old, new in zip(delta, candidate, strict=True):
            lo, hi = max(_lower(old), _lower(new)), min(_upper(old), _upper(new))
            if not lo <= hi:
                raise LipflowError("internal error: disjoint enclosures of a residual inverse")
            narrowed.append(flint.arb(lo).union(flint.arb(hi)))
        delta = onp.asarray(narrowed, dtype=object)
    return (xb[0] + delta)[None, :]


def _f64() -> Any:
    from lipflow.precision import precision

    return precision("float64")


def _image(block: Block, p: Params, p64: Params, balls: onp.ndarray, ctx: Any, inverse: bool,
           lip_g: float | None) -> onp.ndarray:
    if inverse and isinstance(block, Residual):
        return _residual_inverse_balls(block, p, p64, balls, ctx, lip_g)
    with onp.errstate(all="ignore"):
        return (block._inverse if inverse else block._forward)(p, balls, ctx)


# ---- the recursion --------------------------------------------------------------------------------
def _split(ball_matrix: onp.ndarray) -> tuple[onp.ndarray, onp.ndarray]:
    """(M, R): float64 midpoints and radii with |A - M| <= R entrywise for every A in the balls."""
    lo = onp.vectorize(_lower, otypes=[float])(ball_matrix)
    hi = onp.vectorize(_upper, otypes=[float])(ball_matrix)
    if not (onp.all(onp.isfinite(lo)) and onp.all(onp.isfinite(hi))):
        raise UnboundedError("the Jacobian enclosure is not finite")
    mid = lo + 0.5 * (hi - lo)
    mid = onp.where(onp.isfinite(mid), mid, 0.5 * lo + 0.5 * hi)
    return mid, onp.nextafter(onp.maximum(hi - mid, mid - lo), onp.inf)


def _radius_norm(radius: onp.ndarray) -> float:
    """||E||_2 <= sqrt(||R||_1 ||R||_inf) for every |E| <= R, rounded up."""
    col = up(float(onp.max(radius.sum(axis=0))) * (1 + 2.0**-40))
    row = up(float(onp.max(radius.sum(axis=1))) * (1 + 2.0**-40))
    return up(math.sqrt(up(col * row)))


def _spectral_upper(ball_matrix: onp.ndarray) -> float:
    """sup ||A||_2 over the ball matrix: ||M||_2 (certified SVD) + ||R||_2."""
    mid, radius = _split(ball_matrix)
    return up(up(singular_value_bounds(mid)[1] + _radius_norm(radius)) * (1 + 2.0**-50))


@dataclass(frozen=True)
class JacobianEnclosure:
    """Every Jacobian J of the map over the box satisfies ||J - center||_2 <= error, where
    ``center`` (d, d) is a float64 matrix (the product of the layers' midpoint Jacobians)."""

    center: onp.ndarray
    error: float
    balls: onp.ndarray | None = None

    def norm_upper(self) -> float:
        """sup ||J||_2 <= min(||center||_2 + error, the bound from the entrywise balls), rounded up."""
        value = up(up(singular_value_bounds(self.center)[1] + self.error) * (1 + 2.0**-50))
        if self.balls is None:
            return value
        from lipflow.analysis.certify import spectral_norm_upper  # Collatz-Wielandt on |balls|

        return min(value, _spectral_upper(self.balls), spectral_norm_upper(self.balls))


def _exact(matrix: onp.ndarray, ctx: Any) -> onp.ndarray:
    return ctx.cast(onp.asarray(matrix, dtype=onp.float64))


#: blocks whose Jacobian does not depend on the point (enclosed once per preparation)
CONSTANT_JACOBIAN = (InvertibleLinear, Permutation, ActNorm)


@dataclass(frozen=True)
class Preparation:
    """What the enclosure of a flow needs that does not depend on the box: the blocks, their
    parameters in arb balls and in float64, the residual branches' certified Lip(g), and a memo
    of the box-independent block Jacobians. Reuse it for many boxes of the same flow
    (:func:`prepare`)."""

    blocks: tuple[Block, ...]
    arb_params: tuple[Any, ...]
    f64_params: tuple[Any, ...]
    lips: tuple[float | None, ...]
    bits: int
    constant: dict = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        object.__setattr__(self, "constant", {})


def prepare(flow: Block, params: Any, bits: int = BITS) -> Preparation:
    """The box-independent part of :func:`flow_jacobian_enclosure` for ``flow`` and ``params``."""
    from lipflow.bounds.residual import branch_lipschitz
    from lipflow.precision.arb import arb_precision, require_flint

    if not supported(flow):
        require_flint()
        raise MeanValueUnavailableError("the mean-value flow bound supports AdditiveCoupling, AffineCoupling, "
                                   "Permutation, ActNorm, InvertibleLinear and Residual blocks")
    blocks = list(flow.blocks) if isinstance(flow, Flow) else [flow]
    raw = list(params) if isinstance(flow, Flow) else [params]
    ctx, f64 = arb_precision(bits), _f64()
    with ctx.scope():
        prepared = [blk._prepare(p) for blk, p in zip(blocks, raw, strict=True)]
        arb_params = tuple(ctx.cast(p) for p in prepared)
        f64_params = tuple(f64.cast(p) for p in prepared)
        lips = tuple(branch_lipschitz(blk, p).value if isinstance(blk, Residual) else None
                     for blk, p in zip(blocks, raw, strict=True))
    return Preparation(tuple(blocks), arb_params, f64_params, lips, bits)


def flow_jacobian_enclosure(flow: Block, params: Any, box: Box, *, direction: str = "forward",
                            bits: int = BITS, prepared: Preparation | None = None) -> JacobianEnclosure:
    """J_F(x) for every x in ``box`` (or J_{F^-1}(y) for every y in ``box`` with
    ``direction="inverse"``) within a spectral-norm distance of a centre matrix, by the
    recursion of ``lem:mean-value-flow``. ``prepared``: :func:`prepare` of the same flow, params
    and bits (saves the box-independent work when many boxes are bounded)."""
    from lipflow.precision.arb import arb_precision

    check_direction(direction)
    if prepared is None:
        prepared = prepare(flow, params, bits)
    elif prepared.bits != bits or len(prepared.blocks) != (len(flow.blocks) if isinstance(flow, Flow) else 1):
        raise LipflowError("the preparation is for another flow or precision; pass prepare(flow, params, bits)")
    blocks = list(prepared.blocks)
    arb_params, f64_params, lips = prepared.arb_params, prepared.f64_params, prepared.lips
    inverse = direction == "inverse"
    order = list(reversed(range(len(blocks)))) if inverse else list(range(len(blocks)))
    ctx = arb_precision(bits)
    c, radius = box.mid_rad()
    r_norm = box.radius_norm()
    with ctx.scope():
        if inverse and any(v is not None and not v < 1 for v in lips):
            raise UnboundedError("a residual block has certified Lip(g) >= 1: no inverse bound")
        region = _hull_balls(box.lo, box.hi)  # the domain side of the current block
        point = ctx.cast(c[None, :])
        eye = _exact(onp.eye(box.dim), ctx)
        prefix = eye  # P_k = M_k ... M_1 (exact midpoints, arb)
        d = box.dim
        partial = onp.zeros((0, d, d))  # float64 M_k ... M_{j+1}, j = 1..k (last: I)
        magnitude = onp.zeros((0, d, d))  # >= |M_k| ... |M_{j+1}| entrywise (rounded up)
        terms = onp.zeros(0)  # delta_j * n_{j-1}
        balls = eye  # the entrywise ball-matrix product (a second, independent enclosure)
        error = 0.0  # e_k >= sup ||J_{k..1} - M_{k..1}||_2 over the box
        for position, k in enumerate(order):
            blk, p, p64 = blocks[k], arb_params[k], f64_params[k]
            # inverse: the Jacobian of F_k^-1 is enclosed over F_k^-1(region), the block's input side
            side = _image(blk, p, p64, region, ctx, True, lips[k]) if inverse else region
            if isinstance(blk, CONSTANT_JACOBIAN):
                key = (k, inverse)
                if key not in prepared.constant:
                    prepared.constant[key] = _block_jacobian(blk, p, side, ctx, inverse)
                jac = prepared.constant[key]
            else:
                jac = _block_jacobian(blk, p, side, ctx, inverse)
            balls = onp.matmul(jac, balls)
            mid, rad = _split(jac)
            previous_norm = up(_spectral_upper(prefix) + error)  # n_{k-1} >= sup ||J_{k-1..1}||
            terms = onp.append(terms, up(_radius_norm(rad) * previous_norm))
            prefix = onp.matmul(_exact(mid, ctx), prefix)
            partial = onp.concatenate([mid @ partial, onp.eye(d)[None]])
            magnitude = onp.concatenate([_inflate(onp.abs(mid) @ magnitude, d), onp.eye(d)[None]])
            # telescoping: J_{k..1} - M_{k..1} = sum_j M_{k..j+1} (J_j - M_j) J_{j-1..1}
            error = _telescoped(partial, magnitude, terms)
            if position == len(order) - 1:
                break
            point = _image(blk, p, p64, point, ctx, inverse, lips[k])
            naive_lo, naive_hi = _ends(side if inverse else _image(blk, p, p64, region, ctx, False, lips[k]))
            mv_lo, mv_hi = _meanvalue_box(point, prefix, radius, up(error * r_norm))
            ball_lo, ball_hi = _meanvalue_box(point, balls, radius, 0.0)
            lo = onp.maximum(onp.maximum(naive_lo, mv_lo), ball_lo)
            hi = onp.minimum(onp.minimum(naive_hi, mv_hi), ball_hi)
            if onp.any(lo > hi):
                raise LipflowError("internal error: disjoint enclosures of the same image")
            region = _hull_balls(lo, hi)
        center, center_rad = _split(prefix)
    return JacobianEnclosure(center=center, error=up(error + _radius_norm(center_rad)), balls=balls)


#: squarings in the batched spectral-norm bound: ||Q||_2 <= ||(Q^T Q)^(2^s)||_inf^(1/2^(s+1)),
#: at most d^(1/2^(s+2)) times ||Q||_2 (1.044 for d = 4, s = 3)
SQUARINGS = 3


def _batched_spectral_upper(q: onp.ndarray) -> onp.ndarray:
    """Upper bounds on ||Q_i||_2 for a batch of float64 matrices (rigorous, vectorised).

    rho(G) <= ||G^m||_inf^(1/m) for G = Q^T Q and m = 2^s; G and its squarings are computed in
    float64 with entrywise error bounds E (|fl(AB) - AB| <= gamma_d |A||B|, and
    |(G + D)^2 - G^2| <= |G||D| + |D||G| + |D|^2), after an exact power-of-two scaling.
    """
    _, d, _ = q.shape
    scale = onp.max(onp.abs(q), axis=(1, 2))
    exponent = onp.where(scale > 0, onp.frexp(onp.where(scale > 0, scale, 1.0))[1], 0)
    qs = onp.ldexp(q, -exponent[:, None, None])
    g_d = gamma(d)
    qt = onp.swapaxes(qs, 1, 2)
    g = qt @ qs
    err = _inflate(g_d * (onp.abs(qt) @ onp.abs(qs)), d)
    for _ in range(SQUARINGS):
        a = onp.abs(g)
        new = g @ g
        err = _inflate(g_d * (a @ a) + a @ err + err @ a + err @ err, 3 * d + 3)
        g = new
    row = _inflate(onp.sum(onp.abs(g), axis=2) + onp.sum(err, axis=2), 2 * d)
    bound_g = onp.max(row, axis=1)  # >= ||G^m||_inf >= rho(Q^T Q)^m
    power = 1.0 / 2 ** (SQUARINGS + 1)
    norms = onp.nextafter(onp.power(bound_g, power) * (1 + 2.0**-40), onp.inf)
    norms = onp.ldexp(norms, exponent)
    frob = onp.nextafter(onp.sqrt(_inflate(onp.sum(q * q, axis=(1, 2)), d * d)), onp.inf)
    return onp.minimum(norms, frob)


def _telescoped(partial: onp.ndarray, magnitude: onp.ndarray, terms: onp.ndarray) -> float:
    """sum_j ||M_k ... M_{j+1}||_2 t_j, rounded up, from the float64 products, with
    |fl(product) - product| <= gamma_{m d} |M_k| ... |M_{j+1}| for m factors."""
    count, d, _ = partial.shape
    factors = onp.array([gamma(max(1, (count - 1 - j) * d)) for j in range(count)])
    rounding = _inflate(factors[:, None, None] * magnitude, 1)
    frob_err = onp.nextafter(onp.sqrt(_inflate(onp.sum(rounding * rounding, axis=(1, 2)), d * d)), onp.inf)
    norms = onp.nextafter(_batched_spectral_upper(partial) + frob_err, onp.inf)
    if not (onp.all(onp.isfinite(norms)) and onp.all(onp.isfinite(terms))):
        raise UnboundedError("the Jacobian enclosure's error term is not finite")
    return up(float(onp.sum(_inflate(norms * terms, count))))


def _meanvalue_box(point: onp.ndarray, product: onp.ndarray, radius: onp.ndarray,
                   extra: float) -> tuple[onp.ndarray, onp.ndarray]:
    """Ends of ball(point) + |M| [-r, r] + extra (the mean-value theorem on the composition:
    every Jacobian over the box is M + E with ||E||_2 <= e, and |E v|_i <= e ||r||_2 = extra)."""
    flint = _flint()
    r = [flint.arb(float(v)) for v in radius]
    lo, hi = _ends(point)
    spread = onp.array([_upper(sum((flint.arb(b.abs_upper()) * rj for b, rj in zip(row, r, strict=True)),
                                   flint.arb(0))) for row in product])
    spread = onp.nextafter(spread + extra, onp.inf)
    return onp.nextafter(lo - spread, -onp.inf), onp.nextafter(hi + spread, onp.inf)


#: the default path refines until the bound is within this factor of the estimate at the pieces'
#: centres (``lem:box-subdivision``), or ``splits`` pieces are used
REFINE_TOL = 1.05


def meanvalue_lipschitz(flow: Block, params: Any, *, direction: str = "forward", box: Box,
                        splits: int = 1, bits: int = BITS, tol: float | None = None) -> LipschitzBound:
    """Lip(F) on ``box`` (or Lip(F^-1) on the output box) <= max over pieces of sup ||[J]||_2
    (``lem:mean-value-flow``); rigorous, outward rounded. The box is covered by at most ``splits``
    pieces by branch and bound (``lem:box-subdivision``, :func:`lipflow.bounds.subdivide.subdivide`):
    the piece with the largest bound is bisected until the bound is within ``tol`` (default
    ``REFINE_TOL``) of the estimate ||J||_2 at the pieces' centres. Raises
    :class:`MeanValueUnavailableError` where it cannot run and UnboundedError where an enclosure
    is not finite."""
    from lipflow.bounds.subdivide import subdivide

    check_direction(direction)
    if not isinstance(box, Box):
        raise LipflowError("meanvalue_lipschitz needs a Box (lipflow.bounds.as_box)")
    if not supported(flow):
        flow_jacobian_enclosure(flow, params, box, direction=direction, bits=bits)  # raises the reason
    result = subdivide(flow, params, box=box, direction=direction, tol=REFINE_TOL if tol is None else tol,
                       max_boxes=max(1, int(splits)), bits=bits)
    if not math.isfinite(result.upper):
        raise UnboundedError("the Jacobian enclosure is not finite")
    value = result.upper
    refinement = (f"; estimate max ||J(centre)||_2 = {result.lower:.6g} (estimate), bound/estimate "
                  f"{result.ratio:.4g}" if result.lower > 0 else "")
    return LipschitzBound(
        value=value, kind="upper", direction=direction, label="lem:mean-value-flow", expression=L_mv,
        ingredients={"L_mv": value},
        assumptions=(f"sup of ||J||_2 over a ball-matrix enclosure of the flow's Jacobian on the box "
                     f"({result.boxes} pieces by branch and bound, lem:box-subdivision{refinement}; arb {bits} "
                     "bits, mean-value boxes)",),
        block="flow", box=box.as_tuple(),
    )
