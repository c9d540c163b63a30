"""Conditioner networks t, s of coupling blocks, and the activation table.

A conditioner is a recipe (``MLP(hidden=(64, 64), activation="relu")`` or
``Constant(0.123456789)``); the coupling block supplies its input and output sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, NamedTuple

import numpy as onp

from lipflow.errors import LipflowError
from lipflow.precision import Precision
from lipflow.precision import elementwise as ew

__all__ = ["ACTIVATIONS", "MLP", "Activation", "Conditioner", "Constant", "activation"]


class Activation(NamedTuple):
    """An activation phi, its derivative and its global Lipschitz constant."""

    name: str
    apply: Callable[[Precision, Any], Any]
    derivative: Callable[[Precision, Any], Any]
    lipschitz: float


def _lipswish(ctx: Precision, z: Any) -> Any:
    beta, scale = ctx.const(ew.LIPSWISH_BETA), ctx.const(ew.LIPSWISH_SCALE)
    return z * ctx.sigmoid(beta * z) / scale


def _lipswish_derivative(ctx: Precision, z: Any) -> Any:
    beta, scale = ctx.const(ew.LIPSWISH_BETA), ctx.const(ew.LIPSWISH_SCALE)
    s = ctx.sigmoid(beta * z)
    return (s + beta * z * s * (1 - s)) / scale


def _swish_derivative(ctx: Precision, z: Any) -> Any:
    s = ctx.sigmoid(z)
    return s + z * s * (1 - s)


def _tanh_derivative(ctx: Precision, z: Any) -> Any:
    t = ctx.tanh(z)
    return 1 - t * t


def _sigmoid_derivative(ctx: Precision, z: Any) -> Any:
    s = ctx.sigmoid(z)
    return s * (1 - s)


#: max_u d/du [u sigmoid(u)] = 1.0998393201..., rounded up (theory lem:activation-constants)
SWISH_LIPSCHITZ = 1.09983933

ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("relu", lambda c, z: c.relu(z), lambda c, z: ew.step(z), 1.0),
        Activation("tanh", lambda c, z: c.tanh(z), _tanh_derivative, 1.0),
        Activation("elu", lambda c, z: c.elu(z), lambda c, z: ew.elu_derivative(z), 1.0),
        Activation("lipswish", _lipswish, _lipswish_derivative, 1.0),
        Activation("swish", lambda c, z: z * c.sigmoid(z), _swish_derivative, SWISH_LIPSCHITZ),
        Activation("sigmoid", lambda c, z: c.sigmoid(z), _sigmoid_derivative, 0.25),
        Activation("softplus", lambda c, z: c.softplus(z), lambda c, z: c.sigmoid(z), 1.0),
        Activation("identity", lambda c, z: z, lambda c, z: z * 0 + 1, 1.0),
    )
}


def activation(name: str) -> Activation:
    """The activation called ``name``; unknown names list the valid ones."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise LipflowError(f"unknown activation {name!r}; valid activations are {', '.join(ACTIVATIONS)}") from None


@dataclass(frozen=True)
class MLP:
    """A dense network in_dim -> hidden... -> out_dim with one activation between layers.

    Attributes:
        hidden: widths of the hidden layers (empty for an affine map).
        activation: a name from :data:`ACTIVATIONS`.
        init_scale: multiplies the random initial weights of the last layer (0 makes the
            block start as the identity, as Glow does).
    """

    hidden: tuple[int, ...] = (32,)
    activation: str = "tanh"
    init_scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if any(h < 1 for h in self.hidden):
            raise LipflowError(f"MLP hidden widths must be positive, got {self.hidden}")
        activation(self.activation)

    def init(self, rng: onp.random.Generator, in_dim: int, out_dim: int) -> dict[str, list]:
        sizes = (in_dim, *self.hidden, out_dim)
        weights, biases = [], []
        for layer, (fan_in, fan_out) in enumerate(pairwise(sizes)):
            gain = self.init_scale if layer == len(sizes) - 2 else 1.0
            weights.append(gain * rng.standard_normal((fan_in, fan_out)) / onp.sqrt(fan_in))
            biases.append(gain * 0.1 * rng.standard_normal(fan_out))
        return {"weights": weights, "biases": biases}

    def apply(self, params: dict[str, list], x: Any, ctx: Precision, out_dim: int) -> Any:
        phi = activation(self.activation)
        h = x
        last = len(params["weights"]) - 1
        for layer, (w, b) in enumerate(zip(params["weights"], params["biases"], strict=True)):
            h = ctx.dot(h, w) + b
            if layer < last:
                h = phi.apply(ctx, h)
        return h


@dataclass(frozen=True)
class Constant:
    """A constant conditioner t(x1) = value (a scalar or one value per output coordinate).

    Expresses the paper's Figure 1 toy, t(x1) = 0.123456789.
    """

    value: float | tuple[float, ...] = 0.0

    def __post_init__(self) -> None:
        values = onp.atleast_1d(onp.asarray(self.value, dtype=onp.float64))
        if values.ndim != 1 or not onp.all(onp.isfinite(values)):
            raise LipflowError(f"Constant value must be a finite scalar or 1-D sequence, got {self.value!r}")
        stored = float(values[0]) if values.size == 1 and onp.ndim(self.value) == 0 else tuple(map(float, values))
        object.__setattr__(self, "value", stored)

    def values(self, out_dim: int) -> onp.ndarray:
        values = onp.atleast_1d(onp.asarray(self.value, dtype=onp.float64))
        if values.size == 1:
            return onp.full(out_dim, values[0])
        if values.size != out_dim:
            raise LipflowError(
                f"Constant has {values.size} values but the block needs {out_dim}; give a scalar or {out_dim} values"
            )
        return values

    def init(self, rng: onp.random.Generator, in_dim: int, out_dim: int) -> dict[str, list]:
        return {}

    def apply(self, params: dict[str, list], x: Any, ctx: Precision, out_dim: int) -> Any:
        # built from the shape only: 0 * x would turn an infinite input into NaN
        return ctx.cast(onp.broadcast_to(self.values(out_dim), (onp.shape(x)[0], out_dim)).copy())


Conditioner = MLP | Constant
