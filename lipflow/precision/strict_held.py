"""binary16 / bfloat16 values held in float32 arrays, every operation rounded once.

A :class:`HeldArray` is a float32 ``ndarray`` whose every element is a value of its format
(``Binary16Held``: IEEE binary16, ``BFloat16Held``: bfloat16). NumPy ufuncs on it compute in
binary32 and round the result once to the format, which for +, -, *, / and sqrt is the
correctly rounded format operation (``lem:binary32-double-rounding``): NumPy's float16 and
ml_dtypes' bfloat16 do the same binary32 operation and rounding, but convert every element both
ways (~10 ns per element against ~0.2 ns here). So block code (``a * g + t``, autograd's
primitives) keeps the strict semantics without knowing the representation.

How operands are taken, for ``a op b`` with a held ``a``:

* held arrays of the same format, format arrays (``float16`` / ``bfloat16`` dtype) and Python
  numbers are values of the format (numbers rounded to it, as NumPy does for float16 arrays);
  binary32 arrays (for example a cotangent cast by autograd) are rounded to the format first;
* wider operands (float64 arrays or NumPy float64 scalars) promote as they do for a float16
  array: the result is a plain float64 array, outside the strict semantics;
* anything else (reductions such as ``np.sum``, ``maximum``, ``power``, ...) runs on the format
  dtype itself, exactly as on today's float16 / bfloat16 storage, and comes back held.

NumPy functions that compute without ufuncs (``np.dot``) accumulate in binary32 and round once;
the strict contexts' own ``dot`` and ``sum`` round every product and partial sum
(:mod:`lipflow.precision.strict`).

The rounding kernels are fused (one pass per operation) with numba when available
(:mod:`lipflow.precision.strict_numba`, ``pip install 'lipflow[fast]'``); the NumPy fallback
(:func:`lipflow.precision.strict_round32.round_to_format`) gives the same bits.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as onp
from autograd.numpy.numpy_boxes import ArrayBox
from autograd.numpy.numpy_vspaces import ArrayVSpace

from lipflow.precision.accel import active_backend
from lipflow.precision.floats import FLOAT_FORMATS
from lipflow.precision.strict_round32 import round_to_format

__all__ = ["BFloat16Held", "Binary16Held", "HeldArray", "held_class", "plain", "round_held", "to_format", "to_held"]

_BF16 = FLOAT_FORMATS["bfloat16"][0]
_F32 = onp.dtype(onp.float32)
_ND = onp.ndarray
_VIEW = onp.ndarray.view

#: ufuncs computed in binary32 and rounded once (correctly rounded: lem:binary32-double-rounding)
_ROUNDED = {onp.add: "add", onp.subtract: "subtract", onp.multiply: "multiply", onp.true_divide: "divide",
            onp.sqrt: "sqrt"}
#: exact on format values: no rounding needed
_EXACT = frozenset({onp.negative, onp.positive, onp.absolute})
#: boolean results, exact in binary32
_PREDICATES = frozenset({onp.greater, onp.greater_equal, onp.less, onp.less_equal, onp.equal, onp.not_equal,
                         onp.isnan, onp.isinf, onp.isfinite, onp.signbit})
#: NumPy functions whose results hold only their array arguments' elements (or zeros and ones):
#: on held arguments alone they need no rounding (anything else is rounded once to the format)
_MOVING = frozenset(getattr(onp, name) for name in (
    "concatenate", "stack", "hstack", "vstack", "reshape", "transpose", "moveaxis", "swapaxes",
    "broadcast_to", "expand_dims", "squeeze", "ravel", "take", "take_along_axis", "flip", "roll",
    "atleast_1d", "atleast_2d", "copy", "split", "array_split", "tile", "repeat", "diag", "diagonal",
    "triu", "tril", "sort", "zeros_like", "ones_like", "empty_like", "amax", "amin", "max", "min",
))


@functools.cache
def _compiled() -> Any:
    from lipflow.precision import strict_numba

    return strict_numba


def plain(x: onp.ndarray) -> onp.ndarray:
    """The same memory as a plain float32 ``ndarray`` (no rounding on later operations)."""
    return onp.ndarray.view(x, onp.ndarray)


def _use_numba() -> bool:
    return active_backend() == "numba"


def round_held(x: onp.ndarray, fmt: str) -> onp.ndarray:
    """float32 ``x`` rounded to the values of ``fmt`` (plain float32; NaN kept)."""
    if _use_numba():
        return _fused("round", fmt)(x)
    with onp.errstate(all="ignore"):
        return round_to_format(x, fmt)


#: (name, fmt) -> compiled ufunc, filled on first use
_FUSED: dict[tuple[str, str], onp.ufunc] = {}


def _fused(name: str, fmt: str) -> onp.ufunc:
    kernel = _FUSED.get((name, fmt))
    if kernel is None:
        kernel = _FUSED[name, fmt] = _compiled().ufunc(name, fmt)
    return kernel


def _apply(name: str, fmt: str, *args: Any) -> onp.ndarray:
    """One binary32 operation ``name`` on the operands and one rounding to ``fmt``."""
    if _use_numba():
        kernel = _FUSED.get((name, fmt))
        return (kernel or _fused(name, fmt))(*args)
    with onp.errstate(all="ignore"):
        return round_to_format(getattr(onp, name)(*args), fmt)


class HeldArray(onp.ndarray):
    """float32 array holding values of the format ``fmt``; arithmetic rounds to it once."""

    fmt: ClassVar[str] = ""
    format_dtype: ClassVar[onp.dtype] = _F32
    __array_priority__ = 30.0

    def __array_ufunc__(self, ufunc: onp.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        cls = type(self)
        if method == "__call__" and not kwargs:
            name = _ROUNDED.get(ufunc)
            if name is not None and len(inputs) == 2 and type(inputs[0]) is cls and type(inputs[1]) is cls:
                # the common case, kept short: two held operands of this format
                result = _apply(name, cls.fmt, _VIEW(inputs[0], _ND), _VIEW(inputs[1], _ND))
                return _VIEW(result, cls) if type(result) is _ND else _wrap(cls, result)
            args = _operands(cls, inputs)
            if args is NotImplemented:
                return NotImplemented
            if args is not None:
                if name is not None:
                    return _wrap(cls, _apply(name, cls.fmt, *args))
                if ufunc in _EXACT:
                    return _wrap(cls, ufunc(*args))
                if ufunc in _PREDICATES:
                    return ufunc(*args)
        return _on_format_dtype(cls, ufunc, method, inputs, kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        cls = type(self)
        result = super().__array_function__(func, types, args, kwargs)
        return _rewrap(cls, result, func in _MOVING and all(issubclass(kind, cls) for kind in types))

    def view(self, *args: Any, **kwargs: Any) -> Any:
        """As ``ndarray.view``, except that a float32 view as ``np.ndarray`` stays held (it
        is one: autograd's concatenate strips subclasses this way). ``astype`` or
        :func:`plain` give plain arrays."""
        result = onp.ndarray.view(self, *args, **kwargs)
        if type(result) is onp.ndarray and result.dtype == _F32 and onp.ndarray in (*args, kwargs.get("type")):
            return onp.ndarray.view(result, type(self))
        return result

    def __setitem__(self, key: Any, value: Any) -> None:
        """Stored values are values of the format (others are converted as ``to_held`` does)."""
        held = value if type(value) is type(self) else to_held(value, self.fmt)
        onp.ndarray.__setitem__(plain(self), key, plain(held))

    def astype(self, dtype: Any, *args: Any, **kwargs: Any) -> onp.ndarray:
        """A plain array of ``dtype`` (the float32 values converted as NumPy converts them)."""
        return onp.ndarray.astype(plain(self), dtype, *args, **kwargs)

    def dot(self, other: Any, out: Any = None) -> Any:
        return onp.dot(self, other, out=out) if out is not None else onp.dot(self, other)

    def __repr__(self) -> str:
        name = type(self).__name__
        body = onp.array2string(plain(self), separator=", ", prefix=name + "(")
        return f"{name}({body})"

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self).fmt, plain(self).copy()))


class Binary16Held(HeldArray):
    """IEEE binary16 values held in float32."""

    fmt = "float16"
    format_dtype = onp.dtype(onp.float16)


class BFloat16Held(HeldArray):
    """bfloat16 values held in float32."""

    fmt = "bfloat16"
    format_dtype = _BF16


_CLASSES: dict[str, type[HeldArray]] = {"float16": Binary16Held, "bfloat16": BFloat16Held}


def held_class(fmt: str) -> type[HeldArray]:
    """The held array class of ``fmt`` ("float16" or "bfloat16")."""
    return _CLASSES[fmt]


def _rebuild(fmt: str, values: onp.ndarray) -> HeldArray:
    return values.view(_CLASSES[fmt])


class _HeldVSpace(ArrayVSpace):
    """autograd's vector space of held arrays: zeros and ones stay held."""

    def __init__(self, value: Any) -> None:
        super().__init__(value)
        self.cls = type(value)

    def zeros(self) -> HeldArray:
        return onp.zeros(self.shape, dtype=onp.float32).view(self.cls)

    def ones(self) -> HeldArray:
        return onp.ones(self.shape, dtype=onp.float32).view(self.cls)


for _cls in _CLASSES.values():
    _HeldVSpace.register(_cls)
    ArrayBox.register(_cls)


# ---- conversions -------------------------------------------------------------------------------


def to_held(x: Any, fmt: str) -> HeldArray:
    """``x`` as a held array of ``fmt``: format arrays convert exactly; float32 values round once
    to the format; anything else converts to the format dtype as NumPy does (``astype``: float64
    to binary16 rounds once, to bfloat16 through binary32, as ml_dtypes does) and then exactly."""
    cls = _CLASSES[fmt]
    if type(x) is cls:
        return x
    x = onp.asarray(x)
    if x.dtype == _F32:
        return _wrap(cls, round_held(x, fmt))
    if x.dtype == onp.float64 and _use_numba():
        return _wrap(cls, _fused("from64", fmt)(x))
    if x.dtype != cls.format_dtype:
        with onp.errstate(over="ignore"):
            x = x.astype(cls.format_dtype)
    return _wrap(cls, _format_to_float32(x))


def _format_to_float32(x: onp.ndarray) -> onp.ndarray:
    if x.dtype == _BF16:  # bfloat16 is the top half of a float32
        return (x.view(onp.uint16).astype(onp.uint32) << onp.uint32(16)).view(onp.float32)
    return x.astype(onp.float32)


def to_format(x: HeldArray | onp.ndarray) -> onp.ndarray:
    """The held values as an array of the format dtype (exact)."""
    cls = type(x)
    raw = plain(x)
    if cls.format_dtype == _BF16:
        return raw.astype(_BF16)  # exact: every element is a bfloat16 value
    return raw.astype(cls.format_dtype)


def _wrap(cls: type[HeldArray], values: Any) -> HeldArray:
    if not isinstance(values, onp.ndarray):
        values = onp.asarray(values)
    return values.view(cls)


@functools.lru_cache(maxsize=256)
def _number(fmt: str, value: float) -> onp.float32:
    """A Python number as a value of the format (NumPy's rule for float16 arrays: one rounding)."""
    with onp.errstate(over="ignore"):
        stored = onp.asarray(value, dtype=onp.float64).astype(_CLASSES[fmt].format_dtype)
    return onp.float32(_format_to_float32(stored[None])[0])


def _operands(cls: type[HeldArray], inputs: tuple) -> Any:
    """Inputs as float32 values of the format, None if one needs NumPy's own promotion, or
    NotImplemented if one is a foreign array type (an autograd box) that must handle the call."""
    args = []
    for x in inputs:
        kind = type(x)
        if kind is cls:
            args.append(plain(x))
        elif kind in (float, int, bool):
            args.append(_number(cls.fmt, float(x)))
        elif isinstance(x, HeldArray):
            return None
        elif isinstance(x, (onp.ndarray, onp.generic)):
            dtype = x.dtype
            if dtype == _F32:
                args.append(round_held(onp.asarray(x), cls.fmt))
            elif dtype == cls.format_dtype or dtype == onp.bool_:
                args.append(_format_to_float32(onp.asarray(x, dtype=cls.format_dtype)))
            else:
                return None
        elif getattr(kind, "__array_ufunc__", None) not in (None, onp.ndarray.__array_ufunc__):
            return NotImplemented
        else:
            return None
    return args


def _to_storage(cls: type[HeldArray], x: Any) -> Any:
    if isinstance(x, HeldArray):
        return to_format(x)
    if type(x) in (float, int):  # as in the fast path (ml_dtypes would promote bfloat16 to float32)
        return onp.asarray(_number(cls.fmt, float(x))).astype(cls.format_dtype)
    if isinstance(x, (onp.ndarray, onp.generic)) and x.dtype == _F32:
        return to_format(to_held(x, cls.fmt))
    return x


def _from_storage(cls: type[HeldArray], x: Any) -> Any:
    if isinstance(x, tuple):
        return tuple(_from_storage(cls, item) for item in x)
    if isinstance(x, (onp.ndarray, onp.generic)) and x.dtype == cls.format_dtype:
        return _wrap(cls, _format_to_float32(onp.asarray(x)))
    return x


def _on_format_dtype(cls: type[HeldArray], ufunc: onp.ufunc, method: str, inputs: tuple, kwargs: dict) -> Any:
    """The ufunc call as NumPy / ml_dtypes perform it on the format dtype, results held again."""
    for x in inputs:
        if not isinstance(x, (onp.ndarray, onp.generic, float, int, bool, complex)) and getattr(
            type(x), "__array_ufunc__", None
        ) not in (None, onp.ndarray.__array_ufunc__, HeldArray.__array_ufunc__):
            return NotImplemented
    converted = [_to_storage(cls, x) for x in inputs]
    if method == "at":  # in place on the first operand: work on the format copy, write it back
        getattr(ufunc, method)(*converted, **kwargs)
        if converted[0] is not inputs[0]:
            inputs[0][...] = _from_storage(cls, converted[0])
        return None
    out = kwargs.pop("out", None)
    if out is not None:
        result = getattr(ufunc, method)(*converted, **kwargs)
        results = result if isinstance(result, tuple) else (result,)
        for target, value in zip(out, results, strict=False):
            held = _from_storage(cls, value)
            target[...] = plain(held) if isinstance(held, HeldArray) else value
        return out[0] if len(out) == 1 else out
    return _from_storage(cls, getattr(ufunc, method)(*converted, **kwargs))


def _rewrap(cls: type[HeldArray], result: Any, moving: bool) -> Any:
    """A NumPy function's result: float32 arrays held (rounded unless the function only moved
    values), other dtypes plain."""
    if isinstance(result, (list, tuple)):
        return type(result)(_rewrap(cls, item, moving) for item in result)
    if not isinstance(result, (onp.ndarray, onp.generic)):
        return result
    if result.dtype != _F32:
        return plain(result) if isinstance(result, HeldArray) else result
    if moving:
        return _wrap(cls, result) if type(result) is not cls else result
    return _wrap(cls, round_held(plain(onp.asarray(result)), cls.fmt))
