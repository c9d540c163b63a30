"""Residual blocks: lem:residual, lem:banach, lem:logdet-series."""

from __future__ import annotations

import os

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lipflow
from lipflow.bounds import Box, estimate, lipschitz
from lipflow.bounds.residual import (
    banach_a_posteriori,
    banach_a_priori,
    branch_lipschitz,
    logdet_truncation_bound,
)
from lipflow.errors import LipflowError

FAMILY = settings(max_examples=1000) if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else settings()
ROUNDING = 1e-12
U = 2.0**-53


@FAMILY
@given(st.integers(2, 3), st.integers(1, 3), st.sampled_from(["lipswish", "elu", "tanh"]),
       st.floats(0.05, 0.95), st.integers(0, 2**16), st.sampled_from(["forward", "inverse"]),
       st.floats(0.1, 3.0))
def test_residual_upper_dominates_estimate(dim: int, width: int, activation: str, coeff: float, seed: int,
                                           direction: str, half: float) -> None:
    block = lipflow.Residual(dim, hidden=(width,), activation=activation, coeff=coeff)
    params = block.init(seed)
    upper = lipschitz(block, params, direction=direction)
    lower = estimate(block, params, direction=direction, box=(-half, half), n_samples=8, n_starts=0)
    assert lower.value <= upper.value * (1 + ROUNDING)
    assert upper.ingredients["c"] <= coeff**2 * (1 + 1e-12)  # two normalised layers, 1-Lipschitz activation


def test_residual_rejects_noncontractive() -> None:
    # power iteration with one step under-estimates ||W||: the used weights can exceed c = 0.99
    for seed in range(50):
        block = lipflow.Residual(4, hidden=(), coeff=0.99, spectral="power", power_iterations=1)
        params = block.init(seed)
        if branch_lipschitz(block, params).value >= 1:
            break
    else:
        pytest.fail("no seed produced a non-contractive branch")
    assert lipschitz(block, params).value >= 2  # the forward bound 1 + c is still valid
    with pytest.raises(LipflowError, match="not < 1"):
        lipschitz(block, params, direction="inverse")
    with pytest.raises(LipflowError, match="0 <= c < 1"):
        banach_a_posteriori(1.0, 0.1)


def test_banach_bounds_hold() -> None:
    for seed in range(5):
        block = lipflow.Residual(3, hidden=(8,), coeff=0.7)
        params = block.init(seed)
        prepared = block._prepare(params)
        c = branch_lipschitz(block, params).value
        ctx = lipflow.precision("float64")
        y = np.random.default_rng(seed).normal(size=(1, 3))
        x_star = y.copy()
        for _ in range(300):
            x_star = y - block.g(prepared, x_star, ctx)
        iterates = [y.copy()]
        for _ in range(12):
            iterates.append(y - block.g(prepared, iterates[-1], ctx))
        first = float(np.linalg.norm(iterates[1] - iterates[0]))
        floor = 64 * U * (1 + float(np.linalg.norm(x_star))) / (1 - c)  # float64 iteration floor
        for n in range(1, 13):
            error = float(np.linalg.norm(iterates[n] - x_star))
            assert error <= banach_a_priori(c, n, first) + floor
            assert error <= banach_a_posteriori(c, float(np.linalg.norm(iterates[n] - iterates[n - 1]))) + floor


def test_logdet_truncation_bound_holds() -> None:
    rng = np.random.default_rng(0)
    for trial in range(20):
        d, c, n = 3, [0.3, 0.6, 0.9][trial % 3], trial % 7
        a = rng.standard_normal((d, d))
        j = -c * np.eye(d) if trial == 0 else a / np.linalg.svd(a, compute_uv=False)[0] * c * 0.999
        with mpmath.workdps(50):
            jm = mpmath.matrix(j.tolist())
            exact = mpmath.log(mpmath.det(mpmath.eye(d) + jm))
            partial, power = mpmath.mpf(0), mpmath.eye(d)
            for k in range(1, n + 1):
                power = power * jm
                partial += (-1) ** (k + 1) * sum(power[i, i] for i in range(d)) / k
            error = abs(exact - partial)
        bound = logdet_truncation_bound(c, n, d)
        assert error <= bound
        if trial == 0:  # J = -cI attains the bound
            assert bound <= error * (1 + 1e-12)
    assert logdet_truncation_bound(0.5, 200, 10) <= 1e-60


def test_residual_box_is_irrelevant() -> None:
    block = lipflow.Residual(2, hidden=(4,), coeff=0.5)
    params = block.init(0)
    assert lipschitz(block, params, box=Box.cube(-1, 1, 2)).value == lipschitz(block, params).value
