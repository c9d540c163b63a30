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

Gradients work (autograd primitives whose derivatives follow the same rules).

Arrays are held in float32 (:mod:`lipflow.precision.strict_held`: every element a value of the
format, every ufunc computed in binary32 and rounded once), so the strict contexts run at close
to float32 speed: ``dot`` and ``sum`` are one compiled pass with numba
(:mod:`lipflow.precision.strict_numba`) or the vectorised kernels of
:mod:`lipflow.precision.strict_kernels`, and a function of one argument is a lookup in a table
of its strict value at every one of the 2^16 format numbers, built once (the table entry is
the float64 evaluation rounded once, so a lookup and the evaluation give the same bits).
``strict_precision(name, held=False)`` keeps the format dtype itself as storage (NumPy float16
/ ml_dtypes bfloat16 arithmetic: the same results, ~10x slower); every function here accepts
both. ``benchmarks/strict_lowp.py`` measures the cost.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as onp
from autograd.extend import defvjp, primitive

from lipflow.precision.base import tree_map
from lipflow.precision.floats import FLOAT_FORMATS, FloatPrecision
from lipflow.precision.strict_held import HeldArray, _compiled, _use_numba, held_class, plain, to_format, to_held
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
    correctly rounded by ``lem:binary32-double-rounding``). Held arrays (either operand) give
    held results, format arrays format results."""
    held = a if isinstance(a, HeldArray) else b if isinstance(b, HeldArray) else None
    if held is not None:
        return _held_dot(type(held), a, b)
    dtype = onp.asarray(a).dtype
    bw = onp.asarray(b)
    vector = bw.ndim == 1
    matrix = bw[:, None] if vector else bw
    if bw.dtype == dtype:
        result = sequential_dot(a, matrix, dtype)
    else:  # b not stored in the format: exact float64 products, each rounded once
        result = reference_dot(a, matrix, dtype, _round)
    return result[..., 0] if vector else result


def _holds_format(cls: type[HeldArray], x: Any) -> bool:
    return type(x) is cls or getattr(x, "dtype", None) in (cls.format_dtype, onp.float32)


def _held_dot(cls: type[HeldArray], a: Any, b: Any) -> HeldArray:
    if not (type(a) is cls and type(b) is cls):
        vector = onp.ndim(b) == 1
        if not (_holds_format(cls, a) and _holds_format(cls, b)):  # exact float64 products, each rounded once
            aw = to_format(to_held(a, cls.fmt)) if _holds_format(cls, a) else onp.asarray(a)
            bw = onp.asarray(b)
            result = reference_dot(aw, bw[:, None] if vector else bw, cls.format_dtype, _round)
            return to_held(result[..., 0] if vector else result, cls.fmt)
        a, b = to_held(a, cls.fmt), to_held(b, cls.fmt)
    vector = b.ndim == 1
    matrix = b[:, None] if vector else b
    k = a.shape[-1]
    if k == 0 or not _use_numba():
        result = to_held(sequential_dot(plain(a), plain(matrix), cls.format_dtype, held=True), cls.fmt)
    elif a.ndim == 2:
        result = onp.ndarray.view(_compiled().dot(plain(a), plain(matrix), cls.fmt), cls)
    else:
        rows = plain(a).reshape(-1, k)
        result = _compiled().dot(rows, plain(matrix), cls.fmt).reshape(*a.shape[:-1], -1).view(cls)
    return result[..., 0] if vector else result


def _raw(x: Any) -> onp.ndarray:
    """x as an array, held arrays kept held."""
    return x if isinstance(x, onp.ndarray) else onp.asarray(x)


def _dot_vjp_a(ans: Any, a: Any, b: Any) -> Callable:
    def vjp(g: Any) -> Any:
        b_t = _raw(b).T if onp.ndim(b) == 2 else _raw(b)[None, :]
        g_mat = g if onp.ndim(b) == 2 else _raw(g)[..., None]
        return strict_dot(g_mat, b_t)

    return vjp


def _dot_vjp_b(ans: Any, a: Any, b: Any) -> Callable:
    def vjp(g: Any) -> Any:
        a_mat = _raw(a).reshape(-1, onp.shape(a)[-1])
        g_mat = _raw(g).reshape(a_mat.shape[0], -1)
        result = strict_dot(a_mat.T, g_mat)
        return result[:, 0] if onp.ndim(b) == 1 else result

    return vjp


defvjp(strict_dot, _dot_vjp_a, _dot_vjp_b)


@primitive
def strict_sum(x: Any, axis: int | None = None) -> onp.ndarray:
    """Sum along ``axis`` one addition at a time, each partial sum rounded to x's format."""
    if isinstance(x, HeldArray):
        cls = type(x)
        moved = x.reshape(-1) if axis is None else onp.moveaxis(x, axis, -1)
        k = moved.shape[-1]
        if k == 0:
            return onp.zeros(moved.shape[:-1], dtype=onp.float32).view(cls)
        return _held_dot(cls, moved, onp.ones(k, dtype=onp.float32).view(cls))  # x_j * 1 is exact
    return sequential_sum(x, axis, onp.asarray(x).dtype)


def _sum_vjp(ans: Any, x: Any, axis: int | None = None) -> Callable:
    def vjp(g: Any) -> Any:
        g = _raw(g)
        if axis is not None:
            g = onp.expand_dims(g, axis)
        if isinstance(x, HeldArray):
            return to_held(g, type(x).fmt).copy() if g.shape == onp.shape(x) else onp.broadcast_to(
                to_held(g, type(x).fmt), onp.shape(x)).copy()
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


@functools.cache
def _table(fun64: Callable, fmt: str) -> onp.ndarray:
    """``fun64`` at every one of the 2^16 patterns of ``fmt``, rounded once, held in float32."""
    cls = held_class(fmt)
    patterns = onp.arange(1 << 16, dtype=onp.uint32).astype(onp.uint16).view(cls.format_dtype)
    with onp.errstate(all="ignore"):
        values = _round(fun64(_wide(patterns)), cls.format_dtype)
    return onp.ascontiguousarray(plain(to_held(values, fmt)))


def _lookup(table: onp.ndarray, x: HeldArray) -> HeldArray:
    cls = type(x)
    raw = plain(x)
    result = _compiled().lookup(raw, table, cls.fmt) if _use_numba() else None
    if result is None:
        index = raw.view(onp.uint32) >> onp.uint32(16) if cls.fmt == "bfloat16" else raw.astype(onp.float16).view(
            onp.uint16)
        result = table[index]
    return result.view(cls)


def _evaluate(fun64: Callable, x: Any) -> onp.ndarray:
    if isinstance(x, HeldArray):
        return _lookup(_table(fun64, type(x).fmt), x)
    dtype = onp.asarray(x).dtype
    with onp.errstate(all="ignore"):
        return _round(fun64(_wide(x)), dtype)


def _once(fun64: Callable, derivative64: Callable) -> Callable:
    """``fun64`` evaluated in float64 and rounded once; its VJP multiplies by the derivative,
    also evaluated in float64 and rounded once. On held arrays both are table lookups."""

    @primitive
    def apply(x: Any) -> onp.ndarray:
        return _evaluate(fun64, x)

    @primitive
    def derivative(x: Any) -> onp.ndarray:
        return _evaluate(derivative64, x)

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


@primitive
def _hold(x: Any, fmt: str) -> HeldArray:
    return to_held(x, fmt)


defvjp(_hold, lambda ans, x, fmt: lambda g: onp.asarray(g).astype(onp.asarray(x).dtype))


@dataclass(frozen=True)
class StrictPrecision(FloatPrecision):
    """binary16 / bfloat16 with every operation rounded to the format.

    Attributes:
        held: arrays are float32 arrays holding format values (:class:`HeldArray`, the
            default, fast); False stores them in the format dtype itself (NumPy float16 /
            ml_dtypes bfloat16: the same values, every operation emulated per element).
    """

    held: bool = True

    @property
    def storage(self) -> str:
        """The plain format whose values this context uses (``"float16"`` or ``"bfloat16"``)."""
        return STRICT_FORMATS[self.name]

    @property
    def format_dtype(self) -> onp.dtype:
        """The NumPy dtype of the format (float16 or ml_dtypes bfloat16)."""
        return FLOAT_FORMATS[self.storage][0]

    @property
    def dtype(self) -> onp.dtype:
        """float32 for held arrays (each element a value of the format), else the format dtype."""
        return onp.dtype(onp.float32) if self.held else self.format_dtype

    @property
    def has_linalg(self) -> bool:
        return False

    @property
    def finfo(self) -> Any:
        return FloatPrecision(self.storage, self.mantissa_bits, self.semantics).finfo

    def cast(self, x: Any) -> Any:
        if not self.held:
            return super().cast(x)
        cls = held_class(self.storage)

        def leaf(value: Any) -> Any:
            if type(value) is cls:
                return value
            if getattr(value, "dtype", None) == object:
                value = onp.asarray(onp.frompyfunc(float, 1, 1)(value), dtype=onp.float64)
            return _hold(value, self.storage)

        return tree_map(leaf, x)

    def const(self, value: float) -> Any:
        if not self.held:
            return super().const(value)
        return to_held(onp.asarray(value, dtype=onp.float64), self.storage)

    def owns(self, x: Any) -> bool:
        if not self.held:
            return super().owns(x)
        return type(x) is held_class(self.storage)

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


def strict_precision(name: str, held: bool = True) -> StrictPrecision:
    """The strict context ``"float16-strict"`` or ``"bfloat16-strict"`` (``held=False``: stored
    in the format dtype instead of float32; same results, slower)."""
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
        held=held,
    )
