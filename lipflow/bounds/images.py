"""Rigorous box images of blocks, forward and inverse (theory ``lem:interval-image``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as onp

from lipflow.blocks.base import Block
from lipflow.blocks.coupling import AdditiveCoupling, AffineCoupling
from lipflow.blocks.linear import ActNorm, InvertibleLinear, Permutation
from lipflow.blocks.residual import Residual
from lipflow.bounds.coupling import coupling_scale_ranges
from lipflow.bounds.linear import linear_factors, linear_lipschitz
from lipflow.bounds.mlp import mlp_image, network_image
from lipflow.bounds.result import check_direction
from lipflow.bounds.rigorous import Box, Interval, scalar
from lipflow.errors import LipflowError, UnboundedError

__all__ = ["ball_image", "image_box"]


def _merge(block: AdditiveCoupling | AffineCoupling, first: Box, second: Box) -> Box:
    lo, hi = onp.empty(block.dim), onp.empty(block.dim)
    idx1, idx2 = (list(i) for i in block.indices)
    lo[idx1], hi[idx1] = first.lo, first.hi
    lo[idx2], hi[idx2] = second.lo, second.hi
    return Box(lo, hi)


def _coupling_image(block: AdditiveCoupling | AffineCoupling, params: Any, box: Box, direction: str) -> Box:
    idx1, idx2 = (list(i) for i in block.indices)
    first, second = box[idx1], box[idx2]
    if isinstance(block, AdditiveCoupling):
        t_box = mlp_image(block.t, params["t"], first, block.n_transformed)
        return _merge(block, first, second + t_box if direction == "forward" else second - t_box)
    _, t_box, enclosures = coupling_scale_ranges(block, params, first)
    g_box = Box(onp.array([e.c for e in enclosures]), onp.array([e.C for e in enclosures]))
    if direction == "forward":
        out = second * g_box + t_box if block.form == "realnvp" else (second + t_box) * g_box
    else:
        out = (second - t_box) / g_box if block.form == "realnvp" else second / g_box - t_box
    return _merge(block, first, out)


def _norm_upper(vector: onp.ndarray) -> float:
    """Upper bound on ||v||_2 for a float vector."""
    total = Interval.point(0.0)
    for value in onp.abs(vector):
        total = total + Interval.point(float(value)) ** 2
    return total.sqrt().hi


def ball_image(center: onp.ndarray, radius: float) -> Box:
    """The box [center - radius, center + radius] (rounded outward)."""
    if not math.isfinite(radius):
        raise UnboundedError("ball image radius is not finite")
    return Box(onp.nextafter(center - radius, -onp.inf), onp.nextafter(center + radius, onp.inf))


def _forward_point_box(block: Block, params: Any, point: onp.ndarray) -> Box:
    return image_box(block, params, Box.point(point), "forward")


def _inverse_by_ball(block: Block, params: Any, box: Box, lip_inverse: float) -> Box:
    """Ball rule for an inverse with a global constant lip_inverse (lem:interval-image, item 5)."""
    c, _ = box.mid_rad()
    x_tilde = onp.asarray(block.inverse(params, c[None, :].astype(onp.float64), ctx="float64"))[0]
    if not onp.all(onp.isfinite(x_tilde)):
        raise UnboundedError("inverse of the box centre is not finite")
    forward = _forward_point_box(block, params, x_tilde)
    residual = onp.maximum(onp.abs(forward.lo - c), onp.abs(forward.hi - c))
    error = (Interval.point(lip_inverse) * _norm_upper(residual)).hi
    radius = (Interval.point(lip_inverse) * box.radius_norm() + error).hi
    return ball_image(x_tilde, radius)


def image_box(block: Block, params: Any, box: Box, direction: str = "forward") -> Box:
    """A box containing block(box) (``"forward"``) or block^-1(box) (``"inverse"``)."""
    check_direction(direction)
    if box.dim != block.dim:
        raise LipflowError(f"box has {box.dim} coordinates but the block has dim={block.dim}")
    if not box.finite:
        raise UnboundedError("the box is not finite (an interval image overflowed); shrink the box")
    if isinstance(block, (AdditiveCoupling, AffineCoupling)):
        return _coupling_image(block, params, box, direction)
    if isinstance(block, Permutation):
        order = list(block.perm) if direction == "forward" else list(onp.argsort(block.perm))
        return Box(box.lo[order], box.hi[order])
    if isinstance(block, ActNorm):
        log_scale = onp.asarray(params["log_scale"], dtype=onp.float64)
        bias = onp.asarray(params["bias"], dtype=onp.float64)
        sign = 1.0 if direction == "forward" else -1.0
        factors = [scalar("exp", Interval.point(sign * v)) for v in log_scale]
        factor = Box(onp.array([f.lo for f in factors]), onp.array([f.hi for f in factors]))
        return (box + bias) * factor if direction == "forward" else box * factor - bias
    if isinstance(block, InvertibleLinear):
        if direction == "inverse":
            return _inverse_by_ball(block, params, box, linear_lipschitz(block, params, direction="inverse").value)
        lower, upper, radius = linear_factors(block, params)
        # rows: y = ((x U^T) L^T)[:, perm]
        after_u = box.affine(upper.T, None)
        spread = box.magnitude() @ radius.T
        after_u = Box(onp.nextafter(after_u.lo - up_vec(spread), -onp.inf),
                      onp.nextafter(after_u.hi + up_vec(spread), onp.inf))
        out = after_u.affine(lower.T, None)
        return Box(out.lo[list(block.perm)], out.hi[list(block.perm)])
    if isinstance(block, Residual):
        from lipflow.bounds.residual import residual_lipschitz

        prepared = block._prepare(params)
        if direction == "inverse":
            return _inverse_by_ball(block, params, box, residual_lipschitz(block, params, direction="inverse").value)
        g_box = network_image(prepared["weights"], prepared["biases"], block.activation, box)
        return box + g_box
    raise LipflowError(f"no interval image for block family {getattr(block, 'family', type(block).__name__)!r}")


def up_vec(values: onp.ndarray) -> onp.ndarray:
    """Round a non-negative float vector up by a safe relative margin."""
    return onp.nextafter(values * (1 + 2.0**-40) + 2.0**-1000, onp.inf)
