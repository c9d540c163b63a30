"""The first-order a-posteriori certificate of an approximate inverse (``lem:newton-certificate``).

Kept free of torch so the formula is importable everywhere; the torch Newton refinement that
uses it is :func:`lipflow.interop.torch_reference.newton_reference`.
"""

from __future__ import annotations

import numpy as onp

__all__ = ["first_order_certificate"]


def first_order_certificate(residual: onp.ndarray, sigma_min: onp.ndarray) -> onp.ndarray:
    """||r|| / sigma_min(J_F(x_hat)) per sample: to first order in ||r||, the distance from x_hat
    to the exact preimage F^-1(z), where r = F(x_hat) - z (an *estimate*: the second-order term
    needs a Lipschitz constant of J_F, which a black-box network does not provide).

    Inf where sigma_min = 0 (singular Jacobian) and NaN where an input is NaN.

    >>> first_order_certificate(onp.array([1e-15, 1e-15]), onp.array([0.5, 0.0])).tolist()
    [2e-15, inf]
    """
    residual = onp.asarray(residual, dtype=onp.float64)
    sigma_min = onp.asarray(sigma_min, dtype=onp.float64)
    with onp.errstate(divide="ignore", invalid="ignore"):
        value = residual / sigma_min
    return onp.where((sigma_min == 0) & (residual >= 0), onp.inf, value)
