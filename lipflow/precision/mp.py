"""Arbitrary precision through mpmath, usable with autograd.

Each :class:`MPPrecision` owns a private ``mpmath.MPContext`` whose precision is set once at
construction and never changed, so contexts of different precisions coexist (and threads do
not race on mpmath's global ``mp.dps``). Arrays are NumPy object arrays of that context's
``mpf``; the element type is registered with autograd's array vector space and box so that
``grad`` and ``jacobian`` work, and the elementwise maths come from
:mod:`lipflow.precision.elementwise`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as onp
from autograd.extend import defvjp, primitive
from autograd.numpy.numpy_boxes import ArrayBox
from autograd.numpy.numpy_vspaces import ArrayVSpace

from lipflow.precision.base import Precision, tree_map

__all__ = ["MPPrecision", "dps_of_context", "mp_context_for", "mp_precision"]

_DPS_OF_CONTEXT: dict[int, int] = {}


@functools.cache
def mp_context_for(dps: int) -> mpmath.MPContext:
    """The shared, never-modified mpmath context with ``dps`` decimal digits."""
    context = mpmath.MPContext()
    context.dps = dps
    ArrayVSpace.register(context.mpf)
    ArrayBox.register(context.mpf)
    _DPS_OF_CONTEXT[id(context)] = dps
    return context


def dps_of_context(context: Any) -> int | None:
    """The digits of a context made by :func:`mp_context_for`, or None for any other."""
    return _DPS_OF_CONTEXT.get(id(context))


def _float_of(value: Any) -> float:
    return float(value)


_to_float64 = onp.frompyfunc(_float_of, 1, 1)


@primitive
def _to_mp(x, dps):
    context = mp_context_for(dps)
    x = onp.asarray(x)
    if x.dtype == onp.longdouble and onp.finfo(onp.longdouble).nmant > 52:
        # exact: a longdouble is the sum of its float64 rounding and a float64 remainder
        head = x.astype(onp.float64)
        tail = (x - head).astype(onp.float64)
        to_mp = onp.frompyfunc(context.mpf, 1, 1)
        return onp.asarray(to_mp(head) + to_mp(tail), dtype=object)
    if x.dtype not in (onp.float64, onp.float32, onp.float16) and x.dtype != object and x.dtype.kind == "f":
        x = x.astype(onp.float64)  # bfloat16 and other narrow formats widen exactly
    return onp.asarray(onp.frompyfunc(context.mpf, 1, 1)(x), dtype=object)


@primitive
def _mp_to_dtype(x, dtype):
    return onp.asarray(_to_float64(onp.asarray(x)), dtype=onp.float64).astype(dtype)


defvjp(_to_mp, lambda ans, x, dps: lambda g: _mp_to_dtype(g, onp.asarray(x).dtype))
defvjp(_mp_to_dtype, lambda ans, x, dtype: lambda g: g)


@dataclass(frozen=True)
class MPPrecision(Precision):
    """mpmath with ``dps`` decimal digits (``mantissa_bits`` bits), e.g. ``precision("mp50")``."""

    dps: int = 50

    @property
    def dtype(self) -> onp.dtype:
        return onp.dtype(object)

    @property
    def is_arbitrary(self) -> bool:
        return True

    @property
    def context(self) -> mpmath.MPContext:
        """The private mpmath context (its precision is fixed; do not change it)."""
        return mp_context_for(self.dps)

    def owns(self, x: Any) -> bool:
        if getattr(x, "dtype", None) != object or onp.size(x) == 0:
            return getattr(x, "dtype", None) == object
        first = onp.asarray(x).flat[0]
        return getattr(first, "context", None) is self.context

    def cast(self, x: Any) -> Any:
        def leaf(value):
            if self.owns(value):
                return value
            if getattr(value, "dtype", None) == object:
                # mpf of another context (or Python numbers): re-round to this precision
                return onp.asarray(onp.frompyfunc(self.context.mpf, 1, 1)(value), dtype=object)
            return _to_mp(value, self.dps)

        return tree_map(leaf, x)

    def const(self, value: Any) -> Any:
        return self.context.mpf(value)

    def to_float64(self, x: Any) -> onp.ndarray:
        return onp.asarray(_to_float64(onp.asarray(x)), dtype=onp.float64)

    def pi(self) -> Any:
        return +self.context.pi

    @contextlib.contextmanager
    def scope(self) -> Iterator[MPPrecision]:
        """Set mpmath's *global* precision to this one for code that uses ``mpmath.mp``.

        lipflow itself never needs this (every number carries its own context); it is here for
        user code that calls global mpmath functions. Not thread-safe, like mpmath's own
        ``workdps``.
        """
        with mpmath.workprec(self.mantissa_bits):
            yield self


def mp_precision(dps: int) -> MPPrecision:
    """The context with ``dps`` decimal digits."""
    bits = mp_context_for(dps).prec
    return MPPrecision(
        name=f"mp{dps}",
        mantissa_bits=bits,
        semantics=f"mpmath {dps} decimal digits ({bits}-bit significand), each operation rounded",
        dps=dps,
    )
