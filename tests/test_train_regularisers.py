"""Bi-directional finite-difference regulariser (paper Eq. 6) on a linear map, where it is exact."""

from __future__ import annotations

import numpy as np
import pytest

import lipflow as lf
from lipflow.errors import LipflowError
from lipflow.precision import precision
from lipflow.train import FDRegulariser, NFRegulariser, fd_penalties, nf_loss, unit_directions


def _linear(dim: int):
    block = lf.InvertibleLinear(dim, seed=4)
    params = block.init()
    rng = np.random.default_rng(5)
    params = {key: value + 0.2 * rng.standard_normal(np.shape(value)) for key, value in params.items()}
    return block, params, block.matrix(params)


@pytest.mark.parametrize("name", ["float32", "float64"])
def test_fd_penalty_on_a_linear_map_is_exact(name):
    """F(x) = W x: forward = eps mean ||W v||^2, inverse = eps mean ||W^-1 v'||^2."""
    dim, n, eps = 4, 64, 0.1
    ctx = precision(name)
    block, params, w = _linear(dim)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((n, dim))
    v, v2 = unit_directions(rng, (n, dim)), unit_directions(rng, (n, dim))
    forward, inverse = fd_penalties(block, params, ctx.cast(x), v, v2, eps, ctx=ctx)
    w_inv = np.linalg.inv(w)
    exact_forward = eps * np.mean(np.sum((v @ w.T) ** 2, axis=1))
    exact_inverse = eps * np.mean(np.sum((v2 @ w_inv.T) ** 2, axis=1))
    # F(x) and F(x + eps v) are each computed with componentwise error <= gamma_k |W| |input|
    # (k = 2d + 4 roundings, the inputs themselves rounded once); the difference of size
    # eps |W v| carries that absolute error, so the relative error of the squared quotient is at most
    # 2 r + r^2 with r = 2 gamma_k || |W| (|x| + |x + eps v|) || / (eps ||W v||), per sample.
    gamma = ctx.gamma(2 * dim + 4)
    absolute = np.abs(w) @ (np.abs(x) + np.abs(x + eps * v)).T
    r = 2 * gamma * np.linalg.norm(absolute, axis=0) / (eps * np.linalg.norm(v @ w.T, axis=1))
    assert abs(float(forward) - exact_forward) <= np.max(2 * r + r**2) * exact_forward
    # the inverse path composes forward (W) and the triangular solves (W^-1): cond(W) amplifies
    z = x @ w.T
    absolute_inv = np.abs(w_inv) @ (np.abs(z) + eps).T * np.linalg.cond(w)
    r_inv = 4 * gamma * np.linalg.norm(absolute_inv, axis=0) / (eps * np.linalg.norm(v2 @ w_inv.T, axis=1))
    assert abs(float(inverse) - exact_inverse) <= np.max(2 * r_inv + r_inv**2) * exact_inverse


def test_fd_penalty_check_can_fail():
    """A wrong step size changes the value by far more than the tolerance above."""
    block, params, w = _linear(3)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((8, 3))
    v = unit_directions(rng, (8, 3))
    forward, _ = fd_penalties(block, params, x, v, v, 0.2)
    assert abs(float(forward) - 0.1 * np.mean(np.sum((v @ w.T) ** 2, axis=1))) > 1e-3


def test_unit_directions_are_unit():
    v = unit_directions(np.random.default_rng(0), (100, 7))
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, rtol=0, atol=8 * 2.0**-53 * 7)


def test_regulariser_objects_and_schedule():
    block, params, _ = _linear(2)
    x = np.random.default_rng(8).standard_normal((5, 2))
    reg = FDRegulariser(coeff_forward=2.0, coeff_inverse=3.0, eps=0.1, every=10)
    noise = reg.directions(np.random.default_rng(9), x.shape)
    forward, inverse = fd_penalties(block, params, x, *noise, 0.1)
    assert np.isclose(float(reg(block, params, x, noise)), 2 * float(forward) + 3 * float(inverse), rtol=1e-15)
    assert [reg.active(s) for s in (0, 1, 9, 10, 20)] == [True, False, False, True, True]
    nf = NFRegulariser(1e-3)
    assert np.isclose(float(nf(block, params, x)), 1e-3 * float(nf_loss(block, params, x)), rtol=1e-15)


@pytest.mark.parametrize("kwargs", [{"eps": 0.0}, {"every": 0}, {"coeff_forward": -1.0}])
def test_bad_regulariser_settings_are_explained(kwargs):
    with pytest.raises(LipflowError):
        FDRegulariser(**kwargs)
    with pytest.raises(LipflowError):
        NFRegulariser(float("nan"))
