"""A deterministic training loop: Adam on any objective, with a progress bar."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as onp
from autograd import value_and_grad
from tqdm.auto import tqdm

from lipflow.errors import LipflowError
from lipflow.train.adam import AdamConfig, adam_init, adam_update
from lipflow.train.tree import flatten_to_vector

__all__ = ["TrainResult", "fit"]

Objective = Callable[[Any, Any, int], Any]
"""objective(params, batch, step) -> scalar loss (differentiable in params)."""
Sampler = Callable[[int, onp.random.Generator], Any]
"""sample(step, rng) -> batch (data plus any noise the objective needs)."""
Monitor = Callable[[int, Any], dict[str, float]]
"""monitor(step, params) -> named measurements recorded in the history."""


@dataclass
class TrainResult:
    """Final params, the per-step loss, monitor records and the count of skipped steps.

    A step whose loss or gradient is not finite is *skipped* (params unchanged) and counted in
    ``nonfinite_steps``; it is never averaged into anything.
    """

    params: Any
    losses: list[float] = field(default_factory=list)
    records: list[dict[str, float]] = field(default_factory=list)
    nonfinite_steps: int = 0


def fit(
    objective: Objective,
    params: Any,
    sample: Sampler,
    *,
    steps: int,
    adam: AdamConfig | None = None,
    seed: int = 0,
    monitor: Monitor | None = None,
    monitor_every: int = 0,
    progress: bool = True,
    description: str = "training",
) -> TrainResult:
    """Minimise ``objective`` with Adam for ``steps`` steps; deterministic given ``seed``."""
    if not (isinstance(steps, int) and steps >= 0):
        raise LipflowError(f"steps must be a non-negative integer, got {steps!r}")
    adam = adam or AdamConfig()
    rng = onp.random.default_rng(seed)
    state = adam_init(params)
    result = TrainResult(params=params)
    value_and_gradient = value_and_grad(objective)
    bar = tqdm(range(steps), desc=description, disable=not progress, leave=False, mininterval=0.5)
    for step in bar:
        if monitor is not None and monitor_every and step % monitor_every == 0:
            result.records.append({"step": step, **monitor(step, result.params)})
        batch = sample(step, rng)
        with onp.errstate(all="ignore"):
            value, grads = value_and_gradient(result.params, batch, step)
        value = float(value)
        result.losses.append(value)
        if not (math.isfinite(value) and onp.all(onp.isfinite(flatten_to_vector(grads)))):
            result.nonfinite_steps += 1
            continue
        result.params, state = adam_update(result.params, grads, state, adam)
        if step % 25 == 0:
            bar.set_postfix(loss=f"{value:.4g}")
    if monitor is not None and monitor_every:
        result.records.append({"step": steps, **monitor(steps, result.params)})
    return result
