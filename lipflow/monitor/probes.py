"""The fixed probe batches a training monitor evaluates at every check.

In-distribution: a fixed subset of the training data. Out-of-distribution: Gaussian noise
with the data's per-feature spread around its mean, and a ring (sphere in d dimensions) at
``ring_factor`` times the largest data radius -- the points a flow meets off the data
(paper Section 4.3: inverses explode first off the training distribution).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as onp

from lipflow.errors import LipflowError

__all__ = ["Probe", "make_probe"]


@dataclass(frozen=True)
class Probe:
    """float64 probe batches (n, d); ``ood`` stacks ``n_noise`` noise rows, then the ring."""

    inside: onp.ndarray
    ood: onp.ndarray
    n_noise: int
    ring_radius: float

    @property
    def dim(self) -> int:
        return int(self.inside.shape[1])


def make_probe(data: Any, *, n: int = 64, n_ood: int | None = None, ring_factor: float = 1.5,
               seed: int = 0) -> Probe:
    """Fixed probes from ``data`` (array (N, d), or a torch tensor): ``n`` data rows, ``n_ood``
    out-of-distribution rows (default ``n``), half noise and half on the ring of radius
    ``ring_factor`` x the largest distance of a data row from the data mean."""
    if hasattr(data, "detach"):
        data = data.detach().cpu().numpy()
    data = onp.asarray(data, dtype=onp.float64)
    if data.ndim != 2 or len(data) < 2:
        raise LipflowError(f"probe data must be a batch (N, d) with N >= 2, got shape {data.shape}")
    if not onp.all(onp.isfinite(data)):
        raise LipflowError("probe data holds Inf/NaN; pass finite training samples")
    if not (isinstance(n, int) and n >= 1) or ring_factor <= 1:
        raise LipflowError(f"need n >= 1 and ring_factor > 1 (beyond the data), got n={n!r}, "
                           f"ring_factor={ring_factor!r}")
    rng = onp.random.default_rng(seed)
    inside = data[rng.choice(len(data), size=min(n, len(data)), replace=False)]
    n_ood = n if n_ood is None else n_ood
    mean, spread = data.mean(axis=0), data.std(axis=0)
    n_noise = n_ood // 2
    noise = mean + spread * rng.standard_normal((n_noise, data.shape[1]))
    radius = float(ring_factor * onp.max(onp.linalg.norm(data - mean, axis=1)))
    directions = rng.standard_normal((n_ood - n_noise, data.shape[1]))
    directions /= onp.linalg.norm(directions, axis=1, keepdims=True)
    return Probe(inside=inside, ood=onp.concatenate([noise, mean + radius * directions]), n_noise=n_noise,
                 ring_radius=radius)
