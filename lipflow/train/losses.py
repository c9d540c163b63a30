"""The normalizing-flow objective (paper Eq. 7) with a standard normal base distribution.

log p(x) = log N(F(x); 0, I) + log |det J_F(x)|, so the per-sample negative log-likelihood is
0.5 ||F(x)||^2 + (d/2) log(2 pi) - log |det J_F(x)| (paper Section 3.3.2).
"""

from __future__ import annotations

import math
from typing import Any

import autograd.numpy as anp
import numpy as onp

from lipflow.blocks import Block
from lipflow.precision import Precision, resolve_precision

__all__ = ["bits_per_dim", "nf_loss", "nf_nll_per_sample", "standard_normal_logpdf"]


def standard_normal_logpdf(z: Any, ctx: Precision) -> Any:
    """log N(z; 0, I) per row of ``z`` (shape (n, d) -> (n,)) at precision ``ctx``."""
    d = onp.shape(z)[1]
    return -ctx.const(0.5) * ctx.sum(z * z, axis=1) - ctx.const(0.5 * d * math.log(2 * math.pi))


def nf_nll_per_sample(flow: Block, params: Any, x: Any, *, ctx: Precision | str | None = None) -> Any:
    """-log p(x) per sample (Eq. 7), from one ``forward_and_logdet`` pass."""
    context = resolve_precision(ctx, x)
    z, logdet = flow.forward_and_logdet(params, x, ctx=context)
    return -(standard_normal_logpdf(z, context) + logdet)


def nf_loss(flow: Block, params: Any, x: Any, *, ctx: Precision | str | None = None) -> Any:
    """The mean negative log-likelihood over the batch (the NF training loss)."""
    return anp.mean(nf_nll_per_sample(flow, params, x, ctx=ctx))


def bits_per_dim(nll_nats: float, dim: int) -> float:
    """Mean NLL in nats converted to bits per dimension."""
    return float(nll_nats) / (dim * math.log(2))
