"""Residual blocks: the fixed-point inverse against Banach's bounds, at an mpmath reference."""

from __future__ import annotations

import warnings

import mpmath
import numpy as np
import pytest

import lipflow as lf
from lipflow.blocks.residual import series_truncation_bound
from lipflow.precision import precision


def _reference_inverse(block, params, y):
    """F^-1(y) at mp100 iterated far past convergence (error ~ c^400 < 1e-60)."""
    ref = precision("mp100")
    wide = lf.Residual(
        block.dim,
        hidden=block.hidden,
        activation=block.activation,
        coeff=block.coeff,
        max_iter=400,
        tol=1e-60,
        on_nonconvergence="raise",
    )
    return wide.inverse(params, ref.cast(y), ctx=ref), ref


def _distance(a, b, ctx):
    return [
        ctx.context.sqrt(sum((u - v) ** 2 for u, v in zip(ra, rb, strict=True))) for ra, rb in zip(a, b, strict=True)
    ]


@pytest.mark.parametrize("coeff", [0.5, 0.9])
def test_error_decays_at_least_as_fast_as_the_a_priori_bound(coeff):
    """||x_k - x*|| <= c^k / (1 - c) ||x_1 - x_0|| (theory lem:banach), k = 1..12, at mp50."""
    block = lf.Residual(3, hidden=(8,), coeff=coeff)
    params = block.init(0)
    ctx = precision("mp50")
    y = ctx.cast(np.random.default_rng(1).standard_normal((4, 3)))
    exact, ref = _reference_inverse(block, params, y)
    first = lf.Residual(3, hidden=(8,), coeff=coeff, max_iter=1, on_nonconvergence="ignore").inverse(params, y, ctx=ctx)
    first_step = _distance(first, y, ctx)
    lip = block.lipschitz_g(block._prepare(params))
    assert lip <= coeff * (1 + 1e-12)
    for k in range(1, 13):
        partial = lf.Residual(3, hidden=(8,), coeff=coeff, max_iter=k, on_nonconvergence="ignore")
        x_k = partial.inverse(params, y, ctx=ctx)
        errors = _distance(ref.cast(x_k), exact, ref)
        for error, step in zip(errors, first_step, strict=True):
            assert error <= mpmath.mpf(lip) ** k / (1 - mpmath.mpf(lip)) * step * (1 + mpmath.mpf(10) ** -30)


@pytest.mark.parametrize("coeff", [0.5, 0.9, 0.97])
def test_reported_a_posteriori_bound_really_bounds_the_error(coeff):
    block = lf.Residual(2, hidden=(16,), coeff=coeff, tol=1e-20, max_iter=2000)
    params = block.init(2)
    ctx = precision("mp50")
    y = ctx.cast(3 * np.random.default_rng(2).standard_normal((5, 2)))
    x, info = block.inverse_with_info(params, y, ctx=ctx)
    assert info.all_converged
    exact, ref = _reference_inverse(block, params, y)
    errors = _distance(ref.cast(x), exact, ref)
    for error, bound in zip(errors, info.aposteriori_bound, strict=True):
        assert error <= bound
        assert bound <= 1e-20


def test_non_convergence_is_reported_not_hidden():
    block = lf.Residual(2, coeff=0.97, max_iter=3)
    params = block.init(0)
    y = np.random.default_rng(0).standard_normal((4, 2)) * 5
    with pytest.warns(lf.NonConvergenceWarning, match="did not converge"):
        block.inverse(params, y)
    strict = lf.Residual(2, coeff=0.97, max_iter=3, on_nonconvergence="raise")
    with pytest.raises(lf.NonConvergenceError):
        strict.inverse(params, y)
    _, info = block.inverse_with_info(params, y)
    assert info.iterations == 3 and not info.all_converged


def test_default_tolerance_reaches_rounding_level_quietly(precision_name):
    ctx = precision(precision_name)
    block = lf.Residual(4, hidden=(8,), coeff=0.9)
    params = block.init(3)
    x = np.random.default_rng(3).standard_normal((6, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error", lf.NonConvergenceWarning)
        y = block.forward(params, x, ctx=ctx)
        recovered, info = block.inverse_with_info(params, y, ctx=ctx)
    assert info.all_converged
    # a contraction's inverse loses at most 1/(1-c) times the rounding of one step
    bound = 16 * 4 * ctx.unit_roundoff * (1 + 4) / (1 - 0.9) * (1 + np.max(np.abs(x)))
    assert np.max(np.abs(ctx.to_float64(recovered) - ctx.to_float64(ctx.cast(x)))) <= bound


@pytest.mark.parametrize("terms", [2, 5, 10, 30])
def test_series_logdet_within_truncation_bound(terms):
    exact = lf.Residual(3, hidden=(8,), coeff=0.8)
    series = lf.Residual(3, hidden=(8,), coeff=0.8, logdet_method="series", series_terms=terms)
    params = exact.init(4)
    x = np.random.default_rng(4).standard_normal((10, 3))
    difference = np.abs(series.logdet(params, x) - exact.logdet(params, x))
    assert np.all(difference <= series_truncation_bound(0.8, 3, terms) + 1e-13)


def test_truncation_bound_vanishes_with_terms():
    assert series_truncation_bound(0.5, 2, 200) < 1e-15
    assert series_truncation_bound(0.5, 2, 1) == pytest.approx(2 * (np.log(2) - 0.5))


def test_power_iteration_is_labelled_an_underestimate():
    from lipflow.blocks.residual import power_iteration_norm

    w = np.random.default_rng(0).standard_normal((30, 20))
    exact = np.linalg.norm(w, 2)
    for steps in (1, 2, 5):
        assert power_iteration_norm(w, steps) <= exact * (1 + 1e-12)
