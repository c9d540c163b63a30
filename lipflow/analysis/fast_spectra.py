"""sigma_max and sigma_min of coupling-flow Jacobians without forming them.

A coupling block's Jacobian is block triangular in its (conditioning, transformed) coordinates
(theory ``lem:additive-tight``, ``thm:coupling-stability``):

    J = [[I, 0], [B, D]],          J^-1 = [[I, 0], [-D^-1 B, D^-1]],

with D = diag(g(s(x1))) (identity for additive blocks) and B = d y2 / d x1 built from the
conditioner networks. Products J v, J^T u, J^-1 w and J^-T z therefore cost a few conditioner
passes each, for the whole flow (a product of such blocks, permutations and ActNorm
diagonals). sigma_max(J) comes from Lanczos on J^T J, and sigma_min(J) = 1 / sigma_max(J^-1)
from Lanczos on J^-T J^-1 -- both the *largest* eigenvalue of a symmetric operator, where
Lanczos converges fast, and neither squares the condition number against sigma_min.

The values are Lanczos estimates (Ritz values are never above the true extreme eigenvalue),
returned with their residual norms; ``benchmarks/jacobian_spectra.py`` compares them with
autograd Jacobians and a full SVD.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as onp
import scipy.linalg
from autograd import elementwise_grad

from lipflow.blocks.base import Block, Params, check_input
from lipflow.blocks.conditioners import ACTIVATIONS, MLP, Constant
from lipflow.blocks.coupling import AdditiveCoupling, AffineCoupling
from lipflow.blocks.flow import Flow
from lipflow.blocks.linear import ActNorm, Permutation
from lipflow.errors import LipflowError
from lipflow.precision import precision

__all__ = ["ExtremeSingularValues", "extreme_singular_values"]

_F64 = precision("float64")
SUPPORTED = (AdditiveCoupling, AffineCoupling, Permutation, ActNorm)


@dataclass(frozen=True)
class ExtremeSingularValues:
    """Per-sample extreme singular values of J_F(x), float64 Lanczos estimates.

    Attributes:
        sigma_max, sigma_min: (n,) estimates.
        residual_max, residual_min: Lanczos residual norms of the Ritz pairs, relative to the
            Ritz value of J^T J (resp. J^-T J^-1): some eigenvalue lies within this relative
            distance of each Ritz value.
        steps: Lanczos steps used for (sigma_max, sigma_min).
    """

    sigma_max: onp.ndarray
    sigma_min: onp.ndarray
    residual_max: onp.ndarray
    residual_min: onp.ndarray
    steps: tuple[int, int]

    @property
    def cond(self) -> onp.ndarray:
        with onp.errstate(divide="ignore"):
            return self.sigma_max / self.sigma_min


class _ConditionerLinearisation:
    """v -> d c(x1)/d x1 v and its transpose for a conditioner at a batch of points."""

    def __init__(self, conditioner: MLP | Constant, params: Any, x1: onp.ndarray) -> None:
        self.constant = isinstance(conditioner, Constant)
        if self.constant:
            return
        phi = ACTIVATIONS[conditioner.activation]
        self.weights = [onp.asarray(w, dtype=onp.float64) for w in params["weights"]]
        self.slopes = []
        h = x1
        for layer, (w, b) in enumerate(zip(self.weights, params["biases"], strict=True)):
            h = h @ w + b
            if layer < len(self.weights) - 1:
                self.slopes.append(onp.asarray(phi.derivative(_F64, h), dtype=onp.float64))
                h = phi.apply(_F64, h)

    def jvp(self, v: onp.ndarray) -> onp.ndarray | float:
        if self.constant:
            return 0.0
        for w, slope in zip(self.weights[:-1], self.slopes, strict=True):
            v = (v @ w) * slope
        return v @ self.weights[-1]

    def vjp(self, u: onp.ndarray) -> onp.ndarray | float:
        if self.constant:
            return 0.0
        u = u @ self.weights[-1].T
        for w, slope in zip(reversed(self.weights[:-1]), reversed(self.slopes), strict=True):
            u = (u * slope) @ w.T
        return u


def _as_slice(indices: list[int]) -> slice | list[int]:
    """``indices`` as a slice when they are consecutive and ascending, else unchanged."""
    if indices and indices == list(range(indices[0], indices[0] + len(indices))):
        return slice(indices[0], indices[0] + len(indices))
    return indices


class _CouplingLinearisation:
    """J = [[I, 0], [B, D]] of one coupling block at a batch of points."""

    def __init__(self, block: AdditiveCoupling | AffineCoupling, params: Params, x: onp.ndarray) -> None:
        self.first, self.second = (list(i) for i in block.indices)
        # contiguous halves (the usual split) index as slices: views instead of gathered copies
        self.first_index, self.second_index = (_as_slice(i) for i in (self.first, self.second))
        x1, x2 = x[:, self.first], x[:, self.second]
        self.t = _ConditionerLinearisation(block.t, params["t"], x1)
        self.affine = isinstance(block, AffineCoupling)
        if not self.affine:
            self.diagonal, self.t_weight = 1.0, 1.0
            return
        self.s = _ConditionerLinearisation(block.s, params["s"], x1)
        s_value = onp.asarray(block.s.apply(params["s"], x1, _F64, block.n_transformed), dtype=onp.float64)
        scale = block.scale
        self.diagonal = onp.asarray(scale.g(s_value, _F64), dtype=onp.float64)
        slope = elementwise_grad(lambda v: scale.g(v, _F64))(s_value)
        if block.form == "realnvp":
            self.s_weight, self.t_weight = x2 * slope, 1.0
        else:
            t_value = onp.asarray(block.t.apply(params["t"], x1, _F64, block.n_transformed), dtype=onp.float64)
            self.s_weight, self.t_weight = (x2 + t_value) * slope, self.diagonal

    def _b(self, v1: onp.ndarray) -> onp.ndarray:
        result = self.t_weight * self.t.jvp(v1)
        if self.affine:
            result = result + self.s_weight * self.s.jvp(v1)
        return result

    def _bt(self, u2: onp.ndarray) -> onp.ndarray:
        result = self.t.vjp(self.t_weight * u2)
        if self.affine:
            result = result + self.s.vjp(self.s_weight * u2)
        return result

    def _parts(self, v: onp.ndarray) -> tuple[onp.ndarray, onp.ndarray]:
        return v[:, self.first_index], v[:, self.second_index]

    def _merge(self, v1: onp.ndarray, v2: Any) -> onp.ndarray:
        out = onp.empty((v1.shape[0], len(self.first) + len(self.second)))
        out[:, self.first_index] = v1
        out[:, self.second_index] = v2
        return out

    def jvp(self, v: onp.ndarray) -> onp.ndarray:
        v1, v2 = self._parts(v)
        return self._merge(v1, self._b(v1) + self.diagonal * v2)

    def vjp(self, u: onp.ndarray) -> onp.ndarray:
        u1, u2 = self._parts(u)
        return self._merge(u1 + self._bt(u2), self.diagonal * u2)

    def inverse_jvp(self, w: onp.ndarray) -> onp.ndarray:
        w1, w2 = self._parts(w)
        return self._merge(w1, (w2 - self._b(w1)) / self.diagonal)

    def inverse_vjp(self, z: onp.ndarray) -> onp.ndarray:
        z1, z2 = self._parts(z)
        u2 = z2 / self.diagonal
        return self._merge(z1 - self._bt(u2), u2)


class _DiagonalLinearisation:
    """Permutations (y = x[:, perm]) and ActNorm (y = (x + b) e^s)."""

    def __init__(self, block: Permutation | ActNorm, params: Params) -> None:
        d = block.dim
        self.perm = list(block.perm) if isinstance(block, Permutation) else list(range(d))
        self.back = list(onp.argsort(self.perm))
        self.scale = (
            onp.exp(onp.asarray(params["log_scale"], dtype=onp.float64)) if isinstance(block, ActNorm) else 1.0
        )

    def jvp(self, v: onp.ndarray) -> onp.ndarray:
        return (v * self.scale)[:, self.perm]

    def vjp(self, u: onp.ndarray) -> onp.ndarray:
        return u[:, self.back] * self.scale

    def inverse_jvp(self, w: onp.ndarray) -> onp.ndarray:
        return w[:, self.back] / self.scale

    def inverse_vjp(self, z: onp.ndarray) -> onp.ndarray:
        return (z / self.scale)[:, self.perm]


def _linearise(flow: Block, params: Params, x: onp.ndarray) -> list:
    blocks = list(flow.blocks) if isinstance(flow, Flow) else [flow]
    prepared = flow._prepare(params)
    block_params = prepared if isinstance(flow, Flow) else [prepared]
    for block in blocks:
        if not isinstance(block, SUPPORTED):
            raise LipflowError(
                f"extreme_singular_values handles flows of AdditiveCoupling, AffineCoupling, Permutation "
                f"and ActNorm blocks, got {type(block).__name__}; use lipflow.analysis.jacobian_spectrum"
            )
    layers = []
    for block, p in zip(blocks, block_params, strict=True):
        p = _F64.cast(p)
        if isinstance(block, (AdditiveCoupling, AffineCoupling)):
            layers.append(_CouplingLinearisation(block, p, x))
        else:
            layers.append(_DiagonalLinearisation(block, p))
        x = onp.asarray(block._forward(p, x, _F64), dtype=onp.float64)
    return layers


def _top_ritz(alphas: onp.ndarray, betas: onp.ndarray | None, beta: onp.ndarray) -> tuple:
    """Largest Ritz value of each sample's tridiagonal matrix and its residual norm."""
    theta, residual = onp.empty(len(alphas)), onp.empty(len(alphas))
    k = alphas.shape[1]
    for i in range(len(alphas)):
        off = betas[i] if betas is not None else onp.zeros(0)
        value, vector = scipy.linalg.eigh_tridiagonal(alphas[i], off, select="i", select_range=(k - 1, k - 1))
        theta[i] = value[0]
        residual[i] = beta[i] * abs(vector[-1, 0])
    return theta, residual


def _lanczos_top(apply, n: int, d: int, rtol: float, max_steps: int, seed: int) -> tuple:
    """Largest eigenvalue of the symmetric PSD operator ``apply`` for each of n samples
    (batched Lanczos with full reorthogonalisation)."""
    rng = onp.random.default_rng(seed)
    q = rng.standard_normal((n, d))
    q /= onp.linalg.norm(q, axis=1, keepdims=True)
    basis = [q]
    alphas: list[onp.ndarray] = []
    betas: list[onp.ndarray] = []
    theta = onp.zeros(n)
    residual = onp.full(n, onp.inf)
    steps = 0
    for steps in range(1, min(max_steps, d) + 1):
        w = apply(basis[-1])
        alphas.append(onp.einsum("nd,nd->n", w, basis[-1]))
        stacked = onp.stack(basis, axis=1)  # (n, k, d)
        for _ in range(2):  # full reorthogonalisation, twice is enough
            w = w - onp.einsum("nk,nkd->nd", onp.einsum("nkd,nd->nk", stacked, w), stacked)
        beta = onp.linalg.norm(w, axis=1)
        if steps == min(max_steps, d) or steps >= 6 or onp.all(beta == 0):
            theta, residual = _top_ritz(onp.stack(alphas, axis=1), onp.stack(betas, axis=1) if betas else None, beta)
            if onp.all(residual <= rtol * onp.abs(theta)):
                break
        betas.append(beta)
        safe = onp.where(beta > 0, beta, 1.0)
        basis.append(w / safe[:, None])
    return theta, residual / onp.where(theta > 0, theta, 1.0), steps


def extreme_singular_values(
    flow: Block, params: Params, x: Any, *, rtol: float = 1e-8, max_steps: int = 300, seed: int = 0
) -> ExtremeSingularValues:
    """sigma_max and sigma_min of J_F at each row of ``x`` (float64), by structured Lanczos.

    ``rtol`` bounds the relative Lanczos residual of the Ritz value of J^T J (and J^-T J^-1):
    an eigenvalue then lies within rtol of it, so sigma is within ~rtol/2 of a singular value
    (the extreme one when the Krylov space has found it; with a spectral gap the error is
    rtol^2-small).
    """
    x, _ = check_input(x, flow.dim, "extreme_singular_values", "float64")
    x = onp.asarray(x, dtype=onp.float64)
    layers = _linearise(flow, params, x)
    n, d = x.shape

    def normal(v: onp.ndarray) -> onp.ndarray:  # J^T J v
        for layer in layers:
            v = layer.jvp(v)
        for layer in reversed(layers):
            v = layer.vjp(v)
        return v

    def inverse_normal(v: onp.ndarray) -> onp.ndarray:  # J^-T J^-1 v, J^-1 = J_1^-1 ... J_L^-1
        for layer in reversed(layers):
            v = layer.inverse_jvp(v)
        for layer in layers:
            v = layer.inverse_vjp(v)
        return v

    top, res_top, steps_top = _lanczos_top(normal, n, d, rtol, max_steps, seed)
    inv, res_inv, steps_inv = _lanczos_top(inverse_normal, n, d, rtol, max_steps, seed + 1)
    with onp.errstate(divide="ignore"):
        sigma_min = 1.0 / onp.sqrt(inv)
    return ExtremeSingularValues(
        sigma_max=onp.sqrt(top),
        sigma_min=sigma_min,
        residual_max=res_top,
        residual_min=res_inv,
        steps=(steps_top, steps_inv),
    )
