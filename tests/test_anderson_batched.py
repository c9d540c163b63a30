"""The batched Anderson history (QR form, restarted every ``memory`` steps) computes the same
iterates as the textbook per-sample least-squares formulation."""

from __future__ import annotations

import numpy as np
import pytest

from lipflow.analysis.residual_solvers import _AndersonHistory


def _reference_step(xs: list, fs: list, memory: int) -> np.ndarray:
    """Type-II Anderson per sample with a dense least-squares solve (numpy.linalg.lstsq), the
    history emptied after every ``memory`` differences (restarted)."""
    differences = len(xs) - 1
    memory = min(memory, xs[0].shape[1])
    used = (differences - 1) % memory + 1 if differences else 0
    xs, fs = xs[-(used + 1) :], fs[-(used + 1) :]
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
        want = _reference_step(xs, fs, memory)
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("keep", [[True, False, True, True, False], [True, True, True, True, False]],
                         ids=["compacted", "lazy"])
@pytest.mark.parametrize("drop_at", [2, 3])  # mid-cycle (stored columns moved) and at a restart
def test_dropping_samples_keeps_the_others_histories(keep: list, drop_at: int) -> None:
    rng = np.random.default_rng(1)
    keep = np.array(keep)
    full, part = _AndersonHistory(5, 4, 3), _AndersonHistory(int(keep.sum()), 4, 3)
    dropped = False
    for step in range(7):
        x, f = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
        want = part.step(x[keep], f[keep])
        got = full.step(x[keep], f[keep]) if dropped else full.step(x, f)[keep]
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        if step == drop_at:
            full.keep(keep)
            dropped = True


def test_dependent_and_zero_differences_are_skipped() -> None:
    """A difference in the span of the stored ones (or zero: a sample that stopped) adds no
    column and the step stays finite."""
    rng = np.random.default_rng(2)
    history = _AndersonHistory(3, 4, 5)
    x0, f0 = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    history.step(x0, f0)
    x1, f1 = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    history.step(x1, f1)
    # the same point again: zero differences for every sample
    again = history.step(x1, f1)
    assert np.isfinite(again).all()
    np.testing.assert_allclose(again, _reference_step([x0, x1], [f0, f1], 5), rtol=1e-9, atol=1e-12)


def test_restarted_anderson_converges_where_differences_outnumber_the_memory() -> None:
    """d = 16 > memory: several restarts, every sample certified, far fewer g-evaluations."""
    import lipflow
    from lipflow.analysis.residual_solvers import solve_residual_inverse

    dim = 16  # Lip(g) = 0.97 attained, Jacobian spectrum spread over [-0.97, 0.97]
    block = lipflow.Residual(dim, hidden=(dim,), activation="elu", coeff=float(np.sqrt(0.97)))
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((dim, dim)))
    spread = np.cos(np.pi * np.arange(dim) / (dim - 1))
    params = {"weights": [q, spread[:, None] * q.T], "biases": [np.full(dim, 0.5), np.zeros(dim)]}
    y = block.forward(params, np.random.default_rng(1).standard_normal((20, dim)))
    _, plain = solve_residual_inverse(block, params, y, method="fixed_point", max_iter=3000)
    _, anderson = solve_residual_inverse(block, params, y, method="anderson", memory=5)
    assert anderson.all_converged and plain.all_converged
    assert anderson.g_evaluations.mean() <= plain.g_evaluations.mean() / 3


def test_history_never_reads_a_slot_before_writing_it() -> None:
    """The buffers start uninitialised: filled with NaN, the history gives the same steps as the
    per-sample least-squares reference, before and after compaction."""
    rng = np.random.default_rng(4)
    n, dim, memory = 6, 5, 3
    history = _AndersonHistory(n, dim, memory)
    history.u[...] = np.nan
    history.h[...] = np.nan
    xs, fs = [], []
    for _ in range(2 * memory + 3):
        x, f = rng.standard_normal((n, dim)), rng.standard_normal((n, dim))
        xs.append(x)
        fs.append(f)
        np.testing.assert_allclose(history.step(x, f), _reference_step(xs, fs, memory), rtol=1e-10, atol=1e-12)
    keep = np.array([True, False, True, False, True, True])
    history.keep(keep)  # 4 of 6 rows left: compacted
    xs, fs = [x[keep] for x in xs], [f[keep] for f in fs]
    for _ in range(memory + 1):
        x, f = rng.standard_normal((int(keep.sum()), dim)), rng.standard_normal((int(keep.sum()), dim))
        xs.append(x)
        fs.append(f)
        np.testing.assert_allclose(history.step(x, f), _reference_step(xs, fs, memory), rtol=1e-10, atol=1e-12)


def test_tiny_scale_differences_stay_finite() -> None:
    """Differences whose squared norm is below 1 / DBL_MAX are skipped instead of giving an
    infinite weight: the step stays finite."""
    rng = np.random.default_rng(3)
    history = _AndersonHistory(4, 3, 3)
    for _ in range(5):
        x, f = 1e-160 * rng.standard_normal((4, 3)), 1e-160 * rng.standard_normal((4, 3))
        assert np.isfinite(history.step(x, f)).all()
