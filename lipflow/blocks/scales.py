"""Elementwise scale functions g > 0 of affine coupling blocks (paper Eq. 4).

Each knows its range (inf g, sup g), which decides the inverse's stability (paper Section 3.2,
theory page ``lem:affine-local``), and gives log g in a numerically stable form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lipflow.errors import LipflowError
from lipflow.precision import Precision

__all__ = ["SCALE_NAMES", "Bounded", "Exp", "Identity", "Scale", "Sigmoid", "SoftClamp", "as_scale"]


@dataclass(frozen=True)
class Scale:
    """Base of the scale functions g: R -> (0, inf)."""

    kind = "scale"

    def g(self, s: Any, ctx: Precision) -> Any:
        raise NotImplementedError

    def log_g(self, s: Any, ctx: Precision) -> Any:
        return ctx.log(self.g(s, ctx))

    @property
    def range(self) -> tuple[float, float]:
        """(inf g, sup g) over all real s (the infimum may be 0: no inverse bound then)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Sigmoid(Scale):
    """g(s) = sigmoid(s + shift) + bias, in (bias, 1 + bias); Glow uses shift = 2.

    With bias = 0 the range is (0, 1): g can approach 0 and the inverse explode (paper Fig. 2).
    A positive bias is Daniels' "biased sigmoid".
    """

    shift: float = 0.0
    bias: float = 0.0
    kind = "sigmoid"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.shift) and math.isfinite(self.bias)) or self.bias < 0:
            raise LipflowError(
                f"Sigmoid scale needs a finite shift and a bias >= 0, got shift={self.shift}, bias={self.bias}"
            )

    def g(self, s: Any, ctx: Precision) -> Any:
        value = ctx.sigmoid(s + ctx.const(self.shift))
        return value + ctx.const(self.bias) if self.bias else value

    def log_g(self, s: Any, ctx: Precision) -> Any:
        if self.bias:
            return ctx.log(self.g(s, ctx))
        return ctx.log_sigmoid(s + ctx.const(self.shift))

    @property
    def range(self) -> tuple[float, float]:
        return (self.bias, 1.0 + self.bias)


@dataclass(frozen=True)
class Bounded(Scale):
    """g(s) = low + (high - low) sigmoid(s + shift), in (low, high) with 0 < low < high.

    The paper's modified affine block uses (0.5, 1); Daniels' "bounded net" is the same idea.
    """

    low: float = 0.5
    high: float = 1.0
    shift: float = 0.0
    kind = "bounded"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or not 0 < self.low < self.high:
            raise LipflowError(
                f"Bounded scale needs 0 < low < high, got low={self.low}, high={self.high}; "
                "e.g. Bounded(0.5, 1.0) as in the paper's modified affine block"
            )

    def g(self, s: Any, ctx: Precision) -> Any:
        low, width = ctx.const(self.low), ctx.const(self.high - self.low)
        return low + width * ctx.sigmoid(s + ctx.const(self.shift))

    @property
    def range(self) -> tuple[float, float]:
        return (self.low, self.high)


@dataclass(frozen=True)
class Exp(Scale):
    """g(s) = exp(s), RealNVP's choice; range (0, inf)."""

    kind = "exp"

    def g(self, s: Any, ctx: Precision) -> Any:
        return ctx.exp(s)

    def log_g(self, s: Any, ctx: Precision) -> Any:
        return s

    @property
    def range(self) -> tuple[float, float]:
        return (0.0, math.inf)


@dataclass(frozen=True)
class SoftClamp(Scale):
    """g(s) = exp(clamp * 2/pi * atan(s / clamp)), in (exp(-clamp), exp(clamp))."""

    clamp: float = 2.0
    kind = "softclamp"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.clamp) and self.clamp > 0):
            raise LipflowError(f"SoftClamp needs a finite clamp > 0, got {self.clamp}")

    def g(self, s: Any, ctx: Precision) -> Any:
        return ctx.exp(self.log_g(s, ctx))

    def log_g(self, s: Any, ctx: Precision) -> Any:
        clamp = ctx.const(self.clamp)
        return clamp * (2 / ctx.pi()) * ctx.atan(s / clamp)

    @property
    def range(self) -> tuple[float, float]:
        return (math.exp(-self.clamp), math.exp(self.clamp))


@dataclass(frozen=True)
class Identity(Scale):
    """g(s) = s; only valid with a positive ``Constant`` s (the Figure 1 toy, g = 0.1)."""

    kind = "identity"

    def g(self, s: Any, ctx: Precision) -> Any:
        return s

    @property
    def range(self) -> tuple[float, float]:
        return (0.0, math.inf)


SCALE_NAMES = ("sigmoid", "exp", "softclamp", "identity", "bounded")


def as_scale(scale: Scale | str) -> Scale:
    """A scale function from an instance or a name."""
    if isinstance(scale, Scale):
        return scale
    named = {"sigmoid": Sigmoid, "exp": Exp, "softclamp": SoftClamp, "identity": Identity, "bounded": Bounded}
    if scale in named:
        return named[scale]()
    raise LipflowError(
        f"unknown scale {scale!r}; use one of {', '.join(SCALE_NAMES)} or an instance such as "
        "Bounded(0.5, 1.0), Sigmoid(shift=2.0), SoftClamp(clamp=2.0)"
    )
