"""Memory-saving backprop through an invertible flow, and the gradient angle (paper Section 4.2).

:func:`memory_saving_forward` runs a flow's blocks without recording a graph and keeps only
the output. The backward pass walks the blocks in reverse: it *recomputes* each block's input
through the block's inverse, re-runs that block with gradient tracking, and back-propagates
one block at a time. Memory therefore does not grow with depth, but the gradients are only as
good as the inverse: where the inverse explodes they are wrong or NaN (paper Fig. 1, right).

:func:`gradient_angle` compares them with ordinary backprop by the angle between the two
flattened gradients (NaN when the memory-saving gradient is not finite).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from lipflow.errors import LipflowError
from lipflow.interop import require_torch

require_torch()
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

__all__ = ["flow_blocks", "gradient_angle", "memory_saving_forward"]


def flow_blocks(flow: Any) -> Sequence[nn.Module]:
    """The invertible blocks of ``flow`` (its ``blocks``), each with ``forward_and_logdet``
    (or ``forward`` and ``logdet``) and ``inverse``."""
    blocks = getattr(flow, "blocks", None)
    if blocks is None or not len(blocks):
        raise LipflowError(
            f"memory-saving backprop needs a flow with a non-empty 'blocks' list, got {type(flow).__name__}"
        )
    for index, block in enumerate(blocks):
        if not callable(getattr(block, "inverse", None)):
            raise LipflowError(f"block {index} ({type(block).__name__}) has no inverse method")
    return blocks


def _forward_and_logdet(block: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    method = getattr(block, "forward_and_logdet", None)
    if method is not None:
        return method(x)
    return block(x), block.logdet(x)


def _recompute(block: nn.Module, y: Tensor) -> tuple[list[Tensor], Callable[..., Tensor], Tensor, Tensor]:
    """(leaves, merge, F(x), logdet) with x reconstructed from y through the inverse."""
    method = getattr(block, "recompute", None)
    if method is not None:  # blocks that invert and rebuild their graph in one pass
        return method(y)
    with torch.no_grad():
        x = block.inverse(y)  # the recomputed input: where exploding inverses bite
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        y_again, logdet = _forward_and_logdet(block, x)
    return [x], lambda grad: grad, y_again, logdet


class _MemorySavingFlow(torch.autograd.Function):
    """Inputs: (x, blocks, accumulate, *parameters); outputs (z, logdet). Saves only z.

    With ``accumulate`` the parameter gradients are added to ``p.grad`` block by block (and
    the Function returns none for them), so no more than one block's gradients are in flight.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, blocks: Sequence[nn.Module], accumulate: bool, *parameters: Tensor
    ) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            for block in blocks:
                x, logdet = _forward_and_logdet(block, x)
                total = total + logdet
        ctx.blocks, ctx.accumulate = blocks, accumulate
        ctx.index = {id(p): i for i, p in enumerate(parameters)}
        ctx.save_for_backward(x)
        return x, total

    @staticmethod
    def backward(ctx: Any, grad_z: Tensor, grad_logdet: Tensor) -> tuple[Any, ...]:
        (y,) = ctx.saved_tensors
        grads: list[Tensor | None] = [None] * len(ctx.index)
        for block in reversed(ctx.blocks):
            params = [p for p in block.parameters() if p.requires_grad]
            with torch.enable_grad():
                leaves, merge, y_again, logdet = _recompute(block, y)
                outputs, cotangents = [y_again], [grad_z]
                if grad_logdet is not None and logdet.requires_grad:
                    outputs.append(logdet)
                    cotangents.append(grad_logdet)
                found = torch.autograd.grad(outputs, [*leaves, *params], cotangents, allow_unused=True)
            k = len(leaves)
            grad_z = merge(
                *[g if g is not None else torch.zeros_like(v) for g, v in zip(found[:k], leaves, strict=True)]
            )
            for p, g in zip(params, found[k:], strict=True):
                if g is None:
                    continue
                if ctx.accumulate:
                    p.grad = g if p.grad is None else p.grad.add_(g)
                else:
                    slot = ctx.index[id(p)]
                    grads[slot] = g if grads[slot] is None else grads[slot] + g
            y = merge(*[v.detach() for v in leaves])
        return (grad_z, None, None, *grads)


def memory_saving_forward(flow: Any, x: Tensor, *, accumulate_grad: bool = False) -> tuple[Tensor, Tensor]:
    """(F(x), log|det J_F(x)|) whose backward pass recomputes activations through the inverse.

    Use it in place of ``flow.forward_and_logdet(x)`` in a training step; gradients reach
    ``x`` and every parameter of the flow's blocks. With ``accumulate_grad=True`` (for
    ``loss.backward()`` training loops) parameter gradients are added to ``p.grad`` block by
    block instead of being returned together, which keeps peak memory independent of depth
    apart from the gradients themselves; ``torch.autograd.grad`` then does not see them.
    """
    blocks = flow_blocks(flow)
    parameters = [p for block in blocks for p in block.parameters() if p.requires_grad]
    if accumulate_grad:
        # a leaf that requires grad, so that backward runs even when x does not need a gradient
        anchor = torch.zeros((), dtype=x.dtype, device=x.device, requires_grad=True)
        return _MemorySavingFlow.apply(x, blocks, True, anchor)
    return _MemorySavingFlow.apply(x, blocks, False, *parameters)


def _flat_gradient(parameters: Sequence[Tensor], gradients: Sequence[Tensor | None]) -> Tensor:
    parts = [
        (g if g is not None else torch.zeros_like(p)).reshape(-1).to(torch.float64)
        for p, g in zip(parameters, gradients, strict=True)
    ]
    return torch.cat(parts)


def gradient_angle(flow: Any, loss_of_output: Callable[[Tensor, Tensor], Tensor], x: Tensor) -> dict[str, float]:
    """Angle (degrees) between the ordinary and the memory-saving gradient of one loss.

    Args:
        flow: a flow with ``blocks`` (see :func:`flow_blocks`).
        loss_of_output: ``loss(z, logdet) -> scalar``; for a classifier, close over the labels
            and the head.
        x: a batch.

    Returns ``{"angle_deg", "relative_difference", "ordinary_norm", "memory_saving_norm"}``;
    the angle is NaN when the memory-saving gradient is not finite (paper Fig. 1, right).
    """
    blocks = flow_blocks(flow)
    parameters = [p for block in blocks for p in block.parameters() if p.requires_grad]
    if not parameters:
        raise LipflowError("gradient_angle needs a flow with trainable parameters")
    z, logdet = flow.forward_and_logdet(x) if hasattr(flow, "forward_and_logdet") else _chain(blocks, x)
    ordinary = _flat_gradient(parameters, torch.autograd.grad(loss_of_output(z, logdet), parameters, allow_unused=True))
    z, logdet = memory_saving_forward(flow, x)
    saving = _flat_gradient(parameters, torch.autograd.grad(loss_of_output(z, logdet), parameters, allow_unused=True))
    ordinary_norm = float(torch.linalg.vector_norm(ordinary))
    saving_norm = float(torch.linalg.vector_norm(saving))
    if not bool(torch.isfinite(saving).all()) or ordinary_norm == 0 or saving_norm == 0:
        angle = math.nan
    else:
        # 2 atan2(|a^ - b^|, |a^ + b^|) stays accurate for tiny angles, unlike acos(cos)
        a, b = ordinary / ordinary_norm, saving / saving_norm
        angle = math.degrees(
            2 * math.atan2(float(torch.linalg.vector_norm(a - b)), float(torch.linalg.vector_norm(a + b)))
        )
    difference = float(torch.linalg.vector_norm(saving - ordinary))
    return {
        "angle_deg": angle,
        "relative_difference": difference / ordinary_norm if ordinary_norm else math.nan,
        "ordinary_norm": ordinary_norm,
        "memory_saving_norm": saving_norm,
    }


def _chain(blocks: Sequence[nn.Module], x: Tensor) -> tuple[Tensor, Tensor]:
    total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for block in blocks:
        x, logdet = _forward_and_logdet(block, x)
        total = total + logdet
    return x, total
