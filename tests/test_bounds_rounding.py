"""Rounding-error bounds (lem:rounding-blocks, lem:rounding-composition) against ground truth.

Each property counts its decided cases (a computed value compared with the reference) and its
violations; the test fails on any violation and reports how many cases were decided. The ``ci``
Hypothesis profile decides more than 10^4 cases per property across block kinds, depths, float16
and bfloat16 (NumPy/ml_dtypes and strict) and float32.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lipflow as lf
from lipflow.analysis.reference import reference_forward, reference_inverse
from lipflow.blocks.plan import Plan, run_forward, run_inverse
from lipflow.bounds import Box
from lipflow.bounds.rounding import arithmetic_model, block_rounding_error, cast_error, norm_upper
from lipflow.bounds.rounding_flow import plan_error_bound
from lipflow.errors import LipflowError, NonConvergenceWarning

LOW = ("float16", "bfloat16", "float16-strict", "bfloat16-strict", "float32")
PLAN_CONTEXTS = (*LOW, "float64")
EXAMPLES = settings.default.max_examples  # 30 (dev) or 200 (ci)
#: decided cases each property must reach: >= 10^4 in the ci profile, a smoke count in dev
REQUIRED = 10**4 if EXAMPLES >= 200 else 10 * EXAMPLES


def _block(kind: str, dim: int) -> lf.Block:
    return {
        "additive": lambda: lf.AdditiveCoupling(dim, t=lf.MLP((6,), "tanh")),
        "affine-sigmoid": lambda: lf.AffineCoupling(dim, scale=lf.Sigmoid(shift=2.0), t=lf.MLP((6,)),
                                                    s=lf.MLP((6,), "lipswish")),
        "affine-bounded-glow": lambda: lf.AffineCoupling(dim, scale=lf.Bounded(0.5, 1.0), form="glow",
                                                         t=lf.MLP((6,), "relu"), s=lf.MLP((6,), "elu")),
        "affine-exp": lambda: lf.AffineCoupling(dim, scale="exp", s=lf.MLP((6,), init_scale=0.3)),
        "affine-softclamp": lambda: lf.AffineCoupling(dim, scale=lf.SoftClamp(1.5), s=lf.MLP((6,), "swish")),
        "affine-biased": lambda: lf.AffineCoupling(dim, scale=lf.Sigmoid(bias=0.1), s=lf.MLP((6,), "softplus")),
        "residual": lambda: lf.Residual(dim, hidden=(6,), coeff=0.7),
        "residual-elu": lambda: lf.Residual(dim, hidden=(6,), activation="elu", coeff=0.5),
        "actnorm": lambda: lf.ActNorm(dim),
        "permutation": lambda: lf.Permutation(dim, seed=1),
    }[kind]()


KINDS = ("additive", "affine-sigmoid", "affine-bounded-glow", "affine-exp", "affine-softclamp", "affine-biased",
         "residual", "residual-elu", "actnorm", "permutation")


def _truth(block: lf.Block, params, x: np.ndarray, direction: str, ctx) -> tuple[np.ndarray, np.ndarray]:
    reference = (reference_forward if direction == "forward" else reference_inverse)(block, params, x, working=ctx)
    return reference.as_float64(), reference.error_estimate


def test_block_bound_never_violated() -> None:
    stats = {"cases": 0, "violations": 0, "refused": 0}
    kinds = set()

    @settings(max_examples=EXAMPLES)
    @given(kind=st.sampled_from(KINDS), name=st.sampled_from(LOW), direction=st.sampled_from(("forward", "inverse")),
           seed=st.integers(0, 10**6), centre=st.floats(-1.0, 1.0), half=st.floats(0.01, 1.5))
    def check(kind: str, name: str, direction: str, seed: int, centre: float, half: float) -> None:
        block = _block(kind, 4)
        params = block.init(seed)
        box = Box.cube(centre - half, centre + half, 4)
        ctx = lf.precision(name)
        try:
            e = block_rounding_error(block, params, box, name, direction)
        except LipflowError:
            stats["refused"] += 1
            return
        rng = np.random.default_rng(seed)
        x = ctx.to_float64(ctx.cast(rng.uniform(box.lo, box.hi, (80, 4))))
        x = x[np.all((x >= box.lo) & (x <= box.hi), axis=1)][:64]  # stored values inside the box
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonConvergenceWarning)
            run = block.forward if direction == "forward" else block.inverse
            computed = ctx.to_float64(run(params, ctx.cast(x), ctx=ctx))
            exact, ref_error = _truth(block, params, x, direction, ctx)
        error = np.abs(computed - exact)
        bad = np.any(error > e + ref_error[:, None], axis=1) | ~np.all(np.isfinite(computed), axis=1)
        stats["cases"] += len(x)
        stats["violations"] += int(np.sum(bad))
        if np.any(bad):
            print("VIOLATION", kind, name, direction, seed, centre, half, np.max(error - e))
        kinds.add(kind)

    check()
    assert stats["violations"] == 0, stats
    assert stats["cases"] >= REQUIRED, stats
    print(f"block rounding bounds: {stats['cases']} cases decided, 0 violations, {stats['refused']} refused; "
          f"kinds {sorted(kinds)}")


def test_plan_bound_never_violated() -> None:
    stats = {"cases": 0, "violations": 0, "refused": 0}

    @settings(max_examples=max(6, EXAMPLES // 3))
    @given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=5),
           forward=st.lists(st.sampled_from(PLAN_CONTEXTS), min_size=5, max_size=5),
           inverse=st.lists(st.sampled_from(PLAN_CONTEXTS), min_size=5, max_size=5),
           target=st.sampled_from(("reconstruction", "forward", "inverse")), seed=st.integers(0, 10**6),
           half=st.floats(0.05, 1.0))
    def check(kinds, forward, inverse, target, seed, half) -> None:
        flow = lf.Flow([_block(k, 4) for k in kinds])
        params = flow.init(seed)
        n = len(flow)
        plan = Plan(forward=tuple(forward[:n]), inverse=tuple(inverse[:n]))
        try:
            bound = plan_error_bound(flow, params, plan, (-half, half), target=target)
        except LipflowError:
            stats["refused"] += 1
            return
        x = np.random.default_rng(seed).uniform(-half, half, (64 if EXAMPLES <= 30 else 192, 4))
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", NonConvergenceWarning)
            if target == "reconstruction":
                value = run_inverse(flow, params, run_forward(flow, params, x, plan), plan)
                truth, ref = x, np.zeros(len(x))
            elif target == "forward":
                value = run_forward(flow, params, x, plan)
                r = reference_forward(flow, params, x, working="float32")
                truth, ref = r.as_float64(), r.error_estimate
            else:
                value = run_inverse(flow, params, x, plan)
                r = reference_inverse(flow, params, x, working="float32")
                truth, ref = r.as_float64(), r.error_estimate
        errors = np.linalg.norm(value - truth, axis=1)
        bad = ~(errors <= bound.value + ref)
        stats["cases"] += len(x)
        stats["violations"] += int(np.sum(bad))

    check()
    assert stats["violations"] == 0, stats
    assert stats["cases"] >= REQUIRED, stats
    print(f"plan rounding bounds: {stats['cases']} cases decided, 0 violations, {stats['refused']} refused")


def test_cast_error_exact_for_representable() -> None:
    box = Box(np.array([1.0, 0.5, -0.1]), np.array([1.0, 0.75, 0.1]))
    e = cast_error(box, "float64", "float16")
    assert e[0] == 0.0 and e[1] > 0 and e[2] > 0  # 1.0 is a float16; the intervals are not points
    assert np.all(cast_error(box, "float16", "float32") == 0)
    assert np.all(cast_error(box, "bfloat16", "float16-strict")[1:] > 0)
    assert np.all(cast_error(box, "float16-strict", "float16") == 0)
    x = np.random.default_rng(0).uniform(-0.1, 0.1, 1000)
    for name in ("float16", "bfloat16", "float32"):
        ctx = lf.precision(name)
        bound = cast_error(Box.cube(-0.1, 0.1, 1), "float64", name)[0]
        assert np.max(np.abs(ctx.to_float64(ctx.cast(x)) - x)) <= bound
    with pytest.raises(LipflowError, match="overflow"):
        cast_error(Box.cube(-1e6, 1e6, 2), "float32", "float16")


@pytest.mark.parametrize("name", (*LOW, "float64"))
def test_model_covers_numpy_and_strict_semantics(name: str) -> None:
    """The dot and library-function clauses of the model hold for the semantics actually used."""
    ctx, model = lf.precision(name), arithmetic_model(name)
    rng = np.random.default_rng(1)
    for k in (1, 7, 64):
        a = ctx.to_float64(ctx.cast(rng.standard_normal((50, k))))
        b = ctx.to_float64(ctx.cast(rng.standard_normal((k, 3))))
        got = ctx.to_float64(ctx.dot(ctx.cast(a), ctx.cast(b)))
        exact = a.astype(np.longdouble) @ b.astype(np.longdouble)
        allowed = model.gamma(k) * (np.abs(a) @ np.abs(b)) + 2 * k * model.eta
        assert np.all(np.abs(got - exact) <= allowed * (1 + 1e-12))
    z = ctx.to_float64(ctx.cast(rng.uniform(-8, 8, 4000)))
    for fn, ref in ((ctx.exp, np.exp), (ctx.tanh, np.tanh)):
        got = ctx.to_float64(fn(ctx.cast(z))).astype(np.longdouble)
        exact = ref(z.astype(np.longdouble))
        assert np.all(np.abs(got - exact) <= model.lib * np.abs(exact) + model.eta + 1e-18 * np.abs(exact))


def test_bounds_scale_with_unit_roundoff() -> None:
    block = lf.AffineCoupling(4, scale=lf.Bounded(0.5, 1.0))
    params = block.init(0)
    box = Box.cube(-1, 1, 4)
    values = {n: norm_upper(block_rounding_error(block, params, box, n)) for n in ("bfloat16", "float16", "float32")}
    assert values["bfloat16"] > values["float16"] > values["float32"] > 0
    ratio = values["float16"] / values["float32"]
    assert 2**12 < ratio < 2**14  # u16 / u32 = 2^13, up to the cast and rounding terms
    with pytest.raises(LipflowError, match="InvertibleLinear"):
        block_rounding_error(lf.InvertibleLinear(4), lf.InvertibleLinear(4).init(0), box, "float32")
    with pytest.raises(LipflowError, match="no rounding model"):
        arithmetic_model("mp50")
