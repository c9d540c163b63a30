"""The public Hypothesis strategies: argument validation and that generated values satisfy
what was asked for (ranges, dtypes, a lemma's assumptions)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lipflow as lf
import lipflow.strategies as lst
from lipflow.blocks import AdditiveCoupling, AffineCoupling, Constant, Flow, Identity, Residual
from lipflow.errors import LipflowError

FLOAT64 = lf.precision("float64")

# ---- keyword validation: a bad argument is a LipflowError that names it -------------------------

_BLOCK = AffineCoupling(2, scale="sigmoid", t=lf.MLP((4,)), s=lf.MLP((4,)))

BAD_ARGUMENTS = [
    ("names", lambda: lst.precisions(names=())),
    ("float99", lambda: lst.precisions(names=("float99",))),
    ("kinds", lambda: lst.scales(kinds=("tanh",))),
    ("kinds", lambda: lst.scales(kinds=())),
    ("min_scale", lambda: lst.scales(min_scale=1.0)),
    ("min_scale", lambda: lst.scales(min_scale=-0.1)),
    ("inf g", lambda: lst.scales(kinds=("exp",), min_scale=0.2)),
    ("width", lambda: lst.conditioners(width=(0, 4))),
    ("width", lambda: lst.conditioners(width=(2.0, 4.0))),
    ("width", lambda: lst.conditioners(width=5)),
    ("layers", lambda: lst.conditioners(layers=(2, 1))),
    ("activations", lambda: lst.conditioners(activations=("gelu",))),
    ("dim", lambda: lst.blocks(dim=3)),
    ("dim", lambda: lst.blocks(dim=0)),
    ("kinds", lambda: lst.blocks(kinds=("glow",))),
    ("forms", lambda: lst.blocks(forms=("nice",))),
    ("coeff", lambda: lst.blocks(coeff=(0.5, 1.0))),
    ("coeff", lambda: lst.blocks(coeff=(0.0, 0.5))),
    ("depth", lambda: lst.flows(depth=(0, 3))),
    ("depth", lambda: lst.flows(depth=(4, 2))),
    ("depth", lambda: lst.models(depth=(1, math.inf))),
    ("conditioner_norm", lambda: lst.params_for(_BLOCK, conditioner_norm=(-1.0, 1.0))),
    ("params_for", lambda: lst.params_for(lambda x: x)),
    ("dim", lambda: lst.inputs(dim=0)),
    ("kind", lambda: lst.inputs(dim=2, kind="adversarial")),
    ("n", lambda: lst.inputs(dim=2, n=(0, 3))),
    ("radius", lambda: lst.inputs(dim=2, radius=-1.0)),
    ("magnitude", lambda: lst.inputs(dim=2, magnitude=(10.0, 1.0))),
    ("overflow", lambda: lst.inputs(dim=2, ctx="float16", magnitude=(10.0, 1e4))),
    ("float99", lambda: lst.inputs(dim=2, ctx="float99")),
    ("n", lambda: lst.adversarial_inputs(_BLOCK, _BLOCK.init(0), n=(3, 1))),
    ("candidates", lambda: lst.adversarial_inputs(_BLOCK, _BLOCK.init(0), n=(1, 8), candidates=4)),
    ("lemma", lambda: lst.lemma_cases(lemma="lem:banach")),
    ("input_kinds", lambda: lst.lemma_cases(input_kinds=("adversarial",))),
    ("depth", lambda: lst.lemma_cases(depth=(0, 2))),
    ("dim", lambda: lst.lemma_cases(dim=3)),
]


@pytest.mark.parametrize(("named", "call"), BAD_ARGUMENTS, ids=[f"{i}-{n}" for i, (n, _) in enumerate(BAD_ARGUMENTS)])
def test_bad_argument_is_named_at_once(named, call):
    # raised when the strategy is built, not when Hypothesis first draws from it
    with pytest.raises(LipflowError, match=named):
        call()


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
@pytest.mark.parametrize("call", [lambda: lst.adversarial_inputs("not a block", {}).example(),
                                  lambda: lst.adversarial_inputs(_BLOCK, _BLOCK.init(0), radius=-1.0).example()])
def test_adversarial_inputs_validates_model_and_radius(call):
    with pytest.raises(LipflowError):
        call()


@given(data=st.data())
def test_scales_honour_min_scale_near_one(data):
    scale = data.draw(lst.scales(kinds=("sigmoid", "bounded", "softclamp"), min_scale=0.95))
    assert scale.range[0] >= 0.95


def test_scales_with_min_scale_exclude_identity():
    with pytest.raises(LipflowError, match="inf g"):
        lst.scales(kinds=("identity",), min_scale=0.2)


# ---- generated values satisfy the request --------------------------------------------------------


@given(ctx=lst.precisions(names=("float16", "bfloat16", "mp30")))
def test_precisions_come_from_names(ctx):
    assert ctx.name in ("float16", "bfloat16", "mp30")


@given(data=st.data(), min_scale=st.sampled_from([0.0, 0.05, 0.2, 0.5]))
def test_scales_respect_kind_and_min_scale(data, min_scale):
    kinds = ("sigmoid", "bounded", "softclamp") if min_scale > 0 else lst.SCALE_KINDS
    scale = data.draw(lst.scales(kinds=kinds, min_scale=min_scale))
    assert scale.kind in kinds
    low, high = scale.range
    assert low >= min_scale and high > low
    # the range is attained: g on a wide grid stays inside it (rounding aside)
    if scale.kind != "identity":
        g = np.asarray(scale.g(np.linspace(-40, 40, 401), FLOAT64))
        assert np.all(g >= low * (1 - 1e-15)) and np.all(g <= high * (1 + 1e-15))


@given(net=lst.conditioners(width=(3, 5), layers=(1, 3), activations=("tanh", "elu")))
def test_conditioners_respect_width_layers_and_activation(net):
    assert 1 <= len(net.hidden) <= 3 and all(3 <= h <= 5 for h in net.hidden)
    assert net.activation in ("tanh", "elu")


@given(block=lst.blocks(dim=4, kinds=("affine",), scale_kinds=("bounded", "sigmoid", "identity"), min_scale=0.3,
                        forms=("glow",), width=(2, 3)))
def test_affine_blocks_respect_scale_form_and_width(block):
    assert isinstance(block, AffineCoupling) and block.dim == 4 and block.form == "glow"
    assert block.scale.kind in ("bounded", "sigmoid", "identity")
    if isinstance(block.scale, Identity):  # the constant scale of Figure 1: g = s itself
        assert isinstance(block.s, Constant) and block.s.value >= 0.3
    else:
        assert block.scale.range[0] >= 0.3
        assert all(2 <= h <= 3 for h in block.t.hidden + block.s.hidden)


@given(block=lst.blocks(dim=2, kinds=("residual",), coeff=(0.4, 0.6)))
def test_residual_blocks_respect_coefficient(block):
    assert isinstance(block, Residual) and 0.4 <= block.coeff <= 0.6


def _depth(flow: Flow) -> int:
    return sum(1 for b in flow.blocks if b.family != "permutation")


@given(flow=lst.flows(dim=2, depth=(3, 5), kinds=("additive", "residual")))
def test_flows_respect_depth_and_kinds(flow):
    assert 3 <= _depth(flow) <= 5
    assert {type(b) for b in flow.blocks if b.family != "permutation"} <= {AdditiveCoupling, Residual}


@given(pair=lst.models(dim=2, depth=(1, 4), kinds=("additive", "affine"), conditioner_norm=(0.2, 0.7)))
def test_params_have_the_requested_spectral_norms(pair):
    flow, params = pair
    checked = 0
    for block, p in zip(flow.blocks, params, strict=True):
        for key in ("t", "s"):
            for w in (p.get(key) or {}).get("weights", []) if isinstance(p, dict) else []:
                sigma = float(np.linalg.norm(w, 2))
                assert 0.2 * (1 - 1e-12) <= sigma <= 0.7 * (1 + 1e-12), (type(block).__name__, key, sigma)
                checked += 1
    assert checked >= 1  # every coupling here has an MLP shift


@given(ctx=lst.precisions(names=("float16", "bfloat16", "float32", "float64")), data=st.data())
def test_inputs_have_the_dtype_and_range_asked_for(ctx, data):
    x = data.draw(lst.inputs(dim=3, ctx=ctx, n=(2, 5), radius=2.5))
    assert x.dtype == ctx.dtype and x.shape[1] == 3 and 2 <= len(x) <= 5
    assert np.all(np.abs(ctx.to_float64(x)) <= 2.5)
    far = data.draw(lst.inputs(dim=3, ctx=ctx, kind="out_of_distribution", magnitude=(50.0, 500.0)))
    norms = np.linalg.norm(ctx.to_float64(far), axis=1)
    slack = 4 * ctx.unit_roundoff  # rounding each coordinate to ctx
    assert np.all(norms >= 50.0 * (1 - slack)) and np.all(norms <= 500.0 * (1 + slack))


def _steep_sigmoid_block() -> tuple[AffineCoupling, dict]:
    """g(s(x1)) = sigmoid(10 x1): on [-3, 3] the scale ranges from ~1e-13 to ~1."""
    block = AffineCoupling(2, scale="sigmoid", t=lf.MLP(()), s=lf.MLP(()))
    params = block.init(0)
    params["s"] = {"weights": [np.array([[10.0]])], "biases": [np.array([0.0])]}
    return block, params


def _scale_at(block: AffineCoupling, params: dict, x: np.ndarray) -> np.ndarray:
    prepared = FLOAT64.cast(block._prepare(params))
    _, g, _ = block.shift_and_log_scale(prepared, block.split(x)[0], FLOAT64)
    return np.min(np.asarray(g), axis=1)


@given(data=st.data(), ctx=lst.precisions(names=("float16", "float32")))
def test_adversarial_inputs_make_the_scale_nearly_vanish(data, ctx):
    block, params = _steep_sigmoid_block()
    x = data.draw(lst.adversarial_inputs(block, params, ctx=ctx, n=(2, 4), radius=3.0))
    assert x.dtype == ctx.dtype and 2 <= len(x) <= 4
    g = _scale_at(block, params, ctx.to_float64(x))
    # the best 4 of 256 uniform points on [-3, 3]: x1 < -2.5 fails with probability < 1e-9
    assert np.all(g < 1.0 / (1.0 + math.exp(25.0)))
    typical = _scale_at(block, params, ctx.to_float64(data.draw(lst.inputs(dim=2, ctx=ctx, n=(64, 64)))))
    assert np.max(g) < np.median(typical) * 1e-6


# ---- lemma_cases: each lemma's assumptions hold ---------------------------------------------------


@given(case=lst.lemma_cases(lemma="reconstruction", ctx="float16", depth=(2, 4), n=(1, 3)))
def test_reconstruction_cases(case):
    assert isinstance(case.model, Flow) and 2 <= _depth(case.model) <= 4
    assert case.x.dtype == np.float16 and case.box is None and 1 <= len(case.x) <= 3
    assert np.all(np.isfinite(case.ctx.to_float64(case.x)))
    case.model._check_params(case.params)


@given(case=lst.lemma_cases(lemma="lem:additive-tight", ctx="float32"))
def test_additive_tight_cases(case):
    # a global bound: one additive coupling with a Lipschitz (MLP) shift, any finite inputs
    assert isinstance(case.model, AdditiveCoupling) and case.box is None
    assert np.all(np.isfinite(case.x)) and case.x.dtype == np.float32


@given(case=lst.lemma_cases(lemma="lem:affine-local", ctx="bfloat16", conditioner_norm=(0.1, 0.5)))
def test_affine_local_cases(case):
    # one affine coupling, a finite box, every stored input inside it
    assert isinstance(case.model, AffineCoupling)
    low, high = case.box
    x = case.ctx.to_float64(case.x)
    assert np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)
    assert np.all((low <= x) & (x <= high))


@given(case=lst.lemma_cases(lemma="lem:residual", ctx="float64"))
def test_residual_cases(case):
    # F = x + g(x) with Lip(g) <= c < 1: every weight as used has norm <= c (up to the SVD's ulps)
    block = case.model
    assert isinstance(block, Residual) and 0 < block.coeff < 1
    for w in block._prepare(case.params)["weights"]:
        assert np.linalg.norm(w, 2) <= block.coeff * (1 + 1e-12)


def test_lemma_cases_refuses_flow_options_for_a_single_block_lemma():
    with pytest.raises(LipflowError, match="depth"):
        lst.lemma_cases(lemma="lem:residual", depth=(2, 3))


def test_assert_error_bound_refuses_a_claimed_lipschitz_for_a_block():
    from lipflow.testing import assert_error_bound

    with pytest.raises(LipflowError, match="lipschitz_inverse"):
        assert_error_bound(_BLOCK, np.zeros((1, 2)), params=_BLOCK.init(0), lipschitz_inverse=1.0)
