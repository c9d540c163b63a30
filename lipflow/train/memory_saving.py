"""Memory-saving gradients (Gomez et al. 2017; paper Section 4.2) and their angle to backprop.

Ordinary backprop stores every activation x_k = F_k(x_{k-1}). The memory-saving gradient keeps
only the output z = x_L: walking back from the output it recomputes x_{k-1} = F_k^-1(x_k) with
the block's inverse and takes that block's vector-Jacobian product at the recomputed input.
Both are exact for an exactly invertible network; in floating point the recomputed inputs are
only as good as the inverse is stable, and an exploding inverse corrupts the gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as onp
from autograd import grad, make_vjp

from lipflow.blocks import Block, Flow
from lipflow.blocks.base import check_input
from lipflow.errors import LipflowError
from lipflow.precision import Precision
from lipflow.train.tree import flatten_to_vector

__all__ = ["MemorySavingGradient", "gradient_angle", "memory_saving_grad", "ordinary_grad"]

OutputLoss = Callable[[Any, Any], Any]
"""loss(z, head_params) -> scalar, with z = F(x) the flow's output."""


@dataclass(frozen=True)
class MemorySavingGradient:
    """The memory-saving gradient and how well the inputs were recomputed.

    Attributes:
        loss: the loss value (float).
        flow_grad: gradient for the flow's params (same structure as the params).
        head_grad: gradient for the head's params.
        recompute_error: max over samples of ||x_0 recomputed - x||_2 (float64; inf/nan kept).
    """

    loss: float
    flow_grad: Any
    head_grad: Any
    recompute_error: float


def _as_flow(flow: Block) -> Flow:
    return flow if isinstance(flow, Flow) else Flow([flow])


def _wrap_params(flow: Block, params: Any) -> list[Any]:
    return params if isinstance(flow, Flow) else [params]


def memory_saving_grad(
    flow: Block, params: Any, x: Any, output_loss: OutputLoss, head_params: Any = None, *, ctx: Precision | str
) -> MemorySavingGradient:
    """Gradient of ``output_loss(F(x), head_params)`` with activations recomputed by inverses.

    No activation but the output is kept: the forward pass discards each x_k, and the backward
    pass recomputes x_{k-1} = F_k^-1(x_k) and applies the VJP of F_k at it (autograd's
    ``make_vjp`` on the block's ``_forward``).
    """
    wrapped = _as_flow(flow)
    block_params = _wrap_params(flow, params)
    wrapped._check_params(block_params)
    x_in, context = check_input(x, wrapped.dim, "memory_saving_grad", ctx)
    current = x_in
    for block, p in zip(wrapped.blocks, block_params, strict=True):
        current = block._forward(context.cast(block._prepare(p)), current, context)

    def loss_of_output(pair: tuple[Any, Any]) -> Any:
        return output_loss(pair[0], pair[1])

    loss_vjp, loss_value = make_vjp(loss_of_output)((current, head_params))
    cotangent, head_grad = loss_vjp(context.const(1.0))
    grads: list[Any] = [None] * len(wrapped.blocks)
    for index in reversed(range(len(wrapped.blocks))):
        block, p = wrapped.blocks[index], block_params[index]
        previous = block._inverse(context.cast(block._prepare(p)), current, context)

        def block_forward(pair: tuple[Any, Any], block: Block = block) -> Any:
            return block._forward(context.cast(block._prepare(pair[0])), pair[1], context)

        vjp, _ = make_vjp(block_forward)((p, previous))
        grads[index], cotangent = vjp(cotangent)
        current = previous
    with onp.errstate(all="ignore"):
        difference = context.to_float64(current) - context.to_float64(x_in)
        errors = onp.sqrt(onp.sum(difference * difference, axis=1))
    recompute_error = float(onp.max(errors)) if errors.size else 0.0
    if onp.any(onp.isnan(errors)):
        recompute_error = math.nan
    flow_grad = grads if isinstance(flow, Flow) else grads[0]
    return MemorySavingGradient(float(loss_value), flow_grad, head_grad, recompute_error)


def ordinary_grad(
    flow: Block, params: Any, x: Any, output_loss: OutputLoss, head_params: Any = None, *, ctx: Precision | str
) -> tuple[Any, Any]:
    """(flow grad, head grad) of ``output_loss(F(x), head_params)`` by ordinary backprop."""

    def total(pair: tuple[Any, Any]) -> Any:
        return output_loss(flow.forward(pair[0], x, ctx=ctx), pair[1])

    return grad(total)((params, head_params))


def gradient_angle(first: Any, second: Any) -> float:
    """Angle in degrees between two gradients (pytrees flattened); NaN when either is not
    finite or is zero (the angle is undefined then, and is never silently replaced)."""
    a, b = flatten_to_vector(first), flatten_to_vector(second)
    if a.shape != b.shape:
        raise LipflowError(f"gradient_angle: gradients have {a.size} and {b.size} entries; pass matching trees")
    if not (onp.all(onp.isfinite(a)) and onp.all(onp.isfinite(b))):
        return math.nan
    norm_a, norm_b = float(onp.linalg.norm(a)), float(onp.linalg.norm(b))
    if norm_a == 0.0 or norm_b == 0.0 or not (math.isfinite(norm_a) and math.isfinite(norm_b)):
        return math.nan
    # Kahan's form 2 atan2(|a' - b'|, |a' + b'|) of unit vectors stays accurate near 0 and 180
    # degrees, where acos of a rounded cosine loses half the digits.
    unit_a, unit_b = a / norm_a, b / norm_b
    apart, together = float(onp.linalg.norm(unit_a - unit_b)), float(onp.linalg.norm(unit_a + unit_b))
    return math.degrees(2 * math.atan2(apart, together))
