"""Ground truth by the expansion ladder float64 -> double-double -> triple-double.

A cheap rung first, a wider one only where it is needed: every sample is evaluated at float64
and at ``dd``; the disagreement of the two estimates how many bits float64 got right, and since
the flow's conditioning scales every rung's rounding errors alike, ``dd``'s correct bits are
estimated as that agreement plus the difference of the rungs' significands (47 bits). Samples
whose estimate reaches ``target_bits`` keep their ``dd`` value; the others are evaluated at
``td`` and estimated the same way against ``dd`` (plus 28 bits). Samples still below the target
(or non-finite) are reported, never hidden: :attr:`ExpansionReference.met` is False for them
(escalate those rows to mpmath with :func:`lipflow.analysis.reference.reference_forward`).

Every ``estimated_bits`` value is an *estimate* (a difference of two evaluations scaled by the
rungs' nominal precisions), not a bound. The comparisons are vectorised in triple-double, so the
ladder costs little more than its rungs (no mpmath).

>>> import numpy as np, lipflow
>>> from lipflow.analysis.expansion_reference import expansion_reference_forward
>>> from lipflow.precision.accel import kernels
>>> flow = lipflow.Flow([lipflow.AdditiveCoupling(2, t=lipflow.MLP((4,)))])
>>> with kernels("numpy"):  # the same bits as the compiled kernels, no compilation
...     result = expansion_reference_forward(flow, flow.init(0), np.ones((3, 2)), target_bits=90)
>>> result.used, bool(result.met.all())
(('dd', 'dd', 'dd'), True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as onp

from lipflow.blocks.base import Block, Params
from lipflow.errors import LipflowError
from lipflow.precision import Precision, precision
from lipflow.precision.tripledouble import TDArray, as_td

__all__ = [
    "DEFAULT_RUNGS",
    "ExpansionReference",
    "expansion_reference",
    "expansion_reference_forward",
    "expansion_reference_inverse",
]

#: the rungs, ascending in precision (each with its nominal significand bits)
DEFAULT_RUNGS: tuple[str, ...] = ("float64", "dd", "td")


@dataclass(frozen=True)
class ExpansionReference:
    """Reference values of a batch and how they were obtained.

    Attributes:
        value: the values as a triple-double array, shape (n, d) (dd and float64 values exactly).
        used: per sample, the rung whose value was kept ('' where none was evaluated).
        estimated_bits: per sample, the estimated correct bits of the kept value (an estimate:
            agreement with the rung below plus the difference of nominal significands).
        met: per sample, estimated_bits >= target_bits (False for non-finite values).
        target_bits: the requested correct bits.
        rungs_tried: the rungs evaluated, in order.
        evaluated: per rung, how many samples were evaluated at it.
    """

    value: TDArray
    used: tuple[str, ...]
    estimated_bits: onp.ndarray
    met: onp.ndarray
    target_bits: float
    rungs_tried: tuple[str, ...]
    evaluated: dict[str, int]

    def as_float64(self) -> onp.ndarray:
        return precision("td").to_float64(self.value)

    def to_mp(self, dps: int = 60) -> onp.ndarray:
        return precision("td").to_mp(self.value, dps)

    def describe(self) -> str:
        counts: dict[str, int] = {}
        for name in self.used:
            counts[name or "none"] = counts.get(name or "none", 0) + 1
        kept = ", ".join(f"{k}: {v}" for k, v in counts.items())
        finite = onp.isfinite(self.estimated_bits)
        low = float(onp.min(self.estimated_bits[finite])) if finite.any() else float("nan")
        return (f"kept {kept}; estimated correct bits >= {low:.1f} (estimate); "
                f"{int(onp.sum(~self.met))} of {len(self.met)} samples below the {self.target_bits:g}-bit target")


def _row_bits(current: TDArray, previous: TDArray) -> onp.ndarray:
    """-log2(||current - previous|| / ||current||) per row, the difference in triple-double."""
    difference = precision("td").to_float64(current - previous)
    size = precision("td").to_float64(current)
    with onp.errstate(divide="ignore", invalid="ignore", over="ignore"):
        error = onp.sqrt(onp.sum(difference * difference, axis=1))
        scale = onp.sqrt(onp.sum(size * size, axis=1))
        bits = -onp.log2(error / scale)
    bits = onp.where(error == 0, onp.inf, bits)
    return onp.where(onp.isfinite(scale) & onp.isfinite(error) & (scale > 0) | (error == 0), bits, -onp.inf)


def expansion_reference(
    evaluate: Callable[[Precision, onp.ndarray], Any],
    n: int,
    dim: int,
    *,
    target_bits: float = 100.0,
    rungs: Sequence[str] = DEFAULT_RUNGS,
) -> ExpansionReference:
    """Climb ``rungs`` until every sample's estimated correct bits reach ``target_bits``.

    ``evaluate(ctx, rows)`` returns the values of the samples ``rows`` at ``ctx``, shape
    (len(rows), dim).
    """
    contexts = [precision(name) for name in rungs]
    if len(contexts) < 2:
        raise LipflowError("the expansion ladder needs at least two rungs, e.g. ('float64', 'dd', 'td')")
    if not target_bits > 0:
        raise LipflowError(f"target_bits must be positive, got {target_bits}")
    value = TDArray(onp.full((n, dim), onp.nan))
    used = [""] * n
    estimated = onp.full(n, -onp.inf)
    pending = onp.arange(n)
    previous: TDArray | None = None
    tried, evaluated = [], {}
    for index, ctx in enumerate(contexts):
        if pending.size == 0:
            break
        tried.append(ctx.name)
        evaluated[ctx.name] = int(pending.size)
        current = as_td(evaluate(ctx, pending))
        value[pending] = current
        for sample in pending:
            used[sample] = ctx.name
        if previous is None:
            previous = current
            continue
        gap = ctx.mantissa_bits - contexts[index - 1].mantissa_bits
        estimated[pending] = _row_bits(current, previous) + gap
        done = estimated[pending] >= target_bits
        last = index == len(contexts) - 1
        keep = ~done if not last else onp.zeros(pending.size, dtype=bool)
        previous = current[keep]
        pending = pending[keep]
    met = estimated >= target_bits
    return ExpansionReference(value=value, used=tuple(used), estimated_bits=estimated, met=met,
                              target_bits=float(target_bits), rungs_tried=tuple(tried), evaluated=evaluated)


def expansion_reference_forward(model: Block, params: Params, x: Any, *, target_bits: float = 100.0,
                                rungs: Sequence[str] = DEFAULT_RUNGS) -> ExpansionReference:
    """F(x) by the expansion ladder (``x`` stored in float64 or narrower, cast exactly)."""
    from lipflow.analysis.reference import blocks_and_params

    blocks, plist = blocks_and_params(model, params)
    x = onp.asarray(x, dtype=onp.float64)

    def evaluate(ctx: Precision, rows: onp.ndarray) -> Any:
        value = ctx.cast(x[rows])
        for block, p in zip(blocks, plist, strict=True):
            value = block._forward(ctx.cast(block._prepare(p)), value, ctx)
        return value

    return expansion_reference(evaluate, len(x), model.dim, target_bits=target_bits, rungs=rungs)


def expansion_reference_inverse(model: Block, params: Params, z: Any, *, target_bits: float = 100.0,
                                rungs: Sequence[str] = DEFAULT_RUNGS) -> ExpansionReference:
    """F^-1(z) by the expansion ladder (residual blocks by Newton, as in ``reference_inverse``)."""
    from lipflow.analysis.reference import block_inverse_at, blocks_and_params

    blocks, plist = blocks_and_params(model, params)
    z = onp.asarray(z, dtype=onp.float64)

    def evaluate(ctx: Precision, rows: onp.ndarray) -> Any:
        value = ctx.cast(z[rows])
        for block, p in zip(reversed(blocks), reversed(plist), strict=True):
            value = block_inverse_at(block, p, value, ctx)
        return value

    return expansion_reference(evaluate, len(z), model.dim, target_bits=target_bits, rungs=rungs)
