"""Implicit differentiation of the residual inverse (implicit function theorem), against exact
linear inverses and finite differences of a converged high-precision inverse."""

from __future__ import annotations

import numpy as np
import pytest
from autograd import grad, make_jvp
from hypothesis import given, settings
from hypothesis import strategies as st

import lipflow as lf
from lipflow.analysis.jacobian import jacobian
from lipflow.analysis.reference import block_inverse_at
from lipflow.bounds import estimate
from lipflow.precision import precision

U64 = 2.0**-53


def _linear_zero_bias(dim: int, seed: int, coeff: float = 0.9) -> tuple[lf.Residual, dict, np.ndarray]:
    """g(x) = x W with ||W||_2 = coeff: F^-1(y) = y (I + W)^-1, Jacobian (I + W^T)^-1."""
    block = lf.Residual(dim, hidden=(), coeff=coeff)
    params = block.init(seed)
    params = {"weights": params["weights"], "biases": [np.zeros_like(b) for b in params["biases"]]}
    w = block._prepare(params)["weights"][0]
    return block, params, np.asarray(w)


@settings(deadline=None)
@given(seed=st.integers(0, 10_000), dim=st.integers(1, 5), coeff=st.sampled_from([0.5, 0.9, 0.99]))
def test_inverse_jacobian_of_linear_zero_bias_block_is_exact(seed, dim, coeff):
    block, params, w = _linear_zero_bias(dim, seed, coeff)
    exact = np.linalg.inv(np.eye(dim) + w.T)
    y = np.vstack([np.zeros(dim), np.random.default_rng(seed).standard_normal((3, dim))])  # g(y) = 0 at y = 0
    jac = np.asarray(jacobian(block, params, y, ctx="float64", direction="inverse"))
    # backward-stable solve: relative error <= cond * O(d u), cond(I + W^T) <= (1 + c)/(1 - c)
    cond = (1 + coeff) / (1 - coeff)
    tolerance = 16 * (dim + 1) * U64 * cond * np.linalg.norm(exact, 2)
    assert np.max(np.abs(jac - exact[None])) <= tolerance


@settings(deadline=None, max_examples=20)
@given(seed=st.integers(0, 10_000), dim=st.integers(1, 4))
def test_inverse_estimate_never_exceeds_exact_linear_constant(seed, dim):
    block, params, w = _linear_zero_bias(dim, seed)
    exact = 1.0 / np.linalg.svd(np.eye(dim) + w, compute_uv=False)[-1]
    lower = estimate(block, params, direction="inverse", n_samples=16, n_starts=1, maxiter=5, seed=seed)
    assert lower.kind == "lower"
    assert lower.value <= exact * (1 + 64 * dim * U64)


def _converged(block, params, y, ctx):
    return np.asarray(block_inverse_at(block, params, ctx.cast(y), ctx))


@pytest.mark.parametrize("bias", [0.0, 1.0])
def test_inverse_derivatives_match_finite_differences_of_converged_inverse(bias):
    """Against central differences of a Newton-converged inverse at 60 digits (step 1e-25): the
    difference quotient is exact to ~1e-30, far below the float64 Jacobian's cond * d * u."""
    block = lf.Residual(3, hidden=(6,), coeff=0.9, activation="tanh")
    raw = block.init(3)
    params = {"weights": raw["weights"], "biases": [bias * b for b in raw["biases"]]}
    mp = precision("mp60")
    y = np.array([[0.0, 0.0, 0.0], [0.7, -1.2, 0.4]])
    jac = np.asarray(jacobian(block, params, y, ctx="float64", direction="inverse"))
    h = mp.const("1e-25")
    for j in range(3):
        e = np.zeros((2, 3), dtype=object)
        e[:, j] = h
        plus = _converged(block, params, y.astype(object) + e, mp)
        minus = _converged(block, params, y.astype(object) - e, mp)
        column = mp.to_float64((plus - minus) / (2 * h))
        assert np.max(np.abs(jac[:, :, j] - column)) <= 64 * 3 * U64 * 19 * 10

    # forward mode agrees with reverse mode
    tangent = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    _, jvp = make_jvp(lambda v: block.inverse(params, v, ctx="float64"))(y)(tangent)
    expected = np.stack([jac[0, :, 0], jac[1, :, 2]])
    assert np.max(np.abs(jvp - expected)) <= 64 * U64 * 19


def test_parameter_gradient_matches_finite_differences():
    """dL/dtheta = -(dg/dtheta)^T w; weights small enough that the normalisation is the identity,
    so the 60-digit difference quotient perturbs exactly the weight used."""
    block = lf.Residual(2, hidden=(4,), coeff=0.8, activation="elu")
    raw = block.init(5)
    params = {"weights": [0.3 * w / np.linalg.norm(w, 2) for w in raw["weights"]], "biases": raw["biases"]}
    y = np.array([[0.3, -0.5], [1.0, 2.0]])
    cot = np.array([[1.0, -2.0], [0.5, 0.25]])

    def loss(p):
        return np.sum(block.inverse(p, y, ctx="float64") * cot)

    grads = grad(loss)(params)
    mp = precision("mp60")
    h = mp.const("1e-25")
    for key, layer, index in [("weights", 0, (0, 1)), ("weights", 1, (3, 0)), ("biases", 0, (2,)), ("biases", 1, (1,))]:
        def at(delta, key=key, layer=layer, index=index):
            p = {k: [np.asarray(a, dtype=object).copy() for a in v] for k, v in params.items()}
            p[key][layer][index] = p[key][layer][index] + delta
            x = _converged(block, p, y, mp)
            return sum((x * mp.cast(cot)).ravel())
        fd = float((at(h) - at(-h)) / (2 * h))
        # float64 gradient: a solve with cond(I + J_g) <= 9 and a few dot products
        assert abs(grads[key][layer][index] - fd) <= 64 * 9 * 8 * U64 * (1 + abs(fd))


def test_gradients_do_not_depend_on_the_iteration_count():
    """Unrolled differentiation would return I - W^T after one step at g(y) = 0."""
    block, params, w = _linear_zero_bias(3, 7)
    jac = np.asarray(jacobian(block, params, np.zeros((1, 3)), ctx="float64", direction="inverse"))[0]
    assert not np.allclose(jac, np.eye(3) - w.T)
    assert np.allclose(jac @ (np.eye(3) + w.T), np.eye(3), atol=1e-13)
