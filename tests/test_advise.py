"""The precision advisor: Figure 1 plans derived by hand, measured plans on held-out samples,
the plan search against brute force, named errors and the CLI."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lipflow as lf
from lipflow.analysis.advisor import NoPlanError, advise, plan_errors
from lipflow.analysis.plan_search import Decision, exact_search, greedy_search
from lipflow.blocks.plan import Plan, load_plan
from lipflow.bounds.rounding_flow import plan_error_bound
from lipflow.cli.main import main
from lipflow.errors import LipflowError
from lipflow.experiments.fig1 import SCALE, SHIFT, toy_block

U16, U32 = 2.0**-11, 2.0**-24


def test_fig1_toy_plans_by_hand() -> None:
    """Three stacked Figure 1 affine blocks, x = (1, 1), round trip, candidates float16/32/64.

    By hand (lem:rounding-blocks rule 4, first order in u, t = 0.123456789, g = 0.1; x1 = 1 is
    exact in every format and is copied, so only x2 carries error):
    forward block with input x2: eps = u (0.1 x2 + 0.1 x2 + t + |0.1 x2 + t|)   [cast of g, product
    rounding, cast of t, sum rounding]; its forward Lipschitz constant is 1 (x1 is copied), and
    Lip(F^-1) = 10^3, so each forward block contributes 10^3 eps (x2 = 1, 0.2235, 0.1458:
    10^3 * 0.547 u, 0.3125 u, 0.2926 u). Inverse block with output x2: eps = u (t + |a| + 10 |a| +
    |x2| ...) = u (1.235 + 3 x2) after the division by 0.1 (a = 0.1 x2), amplified by 10 per inverse
    block applied after it: contributions u (1.235 + 3) * 1, u (1.235 + 3 * 0.2235) * 10,
    u (1.235 + 3 * 0.1458) * 100. So with float16 (u = 2^-11): forward >= 0.14 each; inverse
    2.1e-3 (block 0), 9.3e-3 (block 1), 8.2e-2 (block 2); all float32: about 8e-5. Cheapest plans:
    tol 1e-4: all float32; tol 5e-3: inverse of block 0 in float16; tol 5e-2: inverses of blocks
    0 and 1 in float16. float64 is never needed, float16 never in the forward pass.
    """
    flow = lf.Flow([toy_block("affine")] * 3)
    params = flow.init(0)
    box = (1.0, 1.0)
    t = SHIFT
    x2 = [1.0, SCALE * 1.0 + t, SCALE * (SCALE + t) + t, SCALE * (SCALE * (SCALE + t) + t) + t]
    forward_hand = [1e3 * (2 * SCALE * x2[k] + t + (SCALE * x2[k] + t)) for k in range(3)]
    inverse_hand = [10**k * (t / SCALE + 3 * x2[k]) for k in range(3)]
    bound32 = plan_error_bound(flow, params, Plan.uniform(flow, "float32"), box)
    for k in range(3):  # the code's bound is the hand formula up to higher-order terms
        assert bound32.contributions_forward[k] == pytest.approx(forward_hand[k] * U32, rel=2e-2)
        assert bound32.contributions_inverse[k] == pytest.approx(inverse_hand[k] * U32, rel=2e-2)
    precisions = ("float16", "float32", "float64")
    expected = {
        1e-4: Plan(("float32",) * 3, ("float32",) * 3),
        5e-3: Plan(("float32",) * 3, ("float16", "float32", "float32")),
        5e-2: Plan(("float32",) * 3, ("float16", "float16", "float32")),
    }
    for tol, plan in expected.items():
        advice = advise(flow, params, box=box, tol=tol, precisions=precisions, n_validate=4)
        assert advice.plan == plan, tol
        assert advice.kind == "upper" and advice.error <= tol
        assert advice.measured_max <= advice.error  # the validation run respects the bound
    with pytest.raises(NoPlanError, match="best achievable") as info:
        advise(flow, params, box=box, tol=1e-15, precisions=precisions)
    assert info.value.best > 1e-15 and "block" in info.value.limiting


def _small_flow() -> tuple[lf.Flow, list]:
    flow = lf.Flow([lf.AffineCoupling(2, scale=lf.Bounded(0.5, 1.0), t=lf.MLP((6,)), s=lf.MLP((6,))),
                    lf.Reverse(2), lf.AdditiveCoupling(2, t=lf.MLP((6,))), lf.ActNorm(2)])
    return flow, flow.init(seed=4)


def test_measured_plan_holds_on_held_out_samples() -> None:
    flow, params = _small_flow()
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (48, 2))
    advice = advise(flow, params, x=x, tol=1e-2, mode="measured", n_noise=8)
    assert advice.kind == "estimate" and advice.error <= 1e-2
    assert "measured" in advice.how and "attack" in advice.measured
    assert advice.saved_vs_float64 > 0.5  # some blocks run in 16-bit formats
    held_out = rng.uniform(-1, 1, (200, 2))
    errors = plan_errors(flow, params, advice.plan, held_out, held_out, "reconstruction")
    assert np.all(np.isfinite(errors)) and np.max(errors) <= 1e-2, np.max(errors)


def test_proven_plan_validation_and_report(tmp_path) -> None:
    flow, params = _small_flow()
    advice = advise(flow, params, box=(-1, 1), tol=1e-4, precisions=("bfloat16", "float32", "float64"),
                    n_validate=64)
    assert advice.kind == "upper" and advice.error <= 1e-4
    assert advice.measured_max <= advice.error
    assert advice.search.gap == 0.0 and "exact" in advice.search.method
    table = advice.table()
    assert "bound fwd" in table and "ratio inv" in table
    document = advice.to_dict()
    assert document["kind"] == "upper" and len(document["blocks"]) == 4
    json.dumps(document)
    greedy = advise(flow, params, box=(-1, 1), tol=1e-4, precisions=("bfloat16", "float32", "float64"),
                    search="greedy", n_validate=8)
    assert greedy.error <= 1e-4 and greedy.cost >= advice.cost - 1e-9
    assert greedy.cost - advice.cost <= greedy.search.gap + 1e-6


def test_logdet_target_measured_only() -> None:
    flow, params = _small_flow()
    x = np.random.default_rng(1).uniform(-1, 1, (16, 2))
    with pytest.raises(LipflowError, match="measured"):
        advise(flow, params, box=(-1, 1), tol=1e-3, target="logdet")
    advice = advise(flow, params, x=x, tol=1e-3, target="logdet", mode="measured", n_noise=4)
    assert advice.error <= 1e-3
    for bad in ({"tol": -1.0}, {"tol": 1e-3, "mode": "guess"}, {"tol": 1e-3, "target": "latent"}):
        with pytest.raises(LipflowError):
            advise(flow, params, box=(-1, 1), **bad)


def _brute(decisions, tol, source="float64"):
    best = None
    for choices in itertools.product(*(d.options for d in decisions)):
        cost = err = 0.0
        previous = source
        for d, c in zip(decisions, choices, strict=True):
            cost += d.cost[c]
            err += d.err[c] + d.cast_from(previous, c)
            previous = c
        if err <= tol and (best is None or cost < best[0] - 1e-12):
            best = (cost, choices)
    return best


@settings(max_examples=settings.default.max_examples)
@given(data=st.data(), n=st.integers(1, 5), tol=st.floats(0.05, 3.0))
def test_exact_search_matches_brute_force_and_greedy_gap_holds(data, n, tol) -> None:
    options = ("a", "b", "c")
    decisions = []
    for _ in range(n):
        cost = {o: data.draw(st.floats(0.0, 10.0)) for o in options}
        err = {o: data.draw(st.floats(0.0, 1.0)) for o in options}
        cast = {(q, o): data.draw(st.floats(0.0, 0.2)) for q in ("float64", *options) for o in options}
        decisions.append(Decision(options, cost, err, cast))
    brute = _brute(decisions, tol)
    exact = exact_search(decisions, tol)
    greedy = greedy_search(decisions, tol)
    if brute is None:
        assert exact is None
        return
    assert exact is not None and exact.cost == pytest.approx(brute[0], abs=1e-9)
    if greedy is not None:
        assert greedy.error <= tol + 1e-12
        assert greedy.cost >= brute[0] - 1e-9
        assert greedy.cost - brute[0] <= greedy.gap + 1e-9 and greedy.lower_bound <= brute[0] + 1e-9


def test_cli_advise_writes_plan_table_and_figure(tmp_path, capsys) -> None:
    flow, params = _small_flow()
    lf.save_flow(tmp_path / "model", flow, params)
    out = tmp_path / "advice"
    code = main(["advise", str(tmp_path / "model"), "--tol", "1e-4", "--box", "-1", "1",
                 "--precisions", "bfloat16", "float32", "float64", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "proven" in printed and "forward" in printed
    plan = load_plan(out / "model", flow)
    assert isinstance(plan, Plan)
    assert (out / "plan.png").stat().st_size > 1000 and (out / "plan.txt").is_file()
    np.save(tmp_path / "x.npy", np.random.default_rng(0).uniform(-1, 1, (16, 2)))
    assert main(["advise", str(tmp_path / "model"), "--tol", "1e-2", "--data", str(tmp_path / "x.npy"),
                 "--mode", "measured"]) == 0
    assert main(["advise", str(tmp_path / "model"), "--tol", "1e-15", "--box", "-1", "1"]) == 2
    err = capsys.readouterr().err
    assert "best achievable" in err and "Traceback" not in err
    assert main(["advise", str(tmp_path / "model"), "--tol", "1e-3"]) == 2
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    assert main(["advise", str(tmp_path / "model"), "--tol", "1e-3", "--data", str(tmp_path / "bad.npy")]) == 2
    assert math.isfinite(1.0)


def test_time_cost_model_is_labelled() -> None:
    flow, params = _small_flow()
    advice = advise(flow, params, box=(-1, 1), tol=1e-4, precisions=("float32", "float64"), cost="time",
                    n_validate=8)
    assert "time" in advice.cost_model and advice.cost > 0 and advice.error <= 1e-4
    with pytest.raises(LipflowError, match="cost must be one of"):
        advise(flow, params, box=(-1, 1), tol=1e-4, cost="flops")
