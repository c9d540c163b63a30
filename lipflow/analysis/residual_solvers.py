"""Accelerated inverses of residual blocks F(x) = x + g(x), Lip(g) <= L < 1, with a certified stop.

Any iterate x is judged by its residual r(x) = x + g(x) - y: since F^-1 is 1/(1 - L)-Lipschitz,

    ||x - x*|| <= ||r(x)|| / (1 - L)                       (theory ``lem:banach``, a posteriori)

for *every* x, however it was produced, so a solver may extrapolate freely (Anderson
acceleration) and still stop on a bound, never on the size of its last step. The residual
that certifies the stop is evaluated in double-double (``precision("dd")``), so its own
rounding (~1e-30 relative) is far below any float64 tolerance; iterations run in float64.

Methods: ``"fixed_point"`` (Banach iteration x <- y - g(x), the block's own method) and
``"anderson"`` (type-II Anderson acceleration restarted every ``memory`` steps, per sample).
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


class _AndersonHistory:
    """Type-II Anderson acceleration (mixing 1) for a batch of samples, restarted every
    ``memory`` steps, with the least-squares problem kept in QR form.

    Anderson's step is x + f - dG gamma with gamma = argmin ||f - dF gamma|| over the stored
    differences dF_j = f_{j+1} - f_j, dG_j = dX_j + dF_j. With dF = Q R (orthonormal columns
    Q), gamma = R^-1 Q^T f, so the step is x + f - H (Q^T f) with H = dG R^-1. A new difference
    v (and its w = dX + v) is appended by one Gram-Schmidt step: r = Q^T v, q = (v - Q r) /
    rho, h = (w - H r) / rho with rho = ||v - Q r||; a difference nearly dependent on the stored
    ones (rho <= 1e-8 ||v||, which would make R ill-conditioned and H huge) is skipped. Q and H
    live side by side in one (n, m, 2d) buffer, so a step is two batched products ([r, c] =
    Q^T [v, f], then [r, c]^T [Q, H]; the new column's share of H c is one elementwise term) and
    a few elementwise passes whatever ``memory`` is: no k x k solve. The history restarts (is
    emptied) after min(``memory``, d) steps, which keeps Q orthogonal enough without
    reorthogonalisation.
    """

    def __init__(self, n: int, d: int, memory: int) -> None:
        self.memory = min(memory, d)  # at most d independent differences
        self.d = d
        self.qh = onp.zeros((n, self.memory, 2 * d))  # [..., :d] = Q rows, [..., d:] = H rows
        self.x_prev: onp.ndarray | None = None
        self.f_prev: onp.ndarray | None = None
        self.count = 0  # columns since the last restart
        self.rows = onp.arange(n)  # buffer row of each active sample

    def keep(self, mask: onp.ndarray) -> None:
        """Drop the samples that stopped (rows where ``mask`` is False). The buffers are
        compacted only once a quarter of their rows are dead; until then dead rows keep their
        last x and f (zero differences, skipped) and their results are discarded."""
        self.rows = self.rows[mask]
        if 4 * self.rows.size < 3 * self.qh.shape[0]:
            rows = self.rows
            self.qh = self.qh[rows]
            if self.x_prev is not None:
                self.x_prev, self.f_prev = self.x_prev[rows], self.f_prev[rows]
            self.rows = onp.arange(rows.size)

    def step(self, x: onp.ndarray, f: onp.ndarray) -> onp.ndarray:
        """The next iterate from the current x and f = G(x) - x of every active sample."""
        if self.x_prev is not None and self.rows.size < self.x_prev.shape[0]:  # dead rows: stale
            x_all, f_all = self.x_prev.copy(), self.f_prev.copy()
            x_all[self.rows], f_all[self.rows] = x, f
            return self._step(x_all, f_all)[self.rows]
        return self._step(x, f)

    def _step(self, x: onp.ndarray, f: onp.ndarray) -> onp.ndarray:
        if self.x_prev is None:
            self.x_prev, self.f_prev = x, f
            return x + f
        d = self.d
        vw = onp.empty((x.shape[0], 2 * d))  # [v, w]
        v, w = vw[:, :d], vw[:, d:]
        onp.subtract(f, self.f_prev, out=v)
        onp.subtract(x, self.x_prev, out=w)
        w += v
        self.x_prev, self.f_prev = x, f
        if self.count == self.memory:
            self.count = 0
        k = self.count
        size = onp.einsum("ij,ij->i", v, v)
        result = x + f
        if k:
            stored = self.qh[:, :k]
            rc = stored[:, :, :d] @ onp.stack((v, f), axis=2)  # (n, k, 2): r = Q^T v, c = Q^T f
            both = rc.transpose(0, 2, 1) @ stored  # (n, 2, 2d): [r^T Q, r^T H], [c^T Q, c^T H]
            vw -= both[:, 0]  # v - Q r, w - H r
            result -= both[:, 1, d:]  # the stored columns' share of H (Q^T f)
        rho2 = onp.einsum("ij,ij->i", v, v)
        fresh = rho2 > 1e-16 * size  # rho > 1e-8 ||v||: R stays well conditioned
        scale = onp.where(fresh, 1.0 / onp.sqrt(onp.where(fresh, rho2, 1.0)), 0.0)
        new = self.qh[:, k]
        onp.multiply(vw, scale[:, None], out=new)  # [q, h] of the new column
        c_new = onp.einsum("ij,ij->i", new[:, :d], f)
        result -= c_new[:, None] * new[:, d:]
        self.count = k + 1
        return result


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
    history = _AndersonHistory(n, y.shape[1], int(memory)) if method == "anderson" else None

    def g(rows: onp.ndarray, points: onp.ndarray) -> onp.ndarray:
        evaluations[rows] += 1
        return block.g(prepared64, points, ctx)

    pending = onp.zeros(0, dtype=int)  # ready by the float64 estimate, awaiting a certificate

    def certify(rows: onp.ndarray) -> onp.ndarray:
        """Certify ``rows`` in one double-double batch; returns those that did not make it."""
        certified = certified_error_bound(block, prepared, x[rows], y[rows], lip)
        certificates[rows] += 1
        bound[rows] = certified
        x_norm = _row_norm(x[rows])
        with onp.errstate(divide="ignore", invalid="ignore"):
            relative[rows] = onp.where(x_norm > certified, certified / (x_norm - certified), onp.inf)
        return rows[~(relative[rows] <= rtol)]

    for _ in range(max_iter):
        if active.size == 0 and pending.size == 0:
            break
        if active.size:
            xa, ya = x[active], y[active]
            f = ya - g(active, xa) - xa  # f = G(x) - x = -r(x)
            iterations[active] += 1
            estimate = _row_norm(f) / (1 - lip)
            x_norm = _row_norm(xa)
            # a sample whose float64 residual says it is there stops iterating and waits for
            # the double-double certificate, which runs for a quarter of the samples at once
            ready = estimate <= 0.5 * rtol * onp.maximum(x_norm - estimate, 0)
            if onp.any(ready):
                pending = onp.concatenate([pending, active[ready]])
                keep = ~ready
                active, xa, f = active[keep], xa[keep], f[keep]
                if history is not None:
                    history.keep(keep)
            if active.size:
                x[active] = xa + f if history is None else history.step(xa, f)
        if pending.size and 4 * pending.size >= pending.size + active.size:
            failed = certify(pending)
            pending = onp.zeros(0, dtype=int)
            if failed.size:  # rare: the float64 estimate was too optimistic; iterate on
                active = onp.concatenate([active, failed])
                if history is not None:
                    history = _AndersonHistory(active.size, y.shape[1], int(memory))

    remaining = onp.concatenate([active, pending])
    if remaining.size:
        certify(remaining)
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
