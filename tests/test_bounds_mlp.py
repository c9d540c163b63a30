"""Conditioner MLPs: activation constants (lem:activation-constants), product bounds
(lem:mlp-lipschitz) and interval images (lem:interval-image)."""

from __future__ import annotations

import os

import autograd
import autograd.numpy as anp
import mpmath
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import lipflow
from lipflow.blocks.conditioners import ACTIVATIONS
from lipflow.bounds.mlp import activation_lipschitz, mlp_image, mlp_lipschitz
from lipflow.bounds.rigorous import Box

FAMILY = settings(max_examples=1000) if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else settings()
F64 = lipflow.precision("float64")


def test_activation_constants() -> None:
    grid = np.linspace(-12, 12, 200001)
    for name, act in ACTIVATIONS.items():
        slope = np.max(np.abs(act.derivative(F64, grid)))
        assert slope <= activation_lipschitz(name), name
        # tight up to the grid, except the 1-Lipschitz ones whose sup is a limit or the rounded-up 1
        loose = 1.0 if name in ("relu", "softplus", "lipswish", "elu") else 0.0
        assert activation_lipschitz(name) <= max(slope * (1 + 1e-6), loose), name
    with mpmath.workdps(40):
        root = mpmath.findroot(lambda u: u * mpmath.tanh(u / 2) - 2, 2.4)
        exact = mpmath.mpf(1) / 2 + root / 4
        assert exact <= activation_lipschitz("swish") <= exact + 1e-8
        assert exact / mpmath.mpf("1.1") < 1


@st.composite
def networks(draw: st.DrawFn) -> tuple[lipflow.MLP, dict, int, int]:
    depth = draw(st.integers(0, 2))
    hidden = tuple(draw(st.integers(1, 3)) for _ in range(depth))
    mlp = lipflow.MLP(hidden=hidden, activation=draw(st.sampled_from(sorted(ACTIVATIONS))),
                      init_scale=draw(st.sampled_from([0.5, 1.0, 3.0])))
    in_dim, out_dim = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return mlp, mlp.init(np.random.default_rng(draw(st.integers(0, 2**16))), in_dim, out_dim), in_dim, out_dim


@FAMILY
@given(networks(), st.integers(0, 2**16))
def test_mlp_upper_dominates_estimate(network: tuple, seed: int) -> None:
    mlp, params, in_dim, out_dim = network
    bound = mlp_lipschitz(mlp, params)
    points = np.random.default_rng(seed).uniform(-3, 3, (8, in_dim))
    jac = autograd.jacobian(lambda x: mlp.apply(params, anp.reshape(x, (1, -1)), F64, out_dim)[0])
    for x in points:
        assert np.linalg.norm(jac(x), 2) <= bound.value * (1 + 1e-12)


@FAMILY
@given(networks(), st.floats(-3, 3), st.floats(0, 3), st.integers(0, 2**16))
def test_mlp_image_contains_samples(network: tuple, center: float, half: float, seed: int) -> None:
    mlp, params, in_dim, out_dim = network
    box = Box(np.full(in_dim, center - half), np.full(in_dim, center + half))
    image = mlp_image(mlp, params, box, out_dim)
    rng = np.random.default_rng(seed)
    points = np.vstack([box.lo + (box.hi - box.lo) * rng.random((16, in_dim)), box.lo, box.hi])
    values = mlp.apply(params, points, F64, out_dim)
    # float64 evaluation of the network: allow its own rounding (a few ulps of the magnitudes)
    slack = 1e-12 * (1 + np.abs(values))
    assert np.all(values >= image.lo - slack) and np.all(values <= image.hi + slack)
