"""Flows: composed bounds with chained boxes (lem:composition), interval images of every block
family (lem:interval-image) and the reconstruction bound (lem:reconstruction)."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import lipflow
from lipflow.bounds import Box, estimate, lipschitz, reconstruction_bound
from lipflow.bounds.flow import flow_lipschitz
from lipflow.bounds.images import image_box

FAMILY = settings(max_examples=1000) if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else settings()
ROUNDING = 1e-12
DIM = 2


def _small_mlp(draw: st.DrawFn) -> lipflow.MLP:
    return lipflow.MLP(hidden=(draw(st.integers(1, 3)),), activation=draw(st.sampled_from(["tanh", "relu", "swish"])))


@st.composite
def blocks(draw: st.DrawFn) -> lipflow.Block:
    kind = draw(st.sampled_from(["additive", "affine", "reverse", "actnorm", "linear", "residual"]))
    if kind == "additive":
        conditioning = draw(st.sampled_from(["first", "second"]))
        return lipflow.AdditiveCoupling(DIM, t=_small_mlp(draw), conditioning=conditioning)
    if kind == "affine":
        scale = draw(st.sampled_from([lipflow.Sigmoid(shift=2.0), lipflow.Bounded(0.5, 1.0), lipflow.SoftClamp(1.0),
                                      lipflow.Exp()]))
        return lipflow.AffineCoupling(DIM, s=_small_mlp(draw), t=_small_mlp(draw), scale=scale,
                                      form=draw(st.sampled_from(["realnvp", "glow"])),
                                      conditioning=draw(st.sampled_from(["first", "second"])))
    if kind == "reverse":
        return lipflow.Reverse(DIM)
    if kind == "actnorm":
        return lipflow.ActNorm(DIM)
    if kind == "linear":
        return lipflow.InvertibleLinear(DIM, seed=draw(st.integers(0, 100)))
    return lipflow.Residual(DIM, hidden=(draw(st.integers(1, 3)),), coeff=draw(st.floats(0.1, 0.9)))


@st.composite
def boxes(draw: st.DrawFn) -> Box:
    half = draw(st.floats(0.05, 2.0))
    center = np.array(draw(st.lists(st.floats(-1.5, 1.5), min_size=DIM, max_size=DIM)))
    return Box(center - half, center + half)


@FAMILY
@given(st.lists(blocks(), min_size=2, max_size=3), st.integers(0, 2**16), boxes(),
       st.sampled_from(["forward", "inverse"]))
def test_flow_upper_dominates_estimate(layers: list, seed: int, box: Box, direction: str) -> None:
    flow = lipflow.Flow(layers)
    params = flow.init(seed)
    upper = flow_lipschitz(flow, params, direction=direction, box=box, splits=2, method="composition")
    assert upper.label == "lem:composition" and len(upper.layers) == len(layers)
    lower = estimate(flow, params, direction=direction, box=box, n_samples=8, n_starts=0)
    assert lower.value <= upper.value * (1 + ROUNDING), (upper.summary(), lower.summary())


@FAMILY
@given(blocks(), st.integers(0, 2**16), boxes(), st.sampled_from(["forward", "inverse"]))
def test_image_box_contains_samples(block: lipflow.Block, seed: int, box: Box, direction: str) -> None:
    params = block.init(seed)
    image = image_box(block, params, box, direction)
    rng = np.random.default_rng(seed)
    points = np.vstack([box.lo + (box.hi - box.lo) * rng.random((16, DIM)), box.lo, box.hi])
    mapped = block.forward(params, points) if direction == "forward" else block.inverse(params, points)
    # float64 evaluation (and the fixed-point inverse's stopping floor) vs exact enclosure
    slack = 1e-9 * (1 + np.abs(mapped))
    assert np.all(mapped >= image.lo - slack) and np.all(mapped <= image.hi + slack)


def test_reconstruction_bound_holds() -> None:
    flow = lipflow.Flow([
        lipflow.AdditiveCoupling(DIM, t=lipflow.MLP(hidden=(8,))), lipflow.Reverse(DIM),
        lipflow.AffineCoupling(DIM, s=lipflow.MLP(hidden=(8,)), t=lipflow.MLP(hidden=(8,)),
                               scale=lipflow.Bounded(0.5, 1.0)),
        lipflow.Reverse(DIM), lipflow.AdditiveCoupling(DIM, t=lipflow.MLP(hidden=(8,))),
    ])
    params = flow.init(0)
    x_box = Box.cube(-1.0, 1.0, DIM)
    x = np.random.default_rng(1).uniform(-1, 1, (200, DIM)).astype(np.float32).astype(np.float64)
    z = np.array(flow.forward(params, x, ctx="mp50"), dtype=object)
    z_delta = np.asarray(flow.forward(params, x.astype(np.float32)), dtype=np.float64)
    x_delta1 = np.array(flow.inverse(params, z_delta, ctx="mp50"), dtype=object)
    x_delta2 = np.asarray(flow.inverse(params, z_delta.astype(np.float32)), dtype=np.float64)
    image = image_box(flow.blocks[0], params[0], x_box)
    for block, block_params in zip(flow.blocks[1:], params[1:], strict=True):
        image = image_box(block, block_params, image)
    y_box = image.hull(Box(z_delta.min(axis=0), z_delta.max(axis=0)))
    lip_inverse = lipschitz(flow, params, direction="inverse", box=y_box)
    delta = np.array([float(v) for v in (z_delta - z).ravel()]).reshape(z.shape)
    delta2 = np.array([float(v) for v in (x_delta2 - x_delta1).ravel()]).reshape(z.shape)
    error = np.array([float(v) for v in (x - x_delta2).ravel()]).reshape(z.shape)
    for i in range(len(x)):
        bound = reconstruction_bound(lip_inverse, float(np.linalg.norm(delta[i])), float(np.linalg.norm(delta2[i])))
        assert float(np.linalg.norm(error[i])) <= bound * (1 + 1e-12)  # float64 norms of mp50 differences
