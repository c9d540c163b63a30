"""The i-ResNet residual block as a ``torch.nn.Module`` with lipflow's numerics.

F(x) = x + g(x), g a spectrally normalised MLP with Lip(g) <= c < 1; the inverse is the Banach
fixed-point iteration with lipflow's stopping rule and :class:`FixedPointInfo` record (theory
``lem:residual``, ``lem:banach``); the log-determinant is exact (slogdet of I + J_g) or the
truncated power series (``lem:logdet-series``). The inverse is differentiated implicitly
(:class:`ImplicitInverse`), never through the iterations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from lipflow.blocks.residual import FixedPointInfo, Residual, power_iteration_norm
from lipflow.interop import require_torch

require_torch()
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from lipflow.interop.torch_blocks import (  # noqa: E402
    DERIVATIVES,
    InvertibleModule,
    as_parameter,
    to_numpy,
    torch_activation,
)

__all__ = ["ImplicitInverse", "TorchResidual"]


def _g(x: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor], phi) -> Tensor:
    h, last = x, len(weights) - 1
    for layer, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = h @ w + b
        if layer < last:
            h = phi(h)
    return h


class ImplicitInverse(torch.autograd.Function):
    """x* = F^-1(y) (already converged) with derivatives from the implicit function theorem.

    Rows x + g(x) = y give dx (I + J_g^T) = dy - dg_theta: backward solves (I + J_g^T) w = v per
    sample and returns dL/dy = w, dL/dtheta = -(dg/dtheta)^T w (theory ``lem:residual``).
    Inputs: (module, x_star, y, *weights, *biases) with the used (normalised) weights. The
    backward is linear in v and differentiable in it (Jacobian-vector products by double
    backward); J_g is held fixed there, so second derivatives in y are not provided.
    """

    @staticmethod
    def forward(ctx, module, x_star, y, *leaves):
        ctx.module = module
        ctx.save_for_backward(x_star, *leaves)
        return x_star.clone()

    @staticmethod
    def backward(ctx, v):
        x_star, *leaves = ctx.saved_tensors
        module = ctx.module
        k = len(leaves) // 2
        weights, biases = leaves[:k], leaves[k:]
        higher = torch.is_grad_enabled()  # backward with create_graph: stay differentiable in v
        with torch.no_grad():
            jac_t = _jacobian_t(x_star, weights, biases, module)
            system = torch.eye(x_star.shape[1], dtype=x_star.dtype, device=x_star.device) + jac_t
        w = torch.linalg.solve(system, v.unsqueeze(-1)).squeeze(-1)
        grads = [None] * len(leaves)
        wanted = [i for i, leaf in enumerate(leaves) if ctx.needs_input_grad[3 + i]]
        if wanted:
            with torch.enable_grad():
                detached = [leaf.detach().requires_grad_(True) for leaf in leaves]
                out = _g(x_star.detach(), detached[:k], detached[k:], module.phi)
                found = torch.autograd.grad(out, [detached[i] for i in wanted], grad_outputs=-w,
                                            create_graph=higher)
            for i, value in zip(wanted, found, strict=True):
                grads[i] = value
        return (None, None, w if ctx.needs_input_grad[2] else None, *grads)


def _jacobian_t(x: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor], module) -> Tensor:
    """J_g(x)^T per sample, (n, d, d)."""
    if len(weights) == 1:
        return weights[0][None, :, :].expand(x.shape[0], -1, -1)
    h = x @ weights[0] + biases[0]
    product = weights[0][None, :, :] * module.phi_derivative(h)[:, None, :]
    for w, b in zip(weights[1:-1], biases[1:-1], strict=True):
        h = module.phi(h) @ w + b
        product = (product @ w) * module.phi_derivative(h)[:, None, :]
    return product @ weights[-1]


class TorchResidual(InvertibleModule):
    """F(x) = x + g(x) with spectrally normalised g; fixed-point inverse (i-ResNet).

    The normalisation factor c / ||W||_2 is computed from a float64 copy of each weight (exact
    SVD, or lipflow's power iteration under ``spectral="power"``), as lipflow does on its
    float64 master copy; ``last_info`` holds the :class:`FixedPointInfo` of the last inverse.
    """

    def __init__(self, spec: Residual, params: dict, dtype: torch.dtype = torch.float64) -> None:
        super().__init__(spec)
        self.weights = nn.ParameterList([as_parameter(w, dtype) for w in params["weights"]])
        self.biases = nn.ParameterList([as_parameter(b, dtype) for b in params["biases"]])
        self.phi = torch_activation(spec.activation)
        self.phi_derivative = DERIVATIVES[spec.activation]
        self.last_info: FixedPointInfo | None = None

    def used_weights(self) -> list[Tensor]:
        spec: Residual = self.spec
        result = []
        for w in self.weights:
            if spec.spectral == "exact":
                norm = torch.linalg.matrix_norm(w.to(torch.float64), ord=2)
            else:
                norm = torch.tensor(power_iteration_norm(to_numpy(w), spec.power_iterations), dtype=torch.float64)
            factor = spec.coeff / norm if float(norm.detach()) > spec.coeff else torch.ones((), dtype=torch.float64)
            result.append((w.to(torch.float64) * factor.to(w.device)).to(w.dtype))
        return result

    def g(self, x: Tensor, weights: Sequence[Tensor] | None = None) -> Tensor:
        weights = self.used_weights() if weights is None else weights
        h, last = x, len(weights) - 1
        for layer, (w, b) in enumerate(zip(weights, self.biases, strict=True)):
            h = h @ w + b
            if layer < last:
                h = self.phi(h)
        return h

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x, "forward")
        return x + self.g(x)

    def inverse(self, y: Tensor) -> Tensor:
        x, info = self.inverse_with_info(y)
        self.spec._report(info)
        return x

    def inverse_with_info(self, y: Tensor) -> tuple[Tensor, FixedPointInfo]:
        """F^-1(y) by x_{k+1} = y - g(x_k), x_0 = y, with lipflow's stopping rule and record."""
        self.check_input(y, "inverse")
        spec: Residual = self.spec
        weights = self.used_weights()
        lip = 1.0
        for w in weights:
            lip *= float(torch.linalg.matrix_norm(w.detach().to(torch.float64), ord=2))
        lip = min(lip * (1 + 64 * 2.0**-52), 1.0 - 1e-15)
        amplification = lip / (1 - lip)
        y_norm = torch.linalg.vector_norm(y.detach().to(torch.float64), dim=1)
        unit_roundoff = torch.finfo(y.dtype).eps / 2
        n = y.shape[0]
        step = torch.zeros(n, dtype=torch.float64, device=y.device)
        converged = torch.ones(n, dtype=torch.bool, device=y.device)
        iterations = 0
        frozen = [w.detach() for w in weights]
        y_value = y.detach()
        x = y_value
        for iteration in range(1, spec.max_iter + 1):
            iterations = iteration
            with torch.no_grad():  # never differentiated through: see ImplicitInverse
                x_next = y_value - self.g(x, frozen)
            step = torch.linalg.vector_norm((x_next - x).to(torch.float64), dim=1)
            x = x_next
            if spec.tol is None:
                converged = step <= (1 + y_norm) * (4 * math.sqrt(self.dim) * unit_roundoff)
            else:
                converged = step * amplification <= spec.tol
            if bool(torch.all(converged)):
                break
        step_np = step.cpu().numpy()
        info = FixedPointInfo(
            iterations=iterations,
            converged=converged.cpu().numpy(),
            last_step=step_np,
            aposteriori_bound=step_np * amplification,
            lipschitz_g=lip,
        )
        self.last_info = info
        if torch.is_grad_enabled() and (y.requires_grad or any(t.requires_grad for t in weights)
                                        or any(b.requires_grad for b in self.biases)):
            x = ImplicitInverse.apply(self, x, y, *weights, *self.biases)
        return x, info

    def g_jacobian_transposed(self, x: Tensor, weights: Sequence[Tensor]) -> Tensor:
        """J_g(x)^T per sample, (n, d, d), by the chain rule (as lipflow)."""
        return _jacobian_t(x, weights, list(self.biases), self)

    def logdet(self, x: Tensor) -> Tensor:
        self.check_input(x, "logdet")
        return self._logdet_from(x, self.g_jacobian_transposed(x, self.used_weights()))

    def forward_and_logdet(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(F(x), log|det J_F(x)|) with the weights normalised once (one spectral norm per
        weight instead of two) and the same operations, in the same order, as ``forward``
        and ``logdet`` called apart, so the values are identical."""
        self.check_input(x, "forward")
        weights = self.used_weights()
        return x + self.g(x, weights), self._logdet_from(x, self.g_jacobian_transposed(x, weights))

    def _logdet_from(self, x: Tensor, jac_t: Tensor) -> Tensor:
        spec: Residual = self.spec
        if spec.logdet_method == "exact":
            eye = torch.eye(self.dim, dtype=x.dtype, device=x.device)
            return torch.linalg.slogdet(eye + jac_t)[1]
        total, power = self._zeros(x), jac_t
        for k in range(1, spec.series_terms + 1):
            total = total + (1 if k % 2 else -1) * torch.diagonal(power, dim1=1, dim2=2).sum(dim=1) / k
            if k < spec.series_terms:
                power = power @ jac_t
        return total

    def export_params(self) -> dict:
        return {"weights": [to_numpy(w) for w in self.weights], "biases": [to_numpy(b) for b in self.biases]}
