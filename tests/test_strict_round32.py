"""Bit-level rounding of float32 to binary16 / bfloat16 values in float32 storage
(lipflow.precision.strict_round32) against the correctly rounded conversions and, for
+, -, *, / on all binary16 operands of sampled pairs, against NumPy's float16 arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from lipflow.precision.floats import FLOAT_FORMATS
from lipflow.precision.strict import _round, _wide
from lipflow.precision.strict_round32 import round_to_format

BFLOAT16 = FLOAT_FORMATS["bfloat16"][0]
FORMATS = {"float16": np.dtype(np.float16), "bfloat16": BFLOAT16}


def _reference(x32: np.ndarray, fmt: str) -> np.ndarray:
    """The float32 value rounded once (float64 is exact for it) by the strict contexts' rounding."""
    with np.errstate(over="ignore"):
        return _wide(_round(x32.astype(np.float64), FORMATS[fmt])).astype(np.float32)


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))


def _critical_points(fmt: str) -> np.ndarray:
    """Every value of the format, the midpoints between neighbours, and +-1, +-2 float32 ulps
    around each (ties, just-below and just-above ties, binade and overflow edges, subnormals)."""
    if fmt == "float16":
        values = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    else:
        values = (np.arange(1 << 16, dtype=np.uint32) << np.uint32(16)).view(np.float32)
    values = np.sort(values[np.isfinite(values)].astype(np.float64))
    mids = ((values[1:] + values[:-1]) / 2).astype(np.float32)  # exact: p + 1 <= 24 bits
    base = np.concatenate([values.astype(np.float32), mids, np.float32([65520.0, -65520.0, 65519.996])])
    bits = base.view(np.uint32).astype(np.int64)
    around = np.concatenate([bits + shift for shift in (-2, -1, 0, 1, 2)])
    return (around[(around >= 0) & (around < 1 << 32)].astype(np.uint32)).view(np.float32)


@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
def test_round_to_format_matches_correct_rounding(fmt: str) -> None:
    strided = np.arange(0, 1 << 32, 4099, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x = np.concatenate([_critical_points(fmt), strided, np.float32([np.inf, -np.inf, np.nan, 0.0, -0.0])])
    got, want = round_to_format(x, fmt), _reference(x, fmt)
    same = _same(got, want)
    assert x.size > 1_000_000  # cases decided
    assert same.all(), f"{(~same).sum()} of {x.size} differ, e.g. {x[~same][:5]}"
    assert np.array_equal(np.signbit(got[~np.isnan(got)]), np.signbit(want[~np.isnan(want)]))


@pytest.mark.parametrize("op", [np.add, np.subtract, np.multiply, np.divide])
def test_float32_operation_then_rounding_equals_float16_arithmetic(op) -> None:
    """All 65536 binary16 values against 48 sampled ones (3.1M pairs per operation)."""
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    sample = np.random.default_rng(0).choice(every[np.isfinite(every)], 48)
    a16, b16 = np.meshgrid(every, sample)
    with np.errstate(all="ignore"):
        want = op(a16, b16).astype(np.float32)
        got = round_to_format(op(a16.astype(np.float32), b16.astype(np.float32)), "float16")
    assert _same(got, want).all()
