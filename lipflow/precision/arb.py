"""Ball arithmetic through python-flint's ``arb``: rigorous enclosures at any precision.

An :class:`ArbPrecision` context evaluates the unchanged block code on NumPy object arrays of
``flint.arb`` balls (midpoint and radius). Every result *contains* the exact value of the
operation applied to any points of the input balls; the working precision only decides how
tight the balls are. flint's precision is a process-wide setting, so evaluate inside
``with ctx.scope():`` (``lipflow.analysis.certify`` does); outside it the balls stay rigorous
at flint's current precision (53 bits by default).

Monotone functions (sigmoid, tanh, atan, softplus, relu, elu, ...) are enclosed from the
ball's endpoints, which is tight and, for relu/elu, correct where a comparison with 0 would
be undecided. Requires the optional extra ``certified`` (``pip install lipflow[certified]``).
No autograd gradients: derivatives over boxes are enclosed by :mod:`lipflow.analysis.certify`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as onp

from lipflow.errors import LipflowError, MissingExtraError
from lipflow.precision.base import Precision, tree_map

__all__ = ["ArbPrecision", "arb_precision", "flint_available", "hull", "is_arb", "require_flint"]

try:
    import flint
except ImportError:  # pragma: no cover - the optional extra is not installed
    flint = None


def flint_available() -> bool:
    """Whether python-flint is importable."""
    return flint is not None


def require_flint() -> None:
    """Raise a clear error when the optional python-flint is missing."""
    if flint is None:
        raise MissingExtraError(
            "certified enclosures need python-flint: pip install 'lipflow[certified]' (or python-flint)",
            name="flint",
        )


def is_arb(value: Any) -> bool:
    return flint is not None and isinstance(value, flint.arb)


def hull(low: Any, high: Any) -> Any:
    """The smallest ball containing the exact floats (or balls) ``low`` and ``high``."""
    return flint.arb(low).union(flint.arb(high))


def _monotone(fun: Callable[[Any], Any], increasing: bool = True) -> Callable[[Any], Any]:
    """Enclose a monotone function on a ball from its two endpoints."""

    def on_ball(ball: Any) -> Any:
        if ball.rad() == 0:
            return fun(ball)
        return fun(flint.arb(ball.lower())).union(fun(flint.arb(ball.upper())))

    return on_ball


def _sigmoid(v: Any) -> Any:
    return 1 / (1 + (-v).exp())


def _softplus(v: Any) -> Any:
    return v.exp().log1p() if v < 0 else v + (-v).exp().log1p()


def _log_sigmoid(v: Any) -> Any:
    return -_softplus(-v)


def _relu(v: Any) -> Any:
    return v if v > 0 else flint.arb(0)


def _elu(v: Any) -> Any:
    return v if v > 0 else v.expm1()


def _elementwise(fun: Callable[[Any], Any]) -> Callable[[Any], Any]:
    vectorised = onp.frompyfunc(fun, 1, 1)

    def apply(x: Any) -> Any:
        if is_arb(x):
            return fun(x)
        return onp.asarray(vectorised(onp.asarray(x, dtype=object)), dtype=object)

    return apply


ELEMENTWISE = {
    "exp": _elementwise(lambda v: v.exp()),
    "log": _elementwise(lambda v: v.log()),
    "log1p": _elementwise(lambda v: v.log1p()),
    "expm1": _elementwise(lambda v: v.expm1()),
    "sqrt": _elementwise(lambda v: v.sqrt()),
    "tanh": _elementwise(_monotone(lambda v: v.tanh())),
    "atan": _elementwise(_monotone(lambda v: v.atan())),
    "sigmoid": _elementwise(_monotone(_sigmoid)),
    "log_sigmoid": _elementwise(_monotone(_log_sigmoid)),
    "softplus": _elementwise(_monotone(_softplus)),
    "relu": _elementwise(_monotone(_relu)),
    "elu": _elementwise(_monotone(_elu)),
}


@dataclass(frozen=True)
class ArbPrecision(Precision):
    """flint ``arb`` balls with ``mantissa_bits`` of working precision (inside :meth:`scope`)."""

    @property
    def dtype(self) -> onp.dtype:
        return onp.dtype(object)

    @property
    def is_arbitrary(self) -> bool:
        return False  # not an mpmath context: lipflow's mpmath-specific paths must not run

    def owns(self, x: Any) -> bool:
        if getattr(x, "dtype", None) != object:
            return False
        return onp.size(x) == 0 or is_arb(onp.asarray(x).flat[0])

    def cast(self, x: Any) -> Any:
        """Exact for float arrays (each double is an exact ball of radius 0)."""
        require_flint()

        def leaf(value: Any) -> Any:
            if self.owns(value):
                return value
            array = onp.asarray(value)
            if array.dtype == object:
                raise LipflowError(
                    f"{self.name}.cast takes float arrays or arrays of arb balls; convert other "
                    "objects (e.g. mpmath numbers) to float or arb first"
                )
            return onp.asarray(onp.frompyfunc(flint.arb, 1, 1)(array.astype(onp.float64)), dtype=object)

        return tree_map(leaf, x)

    def const(self, value: Any) -> Any:
        require_flint()
        return value if is_arb(value) else flint.arb(value)

    def to_float64(self, x: Any) -> onp.ndarray:
        """Midpoints rounded to float64."""
        mids = onp.frompyfunc(lambda v: float(v.mid()), 1, 1)(onp.asarray(x, dtype=object))
        return onp.asarray(mids, dtype=onp.float64)

    def radii(self, x: Any) -> onp.ndarray:
        """Ball radii rounded to float64 (to nearest: an estimate of the width, not a bound)."""
        radii = onp.frompyfunc(lambda v: float(v.rad()), 1, 1)(onp.asarray(x, dtype=object))
        return onp.asarray(radii, dtype=onp.float64)

    def pi(self) -> Any:
        require_flint()
        return flint.arb.pi()

    @contextlib.contextmanager
    def scope(self) -> Iterator[ArbPrecision]:
        """Set flint's (process-wide) precision to this context's bits; not thread-safe."""
        require_flint()
        with flint.ctx.workprec(self.mantissa_bits):
            yield self

    exp = staticmethod(ELEMENTWISE["exp"])
    log = staticmethod(ELEMENTWISE["log"])
    log1p = staticmethod(ELEMENTWISE["log1p"])
    expm1 = staticmethod(ELEMENTWISE["expm1"])
    tanh = staticmethod(ELEMENTWISE["tanh"])
    atan = staticmethod(ELEMENTWISE["atan"])
    sqrt = staticmethod(ELEMENTWISE["sqrt"])
    sigmoid = staticmethod(ELEMENTWISE["sigmoid"])
    log_sigmoid = staticmethod(ELEMENTWISE["log_sigmoid"])
    softplus = staticmethod(ELEMENTWISE["softplus"])
    relu = staticmethod(ELEMENTWISE["relu"])
    elu = staticmethod(ELEMENTWISE["elu"])

    def dot(self, a: Any, b: Any) -> Any:
        return onp.dot(a, b)

    def sum(self, x: Any, axis: int | None = None) -> Any:
        return onp.sum(x, axis=axis)


@functools.cache
def arb_precision(bits: int = 128) -> ArbPrecision:
    """The ball-arithmetic context with ``bits`` of working precision."""
    if not isinstance(bits, int) or bits < 2:
        raise LipflowError(f"arb precision needs an integer number of bits >= 2, got {bits!r}")
    return ArbPrecision(
        name=f"arb{bits}",
        mantissa_bits=bits,
        semantics=f"flint arb balls at {bits} bits: every result encloses the exact value (rigorous)",
    )
