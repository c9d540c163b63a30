"""Empirical *lower* bounds on Lipschitz constants over a box (theory ``lem:convex-jacobian``).

The largest Jacobian spectral norm found by sampling (uniform points and box vertices) and local
optimisation (scipy L-BFGS-B on sigma_max(J(x)), Jacobians by autograd), and the largest
difference quotient. Every such value is attained by the Lipschitz quotient, so it is a lower
bound, up to the float64 rounding of its own evaluation. It is never labelled an upper bound.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as onp
import scipy.optimize
import sympy

from lipflow.analysis.jacobian import jacobian
from lipflow.blocks.base import Block
from lipflow.bounds.result import LipschitzBound, check_direction
from lipflow.bounds.rigorous import Box
from lipflow.errors import LipflowError

__all__ = ["DEFAULT_HALF_WIDTH", "estimate"]

DEFAULT_HALF_WIDTH = 3.0
ROUNDING_ALLOWANCE = 2.0**-46
J_max, Q_max = sympy.symbols("J_max Q_max", nonnegative=True)


def _sigma_max(block: Block, params: Any, points: onp.ndarray, direction: str) -> onp.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        jac = onp.asarray(jacobian(block, params, points, ctx="float64", direction=direction), dtype=onp.float64)
    values = onp.full(len(points), -onp.inf)
    finite = onp.all(onp.isfinite(jac), axis=(1, 2))
    if onp.any(finite):
        values[finite] = onp.linalg.svd(jac[finite], compute_uv=False)[:, 0]
    return values


def _apply(block: Block, params: Any, points: onp.ndarray, direction: str) -> onp.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mapped = block.forward if direction == "forward" else block.inverse
        return onp.asarray(mapped(params, points, ctx="float64"), dtype=onp.float64)


def _quotients(block: Block, params: Any, a: onp.ndarray, b: onp.ndarray, direction: str) -> onp.ndarray:
    if direction == "inverse":
        # an iterative inverse is only converged to its stopping rule, which a short step would
        # amplify: use the computed preimages p, q and the exact pair (F(p), F(q)) instead,
        # ||p - q|| / ||F(p) - F(q)|| being a quotient of F^-1 (F is evaluated directly)
        pa, pb = _apply(block, params, a, "inverse"), _apply(block, params, b, "inverse")
        fa, fb = _apply(block, params, pa, "forward"), _apply(block, params, pb, "forward")
        allowance = ROUNDING_ALLOWANCE * (onp.linalg.norm(fa, axis=1) + onp.linalg.norm(fb, axis=1))
        num = onp.linalg.norm(pa - pb, axis=1) * (1 - ROUNDING_ALLOWANCE)
        den = onp.linalg.norm(fa - fb, axis=1) + allowance
        with onp.errstate(divide="ignore", invalid="ignore"):
            q = onp.where(den > 0, num / den, -onp.inf)
        return onp.where(onp.isfinite(q), q, -onp.inf)
    fa, fb = _apply(block, params, a, direction), _apply(block, params, b, direction)
    # reduce by a float64 rounding allowance (128 u relative to the values) so that the
    # computed quotient does not exceed the exact one through cancellation
    allowance = ROUNDING_ALLOWANCE * (onp.linalg.norm(fa, axis=1) + onp.linalg.norm(fb, axis=1))
    num = onp.maximum(onp.linalg.norm(fa - fb, axis=1) - allowance, 0.0)
    den = onp.linalg.norm(a - b, axis=1)
    with onp.errstate(divide="ignore", invalid="ignore"):
        q = onp.where(den > 0, num / den, -onp.inf)
    return onp.where(onp.isfinite(q), q, -onp.inf)


def estimate(block: Block, params: Any, *, direction: str = "forward", box: Any = None, n_samples: int = 256,
             n_starts: int = 2, maxiter: int = 30, seed: int = 0) -> LipschitzBound:
    """An empirical lower bound (kind "lower") on Lip(F) or Lip(F^-1) over a box.

    Args:
        box: domain of the map (inputs for forward, outputs for inverse), as in
            :func:`lipflow.bounds.lipschitz`; default the cube [-3, 3]^dim (a lower bound of the
            global constant too).
        n_samples: uniform sample points (plus n_samples // 4 random box vertices, as many points
            mixing face and interior coordinates, and the centre).
        n_starts: local optimisations started from the best sampled points (0 disables them).
        maxiter: iterations per local optimisation.
    """
    from lipflow.bounds.api import as_box

    check_direction(direction)
    if n_samples < 1 or n_starts < 0 or maxiter < 1:
        raise LipflowError("need n_samples >= 1, n_starts >= 0, maxiter >= 1")
    region = as_box(box, block.dim) or Box.cube(-DEFAULT_HALF_WIDTH, DEFAULT_HALF_WIDTH, block.dim)
    rng = onp.random.default_rng(seed)
    lo, hi = region.lo, region.hi
    uniform = lo + (hi - lo) * rng.random((n_samples, block.dim))
    extra = max(1, n_samples // 4)
    vertices = onp.where(rng.random((extra, block.dim)) < 0.5, lo, hi)
    # mixed points: some coordinates at a face of the box, the others uniform or central
    # (coupling blocks are steepest where x2 is extreme and x1 is where J_s is large)
    shape = (extra, block.dim)
    inner = onp.where(rng.random(shape) < 0.5, 0.5 * (lo + hi), lo + (hi - lo) * rng.random(shape))
    mixed = onp.where(rng.random(shape) < 0.5, inner, onp.where(rng.random(shape) < 0.5, lo, hi))
    points = onp.vstack([uniform, vertices, mixed, 0.5 * (lo + hi)])
    sigmas = _sigma_max(block, params, points, direction)
    best = int(onp.argmax(sigmas))
    best_sigma, best_point = float(sigmas[best]), points[best]

    bounds = list(zip(lo, hi, strict=True))
    for start in onp.argsort(sigmas)[::-1][:n_starts]:
        def objective(x: onp.ndarray) -> float:
            value = _sigma_max(block, params, x[None, :], direction)[0]
            return -value if onp.isfinite(value) else 0.0

        result = scipy.optimize.minimize(objective, points[start], method="L-BFGS-B", bounds=bounds,
                                         options={"maxiter": maxiter})
        x = onp.clip(result.x, lo, hi)
        value = float(_sigma_max(block, params, x[None, :], direction)[0])
        if value > best_sigma:
            best_sigma, best_point = value, x

    # difference quotients: random pairs, and a short step along the top singular direction
    pairs = rng.permutation(len(points))
    quotient = float(onp.max(_quotients(block, params, points, points[pairs], direction), initial=-onp.inf))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        jac = onp.asarray(jacobian(block, params, best_point[None, :], ctx="float64", direction=direction))[0]
    if onp.all(onp.isfinite(jac)):
        v = onp.linalg.svd(jac)[2][0]
        step = 1e-4 * (1.0 + onp.max(onp.abs(best_point)))
        a, b = onp.clip(best_point - step * v, lo, hi), onp.clip(best_point + step * v, lo, hi)
        quotient = max(quotient, float(_quotients(block, params, a[None], b[None], direction)[0]))
    if not onp.isfinite(best_sigma) and not onp.isfinite(quotient):
        raise LipflowError("the map is not finite anywhere on the sampled box; no estimate")
    value = max(best_sigma, quotient)
    return LipschitzBound(
        value=value, kind="lower", direction=direction, label="lem:convex-jacobian",
        expression=sympy.Max(J_max, Q_max), ingredients={"J_max": best_sigma, "Q_max": quotient},
        assumptions=("attained by a Jacobian norm or difference quotient on the box: a lower bound up to "
                     "float64 rounding", f"argmax point {best_point.tolist()}",
                     "sampled in the default cube [-3, 3]^d" if box is None else "sampled in the given box"),
        block=getattr(block, "family", type(block).__name__), box=region.as_tuple(),
    )
