"""Accelerated inverses of residual blocks F(x) = x + g(x), Lip(g) <= L < 1, with a certified stop.

Any iterate x is judged by its residual r(x) = x + g(x) - y: since F^-1 is 1/(1 - L)-Lipschitz,

    ||x - x*|| <= ||r(x)|| / (1 - L)                       (theory ``lem:banach``, a posteriori)

for *every* x, however it was produced, so a solver may extrapolate freely (Anderson
acceleration) and still stop on a bound, never on the size of its last step. The residual
that certifies the stop is evaluated in double-double (``precision("dd")``), so its own
rounding (~1e-30 relative) is far below any float64 tolerance; iterations run in float64.

Methods: ``"fixed_point"`` (Banach iteration x <- y - g(x), the block's own method) and
``"anderson"`` (type-II Anderson acceleration with ``memory`` past residuals, per sample).
Lip(g) is the product of the used weights' spectral norms (exact SVD), inflated by 64 ulps.

References: D. G. Anderson, "Iterative procedures for nonlinear integral equations" (1965);
H. F. Walker, P. Ni, "Anderson acceleration for fixed-point iterations", SIAM J. Numer. Anal.
49 (2011).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as onp

from lipflow.blocks.base import Params, check_input
from lipflow.blocks.residual import Residual
from lipflow.errors import LipflowError
from lipflow.precision import precision

__all__ = [
    "METHODS",
    "ResidualSolveInfo",
    "banach_a_priori_iterations",
    "certified_error_bound",
    "solve_residual_inverse",
]

METHODS = ("fixed_point", "anderson")


@dataclass(frozen=True)
class ResidualSolveInfo:
    """How an inverse solve ended, per sample.

    Attributes:
        method: the solver used.
        converged: the certified relative bound is <= ``rtol``.
        error_bound: certified ||x - x*|| from the double-double residual, ||r(x)|| / (1 - L).
        relative_bound: error_bound / (||x|| - error_bound), a certified bound on
            ||x - x*|| / ||x*|| (inf where error_bound >= ||x||).
        iterations: iterations per sample.
        g_evaluations: float64 evaluations of g per sample (the double-double certificates
            are counted separately in ``certificates``).
        certificates: double-double residual evaluations per sample.
        lipschitz_g: the L used.
    """

    method: str
    converged: onp.ndarray
    error_bound: onp.ndarray
    relative_bound: onp.ndarray
    iterations: onp.ndarray
    g_evaluations: onp.ndarray
    certificates: onp.ndarray
    lipschitz_g: float

    @property
    def all_converged(self) -> bool:
        return bool(onp.all(self.converged))


def banach_a_priori_iterations(lipschitz: float, first_step: float, tolerance: float) -> int:
    """Fixed-point iterations the a-priori Banach bound L^n/(1 - L) ||x_1 - x_0|| <= tol needs."""
    if first_step <= 0 or tolerance <= 0:
        return 0
    needed = math.log(tolerance * (1 - lipschitz) / first_step) / math.log(lipschitz)
    return max(0, math.ceil(needed))


def _lipschitz(block: Residual, prepared: Params) -> float:
    lip = block.lipschitz_g(prepared) * (1 + 64 * 2.0**-52)
    if not lip < 1:
        raise LipflowError(
            f"Residual inverse: Lip(g) <= {lip:.6g} is not below 1, so no certified bound exists; "
            "build the block with coeff < 1 and spectral='exact'"
        )
    return lip


def certified_error_bound(block: Residual, prepared: Params, x: onp.ndarray, y: onp.ndarray, lip: float) -> onp.ndarray:
    """||x - F^-1(y)|| <= ||x + g(x) - y|| / (1 - L) per row, the residual in double-double.

    The double-double norm is rounded up by a relative 2^-40 to cover its own rounding.
    """
    dd = precision("dd")
    xd = dd.cast(x)
    residual = xd + block.g(dd.cast(prepared), xd, dd) - dd.cast(y)
    norm = onp.sqrt(onp.sum(dd.to_float64(residual * residual), axis=1))
    return norm * (1 + 2.0**-40) / (1 - lip)


def _row_norm(v: onp.ndarray) -> onp.ndarray:
    return onp.sqrt(onp.einsum("ij,ij->i", v, v))


def _anderson_step(x_hist: list, f_hist: list) -> onp.ndarray:
    """x_new = G(x_k) - sum_j gamma_j (dG_j), gamma minimising ||f_k - dF gamma|| per sample,
    where f = G(x) - x and G(x) = x + f (type-II Anderson, mixing parameter 1)."""
    f_k, x_k = f_hist[-1], x_hist[-1]
    if len(f_hist) == 1:
        return x_k + f_k
    f_stack = onp.stack(f_hist, axis=2)  # (n, d, m + 1)
    x_stack = onp.stack(x_hist, axis=2)
    d_f = f_stack[..., 1:] - f_stack[..., :-1]  # (n, d, m)
    d_x = x_stack[..., 1:] - x_stack[..., :-1]
    d_f_t = onp.swapaxes(d_f, 1, 2)
    gram = d_f_t @ d_f
    rhs = (d_f_t @ f_k[..., None])[..., 0]
    scale = onp.trace(gram, axis1=1, axis2=2)[:, None, None]
    regulariser = 1e-13 * scale * onp.eye(gram.shape[1])[None]
    regulariser = regulariser + (scale == 0) * onp.eye(gram.shape[1])[None]
    with onp.errstate(invalid="ignore", divide="ignore"):
        gamma = onp.linalg.solve(gram + regulariser, rhs[..., None])[..., 0]
    gamma = onp.where(onp.isfinite(gamma), gamma, 0.0)
    return x_k + f_k - ((d_x + d_f) @ gamma[..., None])[..., 0]


def solve_residual_inverse(
    block: Residual,
    params: Params,
    y: Any,
    *,
    method: str = "anderson",
    rtol: float = 1e-12,
    memory: int = 10,
    max_iter: int = 2000,
) -> tuple[onp.ndarray, ResidualSolveInfo]:
    """F^-1(y) for a :class:`~lipflow.blocks.Residual` block, stopping on a certified bound.

    Iterates in float64; each sample stops once the double-double residual certifies
    ||x - x*|| / ||x*|| <= ``rtol``. Returns (x, info); samples that hit ``max_iter`` are
    reported in ``info.converged``, never hidden.
    """
    if not isinstance(block, Residual):
        raise LipflowError(f"solve_residual_inverse needs a Residual block, got {type(block).__name__}")
    if method not in METHODS:
        raise LipflowError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not (isinstance(rtol, float | int) and 0 < rtol < 1):
        raise LipflowError(f"rtol must be in (0, 1), got {rtol!r}")
    if int(memory) < 1 or int(max_iter) < 1:
        raise LipflowError("memory and max_iter must be positive integers")
    y, _ = check_input(y, block.dim, "solve_residual_inverse", "float64")
    y = onp.asarray(y, dtype=onp.float64)
    prepared = block._prepare(params)
    prepared64 = precision("float64").cast(prepared)
    lip = _lipschitz(block, prepared)
    ctx = precision("float64")

    n = y.shape[0]
    x = y.copy()
    iterations = onp.zeros(n, dtype=int)
    evaluations = onp.zeros(n, dtype=int)
    certificates = onp.zeros(n, dtype=int)
    bound = onp.full(n, onp.inf)
    relative = onp.full(n, onp.inf)
    active = onp.arange(n)
    histories: dict[str, list] = {"x": [], "f": []}

    def g(rows: onp.ndarray, points: onp.ndarray) -> onp.ndarray:
        evaluations[rows] += 1
        return block.g(prepared64, points, ctx)

    for _ in range(max_iter):
        if active.size == 0:
            break
        xa, ya = x[active], y[active]
        f = ya - g(active, xa) - xa  # f = G(x) - x = -r(x)
        iterations[active] += 1
        estimate = _row_norm(f) / (1 - lip)
        x_norm = _row_norm(xa)
        # certify in double-double only when the float64 residual says we are there
        ready = estimate <= 0.5 * rtol * onp.maximum(x_norm - estimate, 0)
        if onp.any(ready):
            rows = active[ready]
            certificates[rows] += 1
            certified = certified_error_bound(block, prepared, x[rows], y[rows], lip)
            bound[rows] = certified
            with onp.errstate(divide="ignore"):
                relative[rows] = onp.where(x_norm[ready] > certified, certified / (x_norm[ready] - certified), onp.inf)
            done = relative[rows] <= rtol
            if onp.any(done):
                keep = onp.ones(active.size, dtype=bool)
                keep[onp.flatnonzero(ready)[done]] = False
                active, xa, f = active[keep], xa[keep], f[keep]
                histories = {key: [h[keep] for h in value] for key, value in histories.items()}
                if active.size == 0:
                    break
        if method == "fixed_point":
            x[active] = xa + f
            continue
        histories["x"].append(xa)
        histories["f"].append(f)
        if len(histories["f"]) > memory + 1:
            histories = {key: value[1:] for key, value in histories.items()}
        x[active] = _anderson_step(histories["x"], histories["f"])

    remaining = active
    if remaining.size:
        certified = certified_error_bound(block, prepared, x[remaining], y[remaining], lip)
        certificates[remaining] += 1
        bound[remaining] = certified
        x_norm = _row_norm(x[remaining])
        with onp.errstate(divide="ignore", invalid="ignore"):
            relative[remaining] = onp.where(x_norm > certified, certified / (x_norm - certified), onp.inf)
    info = ResidualSolveInfo(
        method=method,
        converged=relative <= rtol,
        error_bound=bound,
        relative_bound=relative,
        iterations=iterations,
        g_evaluations=evaluations,
        certificates=certificates,
        lipschitz_g=lip,
    )
    return x, info
