"""Mean-value flow bounds (lem:mean-value-flow): the Jacobian enclosure contains every sampled
Jacobian, and the bound dominates sampled lower bounds, for random flows of every supported family."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lipflow
from lipflow.analysis.jacobian import jacobian
from lipflow.bounds import Box, estimate, lipschitz
from lipflow.bounds.flow import flow_lipschitz

pytest.importorskip("flint", reason="needs the certified extra: pip install 'lipflow[certified]'")

from lipflow.bounds.meanvalue import flow_jacobian_enclosure, meanvalue_lipschitz

FAMILY = settings(max_examples=500, deadline=None) if os.environ.get("HYPOTHESIS_PROFILE") == "ci" \
    else settings(max_examples=25, deadline=None)
ROUNDING = 1e-12
DIM = 4


def _mlp(draw: st.DrawFn) -> lipflow.MLP:
    return lipflow.MLP(hidden=(draw(st.integers(1, 4)),), activation=draw(st.sampled_from(["tanh", "relu", "swish"])))


@st.composite
def blocks(draw: st.DrawFn) -> lipflow.Block:
    kind = draw(st.sampled_from(["additive", "affine", "reverse", "actnorm", "linear", "residual"]))
    if kind == "additive":
        return lipflow.AdditiveCoupling(DIM, t=_mlp(draw), conditioning=draw(st.sampled_from(["first", "second"])))
    if kind == "affine":
        scale = draw(st.sampled_from([lipflow.Sigmoid(shift=2.0), lipflow.Bounded(0.5, 1.0), lipflow.SoftClamp(1.0),
                                      lipflow.Exp()]))
        return lipflow.AffineCoupling(DIM, s=_mlp(draw), t=_mlp(draw), scale=scale,
                                      form=draw(st.sampled_from(["realnvp", "glow"])),
                                      conditioning=draw(st.sampled_from(["first", "second"])))
    if kind == "reverse":
        return lipflow.Reverse(DIM)
    if kind == "actnorm":
        return lipflow.ActNorm(DIM)
    if kind == "linear":
        return lipflow.InvertibleLinear(DIM, seed=draw(st.integers(0, 100)))
    return lipflow.Residual(DIM, hidden=(draw(st.integers(1, 4)),), coeff=draw(st.floats(0.1, 0.9)),
                            activation=draw(st.sampled_from(["lipswish", "elu", "tanh"])))


@st.composite
def boxes(draw: st.DrawFn) -> tuple[np.ndarray, float]:
    half = draw(st.sampled_from([1e-6, 1e-3, 0.05, 0.3]))
    center = np.array(draw(st.lists(st.floats(-1.5, 1.5), min_size=DIM, max_size=DIM)))
    return center, half


def _domain_box(flow, params, center, half, direction):
    if direction == "inverse":  # a box around an output
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            center = np.asarray(flow.forward(params, center[None, :]))[0]
    return Box(center - half, center + half)


@FAMILY
@given(st.lists(blocks(), min_size=1, max_size=5), st.integers(0, 2**16), boxes(),
       st.sampled_from(["forward", "inverse"]))
def test_enclosure_contains_sampled_jacobians(layers, seed, box_spec, direction):
    flow = lipflow.Flow(layers)
    params = flow.init(seed)
    box = _domain_box(flow, params, *box_spec, direction)
    try:
        enclosure = flow_jacobian_enclosure(flow, params, box, direction=direction)
    except lipflow.errors.UnboundedError:
        return  # no finite enclosure: a verdict of "unproven", never a wrong number
    rng = np.random.default_rng(seed)
    points = box.lo + (box.hi - box.lo) * rng.random((8, DIM))
    points = np.vstack([points, box.lo, box.hi])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jac = np.asarray(jacobian(flow, params, points, ctx="float64", direction=direction))
    distance = np.linalg.norm(jac - enclosure.center[None], ord=2, axis=(1, 2))
    # the float64 Jacobians' own rounding (and the inverse's stopping rule) is far below 1e-9
    assert np.all(distance <= enclosure.error + 1e-9 * (1 + np.linalg.norm(jac, ord=2, axis=(1, 2))))
    from lipflow.analysis.certify import _lower, _upper

    lo = np.vectorize(_lower, otypes=[float])(enclosure.balls)
    hi = np.vectorize(_upper, otypes=[float])(enclosure.balls)
    slack = 1e-9 * (1 + np.abs(jac))
    assert np.all(jac >= lo - slack) and np.all(jac <= hi + slack)


@FAMILY
@given(st.lists(blocks(), min_size=2, max_size=6), st.integers(0, 2**16), boxes(),
       st.sampled_from(["forward", "inverse"]))
def test_meanvalue_bound_dominates_estimate(layers, seed, box_spec, direction):
    flow = lipflow.Flow(layers)
    params = flow.init(seed)
    box = _domain_box(flow, params, *box_spec, direction)
    try:
        upper = meanvalue_lipschitz(flow, params, direction=direction, box=box)
    except lipflow.errors.UnboundedError:
        return
    assert upper.kind == "upper" and upper.label == "lem:mean-value-flow"
    lower = estimate(flow, params, direction=direction, box=box, n_samples=8, n_starts=1, maxiter=5)
    assert lower.value <= upper.value * (1 + ROUNDING), (upper.summary(), lower.summary())


def test_auto_uses_meanvalue_on_boxes_and_composition_globally():
    flow = lipflow.Flow([lipflow.AffineCoupling(2), lipflow.InvertibleLinear(2, seed=1), lipflow.AffineCoupling(2)])
    params = flow.init(0)
    on_box = lipschitz(flow, params, box=(-0.1, 0.1))
    composed = flow_lipschitz(flow, params, box=Box.cube(-0.1, 0.1, 2), method="composition")
    assert on_box.label == "lem:mean-value-flow" and on_box.value <= composed.value
    flow = lipflow.Flow([lipflow.AdditiveCoupling(2), lipflow.Reverse(2)])
    assert lipschitz(flow, flow.init(0)).label == "lem:composition"
    with pytest.raises(lipflow.errors.LipflowError, match="needs a box"):
        flow_lipschitz(flow, flow.init(0), method="meanvalue")


def test_deep_flow_bound_stays_finite_and_tight_on_a_small_box():
    layers = []
    for k in range(20):
        layers += [lipflow.AffineCoupling(4), lipflow.InvertibleLinear(4, seed=k)]
    flow = lipflow.Flow(layers)
    params = flow.init(3)
    x = np.random.default_rng(0).standard_normal(4)
    box = Box(x - 1e-3, x + 1e-3)
    upper = meanvalue_lipschitz(flow, params, box=box)
    lower = estimate(flow, params, box=box, n_samples=16, n_starts=1, maxiter=5)
    assert lower.value <= upper.value <= 1.5 * lower.value
