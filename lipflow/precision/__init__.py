"""Precision contexts: ``precision("float16" | "bfloat16" | "float32" | "float64" |
"longdouble" | "mpNN")``.

A context is immutable and explicit: block code receives it as the keyword ``ctx`` and routes
every constant, elementwise function and product through it (DESIGN section 2).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import numpy as onp

from lipflow.errors import LipflowError
from lipflow.precision.base import Precision, tree_map
from lipflow.precision.doubledouble import DDArray, DDPrecision, dd_precision
from lipflow.precision.floats import FLOAT_FORMATS, FloatPrecision
from lipflow.precision.mp import MPPrecision, dps_of_context, mp_precision
from lipflow.precision.strict import STRICT_FORMATS, StrictPrecision, strict_precision
from lipflow.precision.strict_held import HeldArray

__all__ = [
    "PRECISION_NAMES",
    "DDPrecision",
    "FloatPrecision",
    "MPPrecision",
    "Precision",
    "StrictPrecision",
    "infer_precision",
    "precision",
    "resolve_precision",
    "tree_map",
]

#: Names accepted by :func:`precision`; ``mpNN`` stands for mpmath with NN decimal digits.
PRECISION_NAMES: tuple[str, ...] = (*FLOAT_FORMATS, *STRICT_FORMATS, "dd", "td", "mpNN")

_MP_NAME = re.compile(r"mp(\d+)")
_MAX_DPS = 100_000


@functools.cache
def precision(name: str) -> Precision:
    """The precision context called ``name``.

    >>> precision("float32").unit_roundoff
    5.960464477539063e-08
    >>> precision("mp50").mantissa_bits
    169
    """
    if isinstance(name, Precision):
        return name
    if not isinstance(name, str):
        raise LipflowError(f"precision name must be a string such as 'float32' or 'mp50', got {name!r}")
    key = name.strip().lower()
    if key in FLOAT_FORMATS:
        _, bits, semantics = FLOAT_FORMATS[key]
        return FloatPrecision(name=key, mantissa_bits=bits, semantics=semantics)
    if key in STRICT_FORMATS:
        return strict_precision(key)
    if key in ("dd", "double-double"):
        return dd_precision()
    if key in ("td", "triple-double"):
        from lipflow.precision.tripledouble import td_precision  # its tables build on first use

        return td_precision()
    match = _MP_NAME.fullmatch(key)
    if match:
        dps = int(match.group(1))
        if not 1 <= dps <= _MAX_DPS:
            raise LipflowError(f"precision {name!r}: mpmath digits must be between 1 and {_MAX_DPS}, e.g. 'mp50'")
        return mp_precision(dps)
    raise LipflowError(
        f"unknown precision {name!r}; valid names are {', '.join(PRECISION_NAMES)} "
        "(mpNN = mpmath with NN decimal digits, e.g. 'mp50')"
    )


def infer_precision(x: Any) -> Precision:
    """The context matching the storage of array ``x`` (float16 array -> float16 context)."""
    if isinstance(x, DDArray):
        return precision("dd")
    if type(x).__name__ == "TDArray":
        return precision("td")
    if isinstance(x, HeldArray):
        return precision(f"{x.fmt}-strict")
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        x = onp.asarray(x)
        dtype = x.dtype
    if dtype == object:
        first = onp.asarray(x).flat[0] if onp.size(x) else None
        dps = dps_of_context(getattr(first, "context", None))
        if dps is None:
            raise LipflowError(
                "cannot tell the precision of an object array whose elements are not lipflow "
                "mpmath numbers; pass ctx=lipflow.precision('mpNN') or cast with ctx.cast(x)"
            )
        return precision(f"mp{dps}")
    for name, (float_dtype, _, _) in FLOAT_FORMATS.items():
        if dtype == float_dtype:
            return precision(name)
    if onp.issubdtype(dtype, onp.integer) or dtype == bool:
        return precision("float64")
    raise LipflowError(f"arrays of dtype {dtype} have no lipflow precision; use one of {', '.join(PRECISION_NAMES)}")


def resolve_precision(ctx: Precision | str | None, x: Any) -> Precision:
    """``ctx`` as a context: a name is looked up, ``None`` is inferred from ``x``."""
    if ctx is None:
        return infer_precision(x)
    if isinstance(ctx, Precision):
        return ctx
    return precision(ctx)
