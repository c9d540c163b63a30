"""Inputs that find numerical failures of an invertible map (paper Sections 4.1.1-4.1.2, App. E).

:func:`audit_inputs` builds named batches around a data batch: the data itself, rings (spheres)
of geometrically growing radius out to ``radius`` (and, in two dimensions, a grid over
[-radius, radius]^2), Gaussian, uniform and Rademacher noise of scale ``noise_scale``.
:func:`box_attack` searches the dequantisation box ||x' - x||_inf <= box of data points (inputs
that are valid samples of the training distribution, paper App. E) for the largest working-
precision round-trip error. It is derivative-free (random search with a shrinking box around the
worst point found), so it needs nothing but the forward and inverse maps; every error it reports
is an actual round trip at the working precision.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from lipflow.errors import LipflowError
from lipflow.interop import require_torch

require_torch()
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

__all__ = ["INPUT_KINDS", "audit_inputs", "box_attack"]

#: the input sets :func:`audit_inputs` knows, in report order
INPUT_KINDS = ("data", "rings", "grid", "gaussian", "uniform", "rademacher", "box-attack")


def _kinds(kinds: str | Sequence[str]) -> list[str]:
    chosen = list(INPUT_KINDS) if kinds == "all" else [kinds] if isinstance(kinds, str) else list(kinds)
    unknown = [k for k in chosen if k not in INPUT_KINDS]
    if unknown:
        raise LipflowError(f"unknown input kind(s) {unknown}; use 'all' or any of {', '.join(INPUT_KINDS)}")
    return chosen


def audit_inputs(
    x: Tensor,
    kinds: str | Sequence[str] = "all",
    *,
    radius: float | None = None,
    noise_scale: float = 1.0,
    n: int = 64,
    rings: int = 8,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Named input batches (in the dtype of ``x``) for an audit; "box-attack" is left to
    :func:`box_attack`, which needs the model.

    Args:
        x: the in-distribution batch (n, ...).
        kinds: "all" or a subset of :data:`INPUT_KINDS`.
        radius: the largest ring radius and grid half-width (default 4 max_i ||x_i||).
        noise_scale: the standard deviation of the noise batches (uniform on
            [-sqrt(3) s, sqrt(3) s], Rademacher +-s).
        n: samples per noise batch; rings: radii (geometric from radius / 2^(rings-1) to radius),
            n // rings random directions each.
    """
    if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[0] < 1:
        raise LipflowError("audit inputs need a data batch x of shape (n, ...) with n >= 1")
    chosen = _kinds(kinds)
    shape, d = x.shape[1:], x[0].numel()
    if radius is None:
        radius = 4 * float(torch.linalg.vector_norm(x.reshape(x.shape[0], -1).double(), dim=1).max())
    if not (radius > 0 and noise_scale > 0 and n >= 1 and rings >= 1):
        raise LipflowError(f"need radius > 0, noise_scale > 0, n >= 1 and rings >= 1 (got {radius}, {noise_scale}, "
                           f"{n}, {rings})")
    g = torch.Generator().manual_seed(seed)

    def shaped(v: Tensor) -> Tensor:
        return v.reshape(v.shape[0], *shape).to(dtype=x.dtype, device=x.device)

    out: dict[str, Tensor] = {}
    for kind in chosen:
        if kind == "data":
            out[kind] = x
        elif kind == "rings":
            per = max(1, n // rings)
            radii = radius * 2.0 ** -torch.arange(rings - 1, -1, -1, dtype=torch.float64)
            v = torch.randn(rings * per, d, generator=g, dtype=torch.float64)
            v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True)
            out[kind] = shaped(v * radii.repeat_interleave(per)[:, None])
        elif kind == "grid" and d == 2:
            side = max(2, math.isqrt(n))
            t = torch.linspace(-radius, radius, side, dtype=torch.float64)
            a, b = torch.meshgrid(t, t, indexing="ij")
            out[kind] = shaped(torch.stack([a.flatten(), b.flatten()], dim=1))
        elif kind == "gaussian":
            out[kind] = shaped(noise_scale * torch.randn(n, d, generator=g, dtype=torch.float64))
        elif kind == "uniform":
            u = torch.rand(n, d, generator=g, dtype=torch.float64) * 2 - 1
            out[kind] = shaped(math.sqrt(3) * noise_scale * u)
        elif kind == "rademacher":
            s = torch.randint(0, 2, (n, d), generator=g).to(torch.float64) * 2 - 1
            out[kind] = shaped(noise_scale * s)
    return out


def box_attack(
    forward: Callable[[Tensor], Tensor],
    inverse: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    box: float,
    points: int = 16,
    candidates: int = 32,
    rounds: int = 4,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """(x_attack, error): per data point (the first ``points`` rows of ``x``), the point of the
    dequantisation box ||x' - x||_inf <= ``box`` with the largest round-trip error
    ||x' - inverse(forward(x'))|| found by random search, and that error (float64; Inf/NaN kept
    as the worst). Round ``k`` samples ``candidates`` points uniformly in a box of half-width
    box / 4^k around the current worst point, clipped to the dequantisation box.
    """
    if not box > 0:
        raise LipflowError(f"the dequantisation box half-width must be > 0, got {box}")
    g = torch.Generator().manual_seed(seed)
    base = x[:points]
    m, shape = base.shape[0], base.shape[1:]
    worst = base.clone()
    with torch.no_grad():
        worst_err = _round_trip(forward, inverse, worst)
        for k in range(rounds):
            width = box / 4.0**k
            centre = worst.repeat_interleave(candidates, dim=0)
            noise = (torch.rand(centre.shape, generator=g, dtype=torch.float64) * 2 - 1) * width
            trial = centre.double() + noise.to(centre.device)
            origin = base.repeat_interleave(candidates, dim=0).double()
            trial = torch.minimum(torch.maximum(trial, origin - box), origin + box).to(x.dtype)
            err = _round_trip(forward, inverse, trial).reshape(m, candidates)
            rank = torch.where(torch.isnan(err), torch.inf, err)
            j = rank.argmax(dim=1)
            best = rank[torch.arange(m), j]
            better = best > torch.where(torch.isnan(worst_err), torch.inf, worst_err)
            picked = trial.reshape(m, candidates, *shape)[torch.arange(m), j]
            worst = torch.where(better.view(m, *([1] * len(shape))), picked, worst)
            worst_err = torch.where(better, err[torch.arange(m), j], worst_err)
    return worst, worst_err


def _round_trip(forward: Callable[[Tensor], Tensor], inverse: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    rec = inverse(forward(x)).detach()
    diff = (x.double() - rec.double()).reshape(x.shape[0], -1)
    return torch.linalg.vector_norm(diff, dim=1)
