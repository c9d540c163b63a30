"""Accelerated residual inverses: certified stopping, validity of the bound, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import lipflow
from lipflow.analysis.residual_solvers import (
    banach_a_priori_iterations,
    certified_error_bound,
    solve_residual_inverse,
)
from lipflow.errors import LipflowError

DD = lipflow.precision("dd")


def tight_block(dim: int, coeff: float) -> tuple[lipflow.Residual, dict]:
    """Lip(g) = coeff, attained (Jacobian spectrum spread over [-coeff, coeff])."""
    block = lipflow.Residual(dim, hidden=(dim,), activation="elu", coeff=float(np.sqrt(coeff)))
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((dim, dim)))
    spread = np.cos(np.pi * np.arange(dim) / max(dim - 1, 1))
    return block, {"weights": [q, spread[:, None] * q.T], "biases": [np.full(dim, 0.5), np.zeros(dim)]}


def exact_problem(block, params, n, seed=1):
    """(x, y64, slack): y64 = F(x) rounded to float64 from a double-double evaluation, and
    slack >= ||F^-1(y64) - x|| = ||F^-1(y64) - F^-1(F(x))|| <= ||y64 - F(x)|| / (1 - L)."""
    x = np.random.default_rng(seed).standard_normal((n, block.dim))
    y_dd = block.forward(params, x, ctx="dd")
    y64 = DD.to_float64(y_dd)
    gap = DD.to_float64(y_dd - y64)
    lip = block.lipschitz_g(block._prepare(params)) * (1 + 64 * 2.0**-52)
    return x, y64, np.linalg.norm(gap, axis=1) * (1 + 2.0**-40) / (1 - lip)


@pytest.mark.parametrize("method", ["fixed_point", "anderson"])
@pytest.mark.parametrize("coeff", [0.9, 0.97])
def test_certified_bound_holds_against_exact_solution(method: str, coeff: float) -> None:
    block, params = tight_block(2, coeff)
    x, y, slack = exact_problem(block, params, 40)
    solution, info = solve_residual_inverse(block, params, y, method=method, max_iter=3000)
    error = np.linalg.norm(solution - x, axis=1)
    assert np.all(error <= info.error_bound + slack)
    assert np.all(info.relative_bound[info.converged] <= 1e-12)
    assert info.converged.sum() >= 39  # a point near 0 may sit on the float64 floor; it is reported


def test_anderson_needs_at_most_a_third_of_the_g_evaluations() -> None:
    block, params = tight_block(2, 0.9)
    _, y, _ = exact_problem(block, params, 30)
    _, plain = solve_residual_inverse(block, params, y, method="fixed_point", max_iter=3000)
    _, anderson = solve_residual_inverse(block, params, y, method="anderson")
    assert anderson.all_converged and plain.all_converged
    assert anderson.g_evaluations.mean() <= plain.g_evaluations.mean() / 3


def test_bound_is_valid_for_any_point() -> None:
    block, params = tight_block(4, 0.9)
    x, y, slack = exact_problem(block, params, 20)
    lip = block.lipschitz_g(block._prepare(params)) * (1 + 64 * 2.0**-52)
    guess = x + np.random.default_rng(2).standard_normal(x.shape) * 0.3
    bound = certified_error_bound(block, block._prepare(params), guess, y, lip)
    assert np.all(np.linalg.norm(guess - x, axis=1) <= bound + slack)


def test_a_priori_count_matches_the_formula() -> None:
    n = banach_a_priori_iterations(0.9, 1.0, 1e-12)
    assert 0.9**n / 0.1 <= 1e-12 < 0.9 ** (n - 1) / 0.1


def test_non_convergence_is_reported() -> None:
    block, params = tight_block(2, 0.97)
    _, y, _ = exact_problem(block, params, 5)
    _, info = solve_residual_inverse(block, params, y, method="fixed_point", max_iter=3)
    assert not info.all_converged and np.all(np.isfinite(info.error_bound))


def test_bad_input() -> None:
    block, params = tight_block(2, 0.9)
    with pytest.raises(LipflowError, match="Residual block"):
        solve_residual_inverse(lipflow.AdditiveCoupling(2), {}, np.zeros((1, 2)))
    with pytest.raises(LipflowError, match="method"):
        solve_residual_inverse(block, params, np.zeros((1, 2)), method="newton-krylov")
    with pytest.raises(LipflowError, match="rtol"):
        solve_residual_inverse(block, params, np.zeros((1, 2)), rtol=0)
    with pytest.raises(LipflowError, match="features"):
        solve_residual_inverse(block, params, np.zeros((1, 3)))
