"""Per-sample Jacobians of blocks and flows (autograd) and their singular values.

Samples are independent, so the Jacobians of a whole batch come from ``dim`` vector-Jacobian
products of the batched map, not ``n * dim``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import autograd.numpy as anp
import numpy as onp
from autograd import make_vjp

from lipflow.blocks.base import Block, Params, check_input
from lipflow.errors import LipflowError
from lipflow.precision import Precision

__all__ = ["JacobianSpectrum", "jacobian", "jacobian_spectrum", "singular_values"]

DIRECTIONS = ("forward", "inverse")


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise LipflowError(f"direction must be 'forward' or 'inverse', got {direction!r}")


def jacobian(
    block: Block, params: Params, x: Any, *, ctx: Precision | str | None = None, direction: str = "forward"
) -> Any:
    """J[i] = dF(x_i)/dx (or dF^-1(x_i)/dx for ``direction="inverse"``), shape (n, d, d).

    Computed by autograd at the working precision ``ctx`` (default: the precision of ``x``).
    The inverse of a residual block is differentiated implicitly: J = (I + J_g(F^-1(x)))^-1,
    by a linear solve at ``ctx`` (never through the fixed-point iterations).
    """
    _check_direction(direction)
    x, context = check_input(x, block.dim, "jacobian", ctx)
    prepared = context.cast(block._prepare(params))
    apply = block._forward if direction == "forward" else block._inverse
    vjp, _ = make_vjp(lambda v: apply(prepared, v, context))(x)
    n, d = onp.shape(x)
    rows = []
    for j in range(d):
        cotangent = onp.zeros((n, d))
        cotangent[:, j] = 1.0
        rows.append(vjp(context.cast(cotangent)))
    return anp.stack(rows, axis=1) if n else context.zeros((0, d, d))


@dataclass(frozen=True)
class JacobianSpectrum:
    """Singular values of per-sample Jacobians.

    Attributes:
        singular_values: (n, d), descending, as float64 (mpmath values are rounded to float64
            for storage; very small ones stay representable down to ~1e-308).
        computed_in: where the SVD ran, e.g. "float64 (from float16 Jacobians)" or "mp50".
        jacobian_precision: the precision the Jacobians were evaluated at.
    """

    singular_values: onp.ndarray
    computed_in: str
    jacobian_precision: str

    @property
    def sigma_max(self) -> onp.ndarray:
        return self.singular_values[:, 0]

    @property
    def sigma_min(self) -> onp.ndarray:
        return self.singular_values[:, -1]

    @property
    def cond(self) -> onp.ndarray:
        with onp.errstate(divide="ignore", invalid="ignore"):
            return onp.where(self.sigma_min > 0, self.sigma_max / self.sigma_min, onp.inf)


def singular_values(matrices: Any, ctx: Precision) -> tuple[onp.ndarray, str]:
    """Descending singular values of each matrix in a stack, and where they were computed.

    float32/float64 Jacobians use LAPACK in float64 (exact widening); float16, bfloat16 and
    longdouble have no linalg and are rounded to float64 first; mpmath Jacobians use mpmath's
    SVD at their own precision.
    """
    if ctx.is_arbitrary:
        context = ctx.context
        values = [
            sorted((context.svd_r(context.matrix(m.tolist()), compute_uv=False)), reverse=True)
            for m in onp.asarray(matrices)
        ]
        return onp.asarray(values, dtype=onp.float64).reshape(len(values), -1), ctx.name
    wide = onp.asarray(matrices).astype(onp.float64)
    finite = onp.all(onp.isfinite(wide), axis=(1, 2))
    result = onp.full(wide.shape[:2], onp.nan)
    if onp.any(finite):
        result[finite] = onp.linalg.svd(wide[finite], compute_uv=False)
    where = "float64" if ctx.name in ("float32", "float64") else f"float64 (rounded from {ctx.name})"
    return result, where


def jacobian_spectrum(
    block: Block, params: Params, x: Any, *, ctx: Precision | str | None = None, direction: str = "forward"
) -> JacobianSpectrum:
    """Singular values of the Jacobians of ``block`` at each row of ``x`` (NaN rows for
    non-finite Jacobians; they are counted, never dropped)."""
    x, context = check_input(x, block.dim, "jacobian_spectrum", ctx)
    matrices = jacobian(block, params, x, ctx=context, direction=direction)
    values, where = singular_values(matrices, context)
    return JacobianSpectrum(values, where, context.name)


@dataclass(frozen=True)
class BiSpectrum:
    """Spectra of the forward Jacobian at x and of the inverse Jacobian at z = F(x), per sample.

    Exactly, J_{F^-1}(z) = J_F(x)^-1, so ``inverse.sigma_max`` ~ 1 / ``forward.sigma_min``;
    computed ones differ by the error of the inverse pass (and the forward pass that made z).
    """

    forward: JacobianSpectrum
    inverse: JacobianSpectrum

    def table(self) -> str:
        """sigma_min, sigma_max and cond of both directions, one row per sample."""
        lines = [f"{'sample':>6} {'fwd smin':>10} {'fwd smax':>10} {'fwd cond':>10} "
                 f"{'inv smin':>10} {'inv smax':>10} {'inv cond':>10}"]
        f, i = self.forward, self.inverse
        for k in range(len(f.sigma_max)):
            lines.append(f"{k:>6} {f.sigma_min[k]:>10.3g} {f.sigma_max[k]:>10.3g} {f.cond[k]:>10.3g} "
                         f"{i.sigma_min[k]:>10.3g} {i.sigma_max[k]:>10.3g} {i.cond[k]:>10.3g}")
        return "\n".join(lines)


def forward_and_inverse_spectra(
    block: Block, params: Params, x: Any, *, ctx: Precision | str | None = None
) -> BiSpectrum:
    """Singular values of J_F at each row of ``x`` and of J_{F^-1} at z = F(x), both at ``ctx``.

    Example:
        >>> import numpy as np, lipflow
        >>> toy = lipflow.AffineCoupling(2, t=lipflow.Constant(0.123456789),
        ...                              s=lipflow.Constant(0.1), scale="identity")
        >>> spectra = forward_and_inverse_spectra(toy, toy.init(0), np.array([[1.0, 1.0]]))
        >>> float(spectra.inverse.sigma_max[0])
        10.0
    """
    x, context = check_input(x, block.dim, "forward_and_inverse_spectra", ctx)
    z = block.forward(params, x, ctx=context)
    return BiSpectrum(
        forward=jacobian_spectrum(block, params, x, ctx=context, direction="forward"),
        inverse=jacobian_spectrum(block, params, z, ctx=context, direction="inverse"),
    )
