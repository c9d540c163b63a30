"""Linear invertible blocks: permutations, a dense invertible linear map (LU form), ActNorm.

Their Lipschitz constants are exact (theory ``lem:linear-exact``): 1 for permutations,
sigma_max(W) and 1/sigma_min(W) for a linear map, max|s_i| and 1/min|s_i| for ActNorm.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as onp
import scipy.linalg

from lipflow.blocks.base import Block, Params, as_rng
from lipflow.blocks.linalg import solve_unit_lower, solve_upper
from lipflow.errors import LipflowError
from lipflow.precision import Precision

__all__ = ["ActNorm", "InvertibleLinear", "Permutation", "Reverse"]


def _check_permutation(perm: tuple[int, ...], dim: int, who: str) -> tuple[int, ...]:
    perm = tuple(int(i) for i in perm)
    if sorted(perm) != list(range(dim)):
        raise LipflowError(f"{who}: {perm} is not a permutation of 0..{dim - 1}")
    return perm


@dataclass(frozen=True, kw_only=True)
class Permutation(Block):
    """y = x[:, perm]; a random permutation (from ``seed``) when ``perm`` is not given."""

    perm: tuple[int, ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        perm = self.perm if self.perm is not None else tuple(onp.random.default_rng(self.seed).permutation(self.dim))
        object.__setattr__(self, "perm", _check_permutation(perm, self.dim, type(self).__name__))

    @property
    def family(self) -> str:
        return "permutation"

    def init(self, seed: int | onp.random.Generator | None = 0) -> Params:
        return {}

    def _forward(self, params: Params, x: Any, ctx: Precision) -> Any:
        return x[:, list(self.perm)]

    def _inverse(self, params: Params, y: Any, ctx: Precision) -> Any:
        return y[:, list(onp.argsort(self.perm))]

    def _logdet(self, params: Params, x: Any, ctx: Precision) -> Any:
        return ctx.zeros((onp.shape(x)[0],))


def Reverse(dim: int) -> Permutation:
    """The permutation that reverses the coordinates (RealNVP / Glow's "reverse")."""
    return Permutation(dim, perm=tuple(reversed(range(dim))))


@functools.lru_cache(maxsize=1024)
def _seeded_factors(seed: int, dim: int) -> tuple[tuple[int, ...], onp.ndarray, onp.ndarray, onp.ndarray]:
    """(perm, L, U, diag) of the random orthogonal matrix drawn from ``seed`` (memoised; the
    arrays are read-only)."""
    rng = onp.random.default_rng(seed)
    q, _ = onp.linalg.qr(rng.standard_normal((dim, dim)))
    p, lower, upper = scipy.linalg.lu(q)
    perm = tuple(int(i) for i in onp.argmax(p, axis=1))
    diagonal = onp.diag(upper).copy()
    for array in (lower, upper, diagonal):
        array.setflags(write=False)
    return perm, lower, upper, diagonal


@dataclass(frozen=True, kw_only=True)
class InvertibleLinear(Block):
    """y = W x with W = P L (U + diag(sign * exp(log_scale))) (Glow's LU 1x1 convolution).

    P is a fixed permutation, L unit lower triangular, U strictly upper triangular; the
    parametrisation keeps W invertible and gives log|det W| = sum(log_scale) exactly. The
    initial W is a random orthogonal matrix (condition number 1).
    """

    seed: int = 0

    @property
    def family(self) -> str:
        return "invertible_linear"

    @property
    def _factors(self) -> tuple[tuple[int, ...], onp.ndarray, onp.ndarray, onp.ndarray]:
        """(perm, L, U, diag) of the seeded random orthogonal initial matrix."""
        return _seeded_factors(self.seed, self.dim)

    @property
    def perm(self) -> tuple[int, ...]:
        return self._factors[0]

    @property
    def signs(self) -> onp.ndarray:
        return onp.sign(self._factors[3])

    def init(self, seed: int | onp.random.Generator | None = 0) -> Params:
        """A random orthogonal W drawn from ``seed``, factored with the block's own P and signs.

        Q orthogonal from ``seed``; P^T Q = P2 L U (partial pivoting); then W = P D L U with
        D = diag(signs * sign(diag U)) is orthogonal (W = (P D P2^T P^T) Q) and has the factors
        P, D L D (unit lower) and D U (diagonal signs = the block's signs).
        """
        rng = as_rng(seed)
        perm, _, _, _ = self._factors
        q, r = onp.linalg.qr(rng.standard_normal((self.dim, self.dim)))
        q = q * onp.where(onp.diag(r) < 0, -1.0, 1.0)  # Haar-distributed
        p_fixed = onp.eye(self.dim)[list(perm)]
        _, lower, upper = scipy.linalg.lu(p_fixed.T @ q)
        flip = self.signs * onp.where(onp.diag(upper) < 0, -1.0, 1.0)
        lower = flip[:, None] * lower * flip[None, :]
        upper = flip[:, None] * upper
        diagonal = onp.diag(upper)
        return {
            "lower": onp.tril(lower, -1),
            "upper": onp.triu(upper, 1),
            "log_scale": onp.log(onp.abs(diagonal)),
        }

    def matrix(self, params: Params) -> onp.ndarray:
        """W as a float64 array (for spectra and bounds)."""
        lower = onp.tril(onp.asarray(params["lower"], dtype=onp.float64), -1) + onp.eye(self.dim)
        upper = onp.triu(onp.asarray(params["upper"], dtype=onp.float64), 1) + onp.diag(
            self.signs * onp.exp(onp.asarray(params["log_scale"], dtype=onp.float64))
        )
        p = onp.eye(self.dim)[list(self.perm)]
        return p @ lower @ upper

    def _triangles(self, params: Params, ctx: Precision) -> tuple[Any, Any]:
        strictly_lower = ctx.cast(onp.tril(onp.ones((self.dim, self.dim)), -1))
        strictly_upper = ctx.cast(onp.triu(onp.ones((self.dim, self.dim)), 1))
        lower = params["lower"] * strictly_lower + ctx.cast(onp.eye(self.dim))
        diagonal = ctx.cast(self.signs) * ctx.exp(params["log_scale"])
        upper = params["upper"] * strictly_upper + ctx.cast(onp.eye(self.dim)) * diagonal
        return lower, upper

    def _forward(self, params: Params, x: Any, ctx: Precision) -> Any:
        lower, upper = self._triangles(params, ctx)
        # rows are samples: y^T = P L U x^T  <=>  y = ((x U^T) L^T)[:, perm]
        return ctx.dot(ctx.dot(x, upper.T), lower.T)[:, list(self.perm)]

    def _inverse(self, params: Params, y: Any, ctx: Precision) -> Any:
        lower, upper = self._triangles(params, ctx)
        unpermuted = y[:, list(onp.argsort(self.perm))]
        return solve_upper(upper, solve_unit_lower(lower, unpermuted))

    def _logdet(self, params: Params, x: Any, ctx: Precision) -> Any:
        return ctx.zeros((onp.shape(x)[0],)) + ctx.sum(params["log_scale"])


@dataclass(frozen=True, kw_only=True)
class ActNorm(Block):
    """y = (x + bias) * exp(log_scale) per coordinate (Glow's activation normalisation).

    ``init`` draws small random parameters (so the block is not the identity); use
    :meth:`data_init` for Glow's data-dependent initialisation.
    """

    init_std: float = 0.2

    @property
    def family(self) -> str:
        return "actnorm"

    def init(self, seed: int | onp.random.Generator | None = 0) -> Params:
        rng = as_rng(seed)
        return {
            "log_scale": self.init_std * rng.standard_normal(self.dim),
            "bias": self.init_std * rng.standard_normal(self.dim),
        }

    def data_init(self, x: onp.ndarray) -> Params:
        """Parameters that map the batch ``x`` to zero mean and unit variance per coordinate."""
        x = onp.asarray(x, dtype=onp.float64)
        std = onp.std(x, axis=0)
        if onp.any(std == 0) or not onp.all(onp.isfinite(std)):
            raise LipflowError("ActNorm.data_init needs a batch with finite, non-constant coordinates")
        return {"log_scale": -onp.log(std), "bias": -onp.mean(x, axis=0)}

    def _forward(self, params: Params, x: Any, ctx: Precision) -> Any:
        return (x + params["bias"]) * ctx.exp(params["log_scale"])

    def _inverse(self, params: Params, y: Any, ctx: Precision) -> Any:
        return y * ctx.exp(-params["log_scale"]) - params["bias"]

    def _logdet(self, params: Params, x: Any, ctx: Precision) -> Any:
        return ctx.zeros((onp.shape(x)[0],)) + ctx.sum(params["log_scale"])
