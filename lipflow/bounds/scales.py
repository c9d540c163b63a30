"""Rigorous ranges and derivative bounds of affine-coupling scale functions on an interval.

Theory: ``lem:scale-bounds``. For s in [lo, hi] we enclose c = inf g, C = sup g, G = sup g' and
H = sup g'/g, using monotonicity of g and unimodality of g' and g'/g.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from lipflow.blocks.scales import Bounded, Exp, Identity, Scale, Sigmoid, SoftClamp
from lipflow.bounds.rigorous import Interval, scalar
from lipflow.errors import LipflowError, UnboundedError

__all__ = ["ScaleEnclosure", "scale_enclosure", "sup_unimodal"]


class ScaleEnclosure(NamedTuple):
    """c <= inf g, C >= sup g, G >= sup g', H >= sup g'/g on the interval (floats, rounded safely)."""

    c: float
    C: float
    G: float
    H: float


def sup_unimodal(f: Callable[[Interval], Interval], lo: float, hi: float, mode: Interval) -> float:
    """Upper bound of sup f on [lo, hi] for f increasing before the mode and decreasing after."""
    if hi <= mode.lo:
        return f(Interval.point(hi)).hi
    if lo >= mode.hi:
        return f(Interval.point(lo)).hi
    return f(mode).hi


def _sigmoid_family(kappa: Interval, beta: Interval, shift: float, lo: float, hi: float) -> ScaleEnclosure:
    """g = kappa (sigmoid(s + shift) + beta): work in sigma-space (lem:scale-bounds)."""
    u_lo = (Interval.point(lo) + shift).lo
    u_hi = (Interval.point(hi) + shift).hi
    sig_lo = scalar("sigmoid", Interval.point(u_lo)).lo
    sig_hi = scalar("sigmoid", Interval.point(u_hi)).hi
    c = (kappa * (Interval.point(sig_lo) + beta)).lo
    big_c = (kappa * (Interval.point(sig_hi) + beta)).hi

    def p(sig: Interval) -> Interval:
        return sig * (1 - sig)

    def q(sig: Interval) -> Interval:
        return sig * (1 - sig) / (sig + beta)

    g_prime = (kappa * Interval.point(sup_unimodal(p, sig_lo, sig_hi, Interval.point(0.5)))).hi
    mode = (beta * beta + beta).sqrt() - beta
    mode = Interval.of(max(mode.lo, 0.0), max(mode.hi, 0.0))
    if beta.hi == 0.0:  # q = 1 - sigma, decreasing
        ratio = (1 - Interval.point(sig_lo)).hi
    else:
        ratio = sup_unimodal(q, sig_lo, sig_hi, mode)
    return ScaleEnclosure(c, big_c, g_prime, min(ratio, 1.0))  # q <= 1 - sigma <= 1 for beta >= 0


def _softclamp(clamp: float, lo: float, hi: float) -> ScaleEnclosure:
    k = Interval.point(clamp)
    two_over_pi = 2 / Interval(_pi())

    def g(s: Interval) -> Interval:
        return (k * two_over_pi * (s / k).atan()).exp()

    def g_prime(s: Interval) -> Interval:
        return g(s) * two_over_pi / (1 + (s / k) ** 2)

    def ratio(s: Interval) -> Interval:
        return two_over_pi / (1 + (s / k) ** 2)

    mode = k * k / Interval(_pi())
    return ScaleEnclosure(
        g(Interval.point(lo)).lo,
        g(Interval.point(hi)).hi,
        sup_unimodal(g_prime, lo, hi, mode),
        sup_unimodal(ratio, lo, hi, Interval.point(0.0)),
    )


def _pi() -> tuple:
    from mpmath.libmp import libmpi

    from lipflow.bounds.rigorous import PREC

    return libmpi.mpi_pi(PREC)


def scale_enclosure(scale: Scale, lo: float, hi: float) -> ScaleEnclosure:
    """Rigorous (c, C, G, H) of a scale function for s in [lo, hi] (lem:scale-bounds)."""
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise UnboundedError(f"scale argument range [{lo}, {hi}] is not finite; shrink the box")
    if isinstance(scale, Sigmoid):
        return _sigmoid_family(Interval.point(1.0), Interval.point(scale.bias), scale.shift, lo, hi)
    if isinstance(scale, Bounded):
        width = Interval.point(scale.high) - scale.low
        return _sigmoid_family(width, Interval.point(scale.low) / width, scale.shift, lo, hi)
    if isinstance(scale, Exp):
        c = scalar("exp", Interval.point(lo)).lo
        big_c = scalar("exp", Interval.point(hi)).hi
        return ScaleEnclosure(c, big_c, big_c, 1.0)
    if isinstance(scale, SoftClamp):
        return _softclamp(scale.clamp, lo, hi)
    if isinstance(scale, Identity):
        if lo <= 0:
            raise LipflowError("identity scale needs positive s values")
        return ScaleEnclosure(lo, hi, 1.0, (1 / Interval.point(lo)).hi)
    raise LipflowError(f"no enclosure known for scale {type(scale).__name__}")
