"""Empirical lower bounds (lem:convex-jacobian)."""

from __future__ import annotations

import numpy as np
import pytest

import lipflow
from lipflow.bounds import estimate, lipschitz
from lipflow.errors import LipflowError


def test_estimate_linear_exact() -> None:
    block = lipflow.InvertibleLinear(3, seed=2)
    params = block.init()
    w = block.matrix(params)
    for direction, exact in (("forward", np.linalg.svd(w, compute_uv=False)[0]),
                             ("inverse", 1 / np.linalg.svd(w, compute_uv=False)[-1])):
        result = estimate(block, params, direction=direction, n_samples=8, n_starts=0)
        assert result.kind == "lower" and result.label == "lem:convex-jacobian"
        assert result.value == pytest.approx(exact, rel=1e-12)
        assert result.value <= lipschitz(block, params, direction=direction).value * (1 + 1e-12)


def test_difference_quotient_below_jacobian_sup() -> None:
    block = lipflow.AffineCoupling(2, s=lipflow.MLP(hidden=(4,)), t=lipflow.MLP(hidden=(4,)), scale="exp")
    params = block.init(5)
    result = estimate(block, params, box=(-2, 2), n_samples=128, n_starts=2)
    assert result.ingredients["Q_max"] <= result.ingredients["J_max"] * (1 + 1e-9)
    assert result.value == max(result.ingredients.values())
    # more search never lowers the estimate below the sampled maximum
    quick = estimate(block, params, box=(-2, 2), n_samples=128, n_starts=0)
    assert result.value >= quick.ingredients["J_max"]
    with pytest.raises(LipflowError):
        estimate(block, params, n_samples=0)
