"""Adam (lipflow.train.adam) and the deterministic training loop."""

from __future__ import annotations

import numpy as np
import pytest

from lipflow.errors import LipflowError
from lipflow.train import AdamConfig, adam_init, adam_update, fit


def test_first_step_is_lr_times_sign():
    """With bias correction the first update is lr * g / (|g| + eps) exactly (in exact maths)."""
    params = {"w": np.array([1.0, -2.0, 3.0]), "b": [np.array(0.5)]}
    grads = {"w": np.array([0.3, -4.0, 1e-3]), "b": [np.array(-2.0)]}
    config = AdamConfig(lr=0.01)
    new, state = adam_update(params, grads, adam_init(params), config)
    u = np.finfo(np.float64).eps / 2
    for key, index in (("w", slice(None)), ("b", 0)):
        old = params[key][index] if key == "w" else params[key][0]
        g = grads[key][index] if key == "w" else grads[key][0]
        got = new[key][index] if key == "w" else new[key][0]
        expected = old - config.lr * g / (np.abs(g) + config.eps)
        # a handful of roundings per entry: |error| <= 16 u max(|old|, lr)
        assert np.all(np.abs(got - expected) <= 16 * u * np.maximum(np.abs(old), config.lr))
    assert state.step == 1
    assert params["w"][0] == 1.0  # inputs untouched


def test_converges_on_a_quadratic():
    target = np.array([1.5, -0.25, 3.0])
    scales = np.array([1.0, 10.0, 0.1])

    def objective(params, batch, step):
        return 0.5 * np.sum(scales * (params["x"] - target) ** 2)

    result = fit(objective, {"x": np.zeros(3)}, lambda step, rng: None, steps=3000,
                 adam=AdamConfig(lr=0.05), progress=False)
    assert np.max(np.abs(result.params["x"] - target)) < 1e-3
    assert result.nonfinite_steps == 0
    assert result.losses[-1] < result.losses[0]


def test_fit_is_deterministic_given_seed():
    def objective(params, batch, step):
        return np.sum((params - batch) ** 2)

    def sample(step, rng):
        return rng.standard_normal(2)

    runs = [fit(objective, np.zeros(2), sample, steps=20, seed=7, progress=False).params for _ in range(2)]
    other = fit(objective, np.zeros(2), sample, steps=20, seed=8, progress=False).params
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], other)


def test_nonfinite_steps_are_skipped_and_counted():
    def objective(params, batch, step):
        return np.sum(params**2) * (np.inf if step == 1 else 1.0)

    result = fit(objective, np.ones(2), lambda s, r: None, steps=3, progress=False)
    assert result.nonfinite_steps == 1
    assert np.isinf(result.losses[1])
    assert np.all(np.isfinite(result.params))


@pytest.mark.parametrize("kwargs", [{"lr": 0.0}, {"lr": float("nan")}, {"beta1": 1.0}, {"eps": 0.0}])
def test_bad_adam_config_is_explained(kwargs):
    with pytest.raises(LipflowError):
        AdamConfig(**kwargs)
