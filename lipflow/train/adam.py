"""Adam (Kingma and Ba 2015) as a pure function over parameter pytrees."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as onp

from lipflow.errors import LipflowError
from lipflow.train.tree import tree_map_n

__all__ = ["AdamConfig", "AdamState", "adam_init", "adam_update"]


@dataclass(frozen=True)
class AdamConfig:
    """Adam's hyper-parameters (the defaults of the paper's experiments: lr 1e-3)."""

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise LipflowError(f"Adam learning rate must be a positive finite number, got {self.lr!r}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise LipflowError(f"Adam betas must lie in [0, 1), got beta1={self.beta1}, beta2={self.beta2}")
        if not self.eps > 0:
            raise LipflowError(f"Adam eps must be positive, got {self.eps!r}")


@dataclass(frozen=True)
class AdamState:
    """First and second moment estimates (trees shaped like the params) and the step count."""

    m: Any
    v: Any
    step: int = 0


def adam_init(params: Any) -> AdamState:
    """Zero moments for ``params``."""
    zeros = tree_map_n(lambda p: onp.zeros_like(onp.asarray(p, dtype=onp.float64)), params)
    return AdamState(m=zeros, v=tree_map_n(onp.copy, zeros), step=0)


def adam_update(
    params: Any, grads: Any, state: AdamState, config: AdamConfig | None = None
) -> tuple[Any, AdamState]:
    """One Adam step with bias correction; returns new (params, state), inputs untouched."""
    config = config or AdamConfig()
    step = state.step + 1
    b1, b2 = config.beta1, config.beta2
    m = tree_map_n(lambda m_, g: b1 * m_ + (1 - b1) * onp.asarray(g, dtype=onp.float64), state.m, grads)
    v = tree_map_n(lambda v_, g: b2 * v_ + (1 - b2) * onp.asarray(g, dtype=onp.float64) ** 2, state.v, grads)
    correction1, correction2 = 1 - b1**step, 1 - b2**step

    def move(p: Any, m_: Any, v_: Any) -> Any:
        return p - config.lr * (m_ / correction1) / (onp.sqrt(v_ / correction2) + config.eps)

    return tree_map_n(move, params, m, v), AdamState(m=m, v=v, step=step)
