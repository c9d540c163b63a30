"""Property tests of your own invertible function and of a lipflow flow, to copy into your suite."""

from __future__ import annotations

import os

import autograd.numpy as anp
import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

import lipflow
import lipflow.strategies as lst
from lipflow.testing import assert_error_bound, assert_invertible, assert_lipschitz_bound, assert_logdet

#: examples per property: a few under the examples smoke test, more when you run it yourself
EXAMPLES = 3 if os.environ.get("LIPFLOW_SMOKE") == "1" else 40


# ---- your model: y = x + 0.5 tanh(x) elementwise; f' in [1, 1.5], so Lip(f^-1) = 1 ------------------


def f(x):
    return x + x.dtype.type(0.5) * anp.tanh(x)  # autograd.numpy: assert_logdet differentiates f


def f_inverse(y):
    x = y.copy()
    for _ in range(30):  # Newton's method
        x = x - (f(x) - y) / (1 + x.dtype.type(0.5) * (1 - np.tanh(x) ** 2))
    return x


def f_logdet(x):
    return np.sum(np.log1p(x.dtype.type(0.5) * (1 - np.tanh(x) ** 2)), axis=1)


@settings(max_examples=EXAMPLES, deadline=None)
@given(ctx=lst.precisions(names=("float16", "float32")), kind=st.sampled_from(lst.INPUT_KINDS), data=st.data())
def test_own_function(ctx, kind, data):
    x = data.draw(lst.inputs(dim=2, ctx=ctx, kind=kind))
    assert_invertible(f, x, inverse=f_inverse, lipschitz_inverse=1.0)
    assert_error_bound(f, x, inverse=f_inverse, lipschitz_inverse=1.0)
    assert_logdet(f, x, logdet=f_logdet)
    assert_lipschitz_bound(f, x, bound=1.5)


# ---- a lipflow flow with fixed (e.g. trained) parameters ---------------------------------------------

FLOW = lipflow.Flow([
    lipflow.AffineCoupling(2, scale="sigmoid", t=lipflow.MLP((8,)), s=lipflow.MLP((8,))),
    lipflow.Reverse(2),
    lipflow.AdditiveCoupling(2, t=lipflow.MLP((8,))),
])
PARAMS = FLOW.init(seed=0)


@settings(max_examples=EXAMPLES, deadline=None)
@given(x=st.one_of(lst.inputs(dim=2, ctx="float16"), lst.adversarial_inputs(FLOW, PARAMS, ctx="float16")))
def test_own_flow(x):
    assert_error_bound(FLOW, x, params=PARAMS)
    assert_logdet(FLOW, x, params=PARAMS)


# ---- any flow satisfying the paper's Section 2 setting -----------------------------------------------


@settings(max_examples=EXAMPLES, deadline=None)
@given(case=lst.lemma_cases(lemma="reconstruction", ctx="float32", depth=(2, 4), n=(1, 3)))
def test_reconstruction_bound(case):
    # far outside the data the exact values can leave every float format (undecided), and an exp
    # scale can have no finite proven Lip(F^-1) (unproven): both check nothing, so count what did
    checked = assert_error_bound(case.model, case.x, params=case.params, ctx=case.ctx,
                                 allow_undecided=True, allow_unproven=True)
    event(f"bound checked on {checked} of {len(case.x)} samples")


if __name__ == "__main__":  # same as: python -m pytest examples/test_own_model.py
    import subprocess
    import sys

    raise SystemExit(subprocess.call([sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"]))
