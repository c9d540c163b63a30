"""Exact Lipschitz constants of permutations, invertible linear maps and ActNorm.

Theory: ``lem:permutation``, ``lem:linear-exact``, ``lem:actnorm``. Values are exact constants
rounded up by certified margins.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as onp
import sympy

from lipflow.blocks.linear import ActNorm, InvertibleLinear, Permutation
from lipflow.bounds.result import LipschitzBound, check_direction
from lipflow.bounds.rigorous import Interval, evaluate_upper, gamma, scalar, singular_value_bounds, up
from lipflow.errors import LipflowError

__all__ = ["actnorm_lipschitz", "linear_factors", "linear_lipschitz", "permutation_lipschitz"]

sigma_max, sigma_min, s_max, s_min = sympy.symbols("sigma_max sigma_min s_max s_min", positive=True)


def permutation_lipschitz(block: Permutation, params: Any = None, *, direction: str = "forward") -> LipschitzBound:
    """Exactly 1 in both directions (lem:permutation)."""
    check_direction(direction)
    return LipschitzBound(value=1.0, kind="upper", direction=direction, label="lem:permutation",
                          expression=sympy.Integer(1), block=block.family,
                          assumptions=("global on R^d", "exact"))


def linear_factors(block: InvertibleLinear, params: Any) -> tuple[onp.ndarray, onp.ndarray, onp.ndarray]:
    """(lower, upper_center, upper_radius): W = P L U with U enclosed entrywise (its diagonal
    sign * exp(log_scale) is a transcendental value)."""
    d = block.dim
    lower = onp.tril(onp.asarray(params["lower"], dtype=onp.float64), -1) + onp.eye(d)
    upper = onp.triu(onp.asarray(params["upper"], dtype=onp.float64), 1)
    radius = onp.zeros((d, d))
    for i, (sign, log_scale) in enumerate(zip(block.signs, onp.asarray(params["log_scale"], dtype=float), strict=True)):
        e = scalar("exp", Interval.point(float(log_scale)))
        mid = 0.5 * (e.lo + e.hi)
        upper[i, i] = sign * mid
        radius[i, i] = up(max(e.hi - mid, mid - e.lo))
    return lower, upper, radius


def _enclose_product(lower: onp.ndarray, upper: onp.ndarray, radius: onp.ndarray) -> tuple[onp.ndarray, float]:
    """(W_hat, r) with ||L U_exact - W_hat||_2 <= r (Frobenius norm of the radius)."""
    d = lower.shape[0]
    w_hat = lower @ upper
    rad = onp.abs(lower) @ radius + gamma(d) * (onp.abs(lower) @ onp.abs(upper))
    rad = onp.nextafter(rad * (1 + 2 * gamma(d + 2)) + (d + 2) * 2.0**-1074, onp.inf)
    frob = up(math.sqrt(up(float(onp.sum(rad * rad)) * (1 + 2 * gamma(d * d + 2)))))
    return w_hat, frob


def linear_lipschitz(block: InvertibleLinear, params: Any, *, direction: str = "forward") -> LipschitzBound:
    """sigma_max(W) forward, 1/sigma_min(W) inverse, certified (lem:linear-exact)."""
    check_direction(direction)
    w_hat, radius = _enclose_product(*linear_factors(block, params))
    low, high = singular_value_bounds(w_hat)
    if direction == "forward":
        value = evaluate_upper(sigma_max, {sigma_max: up(high + radius)})
        ingredients, expression = {"sigma_max": up(high + radius)}, sigma_max
    else:
        smallest = (Interval.point(low) - Interval.point(radius)).lo
        if not smallest > 0:
            raise LipflowError("could not certify that W is invertible (sigma_min not bounded away from 0)")
        expression = 1 / sigma_min
        ingredients = {"sigma_min": smallest}
        value = evaluate_upper(expression, {sigma_min: smallest})
    return LipschitzBound(value=value, kind="upper", direction=direction, label="lem:linear-exact",
                          expression=expression, ingredients=ingredients, block=block.family,
                          assumptions=("global on R^d", "exact up to a certified rounding margin"))


def actnorm_lipschitz(block: ActNorm, params: Any, *, direction: str = "forward") -> LipschitzBound:
    """max_i e^{l_i} forward, max_i e^{-l_i} inverse (lem:actnorm)."""
    check_direction(direction)
    log_scale = onp.asarray(params["log_scale"], dtype=onp.float64)
    if direction == "forward":
        symbol, value_in = s_max, float(log_scale.max())
        expression = sympy.exp(symbol)
    else:
        symbol, value_in = s_min, float(log_scale.min())
        expression = sympy.exp(-symbol)
    value = evaluate_upper(expression, {symbol: value_in})
    return LipschitzBound(value=value, kind="upper", direction=direction, label="lem:actnorm",
                          expression=expression, ingredients={str(symbol): value_in}, block=block.family,
                          assumptions=("global on R^d", "exact up to outward rounding",
                                       "s_max / s_min: largest / smallest log-scale"))
