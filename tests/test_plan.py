"""Mixed-precision plans: validation, execution, JSON round trip and the table."""

from __future__ import annotations

import numpy as np
import pytest

import lipflow
from lipflow.blocks.plan import Plan, load_plan, plan_path, run_forward, run_inverse, save_plan
from lipflow.errors import LipflowError


def _flow() -> tuple[lipflow.Flow, list]:
    flow = lipflow.Flow([lipflow.AffineCoupling(4, scale=lipflow.Bounded(0.5, 1.0)), lipflow.ActNorm(4),
                         lipflow.Residual(4, hidden=(8,)), lipflow.Reverse(4)])
    return flow, flow.init(seed=3)


def test_uniform_float64_plan_matches_flow() -> None:
    flow, params = _flow()
    x = np.random.default_rng(0).uniform(-1, 1, (6, 4))
    plan = Plan.uniform(flow, "float64")
    assert np.array_equal(run_forward(flow, params, x, plan), flow.forward(params, x, ctx="float64"))
    z = flow.forward(params, x)
    assert np.array_equal(run_inverse(flow, params, z, plan), flow.inverse(params, z, ctx="float64"))


def test_uniform_low_plan_matches_flow_at_that_precision() -> None:
    flow, params = _flow()
    x = np.random.default_rng(1).uniform(-1, 1, (6, 4))
    for name in ("float16", "bfloat16-strict"):
        plan = Plan.uniform(flow, name)
        ctx = lipflow.precision(name)
        expected = ctx.to_float64(flow.forward(params, ctx.cast(x), ctx=ctx))
        assert np.array_equal(run_forward(flow, params, x, plan), expected)


def test_mixed_plan_casts_at_boundaries() -> None:
    flow, params = _flow()
    x = np.random.default_rng(2).uniform(-1, 1, (5, 4))
    plan = Plan(forward=("float64", "bfloat16", "float64", "float64"), inverse=("float64",) * 4)
    trace = run_forward(flow, params, x, plan, trace=True)
    assert len(trace) == 5
    # block 1 ran in bfloat16: its output is representable in bfloat16
    ctx = lipflow.precision("bfloat16")
    assert np.array_equal(ctx.to_float64(ctx.cast(trace[2])), trace[2])
    assert not np.array_equal(trace[2], flow.forward_trace(params, x)[2])


def test_plan_validation_errors() -> None:
    with pytest.raises(LipflowError, match="unknown precision"):
        Plan(forward=("float8",), inverse=("float32",))
    with pytest.raises(LipflowError, match="one forward and one inverse"):
        Plan(forward=("float32", "float32"), inverse=("float32",))
    with pytest.raises(LipflowError, match="reference precisions"):
        Plan(forward=("mp50",), inverse=("float32",))
    flow, params = _flow()
    with pytest.raises(LipflowError, match="4 blocks"):
        run_forward(flow, params, np.zeros((1, 4)), Plan.uniform(3, "float32"))


def test_plan_json_round_trip_and_table(tmp_path) -> None:
    flow, params = _flow()
    plan = Plan(forward=("bfloat16", "float16", "float32", "float64"), inverse=("float64", "float32", "float16-strict",
                                                                                    "bfloat16"))
    lipflow.save_flow(tmp_path / "model", flow, params)
    written = save_plan(tmp_path / "model", plan, flow)
    assert written == plan_path(tmp_path / "model.json") == tmp_path / "model.plan.json"
    assert load_plan(tmp_path / "model", flow) == plan
    table = plan.table(flow)
    assert "AffineCoupling" in table and "float16-strict" in table
    with pytest.raises(LipflowError, match="entries"):
        load_plan(tmp_path / "model", lipflow.Flow([lipflow.Reverse(4)]))
    (tmp_path / "bad.plan.json").write_text("{")
    with pytest.raises(LipflowError, match="not valid JSON"):
        load_plan(tmp_path / "bad")
