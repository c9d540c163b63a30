"""Double-double matrix products through float64 BLAS, by error-free slicing (Ozaki scheme).

Each operand (an expansion hi + lo of float64 arrays) is cut into slices whose entries are
integer multiples of a per-row (per-column for the right operand) power of two with at most
``53 - beta`` significant bits, ``beta = ceil((53 + ceil(log2 k)) / 2)``. A product of two
slices then sums k integers below 2^(2 (53 - beta)) <= 2^53 / k, so float64 BLAS computes it
*exactly*, in any order and with or without FMA. The exact slice products are summed largest
first into a double-double. Slice pairs whose contribution is below 2^-cutoff k mu_r nu_c
(mu_r, nu_c the largest |a| of row r and |b| of column c) are skipped. The cutoff is
114 + log2 R with R = max_rc k mu_r nu_c / (|a||b|)_rc, so the error is ~2^-106 (|a||b|)_rc per
entry, the order of the elementwise kernel's (log2 k) u^2 sum|a||b|; where R > 2^16 (rows and
columns of very different magnitudes meeting) :func:`plan` declines and the elementwise kernel
runs instead.

Reference: K. Ozaki, T. Ogita, S. Oishi, S. M. Rump, "Error-free transformations of matrix
multiplication by using fast routines of matrix multiplication and its applications",
Numer. Algorithms 59 (2012).

Range: finite operands whose row (column) maxima are 0 or in [2^-400, 2^400] (the caller
falls back to the elementwise kernel otherwise); entries of the lo parts below 2^-116 of their
row's maximum are dropped (within the error bound).
"""

from __future__ import annotations

import math

import numpy as onp

from lipflow.precision import dd_kernels as kern

__all__ = ["CUTOFF_BITS", "MAX_SPREAD_BITS", "plan", "sliced_dot", "usable"]

#: pairs of slices whose bound is below 2^-(CUTOFF_BITS + spread) of k mu nu are skipped
CUTOFF_BITS = 114
#: largest log2 R (see the module docstring) the slicing accepts
MAX_SPREAD_BITS = 16
_RANGE = 2.0**400


def usable(ah: onp.ndarray, bh: onp.ndarray) -> bool:
    """Whether the operands are finite and inside the range the slicing handles: every row
    maximum of a and column maximum of b is 0 or in [2^-400, 2^400], so that no slice product
    underflows or overflows."""
    for part, axis in ((ah, -1), (bh, 0)):
        if part.size == 0:
            continue
        mu = onp.max(onp.abs(part), axis=axis)
        if not (onp.isfinite(mu).all() and onp.all((mu == 0) | ((mu >= 1 / _RANGE) & (mu < _RANGE)))):
            return False
    return True


def plan(ah: onp.ndarray, bh: onp.ndarray) -> int | None:
    """The cutoff in bits for a (n, k) @ b (k, m), or None where slicing does not fit (out of
    range, non-finite, or R > 2^MAX_SPREAD_BITS)."""
    if not usable(ah, bh):
        return None
    k = ah.shape[-1]
    absolute = onp.abs(ah) @ onp.abs(bh)  # (|a||b|)_rc, to within a relative k u
    normwise = k * onp.max(onp.abs(ah), axis=-1, keepdims=True) * onp.max(onp.abs(bh), axis=0, keepdims=True)
    positive = absolute > 0
    if not positive.any():
        return CUTOFF_BITS
    spread = float(onp.max(normwise[positive] / absolute[positive])) * 2  # 2: covers the k u
    if spread > 2.0**MAX_SPREAD_BITS:
        return None
    return CUTOFF_BITS + max(0, math.ceil(math.log2(spread)))


def _slices(
    parts: list[onp.ndarray], axis: int, bits: int, beta: int, cutoff: int = CUTOFF_BITS
) -> list[tuple[onp.ndarray, int]]:
    """Cut sum(parts) into exact slices along ``axis`` (the reduction axis of the product).

    Returns (slice, level) with |slice| <= 2^level * m where m is the row (or column) maximum
    of the first part (rounded up to a power of two). Slicing stops once the level is below
    the cutoff: the remainder is dropped and its contribution is within the error bound.
    """
    out: list[tuple[onp.ndarray, int]] = []
    top = onp.max(onp.abs(parts[0]), axis=axis, keepdims=True)
    for offset, part in zip((0, -52), parts, strict=False):
        if offset:  # a lo part: drop what is below the cutoff, so no quantum underflows
            part = onp.where(onp.abs(part) >= top * 2.0 ** -(cutoff + 2), part, 0.0)
        level = offset + 1
        remainder = part
        while level > -cutoff and onp.any(remainder):
            mu = onp.max(onp.abs(remainder), axis=axis, keepdims=True)
            with onp.errstate(divide="ignore"):
                exponent = onp.ceil(onp.log2(onp.where(mu > 0, mu, 1.0)))
            sigma = onp.ldexp(1.0, (exponent + beta).astype(onp.int64))
            piece = (remainder + sigma) - sigma
            remainder = remainder - piece
            out.append((piece, level))
            level -= bits
    return out


def sliced_dot(
    ah: onp.ndarray, al: onp.ndarray, bh: onp.ndarray, bl: onp.ndarray, cutoff: int = CUTOFF_BITS
) -> kern.Pair:
    """a (n, k) @ b (k, m) as a double-double (hi, lo), every slice product exact in BLAS;
    ``cutoff`` from :func:`plan`."""
    k = ah.shape[-1]
    beta = math.ceil((53 + math.ceil(math.log2(max(k, 1)))) / 2)
    bits = 53 - beta
    a_parts = [ah] if not onp.any(al) else [ah, al]
    b_parts = [bh] if not onp.any(bl) else [bh, bl]
    a_slices = _slices(a_parts, -1, bits, beta, cutoff)
    b_slices = _slices(b_parts, 0, bits, beta, cutoff)
    pairs = sorted(
        ((la + lb, i, j) for i, (_, la) in enumerate(a_slices) for j, (_, lb) in enumerate(b_slices)
         if la + lb > -cutoff),
        reverse=True,
    )
    hi = onp.zeros((ah.shape[0], bh.shape[1]))
    lo = onp.zeros_like(hi)
    for _, i, j in pairs:
        product = a_slices[i][0] @ b_slices[j][0]  # exact
        hi, error = kern.two_sum(hi, product)
        lo += error
    return kern.fast_two_sum(hi, lo)
