"""The result type of every Lipschitz-bound calculator: :class:`LipschitzBound`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import sympy

from lipflow.errors import LipflowError

__all__ = ["DIRECTIONS", "KINDS", "LipschitzBound", "check_direction"]

KINDS = ("upper", "lower", "estimate")
DIRECTIONS = ("forward", "inverse")

Kind = Literal["upper", "lower", "estimate"]
Direction = Literal["forward", "inverse"]


def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise LipflowError(f"direction must be 'forward' or 'inverse', got {direction!r}")
    return direction


@dataclass(frozen=True)
class LipschitzBound:
    """A bound on (or estimate of) the Lipschitz constant of a block, a flow or a formula.

    Attributes:
        value: the number; for kind "upper" it is rigorous (evaluated with upward rounding).
        kind: "upper" (rigorous upper bound), "lower" (a value attained by the Lipschitz
            quotient, hence a lower bound up to float64 rounding) or "estimate".
        direction: "forward" (Lip F) or "inverse" (Lip F^-1).
        label: the theory label of the result used, e.g. ``"lem:affine-local"``.
        expression: the bound as a sympy expression in its ingredient symbols.
        ingredients: the value of every symbol of ``expression`` (rigorous bounds themselves).
        assumptions: human-readable conditions under which the bound holds.
        block: the block family (``"affine_coupling"``, ``"flow"``, ...).
        box: ((lo...), (hi...)) of the domain box of the map bounded, or None (global).
        layers: per-layer results of a flow, in the order they are applied.
    """

    value: float
    kind: Kind
    direction: Direction
    label: str
    expression: sympy.Expr
    ingredients: Mapping[str, float] = field(default_factory=dict)
    assumptions: tuple[str, ...] = ()
    block: str = ""
    box: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    layers: tuple[LipschitzBound, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise LipflowError(f"kind must be one of {KINDS}, got {self.kind!r}")
        check_direction(self.direction)
        object.__setattr__(self, "ingredients", MappingProxyType(dict(self.ingredients)))
        object.__setattr__(self, "assumptions", tuple(self.assumptions))
        object.__setattr__(self, "layers", tuple(self.layers))

    def __float__(self) -> float:
        return float(self.value)

    @property
    def is_rigorous(self) -> bool:
        """True for rigorous upper bounds."""
        return self.kind == "upper"

    def text(self) -> str:
        """The formula as plain text."""
        return sympy.sstr(self.expression)

    def latex(self) -> str:
        """The formula as LaTeX."""
        return sympy.latex(self.expression)

    def summary(self) -> str:
        """A multi-line human-readable report."""
        name = "Lip(F)" if self.direction == "forward" else "Lip(F^-1)"
        relation = {"upper": "<=", "lower": ">=", "estimate": "~"}[self.kind]
        where = "globally" if self.box is None else f"on the box lo={list(self.box[0])}, hi={list(self.box[1])}"
        lines = [
            f"{self.block or 'map'}: {name} {relation} {self.value:.17g}  ({self.kind} bound, {self.label})",
            f"  domain:  {where}",
            f"  formula: {self.text()}",
            f"  LaTeX:   {self.latex()}",
        ]
        if self.ingredients:
            lines.append("  ingredients: " + ", ".join(f"{k} = {v:.17g}" for k, v in self.ingredients.items()))
        for assumption in self.assumptions:
            lines.append(f"  assumes: {assumption}")
        for index, layer in enumerate(self.layers):
            lines.append(f"  layer {index}: {layer.block} {layer.value:.6g} ({layer.label})")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary."""
        return {
            "value": self.value,
            "kind": self.kind,
            "direction": self.direction,
            "label": self.label,
            "formula": self.text(),
            "latex": self.latex(),
            "ingredients": dict(self.ingredients),
            "assumptions": list(self.assumptions),
            "block": self.block,
            "box": None if self.box is None else [list(self.box[0]), list(self.box[1])],
            "layers": [layer.as_dict() for layer in self.layers],
        }
