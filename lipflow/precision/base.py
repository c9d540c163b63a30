"""The precision-context interface shared by every working precision.

A :class:`Precision` is an immutable object that owns everything precision-dependent: the
storage type, the unit roundoff, casting, typed constants, elementwise maths, ``dot`` and
tolerances. Block code is written once against it (DESIGN section 2).
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import autograd.numpy as anp
import numpy as onp
from autograd.tracer import getval

from lipflow.precision import elementwise

__all__ = ["Precision", "tree_map"]


def tree_map(fun, tree: Any) -> Any:
    """Apply ``fun`` to every array leaf of a nested dict / list / tuple.

    Works on autograd's container boxes too, so casting inside ``grad`` is traced.
    """
    raw = getval(tree)
    if isinstance(raw, dict):
        return {key: tree_map(fun, tree[key]) for key in raw}
    if isinstance(raw, (list, tuple)):
        return type(raw)(tree_map(fun, tree[i]) for i in range(len(raw)))
    return fun(tree)


@dataclass(frozen=True)
class Precision(ABC):
    """A working precision: storage, rounding unit, casting and maths.

    Attributes:
        name: the name ``lipflow.precision`` accepts, e.g. ``"float32"`` or ``"mp50"``.
        mantissa_bits: significand bits p including the implicit bit; the unit roundoff is
            u = 2**-p (round to nearest).
        semantics: how operations round, in words (what a result that used this context can
            claim about its arithmetic).
    """

    name: str
    mantissa_bits: int
    semantics: str

    # ---- identity -----------------------------------------------------------------------
    @property
    @abstractmethod
    def dtype(self) -> onp.dtype:
        """The NumPy dtype of arrays at this precision (``object`` for mpmath)."""

    @property
    def unit_roundoff(self) -> float:
        """u = 2**-p: the relative error bound of one correctly rounded operation."""
        return math.ldexp(1.0, -self.mantissa_bits)

    @property
    def machine_epsilon(self) -> float:
        """The gap between 1 and the next representable number, 2**(1-p)."""
        return math.ldexp(1.0, 1 - self.mantissa_bits)

    @property
    def is_arbitrary(self) -> bool:
        """True for the mpmath (arbitrary-precision) contexts."""
        return False

    @property
    def has_linalg(self) -> bool:
        """Whether ``numpy.linalg`` accepts arrays of this dtype."""
        return False

    def gamma(self, n: int) -> float:
        """Higham's gamma_n = n u / (1 - n u), the error bound of n chained roundings."""
        nu = n * self.unit_roundoff
        if nu >= 1:
            return math.inf
        return nu / (1 - nu)

    # ---- data -----------------------------------------------------------------------------
    @abstractmethod
    def cast(self, x: Any) -> Any:
        """Convert an array (or a nested dict/list/tuple of arrays) to this precision.

        Casting is differentiable: under autograd the gradient flows back to the source dtype.
        """

    @abstractmethod
    def const(self, value: float) -> Any:
        """A scalar constant of this precision (route every literal through this)."""

    @abstractmethod
    def to_float64(self, x: Any) -> onp.ndarray:
        """A float64 copy (rounded to nearest) for reporting and plotting."""

    def zeros(self, shape: tuple[int, ...]) -> onp.ndarray:
        return self.cast(onp.zeros(shape))

    def ones(self, shape: tuple[int, ...]) -> onp.ndarray:
        return self.cast(onp.ones(shape))

    def owns(self, x: Any) -> bool:
        """Whether the array ``x`` is stored at exactly this precision."""
        return getattr(x, "dtype", None) == self.dtype

    @contextlib.contextmanager
    def scope(self) -> Iterator[Precision]:
        """A scope for code that needs this precision globally (a no-op for floats)."""
        yield self

    # ---- maths ----------------------------------------------------------------------------
    exp = staticmethod(elementwise.exp)
    log = staticmethod(elementwise.log)
    log1p = staticmethod(elementwise.log1p)
    expm1 = staticmethod(elementwise.expm1)
    tanh = staticmethod(elementwise.tanh)
    atan = staticmethod(elementwise.atan)
    sqrt = staticmethod(elementwise.sqrt)
    sigmoid = staticmethod(elementwise.sigmoid)
    log_sigmoid = staticmethod(elementwise.log_sigmoid)
    softplus = staticmethod(elementwise.softplus)
    relu = staticmethod(elementwise.relu)
    elu = staticmethod(elementwise.elu)

    def dot(self, a: Any, b: Any) -> Any:
        """Matrix product with the storage type kept (``np.dot``; see DESIGN section 2)."""
        return anp.dot(a, b)

    def sum(self, x: Any, axis: int | None = None) -> Any:
        """Sum along ``axis`` at this precision."""
        return anp.sum(x, axis=axis)

    def pi(self) -> Any:
        """pi at this precision."""
        return self.const(math.pi)

    def __str__(self) -> str:
        return self.name
