"""Hardware floating-point contexts: float16, bfloat16, float32, float64, longdouble."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import autograd.numpy as anp
import ml_dtypes
import numpy as onp
from autograd.extend import defvjp, primitive
from autograd.numpy.numpy_boxes import ArrayBox
from autograd.numpy.numpy_vspaces import ArrayVSpace

from lipflow.precision.base import Precision, tree_map

__all__ = ["FLOAT_FORMATS", "FloatPrecision"]

# bfloat16 scalars are their own Python type; autograd needs to know they live in an array
# vector space and can be boxed, exactly as it already does for np.float16.
ArrayVSpace.register(ml_dtypes.bfloat16)
ArrayBox.register(ml_dtypes.bfloat16)

_NUMPY_FLOAT16 = (
    "numpy float16: each elementwise operation is rounded to binary16, but dot/matmul/sum "
    "accumulate in float32 and round once, and transcendental functions are evaluated in "
    "float32 and rounded"
)
_BFLOAT16 = (
    "ml_dtypes bfloat16: elementwise operations rounded to bfloat16; dot accumulates in "
    "float32 and rounds once, sum accumulates in bfloat16"
)

#: name -> (numpy dtype, significand bits including the implicit bit, semantics)
FLOAT_FORMATS: dict[str, tuple[Any, int, str]] = {
    "float16": (onp.dtype(onp.float16), 11, _NUMPY_FLOAT16),
    "bfloat16": (onp.dtype(ml_dtypes.bfloat16), 8, _BFLOAT16),
    "float32": (onp.dtype(onp.float32), 24, "IEEE binary32, NumPy's kernels (pairwise sums)"),
    "float64": (onp.dtype(onp.float64), 53, "IEEE binary64, NumPy's kernels (pairwise sums)"),
    "longdouble": (
        onp.dtype(onp.longdouble),
        onp.finfo(onp.longdouble).nmant + 1,
        f"numpy longdouble ({onp.finfo(onp.longdouble).nmant + 1}-bit significand on this platform)",
    ),
}


@primitive
def _astype(x, dtype):
    return onp.asarray(x).astype(dtype)


defvjp(_astype, lambda ans, x, dtype: lambda g: _astype(g, onp.asarray(x).dtype))


@dataclass(frozen=True)
class FloatPrecision(Precision):
    """A hardware (or ml_dtypes) floating-point format used through NumPy."""

    @property
    def dtype(self) -> onp.dtype:
        return FLOAT_FORMATS[self.name][0]

    @property
    def has_linalg(self) -> bool:
        return self.name in ("float32", "float64")

    @property
    def finfo(self) -> Any:
        """Range information (largest finite value, smallest normal) of the format."""
        return ml_dtypes.finfo(self.dtype) if self.name == "bfloat16" else onp.finfo(self.dtype)

    def cast(self, x: Any) -> Any:
        def leaf(value):
            dtype = getattr(value, "dtype", None)
            if dtype == self.dtype:
                return value
            if dtype == object:
                value = onp.asarray(onp.frompyfunc(float, 1, 1)(value), dtype=onp.float64)
            return _astype(value, self.dtype)

        return tree_map(leaf, x)

    def const(self, value: float) -> Any:
        return self.dtype.type(value)

    def to_float64(self, x: Any) -> onp.ndarray:
        return onp.asarray(x).astype(onp.float64)

    def dot(self, a: Any, b: Any) -> Any:
        result = anp.dot(a, b)
        if self.name == "bfloat16" and getattr(result, "dtype", self.dtype) != self.dtype:
            result = _astype(result, self.dtype)
        return result

    def sum(self, x: Any, axis: int | None = None) -> Any:
        if self.name != "bfloat16":
            return anp.sum(x, axis=axis)
        # np.sum accumulates in bfloat16 (catastrophically); a dot with ones accumulates in
        # float32 and rounds once, matching numpy float16's semantics.
        if axis is None:
            return self.dot(anp.ravel(x), onp.ones(onp.size(x), dtype=self.dtype))
        moved = anp.moveaxis(x, axis, -1)
        return self.dot(moved, onp.ones(moved.shape[-1], dtype=self.dtype))
