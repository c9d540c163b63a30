"""Per-layer attribution: the layer that makes the inverse explode is named, the shares bound the
reconstruction error (triangle inequality), and the table and plot are produced."""

from __future__ import annotations

import numpy as np
import pytest

import lipflow as lf
from lipflow.analysis.attribution import layer_attribution
from lipflow.analysis.budget import error_budget
from lipflow.errors import LipflowError


def _stable_coupling() -> lf.AffineCoupling:
    return lf.AffineCoupling(2, scale="sigmoid", t=lf.MLP((4,)), s=lf.MLP((4,)))


def _unstable_coupling() -> lf.AffineCoupling:
    """g = sigmoid(-12) ~ 6e-6: the inverse divides x2 by it (paper Sec. 3.1, Fig. 2)."""
    return lf.AffineCoupling(2, scale="sigmoid", t=lf.Constant(0.37), s=lf.Constant(-12.0))


def flow_with_unstable_layer(position: str) -> lf.Flow:
    head = [_stable_coupling(), lf.Reverse(2), lf.AdditiveCoupling(2, t=lf.MLP((4,))), lf.Reverse(2)]
    if position == "last":
        return lf.Flow([*head, _unstable_coupling()])
    return lf.Flow([*head[:2], _unstable_coupling(), lf.Reverse(2), *head[2:], _stable_coupling()])


X = np.random.default_rng(0).uniform(-2, 2, (4, 2))
AMPLIFICATION = 1.0 / (1.0 / (1.0 + np.exp(12.0)))  # 1/g ~ 1.6e5


@pytest.mark.parametrize("working", ["float16", "float32"])
def test_last_unstable_layer_is_named(working):
    flow = flow_with_unstable_layer("last")
    x = lf.precision(working).cast(X)
    attribution = layer_attribution(flow, flow.init(1), x)
    unstable = len(flow.blocks) - 1
    assert attribution.worst_layer() == unstable
    assert all(attribution.worst_layer(sample=i) == unstable for i in range(len(X)))
    # its forward error is carried back through its own inverse: amplified by ~1/g
    assert np.nanmax(attribution.forward_amplification[unstable]) > 0.1 * AMPLIFICATION
    others = np.delete(attribution.forward_amplification, unstable, axis=0)
    assert np.nanmax(others) < 100
    table = attribution.table()
    marked = [line for line in table.splitlines() if line.endswith("<- largest")]
    assert len(marked) == 1 and marked[0].split()[0] == str(unstable) and "AffineCoupling(sigmoid)" in marked[0]


def test_unstable_layer_inside_the_flow_is_where_amplification_jumps():
    # every layer from the unstable one on has its forward error divided by g on the way back,
    # so the unstable layer is the first with amplification ~1/g; the layers below it stay O(1)
    flow = flow_with_unstable_layer("middle")
    attribution = layer_attribution(flow, flow.init(1), X.astype(np.float32))
    amplification = np.max(np.nan_to_num(attribution.forward_amplification, nan=0.0), axis=1)  # nan: exact layers
    jumped = np.flatnonzero(amplification > 0.1 * AMPLIFICATION)
    assert jumped[0] == 2 and attribution.layers[2] == "AffineCoupling(sigmoid)"
    assert np.all(amplification[:2] < 100)


@pytest.mark.parametrize("working", ["float16", "bfloat16", "float32", "float64"])
def test_shares_bound_the_reconstruction_error(working):
    # the shares are an exact telescoping decomposition of x_delta2 - x, so by the triangle
    # inequality their norms sum to at least ||x - x_delta2|| (the error, computed the same way
    # as error_budget's, to the carrier's rounding)
    flow = flow_with_unstable_layer("middle")
    params = flow.init(1)
    x = lf.precision(working).cast(X)
    attribution = layer_attribution(flow, params, x)
    total = attribution.forward_contribution.sum(axis=0) + attribution.inverse_contribution.sum(axis=0)
    assert np.all(attribution.reconstruction_error <= total * (1 + 1e-12))
    budget = error_budget(flow, params, x, estimates=False)
    np.testing.assert_allclose(attribution.reconstruction_error, budget.reconstruction_error, rtol=1e-12)
    # permutations are exact: no error, no share
    for k, block in enumerate(flow.blocks):
        if block.family == "permutation":
            assert attribution.forward_local[k].max() == 0 and attribution.inverse_contribution[k].max() == 0


def test_exact_flow_has_no_error_to_attribute():
    # a constant shift by a power of two is exact in float32 for these inputs
    flow = lf.Flow([lf.AdditiveCoupling(2, t=lf.Constant(0.5)), lf.Reverse(2),
                    lf.AdditiveCoupling(2, t=lf.Constant(2.0))])
    attribution = layer_attribution(flow, flow.init(0), np.array([[1.0, 0.25]], np.float32))
    assert attribution.reconstruction_error[0] == 0
    assert np.all(attribution.forward_local == 0) and np.all(attribution.inverse_local == 0)


def test_attribution_refuses_what_it_cannot_attribute():
    block = _stable_coupling()
    with pytest.raises(LipflowError, match="needs a Flow"):
        layer_attribution(block, block.init(0), X)
    overflowing = lf.Flow([lf.AffineCoupling(2, scale="identity", s=lf.Constant(100.0), t=lf.Constant(0.0))])
    with pytest.raises(LipflowError, match="overflow"):
        layer_attribution(overflowing, overflowing.init(0), np.array([[1.0, 1000.0]], np.float16))


def test_plot_draws_one_bar_group_per_layer(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from lipflow.plots import plot_attribution

    flow = flow_with_unstable_layer("middle")
    attribution = layer_attribution(flow, flow.init(1), X.astype(np.float32))
    ax = plot_attribution(attribution)
    assert len(ax.patches) == 4 * len(flow.blocks)
    assert [t.get_text() for t in ax.get_xticklabels()][2] == "2: AffineCoupling(sigmoid)"
    assert ax.get_yscale() == "log"
    path = tmp_path / "attribution.png"
    ax.figure.savefig(path, dpi=80)
    assert path.stat().st_size > 1000
    matplotlib.pyplot.close(ax.figure)
