"""Stabilising regularisers in torch: bi-directional finite differences and the NF objective.

Bi-directional FD (paper Section 3.3.1, Eq. 6; set-up in THEORY-NOTES): with v, v' random
unit directions per sample and step eps,

    forward term  ||F(x) - F(x + eps v)||^2 / eps,
    inverse term  ||x - F^-1(F(x) + eps v')||^2 / eps,

averaged over the batch. To first order these are eps ||J_F v||^2 and eps ||J_F^-1 v'||^2:
random-direction estimates of the squared Jacobian norms, with no double backprop. The squared
norm divided by eps (not eps^2) follows the paper's public set-up (eps = 0.1, coefficients
1e-4). The inverse term uses x itself for F^-1(F(x)), which saves one inverse pass.

The NF objective (paper Section 3.3.2) is the negative log-likelihood under a standard normal
base: 0.5 ||z||^2 + (d/2) log(2 pi) - log|det J_F(x)|, per dimension.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from lipflow.errors import LipflowError
from lipflow.interop import require_torch

require_torch()
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

__all__ = ["FD_COEFF", "FD_EPS", "fd_forward_and_penalty", "fd_penalty", "nf_loss"]

#: the paper's step size and coefficient for both directions
FD_EPS = 0.1
FD_COEFF = 1e-4


def _unit_directions(like: Tensor, generator: torch.Generator | None) -> Tensor:
    v = torch.randn(like.shape, dtype=like.dtype, device=like.device, generator=generator)
    norms = torch.linalg.vector_norm(v.reshape(v.shape[0], -1), dim=1)
    return v / norms.reshape(-1, *([1] * (v.dim() - 1)))


def _squared(v: Tensor) -> Tensor:
    return torch.sum(v.reshape(v.shape[0], -1) ** 2, dim=1)


def fd_penalty(
    forward: Callable[[Tensor], Tensor],
    inverse: Callable[[Tensor], Tensor] | None,
    x: Tensor,
    *,
    z: Tensor | None = None,
    eps: float = FD_EPS,
    forward_coeff: float = FD_COEFF,
    inverse_coeff: float = FD_COEFF,
    generator: torch.Generator | None = None,
    samples: int | None = None,
) -> Tensor:
    """forward_coeff * forward term + inverse_coeff * inverse term (batch means), differentiable.

    Pass ``z = forward(x)`` when the training step already has it (saves one forward pass);
    ``inverse=None`` or ``inverse_coeff=0`` drops the inverse term (forward-only FD).
    ``samples=k`` estimates the batch mean from the first k samples only (the extra passes
    then cost k/n of a full-batch pass; the estimate stays unbiased for a shuffled batch).
    """
    if not eps > 0:
        raise LipflowError(f"the finite-difference step eps must be positive, got {eps!r}; the paper uses 0.1")
    if forward_coeff < 0 or inverse_coeff < 0:
        raise LipflowError("FD coefficients must be >= 0 (the paper uses 1e-4 for both directions)")
    if samples is not None:
        if not 1 <= samples:
            raise LipflowError(f"samples must be a positive number of batch samples, got {samples!r}")
        x = x[:samples]
        z = None if z is None else z[:samples]
    z = forward(x) if z is None else z
    total = torch.zeros((), dtype=x.dtype, device=x.device)
    if forward_coeff:
        shifted = forward(x + eps * _unit_directions(x, generator))
        total = total + forward_coeff * torch.mean(_squared(z - shifted)) / eps
    if inverse is not None and inverse_coeff:
        back = inverse(z + eps * _unit_directions(z, generator))
        total = total + inverse_coeff * torch.mean(_squared(x - back)) / eps
    return total


def fd_forward_and_penalty(
    forward: Callable[[Tensor], Tensor],
    inverse: Callable[[Tensor], Tensor] | None,
    x: Tensor,
    *,
    eps: float = FD_EPS,
    forward_coeff: float = FD_COEFF,
    inverse_coeff: float = FD_COEFF,
    generator: torch.Generator | None = None,
    samples: int | None = None,
) -> tuple[Tensor, Tensor]:
    """``(forward(x), fd_penalty(...))`` with the clean and the perturbed forward pass done as
    one batched pass over ``[x; x[:k] + eps v]`` (k = ``samples`` or the batch size).

    The same penalty as :func:`fd_penalty` (same directions for the same ``generator`` state),
    but one call of ``forward`` instead of two: fewer kernel launches on a GPU. ``forward``
    must treat samples independently (no batch statistics, e.g. ActNorm after its data
    initialisation, not BatchNorm in training mode).
    """
    if not eps > 0:
        raise LipflowError(f"the finite-difference step eps must be positive, got {eps!r}; the paper uses 0.1")
    if forward_coeff < 0 or inverse_coeff < 0:
        raise LipflowError("FD coefficients must be >= 0 (the paper uses 1e-4 for both directions)")
    n = x.shape[0]
    k = n if samples is None else int(samples)
    if not 1 <= k:
        raise LipflowError(f"samples must be a positive number of batch samples, got {samples!r}")
    k = min(k, n)
    head = x[:k]
    if forward_coeff:
        both = forward(torch.cat([x, head + eps * _unit_directions(head, generator)]))
        z, shifted = both[:n], both[n:]
    else:
        z, shifted = forward(x), None
    total = torch.zeros((), dtype=x.dtype, device=x.device)
    if shifted is not None:
        total = total + forward_coeff * torch.mean(_squared(z[:k] - shifted)) / eps
    if inverse is not None and inverse_coeff:
        back = inverse(z[:k] + eps * _unit_directions(z[:k], generator))
        total = total + inverse_coeff * torch.mean(_squared(head - back)) / eps
    return z, total


def nf_loss(z: Tensor, logdet: Tensor) -> Tensor:
    """Mean negative log-likelihood per dimension (nats) under a standard normal base."""
    d = z[0].numel()
    nll = 0.5 * _squared(z) + 0.5 * d * math.log(2 * math.pi) - logdet
    return torch.mean(nll) / d
