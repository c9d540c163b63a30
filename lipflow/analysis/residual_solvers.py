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


if hasattr(onp, "vecdot"):  # numpy >= 2: a single pass, no subscript parsing

    def _row_dot(a: onp.ndarray, b: onp.ndarray) -> onp.ndarray:
        return onp.vecdot(a, b)

else:  # pragma: no cover - numpy 1.26

    def _row_dot(a: onp.ndarray, b: onp.ndarray) -> onp.ndarray:
        return onp.einsum("ij,ij->i", a, b)


def _row_norm(v: onp.ndarray) -> onp.ndarray:
    return onp.sqrt(_row_dot(v, v))


_RHO2_MIN = 1 / onp.finfo(onp.float64).max


class _AndersonHistory:
    """Type-II Anderson acceleration (mixing 1) for a batch of samples, restarted every
    ``memory`` steps, with the least-squares problem kept in (unnormalised) QR form.

    Anderson's step is x + f - dG gamma with gamma = argmin ||f - dF gamma|| over the stored
    differences dF_j = f_{j+1} - f_j, dG_j = dX_j + dF_j (the differences of G(x) = x + f). With
    dF = Q R (orthonormal columns Q), gamma = R^-1 Q^T f, so the step is G - H (Q^T f) with
    H = dG R^-1. The columns are kept unnormalised, u_j = rho_j q_j and h_j = rho_j H_j, with
    weights s_j = 1 / rho_j^2, so Q Q^T = U diag(s) U^T and H Q^T = H' diag(s) U^T. A new
    difference v (with w = dG) is appended by one Gram-Schmidt step: with a = -s * U^T v and
    b = -s * U^T f, u = v + U a, rho^2 = ||u||^2, beta = u.f / rho^2, h = w + H' a, and the step
    is G + H' b - beta h = G + [H', w] ([b, 0] - beta [a, 1]). A difference nearly dependent on
    the stored ones (rho <= 1e-8 ||v||, which would make R ill-conditioned and H huge), or one
    too small for 1 / rho^2 to be finite (rho below ~1e-154), gets weight 0, which removes it.
    U and H' are column-major buffers (slot j holds column j of every sample) and v, w are
    written into the new column's slots, so a step is three batched products ([U^T v, v.v;
    U^T f, v.f] from [v; f] and U; u from U; [h, H' b - beta h] from H') and a few elementwise
    passes over contiguous rows: no row scaling and no k x k solve. The history restarts (is
    emptied) after min(``memory``, d) steps, which keeps U orthogonal enough without
    reorthogonalisation.
    """

    def __init__(self, n: int, d: int, memory: int) -> None:
        self.memory = min(memory, d)  # at most d independent differences
        # u_j in slot j of ``u`` (the last slot holds the current f), h_j in slot j of ``h``;
        # left uninitialised: a slot is written before it is read
        self.u = onp.empty((self.memory + 1, n, d))
        self.h = onp.empty((self.memory, n, d))
        self.weight = onp.zeros((n, self.memory))  # -s_j = -1 / rho_j^2, 0 for a skipped column
        self.f_prev: onp.ndarray | None = None
        self.g_prev: onp.ndarray | None = None  # G(x) = x + f of the previous iterate
        self.count = 0  # columns since the last restart
        self.rows = onp.arange(n)  # buffer row of each active sample

    def keep(self, mask: onp.ndarray) -> None:
        """Drop the samples that stopped (rows where ``mask`` is False). The buffers are
        compacted only once a quarter of their rows are dead; until then dead rows keep their
        last f and G (zero differences, skipped) and their results are discarded. Compaction
        moves the used columns within the buffers, one column at a time, rather than copying
        whole buffers."""
        self.rows = self.rows[mask]
        if 4 * self.rows.size < 3 * self.u.shape[1]:
            rows, size = self.rows, self.rows.size
            for j in range(self.count):  # later slots are written before they are read
                self.u[j, :size] = self.u[j, rows]
                self.h[j, :size] = self.h[j, rows]
            self.u, self.h, self.weight = self.u[:, :size], self.h[:, :size], self.weight[rows]
            if self.f_prev is not None:
                self.f_prev, self.g_prev = self.f_prev[rows], self.g_prev[rows]
            self.rows = onp.arange(size)

    def step(self, x: onp.ndarray, f: onp.ndarray, g_x: onp.ndarray | None = None) -> onp.ndarray:
        """The next iterate from the current x, f = G(x) - x and (when at hand) G(x) of every
        active sample. Neither ``f`` nor ``g_x`` may be modified afterwards (they are kept)."""
        if g_x is None:
            g_x = x + f
        if self.f_prev is not None and self.rows.size < self.f_prev.shape[0]:  # dead rows: stale
            f_all, g_all = self.f_prev.copy(), self.g_prev.copy()
            f_all[self.rows], g_all[self.rows] = f, g_x
            return self._step(f_all, g_all)[self.rows]
        return self._step(f, g_x)

    def _step(self, f: onp.ndarray, g_x: onp.ndarray) -> onp.ndarray:
        if self.f_prev is None:
            self.f_prev, self.g_prev = f, g_x
            return g_x.copy()
        memory = self.memory
        if self.count == memory:
            self.count = 0
        k = self.count
        u, h = self.u[: k + 1].transpose(1, 0, 2), self.h[: k + 1].transpose(1, 0, 2)  # (n, k+1, d)
        onp.subtract(f, self.f_prev, out=self.u[k])  # v
        self.u[memory] = f
        onp.subtract(g_x, self.g_prev, out=self.h[k])  # w = dX + dF
        self.f_prev, self.g_prev = f, g_x
        # [U^T v, v.v; U^T f, v.f]: rows k and ``memory`` of the u buffer are v and f
        coef = self.u[k : memory + 1 : memory - k].transpose(1, 0, 2) @ u.transpose(0, 2, 1)
        size = coef[:, 0, k].copy()  # ||v||^2
        coef *= self.weight[:, None, : k + 1]  # [a; b] = -s * [U^T v; U^T f]
        coef[:, 0, k] = 1.0
        coef[:, 1, k] = 0.0
        new = self.u[k]
        if k:
            new += (coef[:, :1, :k] @ u[:, :k])[:, 0]  # u = v + U a
        rho2 = _row_dot(new, new)
        # rho > 1e-8 ||v|| keeps R well conditioned; rho^2 >= 1 / DBL_MAX keeps 1 / rho^2 finite
        fresh = rho2 > onp.maximum(1e-16 * size, _RHO2_MIN)
        weight = onp.divide(-1.0, rho2, out=onp.zeros_like(rho2), where=fresh)  # -1 / rho^2
        self.weight[:, k] = weight
        weight *= _row_dot(new, f)  # -beta
        coef[:, 1] += weight[:, None] * coef[:, 0]  # [b, 0] - beta [a, 1]
        both = coef @ h  # (n, 2, d): h_new and H' b - beta h_new
        self.h[k] = both[:, 0]
        self.count = k + 1
        return g_x + both[:, 1]


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
    certificates = onp.zeros(n, dtype=int)
    bound = onp.full(n, onp.inf)
    relative = onp.full(n, onp.inf)
    # the active samples' rows, iterates and targets, kept together and re-indexed only when
    # the active set changes; x holds the final iterate of every sample that left it
    active, xa, ya = onp.arange(n), y.copy(), y
    sweeps = 0  # evaluations of g over the active set so far
    joined = onp.zeros(n, dtype=int)  # sweeps when each sample (re)joined the active set
    history = _AndersonHistory(n, y.shape[1], int(memory)) if method == "anderson" else None
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
            g_x = ya - block.g(prepared64, xa, ctx)  # G(x) = y - g(x), the fixed-point map
            f = g_x - xa  # f = G(x) - x = -r(x)
            sweeps += 1
            estimate = _row_norm(f) / (1 - lip)
            x_norm = _row_norm(xa)
            # a sample whose float64 residual says it is there stops iterating and waits for
            # the double-double certificate, which runs for a quarter of the samples at once
            ready = estimate <= 0.5 * rtol * onp.maximum(x_norm - estimate, 0)
            if onp.any(ready):
                done = active[ready]
                x[done] = xa[ready]
                iterations[done] += sweeps - joined[done]
                pending = onp.concatenate([pending, done])
                keep = ~ready
                active, xa, ya, f, g_x = active[keep], xa[keep], ya[keep], f[keep], g_x[keep]
                if history is not None:
                    history.keep(keep)
            if active.size:
                xa = g_x if history is None else history.step(xa, f, g_x)
        if pending.size and 4 * pending.size >= pending.size + active.size:
            failed = certify(pending)
            pending = onp.zeros(0, dtype=int)
            if failed.size:  # rare: the float64 estimate was too optimistic; iterate on
                joined[failed] = sweeps
                active = onp.concatenate([active, failed])
                xa, ya = onp.concatenate([xa, x[failed]]), onp.concatenate([ya, y[failed]])
                if history is not None:
                    history = _AndersonHistory(active.size, y.shape[1], int(memory))

    x[active] = xa
    iterations[active] += sweeps - joined[active]
    remaining = onp.concatenate([active, pending])
    if remaining.size:
        certify(remaining)
    info = ResidualSolveInfo(
        method=method,
        converged=relative <= rtol,
        error_bound=bound,
        relative_bound=relative,
        iterations=iterations,
        g_evaluations=iterations.copy(),  # one float64 evaluation of g per iteration
        certificates=certificates,
        lipschitz_g=lip,
    )
    return x, info
