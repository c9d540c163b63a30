"""Scale-function enclosures on an interval (lem:scale-bounds)."""

from __future__ import annotations

import mpmath
from hypothesis import given
from hypothesis import strategies as st

import lipflow
from lipflow.bounds.scales import scale_enclosure

SCALES = [lipflow.Sigmoid(), lipflow.Sigmoid(shift=2.0, bias=0.1), lipflow.Bounded(0.5, 1.0),
          lipflow.Bounded(0.1, 3.0, shift=-1.0), lipflow.Exp(), lipflow.SoftClamp(2.0), lipflow.SoftClamp(0.3)]


def _g_and_derivative(scale: lipflow.blocks.Scale, s: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
    def sig(u: mpmath.mpf) -> mpmath.mpf:
        return 1 / (1 + mpmath.exp(-u))

    if isinstance(scale, lipflow.Sigmoid):
        v = sig(s + scale.shift)
        return v + scale.bias, v * (1 - v)
    if isinstance(scale, lipflow.Bounded):
        v = sig(s + scale.shift)
        width = mpmath.mpf(scale.high) - mpmath.mpf(scale.low)  # exact: float64 subtraction would round it
        return scale.low + width * v, width * v * (1 - v)
    if isinstance(scale, lipflow.Exp):
        return mpmath.exp(s), mpmath.exp(s)
    k = mpmath.mpf(scale.clamp)
    g = mpmath.exp(k * 2 / mpmath.pi * mpmath.atan(s / k))
    return g, g * (2 / mpmath.pi) / (1 + (s / k) ** 2)


@given(st.sampled_from(SCALES), st.floats(-30, 30), st.floats(0, 20), st.integers(0, 20))
def test_scale_enclosure_contains_samples(scale: lipflow.blocks.Scale, lo: float, width: float, k: int) -> None:
    hi = lo + width
    enclosure = scale_enclosure(scale, lo, hi)
    with mpmath.workdps(40):
        grid = [mpmath.mpf(lo) + (mpmath.mpf(hi) - mpmath.mpf(lo)) * i / 20 for i in range(21)]
        # the unimodal maxima: sample next to the modes too
        grid += [mpmath.mpf(x) for x in (-2.0, 0.0, 2.0, -0.8813735870195429, 4 / mpmath.pi) if lo <= x <= hi]
        for s in grid:
            g, dg = _g_and_derivative(scale, s)
            assert enclosure.c <= g <= enclosure.C
            assert dg <= enclosure.G
            assert dg / g <= enclosure.H
    assert enclosure.c > 0 or lo < -700
