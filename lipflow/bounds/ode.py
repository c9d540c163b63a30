"""Neural ODE flow maps: the Gronwall bound (theory ``lem:neural-ode``)."""

from __future__ import annotations

import sympy

from lipflow.bounds.result import LipschitzBound, check_direction
from lipflow.bounds.rigorous import evaluate_upper
from lipflow.errors import LipflowError

__all__ = ["neural_ode_lipschitz"]

L_f, T_ = sympy.symbols("L T", nonnegative=True)


def neural_ode_lipschitz(lip_f: float, horizon: float, *, direction: str = "forward") -> LipschitzBound:
    """e^{L T} for the time-T flow map of an L-Lipschitz vector field, either direction."""
    check_direction(direction)
    if not (lip_f >= 0 and horizon >= 0):
        raise LipflowError(f"need L >= 0 and T >= 0, got L={lip_f!r}, T={horizon!r}")
    expression = sympy.exp(L_f * T_)
    value = evaluate_upper(expression, {L_f: lip_f, T_: horizon})
    return LipschitzBound(value=value, kind="upper", direction=direction, label="lem:neural-ode",
                          expression=expression, ingredients={"L": lip_f, "T": horizon}, block="neural_ode",
                          assumptions=("f(x, t) continuous and L-Lipschitz in x uniformly in t on [0, T]",))
