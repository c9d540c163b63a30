"""Double-double products through BLAS by exact slicing: accuracy against exact rational
arithmetic, agreement with the elementwise kernel, and the fallbacks."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from lipflow.precision import dd_gemm
from lipflow.precision import dd_kernels as kern


def _dd(rng: np.random.Generator, shape: tuple[int, ...], spread: int = 0) -> tuple[np.ndarray, np.ndarray]:
    hi = rng.standard_normal(shape) * np.exp2(rng.integers(-spread, spread + 1, size=shape))
    lo = hi * rng.standard_normal(shape) * 2.0**-54
    return kern.fast_two_sum(hi, lo)


def _exact(ah, al, bh, bl, r: int, c: int) -> Fraction:
    total = Fraction(0)
    for j in range(ah.shape[1]):
        a = Fraction(float(ah[r, j])) + Fraction(float(al[r, j]))
        total += a * (Fraction(float(bh[j, c])) + Fraction(float(bl[j, c])))
    return total


@pytest.mark.parametrize(("n", "k", "m", "spread"), [(6, 64, 5, 0), (5, 9, 7, 20), (4, 300, 4, 3), (3, 16, 16, 60)])
def test_sliced_dot_error_within_normwise_bound(n: int, k: int, m: int, spread: int) -> None:
    """|computed - exact| <= 2^-104 k max|a_r| max|b_c| for every entry (the documented
    ~2^-106 with a factor 4 to spare), on random double-doubles with mixed magnitudes."""
    rng = np.random.default_rng(k + spread)
    ah, al = _dd(rng, (n, k), spread)
    bh, bl = _dd(rng, (k, m), spread)
    ah[0, : k // 2] *= -1.0
    if n > 2:
        ah[2] = 0.0  # a zero row
        al[2] = 0.0
    assert dd_gemm.usable(ah, bh)
    hi, lo = dd_gemm.sliced_dot(ah, al, bh, bl)
    decided = 0
    for r in range(n):
        for c in range(m):
            exact = _exact(ah, al, bh, bl, r, c)
            scale = k * np.abs(ah[r]).max() * np.abs(bh[:, c]).max()
            error = abs(Fraction(float(hi[r, c])) + Fraction(float(lo[r, c])) - exact)
            assert error <= Fraction(2.0**-104) * Fraction(float(scale)), (r, c)
            decided += 1
    assert decided == n * m


def test_cancellation_is_exact_where_the_slices_are() -> None:
    """x . y - x . y with x, y float64: the slice products are exact, so the sum cancels to 0."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 32))
    b = rng.standard_normal((32, 4))
    a = np.concatenate([x, -x], axis=1)
    bb = np.concatenate([b, b], axis=0)
    hi, lo = dd_gemm.sliced_dot(a, np.zeros_like(a), bb, np.zeros_like(bb))
    assert np.all(hi == 0) and np.all(lo == 0)


def test_kernel_dot_uses_slicing_and_agrees_with_elementwise() -> None:
    rng = np.random.default_rng(4)
    ah, al = _dd(rng, (3, 7, 40))
    bh, bl = _dd(rng, (40, 6))
    fast = kern.dot(ah, al, bh, bl)
    minimum = kern.SLICED_MIN_COLUMNS
    try:
        kern.SLICED_MIN_COLUMNS = 10**9
        slow = kern.dot(ah, al, bh, bl)
    finally:
        kern.SLICED_MIN_COLUMNS = minimum
    assert fast[0].shape == (3, 7, 6)
    total = np.abs((fast[0] - slow[0]) + (fast[1] - slow[1]))
    bound = 2.0**-102 * 40 * np.abs(ah).max(axis=-1, keepdims=True) * np.abs(bh).max(axis=0)
    assert np.all(total <= bound)


def test_out_of_range_operands_fall_back() -> None:
    a = np.ones((2, 16))
    b = np.ones((16, 4))
    assert dd_gemm.usable(a, b)
    assert not dd_gemm.usable(a * 2.0**500, b)
    assert not dd_gemm.usable(a * 2.0**-500, b)
    bad = b.copy()
    bad[0, 0] = np.inf
    assert not dd_gemm.usable(a, bad)
    hi, _ = kern.dot(a, np.zeros_like(a), bad, np.zeros_like(bad))  # the elementwise kernel
    assert np.isinf(hi[:, 0]).all() and np.all(hi[:, 1:] == 16)


def test_entrywise_accuracy_when_magnitudes_meet_unevenly() -> None:
    """Rows and columns of different magnitudes: the error stays ~2^-106 of sum |a||b| per
    entry (the cutoff grows with the spread), or the elementwise kernel takes over."""
    rng = np.random.default_rng(6)
    for spread in (2.0**10, 2.0**40):
        ah = rng.standard_normal((3, 16))
        bh = rng.standard_normal((16, 5))
        ah[:, 0] *= spread  # a big first column of a meets a small first row of b
        bh[0] /= spread
        bh[1:] *= 1.0
        al, bl = np.zeros_like(ah), np.zeros_like(bh)
        cutoff = dd_gemm.plan(ah, bh)
        assert (cutoff is None) == (spread > 2.0**20)
        hi, lo = kern.dot(ah, al, bh, bl)
        for r in range(3):
            for c in range(5):
                exact = _exact(ah, al, bh, bl, r, c)
                scale = sum(abs(Fraction(float(ah[r, j])) * Fraction(float(bh[j, c]))) for j in range(16))
                error = abs(Fraction(float(hi[r, c])) + Fraction(float(lo[r, c])) - exact)
                assert error <= Fraction(2.0**-100) * scale
