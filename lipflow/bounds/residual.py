"""Bounds for invertible residual blocks: Lipschitz constants, Banach errors, log-det series.

Theory: ``lem:residual``, ``lem:banach``, ``lem:logdet-series``.
"""

from __future__ import annotations

from typing import Any

import sympy
from mpmath.libmp import libmpi

from lipflow.blocks.residual import Residual
from lipflow.bounds.mlp import network_lipschitz
from lipflow.bounds.result import LipschitzBound, check_direction
from lipflow.bounds.rigorous import Interval, evaluate_upper
from lipflow.errors import LipflowError

__all__ = [
    "banach_a_posteriori",
    "banach_a_priori",
    "branch_lipschitz",
    "logdet_truncation_bound",
    "residual_lipschitz",
]

c_, n_, d_, step_ = sympy.symbols("c n d Delta", nonnegative=True)


def branch_lipschitz(block: Residual, params: Any) -> LipschitzBound:
    """Rigorous Lip(g) of the residual branch with the weights as used (after normalisation)."""
    prepared = block._prepare(params)
    return network_lipschitz(prepared["weights"], block.activation, block="residual_branch")


def residual_lipschitz(block: Residual, params: Any, *, direction: str = "forward") -> LipschitzBound:
    """1 + c forward, 1/(1 - c) inverse with c >= Lip(g) certified (lem:residual)."""
    check_direction(direction)
    branch = branch_lipschitz(block, params)
    c_val = branch.value
    assumptions = [f"c >= Lip(g) = product of certified spectral norms ({branch.label})", "global on R^d"]
    if direction == "forward":
        expression = 1 + c_
    else:
        if c_val >= 1:
            raise LipflowError(
                f"the residual branch has certified Lip(g) <= {c_val:.6g}, not < 1, so neither invertibility "
                "nor an inverse bound 1/(1 - c) follows (lem:residual); lower the block's coeff"
            )
        expression = 1 / (1 - c_)
    value = evaluate_upper(expression, {c_: c_val})
    if direction == "forward" and c_val >= 1:
        assumptions.append("c >= 1: the block is not guaranteed to be invertible")
    return LipschitzBound(value=value, kind="upper", direction=direction, label="lem:residual",
                          expression=expression, ingredients={"c": c_val}, block=block.family,
                          assumptions=tuple(assumptions))


def _check_c(c: float) -> None:
    if not 0 <= c < 1:
        raise LipflowError(f"Banach bounds need a contraction constant 0 <= c < 1, got {c!r}")


def banach_a_priori(c: float, n: int, first_step: float) -> float:
    """c^n / (1 - c) * ||x_1 - x_0||, rounded up (lem:banach)."""
    _check_c(c)
    if n < 0 or first_step < 0:
        raise LipflowError("need n >= 0 and a non-negative first step")
    return evaluate_upper(c_**n_ / (1 - c_) * step_, {c_: c, n_: float(n), step_: first_step}) if c > 0 \
        else (0.0 if n > 0 else evaluate_upper(step_, {step_: first_step}))


def banach_a_posteriori(c: float, last_step: float) -> float:
    """c / (1 - c) * ||x_n - x_{n-1}||, rounded up (lem:banach)."""
    _check_c(c)
    if last_step < 0:
        raise LipflowError("last step must be non-negative")
    return evaluate_upper(c_ / (1 - c_) * step_, {c_: c, step_: last_step})


def logdet_truncation_bound(c: float, n: int, d: int) -> float:
    """d * sum_{k>n} c^k / k, rounded up: the error of the n-term log-det series (lem:logdet-series).

    Evaluated in 120-bit interval arithmetic as -d (ln(1 - c) + sum_{k<=n} c^k/k), and capped by
    the geometric bound d c^(n+1) / ((n + 1)(1 - c)).
    """
    _check_c(c)
    if n < 0 or d < 1:
        raise LipflowError("need n >= 0 terms and dimension d >= 1")
    if c == 0:
        return 0.0
    prec = 120
    ci = Interval.point(c).mpi
    one = Interval.point(1.0).mpi
    total = libmpi.mpi_neg(libmpi.mpi_log(libmpi.mpi_sub(one, ci, prec), prec), prec)
    power = one
    for k in range(1, n + 1):
        power = libmpi.mpi_mul(power, ci, prec)
        total = libmpi.mpi_sub(total, libmpi.mpi_div(power, Interval.point(float(k)).mpi, prec), prec)
    exact_tail = (Interval(total) * d).hi
    geometric = evaluate_upper(d_ * c_ ** (n_ + 1) / ((n_ + 1) * (1 - c_)), {d_: float(d), c_: c, n_: float(n)})
    return max(0.0, min(exact_tail, geometric))
