"""Rounding-error bounds of a whole flow under a mixed-precision plan (``lem:rounding-composition``).

:func:`plan_error_bound` chains the per-block bounds of :mod:`lipflow.bounds.rounding` through
the flow: with E_0 = 0 and boxes B_k that contain both the exact and the computed activations,

    E_k <= Lip(f_k on B'_{k-1}) (E_{k-1} + c_k) + eps_k,

c_k the rounding of the cast into block k's format and eps_k block k's own rounding error on
the widened box B'_{k-1}. Unrolled, E_L = sum_k Lip(f_L..f_{k+1}) eps_k + (casts), the
composition lemma. The inverse pass is bounded the same way, and the round trip by
``Lip(F^-1 on B_L) E_L + E^inv`` (``lem:reconstruction``). Lipschitz constants and box images
come from the public :mod:`lipflow.bounds` API, so a tighter box method there tightens these
bounds too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as onp

from lipflow.blocks.flow import Flow
from lipflow.blocks.plan import Plan
from lipflow.bounds.api import as_box, lipschitz
from lipflow.bounds.images import image_box
from lipflow.bounds.rigorous import Box
from lipflow.bounds.rounding import arithmetic_model, block_rounding_error, cast_error, norm_upper, up
from lipflow.bounds.rounding import widen as _widen
from lipflow.errors import LipflowError

__all__ = ["TARGETS", "ChainBound", "PlanBound", "anchored_inverse_bound", "chain_bound", "plan_error_bound"]

TARGETS = ("reconstruction", "forward", "inverse", "logdet")


@dataclass(frozen=True)
class ChainBound:
    """One pass (forward or inverse) of a flow under a list of contexts.

    Attributes:
        direction: "forward" or "inverse".
        total: upper bound on ||computed - exact|| at the end of the pass (l2).
        eps: per block (block order), its own rounding error bound on its input box.
        casts: per block, the bound on the cast into its context.
        lips: per block, the Lipschitz bound of the block on its input box.
        contributions: per block, its share of ``total`` (amplified by the blocks after it).
        boxes: the input box of each block (block order) and, last, the output box of the pass.
    """

    direction: str
    total: float
    eps: tuple[float, ...]
    casts: tuple[float, ...]
    lips: tuple[float, ...]
    contributions: tuple[float, ...]
    boxes: tuple[Box, ...] = field(repr=False)


def chain_bound(flow: Flow, params: Sequence[Any], box: Box, contexts: Sequence[str], direction: str = "forward",
                source: str = "float64", splits: int = 4) -> ChainBound:
    """Bound one pass; ``box`` holds the pass's inputs (stored at ``source``), ``contexts`` are in block order."""
    order = list(range(len(flow))) if direction == "forward" else list(reversed(range(len(flow))))
    current, previous, total = box, source, 0.0
    eps, casts, lips = [0.0] * len(flow), [0.0] * len(flow), [0.0] * len(flow)
    inputs: list[Box | None] = [None] * len(flow)
    for index in order:
        block, p, name = flow.blocks[index], params[index], contexts[index]
        c_vec = cast_error(current, previous, name)
        widened = _widen(current, c_vec)
        try:
            lips[index] = lipschitz(block, p, direction=direction, box=widened, splits=splits).value
            e_vec = block_rounding_error(block, p, widened, name, direction)
            image = image_box(block, p, widened, direction)
        except LipflowError as error:
            raise type(error)(f"block {index} ({type(block).__name__}, {direction}, {name}): {error}") from None
        eps[index], casts[index], inputs[index] = norm_upper(e_vec), norm_upper(c_vec), widened
        total = up(lips[index] * (total + casts[index]) + eps[index], 4)
        current, previous = _widen(image, e_vec), name
    contributions = [0.0] * len(flow)
    suffix = 1.0
    for index in reversed(order):
        contributions[index] = up(suffix * (eps[index] + lips[index] * casts[index]), 4)
        suffix = up(suffix * lips[index], 2)
    return ChainBound(direction=direction, total=total, eps=tuple(eps), casts=tuple(casts), lips=tuple(lips),
                      contributions=tuple(contributions), boxes=(*inputs, current))


def anchored_inverse_bound(flow: Flow, params: Sequence[Any], forward: ChainBound, contexts: Sequence[str],
                           source: str, splits: int = 4) -> ChainBound:
    """The round trip's inverse pass anchored on the forward activations (lem:rounding-composition,
    anchored form): D_L = E_L, D_{k-1} = Lip(f_k^-1 on B_k + D_k) (D_k + c_k) + eps_k, where B_k is
    the forward box of the exact activation x_k; ``total`` = D_0 bounds the whole round trip."""
    n = len(flow)
    total, previous = forward.total, source
    eps, casts, lips = [0.0] * n, [0.0] * n, [0.0] * n
    inputs: list[Box | None] = [None] * n
    region = forward.boxes[n]
    for index in reversed(range(n)):
        block, p, name = flow.blocks[index], params[index], contexts[index]
        anchor = forward.boxes[index + 1]
        region = _widen(anchor, onp.full(flow.dim, total))
        c_vec = cast_error(region, previous, name)
        widened = _widen(region, c_vec)
        try:
            lips[index] = lipschitz(block, p, direction="inverse", box=widened, splits=splits).value
            e_vec = block_rounding_error(block, p, widened, name, "inverse")
        except LipflowError as error:
            raise type(error)(f"block {index} ({type(block).__name__}, inverse, {name}): {error}") from None
        eps[index], casts[index], inputs[index] = norm_upper(e_vec), norm_upper(c_vec), widened
        total = up(lips[index] * (total + casts[index]) + eps[index], 4)
        previous = name
    contributions = [0.0] * n
    suffix = 1.0
    for index in range(n):
        contributions[index] = up(suffix * (eps[index] + lips[index] * casts[index]), 4)
        suffix = up(suffix * lips[index], 2)
    final = _widen(forward.boxes[0], onp.full(flow.dim, total))
    return ChainBound(direction="inverse", total=total, eps=tuple(eps), casts=tuple(casts), lips=tuple(lips),
                      contributions=tuple(contributions), boxes=(*inputs, final))


@dataclass(frozen=True)
class PlanBound:
    """A proven a priori bound on a plan's error over a box (kind "upper").

    Attributes:
        value: the bound for ``target``.
        target: "reconstruction" (||x - F_p^-1(F_p(x))||), "forward" (||F_p(x) - F(x)||) or
            "inverse" (||F_p^-1(z) - F^-1(z)||), all l2 per sample, sup over the box.
        forward, inverse: the pass bounds used (None when the target does not need them).
        lip_inverse: the Lip(F^-1) bound on the forward output box (reconstruction only).
        contributions_forward, contributions_inverse: per block, its share of ``value``.
        models: the arithmetic model of every context used, in words.
    """

    value: float
    target: str
    forward: ChainBound | None
    inverse: ChainBound | None
    lip_inverse: float
    contributions_forward: tuple[float, ...]
    contributions_inverse: tuple[float, ...]
    models: tuple[str, ...]
    kind: str = "upper"
    label: str = "lem:rounding-composition"


def plan_error_bound(flow: Flow, params: Sequence[Any], plan: Plan, box: Any, *,
                     target: str = "reconstruction", splits: int = 4) -> PlanBound:
    """A proven bound on the error of ``plan`` for every input in ``box``
    (``box`` holds inputs x for "reconstruction"/"forward", outputs z for "inverse"; ``splits``
    is passed to :func:`lipflow.bounds.lipschitz` for affine couplings: more is tighter, slower)."""
    if target not in TARGETS[:3]:
        raise LipflowError(f"proven bounds exist for targets {TARGETS[:3]}; got {target!r} "
                           "(log-determinant errors are measured: mode='measured')")
    flow = plan.check(flow)
    region = as_box(box, flow.dim)
    if region is None:
        raise LipflowError("a proven plan bound needs a box: pass box=(low, high)")
    names = sorted(set(plan.forward) | set(plan.inverse))
    models = tuple(arithmetic_model(n).describe() for n in names)
    n = len(flow)
    zero = (0.0,) * n
    if target == "inverse":
        inverse = chain_bound(flow, params, region, plan.inverse, "inverse", splits=splits)
        return PlanBound(inverse.total, target, None, inverse, 0.0, zero, inverse.contributions, models)
    forward = chain_bound(flow, params, region, plan.forward, "forward", splits=splits)
    if target == "forward":
        return PlanBound(forward.total, target, forward, None, 0.0, forward.contributions, zero, models)
    candidates = []
    failures = []
    try:  # Lip(F^-1) on the output box times E_L, plus the inverse pass on that box
        out_box = forward.boxes[-1]
        lip_inverse = lipschitz(flow, params, direction="inverse", box=out_box, splits=splits).value
        inverse = chain_bound(flow, params, out_box, plan.inverse, "inverse", source=plan.forward[-1], splits=splits)
        value = up(lip_inverse * forward.total + inverse.total, 4)
        scaled = tuple(up(lip_inverse * c, 2) for c in forward.contributions)
        candidates.append(PlanBound(value, target, forward, inverse, lip_inverse, scaled, inverse.contributions,
                                    models))
    except LipflowError as error:
        failures.append(error)
    try:  # anchored on the forward activations: no inverse box images needed
        anchored = anchored_inverse_bound(flow, params, forward, plan.inverse, plan.forward[-1], splits=splits)
        product = 1.0
        for lip in anchored.lips:
            product = up(product * lip, 2)
        scaled = tuple(up(product * c, 2) for c in forward.contributions)
        candidates.append(PlanBound(anchored.total, target, forward, anchored, product, scaled,
                                    anchored.contributions, models))
    except LipflowError as error:
        failures.append(error)
    if not candidates:
        raise failures[0]
    return min(candidates, key=lambda b: b.value)
