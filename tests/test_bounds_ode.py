"""Neural ODE flow maps: the Gronwall bound (lem:neural-ode)."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from lipflow.bounds.ode import neural_ode_lipschitz


def test_gronwall_dominates_linear_ode() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.standard_normal((3, 3))
        horizon = rng.uniform(0.1, 2.0)
        lip_f = np.linalg.svd(a, compute_uv=False)[0] * (1 + 1e-12)
        forward = np.linalg.svd(scipy.linalg.expm(a * horizon), compute_uv=False)[0]
        inverse = np.linalg.svd(scipy.linalg.expm(-a * horizon), compute_uv=False)[0]
        bound = neural_ode_lipschitz(lip_f, horizon).value
        assert forward <= bound * (1 + 1e-12) and inverse <= bound * (1 + 1e-12)
    # attained forward by f(x) = L x
    assert neural_ode_lipschitz(0.5, 2.0).value >= np.exp(1.0)
    assert neural_ode_lipschitz(0.5, 2.0).value <= np.exp(1.0) * (1 + 1e-15)
