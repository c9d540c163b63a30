"""Rounding float32 arrays to binary16 / bfloat16 values *in float32 storage*, on the bits.

A strict context could keep every value in float32 (each one exactly representable in the
format) and round after each float32 operation, instead of storing float16 / bfloat16 arrays
(NumPy's float16 arithmetic converts every element both ways, ~10-15 ns per element against
~0.1 ns for float32). By ``lem:binary32-double-rounding`` one float32 operation on such values
followed by :func:`round_to_format` is the correctly rounded binary16 / bfloat16 operation.

Round to nearest, ties to even, on the uint32 view: add half an ulp minus one plus the last
kept bit, clear the dropped bits. The carry runs into the exponent, so rounding up to the next
binade is exact. bfloat16 has float32's exponent range: its subnormals are float32 subnormals
with 16 bits cleared, and overflow carries into the infinity pattern, so only NaN needs care.
binary16 (13 bits dropped) needs two rarely taken masked paths: below 2^-14 the grid is the
fixed step 2^-24 (``(x + 0.75) - 0.75`` rounds to it, ties to even, since 0.75 is an even
multiple of 2^-24 and its float32 ulp is 2^-24), and results >= 2^16 (rounded up from the
overflow threshold 65520 or beyond) become infinities.
"""

from __future__ import annotations

import numpy as onp

__all__ = ["FORMAT_BITS", "round_to_format"]

#: dropped float32 significand bits per format
FORMAT_BITS = {"float16": 13, "bfloat16": 16}

_ONE = onp.uint32(1)


def round_to_format(x: onp.ndarray, fmt: str) -> onp.ndarray:
    """float32 ``x`` rounded (nearest, ties to even, subnormals, overflow to inf) to the values
    of ``fmt`` ("float16" or "bfloat16"), returned as float32."""
    drop = FORMAT_BITS[fmt]
    x = onp.asarray(x, dtype=onp.float32)
    bits = x.view(onp.uint32)
    rounded = bits + onp.uint32((1 << (drop - 1)) - 1)
    rounded += (bits >> onp.uint32(drop)) & _ONE
    rounded &= onp.uint32((0xFFFFFFFF << drop) & 0xFFFFFFFF)
    result = rounded.view(onp.float32)
    if fmt == "float16":
        magnitude = onp.abs(x)
        tiny = magnitude < onp.float32(2.0**-14)
        if tiny.any():
            shifted = (x + onp.float32(0.75)) - onp.float32(0.75)
            result = onp.where(tiny, onp.copysign(shifted, x), result)
        huge = onp.abs(result) >= onp.float32(65536.0)
        if huge.any():
            result = onp.where(huge, onp.copysign(onp.float32(onp.inf), x), result)
    nan = onp.isnan(x)
    if nan.any():
        result = onp.where(nan, x, result)
    return result
