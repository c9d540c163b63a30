"""Structured Lanczos extreme singular values against autograd Jacobians + full SVD."""

from __future__ import annotations

import numpy as np
import pytest

import lipflow
from lipflow.analysis import jacobian_spectrum
from lipflow.analysis.fast_spectra import extreme_singular_values
from lipflow.errors import LipflowError

U64 = 2.0**-53


def mixed_flow(dim: int) -> lipflow.Flow:
    blocks: list = []
    for i in range(3):
        blocks += [
            lipflow.AffineCoupling(
                dim,
                conditioning="first" if i % 2 else "second",
                form="glow" if i == 2 else "realnvp",
                scale=lipflow.SoftClamp() if i == 1 else lipflow.Sigmoid(shift=1.0),
                t=lipflow.MLP((16,), activation="elu"),
                s=lipflow.MLP((16, 8), activation="tanh"),
            ),
            lipflow.ActNorm(dim),
            lipflow.Permutation(dim, seed=i),
        ]
    blocks.append(lipflow.AdditiveCoupling(dim, t=lipflow.MLP((8,), activation="softplus")))
    return lipflow.Flow(blocks)


def allowed_difference(reference, fast, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Lanczos: some eigenvalue within residual * theta, so sigma within residual/2 relative
    (the top one, as the tests' spectra have a gap); the float64 SVD of the autograd Jacobian
    errs by ~ d u sigma_max, i.e. d u cond relative for sigma_min. Factor 8 for both."""
    svd = dim * U64 * reference.cond
    return 8 * (fast.residual_max + dim * U64), 8 * (fast.residual_min + svd)


def assert_agrees_with_full_svd(flow, params, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lanczos extremes within the allowed difference of the full SVD's; returns the tolerances."""
    reference = jacobian_spectrum(flow, params, x)
    fast = extreme_singular_values(flow, params, x)
    tol_max, tol_min = allowed_difference(reference, fast, x.shape[1])
    assert np.all(np.abs(fast.sigma_max / reference.sigma_max - 1) <= tol_max)
    assert np.all(np.abs(fast.sigma_min / reference.sigma_min - 1) <= tol_min)
    return tol_max, tol_min


@pytest.mark.parametrize("dim", [6, 20])
def test_agrees_with_full_svd(dim: int) -> None:
    flow = mixed_flow(dim)
    x = np.random.default_rng(2).standard_normal((4, dim))
    tol_max, tol_min = assert_agrees_with_full_svd(flow, flow.init(1), x)
    assert np.all(tol_max < 1e-6) and np.all(tol_min < 1e-6)


def test_interleaved_conditioning_indices_agree_with_full_svd() -> None:
    """Non-contiguous index sets (gathered, not sliced) and a descending contiguous set."""
    dim = 8
    flow = lipflow.Flow([
        lipflow.AffineCoupling(dim, conditioning=(0, 2, 5, 7), t=lipflow.MLP((12,)), s=lipflow.MLP((12,))),
        lipflow.AffineCoupling(dim, conditioning=(3, 2, 1), t=lipflow.MLP((12,)), s=lipflow.MLP((12,))),
        lipflow.AdditiveCoupling(dim, conditioning=(4, 5, 6, 7), t=lipflow.MLP((12,))),
    ])
    assert_agrees_with_full_svd(flow, flow.init(3), np.random.default_rng(4).standard_normal((3, dim)))


def test_single_block_and_constant_conditioner() -> None:
    toy = lipflow.AffineCoupling(2, t=lipflow.Constant(0.123456789), s=lipflow.Constant(0.1), scale="identity")
    fast = extreme_singular_values(toy, toy.init(0), np.array([[1.0, 1.0]]))
    assert fast.sigma_max[0] == pytest.approx(1.0, rel=1e-12)
    assert fast.sigma_min[0] == pytest.approx(0.1, rel=1e-12)


def test_unsupported_block_is_a_clear_error() -> None:
    flow = lipflow.Flow([lipflow.AdditiveCoupling(2), lipflow.Residual(2)])
    with pytest.raises(LipflowError, match="jacobian_spectrum"):
        extreme_singular_values(flow, flow.init(0), np.zeros((1, 2)))
