"""The i-ResNet residual block as a ``torch.nn.Module`` with lipflow's numerics.

F(x) = x + g(x), g a spectrally normalised MLP with Lip(g) <= c < 1; the inverse is the Banach
fixed-point iteration with lipflow's stopping rule and :class:`FixedPointInfo` record (theory
``lem:residual``, ``lem:banach``); the log-determinant is exact (slogdet of I + J_g) or the
truncated power series (``lem:logdet-series``).
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

__all__ = ["TorchResidual"]


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
        x, n = y, y.shape[0]
        step = torch.zeros(n, dtype=torch.float64, device=y.device)
        converged = torch.ones(n, dtype=torch.bool, device=y.device)
        iterations = 0
        for iteration in range(1, spec.max_iter + 1):
            iterations = iteration
            x_next = y - self.g(x, weights)
            step = torch.linalg.vector_norm((x_next.detach() - x.detach()).to(torch.float64), dim=1)
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
        return x, info

    def g_jacobian_transposed(self, x: Tensor, weights: Sequence[Tensor]) -> Tensor:
        """J_g(x)^T per sample, (n, d, d), by the chain rule (as lipflow)."""
        h = x @ weights[0] + self.biases[0]
        product = weights[0][None, :, :] * self.phi_derivative(h)[:, None, :]
        for w, b in zip(weights[1:-1], list(self.biases)[1:-1], strict=True):
            h = self.phi(h) @ w + b
            product = (product @ w) * self.phi_derivative(h)[:, None, :]
        return product @ weights[-1]

    def logdet(self, x: Tensor) -> Tensor:
        self.check_input(x, "logdet")
        spec: Residual = self.spec
        jac_t = self.g_jacobian_transposed(x, self.used_weights())
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
