"""Invertible residual block F(x) = x + g(x) with Lip(g) <= c < 1 (i-ResNet, Behrmann 2019).

g is a dense network whose weights are spectrally normalised to coefficient c with the exact
largest singular value (an SVD), so Lip(g) <= prod_i c = c^L <= c for 1-Lipschitz activations
(theory ``lem:residual``). The inverse is the Banach fixed-point iteration
x_{k+1} = y - g(x_k), x_0 = y, which records how it converged (theory ``lem:banach``).

The inverse is differentiated implicitly, never through the iterations: x = F^-1(y) solves
x + g(x) = y, so dx = (I + J_g(x))^-1 (dy - dg_theta) (implicit function theorem; I + J_g is
invertible since ||J_g|| <= c < 1). :func:`implicit_inverse` attaches these derivatives (reverse
and forward mode) to a converged solution; the linear systems are solved at the working precision.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as onp
from autograd import make_jvp, make_vjp
from autograd.extend import defjvp_argnum, defvjp_argnums, primitive
from autograd.tracer import getval

from lipflow.blocks.base import Block, Params, as_rng, check_input
from lipflow.blocks.conditioners import ACTIVATIONS, activation
from lipflow.blocks.linalg import _as_float64, batched_logabsdet, batched_matmul, batched_solve, spectral_norm
from lipflow.errors import LipflowError, NonConvergenceError, NonConvergenceWarning
from lipflow.precision import Precision

__all__ = [
    "RESIDUAL_ACTIVATIONS",
    "FixedPointInfo",
    "Residual",
    "implicit_inverse",
    "power_iteration_norm",
    "series_truncation_bound",
]

RESIDUAL_ACTIVATIONS = ("lipswish", "elu", "tanh")


def power_iteration_norm(matrix: onp.ndarray, iterations: int, seed: int = 0) -> float:
    """An *estimate* of ||W||_2 by power iteration on W^T W; it never exceeds the true value."""
    rng = onp.random.default_rng(seed)
    w = onp.asarray(matrix, dtype=onp.float64)
    v = rng.standard_normal(w.shape[1])
    v /= onp.linalg.norm(v)
    estimate = 0.0
    for _ in range(iterations):
        u = w @ v
        estimate = float(onp.linalg.norm(u))
        if estimate == 0.0:
            return 0.0
        v = w.T @ (u / estimate)
        v /= onp.linalg.norm(v)
    return float(onp.linalg.norm(w @ v))


def series_truncation_bound(coeff: float, dim: int, terms: int) -> float:
    """Bound on |log det(I + J_g) - sum_{k<=n} (-1)^(k+1) tr(J_g^k)/k| for ||J_g|| <= c.

    Equals d * (-ln(1 - c) - sum_{k<=n} c^k / k) (theory ``lem:logdet-series``).
    """
    partial = sum(coeff**k / k for k in range(1, terms + 1))
    return dim * max(0.0, -math.log1p(-coeff) - partial)


@dataclass(frozen=True)
class FixedPointInfo:
    """How a fixed-point inverse converged, per sample.

    Attributes:
        iterations: iterations performed (shared by the batch).
        converged: per-sample flag: the stopping rule was met.
        last_step: ||x_k - x_{k-1}||_2 per sample at the working precision.
        aposteriori_bound: Lip(g)/(1 - Lip(g)) * last_step, the Banach a-posteriori bound on
            ||x_k - x*|| for the exact iteration (rounding adds a floor of order u ||x||).
        lipschitz_g: the Lip(g) the bound used (the product of the used weights' norms).
    """

    iterations: int
    converged: onp.ndarray
    last_step: onp.ndarray
    aposteriori_bound: onp.ndarray
    lipschitz_g: float

    @property
    def all_converged(self) -> bool:
        return bool(onp.all(self.converged))


def _row_norms(v: Any, ctx: Precision) -> onp.ndarray:
    """l2 norm of each row, exact enough for a stopping rule (mpmath stays mpmath)."""
    if ctx.is_arbitrary:
        return ctx.sqrt(ctx.sum(v * v, axis=1))
    wide = v.astype(onp.longdouble if ctx.mantissa_bits > 53 else onp.float64)
    return onp.sqrt(onp.sum(wide * wide, axis=1))


# ---- implicit differentiation of the inverse ---------------------------------------------------
def _rebuild(leaves: Any, n_weights: int) -> Params:
    return {"weights": list(leaves[:n_weights]), "biases": list(leaves[n_weights:])}


def _system(block: Residual, leaves: tuple, x: Any, ctx: Precision, transpose: bool) -> Any:
    """I + J_g(x)^T per sample (``transpose=False``), or I + J_g(x) (``transpose=True``)."""
    params = _rebuild([getval(leaf) for leaf in leaves], len(leaves) // 2)
    jac_t = block.g_jacobian_transposed(params, x, ctx)
    eye = ctx.cast(onp.eye(block.dim))[None, :, :]
    return eye + (onp.swapaxes(jac_t, 1, 2) if transpose else jac_t)


@primitive
def implicit_inverse(x_star: Any, block: Residual, ctx: Precision, y: Any, *leaves: Any) -> Any:
    """``x_star`` (a converged F^-1(y)), carrying the implicit-function derivatives of F^-1.

    ``leaves`` are the used weights then biases of g. With samples as rows, x + g(x) = y gives
    dx (I + J_g^T) = dy - dg_theta. Reverse mode: for a cotangent v, the adjoint w solves
    (I + J_g^T) w = v per sample; then dL/dy = w and dL/dtheta = -(dg/dtheta)^T w. Forward mode
    solves (I + J_g) dx = dy - dg_theta. Both at the working precision (``batched_solve``).
    """
    return x_star


def _implicit_vjp(argnums: tuple, ans: Any, args: tuple, kwargs: dict) -> Any:
    x_star, block, ctx, _y, *leaves = args
    system = _system(block, tuple(leaves), x_star, ctx, transpose=False)  # (I + J_g^T)[a, b]

    def vjp(v: Any) -> Any:
        # x = y - g(x): dx (I + J_g^T) = dy - dg (rows), so the adjoint w solves (I + J_g^T) w = v
        w = batched_solve(system, v, ctx)
        grads: dict[int, Any] = {3: w}
        if any(a >= 4 for a in argnums):
            n_weights = len(leaves) // 2
            g_vjp, _ = make_vjp(lambda ls: block.g(_rebuild(ls, n_weights), x_star, ctx))(
                [getval(leaf) for leaf in leaves])
            for index, grad in enumerate(g_vjp(-w)):
                grads[4 + index] = grad
        return tuple(grads[a] for a in argnums)

    return vjp


def _implicit_jvp(argnum: int, tangent: Any, ans: Any, args: tuple, kwargs: dict) -> Any:
    x_star, block, ctx, _y, *leaves = args
    system = _system(block, tuple(leaves), x_star, ctx, transpose=True)
    if argnum == 3:
        return batched_solve(system, tangent, ctx)
    index = argnum - 4
    n_weights = len(leaves) // 2
    values = [getval(leaf) for leaf in leaves]

    def g_of_leaf(leaf: Any) -> Any:
        return block.g(_rebuild([*values[:index], leaf, *values[index + 1:]], n_weights), x_star, ctx)

    _, dg = make_jvp(g_of_leaf)(values[index])(tangent)
    return batched_solve(system, -dg, ctx)


defvjp_argnums(implicit_inverse, _implicit_vjp)
defjvp_argnum(implicit_inverse, _implicit_jvp)


@dataclass(frozen=True, kw_only=True)
class Residual(Block):
    """F(x) = x + g(x), g a spectrally normalised MLP with Lip(g) <= coeff < 1.

    Attributes:
        hidden: hidden widths of g.
        activation: a 1-Lipschitz activation: "lipswish", "elu" or "tanh".
        coeff: spectral coefficient c in (0, 1); each weight W is used as W * min(1, c/||W||_2).
        spectral: "exact" (SVD, the default) or "power" (power iteration with
            ``power_iterations`` steps, for large layers; then Lip(g) is an *estimate*).
        tol: stop the fixed-point iteration when the a-posteriori bound is below ``tol``;
            ``None`` stops at the rounding floor (step <= 4 sqrt(d) u (1 + ||x||)).
        max_iter: iteration cap; hitting it is reported per ``on_nonconvergence``.
        on_nonconvergence: "warn" (default), "raise" or "ignore".
        logdet_method: "exact" (log|det(I + J_g)| by pivoted elimination) or "series"
            (power series with ``series_terms`` terms; bound by :func:`series_truncation_bound`).
    """

    hidden: tuple[int, ...] = (32,)
    activation: str = "lipswish"
    coeff: float = 0.9
    spectral: str = "exact"
    power_iterations: int = 20
    tol: float | None = None
    max_iter: int = 200
    on_nonconvergence: str = "warn"
    logdet_method: str = "exact"
    series_terms: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not (isinstance(self.coeff, (int, float)) and 0 < self.coeff < 1):
            raise LipflowError(
                f"Residual coeff must satisfy 0 < c < 1 for the block to be invertible (Banach), "
                f"got {self.coeff!r}; i-ResNets use c in [0.5, 0.97]"
            )
        if self.activation not in RESIDUAL_ACTIVATIONS:
            activation(self.activation)  # unknown names: list all
            raise LipflowError(
                f"Residual needs a 1-Lipschitz smooth activation, one of {', '.join(RESIDUAL_ACTIVATIONS)}; "
                f"got {self.activation!r}"
            )
        choices = {
            "spectral": ("exact", "power"),
            "on_nonconvergence": ("warn", "raise", "ignore"),
            "logdet_method": ("exact", "series"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise LipflowError(f"Residual {name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.max_iter < 1 or self.series_terms < 1 or self.power_iterations < 1:
            raise LipflowError("Residual max_iter, series_terms and power_iterations must be >= 1")
        if self.tol is not None and not self.tol > 0:
            raise LipflowError(f"Residual tol must be positive or None, got {self.tol!r}")

    @property
    def family(self) -> str:
        return "residual"

    def init(self, seed: int | onp.random.Generator | None = 0) -> Params:
        rng = as_rng(seed)
        sizes = (self.dim, *self.hidden, self.dim)
        weights = [rng.standard_normal((a, b)) / onp.sqrt(a) for a, b in pairwise(sizes)]
        biases = [0.1 * rng.standard_normal(b) for b in sizes[1:]]
        return {"weights": weights, "biases": biases}

    # ---- g and its Jacobian -----------------------------------------------------------------
    def normalised_weights(self, weights: list[Any]) -> list[Any]:
        """W * min(1, c / ||W||_2) for each layer, on the master (float64) weights."""
        result = []
        for w in weights:
            if self.spectral == "exact":
                norm = spectral_norm(w)
            else:
                norm = power_iteration_norm(getval(w), self.power_iterations)
            factor = self.coeff / norm if getval(norm) > self.coeff else 1.0
            result.append(w * factor)
        return result

    def _prepare(self, params: Params) -> Params:
        return {"weights": self.normalised_weights(params["weights"]), "biases": params["biases"]}

    def g(self, params: Params, x: Any, ctx: Precision) -> Any:
        """The residual branch g(x) with already-normalised, cast params."""
        phi = ACTIVATIONS[self.activation]
        h = x
        last = len(params["weights"]) - 1
        for layer, (w, b) in enumerate(zip(params["weights"], params["biases"], strict=True)):
            h = ctx.dot(h, w) + b
            if layer < last:
                h = phi.apply(ctx, h)
        return h

    def g_jacobian_transposed(self, params: Params, x: Any, ctx: Precision) -> Any:
        """J_g(x)^T per sample, shape (n, d, d), from the chain rule through the layers."""
        phi = ACTIVATIONS[self.activation]
        weights, biases = params["weights"], params["biases"]
        if len(weights) == 1:  # no hidden layer: g is affine
            return ctx.zeros((onp.shape(x)[0], 1, 1)) + weights[0][None, :, :]
        h = ctx.dot(x, weights[0]) + biases[0]
        product = weights[0][None, :, :] * phi.derivative(ctx, h)[:, None, :]
        for w, b in zip(weights[1:-1], biases[1:-1], strict=True):
            h = ctx.dot(phi.apply(ctx, h), w) + b
            product = ctx.dot(product, w) * phi.derivative(ctx, h)[:, None, :]
        return ctx.dot(product, weights[-1])

    def lipschitz_g(self, params: Params) -> float:
        """prod_i ||W_i||_2 of the weights as used (float64 SVD; an estimate under "power")."""
        value = 1.0
        for w in params["weights"]:
            value *= float(onp.linalg.norm(_as_float64(getval(w)), 2))
        return value

    # ---- block interface --------------------------------------------------------------------
    def _forward(self, params: Params, x: Any, ctx: Precision) -> Any:
        return x + self.g(params, x, ctx)

    def _inverse(self, params: Params, y: Any, ctx: Precision) -> Any:
        x, info = self._inverse_with_info(params, y, ctx)
        self._report(info)
        return x

    def inverse_with_info(
        self, params: Params, y: Any, *, ctx: Precision | str | None = None
    ) -> tuple[Any, FixedPointInfo]:
        """F^-1(y) by fixed-point iteration, with the convergence record."""
        y, context = check_input(y, self.dim, "Residual.inverse_with_info", ctx)
        return self._inverse_with_info(context.cast(self._prepare(params)), y, context)

    def _inverse_with_info(self, params: Params, y: Any, ctx: Precision) -> tuple[Any, FixedPointInfo]:
        lip = min(self.lipschitz_g(params) * (1 + 64 * 2.0**-52), 1.0 - 1e-15)
        amplification = lip / (1 - lip)
        leaves = (*params["weights"], *params["biases"])
        values = _rebuild([getval(leaf) for leaf in leaves], len(params["weights"]))
        y_value = getval(y)
        y_norm = _row_norms(y_value, ctx)
        x = y_value
        n = onp.shape(y)[0]
        step = onp.zeros(n) if not ctx.is_arbitrary else onp.full(n, ctx.const(0), dtype=object)
        iterations = 0
        converged = onp.ones(n, dtype=bool) if n == 0 else onp.zeros(n, dtype=bool)
        for iterations in range(1, self.max_iter + 1):  # noqa: B007 (reported after the loop)
            x_next = y_value - self.g(values, x, ctx)
            step = _row_norms(x_next - x, ctx)
            x = x_next
            if self.tol is None:
                floor = 4 * math.sqrt(self.dim) * ctx.unit_roundoff
                threshold = (1 + y_norm) * (ctx.const(floor) if ctx.is_arbitrary else floor)
                converged = step <= threshold
            else:
                converged = step * amplification <= self.tol
            converged = onp.asarray(converged, dtype=bool)
            if onp.all(converged):
                break
        info = FixedPointInfo(
            iterations=iterations,
            converged=converged,
            last_step=step,
            aposteriori_bound=step * (ctx.const(amplification) if ctx.is_arbitrary else amplification),
            lipschitz_g=lip,
        )
        # derivatives by the implicit function theorem, never through the iterations
        return implicit_inverse(x, self, ctx, y, *leaves), info

    def _report(self, info: FixedPointInfo) -> None:
        if info.all_converged or self.on_nonconvergence == "ignore":
            return
        failed = int(onp.sum(~info.converged))
        message = (
            f"Residual inverse: {failed} of {info.converged.size} samples did not converge in "
            f"max_iter={self.max_iter} iterations (largest a-posteriori bound "
            f"{float(onp.max(info.aposteriori_bound.astype(float))):.3g}); raise max_iter, loosen tol, "
            "or lower coeff"
        )
        if self.on_nonconvergence == "raise":
            raise NonConvergenceError(message)
        warnings.warn(message, NonConvergenceWarning, stacklevel=4)

    def _logdet(self, params: Params, x: Any, ctx: Precision) -> Any:
        jac_t = self.g_jacobian_transposed(params, x, ctx)
        if self.logdet_method == "exact":
            eye = ctx.cast(onp.eye(self.dim))
            return batched_logabsdet(eye[None, :, :] + jac_t, ctx)
        total = ctx.zeros((onp.shape(x)[0],))
        power = jac_t
        diagonal = onp.arange(self.dim)
        for k in range(1, self.series_terms + 1):
            trace = ctx.sum(power[:, diagonal, diagonal], axis=1)
            total = total + ctx.const(1 if k % 2 else -1) * trace / ctx.const(k)
            if k < self.series_terms:
                power = batched_matmul(power, jac_t, ctx)
        return total
