"""Double-double precision: ``precision("dd")``, a fast ~106-bit reference for float64 work.

Values are unevaluated sums hi + lo of two float64 arrays (:class:`DDArray`), and every
operation is a short sequence of vectorised float64 passes built on error-free
transformations (:mod:`lipflow.precision.dd_kernels`). It runs the *unchanged* block code:
``DDArray`` implements NumPy's ``__array_ufunc__`` (arithmetic, comparisons, ``exp``/``tanh``/
..., ``matmul``) and ``__array_function__`` (``concatenate``, ``stack``, ``where``, ``sum``,
``dot``, shape functions), plus indexing, ``.T``, ``reshape``, so ``x * g + t``,
``x[:, idx]`` and ``anp.concatenate`` work as on ndarrays.

Why a wrapper class and not an ndarray subclass: autograd's ``concatenate`` ends in
``.view(ndarray)``, which would strip a subclass (and a structured-dtype subclass would make
every plain NumPy kernel act on the record fields). A class holding two contiguous float64
arrays keeps each kernel a plain float64 pass and fails loudly where NumPy would drop the
lo part: implicit conversion (``np.asarray(x)``) raises; use ``ctx.to_float64(x)``.

Not differentiable: autograd has no vector space for ``DDArray``, and asking for a gradient
raises :class:`~lipflow.errors.LipflowError` (use an ``mpNN`` context for high-precision
gradients). Accuracy: +, -, *, / have relative error below 2^-102 (Joldes, Muller, Popescu
2017); the transcendental kernels are checked against mpmath at 200 bits in the tests; the
context reports a unit roundoff of 2^-100 to cover both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as onp
from autograd.tracer import Box

from lipflow.errors import LipflowError
from lipflow.precision import dd_kernels as k
from lipflow.precision.base import Precision, tree_map
from lipflow.precision.dd_array import (
    DD_DTYPE,
    NO_GRADIENT,
    DDArray,
    as_dd,
    dd_atan,
    dd_dot,
    dd_elu,
    dd_exp,
    dd_expm1,
    dd_log,
    dd_log1p,
    dd_log_sigmoid,
    dd_relu,
    dd_sigmoid,
    dd_softplus,
    dd_sqrt,
    dd_sum,
    dd_tanh,
)

__all__ = ["DD_DTYPE", "DDArray", "DDPrecision", "as_dd", "dd_precision"]


# ---- the context ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DDPrecision(Precision):
    """Double-double arithmetic (~106-bit significands, unit roundoff reported as 2^-100)."""

    @property
    def dtype(self) -> onp.dtype:
        return DD_DTYPE

    def owns(self, x: Any) -> bool:
        return isinstance(x, DDArray)

    def cast(self, x: Any) -> Any:
        """Exact conversion of float arrays (longdouble and mpmath values: nearest
        double-double). Refuses autograd boxes: this context has no gradients."""

        def leaf(value: Any) -> DDArray:
            if isinstance(value, Box):
                raise LipflowError(NO_GRADIENT)
            return as_dd(value)

        return tree_map(leaf, x)

    def const(self, value: Any) -> DDArray:
        return as_dd(value) if not isinstance(value, str) else DDArray(*k.dd_constant(value))

    def to_float64(self, x: Any) -> onp.ndarray:
        x = as_dd(x)
        return x.hi + x.lo

    def to_mp(self, x: Any, dps: int = 50) -> onp.ndarray:
        """An object array of mpmath numbers (exactly hi + lo) in lipflow's ``mp{dps}`` context."""
        from lipflow.precision.mp import mp_context_for

        context = mp_context_for(dps)
        x = as_dd(x)
        exact = onp.frompyfunc(lambda h, l: context.mpf(h) + context.mpf(l), 2, 1)
        return onp.asarray(exact(x.hi, x.lo), dtype=object)

    def pi(self) -> DDArray:
        return DDArray(*k.PI)

    exp = staticmethod(dd_exp)
    log = staticmethod(dd_log)
    log1p = staticmethod(dd_log1p)
    expm1 = staticmethod(dd_expm1)
    tanh = staticmethod(dd_tanh)
    atan = staticmethod(dd_atan)
    sqrt = staticmethod(dd_sqrt)
    sigmoid = staticmethod(dd_sigmoid)
    log_sigmoid = staticmethod(dd_log_sigmoid)
    softplus = staticmethod(dd_softplus)
    relu = staticmethod(dd_relu)
    elu = staticmethod(dd_elu)

    def dot(self, a: Any, b: Any) -> DDArray:
        """Matrix product with exact products and error-free summation (Dot2-like accuracy)."""
        return dd_dot(a, b)

    def sum(self, x: Any, axis: int | None = None) -> DDArray:
        return dd_sum(x, axis)


def dd_precision() -> DDPrecision:
    """The double-double context (``lipflow.precision("dd")``)."""
    return DDPrecision(
        name="dd",
        mantissa_bits=100,
        semantics=(
            "double-double (hi + lo float64 pairs, ~106-bit significand): error-free "
            "transformations, +-*/ within 2^-102 relative, exp/log/tanh/... within ~2^-100; "
            "dot and sum use exact products and TwoSum trees"
        ),
    )
