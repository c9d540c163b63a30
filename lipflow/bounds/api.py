"""The entry point :func:`lipschitz`, dispatching by block family (like scipy.optimize.minimize
dispatches by method)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as onp

from lipflow.blocks.base import Block
from lipflow.blocks.coupling import AdditiveCoupling, AffineCoupling
from lipflow.blocks.flow import Flow
from lipflow.blocks.linear import ActNorm, InvertibleLinear, Permutation
from lipflow.blocks.residual import Residual
from lipflow.bounds.coupling import VARIANTS, additive_lipschitz, affine_lipschitz
from lipflow.bounds.linear import actnorm_lipschitz, linear_lipschitz, permutation_lipschitz
from lipflow.bounds.residual import residual_lipschitz
from lipflow.bounds.result import LipschitzBound, check_direction
from lipflow.bounds.rigorous import Box
from lipflow.errors import LipflowError

__all__ = ["as_box", "block_lipschitz", "lipschitz"]

BoxLike = Box | tuple[float, float] | tuple[Sequence[float], Sequence[float]] | None


def as_box(box: BoxLike, dim: int) -> Box | None:
    """A :class:`Box` from ``(low, high)`` scalars (the cube), ``(lo_vector, hi_vector)`` or a Box."""
    if box is None or isinstance(box, Box):
        if isinstance(box, Box) and box.dim != dim:
            raise LipflowError(f"box has {box.dim} coordinates but the block has dim={dim}")
        return box
    try:
        low, high = box
    except (TypeError, ValueError):
        raise LipflowError(f"box must be (low, high) or (lo_vector, hi_vector), got {box!r}") from None
    lo = onp.broadcast_to(onp.asarray(low, dtype=onp.float64), (dim,)).copy()
    hi = onp.broadcast_to(onp.asarray(high, dtype=onp.float64), (dim,)).copy()
    if not (onp.all(onp.isfinite(lo)) and onp.all(onp.isfinite(hi))):
        raise LipflowError("box bounds must be finite; use box=None for a global bound")
    if onp.any(lo > hi):
        raise LipflowError(f"box needs low <= high in every coordinate, got low={lo}, high={hi}")
    return Box(lo, hi)


DEFAULT_SPLITS = 16


def block_lipschitz(block: Block, params: Any, *, direction: str = "forward", box: Box | None = None,
                    variant: str = "tight", splits: int = DEFAULT_SPLITS) -> LipschitzBound:
    """Dispatch to the family's calculator (no input normalisation)."""
    if isinstance(block, Flow):
        from lipflow.bounds.flow import flow_lipschitz

        return flow_lipschitz(block, params, direction=direction, box=box, variant=variant, splits=splits)
    if isinstance(block, AdditiveCoupling):
        return additive_lipschitz(block, params, direction=direction, box=box, variant=variant)
    if isinstance(block, AffineCoupling):
        return affine_lipschitz(block, params, direction=direction, box=box, variant=variant, splits=splits)
    if isinstance(block, Residual):
        return residual_lipschitz(block, params, direction=direction)
    if isinstance(block, Permutation):
        return permutation_lipschitz(block, params, direction=direction)
    if isinstance(block, InvertibleLinear):
        return linear_lipschitz(block, params, direction=direction)
    if isinstance(block, ActNorm):
        return actnorm_lipschitz(block, params, direction=direction)
    raise LipflowError(f"no Lipschitz bound known for block {type(block).__name__}")


def lipschitz(block: Block, params: Any, *, direction: str = "forward", box: BoxLike = None,
              data: Any = None, variant: str = "tight", splits: int = DEFAULT_SPLITS) -> LipschitzBound:
    """A rigorous upper bound on Lip(F) or Lip(F^-1) of a block or flow.

    Args:
        block: a lipflow block or ``Flow``.
        params: its parameters (``block.init(...)`` or trained).
        direction: ``"forward"`` (Lip F) or ``"inverse"`` (Lip F^-1).
        box: the domain of the map bounded: ``(low, high)`` (the cube ``[low, high]^dim``),
            ``(lo_vector, hi_vector)`` or a :class:`~lipflow.bounds.rigorous.Box`; inputs for
            ``"forward"``, outputs for ``"inverse"``. ``None``: a global bound (not available for
            affine couplings with a learned scale, ``thm:coupling-stability``).
        data: optional points, shape (n, dim), that the box must contain (checked).
        variant: ``"tight"`` (lem:triangular-norm) or ``"simple"`` (max(1, delta) + b) for couplings.
        splits: affine couplings cover the conditioning part of each box by up to this many
            sub-boxes, flows on a box the whole box by branch and bound (lem:box-subdivision)
            (tighter, proportionally slower; raise it for wide boxes and deep flows); 1 disables
            the subdivision.

    Returns:
        A :class:`LipschitzBound` of kind ``"upper"``.
    """
    check_direction(direction)
    if variant not in VARIANTS:
        raise LipflowError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if not isinstance(block, Block):
        raise LipflowError(f"lipschitz needs a lipflow block or Flow, got {type(block).__name__}")
    region = as_box(box, block.dim)
    if data is not None:
        points = onp.atleast_2d(onp.asarray(data, dtype=onp.float64))
        if points.shape[1] != block.dim:
            raise LipflowError(f"data has {points.shape[1]} features but the block has dim={block.dim}")
        if region is None:
            raise LipflowError("data was given without a box; pass box=... containing the data")
        if not region.contains(points):
            outside = int(onp.sum(onp.any((points < region.lo) | (points > region.hi), axis=1)))
            raise LipflowError(
                f"{outside} of {len(points)} data points lie outside the box lo={region.lo.tolist()}, "
                f"hi={region.hi.tolist()}; a local bound says nothing about them: enlarge the box"
            )
    if not isinstance(splits, int) or splits < 1:
        raise LipflowError(f"splits must be a positive integer, got {splits!r}")
    return block_lipschitz(block, params, direction=direction, box=region, variant=variant, splits=splits)
