"""Strict low precision: ``precision("float16-strict")`` and ``precision("bfloat16-strict")``.

Every operation is rounded to the format, as IEEE binary16 (or bfloat16) hardware doing one
operation at a time would: +, -, *, / on the stored arrays are already rounded per operation
by NumPy / ml_dtypes (computed in float32, which has enough bits (24 >= 2p + 2) for the double
rounding to be innocuous: ``lem:binary32-double-rounding``); this context adds

* ``dot`` and ``sum`` that accumulate one addition at a time, rounding each product and each
  partial sum to the format (not NumPy's float32 accumulation with a single final rounding);
* transcendental functions (exp, log, tanh, sigmoid, ...) evaluated in float64 and rounded
  once to the format (not evaluated in float32 and rounded, and not composed of several
  rounded steps as the plain contexts' sigmoid is).

Gradients work (autograd primitives whose derivatives follow the same rules). ``dot`` and
``sum`` run as vectorised binary32 kernels (:mod:`lipflow.precision.strict_kernels`);
``benchmarks/strict_lowp.py`` measures the cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as onp
from autograd.extend import defvjp, primitive

from lipflow.precision.floats import FLOAT_FORMATS, FloatPrecision
from lipflow.precision.strict_kernels import reference_dot, sequential_dot, sequential_sum

__all__ = ["STRICT_FORMATS", "StrictPrecision", "strict_dot", "strict_precision", "strict_sum"]

_BFLOAT16 = FLOAT_FORMATS["bfloat16"][0]

#: strict name -> the storage format it rounds to
STRICT_FORMATS = {"float16-strict": "float16", "bfloat16-strict": "bfloat16"}


_ONE, _SHIFT = onp.uint64(1), onp.uint64(45)
_HALF_ULP = onp.uint64((1 << 44) - 1)  # half a bfloat16 ulp (at bit 45 of a float64) minus one
_KEEP = onp.uint64(~((1 << 45) - 1) & 0xFFFF_FFFF_FFFF_FFFF)
_SUBNORMAL_SHIFTER = onp.float64(1.5 * 2.0**-81)  # its float64 ulp is bfloat16's subnormal step 2^-133


def _round(values: onp.ndarray, dtype: onp.dtype) -> onp.ndarray:
    """Round float64 ``values`` to nearest (ties to even) in ``dtype``, once.

    NumPy converts float64 to float16 directly. ml_dtypes converts float64 to bfloat16
    through float32 (double rounding: 1 + 2^-8 + 2^-40 becomes 1), so bfloat16 is rounded
    here on the float64 bits: add half an ulp (plus the last kept bit, for ties to even) and
    clear the 45 dropped bits; below 2^-126 add and subtract 1.5 * 2^-81, whose float64 ulp
    is bfloat16's subnormal step. The result is exact in float32, and overflow becomes inf
    in the float32 conversion.
    """
    values = onp.asarray(values, dtype=onp.float64)
    if onp.dtype(dtype) != _BFLOAT16:
        return values.astype(dtype)
    bits = values.view(onp.uint64)
    rounded = bits + _HALF_ULP + ((bits >> _SHIFT) & _ONE)
    rounded &= _KEEP
    result = rounded.view(onp.float64)
    tiny = onp.abs(values) < 2.0**-126
    if tiny.any():
        shifted = (values + _SUBNORMAL_SHIFTER) - _SUBNORMAL_SHIFTER
        result = onp.where(tiny, onp.copysign(shifted, values), result)
    nan = onp.isnan(values)
    if nan.any():
        result = onp.where(nan, values, result)
    with onp.errstate(over="ignore"):
        single = result.astype(onp.float32)  # exact, or +-inf beyond bfloat16's range
    return (single.view(onp.uint32) >> onp.uint32(16)).astype(onp.uint16).view(dtype)


def _wide(x: Any) -> onp.ndarray:
    x = onp.asarray(x)
    if x.dtype == _BFLOAT16:  # bfloat16 is the top half of a float32: a shift, not a conversion
        return (x.view(onp.uint16).astype(onp.uint32) << onp.uint32(16)).view(onp.float32).astype(onp.float64)
    return x.astype(onp.float64)


@primitive
def strict_dot(a: Any, b: Any) -> onp.ndarray:
    """a (..., k) times b (k,) or (k, m): each product and each partial sum rounded to the
    storage format of ``a``, summing k = 0, 1, ... in order (binary32 operations rounded once,
    correctly rounded by ``lem:binary32-double-rounding``)."""
    dtype = onp.asarray(a).dtype
    bw = onp.asarray(b)
    vector = bw.ndim == 1
    matrix = bw[:, None] if vector else bw
    if bw.dtype == dtype:
        result = sequential_dot(a, matrix, dtype)
    else:  # b not stored in the format: exact float64 products, each rounded once
        result = reference_dot(a, matrix, dtype, _round)
    return result[..., 0] if vector else result


def _dot_vjp_a(ans: Any, a: Any, b: Any) -> Callable:
    def vjp(g: Any) -> Any:
        b_t = onp.asarray(b).T if onp.ndim(b) == 2 else onp.asarray(b)[None, :]
        g_mat = g if onp.ndim(b) == 2 else onp.asarray(g)[..., None]
        return strict_dot(g_mat, b_t)

    return vjp


def _dot_vjp_b(ans: Any, a: Any, b: Any) -> Callable:
    def vjp(g: Any) -> Any:
        a_mat = onp.asarray(a).reshape(-1, onp.shape(a)[-1])
        g_mat = onp.asarray(g).reshape(a_mat.shape[0], -1)
        result = strict_dot(a_mat.T, g_mat)
        return result[:, 0] if onp.ndim(b) == 1 else result

    return vjp


defvjp(strict_dot, _dot_vjp_a, _dot_vjp_b)


@primitive
def strict_sum(x: Any, axis: int | None = None) -> onp.ndarray:
    """Sum along ``axis`` one addition at a time, each partial sum rounded to x's format."""
    return sequential_sum(x, axis, onp.asarray(x).dtype)


def _sum_vjp(ans: Any, x: Any, axis: int | None = None) -> Callable:
    def vjp(g: Any) -> Any:
        g = onp.asarray(g)
        if axis is not None:
            g = onp.expand_dims(g, axis)
        return onp.broadcast_to(g, onp.shape(x)).astype(onp.asarray(x).dtype)

    return vjp


defvjp(strict_sum, _sum_vjp)


def _sigmoid64(x: onp.ndarray) -> onp.ndarray:
    e = onp.exp(-onp.abs(x))
    return onp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _log_sigmoid64(x: onp.ndarray) -> onp.ndarray:
    return onp.minimum(x, 0) - onp.log1p(onp.exp(-onp.abs(x)))


def _softplus64(x: onp.ndarray) -> onp.ndarray:
    return onp.maximum(x, 0) + onp.log1p(onp.exp(-onp.abs(x)))


def _elu64(x: onp.ndarray) -> onp.ndarray:
    return onp.where(x > 0, x, onp.expm1(onp.minimum(x, 0)))


def _once(fun64: Callable, derivative64: Callable) -> Callable:
    """``fun64`` evaluated in float64 and rounded once; its VJP multiplies by the derivative,
    also evaluated in float64 and rounded once."""

    @primitive
    def apply(x: Any) -> onp.ndarray:
        dtype = onp.asarray(x).dtype
        with onp.errstate(all="ignore"):
            return _round(fun64(_wide(x)), dtype)

    @primitive
    def derivative(x: Any) -> onp.ndarray:
        dtype = onp.asarray(x).dtype
        with onp.errstate(all="ignore"):
            return _round(derivative64(_wide(x)), dtype)

    defvjp(apply, lambda ans, x: lambda g: g * derivative(x))
    defvjp(derivative, lambda ans, x: lambda g: g * 0)  # second derivatives are not provided
    apply.__name__ = fun64.__name__
    return apply


strict_exp = _once(onp.exp, onp.exp)
strict_log = _once(onp.log, lambda x: 1 / x)
strict_log1p = _once(onp.log1p, lambda x: 1 / (1 + x))
strict_expm1 = _once(onp.expm1, onp.exp)
strict_tanh = _once(onp.tanh, lambda x: 1 - onp.tanh(x) ** 2)
strict_atan = _once(onp.arctan, lambda x: 1 / (1 + x * x))
strict_sqrt = _once(onp.sqrt, lambda x: 0.5 / onp.sqrt(x))
strict_sigmoid = _once(_sigmoid64, lambda x: _sigmoid64(x) * _sigmoid64(-x))
strict_log_sigmoid = _once(_log_sigmoid64, lambda x: _sigmoid64(-x))
strict_softplus = _once(_softplus64, _sigmoid64)
strict_relu = _once(lambda x: onp.maximum(x, 0), lambda x: (x > 0).astype(onp.float64))
strict_elu = _once(_elu64, lambda x: onp.where(x > 0, 1.0, onp.exp(onp.minimum(x, 0))))


@dataclass(frozen=True)
class StrictPrecision(FloatPrecision):
    """binary16 / bfloat16 storage with every operation rounded to the format."""

    @property
    def storage(self) -> str:
        """The plain format whose arrays this context uses (``"float16"`` or ``"bfloat16"``)."""
        return STRICT_FORMATS[self.name]

    @property
    def dtype(self) -> onp.dtype:
        return FLOAT_FORMATS[self.storage][0]

    @property
    def has_linalg(self) -> bool:
        return False

    @property
    def finfo(self) -> Any:
        return FloatPrecision(self.storage, self.mantissa_bits, self.semantics).finfo

    exp = staticmethod(strict_exp)
    log = staticmethod(strict_log)
    log1p = staticmethod(strict_log1p)
    expm1 = staticmethod(strict_expm1)
    tanh = staticmethod(strict_tanh)
    atan = staticmethod(strict_atan)
    sqrt = staticmethod(strict_sqrt)
    sigmoid = staticmethod(strict_sigmoid)
    log_sigmoid = staticmethod(strict_log_sigmoid)
    softplus = staticmethod(strict_softplus)
    relu = staticmethod(strict_relu)
    elu = staticmethod(strict_elu)

    def dot(self, a: Any, b: Any) -> Any:
        return strict_dot(a, b)

    def sum(self, x: Any, axis: int | None = None) -> Any:
        return strict_sum(x, axis)


def strict_precision(name: str) -> StrictPrecision:
    """The strict context ``"float16-strict"`` or ``"bfloat16-strict"``."""
    storage = STRICT_FORMATS[name]
    bits = FLOAT_FORMATS[storage][1]
    return StrictPrecision(
        name=name,
        mantissa_bits=bits,
        semantics=(
            f"strict {storage}: every operation rounded to {storage}, including each product "
            "and partial sum of dot/sum (summed in index order) and each transcendental "
            "(evaluated in float64, rounded once)"
        ),
    )
