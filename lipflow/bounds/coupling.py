"""Lipschitz bounds of additive and affine coupling blocks.

Theory: ``lem:triangular-norm``, ``lem:additive-simple``, ``lem:additive-tight``,
``lem:affine-local``, ``thm:coupling-stability``.
"""

from __future__ import annotations

from typing import Any

import numpy as onp
import sympy

from lipflow.blocks.conditioners import Constant
from lipflow.blocks.coupling import AdditiveCoupling, AffineCoupling
from lipflow.blocks.scales import Exp, Identity, Sigmoid
from lipflow.bounds.mlp import mlp_image, mlp_lipschitz
from lipflow.bounds.result import LipschitzBound, check_direction
from lipflow.bounds.rigorous import Box, evaluate_upper, up
from lipflow.bounds.scales import ScaleEnclosure, scale_enclosure
from lipflow.errors import LipflowError, UnboundedError

__all__ = [
    "VARIANTS",
    "additive_lipschitz",
    "affine_lipschitz",
    "coupling_scale_ranges",
    "split_box",
    "triangular_norm",
    "triangular_norm_expr",
]

VARIANTS = ("tight", "simple")

b_, delta_ = sympy.symbols("b delta", nonnegative=True)
L, L_s, L_t, A = sympy.symbols("L L_s L_t A", nonnegative=True)
C, c = sympy.symbols("C c", positive=True)


def triangular_norm_expr(b: sympy.Expr, delta: sympy.Expr, variant: str = "tight") -> sympy.Expr:
    """N(b, delta) = ||[[1, 0], [b, delta]]||_2 (or max(1, delta) + b), lem:triangular-norm."""
    if variant == "simple":
        return sympy.Max(1, delta) + b
    if variant != "tight":
        raise LipflowError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if delta == 1:
        return b / 2 + sympy.sqrt(1 + b**2 / 4)
    inner = ((1 - delta) ** 2 + b**2) * ((1 + delta) ** 2 + b**2)
    return sympy.sqrt((1 + b**2 + delta**2 + sympy.sqrt(inner)) / 2)


def triangular_norm(b: float, delta: float, variant: str = "tight") -> float:
    """Rigorous upper value of N(b, delta) (lem:triangular-norm)."""
    if b < 0 or delta < 0:
        raise LipflowError("triangular_norm needs b >= 0 and delta >= 0")
    expression = triangular_norm_expr(b_, delta_, variant)
    return evaluate_upper(expression, {b_: b, delta_: delta})


def _box_or_none(box: Box | None, dim: int) -> Box | None:
    if box is not None and box.dim != dim:
        raise LipflowError(f"box has {box.dim} coordinates but the block has dim={dim}")
    return box


def additive_lipschitz(block: AdditiveCoupling, params: Any, *, direction: str = "forward",
                       box: Box | None = None, variant: str = "tight") -> LipschitzBound:
    """Global bound N(L, 1) (tight) or 1 + L (simple) of an additive coupling, either direction.

    Theory: ``lem:additive-tight`` / ``lem:additive-simple``; the box is irrelevant (global).
    """
    check_direction(direction)
    _box_or_none(box, block.dim)
    lip_t = mlp_lipschitz(block.t, params["t"])
    if variant == "simple":
        expression, label = 1 + L, "lem:additive-simple"
    else:
        expression, label = triangular_norm_expr(L, sympy.Integer(1), variant), "lem:additive-tight"
    value = evaluate_upper(expression, {L: lip_t.value})
    return LipschitzBound(
        value=value, kind="upper", direction=direction, label=label, expression=expression,
        ingredients={"L": lip_t.value}, block=block.family,
        assumptions=("global on R^d", f"L >= Lip(t) ({lip_t.label})"),
    )


def coupling_scale_ranges(block: AffineCoupling, params: Any, first: Box) -> tuple[Box, Box, list[ScaleEnclosure]]:
    """(S, T, per-coordinate scale enclosures) for conditioning inputs in the box ``first``."""
    d2 = block.n_transformed
    s_box = mlp_image(block.s, params["s"], first, d2)
    t_box = mlp_image(block.t, params["t"], first, d2)
    enclosures = [scale_enclosure(block.scale, float(lo), float(hi)) for lo, hi in zip(s_box.lo, s_box.hi, strict=True)]
    return s_box, t_box, enclosures


def _no_global_bound(block: AffineCoupling, direction: str) -> LipflowError:
    scale = block.scale
    message = (
        f"an affine coupling with a non-constant s has no global Lipschitz bound for its {direction} map "
        "(thm:coupling-stability): the off-diagonal Jacobian block contains x2 * g'(s(x1)) * J_s, which "
        "grows without limit as |x2| grows."
    )
    if direction == "inverse" and (isinstance(scale, Exp) or (isinstance(scale, Sigmoid) and scale.bias == 0)):
        message += (
            f" Moreover the scale {scale.kind} has inf g = 0, so 1/g(s(y1)) is unbounded when s takes "
            "large negative values: no finite inverse bound exists on an unbounded domain."
        )
    return LipflowError(message + " Pass box=(low, high) or a Box containing the points you care about.")


def split_box(box: Box, pieces: int) -> list[Box]:
    """Cover ``box`` by a grid of at most ``pieces`` sub-boxes (an equal split per coordinate)."""
    if pieces < 1:
        raise LipflowError(f"splits must be >= 1, got {pieces}")
    per_axis = max(1, int(pieces ** (1.0 / max(box.dim, 1)) + 1e-9))
    if per_axis == 1 or box.dim == 0:
        return [box]
    edges = [onp.linspace(lo, hi, per_axis + 1) for lo, hi in zip(box.lo, box.hi, strict=True)]
    for edge, lo, hi in zip(edges, box.lo, box.hi, strict=True):  # keep the exact outer endpoints
        edge[0], edge[-1] = lo, hi
    grids = onp.meshgrid(*[onp.arange(per_axis)] * box.dim, indexing="ij")
    result = []
    for index in zip(*(g.ravel() for g in grids), strict=True):
        lo = onp.array([edges[k][i] for k, i in enumerate(index)])
        hi = onp.array([edges[k][i + 1] for k, i in enumerate(index)])
        result.append(Box(lo, hi))
    return result


def _piece_terms(block: AffineCoupling, params: Any, first: Box, second: Box | None,
                 direction: str, constant_s: bool) -> tuple[float, float, float]:
    """(A, c, C) on one piece of the conditioning box (lem:affine-local, table)."""
    _, t_box, enclosures = coupling_scale_ranges(block, params, first)
    c_val = min(e.c for e in enclosures)
    C_val = max(e.C for e in enclosures)
    if not onp.isfinite(C_val):
        raise UnboundedError("the scale g overflows float64 on this box; shrink the box")
    if direction == "inverse" and not c_val > 0:
        raise UnboundedError(
            "the scale g(s) is not bounded away from 0 on this box (it underflows to 0), so the "
            "inverse divides by an unbounded factor 1/g: no finite inverse bound; shrink the box or "
            "use a scale with a positive lower bound (Sigmoid(bias>0), Bounded, SoftClamp)"
        )
    if constant_s or second is None:
        return 0.0, c_val, C_val
    g_box = Box(onp.array([e.c for e in enclosures]), onp.array([e.C for e in enclosures]))
    if direction == "forward":
        inner = second if block.form == "realnvp" else second + t_box
    else:
        inner = (second - t_box) / g_box if block.form == "realnvp" else second / g_box
    slopes = [e.G if direction == "forward" else e.H for e in enclosures]
    a_val = max(up(float(m) * float(g)) for m, g in zip(inner.magnitude(), slopes, strict=True))
    if not onp.isfinite(a_val):
        raise UnboundedError("the interval enclosure of the pre-image overflowed; shrink the box")
    return a_val, c_val, C_val


def affine_lipschitz(block: AffineCoupling, params: Any, *, direction: str = "forward",
                     box: Box | None = None, variant: str = "tight", splits: int = 1) -> LipschitzBound:
    """Local bound of an affine coupling on a box (lem:affine-local), either form and direction.

    The box lies in the domain of the map bounded: input space for ``"forward"``, output space
    for ``"inverse"``. Without a box only constant-s blocks have a (global) bound. ``splits``
    covers the conditioning part of the box by up to that many sub-boxes and takes the worst
    case over them: the interval enclosures of s and t tighten as the pieces shrink.
    """
    check_direction(direction)
    box = _box_or_none(box, block.dim)
    first_idx, second_idx = (list(i) for i in block.indices)
    lip_s = mlp_lipschitz(block.s, params["s"])
    lip_t = mlp_lipschitz(block.t, params["t"])
    constant_s = isinstance(block.s, Constant)
    if box is None and not constant_s:
        raise _no_global_bound(block, direction)
    if isinstance(block.scale, Identity) and not constant_s:
        raise LipflowError("scale='identity' needs a constant s")
    if box is None:  # constant s: the scale range does not depend on x1
        pieces, second = [Box(onp.zeros(len(first_idx)), onp.zeros(len(first_idx)))], None
    else:
        pieces, second = split_box(box[first_idx], 1 if constant_s else splits), box[second_idx]
    terms = [_piece_terms(block, params, piece, second, direction, constant_s) for piece in pieces]
    a_val = max(t[0] for t in terms)
    c_val = min(t[1] for t in terms)
    C_val = max(t[2] for t in terms)

    if direction == "forward":
        weight_t = 1 if block.form == "realnvp" else C
        delta = C
    else:
        weight_t = 1 / c if block.form == "realnvp" else 1
        delta = 1 / c
    b = A * L_s + weight_t * L_t
    expression = triangular_norm_expr(b, delta, variant)
    ingredients = {"A": a_val, "L_s": lip_s.value, "L_t": lip_t.value, "C": C_val, "c": c_val}
    value = evaluate_upper(expression, {A: a_val, L_s: lip_s.value, L_t: lip_t.value, C: C_val, c: c_val})
    space = "input (x)" if direction == "forward" else "output (y)"
    assumptions = [
        f"{block.form} form, scale {type(block.scale).__name__}",
        "global (constant s)" if box is None else f"box in {space} space ({len(pieces)} conditioning pieces)",
        f"{c_val:.6g} <= g(s) <= {C_val:.6g} for all s in the interval image of s",
        f"A = max_i M_i * {'G_i (sup g prime)' if direction == 'forward' else 'H_i (sup g prime / g)'}",
        f"L_s >= Lip(s), L_t >= Lip(t) ({lip_s.label})",
    ]
    return LipschitzBound(
        value=value, kind="upper", direction=direction, label="lem:affine-local", expression=expression,
        ingredients=ingredients, assumptions=tuple(assumptions), block=block.family,
        box=None if box is None else box.as_tuple(),
    )
