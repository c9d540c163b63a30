"""The batched Anderson history (ring buffers, incremental Gram, vectorised solve) computes
the same iterates as the textbook per-sample least-squares formulation."""

from __future__ import annotations

import numpy as np
import pytest

from lipflow.analysis.residual_solvers import _AndersonHistory, _solve_spd


def _reference_step(xs: list, fs: list, memory: int) -> np.ndarray:
    """Type-II Anderson per sample with a dense least-squares solve (numpy.linalg.lstsq)."""
    xs, fs = xs[-(memory + 1) :], fs[-(memory + 1) :]
    x_k, f_k = xs[-1], fs[-1]
    if len(fs) == 1:
        return x_k + f_k
    out = np.empty_like(x_k)
    for i in range(x_k.shape[0]):
        d_f = np.stack([fs[j + 1][i] - fs[j][i] for j in range(len(fs) - 1)], axis=1)
        d_x = np.stack([xs[j + 1][i] - xs[j][i] for j in range(len(xs) - 1)], axis=1)
        gamma = np.linalg.lstsq(d_f, f_k[i], rcond=None)[0]
        out[i] = x_k[i] + f_k[i] - (d_x + d_f) @ gamma
    return out


@pytest.mark.parametrize(("dim", "memory"), [(2, 1), (6, 3), (12, 5)])
def test_history_matches_per_sample_least_squares(dim: int, memory: int) -> None:
    rng = np.random.default_rng(dim)
    n = 7
    history = _AndersonHistory(n, dim, memory)
    xs, fs = [], []
    for _ in range(3 * memory + 2):
        x, f = rng.standard_normal((n, dim)), rng.standard_normal((n, dim))
        xs.append(x)
        fs.append(f)
        got = history.step(x, f)
        want = _reference_step(xs, fs, min(memory, dim))  # a full-rank history: at most dim columns
        if memory <= dim:
            np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("keep", [[True, False, True, True, False], [True, True, True, True, False]],
                         ids=["compacted", "lazy"])
def test_dropping_samples_keeps_the_others_histories(keep: list) -> None:
    rng = np.random.default_rng(1)
    keep = np.array(keep)
    full, part = _AndersonHistory(5, 4, 3), _AndersonHistory(int(keep.sum()), 4, 3)
    dropped = False
    for step in range(7):
        x, f = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
        want = part.step(x[keep], f[keep])
        got = full.step(x[keep], f[keep]) if dropped else full.step(x, f)[keep]
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        if step == 3:
            full.keep(keep)
            dropped = True


def test_solve_spd_matches_dense_solve_and_flags_zero_history() -> None:
    rng = np.random.default_rng(2)
    a = rng.standard_normal((9, 6, 4))
    gram = np.einsum("nik,njk->ijn", a, a) + 1e-3 * np.eye(6)[:, :, None]
    rhs = rng.standard_normal((6, 9))
    want = np.linalg.solve(np.moveaxis(gram, -1, 0), rhs.T[..., None])[..., 0].T
    np.testing.assert_allclose(_solve_spd(gram.copy(), rhs), want, rtol=1e-9, atol=1e-12)
    with np.errstate(all="ignore"):
        zero = _solve_spd(np.zeros((3, 3, 2)), np.zeros((3, 2)))
    assert not np.isfinite(zero).any()  # the caller replaces these by 0 (a plain step)
