"""Certified enclosures of F(box), F^-1(box) and Jacobians of coupling flows, with arb balls.

Everything here is rigorous: blocks are evaluated on python-flint ``arb`` balls
(:mod:`lipflow.precision.arb`), so each result contains every exact value over its input box,
and Jacobians are enclosed block by block from the block-triangular structure of couplings
(theory ``thm:coupling-stability``): J = [[I, 0], [B, D]], J^-1 = [[I, 0], [-D^-1 B, D^-1]],
each factor enclosed over an enclosure of the block's input. Norms are bounded from above by
the Collatz-Wielandt inequality on the entrywise magnitude bound |J| <= A, evaluated in ball
arithmetic: ||J||_2 <= ||A||_2 = sqrt(rho(A^T A)) <= sqrt(max_i (A^T A v)_i / v_i), v > 0.

Supported blocks: AdditiveCoupling, AffineCoupling (MLP or Constant conditioners, any scale),
Permutation/Reverse, ActNorm. Boxes are split into ``subdivisions`` pieces per coordinate to
tighten the enclosures (subdivisions^d sub-boxes).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as onp

from lipflow.blocks.base import Block, Params
from lipflow.blocks.conditioners import MLP, Constant
from lipflow.blocks.coupling import AdditiveCoupling, AffineCoupling
from lipflow.blocks.flow import Flow
from lipflow.blocks.linear import ActNorm, Permutation
from lipflow.blocks.scales import Bounded, Exp, Identity, Sigmoid, SoftClamp
from lipflow.errors import LipflowError
from lipflow.precision.arb import ArbPrecision, arb_precision, flint, hull, require_flint

__all__ = [
    "Certificate",
    "ReconstructionCheck",
    "certify_invertible",
    "check_reconstruction",
    "enclose",
    "enclose_jacobians",
]

SUPPORTED = (AdditiveCoupling, AffineCoupling, Permutation, ActNorm)
_MAX_SUBBOXES = 4096


# ---- small rigorous helpers -------------------------------------------------------------------


def _upper(ball: Any) -> float:
    """A float >= every point of ``ball`` (inf for an unbounded or NaN ball)."""
    if not ball.is_finite():
        return math.inf
    exact = ball.upper()
    value = float(exact)
    return float(onp.nextafter(value, onp.inf)) if flint.arb(value) < exact else value


def _lower(ball: Any) -> float:
    """A float <= every point of ``ball`` (-inf for an unbounded or NaN ball)."""
    if not ball.is_finite():
        return -math.inf
    exact = ball.lower()
    value = float(exact)
    return float(onp.nextafter(value, -onp.inf)) if flint.arb(value) > exact else value


def _vector_norm_upper(balls: onp.ndarray) -> float:
    return _upper(sum((b.abs_upper() ** 2 for b in balls), flint.arb(0)).sqrt())


def spectral_norm_upper(matrix: onp.ndarray) -> float:
    """An upper bound on sup ||M||_2 over the interval matrix ``matrix`` (object array of balls)."""
    magnitude = onp.frompyfunc(lambda b: b.abs_upper(), 1, 1)(matrix)
    a = onp.asarray(magnitude, dtype=object)
    gram = a.T.dot(a)  # rigorous enclosure of A^T A (entries >= 0)
    mids = onp.asarray(onp.frompyfunc(lambda b: float(b.mid()), 1, 1)(gram), dtype=onp.float64)
    v = onp.ones(mids.shape[0])
    for _ in range(60):  # float power iteration only picks the test vector
        w = mids @ v
        norm = onp.max(w)
        if not (norm > 0 and onp.isfinite(norm)):
            break
        v = onp.maximum(w / norm, 1e-12)
    ratio = max(_upper(value / flint.arb(float(vi))) for value, vi in zip(gram.dot(v), v, strict=True))
    frobenius = _upper(sum((x * x for x in a.ravel()), flint.arb(0)).sqrt())
    return min(math.sqrt(ratio) * (1 + 2.0**-50), frobenius)


# ---- box handling -------------------------------------------------------------------------------


def _box(box: Any, dim: int) -> tuple[onp.ndarray, onp.ndarray]:
    require_flint()
    try:
        low, high = (onp.asarray(b, dtype=onp.float64) for b in box)
    except (TypeError, ValueError):
        raise LipflowError("box must be a pair (low, high) of length-d arrays, e.g. ([-1, -1], [1, 1])") from None
    low, high = onp.broadcast_to(low, (dim,)), onp.broadcast_to(high, (dim,))
    if not (onp.all(onp.isfinite(low)) and onp.all(onp.isfinite(high)) and onp.all(low <= high)):
        raise LipflowError(f"box needs finite low <= high in every coordinate, got low={low}, high={high}")
    return low, high


def _subboxes(low: onp.ndarray, high: onp.ndarray, pieces: int) -> onp.ndarray:
    """(pieces^d, d) object array of balls covering the box (each ball the hull of a piece)."""
    if pieces < 1 or pieces ** len(low) > _MAX_SUBBOXES:
        raise LipflowError(
            f"subdivisions={pieces} gives {pieces}^{len(low)} sub-boxes; keep it >= 1 and at most "
            f"{_MAX_SUBBOXES} sub-boxes in all"
        )
    edges = [onp.linspace(lo, hi, pieces + 1) for lo, hi in zip(low, high, strict=True)]
    rows = []
    for index in itertools.product(range(pieces), repeat=len(low)):
        rows.append([hull(edges[j][i], edges[j][i + 1]) for j, i in enumerate(index)])
    return onp.asarray(rows, dtype=object)


def _blocks(flow: Block, params: Params) -> tuple[list[Block], list[Params]]:
    blocks = list(flow.blocks) if isinstance(flow, Flow) else [flow]
    prepared = flow._prepare(params)
    block_params = list(prepared) if isinstance(flow, Flow) else [prepared]
    for block in blocks:
        if not isinstance(block, SUPPORTED):
            raise LipflowError(
                f"certified enclosures handle AdditiveCoupling, AffineCoupling, Permutation and ActNorm "
                f"blocks, got {type(block).__name__}"
            )
    return blocks, block_params


# ---- enclosures of values ---------------------------------------------------------------------


@dataclass(frozen=True)
class Enclosure:
    """low <= every coordinate of the image <= high (outward-rounded floats), and the balls."""

    low: onp.ndarray
    high: onp.ndarray
    balls: onp.ndarray = field(repr=False)


def _hull_rows(balls: onp.ndarray) -> Enclosure:
    low = onp.array([min(_lower(b) for b in column) for column in balls.T])
    high = onp.array([max(_upper(b) for b in column) for column in balls.T])
    return Enclosure(low, high, balls)


def enclose(
    flow: Block, params: Params, box: Any, *, direction: str = "forward", subdivisions: int = 1, bits: int = 128
) -> Enclosure:
    """A rigorous enclosure of F(box) (or F^-1(box) with ``direction="inverse"``)."""
    if direction not in ("forward", "inverse"):
        raise LipflowError(f"direction must be 'forward' or 'inverse', got {direction!r}")
    low, high = _box(box, flow.dim)
    ctx = arb_precision(bits)
    with ctx.scope():
        balls = _subboxes(low, high, subdivisions)
        prepared = ctx.cast(flow._prepare(params))
        apply = flow._forward if direction == "forward" else flow._inverse
        return _hull_rows(apply(prepared, balls, ctx))


# ---- enclosures of Jacobians --------------------------------------------------------------------


def _even_decreasing(fun):
    """Enclose an even function decreasing in |x| (sech^2, sigmoid') from |x|'s range."""

    def on_ball(ball):
        near = flint.arb(0) if ball.contains(0) else flint.arb(min(abs(ball.lower()), abs(ball.upper())))
        far = flint.arb(max(abs(ball.lower()), abs(ball.upper())))
        return fun(far).union(fun(near))

    return on_ball


def _sigmoid_slope(v):
    s = 1 / (1 + (-v).exp())
    return s * (1 - s)


def _step_from_ends(ball, positive, other):
    return (positive(ball.lower()) if ball.lower() > 0 else other(ball.lower())).union(
        positive(ball.upper()) if ball.upper() > 0 else other(ball.upper())
    )


_ACTIVATION_SLOPES = {
    "relu": lambda b: _step_from_ends(b, lambda v: flint.arb(1), lambda v: flint.arb(0)),
    "elu": lambda b: _step_from_ends(b, lambda v: flint.arb(1), lambda v: flint.arb(v).exp()),
    "tanh": _even_decreasing(lambda v: 1 - v.tanh() ** 2),
    "sigmoid": _even_decreasing(_sigmoid_slope),
    "softplus": lambda b: (1 / (1 + (-flint.arb(b.lower())).exp())).union(1 / (1 + (-flint.arb(b.upper())).exp())),
    "identity": lambda b: flint.arb(1),
}


def _slope(name: str, h: onp.ndarray, ctx: ArbPrecision) -> onp.ndarray:
    if name in _ACTIVATION_SLOPES:
        fun = _ACTIVATION_SLOPES[name]
    else:  # swish / lipswish: the closed-form derivative in ball arithmetic (rigorous, looser)
        from lipflow.blocks.conditioners import ACTIVATIONS

        return onp.asarray(ACTIVATIONS[name].derivative(ctx, h), dtype=object)
    return onp.asarray(onp.frompyfunc(fun, 1, 1)(h), dtype=object)


def _conditioner_jacobian(cond: MLP | Constant, params: Any, x1: onp.ndarray, out_dim: int, ctx) -> onp.ndarray:
    """(n, out, in) enclosure of d c(x1) / d x1 over the balls x1."""
    n, d_in = x1.shape
    if isinstance(cond, Constant):
        return onp.full((n, out_dim, d_in), flint.arb(0), dtype=object)
    from lipflow.blocks.conditioners import ACTIVATIONS

    phi = ACTIVATIONS[cond.activation]
    h, product = x1, None
    last = len(params["weights"]) - 1
    for layer, (w, b) in enumerate(zip(params["weights"], params["biases"], strict=True)):
        pre = ctx.dot(h, w) + b
        product = onp.broadcast_to(w, (n, *w.shape)) if product is None else onp.matmul(product, w)
        if layer < last:
            product = product * _slope(cond.activation, pre, ctx)[:, None, :]
            h = phi.apply(ctx, pre)
    return onp.transpose(product, (0, 2, 1))


def _scale_slope(scale, s: onp.ndarray, ctx) -> onp.ndarray:
    sigmoid_slope = onp.frompyfunc(_even_decreasing(_sigmoid_slope), 1, 1)
    if isinstance(scale, Sigmoid):
        return onp.asarray(sigmoid_slope(s + ctx.const(scale.shift)), dtype=object)
    if isinstance(scale, Bounded):
        slope = onp.asarray(sigmoid_slope(s + ctx.const(scale.shift)), dtype=object)
        return slope * ctx.const(scale.high - scale.low)
    if isinstance(scale, Exp):
        return ctx.exp(s)
    if isinstance(scale, SoftClamp):
        c = ctx.const(scale.clamp)
        return scale.g(s, ctx) * (2 / ctx.pi()) / (1 + (s / c) * (s / c))
    if isinstance(scale, Identity):
        return onp.full(s.shape, flint.arb(1), dtype=object)
    raise LipflowError(f"no certified derivative for scale {type(scale).__name__}")


def _block_jacobians(block: Block, p: Params, x: onp.ndarray, ctx) -> tuple[onp.ndarray, onp.ndarray, Any]:
    """(J, J^-1, min over the balls of the scale g or None), each (n, d, d), over balls x."""
    n, d = x.shape
    zero, one = flint.arb(0), flint.arb(1)
    if isinstance(block, (Permutation, ActNorm)):
        eye = onp.eye(d)
        if isinstance(block, Permutation):
            matrix = eye[list(block.perm)]
            jac = onp.asarray(onp.frompyfunc(flint.arb, 1, 1)(matrix), dtype=object)
            inv = onp.asarray(onp.frompyfunc(flint.arb, 1, 1)(matrix.T), dtype=object)
        else:
            diag = ctx.exp(p["log_scale"])
            jac = onp.full((d, d), zero, dtype=object)
            inv = onp.full((d, d), zero, dtype=object)
            for i in range(d):
                jac[i, i], inv[i, i] = diag[i], 1 / diag[i]
        return onp.broadcast_to(jac, (n, d, d)), onp.broadcast_to(inv, (n, d, d)), None
    first, second = (list(i) for i in block.indices)
    x1, x2 = x[:, first], x[:, second]
    j_t = _conditioner_jacobian(block.t, p["t"], x1, block.n_transformed, ctx)
    if isinstance(block, AdditiveCoupling):
        b_matrix, diag, min_g = j_t, onp.full((n, len(second)), one, dtype=object), None
    else:
        s = block.s.apply(p["s"], x1, ctx, block.n_transformed)
        g = block.scale.g(s, ctx)
        slope = _scale_slope(block.scale, s, ctx)
        j_s = _conditioner_jacobian(block.s, p["s"], x1, block.n_transformed, ctx)
        if block.form == "realnvp":
            b_matrix = (x2 * slope)[:, :, None] * j_s + j_t
        else:
            t = block.t.apply(p["t"], x1, ctx, block.n_transformed)
            b_matrix = ((x2 + t) * slope)[:, :, None] * j_s + g[:, :, None] * j_t
        diag, min_g = g, min(_lower(v) for v in g.ravel())
    jac = onp.full((n, d, d), zero, dtype=object)
    inv = onp.full((n, d, d), zero, dtype=object)
    for i in first:
        jac[:, i, i] = one
        inv[:, i, i] = one
    for row, i in enumerate(second):
        jac[:, i, first] = b_matrix[:, row, :]
        jac[:, i, i] = diag[:, row]
        inv[:, i, first] = -b_matrix[:, row, :] / diag[:, row][:, None]
        inv[:, i, i] = 1 / diag[:, row]
    return jac, inv, min_g


def enclose_jacobians(
    flow: Block, params: Params, balls: onp.ndarray, ctx: ArbPrecision
) -> tuple[onp.ndarray, onp.ndarray, list]:
    """(J_F, J_F^-1, per-block lower bounds of g) enclosed over each row of ``balls`` (n, d)."""
    blocks, block_params = _blocks(flow, params)
    n, d = balls.shape
    eye = onp.asarray(onp.frompyfunc(flint.arb, 1, 1)(onp.eye(d)), dtype=object)
    forward = onp.broadcast_to(eye, (n, d, d))
    inverse = onp.broadcast_to(eye, (n, d, d))
    scales = []
    x = balls
    for block, p in zip(blocks, block_params, strict=True):
        p = ctx.cast(p)
        jac, inv, min_g = _block_jacobians(block, p, x, ctx)
        forward = onp.matmul(jac, forward)
        inverse = onp.matmul(inverse, inv)
        scales.append(min_g)
        x = block._forward(p, x, ctx)
    return forward, inverse, scales


# ---- the certificate ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    """What :func:`certify_invertible` proved about F on ``box``.

    Attributes:
        invertible: every coupling scale g is certified > 0 on the box (so each block, and F,
            is a bijection of R^d onto its image with a differentiable inverse there).
        lipschitz_forward: upper bound on sup_{x in box} ||J_F(x)||_2 = Lip(F) on the box.
        lipschitz_inverse: upper bound on sup_{x in box} ||J_F(x)^-1||_2: ||F^-1(z) - F^-1(z')||
            <= lipschitz_inverse ||z - z'|| whenever the segment [z, z'] lies in F(box).
        image: rigorous enclosure of F(box).
        min_scale: per block, a lower bound of g over the box (None for non-affine blocks).
        subboxes, bits: the subdivision and working precision used.
    """

    invertible: bool
    lipschitz_forward: float
    lipschitz_inverse: float
    image: Enclosure
    min_scale: list
    subboxes: int
    bits: int

    def __str__(self) -> str:
        verdict = "invertible" if self.invertible else "NOT certified invertible"
        return (
            f"F is {verdict} on the box; Lip(F) <= {self.lipschitz_forward:.6g} on the box and "
            f"Lip(F^-1) <= {self.lipschitz_inverse:.6g} along segments in F(box) "
            f"(arb balls, {self.bits} bits, {self.subboxes} sub-boxes)"
        )


def certify_invertible(
    flow: Block, params: Params, box: Any, *, subdivisions: int = 4, bits: int = 128
) -> Certificate:
    """Certify invertibility of ``flow`` on ``box`` = (low, high) and bound Lip(F), Lip(F^-1)."""
    low, high = _box(box, flow.dim)
    ctx = arb_precision(bits)
    with ctx.scope():
        balls = _subboxes(low, high, subdivisions)
        forward, inverse, scales = enclose_jacobians(flow, params, balls, ctx)
        lip_forward = max(spectral_norm_upper(m) for m in forward)
        lip_inverse = max(spectral_norm_upper(m) for m in inverse)
        image = _hull_rows(flow._forward(ctx.cast(flow._prepare(params)), balls, ctx))
    min_scale = [None if s is None else s for s in scales]
    invertible = all(s is None or s > 0 for s in min_scale)
    return Certificate(invertible, lip_forward, lip_inverse, image, min_scale, len(balls), bits)


@dataclass(frozen=True)
class ReconstructionCheck:
    """The paper's reconstruction bound ||x - x~|| <= Lip(F^-1) ||delta|| + ||delta2|| (Section 2)
    for one point, every quantity an upper bound from ball arithmetic except ``error``, which is
    enclosed and reported by its lower end (so ``holds`` is a proof, not an estimate)."""

    error_lower: float
    delta_upper: float
    delta2_upper: float
    lipschitz_inverse: float
    bound: float

    @property
    def holds(self) -> bool:
        return self.error_lower <= self.bound


def check_reconstruction(
    flow: Block, params: Params, x: onp.ndarray, *, ctx: str = "float32", bits: int = 128
) -> ReconstructionCheck:
    """Run F then F^-1 at precision ``ctx`` on one point ``x`` (shape (d,)) and check the
    reconstruction bound with certified delta = z~ - F(x), delta2 = x~ - F^-1(z~) and
    Lip(F^-1) over an enclosure of F^-1 of the segment [F(x), z~]."""
    from lipflow.precision import precision

    require_flint()
    work = precision(ctx)
    x = onp.asarray(x, dtype=onp.float64).reshape(1, -1)
    z = work.to_float64(flow.forward(params, x, ctx=work))
    x_rec = work.to_float64(flow.inverse(params, z, ctx=work))
    ball_ctx = arb_precision(bits)
    with ball_ctx.scope():
        prepared = ball_ctx.cast(flow._prepare(params))
        exact_z = flow._forward(prepared, ball_ctx.cast(x), ball_ctx)[0]
        exact_back = flow._inverse(prepared, ball_ctx.cast(z), ball_ctx)[0]
        delta = _vector_norm_upper(ball_ctx.cast(z[0]) - exact_z)
        delta2 = _vector_norm_upper(ball_ctx.cast(x_rec[0]) - exact_back)
        pairs = zip(ball_ctx.cast(z[0]), exact_z, strict=True)
        segment = onp.asarray([[zi.union(ei) for zi, ei in pairs]], dtype=object)
        preimage = flow._inverse(prepared, segment, ball_ctx)
        _, inverse, _ = enclose_jacobians(flow, params, preimage, ball_ctx)
        lip = spectral_norm_upper(inverse[0])
        error = sum(((ball_ctx.cast(x[0]) - ball_ctx.cast(x_rec[0])) ** 2).tolist(), flint.arb(0)).sqrt()
        bound = flint.arb(lip) * flint.arb(delta) + flint.arb(delta2)
        return ReconstructionCheck(_lower(error), delta, delta2, lip, _upper(bound))
