"""Double-double context: kernels against mpmath at ~200 bits, the array protocol, flows."""

from __future__ import annotations

import math

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import lipflow
from lipflow.errors import LipflowError
from lipflow.precision import infer_precision, precision
from lipflow.precision.doubledouble import DDArray

DD = precision("dd")
MP = precision("mp60")  # ~203 bits: the reference
CTX = MP.context


def random_dd(n: int, scale: float, seed: int = 0) -> DDArray:
    """Random double-doubles with a non-zero lo part."""
    rng = np.random.default_rng(seed)
    hi = rng.standard_normal(n) * scale
    lo = hi * rng.uniform(-1, 1, n) * 2.0**-54
    s = hi + lo
    return DDArray(s, lo - (s - hi))


def exact(x: DDArray) -> list:
    return list(DD.to_mp(x, 60))


def worst_relative_error(got: DDArray, reference: list) -> float:
    worst = 0.0
    for value, ref in zip(DD.to_mp(got, 60), reference, strict=True):
        error = abs(value - ref)
        worst = max(worst, float(error / abs(ref)) if ref != 0 else float(error))
    return worst


def _sigmoid(v):
    return 1 / (1 + CTX.exp(-v))


FUNCTIONS = {
    "exp": (DD.exp, CTX.exp, False),
    "expm1": (DD.expm1, CTX.expm1, False),
    "log": (DD.log, CTX.log, True),
    "log1p": (DD.log1p, CTX.log1p, True),
    "tanh": (DD.tanh, CTX.tanh, False),
    "atan": (DD.atan, CTX.atan, False),
    "sqrt": (DD.sqrt, CTX.sqrt, True),
    "sigmoid": (DD.sigmoid, _sigmoid, False),
    "log_sigmoid": (DD.log_sigmoid, lambda v: -CTX.log1p(CTX.exp(-v)), False),
    "softplus": (DD.softplus, lambda v: CTX.log1p(CTX.exp(v)), False),
    "elu": (DD.elu, lambda v: v if v > 0 else CTX.expm1(v), False),
    "relu": (DD.relu, lambda v: v if v > 0 else CTX.mpf(0), False),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@pytest.mark.parametrize("scale", [1e-20, 1e-3, 1.0, 30.0])
def test_elementwise_within_unit_roundoff(name: str, scale: float) -> None:
    fun, reference, positive = FUNCTIONS[name]
    x = random_dd(400, scale, seed=int(scale * 7) % 97)
    if positive:
        x = abs(x)
    worst = worst_relative_error(fun(x), [reference(v) for v in exact(x)])
    assert worst <= DD.unit_roundoff, f"{name} at scale {scale}: {math.log2(worst):.1f} bits"


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_arithmetic_within_unit_roundoff(op: str) -> None:
    a, b = random_dd(500, 3.0, seed=1), random_dd(500, 0.5, seed=2)
    got = {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b}[op]
    pairs = list(zip(exact(a), exact(b), strict=True))
    reference = {
        "add": [u + v for u, v in pairs],
        "sub": [u - v for u, v in pairs],
        "mul": [u * v for u, v in pairs],
        "div": [u / v for u, v in pairs],
    }[op]
    assert worst_relative_error(got, reference) <= DD.unit_roundoff


def test_dot_and_sum_within_higham_bound() -> None:
    k = 37
    a = DDArray(random_dd(5 * k, 1.0, seed=3).hi.reshape(5, k), random_dd(5 * k, 1.0, seed=3).lo.reshape(5, k))
    b = DDArray(random_dd(k * 3, 1.0, seed=4).hi.reshape(k, 3), random_dd(k * 3, 1.0, seed=4).lo.reshape(k, 3))
    got = DD.to_mp(DD.dot(a, b), 60)
    am, bm = DD.to_mp(a, 60), DD.to_mp(b, 60)
    for i in range(5):
        for j in range(3):
            terms = [am[i, t] * bm[t, j] for t in range(k)]
            bound = DD.gamma(k + 2) * sum(abs(v) for v in terms)
            assert abs(got[i, j] - sum(terms)) <= bound
    total = DD.to_mp(DD.sum(a, axis=1), 60)
    for i in range(5):
        assert abs(total[i] - sum(am[i])) <= DD.gamma(k) * sum(abs(v) for v in am[i])


def test_registered_and_inferred() -> None:
    assert precision("dd") is precision("dd")
    assert "dd" in lipflow.precision.__module__ or DD.name == "dd"
    assert DD.name == "dd" and DD.unit_roundoff == 2.0**-100
    assert infer_precision(DD.cast(np.ones((2, 2)))) == DD


def test_array_protocol_matches_numpy() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3))
    y = DD.cast(x)
    np.testing.assert_array_equal(DD.to_float64(y[:, [2, 0]]), x[:, [2, 0]])
    np.testing.assert_array_equal(DD.to_float64(anp.concatenate([y, y], axis=1)), np.concatenate([x, x], 1))
    # np.stack dispatches; autograd's anp.stack converts with np.array and is refused loudly
    np.testing.assert_array_equal(DD.to_float64(np.stack([y, y], axis=0)), np.stack([x, x]))
    np.testing.assert_array_equal(DD.to_float64(y.T), x.T)
    np.testing.assert_array_equal(DD.to_float64(np.where(x > 0, y, 0.0)), np.where(x > 0, x, 0.0))
    np.testing.assert_array_equal(y > 0, x > 0)
    np.testing.assert_array_equal(DD.to_float64(2 * y + x), 2 * x + x)
    assert np.shape(y) == (4, 3) and y.astype(np.float32).dtype == np.float32


def test_implicit_conversion_refused() -> None:
    with pytest.raises(TypeError, match="not converted implicitly"):
        np.asarray(DD.cast(np.ones(3)))


def test_gradient_refused_with_clear_error() -> None:
    block = lipflow.AdditiveCoupling(2)
    params = block.init(0)
    with pytest.raises(LipflowError, match="no autograd gradients"):
        autograd.grad(lambda x: DD.to_float64(block.forward(params, x, ctx="dd")).sum())(np.ones((1, 2)))


def test_infinity_stays_infinite() -> None:
    inf = DD.cast(np.array([np.inf, -np.inf, 1.0]))
    result = DD.to_float64(inf + 1.0)
    assert result[0] == np.inf and result[1] == -np.inf and result[2] == 2.0
    with np.errstate(divide="ignore"):
        assert DD.to_float64(DD.const(1.0) / DD.cast(np.zeros(1)))[0] == np.inf


def test_flow_gains_at_least_45_bits_over_float64() -> None:
    """Both errors are (condition number) x (unit roundoff); dd's unit roundoff is 2^-47 of
    float64's, so on the same flow its error must be far smaller (2 bits of slack)."""
    flow = lipflow.Flow(
        [lipflow.AffineCoupling(2, conditioning="first" if i % 2 else "second", scale=lipflow.Bounded(0.5, 1.0))
         for i in range(6)]
    )
    params = flow.init(0)
    x = np.random.default_rng(0).standard_normal((20, 2))
    reference = flow.forward(params, x, ctx=MP)
    dd_values = DD.to_mp(flow.forward(params, x, ctx="dd"), 60).ravel()
    dd_error = max(float(abs(v - r)) for v, r in zip(dd_values, reference.ravel(), strict=True))
    f64_values = MP.cast(flow.forward(params, x)).ravel()
    f64_error = max(float(abs(v - r)) for v, r in zip(f64_values, reference.ravel(), strict=True))
    assert f64_error > 0
    assert dd_error <= f64_error * 2.0**-45
    back = flow.inverse(params, flow.forward(params, x, ctx="dd"), ctx="dd")
    assert np.max(np.abs(DD.to_float64(back - x))) <= 2.0**-80


def test_special_values_follow_ieee() -> None:
    x = DD.cast(np.array([np.nan, np.inf, -np.inf, 0.0]))
    with np.errstate(all="ignore"):
        assert np.array_equal(DD.to_float64(DD.exp(x)), [np.nan, np.inf, 0.0, 1.0], equal_nan=True)
        assert np.array_equal(DD.to_float64(DD.tanh(x)), [np.nan, 1.0, -1.0, 0.0], equal_nan=True)
        assert np.array_equal(DD.to_float64(DD.sigmoid(x)), [np.nan, 1.0, 0.0, 0.5], equal_nan=True)
        assert np.array_equal(DD.to_float64(DD.log(x))[[0, 1, 3]], [np.nan, np.inf, -np.inf], equal_nan=True)
