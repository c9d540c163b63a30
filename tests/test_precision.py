"""Precision contexts: names, unit roundoff, casting, maths and autograd at every precision."""

from __future__ import annotations

import math

import autograd.numpy as anp
import mpmath
import numpy as np
import pytest
from autograd import grad, jacobian

import lipflow as lf
from lipflow.precision import infer_precision, precision

EXPECTED_BITS = {
    "float16": 11,
    "bfloat16": 8,
    "float32": 24,
    "float64": 53,
    "longdouble": np.finfo(np.longdouble).nmant + 1,
}


@pytest.mark.parametrize("name", list(EXPECTED_BITS))
def test_unit_roundoff_is_half_an_ulp_of_one(name):
    ctx = precision(name)
    assert ctx.mantissa_bits == EXPECTED_BITS[name]
    assert ctx.unit_roundoff == 2.0 ** -EXPECTED_BITS[name]
    one = ctx.const(1.0)
    # 1 + u rounds to 1 (ties to even), 1 + 2u is the next number
    assert one + ctx.const(ctx.unit_roundoff) == one
    assert one + ctx.const(2 * ctx.unit_roundoff) > one


def test_mp_precision_matches_mpmath_digits():
    ctx = precision("mp50")
    assert ctx.is_arbitrary and ctx.dps == 50
    reference = mpmath.MPContext()
    reference.dps = 50
    assert ctx.mantissa_bits == reference.prec
    assert ctx.unit_roundoff == math.ldexp(1.0, -ctx.mantissa_bits)


def test_unknown_precision_lists_valid_names():
    valid = "float16, bfloat16, float32, float64, longdouble, float16-strict, bfloat16-strict, dd, td, mpNN"
    with pytest.raises(lf.LipflowError, match=f"valid names are {valid}"):
        precision("float8")
    with pytest.raises(lf.LipflowError, match="digits"):
        precision("mp0")


def test_contexts_are_immutable():
    ctx = precision("float32")
    with pytest.raises(AttributeError):
        ctx.mantissa_bits = 10


def test_cast_and_infer_round_trip(precision_name):
    ctx = precision(precision_name)
    x = ctx.cast(np.array([[0.1, -2.5]]))
    assert ctx.owns(x)
    assert infer_precision(x) == ctx
    assert ctx.cast(x) is x
    assert type(ctx.const(0.5)) is type(ctx.cast(np.array([0.5]))[0])


def test_mp_contexts_do_not_touch_global_precision():
    before = mpmath.mp.prec
    a = precision("mp30").cast(np.array([1.0]))[0] / 3
    b = precision("mp80").cast(np.array([1.0]))[0] / 3
    assert mpmath.mp.prec == before
    assert abs(float(b - a)) > 0  # different precisions really coexist


FUNCTIONS = {
    "exp": mpmath.exp,
    "log1p": mpmath.log1p,
    "tanh": mpmath.tanh,
    "atan": mpmath.atan,
    "sigmoid": lambda v: 1 / (1 + mpmath.exp(-v)),
    "log_sigmoid": lambda v: -mpmath.log1p(mpmath.exp(-v)),
    "softplus": lambda v: mpmath.log1p(mpmath.exp(v)),
    "elu": lambda v: v if v > 0 else mpmath.expm1(v),
}


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_float64_elementwise_functions_are_accurate(name):
    """Within 4 ulps of the mpmath value, including the tails where naive formulas fail."""
    ctx = precision("float64")
    x = np.array([-40.0, -8.0, -0.7, -1e-3, 0.0, 1e-3, 0.9, 8.0, 40.0])
    if name == "log1p":
        x = np.abs(x)
    got = getattr(ctx, name)(x)
    with mpmath.workdps(40):
        want = np.array([float(FUNCTIONS[name](mpmath.mpf(v))) for v in x])
    scale = np.maximum(np.abs(want), np.finfo(np.float64).tiny)
    assert np.all(np.abs(got - want) <= 4 * np.spacing(scale)), (got, want)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_mp_elementwise_functions_match_mpmath(name):
    ctx = precision("mp50")
    x = ctx.cast(np.array([-3.0, -0.25, 0.5, 2.0]))
    got = getattr(ctx, name)(x)
    with mpmath.workdps(60):
        for g, v in zip(got, x, strict=True):
            assert abs(g - FUNCTIONS[name](v)) <= mpmath.mpf(2) ** (-ctx.mantissa_bits + 3) * max(1, abs(g))


def test_gradients_keep_the_working_dtype(precision_name):
    ctx = precision(precision_name)
    x = ctx.cast(np.array([0.3, -1.2, 2.0]))

    def loss(v):
        return ctx.sum(ctx.sigmoid(v) * ctx.exp(v) + ctx.elu(v) * ctx.tanh(v) + ctx.softplus(v) + ctx.log_sigmoid(v))

    g = grad(loss)(x)
    assert ctx.owns(g)


def test_mp_gradient_matches_analytic_derivative():
    ctx = precision("mp50")
    x = ctx.cast(np.array([0.3, -1.2]))
    g = grad(lambda v: ctx.sum(ctx.tanh(v) * v))(x)
    for gi, vi in zip(g, x, strict=True):
        c = ctx.context
        want = c.tanh(vi) + vi * (1 - c.tanh(vi) ** 2)
        assert abs(gi - want) < mpmath.mpf(10) ** -45


def test_mp_jacobian_of_vector_function():
    ctx = precision("mp40")
    x = ctx.cast(np.array([0.3, 0.7]))
    J = jacobian(lambda v: ctx.exp(v) * v[::-1])(x)
    assert abs(J[0, 1] - ctx.context.exp(x[0])) < mpmath.mpf(10) ** -35


def test_bfloat16_sum_accumulates_wider_than_bfloat16():
    ctx = precision("bfloat16")
    ones = ctx.cast(np.ones(1000))
    assert ctx.to_float64(np.asarray([ctx.sum(ones)]))[0] == 1000.0  # np.sum in bfloat16 gives 256


def test_gamma_is_highams_bound():
    ctx = precision("float32")
    u = ctx.unit_roundoff
    assert ctx.gamma(10) == pytest.approx(10 * u / (1 - 10 * u))
    assert precision("float16").gamma(5000) == math.inf


def test_precision_semantics_are_stated():
    assert "float32" in precision("float16").semantics
    assert "mpmath" in precision("mp50").semantics


def test_autograd_mp_constant_literals_do_not_upcast():
    ctx = precision("float16")
    x = ctx.cast(np.array([1.0, 2.0]))
    assert (x * ctx.const(0.5)).dtype == np.float16
    assert (anp.exp(x) * 2.0).dtype == np.float16
