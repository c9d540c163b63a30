"""``Flow``: a composition of blocks. The inverse runs in reverse order, log-dets add."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as onp
from autograd.tracer import getval

from lipflow.blocks.base import Block, Params, check_input, check_seed, params_guard
from lipflow.blocks.residual import FixedPointInfo, Residual
from lipflow.errors import LipflowError
from lipflow.precision import Precision

__all__ = ["Flow"]


@dataclass(frozen=True)
class Flow(Block):
    """F = F_L o ... o F_1 for blocks F_1..F_L of one dimension; itself a block.

    Example:
        >>> import numpy as np, lipflow
        >>> flow = lipflow.Flow([lipflow.AffineCoupling(2), lipflow.Reverse(2),
        ...                      lipflow.AdditiveCoupling(2)])
        >>> params = flow.init(seed=0)
        >>> x = np.array([[0.5, -1.0]])
        >>> bool(np.allclose(flow.inverse(params, flow.forward(params, x)), x))
        True
    """

    blocks: tuple[Block, ...] = ()

    def __init__(self, blocks: Sequence[Block]) -> None:
        blocks = tuple(blocks)
        if not blocks:
            raise LipflowError("Flow needs at least one block, e.g. Flow([AdditiveCoupling(2)])")
        for index, block in enumerate(blocks):
            if not isinstance(block, Block):
                raise LipflowError(f"Flow: item {index} is {block!r}, not a lipflow block")
        dims = {block.dim for block in blocks}
        if len(dims) != 1:
            raise LipflowError(
                "Flow: all blocks must share one dimension, got "
                + ", ".join(f"{type(b).__name__}(dim={b.dim})" for b in blocks)
            )
        object.__setattr__(self, "dim", blocks[0].dim)
        object.__setattr__(self, "blocks", blocks)

    def __len__(self) -> int:
        return len(self.blocks)

    @property
    def family(self) -> str:
        return "flow"

    def init(self, seed: int | onp.random.Generator | None = 0) -> list[Params]:
        """Per-block parameters, each block seeded from an independent child seed."""
        check_seed(seed)
        if isinstance(seed, onp.random.Generator):
            children = [seed] * len(self.blocks)
        else:
            sequence = onp.random.SeedSequence(0 if seed is None else int(seed))
            children = [onp.random.default_rng(child) for child in sequence.spawn(len(self.blocks))]
        return [block.init(rng) for block, rng in zip(self.blocks, children, strict=True)]

    def _check_params(self, params: Params) -> None:
        params = getval(params)  # under autograd a params list arrives boxed
        if not isinstance(params, (list, tuple)) or len(params) != len(self.blocks):
            got = len(params) if isinstance(params, (list, tuple)) else type(params).__name__
            raise LipflowError(
                f"Flow of {len(self.blocks)} blocks needs a list of {len(self.blocks)} parameter sets "
                f"(from flow.init), got {got}"
            )

    def _prepare(self, params: Params) -> Params:
        self._check_params(params)
        return [block._prepare(p) for block, p in zip(self.blocks, params, strict=True)]

    # ---- composition ------------------------------------------------------------------------
    def _forward(self, params: Params, x: Any, ctx: Precision) -> Any:
        for block, p in zip(self.blocks, params, strict=True):
            x = block._forward(p, x, ctx)
        return x

    def _inverse(self, params: Params, y: Any, ctx: Precision) -> Any:
        for block, p in zip(reversed(self.blocks), reversed(params), strict=True):
            y = block._inverse(p, y, ctx)
        return y

    def _logdet(self, params: Params, x: Any, ctx: Precision) -> Any:
        return self._forward_and_logdet(params, x, ctx)[1]

    def _forward_and_logdet(self, params: Params, x: Any, ctx: Precision) -> tuple[Any, Any]:
        total = ctx.zeros((onp.shape(x)[0],))
        for block, p in zip(self.blocks, params, strict=True):
            total = total + block._logdet(p, x, ctx)
            x = block._forward(p, x, ctx)
        return x, total

    def forward_and_logdet(self, params: Params, x: Any, *, ctx: Precision | str | None = None) -> tuple[Any, Any]:
        x, context = check_input(x, self.dim, "Flow.forward_and_logdet", ctx)
        with params_guard(self, params):
            return self._forward_and_logdet(context.cast(self._prepare(params)), x, context)

    # ---- with every intermediate activation ---------------------------------------------------
    def forward_trace(self, params: Params, x: Any, *, ctx: Precision | str | None = None) -> list[Any]:
        """[x_0 = x, x_1 = F_1(x_0), ..., x_L = F(x)] at the working precision."""
        x, context = check_input(x, self.dim, "Flow.forward_trace", ctx)
        with params_guard(self, params):
            cast = context.cast(self._prepare(params))
            trace = [x]
            for block, p in zip(self.blocks, cast, strict=True):
                trace.append(block._forward(p, trace[-1], context))
            return trace

    def inverse_trace(
        self, params: Params, z: Any, *, ctx: Precision | str | None = None
    ) -> tuple[list[Any], list[FixedPointInfo | None]]:
        """([z_L = z, z_{L-1}, ..., z_0 = F^-1(z)], per-block fixed-point records in block order).

        ``z_{k-1} = F_k^-1(z_k)``; the record is ``None`` for blocks with a closed-form inverse.
        """
        z, context = check_input(z, self.dim, "Flow.inverse_trace", ctx)
        with params_guard(self, params):
            return self._inverse_trace(context.cast(self._prepare(params)), z, context)

    def _inverse_trace(
        self, params: Params, z: Any, context: Precision
    ) -> tuple[list[Any], list[FixedPointInfo | None]]:
        trace, infos = [z], [None] * len(self.blocks)
        for index in reversed(range(len(self.blocks))):
            block = self.blocks[index]
            if isinstance(block, Residual):
                value, infos[index] = block._inverse_with_info(params[index], trace[-1], context)
                block._report(infos[index])
            else:
                value = block._inverse(params[index], trace[-1], context)
            trace.append(value)
        return trace, infos

    def inverse_with_info(
        self, params: Params, z: Any, *, ctx: Precision | str | None = None
    ) -> tuple[Any, list[FixedPointInfo | None]]:
        """F^-1(z) with the per-block fixed-point records (``None`` for closed-form blocks)."""
        trace, infos = self.inverse_trace(params, z, ctx=ctx)
        return trace[-1], infos
