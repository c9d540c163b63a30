"""Triple-double ('td'): accuracy against mpmath at 400 bits, the compiled kernels bit for bit
against the NumPy kernels, and the context on flows."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from lipflow.errors import LipflowError
from lipflow.precision import accel, infer_precision, precision
from lipflow.precision import td_kernels as k
from tests.helpers import alternating_couplings

#: theory/lem-td-arithmetic.md: add <= 19 u^3 (|a| + |b|), mul <= 106 u^3 |ab|, div <= 2^-148 |a/b|
ADD_BITS, MUL_BITS, DIV_BITS = 154.7, 152.2, 148.0
#: what the context reports (covers the transcendental kernels, measured at ~2^-133 and below)
CONTEXT_BITS = precision("td").mantissa_bits


def _td(n: int, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(n) * scale
    x1 = x0 * rng.uniform(-1, 1, n) * 2.0**-53
    x2 = x1 * rng.uniform(-1, 1, n) * 2.0**-53
    return k.renorm(x0, x1, x2)


def _mp(parts: tuple[np.ndarray, ...]) -> list[mpmath.mpf]:
    return [mpmath.mpf(a) + mpmath.mpf(b) + mpmath.mpf(c) for a, b, c in zip(*parts, strict=True)]


def _worst_bits(got, reference, scale=None) -> float:
    """min over points of -log2(|got - ref| / scale) (scale |ref| by default)."""
    worst = np.inf
    for i, (g, r) in enumerate(zip(_mp(got), reference, strict=True)):
        error = abs(g - r)
        if error:
            worst = min(worst, -float(mpmath.log(error / (abs(r) if scale is None else scale[i]), 2)))
    return worst


@pytest.mark.parametrize("scale", [1e-3, 1.0, 20.0])
def test_arithmetic_against_mpmath(scale):
    a, b = _td(200, scale, 1), _td(200, scale, 2)
    with mpmath.workprec(400):
        ma, mb = _mp(a), _mp(b)
        assert _worst_bits(k.add(*a, *b), [x + y for x, y in zip(ma, mb, strict=True)],
                           [abs(x) + abs(y) for x, y in zip(ma, mb, strict=True)]) >= ADD_BITS
        assert _worst_bits(k.mul(*a, *b), [x * y for x, y in zip(ma, mb, strict=True)]) >= MUL_BITS
        assert _worst_bits(k.div(*a, *b), [x / y for x, y in zip(ma, mb, strict=True)]) >= DIV_BITS


@pytest.mark.parametrize("name", ["exp", "expm1", "tanh", "sigmoid"])
@pytest.mark.parametrize("scale", [1e-4, 0.3, 3.0, 60.0])
def test_elementary_against_mpmath(name, scale):
    a = _td(150, scale, 3)
    exact = {"exp": mpmath.exp, "expm1": mpmath.expm1, "tanh": mpmath.tanh,
             "sigmoid": lambda v: 1 / (1 + mpmath.exp(-v))}[name]
    with mpmath.workprec(400):
        reference = [exact(v) for v in _mp(a)]
        assert _worst_bits(getattr(k, name)(*a), reference) >= CONTEXT_BITS


def test_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 800.0, -800.0])
    zero = np.zeros_like(x)
    with np.errstate(all="ignore"):
        e0, e1, _ = k.exp(x, zero, zero)
        t0, _, _ = k.tanh(x, zero, zero)
    assert np.array_equal(e0[:6], [1.0, 1.0, np.inf, 0.0, np.nan, np.inf], equal_nan=True)
    assert e0[6] == 0.0 and np.all(e1[np.isinf(e0)] == 0.0)
    assert np.array_equal(t0, [0.0, -0.0, 1.0, -1.0, np.nan, 1.0, -1.0], equal_nan=True)


@pytest.fixture(scope="module")
def tn():
    pytest.importorskip("numba", reason="needs the fast extra: pip install 'lipflow[fast]'")
    from lipflow.precision import td_numba

    return td_numba


def _same(a, b) -> bool:
    pairs = zip(a, b, strict=True)
    return all(np.array_equal(np.asarray(x).view(np.int64), np.asarray(y).view(np.int64)) for x, y in pairs)


def _mixed() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = [_td(200, s, i) for i, s in enumerate((1e-6, 0.5, 4.0, 90.0, 500.0))]
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 710.0, -746.0, 64.5])
    return tuple(np.concatenate([p[i] for p in parts] + [specials if i == 0 else 0 * specials]) for i in range(3))


@pytest.mark.parametrize("name", ["exp", "expm1", "tanh", "sigmoid"])
def test_compiled_unary_bit_identical(tn, name):
    a = _mixed()
    with np.errstate(all="ignore"):
        expected = getattr(k, name)(*a)
    assert _same(tn.unary(name, a), expected)


@pytest.mark.parametrize("name", ["add", "mul", "div"])
def test_compiled_binary_bit_identical(tn, name):
    a = _mixed()
    b = tuple(np.roll(p, 17) for p in a)
    with np.errstate(all="ignore"):
        expected = getattr(k, f"{name}_checked")(*a, *b)
    assert _same(tn.binary(name, a, b), expected)


def test_compiled_dot_bit_identical(tn):
    rng = np.random.default_rng(5)
    a = tuple(rng.standard_normal((30, 17)) * s for s in (1.0, 2.0**-53, 2.0**-106))
    b = tuple(rng.standard_normal((17, 3)) * s for s in (1.0, 2.0**-54, 0.0))
    assert _same(tn.dot(a, b), k.dot(*a, *b))


@pytest.mark.parametrize("kind", ["affine", "additive"])
def test_flow_against_mpmath(kind):
    """Forward and inverse at td agree with mp60 (~200 bits) to the context's bits less the
    flow's conditioning (measured here as float64's loss against the same reference)."""
    flow = alternating_couplings(kind)
    params = flow.init(seed=0)
    x = np.random.default_rng(3).standard_normal((8, 2))
    td, mp = precision("td"), precision("mp60")
    reference = mp.to_float64(flow.forward(params, x, ctx=mp))
    with accel.kernels("numpy"):
        z = flow.forward(params, x, ctx=td)
    exact = flow.forward(params, x, ctx=mp)
    with mpmath.workprec(200):
        errors = [abs(g - r) / abs(r) for g, r in zip(td.to_mp(z).ravel(), exact.ravel(), strict=True) if r != 0]
    float64_error = np.max(np.abs(flow.forward(params, x) - reference) / np.abs(reference))
    lost = max(0.0, 52.0 + float(np.log2(max(float64_error, 2.0**-60))))
    assert max(errors) <= 2.0 ** -(CONTEXT_BITS - lost - 4)
    xr = flow.inverse(params, z, ctx=td)
    assert np.allclose(td.to_float64(xr), x, rtol=0, atol=1e-12)


def test_flow_backends_bit_identical(tn):
    flow = alternating_couplings("affine")
    params = flow.init(seed=0)
    x = np.random.default_rng(4).standard_normal((32, 2))
    td = precision("td")
    out = {}
    for backend in ("numpy", "numba"):
        with accel.kernels(backend):
            z = flow.forward(params, x, ctx=td)
            out[backend] = (*z.parts, *flow.inverse(params, z, ctx=td).parts)
    assert _same(out["numpy"], out["numba"])


def test_context_registry_and_refusals():
    td = precision("triple-double")
    assert td == precision("td") and td.mantissa_bits == 128
    x = td.cast(np.array([[1.0, 2.0]]))
    assert infer_precision(x).name == "td"
    with pytest.raises(LipflowError, match="mp50"):
        td.log(x)
    with pytest.raises(TypeError, match="not converted implicitly"):
        np.asarray(x)
    assert td.to_float64(td.const("0.1"))[()] == 0.1
