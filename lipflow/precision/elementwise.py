"""Elementwise functions as autograd primitives that work at every precision.

Each function accepts a NumPy float array of any width (float16, bfloat16, float32, float64,
longdouble) and keeps its dtype, or an object array of mpmath numbers, which it evaluates with
each element's own mpmath context (so the precision travels with the data, never through
mpmath's global state). Derivatives are written with the same primitives, so gradients of any
order stay at the working precision.

NumPy's own ``np.exp`` and friends refuse object arrays, and ``np.where``/``np.maximum`` make
autograd return float64 gradients; these primitives avoid both.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as onp
from autograd.extend import defvjp, primitive

__all__ = [
    "LIPSWISH_BETA",
    "LIPSWISH_SCALE",
    "atan",
    "elu",
    "elu_derivative",
    "exp",
    "expm1",
    "log",
    "log1p",
    "log_sigmoid",
    "relu",
    "sigmoid",
    "softplus",
    "sqrt",
    "step",
    "tanh",
]

#: LipSwish (Chen et al., 2019): z * sigmoid(beta z) / 1.1 is 1-Lipschitz since
#: max_u d/du [u sigmoid(u)] = 1.0998...
LIPSWISH_BETA = 1.0
LIPSWISH_SCALE = 1.1


def _on_elements(float_impl: Callable, mp_name: str) -> Callable:
    """``float_impl`` for float arrays, the mpmath function ``mp_name`` for object arrays."""
    return _dispatch(float_impl, lambda v: getattr(v.context, mp_name)(v))


def _typed(value, like):
    """A constant with the dtype of ``like`` (Python scalars for object arrays)."""
    if like.dtype == object:
        return value
    return onp.asarray(value, dtype=like.dtype)


# --- float implementations that keep the input dtype -------------------------------------


def _sigmoid_float(x):
    e = onp.exp(-onp.abs(x))
    one = _typed(1, x)
    positive = one / (one + e)
    return onp.where(x >= 0, positive, e * positive).astype(x.dtype, copy=False)


def _log_sigmoid_float(x):
    # log sigmoid(x) = min(x, 0) - log1p(exp(-|x|))
    return (onp.minimum(x, _typed(0, x)) - onp.log1p(onp.exp(-onp.abs(x)))).astype(x.dtype, copy=False)


def _softplus_float(x):
    return (onp.maximum(x, _typed(0, x)) + onp.log1p(onp.exp(-onp.abs(x)))).astype(x.dtype, copy=False)


#: mpmath's exp of |arguments| beyond 2^40 raises OverflowError instead of running: the result
#: is far outside every float format, and exp of astronomically large mpf numbers (which a
#: diverging inverse produces) needs working precisions of millions of bits
MP_EXP_ARGUMENT_LIMIT = 2.0**40


def _mp_exp(v):
    if abs(v) > MP_EXP_ARGUMENT_LIMIT:
        raise OverflowError(f"exp of an mpmath number of magnitude {float(abs(v)):.3g} > 2^40 (beyond every float)")
    return v.context.exp(v)


def _mp_expm1(v):
    return v.context.expm1(v) if abs(v) <= MP_EXP_ARGUMENT_LIMIT else _mp_exp(v)


def _mp_tanh(v):
    # |tanh v| rounds to 1 once 2 exp(-2|v|) is below half an ulp of 1
    if abs(v) > v.context.prec:
        return v.context.mpf(1) if v > 0 else v.context.mpf(-1)
    return v.context.tanh(v)


def _mp_sigmoid(v):
    # exp(-v) is below half an ulp of 1 once v > prec (bits), so the rounded sigmoid is 1
    return v.context.mpf(1) if v > v.context.prec else 1 / (1 + _mp_exp(-v))


def _mp_log_sigmoid(v):
    return -v.context.log1p(_mp_exp(-v)) if v >= 0 else v - v.context.log1p(_mp_exp(v))


def _mp_softplus(v):
    return v + v.context.log1p(_mp_exp(-v)) if v >= 0 else v.context.log1p(_mp_exp(v))


def _vectorise_mp(fun: Callable) -> Callable:
    vectorised = onp.frompyfunc(fun, 1, 1)
    return lambda x: onp.asarray(vectorised(x), dtype=object)


def _dispatch(float_impl: Callable, mp_impl: Callable) -> Callable:
    mp_vectorised = _vectorise_mp(mp_impl)

    def apply(x):
        x = onp.asarray(x) if not hasattr(x, "dtype") else x
        if x.dtype == object:
            return mp_vectorised(x)
        return float_impl(x)

    return apply


exp = primitive(_dispatch(onp.exp, _mp_exp))
log = primitive(_on_elements(onp.log, "log"))
log1p = primitive(_on_elements(onp.log1p, "log1p"))
expm1 = primitive(_dispatch(onp.expm1, _mp_expm1))
tanh = primitive(_dispatch(onp.tanh, _mp_tanh))
atan = primitive(_on_elements(onp.arctan, "atan"))
sqrt = primitive(_on_elements(onp.sqrt, "sqrt"))
sigmoid = primitive(_dispatch(_sigmoid_float, _mp_sigmoid))
log_sigmoid = primitive(_dispatch(_log_sigmoid_float, _mp_log_sigmoid))
softplus = primitive(_dispatch(_softplus_float, _mp_softplus))


@primitive
def step(x):
    """Heaviside step (1 where x > 0, else 0) in the dtype of x; its derivative is zero."""
    x = onp.asarray(x) if not hasattr(x, "dtype") else x
    if x.dtype == object:
        return onp.asarray(
            onp.frompyfunc(lambda v: v.context.mpf(1) if v > 0 else v.context.mpf(0), 1, 1)(x), dtype=object
        )
    return (x > 0).astype(x.dtype)


@primitive
def relu(x):
    """max(x, 0), keeping the dtype (autograd's maximum would return float64 gradients)."""
    return x * step(x)


@primitive
def elu(x):
    """ELU with alpha = 1: x for x > 0, exp(x) - 1 otherwise (1-Lipschitz)."""
    positive = step(x)
    return x * positive + expm1(x * (1 - positive)) * (1 - positive)


@primitive
def elu_derivative(x):
    """d ELU / dx: 1 for x > 0, exp(x) otherwise."""
    positive = step(x)
    return positive + exp(x * (1 - positive)) * (1 - positive)


defvjp(exp, lambda ans, x: lambda g: g * ans)
defvjp(log, lambda ans, x: lambda g: g / x)
defvjp(log1p, lambda ans, x: lambda g: g / (1 + x))
defvjp(expm1, lambda ans, x: lambda g: g * (ans + 1))
defvjp(tanh, lambda ans, x: lambda g: g * (1 - ans * ans))
defvjp(atan, lambda ans, x: lambda g: g / (1 + x * x))
defvjp(sqrt, lambda ans, x: lambda g: g / (ans + ans))
defvjp(sigmoid, lambda ans, x: lambda g: g * ans * (1 - ans))
defvjp(log_sigmoid, lambda ans, x: lambda g: g * sigmoid(-x))
defvjp(softplus, lambda ans, x: lambda g: g * sigmoid(x))
defvjp(step, lambda ans, x: lambda g: g * 0)
defvjp(relu, lambda ans, x: lambda g: g * step(x))
defvjp(elu, lambda ans, x: lambda g: g * elu_derivative(x))
defvjp(elu_derivative, lambda ans, x: lambda g: g * exp(x * (1 - step(x))) * (1 - step(x)))
