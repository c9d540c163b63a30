"""Stress inputs for measured checks: out-of-distribution noise and dequantisation-box attacks.

The noise kinds are those of the out-of-distribution experiment (uniform, gaussian, rademacher),
centred on the data with its spread; the attack is the invertibility attack of paper Appendix E:
projected sign-gradient ascent, inside the box |x' - x|_inf <= radius, on a differentiable
surrogate of the reconstruction error (the inverse run with each block's input perturbed by a
relative u, u the unit roundoff of the lowest precision considered).
"""

from __future__ import annotations

from typing import Any

import autograd.numpy as anp
import numpy as onp
from autograd import grad

from lipflow.blocks.flow import Flow
from lipflow.precision import precision

__all__ = ["NOISE_KINDS", "attack_inputs", "noise_inputs", "simulated_rounding_error", "stress_inputs"]

NOISE_KINDS = ("uniform", "gaussian", "rademacher")


def noise_inputs(x: onp.ndarray, kind: str, n: int, rng: onp.random.Generator) -> onp.ndarray:
    """n noise points centred on the data mean with its per-coordinate spread (half-range)."""
    centre = 0.5 * (x.min(axis=0) + x.max(axis=0))
    spread = 0.5 * (x.max(axis=0) - x.min(axis=0)) + 1e-12
    shape = (n, x.shape[1])
    unit = {"uniform": lambda: rng.uniform(-1.0, 1.0, shape), "gaussian": lambda: rng.standard_normal(shape),
            "rademacher": lambda: rng.choice([-1.0, 1.0], size=shape)}[kind]()
    return centre + spread * unit


def simulated_rounding_error(flow: Flow, prepared: list[Any], x: Any, signs: onp.ndarray,
                             u: float = 2.0**-24) -> Any:
    """Per-sample ||G_eps(F(x)) - x||_2 at float64, G_eps the inverse with each block's input
    scaled by (1 + u eps_k); ``signs`` has shape (blocks, n, d). Differentiable in x (a 1e-300
    floor under the square root keeps the gradient finite at an exact round trip)."""
    ctx = precision("float64")
    h = flow._forward(prepared, x, ctx)
    for k in reversed(range(len(flow.blocks))):
        h = h * (1.0 + u * signs[k])
        h = flow.blocks[k]._inverse(prepared[k], h, ctx)
    d = h - x
    return anp.sqrt(anp.sum(d * d, axis=1) + 1e-300)


def attack_inputs(flow: Flow, params: Any, x: onp.ndarray, radius: float, rng: onp.random.Generator,
                  steps: int = 10, u: float = 2.0**-8) -> onp.ndarray:
    """Points within |x' - x|_inf <= radius that ascend the reconstruction-error surrogate."""
    prepared = precision("float64").cast(flow._prepare(params))
    signs = rng.choice([-1.0, 1.0], size=(len(flow.blocks), *x.shape))
    gradient = grad(lambda z: anp.sum(anp.log(simulated_rounding_error(flow, prepared, z, signs, u))))
    current = x + rng.uniform(-radius, radius, x.shape)
    step = radius / 4
    for _ in range(steps):
        with onp.errstate(all="ignore"):
            g = onp.nan_to_num(gradient(current), nan=0.0, posinf=0.0, neginf=0.0)
        current = onp.clip(current + step * onp.sign(g), x - radius, x + radius)
    return current


def stress_inputs(flow: Flow, params: Any, x: onp.ndarray, *, n_noise: int, radius: float, u: float,
                  rng: onp.random.Generator, attack_steps: int = 10) -> dict[str, onp.ndarray]:
    """{"ood-uniform": ..., "ood-gaussian": ..., "ood-rademacher": ..., "attack": ...}."""
    out = {f"ood-{kind}": noise_inputs(x, kind, n_noise, rng) for kind in NOISE_KINDS}
    if radius > 0 and attack_steps > 0:
        out["attack"] = attack_inputs(flow, params, x[: max(1, n_noise)], radius, rng, attack_steps, u)
    return out
