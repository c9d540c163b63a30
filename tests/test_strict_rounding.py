"""lem:binary32-double-rounding: binary32 then one rounding is correctly rounded for binary16
and bfloat16, and the fast strict kernels are bit-identical to the one-index-at-a-time
definition.

Oracles are independent of the code under test: exact rational rounding (``Fraction``) for
Hypothesis-drawn operands, and exact float64 comparisons against the midpoints around each
result for the exhaustive sweeps (every binary16 / bfloat16 pattern x a sample of partners).
"""

from __future__ import annotations

import os
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lipflow
from lipflow.precision import precision
from lipflow.precision.strict import _round
from lipflow.precision.strict_kernels import reference_dot, sequential_dot, sequential_sum

BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
#: (significand bits p, smallest normal exponent, largest exponent) of each format
FORMATS = {F16: (11, -14, 15), BF16: (8, -126, 127)}
#: partners per exhaustive sweep: a sample in the default profile, more in the ci profile
PARTNERS = 256 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 24


def exact_round(value: Fraction, dtype: np.dtype) -> float:
    """Round a rational to nearest, ties to even, in ``dtype`` (subnormals, overflow to inf)."""
    p, emin, emax = FORMATS[dtype]
    if value == 0:
        return 0.0
    sign = -1 if value < 0 else 1
    a = abs(value)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    quantum = Fraction(2) ** (max(e, emin) - p + 1)
    scaled = a / quantum
    n = scaled.numerator // scaled.denominator
    rest = scaled - n
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and n % 2 == 1):
        n += 1
    result = n * quantum
    if result >= Fraction(2) ** (emax + 1):
        return sign * float("inf")
    return sign * float(result)


def _finite_patterns(dtype: np.dtype) -> np.ndarray:
    values = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(dtype)
    return values[np.isfinite(values.astype(np.float32))]


def _pattern(dtype: np.dtype):
    return st.integers(0, (1 << 16) - 1).map(lambda b: np.array([b], dtype=np.uint16).view(dtype)[0]).filter(
        lambda v: np.isfinite(np.float32(v))
    )


@pytest.mark.parametrize("dtype", [F16, BF16], ids=["float16", "bfloat16"])
@given(data=st.data())
def test_binary32_then_one_rounding_is_exact_rational_rounding(dtype: np.dtype, data) -> None:
    x = data.draw(_pattern(dtype))
    y = data.draw(_pattern(dtype))
    fx, fy = Fraction(float(x)), Fraction(float(y))
    cases = {"add": (x + y, fx + fy), "sub": (x - y, fx - fy), "mul": (x * y, fx * fy)}
    if fy != 0:
        cases["div"] = (x / y, fx / fy)
    for name, (got, exact) in cases.items():
        assert float(got) == exact_round(exact, dtype), (name, float(x), float(y))
    # the strict kernels' own path: float32 operation, one cast to the format
    with np.errstate(all="ignore"):
        assert float((np.float32(x) * np.float32(y)).astype(dtype)) == exact_round(fx * fy, dtype)


def _neighbours(r: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The format's numbers just below and above each finite r, as float64 (the one above
    the largest finite number is 2^(emax+1), where rounding overflows)."""
    _, _, emax = FORMATS[dtype]
    stored = r.astype(dtype)
    with np.errstate(over="ignore"):
        lo = np.nextafter(stored, np.array(-np.inf, dtype=dtype)).astype(np.float64)
        hi = np.nextafter(stored, np.array(np.inf, dtype=dtype)).astype(np.float64)
    top = 2.0 ** (emax + 1)
    lo = np.where(np.isinf(lo), -top, lo)
    hi = np.where(np.isinf(hi), top, hi)
    return lo, hi


def _assert_correctly_rounded(r: np.ndarray, sign_z_minus, dtype: np.dtype) -> int:
    """Check each result r (float64, exact) against the exact z through ``sign_z_minus(t)`` =
    sign(z - t), exact. Returns how many finite cases were decided."""
    p, _, emax = FORMATS[dtype]
    even = (r.astype(dtype).view(np.uint16) & 1) == 0
    finite = np.isfinite(r)
    threshold = 2.0 ** (emax + 1) - 2.0 ** (emax - p)  # midpoint between the largest number and 2^(emax+1)
    # overflow: |z| >= threshold exactly when the result is infinite
    over_pos = sign_z_minus(np.full_like(r, threshold)) >= 0
    over_neg = sign_z_minus(np.full_like(r, -threshold)) <= 0
    assert np.array_equal(~finite, over_pos | over_neg)
    lo, hi = _neighbours(np.where(finite, r, 0.0), dtype)
    m_lo, m_hi = (lo + r) / 2, (r + hi) / 2  # exact in float64
    below, above = sign_z_minus(m_lo), sign_z_minus(m_hi)
    ok = (below >= 0) & (above <= 0) & ((below != 0) | even) & ((above != 0) | even)
    bad = finite & ~ok
    assert not bad.any(), f"{int(bad.sum())} results not correctly rounded, e.g. index {np.flatnonzero(bad)[:5]}"
    return int(finite.sum())


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@pytest.mark.parametrize("dtype", [F16, BF16], ids=["float16", "bfloat16"])
def test_exhaustive_operations_against_exact_midpoints(dtype: np.dtype) -> None:
    """Every finite pattern x against PARTNERS partners y for + - * /, and every pattern for
    sqrt: the binary32-then-round result lies between the exact midpoints around it."""
    xs = _finite_patterns(dtype)
    rng = np.random.default_rng(0)
    partners = rng.choice(xs, size=PARTNERS, replace=False)
    partners = partners[partners.astype(np.float64) != 0]
    x = np.repeat(xs[None, :], len(partners), axis=0).ravel()
    y = np.repeat(partners[:, None], len(xs), axis=1).ravel()
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    decided = 0
    with np.errstate(all="ignore"):
        for op in ("add", "sub", "mul", "div"):
            got = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[op](x, y)
            r = got.astype(np.float64)
            assert not np.isnan(r).any()
            if op in ("add", "sub"):
                s, e = _two_sum(x64, y64 if op == "add" else -y64)  # z = s + e exactly

                def sign(t, s=s, e=e):
                    return np.where(s == t, np.sign(e), np.sign((s - t) + e))
            elif op == "mul":
                z = x64 * y64  # <= 22 significant bits: exact

                def sign(t, z=z):
                    return np.sign(z - t)
            else:  # sign(x / y - t) = sign(x - t y) sign(y); t y has <= 2p + 2 bits: exact
                def sign(t):
                    return np.sign(x64 - t * y64) * np.sign(y64)
            decided += _assert_correctly_rounded(r, sign, dtype)
        nonneg = xs[xs.astype(np.float64) >= 0]
        root = np.sqrt(nonneg).astype(np.float64)
        v = nonneg.astype(np.float64)
        decided += _assert_correctly_rounded(root, lambda t: np.where(t < 0, 1.0, np.sign(v - t * t)), dtype)
    assert decided > 4 * len(x) // 2


@pytest.mark.parametrize("dtype", [F16, BF16], ids=["float16", "bfloat16"])
def test_round_matches_round_to_odd(dtype: np.dtype) -> None:
    """The strict contexts' float64 -> format rounding equals exact rounding (round to odd in
    float32 then nearest: Boldo-Melquiond), on random float64 bit patterns and near ties."""
    rng = np.random.default_rng(1)
    values = rng.integers(0, 2**64, size=200_000, dtype=np.uint64).view(np.float64)
    values = values[np.isfinite(values)]
    base = rng.standard_normal(1000).astype(dtype).astype(np.float64)
    ulp = np.abs(base) * 2.0 ** -FORMATS[dtype][0]
    near = np.concatenate([base + ulp / 2 * f for f in (1, 1 + 2**-30, 1 - 2**-30, -1, -(1 + 2**-40))])
    values = np.concatenate([values, near, [2.0**-133 * 1.5, -(2.0**-134), 2.0**-134 * (1 + 2**-20)]])
    with np.errstate(all="ignore"):
        got = _round(values, dtype).astype(np.float64)
        single = values.astype(np.float32)
        inexact = single.astype(np.float64) != values
        too_far = inexact & (np.abs(single.astype(np.float64)) > np.abs(values))
        single = np.where(too_far, np.nextafter(single, np.float32(0)), single)
        odd = (single.view(np.uint32) | inexact.astype(np.uint32)).view(np.float32)
        expected = odd.astype(dtype).astype(np.float64)
    assert np.array_equal(got, expected)
    sample = rng.choice(len(values), size=200, replace=False)
    for v, g in zip(values[sample], got[sample], strict=True):
        assert g == exact_round(Fraction(float(v)), dtype)


def _hard_arrays(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Random values with mixed magnitudes (ties, cancellation, subnormals, overflow)."""
    values = rng.standard_normal(shape) * np.exp2(rng.integers(-30, 12, size=shape))
    if dtype == BF16:
        values *= np.exp2(rng.integers(-100, 100, size=shape))
    return values.astype(dtype)


@pytest.mark.parametrize("dtype", [F16, BF16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("shape", [(7, 40, 3), (1, 5, 1), (50, 1, 9), (3, 64, 1), (2, 0, 3)])
def test_sequential_dot_bit_identical_to_definition(dtype: np.dtype, shape: tuple[int, int, int]) -> None:
    n, k, m = shape
    rng = np.random.default_rng(k + m)
    for a, b in ((_hard_arrays(rng, (n, k), dtype), _hard_arrays(rng, (k, m), dtype)),
                 (rng.standard_normal((n, k)).astype(dtype), rng.standard_normal((k, m)).astype(dtype))):
        with np.errstate(all="ignore"):
            got, want = sequential_dot(a, b, dtype), reference_dot(a, b, dtype, _round)
        assert got.dtype == dtype and got.shape == (n, m)
        assert np.array_equal(got.view(np.uint16), want.view(np.uint16))


@pytest.mark.parametrize("dtype", [F16, BF16], ids=["float16", "bfloat16"])
def test_sequential_sum_rounds_each_partial_sum(dtype: np.dtype) -> None:
    rng = np.random.default_rng(5)
    x = _hard_arrays(rng, (4, 300), dtype)
    with np.errstate(all="ignore"):
        got = sequential_sum(x, 1, dtype)
        for row, total in zip(x, got, strict=True):
            exact = 0.0
            for value in row:  # each step: the exact sum of two stored numbers, rounded once
                exact = exact_round(Fraction(exact) + Fraction(float(value)), dtype) if np.isfinite(exact) else exact
            assert float(total) == exact or (np.isnan(float(total)) and not np.isfinite(exact))
    # sequential, never pairwise, whatever the layout: 2^p + 1 rounds back to 2^p at every step
    stall = 2.0 ** FORMATS[dtype][0]
    for shape, axis in (((5000,), None), ((5000, 1), 0), ((1, 5000), 1), ((2, 5000), 1)):
        assert np.all(sequential_sum(np.ones(shape, dtype=dtype), axis, dtype).astype(float) == stall)


def _build(kind: str) -> tuple[lipflow.Flow, dict, np.ndarray]:
    if kind == "precision_cost":  # benchmarks/precision_cost.py's flow (fewer points)
        blocks = [
            lipflow.AffineCoupling(2, conditioning="first", t=lipflow.MLP((32,)), s=lipflow.MLP((32,)))
            if i % 2 == 0
            else lipflow.AdditiveCoupling(2, conditioning="second", t=lipflow.MLP((32,)))
            for i in range(20)
        ]
        dim = 2
    else:  # benchmarks/strict_lowp.py's flow
        dim = 8
        blocks = [
            lipflow.AffineCoupling(dim, conditioning="first" if i % 2 == 0 else "second",
                                   t=lipflow.MLP((64,)), s=lipflow.MLP((64,)))
            for i in range(4)
        ]
    flow = lipflow.Flow(blocks)
    return flow, flow.init(0), np.random.default_rng(0).standard_normal((64, dim))


class _DefinitionStrict(type(precision("float16-strict"))):
    """The strict context stored in the format dtype, with dot and sum by definition (one index
    at a time, float64)."""

    def dot(self, a, b):
        a, b = np.asarray(a), np.asarray(b)
        vector = b.ndim == 1
        result = reference_dot(a, b[:, None] if vector else b, a.dtype, _round)
        return result[..., 0] if vector else result

    def sum(self, x, axis=None):
        x = np.asarray(x)
        flat = x.ravel() if axis is None else np.moveaxis(x, axis, -1)
        return reference_dot(flat, np.ones((flat.shape[-1], 1), dtype=x.dtype), x.dtype, _round)[..., 0]


@pytest.mark.parametrize("name", ["float16-strict", "bfloat16-strict"])
@pytest.mark.parametrize("kind", ["precision_cost", "strict_lowp"])
def test_benchmark_flows_bit_identical_to_definition(name: str, kind: str) -> None:
    fast = precision(name)
    definition = _DefinitionStrict(fast.name, fast.mantissa_bits, fast.semantics, held=False)
    flow, params, x = _build(kind)
    z_fast = flow.forward(params, x, ctx=fast)
    z_def = flow.forward(params, x, ctx=definition)
    assert z_def.dtype == fast.format_dtype and fast.owns(z_fast)
    assert np.array_equal(fast.to_float64(z_fast).view(np.uint64), definition.to_float64(z_def).view(np.uint64))
    x_fast = flow.inverse(params, z_fast, ctx=fast)
    x_def = flow.inverse(params, z_def, ctx=definition)
    assert np.array_equal(fast.to_float64(x_fast).view(np.uint64), definition.to_float64(x_def).view(np.uint64))
