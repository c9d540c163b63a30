"""Composed bounds over a flow with boxes chained through each layer's image, and the
reconstruction bound. Theory: ``lem:composition``, ``lem:reconstruction``.
"""

from __future__ import annotations

from typing import Any

import sympy

from lipflow.blocks.flow import Flow
from lipflow.bounds.images import image_box
from lipflow.bounds.result import LipschitzBound, check_direction
from lipflow.bounds.rigorous import Box, evaluate_upper
from lipflow.errors import LipflowError, UnboundedError

__all__ = ["flow_lipschitz", "reconstruction_bound"]

L_inv, delta_norm_, delta2_norm_ = sympy.symbols("L_inv delta delta_2", nonnegative=True)


METHODS = ("auto", "meanvalue", "composition")


def flow_lipschitz(flow: Flow, params: Any, *, direction: str = "forward", box: Box | None = None,
                   variant: str = "tight", splits: int = 16, method: str = "auto",
                   tol: float | None = None) -> LipschitzBound:
    """A rigorous upper bound of Lip(F) (or Lip(F^-1)) of a flow, globally or on ``box``.

    ``box`` lies in the domain of the map bounded (inputs for forward, outputs for inverse).
    ``method``: ``"meanvalue"`` bounds the flow's Jacobian over the box as a whole
    (lem:mean-value-flow; needs a box, python-flint and supported blocks); ``"composition"``
    multiplies per-layer bounds on interval images (lem:composition); ``"auto"`` (default) takes on
    a box the smaller of the mean-value bound and the product of global bounds (where every block
    has one), and falls back to the composition where the mean-value bound cannot run or proves
    nothing finite. On a box the mean-value bound covers it by at most ``splits`` sub-boxes,
    bisecting the worst until the bound is within ``tol`` (default 1.05) of the estimate at the
    sub-boxes' centres (lem:box-subdivision): raise ``splits`` (e.g. 256) for wide boxes and deep
    flows; :func:`lipflow.bounds.subdivide.subdivide` reports the refinement itself.
    """
    check_direction(direction)
    flow._check_params(params)
    if method not in METHODS:
        raise LipflowError(f"method must be one of {METHODS}, got {method!r}")
    if method != "composition" and box is not None:
        from lipflow.bounds.meanvalue import MeanValueUnavailableError, meanvalue_lipschitz, supported

        if method == "meanvalue" or supported(flow):
            try:
                local = meanvalue_lipschitz(flow, params, direction=direction, box=box, splits=splits, tol=tol)
            except (MeanValueUnavailableError, UnboundedError):
                if method == "meanvalue":
                    raise
            else:
                if method == "meanvalue":
                    return local
                try:  # the product of global bounds is cheap where every block has one: keep the smaller
                    global_bound = _composition(flow, params, direction=direction, box=None, variant=variant,
                                                splits=splits)
                except LipflowError:
                    return local
                return local if local.value <= global_bound.value else global_bound
    elif method == "meanvalue":
        raise LipflowError("method='meanvalue' needs a box")
    return _composition(flow, params, direction=direction, box=box, variant=variant, splits=splits)


def _composition(flow: Flow, params: Any, *, direction: str, box: Box | None, variant: str,
                 splits: int) -> LipschitzBound:
    """prod_k L_k with each local factor taken on the box image of the preceding layers (lem:composition)."""
    from lipflow.bounds.api import block_lipschitz

    pairs = list(zip(flow.blocks, params, strict=True))
    order = range(len(pairs)) if direction == "forward" else reversed(range(len(pairs)))
    layers: dict[int, LipschitzBound] = {}
    current = box
    order = list(order)
    for position, index in enumerate(order):
        block, block_params = pairs[index]
        try:
            layers[index] = block_lipschitz(block, block_params, direction=direction, box=current,
                                            variant=variant, splits=splits)
            # the image after the last layer is never used: skip it (it may overflow needlessly)
            if current is not None and position < len(order) - 1:
                current = image_box(block, block_params, current, direction)
        except OverflowError as error:
            raise UnboundedError(f"layer {index} ({type(block).__name__}): overflow: {error}") from None
        except LipflowError as error:
            raise type(error)(f"layer {index} ({type(block).__name__}): {error}") from None
    ordered = tuple(layers[i] for i in range(len(pairs)))
    symbols = sympy.symbols(f"L_1:{len(pairs) + 1}", nonnegative=True)
    expression = sympy.Mul(*symbols)
    values = {str(s): layer.value for s, layer in zip(symbols, ordered, strict=True)}
    value = evaluate_upper(expression, values)
    assumptions = ["L_k: bound of layer k on the box image of the preceding layers" if box is not None
                   else "product of global per-layer bounds"]
    return LipschitzBound(
        value=value, kind="upper", direction=direction, label="lem:composition", expression=expression,
        ingredients=values, assumptions=tuple(assumptions), block="flow",
        box=None if box is None else box.as_tuple(), layers=ordered,
    )


def reconstruction_bound(lip_inverse: float | LipschitzBound, delta_norm: float, delta2_norm: float) -> float:
    """L* ||delta|| + ||delta_2||, rounded up (lem:reconstruction).

    ``lip_inverse`` must bound Lip(F^-1) on a convex set containing F(x) and the computed F(x).
    """
    if isinstance(lip_inverse, LipschitzBound):
        if lip_inverse.direction != "inverse" or lip_inverse.kind != "upper":
            raise LipflowError("reconstruction_bound needs a rigorous upper bound of the inverse's constant")
        lip_inverse = lip_inverse.value
    if min(lip_inverse, delta_norm, delta2_norm) < 0:
        raise LipflowError("reconstruction_bound needs non-negative inputs")
    expression = L_inv * delta_norm_ + delta2_norm_
    return evaluate_upper(expression, {L_inv: lip_inverse, delta_norm_: delta_norm, delta2_norm_: delta2_norm})
