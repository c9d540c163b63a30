"""Double-double exponential family: the reduced expm1 within its proven bound
(theory/lem-dd-expm1.md), the full functions against mpmath, and block-wise evaluation
bit-identical to one pass."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from lipflow.precision import dd_array
from lipflow.precision import dd_kernels as kern

RHO = 1.0001 * math.log(2) / (2 * 2048)


def _dd_sample(values: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Double-doubles hi + lo near ``values`` with a random, normalised lo part."""
    lo = values * 2.0**-53 * rng.uniform(-1, 1, values.size)
    hi = values + lo
    return hi, lo - (hi - values)


def _relative_errors(hi, lo, out_hi, out_lo, reference) -> list:
    errors = []
    with mpmath.workprec(300):
        for h, low, a, b in zip(hi, lo, out_hi, out_lo, strict=True):
            exact = reference(mpmath.mpf(h) + mpmath.mpf(low))
            if exact != 0 and 1e-290 < abs(exact) < 1e300:
                errors.append(abs((mpmath.mpf(a) + mpmath.mpf(b) - exact) / exact))
    return errors


def test_expm1_reduced_within_lemma_bound() -> None:
    rng = np.random.default_rng(0)
    r = np.concatenate([rng.uniform(-RHO, RHO, 400), [RHO, -RHO, 1e-280, -1e-20, 2.0**-40],
                        RHO * (1 - 2.0**-rng.integers(1, 40, 20))])
    hi, lo = _dd_sample(r, rng)
    errors = _relative_errors(hi, lo, *kern._expm1_reduced(hi, lo), mpmath.expm1)
    assert len(errors) == r.size  # every case decided
    assert max(errors) < mpmath.mpf(2) ** -103


@pytest.mark.parametrize("name,reference", [
    ("expm1", mpmath.expm1), ("exp", mpmath.exp), ("tanh", mpmath.tanh),
    ("sigmoid", lambda v: 1 / (1 + mpmath.exp(-v))),
])
def test_elementary_functions_against_mpmath(name, reference) -> None:
    """Estimate, not a bound: >= 102 correct bits (16 units of 2^-106) on every sampled point."""
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal(60), rng.uniform(-40, 40, 60), rng.standard_normal(30) * 1e-4,
                        rng.integers(-4000, 4000, 60) * math.log(2) / 2048, rng.uniform(-700, 700, 30)])
    hi, lo = _dd_sample(x, rng)
    out = getattr(kern, name)(hi, lo)
    errors = _relative_errors(hi, lo, *out, reference)
    assert len(errors) >= 200
    assert max(errors) < mpmath.mpf(2) ** -102


def test_chunked_kernels_bit_identical() -> None:
    rng = np.random.default_rng(2)
    n = 3 * dd_array.CHUNK + 17
    x = np.concatenate([rng.standard_normal(n - 4) * 5, [np.inf, -np.inf, np.nan, 800.0]]).reshape(-1, 1)
    hi, lo = _dd_sample(x.ravel(), rng)
    hi, lo = hi.reshape(x.shape), lo.reshape(x.shape)
    for kernel in (kern.tanh, kern.exp, kern.expm1, kern.sigmoid, kern.log1p, kern.softplus):
        with np.errstate(all="ignore"):
            whole = kernel(np.abs(hi), lo) if kernel is kern.log1p else kernel(hi, lo)
            blocks = dd_array._chunked(kernel, np.abs(hi) if kernel is kern.log1p else hi, lo)
        for a, b in zip(whole, blocks, strict=True):
            assert a.shape == b.shape
            np.testing.assert_array_equal(a, b)


def test_reduction_stays_within_the_lemma_range() -> None:
    """The reduced argument satisfies the lemma's hypothesis |r_h| <= rho, |r_l| <= u |r_h|,
    over the whole clipped range (where the quotient a N / ln2 reaches 2^21)."""
    rng = np.random.default_rng(3)
    a = np.concatenate([rng.uniform(-746, 710, 20000), rng.standard_normal(2000),
                        (rng.integers(-2**21, 2**21, 2000) + 0.5) * math.log(2) / 2048])
    a = a[(a >= -746) & (a <= 710)]
    _, _, rh, rl = kern._reduce_exp(a, np.zeros_like(a))
    assert np.all(np.abs(rh) <= RHO)
    assert np.all(np.abs(rl) <= 2.0**-53 * np.abs(rh))
