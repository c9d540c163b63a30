"""Permutations, invertible linear maps and ActNorm: exact constants (lem:permutation,
lem:linear-exact, lem:actnorm)."""

from __future__ import annotations

import os

import mpmath
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import lipflow
from lipflow.bounds import estimate, lipschitz

FAMILY = settings(max_examples=1000) if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else settings()
EXACT = 1e-12  # certified margins are O(d^2 u); the tests ask for agreement to 1e-12


def test_permutation_exact() -> None:
    block = lipflow.Permutation(5, seed=3)
    for direction in ("forward", "inverse"):
        assert lipschitz(block, block.init(), direction=direction).value == 1.0
        assert abs(estimate(block, {}, direction=direction, n_samples=8, n_starts=0).value - 1.0) <= EXACT


def _linear_params(block: lipflow.InvertibleLinear, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    params = block.init()
    return {
        "lower": params["lower"] + 0.5 * np.tril(rng.standard_normal((block.dim, block.dim)), -1),
        "upper": params["upper"] + 0.5 * np.triu(rng.standard_normal((block.dim, block.dim)), 1),
        "log_scale": params["log_scale"] + rng.normal(0, 0.5, block.dim),
    }


def test_linear_exact() -> None:
    for seed in range(10):
        block = lipflow.InvertibleLinear(4, seed=seed)
        params = _linear_params(block, seed)
        with mpmath.workdps(40):
            lower = mpmath.matrix(np.tril(params["lower"], -1) + np.eye(4))
            diag = [block.signs[i] * mpmath.exp(params["log_scale"][i]) for i in range(4)]
            upper = mpmath.matrix(np.triu(params["upper"], 1)) + mpmath.diag(diag)
            sv = mpmath.svd_r(lower * upper, compute_uv=False)
            smax, smin = max(sv), min(sv)
            forward = lipschitz(block, params, direction="forward").value
            inverse = lipschitz(block, params, direction="inverse").value
            assert smax <= forward <= smax * (1 + EXACT)
            assert 1 / smin <= inverse <= (1 / smin) * (1 + EXACT)


def test_actnorm_exact() -> None:
    block = lipflow.ActNorm(6)
    params = block.init(4)
    forward = lipschitz(block, params).value
    inverse = lipschitz(block, params, direction="inverse").value
    with mpmath.workdps(40):
        assert mpmath.exp(max(params["log_scale"])) <= forward <= mpmath.exp(max(params["log_scale"])) * (1 + 1e-15)
        assert mpmath.exp(-min(params["log_scale"])) <= inverse <= mpmath.exp(-min(params["log_scale"])) * (1 + 1e-15)


@FAMILY
@given(st.sampled_from(["linear", "actnorm", "permutation"]), st.integers(2, 4), st.integers(0, 2**16),
       st.sampled_from(["forward", "inverse"]))
def test_linear_family_upper_dominates_estimate(kind: str, dim: int, seed: int, direction: str) -> None:
    if kind == "linear":
        block = lipflow.InvertibleLinear(dim, seed=seed)
        params = _linear_params(block, seed)
    elif kind == "actnorm":
        block = lipflow.ActNorm(dim, init_std=1.0)
        params = block.init(seed)
    else:
        block = lipflow.Permutation(dim, seed=seed)
        params = {}
    upper = lipschitz(block, params, direction=direction).value
    lower = estimate(block, params, direction=direction, box=(-1, 1), n_samples=4, n_starts=0).value
    # exact constants: the empirical value attains them up to rounding
    assert lower <= upper * (1 + EXACT)
    assert upper <= lower * (1 + 1e-9)
