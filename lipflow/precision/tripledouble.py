"""Triple-double precision: ``precision("td")``, a ~150-bit reference for float64 work where
double-double's ~104 bits are not enough (a flow whose conditioning eats more than a few bits).

Values are unevaluated sums x0 + x1 + x2 of three float64 arrays (:class:`TDArray`), computed by
the kernels of :mod:`lipflow.precision.td_kernels` (NumPy) or :mod:`lipflow.precision.td_numba`
(compiled, bit-identical; chosen by :mod:`lipflow.precision.accel`). Like ``dd`` it runs the
unchanged block code through NumPy's protocols (arithmetic, ``tanh``/``exp``/``expm1``,
``matmul``/``dot``, ``concatenate``, ``where``, indexing) and has no gradients.

Accuracy: +, -, *, / within ~2^-155 (relative to the operands for +, -); exp, expm1, tanh and
sigmoid within 2^-130 (measured against mpmath at 400 bits in ``tests/test_triple_double.py``:
an estimate, not a proof). The context reports 128 bits (unit roundoff 2^-128) to cover both.
Functions outside that list (log, softplus, ...) raise an error naming the contexts that have
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as onp
from autograd.extend import VSpace
from autograd.tracer import Box

from lipflow.errors import LipflowError
from lipflow.precision import accel
from lipflow.precision import td_kernels as k
from lipflow.precision.base import Precision, tree_map
from lipflow.precision.expansion_shapes import shape_functions

__all__ = ["TD_DTYPE", "TDArray", "TDPrecision", "as_td", "td_precision"]

TD_DTYPE = onp.dtype([("x0", "<f8"), ("x1", "<f8"), ("x2", "<f8")])
NO_GRADIENT = (
    "the triple-double context 'td' has no autograd gradients; differentiate at 'float64' or an "
    "mpmath context such as 'mp50', and use 'td' for forward/inverse reference values"
)
_MISSING = "triple-double ('td') implements +, -, *, /, exp, expm1, tanh, sigmoid and dot; use 'mp50' for {}"


def _compiled() -> Any:
    if accel.active_backend() != "numba":
        return None
    from lipflow.precision import td_numba

    return td_numba


class TDArray:
    """An array of triple-double numbers x0 + x1 + x2 (three float64 arrays of one shape)."""

    __slots__ = ("parts",)
    __array_priority__ = 100

    def __init__(self, x0: Any, x1: Any = None, x2: Any = None) -> None:
        x0 = onp.asarray(x0, dtype=onp.float64)
        self.parts = (
            x0,
            onp.zeros_like(x0) if x1 is None else onp.asarray(x1, dtype=onp.float64),
            onp.zeros_like(x0) if x2 is None else onp.asarray(x2, dtype=onp.float64),
        )

    def _map(self, fun: Any) -> TDArray:
        return TDArray(*(fun(p) for p in self.parts))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.parts[0].shape

    @property
    def ndim(self) -> int:
        return self.parts[0].ndim

    @property
    def size(self) -> int:
        return self.parts[0].size

    @property
    def dtype(self) -> onp.dtype:
        return TD_DTYPE

    @property
    def T(self) -> TDArray:
        return self._map(lambda p: p.T)

    def __len__(self) -> int:
        return len(self.parts[0])

    def __getitem__(self, key: Any) -> TDArray:
        return self._map(lambda p: p[key])

    def __setitem__(self, key: Any, value: Any) -> None:
        value = as_td(value)
        for mine, theirs in zip(self.parts, value.parts, strict=True):
            mine[key] = theirs

    def reshape(self, *shape: Any) -> TDArray:
        return self._map(lambda p: p.reshape(*shape))

    def copy(self) -> TDArray:
        return self._map(onp.copy)

    def view(self, *args: Any) -> TDArray:
        return self

    def astype(self, dtype: Any, copy: bool = True) -> Any:
        dtype = onp.dtype(dtype)
        if dtype == TD_DTYPE:
            return self.copy()
        if dtype.kind != "f":
            raise TypeError(f"cannot convert a triple-double array to {dtype}")
        return (self.parts[0] + (self.parts[1] + self.parts[2])).astype(dtype)

    def __array__(self, dtype: Any = None, copy: Any = None) -> onp.ndarray:
        raise TypeError(
            "a triple-double array is not converted implicitly (it would drop the tails); use "
            "lipflow.precision('td').to_float64(x) or .to_mp(x)"
        )

    def __repr__(self) -> str:
        return f"TDArray(x0={self.parts[0]!r}, x1={self.parts[1]!r}, x2={self.parts[2]!r})"

    def __array_ufunc__(self, ufunc: onp.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if method != "__call__" or kwargs.get("out") is not None:
            return NotImplemented
        if ufunc in _BINARY:
            return _BINARY[ufunc](*inputs)
        if ufunc in _UNARY:
            return _UNARY[ufunc](as_td(inputs[0]))
        if ufunc in (onp.isfinite, onp.isnan, onp.isinf, onp.signbit):
            return ufunc(as_td(inputs[0]).parts[0])
        raise LipflowError(_MISSING.format(ufunc.__name__))

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        implementation = _FUNCTIONS.get(func)
        if implementation is None:
            raise LipflowError(_MISSING.format(getattr(func, "__name__", str(func))))
        return implementation(*args, **kwargs)

    def __add__(self, other: Any) -> TDArray:
        return _binary("add", self, other)

    def __radd__(self, other: Any) -> TDArray:
        return _binary("add", other, self)

    def __sub__(self, other: Any) -> TDArray:
        return _binary("add", self, -as_td(other))

    def __rsub__(self, other: Any) -> TDArray:
        return _binary("add", other, -self)

    def __mul__(self, other: Any) -> TDArray:
        return _binary("mul", self, other)

    def __rmul__(self, other: Any) -> TDArray:
        return _binary("mul", other, self)

    def __truediv__(self, other: Any) -> TDArray:
        return _binary("div", self, other)

    def __rtruediv__(self, other: Any) -> TDArray:
        return _binary("div", other, self)

    def __matmul__(self, other: Any) -> TDArray:
        return _dot(self, other)

    def __rmatmul__(self, other: Any) -> TDArray:
        return _dot(other, self)

    def __neg__(self) -> TDArray:
        return self._map(onp.negative)

    def __pos__(self) -> TDArray:
        return self

    def __abs__(self) -> TDArray:
        sign = onp.where(self.parts[0] < 0, -1.0, 1.0)
        return self._map(lambda p: sign * p)

    def __gt__(self, other: Any) -> onp.ndarray:
        return _difference_sign(self, other) > 0

    def __lt__(self, other: Any) -> onp.ndarray:
        return _difference_sign(self, other) < 0

    def __ge__(self, other: Any) -> onp.ndarray:
        return _difference_sign(self, other) >= 0

    def __le__(self, other: Any) -> onp.ndarray:
        return _difference_sign(self, other) <= 0

    __hash__ = None  # type: ignore[assignment]


def _difference_sign(a: Any, b: Any) -> onp.ndarray:
    d = _binary("add", a, -as_td(b))
    return onp.sign(d.parts[0])


def _mp_parts(value: Any) -> tuple[float, float, float]:
    x0 = float(value)
    if not onp.isfinite(x0):
        return x0, 0.0, 0.0
    with mpmath.workprec(400):
        rest = mpmath.mpf(value) - x0
        x1 = float(rest)
        x2 = float(rest - x1)
    return x0, x1, x2


def as_td(x: Any) -> TDArray:
    """``x`` as a triple-double array: exact for floats, ints, longdouble and double-double
    arrays; mpmath numbers are rounded to the nearest triple-double."""
    if isinstance(x, TDArray):
        return x
    if isinstance(x, Box):
        raise LipflowError(NO_GRADIENT)
    from lipflow.precision.dd_array import DDArray

    if isinstance(x, DDArray):
        return TDArray(*k.renorm(x.hi, x.lo, onp.zeros_like(x.hi)))
    if isinstance(x, mpmath.ctx_mp_python.mpnumeric):
        return TDArray(*_mp_parts(x))
    array = onp.asarray(x)
    if array.dtype == object:
        parts = [_mp_parts(v) for v in array.ravel()]
        return TDArray(*(onp.array([p[i] for p in parts], dtype=onp.float64).reshape(array.shape) for i in range(3)))
    if array.dtype == onp.longdouble:
        x0 = array.astype(onp.float64)
        with onp.errstate(invalid="ignore"):
            x1 = onp.where(onp.isfinite(x0), (array - x0).astype(onp.float64), 0.0)
        return TDArray(x0, x1)
    if array.dtype.kind in "fiub" or array.dtype.name == "bfloat16":
        return TDArray(array.astype(onp.float64))
    raise TypeError(f"cannot use an array of dtype {array.dtype} as triple-double")


def _binary(name: str, a: Any, b: Any) -> TDArray:
    a, b = as_td(a), as_td(b)
    compiled = _compiled()
    if compiled is not None:
        return TDArray(*compiled.binary(name, a.parts, b.parts))
    kernel = {"add": k.add_checked, "mul": k.mul_checked, "div": k.div_checked}[name]
    with onp.errstate(all="ignore"):
        return TDArray(*kernel(*a.parts, *b.parts))


def _unary(name: str) -> Any:
    def apply(x: Any) -> TDArray:
        x = as_td(x)
        compiled = _compiled()
        if compiled is not None:
            return TDArray(*compiled.unary(name, x.parts))
        with onp.errstate(all="ignore"):
            return TDArray(*getattr(k, name)(*x.parts))

    apply.__name__ = f"td_{name}"
    return apply


td_exp, td_expm1, td_tanh, td_sigmoid = (_unary(n) for n in ("exp", "expm1", "tanh", "sigmoid"))


def _dot(a: Any, b: Any) -> TDArray:
    a, b = as_td(a), as_td(b)
    if b.ndim > 2 or a.ndim == 0 or b.ndim == 0:
        raise TypeError("triple-double dot supports a (..., k) times b (k,) or (k, m)")
    vector = b.ndim == 1
    if vector:
        b = b.reshape(-1, 1)
    lead = a.shape[:-1]
    a = a.reshape(-1, a.shape[-1])
    compiled = _compiled()
    if compiled is not None:
        parts = compiled.dot(a.parts, b.parts)
    else:
        with onp.errstate(all="ignore"):
            parts = k.dot(*a.parts, *b.parts)
    result = TDArray(*parts).reshape(*lead, b.shape[1])
    return result[..., 0] if vector else result


def _sum(x: Any, axis: int | None = None, **kwargs: Any) -> TDArray:
    """Sum along one axis, left to right in triple-double."""
    if kwargs.get("out") is not None or kwargs.get("keepdims"):
        raise TypeError("triple-double sum supports only the axis argument")
    x = as_td(x)
    if axis is None:
        x, axis = x.reshape(-1), 0
    moved = TDArray(*(onp.moveaxis(p, axis, 0) for p in x.parts))
    if moved.shape[0] == 0:
        return TDArray(onp.zeros(moved.shape[1:]))
    total = moved[0]
    for i in range(1, moved.shape[0]):
        total = total + moved[i]
    return total


def _where(condition: Any, a: Any, b: Any) -> TDArray:
    a, b = as_td(a), as_td(b)
    condition = onp.asarray(condition, dtype=bool)
    return TDArray(*(onp.where(condition, p, q) for p, q in zip(a.parts, b.parts, strict=True)))


_BINARY = {
    onp.add: lambda a, b: _binary("add", a, b),
    onp.subtract: lambda a, b: _binary("add", a, -as_td(b)),
    onp.multiply: lambda a, b: _binary("mul", a, b),
    onp.true_divide: lambda a, b: _binary("div", a, b),
    onp.matmul: _dot,
}
_UNARY = {
    onp.negative: lambda a: -a,
    onp.positive: lambda a: a,
    onp.absolute: abs,
    onp.square: lambda a: _binary("mul", a, a),
    onp.exp: td_exp,
    onp.expm1: td_expm1,
    onp.tanh: td_tanh,
}
_FUNCTIONS = {
    **shape_functions(as_td, lambda a: a.parts, TDArray),
    onp.where: _where,
    onp.sum: _sum,
    onp.dot: _dot,
}


def _refuse_gradient(value: Any) -> Any:
    raise LipflowError(NO_GRADIENT)


VSpace.register(TDArray, _refuse_gradient)


@dataclass(frozen=True)
class TDPrecision(Precision):
    """Triple-double arithmetic (~159-bit significands; unit roundoff reported as 2^-128)."""

    @property
    def dtype(self) -> onp.dtype:
        return TD_DTYPE

    def owns(self, x: Any) -> bool:
        return isinstance(x, TDArray)

    def cast(self, x: Any) -> Any:
        def leaf(value: Any) -> TDArray:
            if isinstance(value, Box):
                raise LipflowError(NO_GRADIENT)
            return as_td(value)

        return tree_map(leaf, x)

    def const(self, value: Any) -> TDArray:
        return as_td(value) if not isinstance(value, str) else TDArray(*k.td_constant(value))

    def to_float64(self, x: Any) -> onp.ndarray:
        x = as_td(x)
        return x.parts[0] + (x.parts[1] + x.parts[2])

    def to_mp(self, x: Any, dps: int = 60) -> onp.ndarray:
        """An object array of mpmath numbers (exactly x0 + x1 + x2 when dps >= 60)."""
        from lipflow.precision.mp import mp_context_for

        context = mp_context_for(dps)
        x = as_td(x)
        exact = onp.frompyfunc(lambda a, b, c: context.mpf(a) + context.mpf(b) + context.mpf(c), 3, 1)
        return onp.asarray(exact(*x.parts), dtype=object)

    exp = staticmethod(td_exp)
    expm1 = staticmethod(td_expm1)
    tanh = staticmethod(td_tanh)
    sigmoid = staticmethod(td_sigmoid)

    def relu(self, x: Any) -> TDArray:
        x = as_td(x)
        return _where(x.parts[0] > 0, x, TDArray(onp.zeros(x.shape)))

    def dot(self, a: Any, b: Any) -> TDArray:
        return _dot(a, b)

    def sum(self, x: Any, axis: int | None = None) -> TDArray:
        return _sum(x, axis)


def td_precision() -> TDPrecision:
    """The triple-double context (``lipflow.precision("td")``)."""
    return TDPrecision(
        name="td",
        mantissa_bits=128,
        semantics=(
            "triple-double (x0 + x1 + x2 float64 triples, ~159-bit significand): +-*/ within "
            "~2^-155, exp/expm1/tanh/sigmoid within 2^-130 (tested), dot and sum left to right "
            "in triple-double; no log family, no gradients"
        ),
    )
