"""Memory-saving gradients (recomputed activations) against ordinary backprop."""

from __future__ import annotations

import math

import autograd.numpy as anp
import numpy as np
import pytest

import lipflow as lf
from lipflow.errors import LipflowError
from lipflow.precision import precision
from lipflow.train import gradient_angle, memory_saving_grad, ordinary_grad
from lipflow.train.tree import flatten_to_vector


def _loss(z, head):
    return anp.mean(anp.sum((anp.dot(z, head["w"]) - 1.0) ** 2, axis=1))


def _stable_flow(dim=4, depth=4):
    blocks = []
    for k in range(depth):
        blocks += [lf.AdditiveCoupling(dim, conditioning="first" if k % 2 == 0 else "second",
                                       t=lf.MLP((8,), "tanh")), lf.ActNorm(dim)]
    return lf.Flow(blocks)


def test_memory_saving_equals_backprop_on_a_stable_flow():
    flow = _stable_flow()
    params = flow.init(0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 4))
    head = {"w": rng.standard_normal((4, 2))}
    ms = memory_saving_grad(flow, params, x, _loss, head, ctx="float64")
    flow_grad, head_grad = ordinary_grad(flow, params, x, _loss, head, ctx="float64")
    ordinary = flatten_to_vector([flow_grad, head_grad])
    saving = flatten_to_vector([ms.flow_grad, ms.head_grad])
    # Recomputation errs by O(u) per block on this well-conditioned flow (additive blocks and
    # ActNorm scales near 1), so the gradients differ at first order by O(L u) relative to
    # their size; sqrt(u) leaves eight digits of room for the conditioning constants.
    u = precision("float64").unit_roundoff
    assert np.linalg.norm(saving - ordinary) <= math.sqrt(u) * np.linalg.norm(ordinary)
    assert ms.recompute_error <= 1e3 * len(flow) * u * (1 + np.max(np.abs(x)))
    angle = gradient_angle([flow_grad, head_grad], [ms.flow_grad, ms.head_grad])
    assert math.radians(angle) <= 2 * math.sqrt(u)


def test_memory_saving_differs_on_an_unstable_affine_flow():
    """Scales g ~ 1e-13 make x2 * g + t lose x2 in float32: the inverse cannot recover it."""
    dim = 4
    flow = lf.Flow([lf.AffineCoupling(dim, conditioning="first" if k % 2 == 0 else "second",
                                      t=lf.MLP((8,), "tanh"), s=lf.MLP((8,), "tanh"), scale=lf.Sigmoid())
                    for k in range(4)])
    params = flow.init(0)
    for p in params:
        p["s"]["biases"][-1] = p["s"]["biases"][-1] - 30.0  # sigmoid(-30) ~ 1e-13
    rng = np.random.default_rng(2)
    x = rng.standard_normal((16, dim)).astype(np.float32)
    head = {"w": rng.standard_normal((dim, 2))}
    ms = memory_saving_grad(flow, params, x, _loss, head, ctx="float32")
    ordinary = ordinary_grad(flow, params, x, _loss, head, ctx="float32")
    assert ms.recompute_error > 0.1 or math.isnan(ms.recompute_error)
    angle = gradient_angle(list(ordinary), [ms.flow_grad, ms.head_grad])
    assert math.isnan(angle) or angle > 10.0


def test_memory_saving_accepts_a_single_block():
    block = lf.AdditiveCoupling(2, t=lf.MLP((4,)))
    params = block.init(0)
    x = np.random.default_rng(3).standard_normal((5, 2))
    head = {"w": np.ones((2, 1))}
    ms = memory_saving_grad(block, params, x, _loss, head, ctx="float64")
    flow_grad, _ = ordinary_grad(block, params, x, _loss, head, ctx="float64")
    assert gradient_angle(flow_grad, ms.flow_grad) < 1e-5


def test_gradient_angle_values_and_nan_handling():
    g = {"a": np.array([1.0, 2.0]), "b": [np.array(3.0)]}
    assert gradient_angle(g, g) == 0.0
    assert gradient_angle(g, {"a": 2 * g["a"], "b": [2 * g["b"][0]]}) == 0.0
    negated = {"a": -g["a"], "b": [-g["b"][0]]}
    assert gradient_angle(g, negated) == pytest.approx(180.0)
    assert gradient_angle(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(90.0)
    assert math.isnan(gradient_angle(np.array([1.0, np.nan]), np.array([1.0, 1.0])))
    assert math.isnan(gradient_angle(np.array([1.0, np.inf]), np.array([1.0, 1.0])))
    assert math.isnan(gradient_angle(np.zeros(2), np.ones(2)))
    with pytest.raises(LipflowError):
        gradient_angle(np.ones(2), np.ones(3))
