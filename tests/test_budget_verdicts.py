"""Per-sample verdicts, no vacuous passes, boxes that contain the exact z, seeded linear layers."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import lipflow as lf
from lipflow.analysis.budget import error_budget, exact_forward_enclosure, proven_inverse_lipschitz
from lipflow.analysis.reference import to_mp
from lipflow.blocks.conditioners import Constant
from lipflow.bounds import lipschitz
from lipflow.errors import UnboundedError
from lipflow.precision import precision
from lipflow.testing import assert_error_bound


@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_flow_of_one_residual_bounds_huge_box_like_the_block(direction):
    block = lf.Residual(2)
    params = block.init(0)
    bare = lipschitz(block, params, direction=direction, box=(-1e160, 1e160))
    flow = lipschitz(lf.Flow([block]), [params], direction=direction, box=(-1e160, 1e160))
    assert flow.value == bare.value


def test_interval_overflow_is_unbounded_not_bad_input():
    block = lf.Residual(2)
    params = block.init(0)
    with pytest.raises(UnboundedError):
        lipschitz(lf.Flow([block, block]), [params, params], direction="inverse", box=(-1e300, 1e300))
    assert proven_inverse_lipschitz(lf.Flow([block, block]), [params, params],
                                    np.full(2, -1e300), np.full(2, 1e300)) == math.inf


def _flow():
    flow = lf.Flow([lf.AdditiveCoupling(2), lf.Reverse(2), lf.AdditiveCoupling(2)])
    return flow, flow.init(0)


def test_one_overflowing_sample_does_not_abort_the_budget():
    flow, params = _flow()
    x = np.array([[0.5, 1.0], [3.0, -2.0], [-1.0, 0.25]], dtype=np.float32)

    def bound(model, p, low, high):
        if np.max(np.abs(low)) > 2.5 or np.max(np.abs(high)) > 2.5:
            raise UnboundedError("overflow on this box")
        return proven_inverse_lipschitz(model, p, low, high)

    budget = error_budget(flow, params, x, ctx="float32", lipschitz=bound, estimates=False)
    summary = budget.summary()
    unproven = ~np.isfinite(budget.lipschitz_bound)
    assert unproven.sum() >= 1 and (~unproven).sum() >= 1
    assert summary.proven == int((~unproven).sum()) and summary.unproven == int(unproven.sum())
    assert summary.proven + summary.unproven + summary.undecided == summary.n
    assert summary.violations == 0


def test_summary_says_none_proven_instead_of_zero():
    flow, params = _flow()
    x = np.ones((3, 2), np.float32)
    budget = error_budget(flow, params, x, ctx="float32", lipschitz=lambda *a: math.inf, estimates=False)
    summary = budget.summary()
    assert summary.proven == 0 and summary.unproven == 3
    assert all(math.isnan(v) for v in summary.ratio_quantiles.values())
    assert "none proven" in str(summary) and "q50=0" not in str(summary)


def _f(x):
    return x + x.dtype.type(0.5) * np.tanh(x)


def _f_inv(y):
    x = y.copy()
    for _ in range(30):
        x = x - (_f(x) - y) / (1 + x.dtype.type(0.5) * (1 - np.tanh(x) ** 2))
    return x


def test_assert_error_bound_fails_with_the_count_when_nothing_is_proven():
    x = np.linspace(-3, 3, 8, dtype=np.float32).reshape(4, 2)
    with pytest.raises(AssertionError, match=r"no finite proven Lip\(F\^-1\) for 4 of 4"):
        assert_error_bound(_f, x, inverse=_f_inv, lipschitz_inverse=lambda low, high: math.inf)
    assert_error_bound(_f, x, inverse=_f_inv, lipschitz_inverse=lambda low, high: math.inf, allow_unproven=True)
    assert_error_bound(_f, x, inverse=_f_inv, lipschitz_inverse=1.0)


def test_budget_box_contains_the_exact_z_where_one_ulp_is_not_enough():
    """y2 = (x2 + 3e4) e^0.1 then - 3e4 e^0.1: the longdouble reference rounds the large product
    (~2^-49 absolute), several float64 ulps of z2 ~ 1; the box must still contain the exact z."""
    shift = -3e4 * math.exp(0.1)
    flow = lf.Flow([lf.ActNorm(2), lf.AdditiveCoupling(2, t=Constant(shift))])
    params = [{"log_scale": np.array([0.0, 0.1]), "bias": np.array([0.0, 3e4])}, flow.blocks[1].init(0)]
    x = np.random.default_rng(1).uniform(0.1, 0.9, (16, 2)).astype(np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        budget = error_budget(flow, params, x, ctx="float16", estimates=False)
    assert np.all(budget.decided) and np.all(np.isfinite(budget.lipschitz_bound))
    mp = precision("mp60")
    exact = flow.forward(params, to_mp(x, mp), ctx=mp)
    exact_lo = np.array([[mp.context.mpf(v) for v in row] for row in exact])
    ulps = np.abs(mp.to_float64(exact_lo) - budget.z) / np.spacing(np.abs(budget.z))
    assert ulps.max() > 1, "the case must need more than one ulp"
    for i in range(len(x)):
        for j in range(2):
            assert budget.box_low[i, j] <= exact[i, j] <= budget.box_high[i, j]
    enclosure = exact_forward_enclosure(flow, params, x[0].astype(np.float64))
    assert enclosure is not None and enclosure.lo[1] <= exact[0, 1] <= enclosure.hi[1]


def test_invertible_linear_init_honours_the_seed():
    block = lf.InvertibleLinear(4, seed=3)
    w0, w1, again = (block.matrix(block.init(s)) for s in (0, 1, 0))
    assert not np.allclose(w0, w1)
    assert np.array_equal(w0, again)
    for w in (w0, w1):  # still a random orthogonal initial matrix with the block's perm and signs
        assert np.allclose(w @ w.T, np.eye(4), atol=1e-12)
    flow = lf.Flow([lf.InvertibleLinear(3, seed=0), lf.InvertibleLinear(3, seed=0)])
    first, second = (b.matrix(p) for b, p in zip(flow.blocks, flow.init(0), strict=True))
    assert not np.allclose(first, second)
