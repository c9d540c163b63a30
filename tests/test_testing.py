"""The public checks of lipflow.testing: they pass on correct models (lipflow blocks and a user's
own NumPy functions), fail with the counterexample's numbers on broken ones, and refuse bad
arguments with a LipflowError."""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import pytest

import lipflow as lf
from lipflow.bounds import lipschitz
from lipflow.errors import LipflowError
from lipflow.testing import assert_error_bound, assert_invertible, assert_lipschitz_bound, assert_logdet

# ---- a user's own invertible function, in plain (autograd-)NumPy ----------------------------------
# f(x) = x + c tanh(x) elementwise; f' in [1, 1 + c], so Lip(f) = 1 + c and Lip(f^-1) = 1.

C = 0.5


def f(x):
    return x + x.dtype.type(C) * anp.tanh(x)


def newton_inverse(c: float = C, steps: int = 30):
    """f^-1 by Newton's method; ``c`` != C plants an off-by-epsilon bug in the inverse."""

    def inverse(y):
        x = y.copy()
        for _ in range(steps):
            x = x - (x + x.dtype.type(c) * np.tanh(x) - y) / (1 + x.dtype.type(c) * (1 - np.tanh(x) ** 2))
        return x

    return inverse


def f_logdet(x):
    return np.sum(np.log1p(x.dtype.type(C) * (1 - np.tanh(x) ** 2)), axis=1)


def f_logdet_missing_a_term(x):
    return np.sum(np.log1p(x.dtype.type(C) * (1 - np.tanh(x) ** 2))[:, :-1], axis=1)


def grid(dtype) -> np.ndarray:
    return np.linspace(-3, 3, 8).astype(dtype).reshape(4, 2)


# ---- a lipflow flow --------------------------------------------------------------------------------


def small_flow() -> tuple[lf.Flow, list]:
    flow = lf.Flow([lf.AffineCoupling(2, scale="sigmoid", t=lf.MLP((4,)), s=lf.MLP((4,))), lf.Reverse(2),
                    lf.AdditiveCoupling(2, t=lf.MLP((4,))), lf.Reverse(2), lf.Residual(2, hidden=(4,), coeff=0.7)])
    return flow, flow.init(5)


def proven_inverse_bound(flow: lf.Flow, params: list, x: np.ndarray) -> float:
    z = np.asarray(flow.forward(params, x.astype(np.float64)))
    return float(lipschitz(flow, params, direction="inverse", box=(z.min(axis=0) - 1, z.max(axis=0) + 1)).value)


# ---- correct models pass --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_user_function_passes_every_check(dtype):
    x = grid(dtype)
    assert_invertible(f, x, inverse=newton_inverse(), lipschitz_inverse=1.0)
    assert_error_bound(f, x, inverse=newton_inverse(), lipschitz_inverse=1.0)
    assert_logdet(f, x, logdet=f_logdet)
    assert_lipschitz_bound(f, x, bound=1 + C)
    assert_lipschitz_bound(newton_inverse(), f(x.astype(np.float64)), bound=1.0)


@pytest.mark.parametrize("working", ["float16", "float32", "float64"])
def test_lipflow_flow_passes_every_check(working):
    flow, params = small_flow()
    x = lf.precision(working).cast(np.random.default_rng(1).uniform(-2, 2, (3, 2)))
    lip_inverse = proven_inverse_bound(flow, params, lf.precision(working).to_float64(x))
    assert_invertible(flow, x, params=params, lipschitz_inverse=lip_inverse)
    assert_error_bound(flow, x, params=params)
    assert_logdet(flow, x, params=params)
    assert_lipschitz_bound(flow, x, params=params, bound=lip_inverse, direction="inverse")


def test_box_bound_as_a_function_of_the_box():
    # a user may bound Lip(f^-1) per box: here the global 1, which holds on every box
    seen = []

    def bound_on(low, high):
        seen.append((low.copy(), high.copy()))
        assert np.all(low <= high)
        return 1.0

    assert_error_bound(f, grid(np.float32), inverse=newton_inverse(), lipschitz_inverse=bound_on)
    assert len(seen) == 4  # one box per sample


# ---- broken models fail, and the message carries the numbers ---------------------------------------


def test_off_by_epsilon_inverse_fails_invertibility_with_numbers():
    with pytest.raises(AssertionError) as failure:
        assert_invertible(f, grid(np.float32), inverse=newton_inverse(c=C + 1e-4))
    message = str(failure.value)
    assert "not invertible at float32 for 4 of 4 samples" in message
    for part in ("x=[", "F(x)=[", "F^-1(F(x))=[", "||x - F^-1(F(x))||=", "> tolerance", "gamma_32"):
        assert part in message, message


def test_error_bound_catches_a_bug_the_a_priori_tolerance_misses():
    # an inverse off by 3e-6 in its constant: within assert_invertible's first-order gamma_32
    # tolerance, but well above the measured bound Lip ||delta|| + ||delta2|| against ground truth
    x = grid(np.float32)
    buggy = newton_inverse(c=C + 3e-6)
    assert_invertible(f, x, inverse=buggy)
    with pytest.raises(AssertionError) as failure:
        assert_error_bound(f, x, inverse=buggy, lipschitz_inverse=1.0)
    message = str(failure.value)
    assert "reconstruction bound violated at float32" in message
    for part in ("x=[", "z_delta=[", "||delta||=", "||delta2||=", "Lip(F^-1)<=1", "bound=", "ratio=", "reference"):
        assert part in message, message
    ratio = float(message.split("ratio=")[1].split(";")[0])
    assert ratio > 10


def test_error_bound_with_a_too_small_lipschitz_claim_fails():
    # with the forward pass rounded to float16, x_delta1 = f^-1(z_delta) is a few ulps from x;
    # claiming Lip(f^-1) = 0 leaves only ||delta2|| in the bound, which cannot cover that
    x = np.linspace(-3, 3, 64).astype(np.float16).reshape(32, 2)
    assert_error_bound(f, x, inverse=newton_inverse(), lipschitz_inverse=1.0)
    with pytest.raises(AssertionError, match=r"Lip\(F\^-1\)<=0, bound="):
        assert_error_bound(f, x, inverse=newton_inverse(), lipschitz_inverse=0.0)


def test_broken_lipflow_inverse_fails_through_ctx_aware_callables():
    # a lipflow flow wrapped as the user's own ctx-aware functions (so float64 work gets an mpmath
    # reference), with the inverse using slightly wrong parameters
    flow, params = small_flow()
    wrong = flow.init(5)
    wrong[0]["t"]["biases"][-1] = wrong[0]["t"]["biases"][-1] + 1e-9

    def forward(x, ctx):
        return flow.forward(params, x, ctx=ctx)

    def good_inverse(y, ctx):
        return flow.inverse(params, y, ctx=ctx)

    def bad_inverse(y, ctx):
        return flow.inverse(wrong, y, ctx=ctx)

    x = np.random.default_rng(2).uniform(-2, 2, (3, 2))
    lip_inverse = proven_inverse_bound(flow, params, x)
    assert_error_bound(forward, x, inverse=good_inverse, lipschitz_inverse=lip_inverse)
    with pytest.raises(AssertionError, match="reconstruction bound violated at float64"):
        assert_error_bound(forward, x, inverse=bad_inverse, lipschitz_inverse=lip_inverse)


def test_wrong_logdet_fails_with_numbers():
    with pytest.raises(AssertionError) as failure:
        assert_logdet(f, grid(np.float32), logdet=f_logdet_missing_a_term)
    message = str(failure.value)
    assert "log-determinant wrong at float32 for 4 of 4 samples" in message
    for part in ("x=[", "computed ", "reference log|det J| = ", "|difference|", "> tolerance"):
        assert part in message, message


def test_logdet_off_by_a_little_more_than_rounding_fails():
    # tolerance gamma_32 (|log det| + dim) ~ 1e-5 in float32: an additive 1e-3 error must fail
    def slightly_off(x):
        return f_logdet(x) + x.dtype.type(1e-3)

    assert_logdet(f, grid(np.float32), logdet=f_logdet)
    with pytest.raises(AssertionError, match="log-determinant wrong"):
        assert_logdet(f, grid(np.float32), logdet=slightly_off)


def test_too_small_lipschitz_claim_fails_with_the_pair():
    x = grid(np.float64)
    assert_lipschitz_bound(f, x, bound=1 + C)
    with pytest.raises(AssertionError) as failure:
        assert_lipschitz_bound(f, x, bound=1.2)
    message = str(failure.value)
    assert "Lipschitz bound 1.2 (forward) is exceeded" in message
    assert "a=[" in message and "b=[" in message and "quotient" in message
    quotient = float(message.split("= ")[1].split(" ")[0])
    assert 1.2 < quotient <= 1 + C


def test_too_small_inverse_lipschitz_claim_fails_for_a_flow():
    # the Figure 1 toy stack: each inverse layer divides x2 by 0.1, Lip(F^-1) = 10^depth exactly
    toy = lf.AffineCoupling(2, t=lf.Constant(0.123456789), s=lf.Constant(0.1), scale="identity")
    flow = lf.Flow([toy] * 2)
    params = flow.init(0)
    z = np.ones((2, 2))
    assert_lipschitz_bound(flow, z, params=params, bound=100.0, direction="inverse")
    with pytest.raises(AssertionError, match=r"Lipschitz bound 50 \(inverse\) is exceeded"):
        assert_lipschitz_bound(flow, z, params=params, bound=50.0, direction="inverse")


def test_overflow_fails_only_when_asked():
    def blows_up(x):
        return x * x.dtype.type(1e4)

    def shrinks(y):
        return y / y.dtype.type(1e4)

    x = np.array([[1.0, 2.0], [10.0, 0.5]], dtype=np.float16)  # 10 * 1e4 overflows float16
    assert_error_bound(blows_up, x, inverse=shrinks, lipschitz_inverse=1e-4)
    with pytest.raises(AssertionError, match="overflow to Inf/NaN"):
        assert_error_bound(blows_up, x, inverse=shrinks, lipschitz_inverse=1e-4, allow_nonfinite=False)
    with pytest.raises(AssertionError, match="not invertible"):
        assert_invertible(blows_up, x, inverse=shrinks)


# ---- bad arguments ----------------------------------------------------------------------------------

BAD_CALLS = [
    ("inverse=", lambda: assert_invertible(f, grid(np.float32))),
    ("needs its params", lambda: assert_invertible(small_flow()[0], grid(np.float32))),
    ("model must be", lambda: assert_invertible("f", grid(np.float32), inverse=newton_inverse())),
    ("shape", lambda: assert_invertible(f, np.ones(3, np.float32), inverse=newton_inverse())),
    ("lipschitz_inverse", lambda: assert_invertible(f, grid(np.float32), inverse=newton_inverse(),
                                                    lipschitz_inverse=-1.0)),
    ("lipschitz_inverse=", lambda: assert_error_bound(f, grid(np.float32), inverse=newton_inverse())),
    ("no reference precision for float64", lambda: assert_error_bound(f, grid(np.float64), inverse=newton_inverse(),
                                                                       lipschitz_inverse=1.0)),
    ("does not compute at the working precision",
     lambda: assert_invertible(lambda x: np.asarray(x, np.float64) * 2, grid(np.float32), inverse=newton_inverse())),
    ("keep", lambda: assert_invertible(lambda x: x[:, :1], grid(np.float32), inverse=newton_inverse())),
    ("logdet=", lambda: assert_logdet(f, grid(np.float32))),
    ("bound >= 0", lambda: assert_lipschitz_bound(f, grid(np.float32), bound=-1.0)),
    ("radius > 0", lambda: assert_lipschitz_bound(f, grid(np.float32), bound=1.0, radius=0.0)),
    ("direction", lambda: assert_lipschitz_bound(f, grid(np.float32), bound=1.0, direction="backward")),
    ("shape", lambda: assert_lipschitz_bound(f, np.ones(3), bound=1.0)),
]


@pytest.mark.parametrize(("named", "call"), BAD_CALLS, ids=[f"{i}" for i in range(len(BAD_CALLS))])
def test_bad_arguments_are_lipflow_errors(named, call):
    with pytest.raises(LipflowError, match=named.replace("(", r"\(").replace(")", r"\)")):
        call()
