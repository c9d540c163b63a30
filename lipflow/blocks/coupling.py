"""Additive and affine coupling blocks (paper Eqs. 3 and 4).

x is split by index sets I1 (conditioning, copied) and I2 (transformed):

* additive:  y1 = x1,  y2 = x2 + t(x1)
* affine, RealNVP form (scale then shift): y2 = x2 * g(s(x1)) + t(x1)
* affine, Glow form (shift then scale):    y2 = (x2 + t(x1)) * g(s(x1))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import autograd.numpy as anp
import numpy as onp

from lipflow.blocks.base import Block, Params, as_rng
from lipflow.blocks.conditioners import MLP, Constant
from lipflow.blocks.scales import Identity, Scale, as_scale
from lipflow.errors import LipflowError
from lipflow.precision import Precision

__all__ = ["AdditiveCoupling", "AffineCoupling", "coupling_indices"]

Conditioning = str | tuple[int, ...]


def coupling_indices(dim: int, conditioning: Conditioning) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(I1, I2): the conditioning (copied) and transformed index sets."""
    if isinstance(conditioning, str):
        if conditioning not in ("first", "second"):
            raise LipflowError(f"conditioning must be 'first', 'second' or a tuple of indices, got {conditioning!r}")
        if dim % 2:
            raise LipflowError(
                f"dim={dim} is odd, so it has no halves for conditioning={conditioning!r}; pass the "
                f"conditioning indices explicitly, e.g. conditioning={tuple(range(dim // 2))}"
            )
        first, second = tuple(range(dim // 2)), tuple(range(dim // 2, dim))
        return (first, second) if conditioning == "first" else (second, first)
    indices = tuple(int(i) for i in conditioning)
    if not indices or len(set(indices)) != len(indices) or not all(0 <= i < dim for i in indices):
        raise LipflowError(f"conditioning indices {conditioning!r} must be distinct integers in [0, {dim})")
    if len(indices) == dim:
        raise LipflowError("conditioning indices cover every coordinate; leave at least one to transform")
    rest = tuple(i for i in range(dim) if i not in indices)
    return indices, rest


@dataclass(frozen=True, kw_only=True)
class _Coupling(Block):
    """Shared splitting and merging of coupling blocks."""

    conditioning: Conditioning = "first"
    indices: tuple[tuple[int, ...], tuple[int, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.conditioning, str):
            object.__setattr__(self, "conditioning", tuple(int(i) for i in self.conditioning))
        object.__setattr__(self, "indices", coupling_indices(self.dim, self.conditioning))

    @property
    def n_conditioning(self) -> int:
        return len(self.indices[0])

    @property
    def n_transformed(self) -> int:
        return len(self.indices[1])

    def split(self, x: Any) -> tuple[Any, Any]:
        first, second = self.indices
        return x[:, list(first)], x[:, list(second)]

    def merge(self, x1: Any, x2: Any) -> Any:
        order = onp.argsort(onp.concatenate([self.indices[0], self.indices[1]]))
        return anp.concatenate([x1, x2], axis=1)[:, order]


@dataclass(frozen=True, kw_only=True)
class AdditiveCoupling(_Coupling):
    """y1 = x1, y2 = x2 + t(x1): globally bi-Lipschitz (theory ``lem:additive-tight``).

    Example:
        >>> import numpy as np, lipflow
        >>> block = lipflow.AdditiveCoupling(2, t=lipflow.Constant(0.5))
        >>> block.forward(block.init(0), np.array([[1.0, 1.0]]))
        array([[1. , 1.5]])
    """

    t: MLP | Constant = MLP()

    @property
    def family(self) -> str:
        return "additive_coupling"

    def init(self, seed: int | onp.random.Generator | None = 0) -> Params:
        return {"t": self.t.init(as_rng(seed), self.n_conditioning, self.n_transformed)}

    def shift(self, params: Params, x1: Any, ctx: Precision) -> Any:
        return self.t.apply(params["t"], x1, ctx, self.n_transformed)

    def _forward(self, params: Params, x: Any, ctx: Precision) -> Any:
        x1, x2 = self.split(x)
        return self.merge(x1, x2 + self.shift(params, x1, ctx))

    def _inverse(self, params: Params, y: Any, ctx: Precision) -> Any:
        y1, y2 = self.split(y)
        return self.merge(y1, y2 - self.shift(params, y1, ctx))

    def _logdet(self, params: Params, x: Any, ctx: Precision) -> Any:
        return ctx.zeros((onp.shape(x)[0],))


@dataclass(frozen=True, kw_only=True)
class AffineCoupling(_Coupling):
    """y1 = x1, y2 = x2 * g(s(x1)) + t(x1) (``form="realnvp"``) or (x2 + t(x1)) * g(s(x1))
    (``form="glow"``): bi-Lipschitz only on bounded sets (theory ``thm:coupling-stability``).

    Example, the paper's Figure 1 toy block:
        >>> import numpy as np, lipflow
        >>> toy = lipflow.AffineCoupling(2, t=lipflow.Constant(0.123456789),
        ...                              s=lipflow.Constant(0.1), scale="identity")
        >>> toy.forward(toy.init(0), np.array([[1.0, 1.0]]))
        array([[1.        , 0.22345679]])
    """

    t: MLP | Constant = MLP()
    s: MLP | Constant = MLP()
    scale: Scale | str = "sigmoid"
    form: str = "realnvp"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "scale", as_scale(self.scale))
        if self.form not in ("realnvp", "glow"):
            raise LipflowError(
                f"form must be 'realnvp' (scale then shift) or 'glow' (shift then scale), got {self.form!r}"
            )
        if isinstance(self.scale, Identity):
            if not isinstance(self.s, Constant) or onp.any(onp.asarray(self.s.value) <= 0):
                raise LipflowError(
                    "scale='identity' uses s itself as the scale, so s must be a Constant with "
                    "positive values (e.g. s=Constant(0.1)); use 'sigmoid', 'exp', Bounded(...) or "
                    "SoftClamp(...) with a learned s"
                )

    @property
    def family(self) -> str:
        return "affine_coupling"

    def init(self, seed: int | onp.random.Generator | None = 0) -> Params:
        rng = as_rng(seed)
        return {
            "t": self.t.init(rng, self.n_conditioning, self.n_transformed),
            "s": self.s.init(rng, self.n_conditioning, self.n_transformed),
        }

    def shift_and_log_scale(self, params: Params, x1: Any, ctx: Precision) -> tuple[Any, Any, Any]:
        """(t(x1), g(s(x1)), log g(s(x1)))."""
        s = self.s.apply(params["s"], x1, ctx, self.n_transformed)
        t = self.t.apply(params["t"], x1, ctx, self.n_transformed)
        return t, self.scale.g(s, ctx), self.scale.log_g(s, ctx)

    def shift_and_scale(self, params: Params, x1: Any, ctx: Precision) -> tuple[Any, Any]:
        """(t(x1), g(s(x1))): what forward and inverse need (log g only for the log-determinant)."""
        s = self.s.apply(params["s"], x1, ctx, self.n_transformed)
        t = self.t.apply(params["t"], x1, ctx, self.n_transformed)
        return t, self.scale.g(s, ctx)

    def _forward(self, params: Params, x: Any, ctx: Precision) -> Any:
        x1, x2 = self.split(x)
        t, g = self.shift_and_scale(params, x1, ctx)
        y2 = x2 * g + t if self.form == "realnvp" else (x2 + t) * g
        return self.merge(x1, y2)

    def _inverse(self, params: Params, y: Any, ctx: Precision) -> Any:
        y1, y2 = self.split(y)
        t, g = self.shift_and_scale(params, y1, ctx)
        x2 = (y2 - t) / g if self.form == "realnvp" else y2 / g - t
        return self.merge(y1, x2)

    def _logdet(self, params: Params, x: Any, ctx: Precision) -> Any:
        x1, _ = self.split(x)
        _, _, log_g = self.shift_and_log_scale(params, x1, ctx)
        return ctx.sum(log_g, axis=1)
