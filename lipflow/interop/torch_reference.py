"""A reference inverse that does not trust the model's inverse algorithm.

Given the float64 forward map F (a float64 copy of the model) and a target z, Newton's method on
F(x) = z with float64 Jacobian solves refines a starting point (the better, by residual, of the
model's own float64 inverse and a caller's guess such as the original input). The result is
certified a posteriori from the forward residual r = F(x_hat) - z:

    ||x_hat - F^-1(z)|| <= ||J_F(x_hat)^-1|| ||r|| + O(||r||^2)        (first order)

so ``certificate = ||r|| / sigma_min(J_F(x_hat))`` is an *estimate* of the reference's own error
(the second-order term and the rounding of F in float64 are not bounded: lem:newton-certificate).
The model's inverse error is then measured against x_hat, so a truncated iteration or a rounded
constant in the inverse shows up as an error of its own.

Jacobians are formed per sample by one reverse-mode product per output coordinate: samples must
not interact (evaluation mode; no batch statistics).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lipflow.errors import LipflowError
from lipflow.interop import require_torch
from lipflow.interop.newton_certificate import first_order_certificate

require_torch()
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

__all__ = ["NewtonReference", "batch_jacobian", "newton_reference"]

Map = Callable[[Tensor], Tensor]


def batch_jacobian(fun: Map, x: Tensor) -> Tensor:
    """Per-sample Jacobians (n, d_out, d_in) of ``fun`` at the rows of ``x`` (any trailing shape,
    flattened), in the dtype of ``x``; non-finite where ``fun`` is."""
    n, shape = x.shape[0], x.shape[1:]
    with torch.enable_grad():
        xg = x.detach().reshape(n, -1).clone().requires_grad_(True)
        y = fun(xg.reshape(n, *shape))
        if not isinstance(y, Tensor) or not y.requires_grad:
            raise LipflowError(
                "the forward map's output does not depend differentiably on its input (is it run under "
                "torch.no_grad() or detached inside?); the audit needs autograd through the forward pass"
            )
        y = y.reshape(n, -1)
        rows = []
        for k in range(y.shape[1]):
            (row,) = torch.autograd.grad(y[:, k].sum(), xg, retain_graph=k + 1 < y.shape[1], allow_unused=True)
            rows.append(torch.zeros_like(xg) if row is None else row)
    return torch.stack(rows, dim=1).detach()


@dataclass(frozen=True)
class NewtonReference:
    """x_hat ~ F^-1(z) per sample, with its forward residual and a first-order certificate.

    Attributes:
        x: the reference points (n, ...), float64 (NaN where no finite reference was found).
        residual: ||F(x_hat) - z|| per sample (float64, measured in float64).
        certificate: ||r|| / sigma_min(J_F(x_hat)), an *estimate* of ||x_hat - F^-1(z)||.
        jacobian: J_F(x_hat), (n, d, d) float64.
        steps: Newton steps taken per sample (0: the starting point was kept).
        start: per sample, which starting point was used ("model inverse" or "guess").
    """

    x: Tensor
    residual: Tensor
    certificate: Tensor
    jacobian: Tensor
    steps: Tensor
    start: list[str]


def _residual(forward: Map, x: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        r = (forward(x.detach().clone()).detach() - z).reshape(x.shape[0], -1)
    norm = torch.linalg.vector_norm(r, dim=1)
    return r, torch.where(torch.isfinite(norm), norm, torch.full_like(norm, float("inf")))


def newton_reference(
    forward: Map, z: Tensor, starts: dict[str, Tensor], *, max_steps: int = 12
) -> NewtonReference:
    """Refine F^-1(z) by Newton's method on the float64 map ``forward`` (see the module docstring).

    Args:
        forward: F in float64 (data -> latent).
        z: targets (n, ...), float64.
        starts: named starting points of the shape of ``z`` (e.g. the model's float64 inverse and
            the original inputs); per sample the one with the smallest residual is used.
        max_steps: Newton steps at most; a step is kept only where it lowers the residual, and
            iteration stops once no sample improves.
    """
    if z.dtype != torch.float64:
        raise LipflowError(f"the Newton reference works in float64, got targets of {z.dtype}")
    n, shape = z.shape[0], z.shape[1:]
    names = list(starts)
    best = torch.full_like(z, float("nan"))
    best_res = torch.full((n,), float("inf"), dtype=torch.float64, device=z.device)
    chosen = ["none"] * n
    for name in names:
        candidate = starts[name].to(torch.float64)
        _, res = _residual(forward, candidate, z)
        better = res < best_res
        best = torch.where(better.view(n, *([1] * len(shape))), candidate, best)
        best_res = torch.where(better, res, best_res)
        chosen = [name if bool(b) else c for b, c in zip(better, chosen, strict=True)]
    steps = torch.zeros(n, dtype=torch.int64, device=z.device)
    active = torch.isfinite(best_res)
    for _ in range(max_steps):
        if not bool(active.any()):
            break
        idx = torch.nonzero(active).flatten()
        xa = best[idx]
        r, _ = _residual(forward, xa, z[idx])
        jac = batch_jacobian(forward, xa)
        solution, info = torch.linalg.solve_ex(jac, r.unsqueeze(-1))
        ok = (info == 0) & torch.isfinite(solution).all(dim=(1, 2))
        step = torch.where(ok.view(-1, 1, 1), solution, torch.zeros_like(solution)).squeeze(-1)
        trial = xa - step.reshape(xa.shape)
        _, trial_res = _residual(forward, trial, z[idx])
        improved = ok & (trial_res < best_res[idx])
        best[idx] = torch.where(improved.view(-1, *([1] * len(shape))), trial, xa)
        best_res[idx] = torch.where(improved, trial_res, best_res[idx])
        steps[idx] += improved.long()
        still = torch.zeros_like(active)
        still[idx] = improved & (trial_res > 0)
        active = still
    finite = torch.isfinite(best_res)
    jacobian = torch.full((n, best[0].numel(), best[0].numel()), float("nan"), dtype=torch.float64, device=z.device)
    if bool(finite.any()):
        jacobian[finite] = batch_jacobian(forward, best[finite])
    certificate = torch.full((n,), float("nan"), dtype=torch.float64, device=z.device)
    good = finite & torch.isfinite(jacobian).all(dim=(1, 2))
    if bool(good.any()):
        sigma_min = torch.linalg.svdvals(jacobian[good])[:, -1]
        certificate[good] = torch.from_numpy(
            first_order_certificate(best_res[good].cpu().numpy(), sigma_min.cpu().numpy())).to(z.device)
    best[~finite] = float("nan")
    return NewtonReference(x=best, residual=best_res, certificate=certificate, jacobian=jacobian, steps=steps,
                           start=chosen)
