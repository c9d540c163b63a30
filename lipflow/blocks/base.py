"""The block interface: pure functions of (params, x) with an explicit precision context.

A block is an immutable record of its configuration (dimension, conditioner sizes, scale
function, ...). Its methods are pure functions of ``(params, x)``: they never mutate ``params``
and never cache, because a cached ``inverse(forward(x))`` would hide the very error lipflow
measures (DESIGN section 3). ``params`` are nested dicts / lists of float64 arrays, the master
copy; the context casts them at call time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as onp

from lipflow.errors import LipflowError
from lipflow.precision import Precision, resolve_precision

__all__ = ["Block", "Params", "as_rng", "check_input", "check_params", "check_seed", "params_guard"]

Params = Any
"""Nested dict / list / tuple of arrays."""


def check_seed(seed: Any) -> None:
    """A :class:`LipflowError` unless ``seed`` is None, a non-negative integer or a Generator."""
    if isinstance(seed, onp.random.Generator) or seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, (int, onp.integer)) or seed < 0:
        raise LipflowError(f"seed must be a non-negative integer or a numpy Generator, got {seed!r}")


def as_rng(seed: int | onp.random.Generator | None) -> onp.random.Generator:
    """A NumPy generator from a seed (or the generator itself)."""
    if isinstance(seed, onp.random.Generator):
        return seed
    check_seed(seed)
    return onp.random.default_rng(seed)


def check_params(block: Block, params: Params) -> None:
    """A :class:`LipflowError` naming the entry of ``params`` whose structure or shape does not
    fit ``block`` (compared with ``block.init(0)``), e.g. a dim-4 flow's params given to a dim-2
    flow. Called after a block's arithmetic failed, so a correct call pays nothing."""
    from lipflow.blocks.serialise import first_mismatch

    mismatch = first_mismatch(block.init(0), _values(params), "params", names=_block_names(block))
    if mismatch:
        raise LipflowError(f"{type(block).__name__}(dim={block.dim}): {mismatch}; pass this block's own params "
                           "(from its init or load_flow)") from None


@contextmanager
def params_guard(block: Block, params: Params) -> Iterator[None]:
    """Refuse complex params up front; turn a shape error from inside the arithmetic into a
    :class:`LipflowError` naming the parameter entry and block that do not fit."""
    check_complex_params(block, params)
    try:
        yield
    except LipflowError:
        raise
    except (ValueError, TypeError, IndexError, KeyError):
        check_params(block, params)
        raise


def _values(tree: Any) -> Any:
    from autograd.tracer import getval

    tree = getval(tree)
    if isinstance(tree, dict):
        return {key: _values(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_values(value) for value in tree]
    return tree


def _block_names(block: Block) -> dict[str, str] | None:
    blocks = getattr(block, "blocks", None)
    if blocks is None:
        return None
    return {f"params/{i}": f"block {i} ({type(b).__name__}(dim={b.dim}))" for i, b in enumerate(blocks)}


def check_complex_params(block: Block, params: Params) -> None:
    """Refuse complex parameters (casting would drop the imaginary part with only a warning)."""
    stack = [params]
    while stack:  # a quick scan first; the path is looked up only when something is complex
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, complex) or getattr(getattr(item, "dtype", None), "kind", "") == "c":
            break
    else:
        return
    for where, value in _leaves(_values(params), "params"):
        dtype = getattr(value, "dtype", None)
        if (dtype is not None and onp.issubdtype(dtype, onp.complexfloating)) or isinstance(value, complex):
            raise LipflowError(f"{type(block).__name__}: {where} is complex; lipflow's blocks have real parameters")


def _leaves(tree: Any, where: str) -> Any:
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, f"{where}/{key}")
    elif isinstance(tree, (list, tuple)):
        for index, value in enumerate(tree):
            yield from _leaves(value, f"{where}/{index}")
    else:
        yield where, tree


def check_input(x: Any, dim: int, who: str, ctx: Precision | str | None) -> tuple[Any, Precision]:
    """Validate the shape (n, dim) of ``x`` and return it at the working precision.

    Nested lists and tuples are accepted as NumPy accepts them; complex or non-numeric input
    is refused (a cast would silently drop the imaginary part).
    """
    if isinstance(x, (list, tuple)):
        try:
            x = onp.asarray(x)
        except ValueError as error:
            raise LipflowError(f"{who}: input is not a rectangular array of numbers ({error})") from None
    dtype = getattr(x, "dtype", None)
    if dtype is not None and onp.issubdtype(dtype, onp.complexfloating):
        raise LipflowError(f"{who}: input is complex ({dtype}); lipflow's blocks are real maps, pass x.real "
                           "if the imaginary part is meant to be dropped")
    if dtype is not None and dtype.kind in "USMm":  # text, bytes, dates: not numbers (dd arrays are structured)
        raise LipflowError(f"{who}: input of dtype {dtype} is not numeric")
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
        with params_guard(self, params):
            return self._forward(context.cast(self._prepare(params)), x, context)

    def inverse(self, params: Params, y: Any, *, ctx: Precision | str | None = None) -> Any:
        """F^-1(y) for a batch ``y`` of shape (n, dim) at precision ``ctx``."""
        y, context = check_input(y, self.dim, f"{type(self).__name__}.inverse", ctx)
        with params_guard(self, params):
            return self._inverse(context.cast(self._prepare(params)), y, context)

    def logdet(self, params: Params, x: Any, *, ctx: Precision | str | None = None) -> Any:
        """log |det J_F(x)| per sample, shape (n,)."""
        x, context = check_input(x, self.dim, f"{type(self).__name__}.logdet", ctx)
        with params_guard(self, params):
            return self._logdet(context.cast(self._prepare(params)), x, context)

    def forward_and_logdet(self, params: Params, x: Any, *, ctx: Precision | str | None = None) -> tuple[Any, Any]:
        """(F(x), log |det J_F(x)|) in one pass where the block can share work."""
        x, context = check_input(x, self.dim, f"{type(self).__name__}.forward_and_logdet", ctx)
        with params_guard(self, params):
            cast = context.cast(self._prepare(params))
            return self._forward(cast, x, context), self._logdet(cast, x, context)
