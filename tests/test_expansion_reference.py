"""The expansion ladder float64 -> dd -> td: the kept values reach the target against mpmath,
samples it cannot certify are reported, bad arguments are refused."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from lipflow.analysis.expansion_reference import (
    expansion_reference,
    expansion_reference_forward,
    expansion_reference_inverse,
)
from lipflow.errors import LipflowError
from lipflow.precision import accel, precision
from tests.helpers import alternating_couplings


def _bits(values: np.ndarray, reference: np.ndarray) -> float:
    """min over rows of -log2(||v - ref|| / ||ref||), in mpmath at 200 bits."""
    worst = -np.inf
    with mpmath.workprec(200):
        for got, ref in zip(values, reference, strict=True):
            error = mpmath.sqrt(sum((g - r) ** 2 for g, r in zip(got, ref, strict=True)))
            size = mpmath.sqrt(sum(r**2 for r in ref))
            if error:
                worst = max(worst, float(mpmath.log(error / size, 2)))
    return -worst


@pytest.mark.parametrize("kind", ["affine", "additive"])
@pytest.mark.parametrize("target", [100.0, 120.0])
def test_kept_values_reach_the_target(kind, target):
    flow = alternating_couplings(kind, depth=6)
    params = flow.init(seed=1)
    x = np.random.default_rng(2).standard_normal((12, 2)) * 2
    mp = precision("mp60")
    with accel.kernels("numpy"):
        forward = expansion_reference_forward(flow, params, x, target_bits=target)
        z = flow.forward(params, x)
        inverse = expansion_reference_inverse(flow, params, z, target_bits=target)
    assert forward.met.all() and inverse.met.all()
    assert set(forward.used) <= {"dd", "td"} and forward.evaluated["float64"] == len(x)
    assert _bits(forward.to_mp(), flow.forward(params, x, ctx=mp)) >= target
    assert _bits(inverse.to_mp(), flow.inverse(params, z, ctx=mp)) >= target


def test_unreachable_target_and_non_finite_rows_are_reported():
    flow = alternating_couplings("additive", depth=2)
    params = flow.init(seed=0)
    x = np.array([[0.5, 1.0], [np.nan, 1.0], [2.0, -1.0]])
    with accel.kernels("numpy"):
        result = expansion_reference_forward(flow, params, x, target_bits=400)
    assert not result.met.any()
    assert result.used == ("td", "td", "td")
    assert "3 of 3 samples below the 400-bit target" in result.describe()
    assert np.isnan(result.as_float64()[1]).all()


def test_refuses_bad_arguments():
    with pytest.raises(LipflowError, match="at least two rungs"):
        expansion_reference(lambda ctx, rows: np.zeros((len(rows), 1)), 2, 1, rungs=("dd",))
    with pytest.raises(LipflowError, match="target_bits"):
        expansion_reference(lambda ctx, rows: np.zeros((len(rows), 1)), 2, 1, target_bits=0)


def test_reference_ladder_takes_td_checked_against_dd():
    """With the expansion rungs, float64 work is referenced at td (128 >= 2 * 53 + 8 bits),
    checked against dd, before any mpmath rung; the values agree with mp60."""
    from lipflow.analysis.reference import HARDWARE_CANDIDATES, expansion_candidates, reference_forward

    flow = alternating_couplings("affine", depth=4)
    params = flow.init(seed=3)
    x = np.random.default_rng(4).standard_normal((6, 2))
    with accel.kernels("numpy"):
        result = reference_forward(flow, params, x, working="float64",
                                   candidates=HARDWARE_CANDIDATES + expansion_candidates())
    assert result.used == ("td",) * 6 and result.checked_against == ("dd",) * 6 and result.all_stable
    assert result.rungs_tried == ("dd", "td")
    assert _bits(result.value, flow.forward(params, x, ctx=precision("mp60"))) >= result.required_bits
