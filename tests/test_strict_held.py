"""Strict binary16 / bfloat16 held in float32 (lipflow.precision.strict_held): every operation
is the correctly rounded format operation (lem:binary32-double-rounding), and the held contexts
give the same bits as the contexts stored in the format dtype, for both kernel backends.

Oracles: exact rational rounding (``Fraction``, tests/test_strict_rounding.exact_round) on
special and random operands, and NumPy float16 / ml_dtypes bfloat16 arithmetic (checked against
exact midpoints exhaustively in tests/test_strict_rounding.py) on every format value.
"""

from __future__ import annotations

import pickle
from fractions import Fraction

import autograd
import ml_dtypes
import numpy as np
import pytest

import lipflow
from lipflow.precision import accel, infer_precision, precision
from lipflow.precision.strict import _round, strict_precision
from lipflow.precision.strict_held import HeldArray, held_class, plain, to_format, to_held
from lipflow.precision.strict_kernels import reference_dot, sequential_dot, sequential_sum
from lipflow.precision.strict_round32 import round_to_format
from tests.test_strict_rounding import _build, _hard_arrays, exact_round

BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = {"float16": np.dtype(np.float16), "bfloat16": BF16}
FMTS = ("float16", "bfloat16")
OPS = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide}
EXACT = {"add": lambda a, b: a + b, "subtract": lambda a, b: a - b, "multiply": lambda a, b: a * b,
         "divide": lambda a, b: a / b}


@pytest.fixture(params=["numpy", "numba"])
def backend(request):
    if request.param == "numba":
        pytest.importorskip("numba", reason="needs the fast extra: pip install 'lipflow[fast]'")
    with accel.kernels(request.param):
        yield request.param


def _patterns(fmt: str) -> np.ndarray:
    """Every one of the 2^16 values of the format (NaNs included), in the format dtype."""
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(DTYPES[fmt])


def _special(fmt: str) -> np.ndarray:
    """Zeros, subnormals, binade edges, the largest number, infinities, NaN, tie makers."""
    finfo = ml_dtypes.finfo(DTYPES[fmt])
    tiny, eps, big = float(finfo.smallest_subnormal), float(finfo.eps), float(finfo.max)
    normal = float(finfo.smallest_normal)
    values = [0.0, tiny, 3 * tiny, normal - tiny, normal, 1.0, 1.0 + eps, 1.5, 2.0 - eps, eps / 2, eps / 4,
              3.0, 0.1, 1 / 3, big, big / 2, 2.0 ** (np.log2(big) // 2), np.inf, np.nan]
    values = np.array(values + [-v for v in values])
    return values.astype(DTYPES[fmt])


def _bits(x: np.ndarray) -> np.ndarray:
    """float64 bit patterns, every NaN as one pattern (payloads are not compared)."""
    wide = np.where(np.isnan(x), np.nan, np.asarray(x, dtype=np.float64))
    return wide.view(np.uint64)


def _legacy(fmt: str):
    return strict_precision(f"{fmt}-strict", held=False)


@pytest.mark.parametrize("fmt", FMTS)
def test_special_operands_against_exact_rounding(backend: str, fmt: str) -> None:
    """All pairs of special values, + - * /: the held result equals the exact result rounded
    once (Fraction), with IEEE's infinities, NaNs and signed zeros (float64 decides those)."""
    special = _special(fmt)
    x, y = (a.ravel() for a in np.meshgrid(special, special))
    hx, hy = to_held(x, fmt), to_held(y, fmt)
    decided = 0
    for name, op in OPS.items():
        with np.errstate(all="ignore"):
            result = op(hx, hy)
            wide = op(x.astype(np.float64), y.astype(np.float64))
        assert type(result) is held_class(fmt)
        got = np.asarray(result, dtype=np.float64)
        expected = np.empty_like(wide)
        for i, (a, b, w) in enumerate(zip(x.astype(float), y.astype(float), wide, strict=True)):
            if not np.isfinite(w) or w == 0:  # inf, nan and exact zeros: IEEE rules (float64 is exact here)
                expected[i] = w
                continue
            expected[i] = exact_round(EXACT[name](Fraction(a), Fraction(b)), DTYPES[fmt])
            decided += 1
        bad = _bits(got) != _bits(expected)
        assert not bad.any(), (name, x[bad][:4], y[bad][:4], got[bad][:4], expected[bad][:4])
    assert decided > 2 * special.size**2  # finite cases decided by exact rounding (of 4 n^2)


@pytest.mark.parametrize("fmt", FMTS)
def test_every_value_bit_identical_to_format_arithmetic(backend: str, fmt: str) -> None:
    """Every format value against 12 random partners (+ - * /) and sqrt of every value: the
    held result has the bits of NumPy float16 / ml_dtypes bfloat16 arithmetic."""
    every = _patterns(fmt)
    partners = np.random.default_rng(3).choice(every, 12)
    x, y = (a.ravel() for a in np.meshgrid(every, partners))
    hx, hy = to_held(x, fmt), to_held(y, fmt)
    with np.errstate(all="ignore"):
        for name, op in OPS.items():
            assert np.array_equal(_bits(np.asarray(op(hx, hy))), _bits(op(x, y).astype(np.float64))), name
        assert np.array_equal(_bits(np.asarray(np.sqrt(to_held(every, fmt)))), _bits(np.sqrt(every).astype(float)))
    assert x.size == 12 << 16  # cases decided per operation


@pytest.mark.parametrize("fmt", FMTS)
def test_cast_from_float64(backend: str, fmt: str) -> None:
    """float64 -> held equals NumPy's ``astype`` to the format: binary16 rounded once (exact
    rational check on a sample); bfloat16 through binary32, as ml_dtypes converts."""
    rng = np.random.default_rng(4)
    values = rng.integers(0, 2**64, size=100_000, dtype=np.uint64).view(np.float64)
    base = rng.standard_normal(2000).astype(DTYPES[fmt]).astype(np.float64)
    ulp = np.abs(base) * 2.0 ** -(11 if fmt == "float16" else 8)
    near = np.concatenate([base + ulp / 2 * f for f in (1, 1 + 2**-30, 1 - 2**-30, -1, 1 + 2**-20)])
    values = np.concatenate([values, near, near * 2.0**-20, [65520.0, -65519.99, 2.0**-25, 2.0**-134, np.inf, np.nan]])
    with np.errstate(all="ignore"):
        got = to_held(values, fmt)
        expected = values.astype(DTYPES[fmt]).astype(np.float64)
    assert type(got) is held_class(fmt)
    assert np.array_equal(_bits(np.asarray(got)), _bits(expected))
    if fmt == "float16":
        finite = values[np.isfinite(values)]
        for v in rng.choice(finite, 300):
            assert float(to_held(np.array([v]), fmt)[0]) == exact_round(Fraction(float(v)), DTYPES[fmt])


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("shape", [(7, 40, 3), (1, 5, 1), (50, 1, 9), (300, 64, 4), (1000, 4, 64), (2, 0, 3)])
def test_dot_bit_identical_to_format_storage(backend: str, fmt: str, shape: tuple[int, int, int]) -> None:
    n, k, m = shape
    rng = np.random.default_rng(k + m)
    dtype, ctx = DTYPES[fmt], precision(f"{fmt}-strict")
    for a, b in ((_hard_arrays(rng, (n, k), dtype), _hard_arrays(rng, (k, m), dtype)),
                 (rng.standard_normal((n, k)).astype(dtype), rng.standard_normal((k, m)).astype(dtype))):
        with np.errstate(all="ignore"):
            want = sequential_dot(a, b, dtype)
            assert np.array_equal(want.view(np.uint16), reference_dot(a, b, dtype, _round).view(np.uint16))
            for ha in (to_held(a, fmt), np.asfortranarray(to_held(a, fmt))):  # either layout
                got = ctx.dot(ha, to_held(b, fmt))
                assert type(got) is held_class(fmt) and got.shape == (n, m)
                assert np.array_equal(_bits(np.asarray(got)), _bits(want.astype(np.float64)))
            if k:  # a vector b, and leading axes of a
                got = ctx.dot(to_held(a, fmt).reshape(n, 1, k), to_held(b[:, 0], fmt))
                assert np.array_equal(_bits(np.asarray(got)).ravel(), _bits(want[:, 0].astype(np.float64)))


@pytest.mark.parametrize("fmt", FMTS)
def test_sum_bit_identical_to_format_storage(backend: str, fmt: str) -> None:
    rng = np.random.default_rng(5)
    dtype, ctx = DTYPES[fmt], precision(f"{fmt}-strict")
    x = _hard_arrays(rng, (6, 300), dtype)
    with np.errstate(all="ignore"):
        for axis in (None, 0, 1):
            got, want = ctx.sum(to_held(x, fmt), axis=axis), sequential_sum(x, axis, dtype)
            assert type(got) is held_class(fmt)
            assert np.array_equal(_bits(np.asarray(got)), _bits(want.astype(np.float64)))
    stall = 2.0 ** (11 if fmt == "float16" else 8)  # 2^p + 1 rounds back to 2^p at every step
    assert float(ctx.sum(ctx.cast(np.ones(5000)))) == stall


FUNCTIONS = ("exp", "log", "log1p", "expm1", "tanh", "atan", "sqrt", "sigmoid", "log_sigmoid", "softplus", "relu",
             "elu")


@pytest.mark.parametrize("fmt", FMTS)
def test_functions_and_derivatives_on_every_value(backend: str, fmt: str) -> None:
    """Each function (a table lookup on held arrays) and its derivative equal the float64
    evaluation rounded once, at every format value."""
    every = _patterns(fmt)
    held, ctx = to_held(every, fmt), precision(f"{fmt}-strict")
    for name in FUNCTIONS:
        function = getattr(ctx, name)
        with np.errstate(all="ignore"):
            got, want = function(held), function(every)
        assert type(got) is held_class(fmt)
        assert np.array_equal(_bits(np.asarray(got)), _bits(want.astype(np.float64))), name
        finite = np.isfinite(every.astype(np.float64)) & (every.astype(np.float64) > 0)
        slope = autograd.elementwise_grad(lambda v, f=function: f(v))
        with np.errstate(all="ignore"):
            got_slope, want_slope = slope(held[finite]), slope(every[finite])
        assert np.array_equal(_bits(np.asarray(got_slope)), _bits(want_slope.astype(np.float64))), name


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("kind", ["precision_cost", "strict_lowp"])
def test_flows_and_gradients_bit_identical_to_format_storage(backend: str, fmt: str, kind: str) -> None:
    """The benchmark flows: forward, inverse and the gradient of a float64 loss with respect to
    the input, held against stored in the format dtype."""
    held, stored = precision(f"{fmt}-strict"), _legacy(fmt)
    flow, params, x = _build(kind)
    x = x[:16]
    z_held, z_stored = flow.forward(params, x, ctx=held), flow.forward(params, x, ctx=stored)
    assert held.owns(z_held) and z_stored.dtype == DTYPES[fmt]
    assert np.array_equal(_bits(held.to_float64(z_held)), _bits(stored.to_float64(z_stored)))
    back_held, back_stored = flow.inverse(params, z_held, ctx=held), flow.inverse(params, z_stored, ctx=stored)
    assert np.array_equal(_bits(held.to_float64(back_held)), _bits(stored.to_float64(back_stored)))

    def loss(v, ctx):
        z = flow.forward(params, v, ctx=ctx).astype(np.float64)
        return np.sum(z * z)

    g_held, g_stored = autograd.grad(loss)(x, held), autograd.grad(loss)(x, stored)
    assert g_held.dtype == np.float64 and np.all(np.isfinite(g_held))
    assert np.array_equal(_bits(g_held), _bits(g_stored))


def test_backends_give_the_same_bits() -> None:
    pytest.importorskip("numba", reason="needs the fast extra: pip install 'lipflow[fast]'")
    flow, params, x = _build("strict_lowp")
    results = {}
    for name in ("numpy", "numba"):
        with accel.kernels(name):
            ctx = precision("bfloat16-strict")
            results[name] = ctx.to_float64(flow.forward(params, x, ctx=ctx))
    assert np.array_equal(_bits(results["numpy"]), _bits(results["numba"]))


@pytest.mark.parametrize("fmt", FMTS)
def test_how_operands_are_taken(fmt: str) -> None:
    ctx, cls, dtype = precision(f"{fmt}-strict"), held_class(fmt), DTYPES[fmt]
    x = ctx.cast(np.array([1.0, 2.0, 3.0]))
    third = float(np.float64(1 / 3).astype(dtype))
    # Python numbers are rounded to the format first (NumPy's rule for float16 arrays)
    assert type(x * (1 / 3)) is cls and float((x * (1 / 3))[0]) == third
    # binary32 operands (a cotangent cast by autograd, a stripped held array) are rounded first
    assert np.array_equal(np.asarray(x + np.float32(1 / 3)), np.asarray(x + third))
    # float64 operands promote, as for a float16 array: plain float64, outside strict semantics
    wide = x + np.full(3, 1 / 3)
    assert type(wide) is np.ndarray and wide.dtype == np.float64 and wide[0] == 1 + 1 / 3
    # moving values keeps the representation; computing NumPy functions round once
    assert type(np.concatenate([x, x])) is cls and type(np.where(x > 1, x, -x)) is cls
    assert float(np.where(x > 1, x, 1 / 3)[0]) == third  # a number placed by a NumPy function is rounded
    assert float(np.concatenate([x, np.float32([1 / 3])])[-1]) == third
    assert type(x.view(np.ndarray)) is cls and type(plain(x)) is np.ndarray
    assert type(x.astype(np.float32)) is np.ndarray and x.astype(np.float64).dtype == np.float64
    m = ctx.cast(np.random.default_rng(6).standard_normal((4, 30)))
    accumulated = round_to_format(plain(m) @ plain(m).T, fmt)
    assert type(np.dot(m, m.T)) is cls and np.array_equal(np.asarray(np.dot(m, m.T)), accumulated)
    # stores and in-place operations keep format values
    y = x.copy()
    y[0] = 1 / 3
    y += 1 / 3
    assert type(y) is cls and float(y[0]) == float((to_held(np.array([third]), fmt) + third)[0])
    # reductions run on the format dtype itself
    assert np.array_equal(np.asarray(np.sum(m, axis=1)), np.sum(to_format(m), axis=1).astype(np.float32))
    assert type(np.max(m)) is cls and float(np.max(m)) == float(np.max(to_format(m)))
    # bookkeeping
    assert infer_precision(x) is ctx and ctx.owns(x) and not ctx.owns(plain(x))
    assert type(pickle.loads(pickle.dumps(x))) is cls
    assert repr(x).startswith(cls.__name__) and isinstance(x, HeldArray)
    assert type(ctx.const(0.1)) is cls and float(ctx.const(0.1)) == float(np.float64(0.1).astype(dtype))


def test_flow_output_and_inference() -> None:
    flow = lipflow.Flow([lipflow.AffineCoupling(4), lipflow.Reverse(4), lipflow.AdditiveCoupling(4)])
    params = flow.init(0)
    z = flow.forward(params, np.random.default_rng(7).standard_normal((5, 4)), ctx="float16-strict")
    assert type(z) is held_class("float16")
    back = flow.inverse(params, z)  # the context is inferred from the held array
    assert type(back) is held_class("float16")


def test_bit_rounding_without_hardware_conversion() -> None:
    """The compiled binary16 rounding used where the CPU cannot convert to binary16 in hardware
    equals the NumPy bit-level rounding on the critical points of test_strict_round32."""
    numba = pytest.importorskip("numba", reason="needs the fast extra: pip install 'lipflow[fast]'")
    from lipflow.precision import strict_numba
    from tests.test_strict_round32 import _critical_points

    kernel = numba.vectorize(["float32(float32)"])(lambda v: strict_numba._round_f16_bits(v))
    x = np.concatenate([_critical_points("float16"), np.float32([np.inf, -np.inf, np.nan, 0.0, -0.0])])
    with np.errstate(all="ignore"):
        got, want = kernel(x), round_to_format(x, "float16")
    same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
    assert x.size > 100_000 and same.all()
