"""The remedies' failure profile: where, by ||z||, sampling gives non-finite or blown-up samples."""

from __future__ import annotations

import math

import numpy as onp

from lipflow.blocks import ActNorm, Flow
from lipflow.experiments.remedies import HUGE, PROFILE_EDGES, failure_profile, plot_failures
from lipflow.precision import precision

DIM = 8


def _scaled_flow(log_scale: float) -> tuple[Flow, list]:
    """F(x) = x exp(log_scale): its inverse x = z exp(-log_scale) is known exactly."""
    flow = Flow([ActNorm(DIM)])
    return flow, [{"log_scale": onp.full(DIM, log_scale), "bias": onp.zeros(DIM)}]


def _codes(n: int, seed: int) -> tuple[onp.ndarray, onp.ndarray]:
    """The codes failure_profile draws from default_rng(seed): (norms, z)."""
    rng = onp.random.default_rng(seed)
    u = rng.standard_normal((n, DIM))
    u /= onp.linalg.norm(u, axis=1, keepdims=True)
    norms = rng.uniform(PROFILE_EDGES[0], PROFILE_EDGES[-1], n)
    return norms, norms[:, None] * u


def test_blown_up_samples_are_counted_in_their_bin_exactly():
    """x = 2 z (to a few float32 units), so a sample is blown up exactly when max |z_i| > HUGE / 2;
    no code of this draw lies within rounding distance of that threshold."""
    flow, params = _scaled_flow(-math.log(2.0))
    rows = failure_profile(flow, params, precision("float32"), 3000, onp.random.default_rng(3))
    norms, z = _codes(3000, 3)
    z32 = z.astype(onp.float32).astype(onp.float64)
    assert sum(r["n"] for r in rows) == 3000
    for row in rows:
        inside = (norms >= row["norm_low"]) & (norms < row["norm_high"])
        assert row["n"] == inside.sum()
        assert row["n_nonfinite"] == 0
        assert row["n_huge"] == int(onp.sum(onp.max(onp.abs(z32[inside]), axis=1) > HUGE / 2))
        assert row["pct_failed"] == 100.0 * row["n_huge"] / row["n"]
    assert rows[0]["n_huge"] == 0 and rows[-1]["n_huge"] > 0  # the test decides both outcomes


def test_overflowing_samples_are_counted_as_non_finite():
    """exp(100) overflows float32, so every non-zero code's sample is Inf: all counted, none averaged."""
    flow, params = _scaled_flow(-100.0)
    rows = failure_profile(flow, params, precision("float32"), 400, onp.random.default_rng(4))
    assert all(r["n_nonfinite"] == r["n"] and r["n_huge"] == 0 and r["pct_failed"] == 100.0 for r in rows)
    assert all(math.isnan(r["max_abs_sample"]) for r in rows)
    figure = plot_failures([{"model": "additive", "seed": 0, **r} for r in rows])
    assert figure.axes
