"""Rigorous evaluation: certified singular values, upward-rounded formulas, interval boxes
(lem:rigorous-evaluation)."""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import sympy
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lipflow.bounds.rigorous import Box, evaluate_upper, singular_value_bounds, spectral_norm_upper

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


def _mp_singular_values(w: np.ndarray) -> list[mpmath.mpf]:
    with mpmath.workdps(40):
        return sorted(mpmath.svd_r(mpmath.matrix(w.tolist()), compute_uv=False), reverse=True)


@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 4)), elements=finite))
def test_spectral_norm_upper_is_upper(w: np.ndarray) -> None:
    exact = _mp_singular_values(w)
    low, high = singular_value_bounds(w)
    assert high >= exact[0]
    assert high <= float(exact[0]) * (1 + 1e-12) + 1e-300
    if w.shape[0] >= w.shape[1]:
        assert low <= exact[w.shape[1] - 1]
    assert spectral_norm_upper(w) == high


def test_spectral_norm_upper_scales() -> None:
    rng = np.random.default_rng(0)
    for shape in [(64, 64), (128, 32), (3, 100)]:
        w = rng.standard_normal(shape) * 1e-150
        exact = np.linalg.svd(w, compute_uv=False)[0]
        assert exact <= spectral_norm_upper(w) <= exact * (1 + 1e-11)


@given(st.floats(0, 1e6), st.floats(1e-6, 1e6))
def test_evaluate_upper_rounds_up(x: float, y: float) -> None:
    a, b = sympy.symbols("a b", positive=True)
    expression = a / 2 + sympy.sqrt(1 + a**2 / 4) + sympy.exp(-b) / b + sympy.atan(a) * sympy.pi
    value = evaluate_upper(expression, {a: x, b: y})
    with mpmath.workdps(60):
        xa, yb = mpmath.mpf(x), mpmath.mpf(y)
        exact = xa / 2 + mpmath.sqrt(1 + xa**2 / 4) + mpmath.exp(-yb) / yb + mpmath.atan(xa) * mpmath.pi
        assert value >= exact
        assert value <= exact * (1 + 1e-13)


@given(
    hnp.arrays(np.float64, 3, elements=finite), hnp.arrays(np.float64, 3, elements=st.floats(0, 10)),
    hnp.arrays(np.float64, 3, elements=finite), st.integers(0, 2**16),
)
def test_interval_ops_enclose(center: np.ndarray, half: np.ndarray, other: np.ndarray, seed: int) -> None:
    box = Box(center - half, center + half)
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((3, 2))
    bias = rng.standard_normal(2)
    points = box.lo + (box.hi - box.lo) * rng.random((20, 3))
    image = box.affine(w, bias)
    product = box * Box(other - 1, other + 1)
    for p in points:
        exact = [sum(Fraction(p[i]) * Fraction(w[i, j]) for i in range(3)) + Fraction(bias[j]) for j in range(2)]
        assert all(Fraction(image.lo[j]) <= exact[j] <= Fraction(image.hi[j]) for j in range(2))
        exact_sum = [Fraction(p[i]) + Fraction(other[i]) for i in range(3)]
        total = box + other
        assert all(Fraction(total.lo[i]) <= exact_sum[i] <= Fraction(total.hi[i]) for i in range(3))
        exact_product = [Fraction(p[i]) * Fraction(other[i]) for i in range(3)]
        assert all(Fraction(product.lo[i]) <= exact_product[i] <= Fraction(product.hi[i]) for i in range(3))
