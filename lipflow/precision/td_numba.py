"""Compiled (numba) triple-double kernels: the functions of :mod:`lipflow.precision.td_kernels`
compiled on scalars, one loop per operation.

The kernels are not rewritten: each function of ``td_kernels`` is re-created over a namespace in
which the selectors (``where``, ``take``, ``rint``, ...) are scalar functions and ``two_prod``
is the FMA product of :mod:`lipflow.precision.dd_numba` (Dekker's bits, see there), then
compiled with numba. The same IEEE operations in the same order give the same bits as the NumPy
kernels (``tests/test_triple_double.py`` checks it).
"""

from __future__ import annotations

import math
import types

import numba
import numpy as onp

from lipflow.precision import dd_numba, td_kernels

__all__ = ["binary", "dot", "unary"]

_jit = numba.njit(cache=True, error_model="numpy", nogil=True)


@_jit
def _where(condition, a, b):
    return a if condition else b


@_jit
def _take(table, index):
    return table[index]


@_jit
def _to_int(x):
    return int(x)


@_jit
def _rint(x):
    return onp.rint(x)


@_jit
def _floor(x):
    return onp.floor(x)


@_jit
def _isfinite(x):
    return math.isfinite(x)


@_jit
def _isnan(x):
    return math.isnan(x)


@_jit
def _pow2(k):
    return math.ldexp(1.0, k)


_KERNELS = (
    "two_sum", "split", "renorm", "add", "mul", "div", "finish", "add_checked", "mul_checked",
    "div_checked", "_dd_mul", "_dd_add", "_fast_two_sum", "reduce_exp", "expm1_reduced", "_scale",
    "_clip", "_exp_in_range", "_expm1_in_range", "_special", "exp", "expm1", "tanh", "sigmoid",
)


def _compile() -> dict[str, object]:
    namespace = dict(vars(td_kernels))
    namespace.update(
        where=_where, take=_take, to_int=_to_int, rint=_rint, floor=_floor, isfinite=_isfinite,
        isnan=_isnan, pow2=_pow2, two_prod=dd_numba.two_prod,
    )
    for name in _KERNELS:
        source = getattr(td_kernels, name)
        clone = types.FunctionType(source.__code__, namespace, name, source.__defaults__, source.__closure__)
        clone.__qualname__ = source.__qualname__
        clone.__module__ = __name__
        namespace[name] = _jit(clone)
    return namespace


_K = _compile()
_tanh, _exp, _expm1, _sigmoid = _K["tanh"], _K["exp"], _K["expm1"], _K["sigmoid"]
_add, _mul, _div = _K["add_checked"], _K["mul_checked"], _K["div_checked"]
_mul_raw, _add_raw, _finish = _K["mul"], _K["add"], _K["finish"]


def _unary_loop(kernel):
    @_jit
    def loop(a0, a1, a2, o0, o1, o2):
        for i in range(a0.size):
            o0[i], o1[i], o2[i] = kernel(a0[i], a1[i], a2[i])

    return loop


_UNARY = {"tanh": _unary_loop(_tanh), "exp": _unary_loop(_exp), "expm1": _unary_loop(_expm1),
          "sigmoid": _unary_loop(_sigmoid)}


@_jit
def _binary_loop(op, a0, a1, a2, b0, b1, b2, o0, o1, o2):
    for i in range(a0.size):
        if op == 0:
            o0[i], o1[i], o2[i] = _add(a0[i], a1[i], a2[i], b0[i], b1[i], b2[i])
        elif op == 1:
            o0[i], o1[i], o2[i] = _mul(a0[i], a1[i], a2[i], b0[i], b1[i], b2[i])
        else:
            o0[i], o1[i], o2[i] = _div(a0[i], a1[i], a2[i], b0[i], b1[i], b2[i])


_CODES = {"add": 0, "mul": 1, "div": 2}


def unary(name: str, parts: tuple[onp.ndarray, ...]) -> tuple[onp.ndarray, ...]:
    shape = onp.shape(parts[0])
    flat = [onp.ascontiguousarray(p, dtype=onp.float64).ravel() for p in parts]
    out = [onp.empty_like(flat[0]) for _ in range(3)]
    _UNARY[name](*flat, *out)
    return tuple(o.reshape(shape) for o in out)


def binary(name: str, a: tuple[onp.ndarray, ...], b: tuple[onp.ndarray, ...]) -> tuple[onp.ndarray, ...]:
    parts = [onp.ascontiguousarray(p, dtype=onp.float64) for p in onp.broadcast_arrays(*a, *b)]
    shape = parts[0].shape
    out = [onp.empty(shape) for _ in range(3)]
    _binary_loop(_CODES[name], *(p.ravel() for p in parts), *(o.ravel() for o in out))
    return tuple(out)


@_jit
def _dot_loop(a0, a1, a2, b0, b1, b2, o0, o1, o2):
    n, depth = a0.shape
    m = b0.shape[1]
    for r in range(n):
        for c in range(m):
            s0, s1, s2 = _mul_raw(a0[r, 0], a1[r, 0], a2[r, 0], b0[0, c], b1[0, c], b2[0, c])
            for j in range(1, depth):
                t0, t1, t2 = _mul_raw(a0[r, j], a1[r, j], a2[r, j], b0[j, c], b1[j, c], b2[j, c])
                s0, s1, s2 = _add_raw(s0, s1, s2, t0, t1, t2)
            o0[r, c], o1[r, c], o2[r, c] = _finish(s0, s1, s2, s0)


def dot(a: tuple[onp.ndarray, ...], b: tuple[onp.ndarray, ...]) -> tuple[onp.ndarray, ...]:
    """a (n, k) @ b (k, m), the same operations in the same order as ``td_kernels.dot``."""
    a = [onp.ascontiguousarray(p, dtype=onp.float64) for p in a]
    b = [onp.ascontiguousarray(p, dtype=onp.float64) for p in b]
    n, depth = a[0].shape
    m = b[0].shape[1]
    if depth == 0:
        return tuple(onp.zeros((n, m)) for _ in range(3))
    out = [onp.empty((n, m)) for _ in range(3)]
    _dot_loop(*a, *b, *out)
    return tuple(out)
