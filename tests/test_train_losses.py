"""The NF loss (paper Eq. 7) against the change-of-variables density of a linear flow."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import multivariate_normal

import lipflow as lf
from lipflow.precision import precision
from lipflow.train import bits_per_dim, nf_loss, nf_nll_per_sample


def _linear_flow(dim: int):
    flow = lf.Flow([lf.ActNorm(dim), lf.InvertibleLinear(dim, seed=1)])
    params = flow.init(3)
    rng = np.random.default_rng(0)
    params[1] = {key: value + 0.1 * rng.standard_normal(np.shape(value)) for key, value in params[1].items()}
    return flow, params


def _matrix(flow, params):
    """A with F(x) = A (x + b): the affine map the flow computes."""
    scale = np.diag(np.exp(params[0]["log_scale"]))
    return flow.blocks[1].matrix(params[1]) @ scale, params[0]["bias"]


def test_nf_loss_is_the_change_of_variables_density():
    dim = 5
    flow, params = _linear_flow(dim)
    a, bias = _matrix(flow, params)
    x = np.random.default_rng(1).standard_normal((20, dim))
    nll = nf_nll_per_sample(flow, params, x, ctx="float64")
    # x = A^-1 z - b with z ~ N(0, I): x ~ N(-b, (A^T A)^-1)
    reference = -multivariate_normal(mean=-bias, cov=np.linalg.inv(a.T @ a)).logpdf(x)
    z = (x + bias) @ a.T
    cond = np.linalg.cond(a)
    ctx = precision("float64")
    # both paths round O(d) times per entry, amplified by at most cond(A)^2 (the covariance)
    tolerance = ctx.gamma(64 * dim) * cond**2 * (np.abs(reference) + np.sum(z * z, axis=1) + dim)
    assert np.all(np.abs(nll - reference) <= tolerance)
    assert math.isclose(float(nf_loss(flow, params, x, ctx="float64")), float(np.mean(nll)), rel_tol=1e-15)


def test_nf_loss_detects_a_wrong_density():
    """The comparison can fail: dropping the log-determinant is caught."""
    dim = 3
    flow, params = _linear_flow(dim)
    x = np.random.default_rng(2).standard_normal((4, dim))
    a, bias = _matrix(flow, params)
    reference = -multivariate_normal(mean=-bias, cov=np.linalg.inv(a.T @ a)).logpdf(x)
    z = flow.forward(params, x)
    without_logdet = 0.5 * np.sum(z * z, axis=1) + 0.5 * dim * math.log(2 * math.pi)
    assert np.max(np.abs(without_logdet - reference)) > 1e-3


def test_nf_loss_keeps_working_precision():
    flow, params = _linear_flow(4)
    x = np.random.default_rng(3).standard_normal((3, 4)).astype(np.float32)
    assert nf_nll_per_sample(flow, params, x).dtype == np.float32


def test_bits_per_dim():
    assert math.isclose(bits_per_dim(2 * math.log(2) * 3, 3), 2.0)
