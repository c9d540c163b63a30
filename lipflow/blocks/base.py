"""The block interface: pure functions of (params, x) with an explicit precision context.

A block is an immutable record of its configuration (dimension, conditioner sizes, scale
function, ...). Its methods are pure functions of ``(params, x)``: they never mutate ``params``
and never cache, because a cached ``inverse(forward(x))`` would hide the very error lipflow
measures (DESIGN section 3). ``params`` are nested dicts / lists of float64 arrays, the master
copy; the context casts them at call time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as onp

from lipflow.errors import LipflowError
from lipflow.precision import Precision, resolve_precision

__all__ = ["Block", "Params", "as_rng", "check_input"]

Params = Any
"""Nested dict / list / tuple of arrays."""


def as_rng(seed: int | onp.random.Generator | None) -> onp.random.Generator:
    """A NumPy generator from a seed (or the generator itself)."""
    if isinstance(seed, onp.random.Generator):
        return seed
    if seed is not None and (not isinstance(seed, (int, onp.integer)) or seed < 0):
        raise LipflowError(f"seed must be a non-negative integer or a numpy Generator, got {seed!r}")
    return onp.random.default_rng(seed)


def check_input(x: Any, dim: int, who: str, ctx: Precision | str | None) -> tuple[Any, Precision]:
    """Validate the shape (n, dim) of ``x`` and return it at the working precision."""
    shape = onp.shape(x)
    if len(shape) != 2:
        raise LipflowError(
            f"{who}: input must have shape (n, {dim}) (a batch of n points), got shape {shape}; "
            f"reshape a single point with x.reshape(1, -1)"
        )
    if shape[1] != dim:
        raise LipflowError(
            f"{who}: input has {shape[1]} features but the block was built for dim={dim}; "
            f"pass arrays of shape (n, {dim}) or rebuild the block with dim={shape[1]}"
        )
    context = resolve_precision(ctx, x)
    return context.cast(x), context


@dataclass(frozen=True)
class Block(ABC):
    """An invertible map R^dim -> R^dim, as pure functions of ``(params, x)``."""

    dim: int

    def __post_init__(self) -> None:
        if not isinstance(self.dim, (int, onp.integer)) or self.dim < 1:
            raise LipflowError(f"{type(self).__name__}: dim must be a positive integer, got {self.dim!r}")

    # ---- what every block provides --------------------------------------------------------
    @property
    @abstractmethod
    def family(self) -> str:
        """The block family, e.g. ``"affine_coupling"``; the bound calculators dispatch on it."""

    @abstractmethod
    def init(self, seed: int | onp.random.Generator | None = 0) -> Params:
        """Random float64 master parameters."""

    @abstractmethod
    def _forward(self, params: Params, x: Any, ctx: Precision) -> Any:
        """Forward map on validated input at precision ``ctx``."""

    @abstractmethod
    def _inverse(self, params: Params, y: Any, ctx: Precision) -> Any:
        """Inverse map on validated input at precision ``ctx``."""

    @abstractmethod
    def _logdet(self, params: Params, x: Any, ctx: Precision) -> Any:
        """log |det J_F(x)| per sample, shape (n,)."""

    def _prepare(self, params: Params) -> Params:
        """Derived parameters computed on the float64 master copy before casting (e.g. the
        spectral normalisation of residual blocks), so every precision evaluates the same map."""
        return params

    def config(self) -> dict[str, Any]:
        """The architecture as a JSON-serialisable dict (see :mod:`lipflow.io`)."""
        from lipflow.blocks.serialise import block_config

        return block_config(self)

    # ---- public, validated entry points -----------------------------------------------------
    def forward(self, params: Params, x: Any, *, ctx: Precision | str | None = None) -> Any:
        """F(x) for a batch ``x`` of shape (n, dim) at precision ``ctx`` (default: x's own)."""
        x, context = check_input(x, self.dim, f"{type(self).__name__}.forward", ctx)
        return self._forward(context.cast(self._prepare(params)), x, context)

    def inverse(self, params: Params, y: Any, *, ctx: Precision | str | None = None) -> Any:
        """F^-1(y) for a batch ``y`` of shape (n, dim) at precision ``ctx``."""
        y, context = check_input(y, self.dim, f"{type(self).__name__}.inverse", ctx)
        return self._inverse(context.cast(self._prepare(params)), y, context)

    def logdet(self, params: Params, x: Any, *, ctx: Precision | str | None = None) -> Any:
        """log |det J_F(x)| per sample, shape (n,)."""
        x, context = check_input(x, self.dim, f"{type(self).__name__}.logdet", ctx)
        return self._logdet(context.cast(self._prepare(params)), x, context)

    def forward_and_logdet(self, params: Params, x: Any, *, ctx: Precision | str | None = None) -> tuple[Any, Any]:
        """(F(x), log |det J_F(x)|) in one pass where the block can share work."""
        x, context = check_input(x, self.dim, f"{type(self).__name__}.forward_and_logdet", ctx)
        params = context.cast(self._prepare(params))
        return self._forward(params, x, context), self._logdet(params, x, context)
