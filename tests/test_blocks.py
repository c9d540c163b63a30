"""Every block: round trip, dtype preservation, log-determinants, Jacobians, bad input."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from autograd import grad

import lipflow as lf
from lipflow.precision import precision
from tests.helpers import all_blocks, sample_inputs

BLOCKS = all_blocks()
FLOAT_PRECISIONS = ("float16", "bfloat16", "float32", "longdouble")


def mixed_flow() -> lf.Flow:
    return lf.Flow(list(BLOCKS.values()))


def round_trip_tolerance(block, params, x, ctx) -> float:
    """A rounding-error tolerance from the unit roundoff and the block's conditioning.

    Each layer's forward and inverse pass commit relative errors of order gamma_m (m = the
    longest dot product plus the elementwise chain), on values of size at most the largest
    activation; later layers' inverses amplify earlier errors by at most the local inverse
    Lipschitz constant, estimated by the float64 Jacobians at the data (the spectrum is exact
    up to float64 rounding for these well-conditioned test blocks). 8 covers forward + inverse
    with slack for the estimate.
    """
    flow = block if isinstance(block, lf.Flow) else lf.Flow([block])
    trace = flow.forward_trace(params if isinstance(block, lf.Flow) else [params], x, ctx="float64")
    scale = max(float(np.max(np.linalg.norm(t, axis=1))) for t in trace)
    amplification = 1.0
    for sub, p, t in zip(flow.blocks, params if isinstance(block, lf.Flow) else [params], trace, strict=False):
        spectrum = lf.jacobian_spectrum(sub, p, t, ctx="float64")
        amplification *= max(1.0, float(np.max(1 / spectrum.sigma_min)), float(np.max(spectrum.sigma_max)))
    m = 40 * len(flow.blocks)
    return 8 * ctx.gamma(m) * amplification * (1 + scale)


@pytest.mark.parametrize("name", list(BLOCKS))
def test_round_trip_every_block(name, precision_name):
    block, ctx = BLOCKS[name], precision(precision_name)
    params = block.init(1)
    x = sample_inputs()
    recovered = block.inverse(params, block.forward(params, x, ctx=ctx), ctx=ctx)
    error = np.max(np.linalg.norm(ctx.to_float64(recovered) - ctx.to_float64(ctx.cast(x)), axis=1))
    assert error <= round_trip_tolerance(block, params, x, ctx)


def test_round_trip_mixed_flow(precision_name):
    flow, ctx = mixed_flow(), precision(precision_name)
    params = flow.init(seed=4)
    x = sample_inputs(5)
    recovered = flow.inverse(params, flow.forward(params, x, ctx=ctx), ctx=ctx)
    error = np.max(np.linalg.norm(ctx.to_float64(recovered) - ctx.to_float64(ctx.cast(x)), axis=1))
    assert error <= round_trip_tolerance(flow, params, x, ctx)


def test_round_trip_tolerance_can_fail():
    """The tolerance is tight enough to catch an inverse that is off by one ulp-scale bug."""
    block = BLOCKS["affine-sigmoid"]
    ctx = precision("float64")
    params = block.init(1)
    x = sample_inputs()
    wrong = block.inverse(params, block.forward(params, x, ctx=ctx) * (1 + 1e-9), ctx=ctx)
    assert np.max(np.abs(wrong - x)) > round_trip_tolerance(block, params, x, ctx)


@pytest.mark.parametrize("name", list(BLOCKS))
@pytest.mark.parametrize("dtype_name", FLOAT_PRECISIONS)
def test_no_upcasting(name, dtype_name):
    block, ctx = BLOCKS[name], precision(dtype_name)
    params = ctx.cast(block._prepare(block.init(2)))  # pre-cast: gradients must stay at ctx
    x = ctx.cast(sample_inputs(3))
    y = block.forward(params, x, ctx=ctx)
    assert ctx.owns(y) and ctx.owns(block.inverse(params, y, ctx=ctx)) and ctx.owns(block.logdet(params, x, ctx=ctx))

    def loss_x(v):
        return ctx.sum(ctx.sum(block.forward(params, v, ctx=ctx) * v, axis=1) + block.logdet(params, v, ctx=ctx))

    assert ctx.owns(grad(loss_x)(x))
    if not isinstance(block, lf.Residual):  # residual params are re-normalised in float64 (see _prepare)

        def loss_p(p):
            return ctx.sum(ctx.sum(block.forward(p, x, ctx=ctx), axis=1) + block.logdet(p, x, ctx=ctx))

        for leaf in _leaves(grad(loss_p)(params)):
            assert ctx.owns(leaf), (name, leaf.dtype)


def _leaves(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _leaves(v)
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            yield from _leaves(v)
    else:
        yield tree


@pytest.mark.parametrize("name", list(BLOCKS))
def test_logdet_matches_jacobian_float64(name):
    block = BLOCKS[name]
    params = block.init(5)
    x = sample_inputs()
    J = lf.jacobian(block, params, x, ctx="float64")
    expected = np.linalg.slogdet(J)[1]
    got = block.logdet(params, x, ctx="float64")
    if name == "residual-elu-series":  # truncated series: within its proven truncation bound
        from lipflow.blocks.residual import series_truncation_bound

        assert np.all(np.abs(got - expected) <= series_truncation_bound(0.5 * 0.5, 4, 40) + 1e-12)
    else:
        assert np.all(np.abs(got - expected) <= 64 * 2.0**-53 * (1 + np.abs(expected)) * 4)


@pytest.mark.parametrize("name", [n for n in BLOCKS if n != "residual-elu-series"])
def test_logdet_matches_jacobian_mp50(name):
    block, ctx = BLOCKS[name], precision("mp50")
    params = block.init(5)
    x = ctx.cast(sample_inputs(2))
    J = lf.jacobian(block, params, x, ctx=ctx)
    got = block.logdet(params, x, ctx=ctx)
    for i in range(2):
        want = ctx.context.log(abs(ctx.context.det(ctx.context.matrix(J[i].tolist()))))
        assert abs(got[i] - want) <= mpmath.mpf(2) ** (-ctx.mantissa_bits + 12) * (1 + abs(want))


@pytest.mark.parametrize("name", list(BLOCKS))
def test_jacobian_matches_central_differences_mp50(name):
    """Central differences with h = 1e-15 at mp50: truncation O(h^2) = 1e-30, rounding
    O(u/h) = 1e-35, so agreement to 1e-28 checks the autograd Jacobian."""
    block, ctx = BLOCKS[name], precision("mp50")
    params = block.init(6)
    x = ctx.cast(sample_inputs(1))
    J = lf.jacobian(block, params, x, ctx=ctx)[0]
    h = ctx.const("1e-15")
    for j in range(block.dim):
        e = ctx.cast(np.eye(block.dim)[j : j + 1]) * h
        column = (block.forward(params, x + e, ctx=ctx) - block.forward(params, x - e, ctx=ctx))[0] / (2 * h)
        for i in range(block.dim):
            if name.startswith("affine-bounded") or "relu" in repr(block):
                continue  # ReLU kinks: differences straddling a kink are not derivatives
            assert abs(column[i] - J[i, j]) < mpmath.mpf("1e-28"), (i, j)


def test_inverse_jacobian_is_inverse_of_forward():
    flow = mixed_flow()
    params = flow.init(7)
    x = sample_inputs(3)
    z = flow.forward(params, x)
    product = np.einsum("nij,njk->nik", lf.jacobian(flow, params, x), lf.jacobian(flow, params, z, direction="inverse"))
    assert np.max(np.abs(product - np.eye(4))) < 1e-9


# ---- bad input --------------------------------------------------------------------------------


def test_wrong_shapes_are_explained():
    block = lf.AdditiveCoupling(4)
    params = block.init(0)
    with pytest.raises(lf.LipflowError, match=r"shape \(n, 4\)"):
        block.forward(params, np.zeros(4))
    with pytest.raises(lf.LipflowError, match="3 features but the block was built for dim=4"):
        block.forward(params, np.zeros((2, 3)))


def test_odd_dimension_with_default_split():
    with pytest.raises(lf.LipflowError, match="dim=3 is odd"):
        lf.AffineCoupling(3)
    lf.AffineCoupling(3, conditioning=(0,))  # the fix the message suggests works


@pytest.mark.parametrize("coeff", [1.0, 1.5, 0.0, -0.1])
def test_residual_coefficient_must_be_below_one(coeff):
    with pytest.raises(lf.LipflowError, match="0 < c < 1"):
        lf.Residual(2, coeff=coeff)


@pytest.mark.parametrize(("low", "high"), [(0.0, 1.0), (-0.5, 1.0), (1.0, 1.0), (1.0, 0.5)])
def test_bounded_scale_range_is_checked(low, high):
    with pytest.raises(lf.LipflowError, match="0 < low < high"):
        lf.Bounded(low, high)


def test_unknown_names_list_alternatives():
    with pytest.raises(lf.LipflowError, match="valid activations"):
        lf.MLP((4,), activation="gelu")
    with pytest.raises(lf.LipflowError, match="unknown scale"):
        lf.AffineCoupling(2, scale="softmax")
    with pytest.raises(lf.LipflowError, match="1-Lipschitz"):
        lf.Residual(2, activation="relu")
    with pytest.raises(lf.LipflowError, match="identity"):
        lf.AffineCoupling(2, scale="identity")


def test_flow_checks_dimensions_and_params():
    with pytest.raises(lf.LipflowError, match="share one dimension"):
        lf.Flow([lf.AdditiveCoupling(2), lf.AdditiveCoupling(4)])
    flow = lf.Flow([lf.AdditiveCoupling(2), lf.Reverse(2)])
    with pytest.raises(lf.LipflowError, match="list of 2 parameter sets"):
        flow.forward([{}], np.zeros((1, 2)))


def test_non_finite_inputs_propagate_without_exceptions():
    flow = mixed_flow()
    params = flow.init(0)
    x = sample_inputs(3)
    x[0, 0], x[1, 2] = np.nan, np.inf
    with np.errstate(all="ignore"):
        z = flow.forward(params, x)
    assert not np.all(np.isfinite(z[0])) and not np.all(np.isfinite(z[1]))
    assert np.all(np.isfinite(z[2]))


def test_empty_batch_returns_empty(precision_name):
    flow = mixed_flow()
    params = flow.init(0)
    ctx = precision(precision_name)
    empty = np.zeros((0, 4))
    assert flow.forward(params, empty, ctx=ctx).shape == (0, 4)
    assert flow.inverse(params, empty, ctx=ctx).shape == (0, 4)
    assert flow.logdet(params, empty, ctx=ctx).shape == (0,)


def test_blocks_are_pure_functions():
    block = BLOCKS["residual-lipswish"]
    params = block.init(0)
    before = [w.copy() for w in params["weights"]]
    block.forward(params, sample_inputs())
    assert all(np.array_equal(a, b) for a, b in zip(before, params["weights"], strict=True))


def test_seeded_init_is_deterministic():
    flow = mixed_flow()
    a, b = flow.init(seed=11), flow.init(seed=11)
    x = sample_inputs()
    assert np.array_equal(flow.forward(a, x), flow.forward(b, x))
    assert not np.array_equal(flow.forward(flow.init(seed=12), x), flow.forward(a, x))


def test_spectral_normalisation_is_exact():
    block = lf.Residual(6, hidden=(16, 16), coeff=0.8)
    weights = block._prepare(block.init(3))["weights"]
    assert all(np.linalg.norm(w, 2) <= 0.8 * (1 + 1e-14) for w in weights)
    assert math.isclose(max(np.linalg.norm(w, 2) for w in weights), 0.8, rel_tol=1e-12)
