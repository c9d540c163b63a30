"""Ground truth: evaluate a map at a reference precision chosen from the working one.

The reference must be accurate enough that its own error is negligible against the error it
measures. The rule (issue 4): a reference has more than twice the working significand plus a
margin, ``bits >= 2 p + MARGIN_BITS``, and it is *stable*: evaluated on consecutive rungs of a
ladder of increasing precision (Herbie-style), two rungs agree per sample to at least
``p + GUARD_BITS`` bits, and the higher rung is the reference. Its error estimate is the
disagreement of the two rungs.

The ladder is a list of :class:`ReferenceCandidate` tried in order of accuracy: hardware
``float64`` and ``longdouble`` first (cheap, enough for float16/bfloat16/float32 work), then
mpmath contexts of growing precision. A faster context (e.g. a vectorised double-double) plugs
in as one more candidate with its accuracy in bits.

Reference values are returned as object arrays of mpmath numbers in one *carrier* context, so
differences with working values (``delta = z_delta - z``) are formed without new rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as onp
from autograd.tracer import getval

from lipflow.blocks.base import Block, Params
from lipflow.blocks.flow import Flow
from lipflow.blocks.residual import Residual
from lipflow.errors import LipflowError
from lipflow.precision import Precision, precision, resolve_precision
from lipflow.precision.mp import MPPrecision, mp_precision

__all__ = [
    "GUARD_BITS",
    "HARDWARE_CANDIDATES",
    "MARGIN_BITS",
    "MAX_BITS",
    "ReferenceCandidate",
    "ReferenceResult",
    "block_inverse_at",
    "blocks_and_params",
    "evaluate_reference",
    "expansion_candidates",
    "mp_candidate",
    "reference_forward",
    "reference_inverse",
    "reference_ladder",
    "required_bits",
    "to_mp",
]

#: the ">2p + margin" rule: a reference has at least 2 p + MARGIN_BITS significand bits
MARGIN_BITS = 8
#: two rungs are "stable" when they agree to p + GUARD_BITS bits (reference error <= 2^-12 ulp)
GUARD_BITS = 12
#: give up (and report the samples as unstable) beyond this many bits
MAX_BITS = 2048


@dataclass(frozen=True)
class ReferenceCandidate:
    """One rung of the reference ladder.

    Attributes:
        context: the precision context the map is evaluated at.
        accuracy_bits: bits of accuracy one operation of the context delivers (its significand).
        numpy_native: whether plain NumPy code (a user's own function) runs at it, i.e. it is a
            NumPy float dtype rather than an object array.
    """

    context: Precision
    accuracy_bits: int
    numpy_native: bool

    @property
    def name(self) -> str:
        return self.context.name


def _hardware(name: str) -> ReferenceCandidate:
    ctx = precision(name)
    return ReferenceCandidate(ctx, ctx.mantissa_bits, True)


#: cheap hardware rungs tried before mpmath (ascending accuracy)
HARDWARE_CANDIDATES: tuple[ReferenceCandidate, ...] = (_hardware("float64"), _hardware("longdouble"))


def expansion_candidates() -> tuple[ReferenceCandidate, ...]:
    """Double-double and triple-double rungs (vectorised, compiled with numba when installed):
    pass ``candidates=HARDWARE_CANDIDATES + expansion_candidates()`` and float64 work is
    referenced at ``td`` (128 bits >= 2 p + margin), checked against ``dd``, before any mpmath."""
    return tuple(ReferenceCandidate(precision(name), precision(name).mantissa_bits, False) for name in ("dd", "td"))


def _expansion(x: Any) -> tuple[onp.ndarray, ...] | None:
    """The float64 parts of a double-double or triple-double array, else None."""
    parts = getattr(x, "parts", None)
    if parts is not None:
        return parts
    if hasattr(x, "hi") and hasattr(x, "lo"):
        return (x.hi, x.lo)
    return None


def _compare_context(ctx: Precision) -> MPPrecision:
    """The mpmath context in which a rung's values are compared (96 bits for hardware floats;
    for dd and td wide enough to hold their parts' sum)."""
    if isinstance(ctx, MPPrecision):
        return ctx
    if ctx.name in ("dd", "td"):
        return mp_candidate(ctx.mantissa_bits + 96).context
    return mp_candidate(96).context


def mp_candidate(bits: int) -> ReferenceCandidate:
    """An mpmath rung with at least ``bits`` significand bits."""
    dps = max(1, math.ceil(bits * math.log10(2)) + 1)
    ctx = mp_precision(dps)
    return ReferenceCandidate(ctx, ctx.mantissa_bits, False)


def required_bits(working: Precision | str, *, margin_bits: int = MARGIN_BITS) -> int:
    """The smallest significand a reference for ``working`` may have: 2 p + margin.

    >>> required_bits("float32")
    56
    """
    return 2 * resolve_precision(working, None).mantissa_bits + margin_bits


def reference_ladder(
    working: Precision | str,
    *,
    candidates: Sequence[ReferenceCandidate] = HARDWARE_CANDIDATES,
    numpy_only: bool = False,
    margin_bits: int = MARGIN_BITS,
    guard_bits: int = GUARD_BITS,
    max_bits: int = MAX_BITS,
) -> list[ReferenceCandidate]:
    """The rungs to try for ``working``, ascending in accuracy.

    The first rung is the last one *below* the required bits that can still serve as a
    stability check (>= p + guard bits), so that e.g. float32 work is checked as
    float64-versus-longdouble; then every candidate above, then (unless ``numpy_only``) mpmath
    rungs growing by half each step up to ``max_bits``.
    """
    working = resolve_precision(working, None)
    need = required_bits(working, margin_bits=margin_bits)
    check_bits = working.mantissa_bits + guard_bits
    usable, seen_bits = [], set()
    for c in sorted(candidates, key=lambda c: c.accuracy_bits):
        # a rung as accurate as one already on the ladder (longdouble is float64 on some platforms)
        # would "check" a value against itself
        if c.accuracy_bits >= check_bits and (c.numpy_native or not numpy_only) and c.accuracy_bits not in seen_bits:
            usable.append(c)
            seen_bits.add(c.accuracy_bits)
    below = [c for c in usable if c.accuracy_bits < need]
    ladder = below[-1:] + [c for c in usable if c.accuracy_bits >= need]
    if not numpy_only:
        bits = max(need, (ladder[-1].accuracy_bits + 32) if ladder else need, 96)
        bits = 32 * math.ceil(bits / 32)
        while bits <= max_bits:
            ladder.append(mp_candidate(bits))
            bits = 32 * math.ceil(1.5 * bits / 32)
    if len(ladder) < 2 or ladder[-1].accuracy_bits < need:
        raise LipflowError(
            f"no reference precision for {working.name} work: a reference needs >= {need} bits and a "
            f"second, wider rung to check it, but only {[c.name for c in ladder]} are available; "
            "for your own functions accept a ctx keyword (so lipflow can run them in mpmath) or "
            "work in a narrower precision"
        )
    return ladder


def to_mp(x: Any, carrier: MPPrecision) -> onp.ndarray:
    """``x`` (any lipflow precision) as an object array of ``carrier`` numbers, exactly when
    ``carrier`` is at least as wide (longdouble goes through an exact float64 head/tail split)."""
    parts = _expansion(x)
    if parts is not None:  # exact: every part widened, then summed at the carrier's precision
        total = carrier.cast(parts[0])
        for part in parts[1:]:
            total = total + carrier.cast(part)
        return total
    x = onp.asarray(getval(x))
    if x.dtype == object:
        return carrier.cast(x)
    if x.dtype == onp.longdouble:
        head = x.astype(onp.float64)
        with onp.errstate(invalid="ignore"):
            tail = onp.where(onp.isfinite(head), (x - head.astype(onp.longdouble)).astype(onp.float64), 0.0)
        return carrier.cast(head) + carrier.cast(tail)
    return carrier.cast(x.astype(onp.float64))


@dataclass(frozen=True)
class ReferenceResult:
    """A reference evaluation of a batch.

    Attributes:
        value: object array of mpmath numbers in the ``carrier`` context, shape (n, d).
        carrier: the mpmath context of ``value``.
        used: per sample, the name of the rung whose value was kept.
        checked_against: per sample, the lower rung it agreed with ('' when unstable).
        agreement_bits: per sample, -log2(||higher - lower|| / ||higher||) of the last two rungs
            (inf when they agree exactly).
        error_estimate: per sample, ||higher - lower||_2 (float64): the reference's error estimate.
        stable: per sample, agreement_bits >= p + guard_bits.
        required_bits: 2 p + margin for the working precision.
    """

    value: onp.ndarray
    carrier: MPPrecision
    used: tuple[str, ...]
    checked_against: tuple[str, ...]
    agreement_bits: onp.ndarray
    error_estimate: onp.ndarray
    stable: onp.ndarray
    required_bits: int
    rungs_tried: tuple[str, ...] = field(default=())

    @property
    def all_stable(self) -> bool:
        return bool(onp.all(self.stable))

    def as_float64(self) -> onp.ndarray:
        return self.carrier.to_float64(self.value)

    def describe(self) -> str:
        """One line: which rungs were used for how many samples."""
        counts: dict[str, int] = {}
        for used, check in zip(self.used, self.checked_against, strict=True):
            key = f"{used} (checked against {check})" if check else f"{used} (UNSTABLE)"
            counts[key] = counts.get(key, 0) + 1
        return ", ".join(f"{k}: {v}" for k, v in counts.items())


def _row_norms_mp(v: onp.ndarray, carrier: MPPrecision) -> onp.ndarray:
    ctx = carrier.context
    return onp.asarray([ctx.sqrt(ctx.fsum(e * e for e in row)) for row in v], dtype=object)


def _finite_rows(v: onp.ndarray) -> onp.ndarray:
    if v.dtype == object:
        return onp.asarray([all(getattr(e, "context", None) is not None and e.context.isfinite(e) for e in row)
                            for row in v], dtype=bool).reshape(len(v))
    return onp.all(onp.isfinite(v), axis=1)


def _evaluate_rows(evaluate: Callable[[Precision, onp.ndarray], Any], ctx: Precision, rows: onp.ndarray,
                   width: int | None) -> onp.ndarray | None:
    """``evaluate(ctx, rows)``; if the batch raises OverflowError (mpmath refuses numbers like
    exp(1e20) whose exponent exceeds a machine integer), row by row, with NaN for rows that
    overflow, so they are reported unstable instead of aborting the whole reference."""
    try:
        value = evaluate(ctx, rows)
        return value if _expansion(value) is not None else onp.asarray(value)
    except OverflowError:
        pass
    values: list[Any] = []
    for row in rows:
        try:
            values.append(onp.asarray(evaluate(ctx, onp.array([row])))[0])
        except OverflowError:
            values.append(None)
    found = next((v for v in values if v is not None), None)
    if found is None and width is None:
        return None
    size = len(found) if found is not None else width
    nan = ctx.const("nan") if ctx.is_arbitrary else onp.nan
    filler = onp.array([nan] * size, dtype=object if ctx.is_arbitrary else None)
    return onp.stack([v if v is not None else filler for v in values])


def evaluate_reference(
    evaluate: Callable[[Precision, onp.ndarray], Any],
    working: Precision | str,
    n: int,
    *,
    active: onp.ndarray | None = None,
    dim: int | None = None,
    candidates: Sequence[ReferenceCandidate] = HARDWARE_CANDIDATES,
    numpy_only: bool = False,
    guard_bits: int = GUARD_BITS,
    margin_bits: int = MARGIN_BITS,
    max_bits: int = MAX_BITS,
) -> ReferenceResult:
    """Evaluate ``evaluate(ctx, rows)`` up the ladder until every sample is stable.

    ``evaluate`` receives a context and the indices of the samples still undecided and returns
    their values at that context, shape (len(rows), d). Samples that are stable drop out, so only
    hard samples pay for mpmath. Samples outside ``active`` (e.g. non-finite inputs) are not
    evaluated: their value is NaN and they are reported unstable.
    """
    working = resolve_precision(working, None)
    ladder = reference_ladder(
        working, candidates=candidates, numpy_only=numpy_only, margin_bits=margin_bits,
        guard_bits=guard_bits, max_bits=max_bits,
    )
    need = required_bits(working, margin_bits=margin_bits)
    threshold = working.mantissa_bits + guard_bits
    raw: list[tuple[Any, Precision] | None] = [None] * n
    used, checked = [""] * n, [""] * n
    agreement = onp.full(n, -onp.inf)
    error = onp.full(n, onp.inf)
    stable = onp.zeros(n, dtype=bool)
    pending = onp.arange(n) if active is None else onp.flatnonzero(onp.asarray(active, dtype=bool))
    previous: onp.ndarray | None = None
    previous_name = ""
    tried = []
    width = dim
    for rung in ladder:
        if pending.size == 0:
            break
        tried.append(rung.name)
        current_raw = _evaluate_rows(evaluate, rung.context, pending, width)
        if current_raw is None:  # every pending sample overflowed mpmath's exponent range
            break
        width = current_raw.shape[1]
        compare = _compare_context(rung.context)
        current = to_mp(current_raw, compare)
        for i, sample in enumerate(pending):
            raw[sample] = (current_raw[i], rung.context)
            used[sample] = rung.name
        if previous is not None:
            difference = _row_norms_mp(current - compare.cast(previous), compare)
            scale = _row_norms_mp(current, compare)
            finite = _finite_rows(current) & _finite_rows(previous)
            for i, sample in enumerate(pending):
                if not finite[i]:
                    continue
                diff, size = difference[i], scale[i]
                error[sample] = float(diff)
                if diff == 0:
                    agreement[sample] = onp.inf
                elif size == 0:
                    agreement[sample] = -onp.inf
                else:
                    agreement[sample] = -float(compare.context.log(diff / size, 2))
                if agreement[sample] >= threshold and rung.accuracy_bits >= need:
                    stable[sample] = True
                    checked[sample] = previous_name
        keep = ~stable[pending]
        previous = current[keep]
        previous_name = rung.name
        pending = pending[keep]
    contexts = [entry[1] for entry in raw if entry is not None]
    carrier = max((_compare_context(c) for c in contexts), key=lambda c: c.mantissa_bits,
                  default=mp_candidate(96).context)
    value = onp.empty((n, width or 0), dtype=object)
    for sample in range(n):
        if raw[sample] is None:
            value[sample] = carrier.const("nan")
        else:
            value[sample] = to_mp(raw[sample][0][None, :], carrier)[0]
    return ReferenceResult(
        value=value, carrier=carrier, used=tuple(used), checked_against=tuple(checked),
        agreement_bits=agreement, error_estimate=error, stable=stable, required_bits=need,
        rungs_tried=tuple(tried),
    )


# ---- lipflow blocks at a reference precision -------------------------------------------------


def blocks_and_params(model: Block, params: Params) -> tuple[tuple[Block, ...], list[Params]]:
    """The layers of a Flow (or a single block as a one-layer sequence) with their params."""
    if isinstance(model, Flow):
        model._check_params(params)
        return model.blocks, list(params)
    return (model,), [params]


def _solve(matrices: Any, rhs: Any, ctx: Precision) -> Any:
    """Solve A[i] x = b[i] for a batch (n, d, d), (n, d) by Gaussian elimination with partial
    pivoting, elementwise at ``ctx`` (works for longdouble and mpmath, unlike numpy.linalg)."""
    a = onp.array(matrices, dtype=matrices.dtype)
    b = onp.array(rhs, dtype=rhs.dtype)
    n, d = b.shape
    rows = onp.arange(n)
    for col in range(d):
        magnitude = onp.abs(ctx.to_float64(a[:, col:, col]))
        pivot = col + onp.argmax(magnitude, axis=1)
        top_a, top_b = a[rows, col, :].copy(), b[rows, col].copy()
        a[rows, col, :] = a[rows, pivot, :]
        a[rows, pivot, :] = top_a
        b[rows, col] = b[rows, pivot]
        b[rows, pivot] = top_b
        for r in range(col + 1, d):
            factor = a[:, r, col] / a[:, col, col]
            a[:, r, col:] = a[:, r, col:] - factor[:, None] * a[:, col, col:]
            b[:, r] = b[:, r] - factor * b[:, col]
    x = onp.empty_like(b)
    for r in reversed(range(d)):
        total = b[:, r]
        for c in range(r + 1, d):
            total = total - a[:, r, c] * x[:, c]
        x[:, r] = total / a[:, r, r]
    return x


def _residual_inverse_newton(block: Residual, params: Params, y: Any, ctx: Precision) -> Any:
    """F^-1(y) for a residual block by Newton's method at ``ctx``.

    The fixed-point iteration needs ~p / log2(1/c) steps to reach p bits (720 for c = 0.9 at
    110 bits), beyond the block's ``max_iter``; Newton doubles the correct bits per step. It
    starts from the float64 fixed-point solution and converges because I + J_g is
    invertible with sigma_min >= 1 - c (theory ``lem:residual``).
    """
    float64 = precision("float64")
    start, _ = block._inverse_with_info(float64.cast(block._prepare(params)), ctx.to_float64(y), float64)
    prepared = ctx.cast(block._prepare(params))
    x = ctx.cast(onp.asarray(start))
    eye = ctx.cast(onp.eye(block.dim))
    tolerance = math.ldexp(1.0, 4 - ctx.mantissa_bits)
    for _ in range(64):
        residual = x + block.g(prepared, x, ctx) - y
        jac_t = block.g_jacobian_transposed(prepared, x, ctx)
        system = onp.swapaxes(eye[None, :, :] + jac_t, 1, 2)
        step = _solve(system, residual, ctx)
        x = x - step
        size = onp.max(onp.abs(ctx.to_float64(step)) / (1.0 + onp.abs(ctx.to_float64(x))), initial=0.0)
        if not size > tolerance:
            break
    return x


def block_inverse_at(block: Block, params: Params, y: Any, ctx: Precision) -> Any:
    """One block's inverse at a reference context (Newton for residual blocks)."""
    if isinstance(block, Residual):
        return _residual_inverse_newton(block, params, y, ctx)
    return block._inverse(ctx.cast(block._prepare(params)), y, ctx)


def _cast_input(x: onp.ndarray, ctx: Precision) -> Any:
    if ctx.is_arbitrary:
        return to_mp(x, ctx)  # exact, including longdouble
    return ctx.cast(x)


def _finite_input_rows(x: onp.ndarray) -> onp.ndarray:
    return _finite_rows(onp.asarray(x)) if onp.ndim(x) == 2 else onp.ones(len(x), dtype=bool)


def _select(x: onp.ndarray, rows: onp.ndarray) -> onp.ndarray:
    return onp.asarray(x)[rows]


def reference_forward(model: Block, params: Params, x: Any, *, working: Precision | str | None = None,
                      candidates: Sequence[ReferenceCandidate] = HARDWARE_CANDIDATES) -> ReferenceResult:
    """F(x) at a stable reference precision for inputs ``x`` stored at the working precision."""
    working = resolve_precision(working, x)
    blocks, plist = blocks_and_params(model, params)
    x = onp.asarray(x)

    def evaluate(ctx: Precision, rows: onp.ndarray) -> Any:
        value = _cast_input(_select(x, rows), ctx)
        for block, p in zip(blocks, plist, strict=True):
            value = block._forward(ctx.cast(block._prepare(p)), value, ctx)
        return value

    return evaluate_reference(evaluate, working, len(x), active=_finite_input_rows(x), dim=model.dim,
                              candidates=candidates)


def reference_inverse(model: Block, params: Params, z: Any, *, working: Precision | str | None = None,
                      candidates: Sequence[ReferenceCandidate] = HARDWARE_CANDIDATES) -> ReferenceResult:
    """F^-1(z) at a stable reference precision (``z`` as stored, e.g. a working forward output)."""
    working = resolve_precision(working, z)
    blocks, plist = blocks_and_params(model, params)
    z = onp.asarray(z)

    def evaluate(ctx: Precision, rows: onp.ndarray) -> Any:
        value = _cast_input(_select(z, rows), ctx)
        for block, p in zip(reversed(blocks), reversed(plist), strict=True):
            value = block_inverse_at(block, p, value, ctx)
        return value

    return evaluate_reference(evaluate, working, len(z), active=_finite_input_rows(z), dim=model.dim,
                              candidates=candidates)
