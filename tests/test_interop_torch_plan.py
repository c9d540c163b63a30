"""Mixed-precision plans on the torch bridge agree with the NumPy path."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the torch extra: pip install 'lipflow[torch]'")

import lipflow as lf  # noqa: E402
from lipflow.blocks.plan import Plan, run_forward, run_inverse  # noqa: E402
from lipflow.interop.torch_plan import to_torch_plan  # noqa: E402


def test_torch_plan_matches_numpy_plan() -> None:
    flow = lf.Flow([lf.AffineCoupling(4, scale=lf.Bounded(0.5, 1.0)), lf.Reverse(4), lf.AdditiveCoupling(4),
                    lf.ActNorm(4)])
    params = flow.init(1)
    x = np.random.default_rng(0).uniform(-1, 1, (32, 4))
    plan = Plan(forward=("float32", "bfloat16", "float64", "float32"), inverse=("float64", "float32", "float16",
                                                                                  "float64"))
    module = to_torch_plan(flow, params, plan)
    z = module(torch.from_numpy(x))
    assert z.dtype == torch.float32
    expected = run_forward(flow, params, x, plan)
    # same formats per block; torch and NumPy may round a few operations differently
    assert np.max(np.abs(z.double().detach().numpy() - expected)) <= 4 * 2.0**-8 * (1 + np.abs(expected).max())
    back = module.inverse(torch.from_numpy(expected))
    assert back.dtype == torch.float64
    reference = run_inverse(flow, params, expected, plan)
    assert np.max(np.abs(back.detach().numpy() - reference)) <= 16 * 2.0**-11 * (1 + np.abs(reference).max())
    uniform = to_torch_plan(flow, params, Plan.uniform(flow, "float64"))
    assert np.allclose(uniform(torch.from_numpy(x)).detach().numpy(), flow.forward(params, x), rtol=0, atol=1e-12)
