"""Strict low precision: every product, partial sum and function value rounded to the format."""

from __future__ import annotations

import autograd
import ml_dtypes
import mpmath
import numpy as np
import pytest

import lipflow
from lipflow.precision import PRECISION_NAMES, precision
from lipflow.precision.strict import strict_dot, strict_precision, strict_sum

BF16 = np.dtype(ml_dtypes.bfloat16)
NAMES = ("float16-strict", "bfloat16-strict")


def sequential_reference(values: np.ndarray, dtype: np.dtype) -> float:
    """One addition at a time; the sum of two stored numbers is exact in float64, and
    float64 -> format rounding is checked against halfway cases separately below."""
    total = float(values[0])
    for v in values[1:]:
        exact = total + float(v)  # exact: both are short floats of nearby exponents
        total = float(np.array([exact]).astype(np.float16)[0]) if dtype == np.float16 else _bf16(exact)
    return total


def _bf16(value: float) -> float:
    """Correctly rounded bfloat16 of a float64, by exact rational arithmetic."""
    from fractions import Fraction

    exact = Fraction(value)
    candidates = sorted({float(np.array([value], dtype=np.float64).astype(np.float32).astype(BF16)[0])})
    below = candidates[0]
    step = np.nextafter(np.array(below, dtype=BF16), np.array(np.inf, dtype=BF16)).astype(float)
    down = np.nextafter(np.array(below, dtype=BF16), np.array(-np.inf, dtype=BF16)).astype(float)
    options = [float(down), float(below), float(step)]
    best = min(options, key=lambda o: (abs(Fraction(o) - exact), _odd(o)))
    return best


def _odd(value: float) -> int:
    return int(np.array([value]).astype(BF16).view(np.uint16)[0]) & 1


@pytest.mark.parametrize("name", NAMES)
def test_sum_rounds_every_partial_sum(name: str) -> None:
    ctx = precision(name)
    x = ctx.cast(np.random.default_rng(0).uniform(0, 4, size=300))
    assert float(strict_sum(x)) == sequential_reference(np.asarray(x), ctx.format_dtype)


def test_strict_sum_differs_from_numpy_float16() -> None:
    ones = np.ones(4096, dtype=np.float16)
    assert float(np.sum(ones)) == 4096.0  # numpy: float32 accumulation
    assert float(precision("float16-strict").sum(ones)) == 2048.0  # 2048 + 1 rounds to 2048


def test_bfloat16_rounding_is_not_double_rounded() -> None:
    a = np.array([1.0, 2.0**-8], dtype=BF16)
    b = np.array([1.0, 1.0 + 2.0**-7], dtype=BF16)  # 1 + 2^-8 + 2^-15: above the halfway point
    got = float(strict_dot(a, b))
    assert got == 1.0 + 2.0**-7


@pytest.mark.parametrize("name", NAMES)
def test_dot_matches_sequential_reference(name: str) -> None:
    ctx = precision(name)
    rng = np.random.default_rng(1)
    a, b = ctx.cast(rng.standard_normal((3, 40))), ctx.cast(rng.standard_normal((40, 2)))
    got = np.asarray(ctx.dot(a, b))
    for i in range(3):
        for j in range(2):
            exact = np.array([float(a[i, t]) * float(b[t, j]) for t in range(40)])  # exact in float64
            products = exact.astype(np.float32).astype(ctx.format_dtype).astype(float)  # <= 22 bits: exact in f32
            assert float(got[i, j]) == sequential_reference(products, ctx.format_dtype)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("function", ["exp", "log", "tanh", "sigmoid", "softplus", "log_sigmoid", "atan", "expm1"])
def test_functions_correctly_rounded(name: str, function: str) -> None:
    """|f(x) - exact| <= u |exact| (one rounding), checked against mpmath at 100 bits."""
    ctx = precision(name)
    x = ctx.cast(np.random.default_rng(2).uniform(0.05, 6, size=200) * np.where(np.arange(200) % 2, 1, -1))
    if function == "log":
        x = ctx.cast(np.abs(ctx.to_float64(x)))
    got = ctx.to_float64(getattr(ctx, function)(x))
    mp = mpmath.mp.clone() if hasattr(mpmath.mp, "clone") else mpmath.MPContext()
    mp.prec = 100
    exact_fun = {
        "exp": mp.exp, "log": mp.log, "tanh": mp.tanh, "atan": mp.atan, "expm1": mp.expm1,
        "sigmoid": lambda v: 1 / (1 + mp.exp(-v)),
        "softplus": lambda v: mp.log1p(mp.exp(v)),
        "log_sigmoid": lambda v: -mp.log1p(mp.exp(-v)),
    }[function]
    for value, result in zip(ctx.to_float64(x), got, strict=True):
        exact = exact_fun(mp.mpf(float(value)))
        assert abs(mp.mpf(float(result)) - exact) <= ctx.unit_roundoff * abs(exact)


@pytest.mark.parametrize("name", NAMES)
def test_flow_runs_and_differentiates(name: str) -> None:
    flow = lipflow.Flow([lipflow.AffineCoupling(4), lipflow.Reverse(4), lipflow.AdditiveCoupling(4)])
    params = flow.init(0)
    x = np.random.default_rng(3).standard_normal((5, 4))
    z = flow.forward(params, x, ctx=name)
    assert z.dtype == precision(name).dtype
    back = flow.inverse(params, z, ctx=name)
    assert np.all(np.isfinite(np.asarray(back, dtype=float)))
    gradient = autograd.grad(lambda v: np.sum(flow.forward(params, v, ctx=name).astype(np.float64)))(x)
    assert gradient.shape == x.shape and np.all(np.isfinite(gradient))


def test_names_registered() -> None:
    assert precision("float16-strict").format_dtype == np.float16
    assert precision("bfloat16-strict").format_dtype == BF16
    assert precision("float16-strict").dtype == np.float32  # held: binary16 values in float32 arrays
    assert strict_precision("bfloat16-strict", held=False).dtype == BF16
    assert {"float16-strict", "bfloat16-strict"} <= set(PRECISION_NAMES)
