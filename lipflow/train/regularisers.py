"""Stability regularisers: bi-directional finite differences (paper Eq. 6, Section 3.3.1) and
the normalizing-flow objective with a small coefficient (Section 3.3.2).

The FD penalties follow the authors' set-up (THEORY-NOTES): unit directions v = u/||u||,
u ~ N(0, I); forward ||F(x) - F(x + eps v)||^2 / eps and inverse
||x - F^-1(F(x) + eps v')||^2 / eps, averaged over the batch. On a linear map W they equal
eps ||W v||^2 and eps ||W^-1 v'||^2 exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import autograd.numpy as anp
import numpy as onp

from lipflow.blocks import Block
from lipflow.errors import LipflowError
from lipflow.precision import Precision, resolve_precision
from lipflow.train.losses import nf_loss

__all__ = [
    "FDRegulariser",
    "NFRegulariser",
    "fd_penalties",
    "unit_directions",
]


def unit_directions(rng: onp.random.Generator, shape: tuple[int, int]) -> onp.ndarray:
    """Rows uniform on the unit sphere (normalised Gaussians, Muller 1959), float64."""
    u = rng.standard_normal(shape)
    return u / onp.linalg.norm(u, axis=1, keepdims=True)


def fd_penalties(
    flow: Block,
    params: Any,
    x: Any,
    v_forward: Any,
    v_inverse: Any,
    eps: float,
    *,
    ctx: Precision | str | None = None,
) -> tuple[Any, Any]:
    """(forward, inverse) finite-difference penalties, each a batch mean (Eq. 6, squared)."""
    context = resolve_precision(ctx, x)
    x = context.cast(x)
    step = context.const(eps)
    z = flow.forward(params, x, ctx=context)
    z_moved = flow.forward(params, x + step * context.cast(v_forward), ctx=context)
    forward = anp.mean(context.sum((z - z_moved) ** 2, axis=1)) / step
    x_back = flow.inverse(params, z + step * context.cast(v_inverse), ctx=context)
    inverse = anp.mean(context.sum((x - x_back) ** 2, axis=1)) / step
    return forward, inverse


@dataclass(frozen=True)
class FDRegulariser:
    """coeff_forward * forward + coeff_inverse * inverse penalty, applied every ``every`` steps.

    Defaults are the authors' (THEORY-NOTES): eps = 0.1, coefficients 1e-4.
    """

    coeff_forward: float = 1e-4
    coeff_inverse: float = 1e-4
    eps: float = 0.1
    every: int = 1

    def __post_init__(self) -> None:
        if not (self.coeff_forward >= 0 and self.coeff_inverse >= 0):
            raise LipflowError("FD regulariser coefficients must be >= 0")
        if not (math.isfinite(self.eps) and self.eps > 0):
            raise LipflowError(f"FD step eps must be a positive finite number, got {self.eps!r}")
        if not (isinstance(self.every, int) and self.every >= 1):
            raise LipflowError(f"FD 'every' must be a positive integer (apply every k steps), got {self.every!r}")

    def active(self, step: int) -> bool:
        """Whether the penalty is applied at (0-based) ``step``."""
        return step % self.every == 0

    def directions(self, rng: onp.random.Generator, shape: tuple[int, int]) -> tuple[onp.ndarray, onp.ndarray]:
        """Fresh (v_forward, v_inverse) for one step."""
        return unit_directions(rng, shape), unit_directions(rng, shape)

    def __call__(
        self, flow: Block, params: Any, x: Any, noise: tuple[Any, Any], *, ctx: Precision | str | None = None
    ) -> Any:
        forward, inverse = fd_penalties(flow, params, x, noise[0], noise[1], self.eps, ctx=ctx)
        return self.coeff_forward * forward + self.coeff_inverse * inverse


@dataclass(frozen=True)
class NFRegulariser:
    """coeff * mean negative log-likelihood: the NF objective as a local stabiliser (Sec. 3.3.2)."""

    coeff: float = 1e-6

    def __post_init__(self) -> None:
        if not (math.isfinite(self.coeff) and self.coeff >= 0):
            raise LipflowError(f"NF regulariser coefficient must be finite and >= 0, got {self.coeff!r}")

    def __call__(self, flow: Block, params: Any, x: Any, *, ctx: Precision | str | None = None) -> Any:
        return self.coeff * nf_loss(flow, params, x, ctx=ctx)
