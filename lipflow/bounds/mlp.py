"""Lipschitz bounds and interval images of conditioner MLPs and residual branches.

Theory: ``lem:activation-constants``, ``lem:mlp-lipschitz``, ``lem:interval-image``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as onp
import sympy

from lipflow.blocks.conditioners import MLP, Constant
from lipflow.bounds.result import LipschitzBound
from lipflow.bounds.rigorous import Box, Interval, evaluate_upper, scalar, spectral_norm_upper, up
from lipflow.errors import LipflowError

__all__ = [
    "SWISH_ROOT_BRACKET",
    "activation_image",
    "activation_lipschitz",
    "mlp_image",
    "mlp_lipschitz",
    "network_image",
    "network_lipschitz",
]

#: (lo, hi) with lo < u* < hi for the root u* of u tanh(u/2) = 2 (certified in activation_lipschitz)
SWISH_ROOT_BRACKET = (2.3993572, 2.3993573)
#: an interval containing the minimiser of u sigmoid(u) (root of sigmoid(u)(1 + u(1 - sigmoid(u))))
_SWISH_MIN_BRACKET = (-1.2784646, -1.2784645)
_LIPSWISH_SCALE = 1.1

_MONOTONE = {"relu", "identity", "tanh", "sigmoid", "softplus", "elu"}


@cache
def _swish_constant() -> float:
    """Certified upper bound of sup |d/du [u sigmoid(u)]| = 1/2 + u*/4 (lem:activation-constants)."""
    lo, hi = SWISH_ROOT_BRACKET

    def phi(u: float) -> Interval:  # u tanh(u/2) - 2, increasing for u > 0
        return Interval.point(u) * scalar("tanh", Interval.point(u) / 2) - 2

    if not (phi(lo).hi < 0 < phi(hi).lo):
        raise LipflowError("internal error: swish root bracket not certified")
    return (Interval.point(0.5) + Interval.point(hi) / 4).hi


def activation_lipschitz(name: str) -> float:
    """A rigorous upper bound on the Lipschitz constant of an activation (lem:activation-constants)."""
    table = {
        "identity": 1.0,
        "relu": 1.0,
        "tanh": 1.0,
        "elu": 1.0,
        "softplus": 1.0,
        "sigmoid": 0.25,
        "lipswish": 1.0,
    }
    if name == "swish":
        return _swish_constant()
    if name == "lipswish":
        # (1/2 + u*/4) / 1.1 < 1: the table's 1 is a valid (slightly loose) bound
        assert _swish_constant() / _LIPSWISH_SCALE < 1.0
    if name not in table:
        raise LipflowError(f"no Lipschitz constant known for activation {name!r}; known: {[*sorted(table), 'swish']}")
    return table[name]


def _swish_interval(x: Interval) -> Interval:
    return x * scalar("sigmoid", x)


def _swish_image(box: Box, scale: float) -> Box:
    """Image of u sigmoid(u) / scale: decreasing before u_m, increasing after."""
    m_lo, m_hi = _SWISH_MIN_BRACKET
    lows, highs = [], []
    for a, b in zip(box.lo, box.hi, strict=True):
        top = max(_swish_interval(Interval.point(a)).hi, _swish_interval(Interval.point(b)).hi)
        if b <= m_lo:
            bottom = _swish_interval(Interval.point(b)).lo
        elif a >= m_hi:
            bottom = _swish_interval(Interval.point(a)).lo
        else:
            bottom = _swish_interval(Interval.of(max(a, m_lo), min(b, m_hi))).lo
            bottom = min(bottom, _swish_interval(Interval.of(m_lo, m_hi)).lo)
        lows.append((Interval.point(bottom) / scale).lo if scale != 1 else bottom)
        highs.append((Interval.point(top) / scale).hi if scale != 1 else top)
    return Box(onp.array(lows), onp.array(highs))


def activation_image(name: str, box: Box) -> Box:
    """Enclosure of the elementwise image of ``box`` under an activation (lem:interval-image)."""
    if name == "identity":
        return box
    if name == "relu":
        return Box(onp.maximum(box.lo, 0.0), onp.maximum(box.hi, 0.0))
    if name in ("tanh", "sigmoid", "softplus"):
        return box.apply(name)
    if name == "elu":
        def elu(v: float, low: bool) -> float:
            if v > 0:
                return v
            value = scalar("exp", Interval.point(v)) - 1
            return value.lo if low else value.hi

        return Box(onp.array([elu(v, True) for v in box.lo]), onp.array([elu(v, False) for v in box.hi]))
    if name == "swish":
        return _swish_image(box, 1.0)
    if name == "lipswish":
        return _swish_image(box, _LIPSWISH_SCALE)
    raise LipflowError(f"no interval image for activation {name!r}")


def network_lipschitz(weights: Sequence[Any], activation: str, *, label: str = "lem:mlp-lipschitz",
                      block: str = "mlp") -> LipschitzBound:
    """ell^(K-1) prod_k ||W_k||_2 with certified spectral norms (lem:mlp-lipschitz)."""
    if not weights:
        raise LipflowError("network has no layers")
    symbols = sympy.symbols(f"w_1:{len(weights) + 1}", nonnegative=True)
    ell = sympy.Symbol("ell", nonnegative=True)
    expression = ell ** (len(weights) - 1) * sympy.Mul(*symbols)
    values: dict[str, float] = {"ell": activation_lipschitz(activation)}
    for symbol, w in zip(symbols, weights, strict=True):
        values[str(symbol)] = spectral_norm_upper(onp.asarray(w, dtype=onp.float64))
    value = evaluate_upper(expression, values)
    return LipschitzBound(
        value=value, kind="upper", direction="forward", label=label, expression=expression,
        ingredients=values, assumptions=(f"activation {activation} with Lipschitz constant <= {values['ell']}",),
        block=block,
    )


def mlp_lipschitz(conditioner: MLP | Constant, params: Any) -> LipschitzBound:
    """Rigorous global Lipschitz bound of a coupling conditioner (0 for a constant)."""
    if isinstance(conditioner, Constant):
        zero = sympy.Integer(0)
        return LipschitzBound(value=0.0, kind="upper", direction="forward", label="lem:mlp-lipschitz",
                              expression=zero, assumptions=("constant conditioner",), block="constant")
    return network_lipschitz(params["weights"], conditioner.activation)


def network_image(weights: Sequence[Any], biases: Sequence[Any], activation: str, box: Box) -> Box:
    """Enclosure of the image of ``box`` under x -> W_K(phi(... phi(x W_1 + b_1) ...)) + b_K."""
    current = box
    last = len(weights) - 1
    for layer, (w, b) in enumerate(zip(weights, biases, strict=True)):
        current = current.affine(onp.asarray(w, dtype=onp.float64), onp.asarray(b, dtype=onp.float64))
        if layer < last:
            current = activation_image(activation, current)
    return current


def mlp_image(conditioner: MLP | Constant, params: Any, box: Box, out_dim: int) -> Box:
    """Enclosure of the image of a box under a conditioner (lem:interval-image)."""
    if isinstance(conditioner, Constant):
        values = conditioner.values(out_dim)
        return Box(values, values.copy())
    if activation_lipschitz(conditioner.activation) and conditioner.activation not in _MONOTONE | {"swish", "lipswish"}:
        raise LipflowError(f"no interval image for activation {conditioner.activation!r}")
    return network_image(params["weights"], params["biases"], conditioner.activation, box)


def upper_product(a: float, b: float) -> float:
    """a * b rounded up (a, b >= 0)."""
    return up(a * b)
