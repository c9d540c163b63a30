"""Branch and bound over sub-boxes (lem:box-subdivision): the bound dominates every sampled
Jacobian norm on the box, never grows with the budget, tightens wide boxes, and is honest about
sub-boxes without a finite bound."""

from __future__ import annotations

import itertools
import math
import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lipflow
from lipflow.analysis.jacobian import jacobian
from lipflow.bounds import Box, estimate
from lipflow.bounds.flow import flow_lipschitz
from lipflow.errors import LipflowError, UnboundedError

pytest.importorskip("flint", reason="needs the certified extra: pip install 'lipflow[certified]'")

from lipflow.bounds.subdivide import subdivide

CASES = settings(max_examples=200, deadline=None) if os.environ.get("HYPOTHESIS_PROFILE") == "ci" \
    else settings(max_examples=8, deadline=None)
#: the sampled side is float64 autograd: a relative slack of 1e-12 covers its rounding
ROUNDING = 1e-12
DIM = 4


def _flow(kinds: list[str], seed: int) -> tuple[lipflow.Flow, list]:
    make = {
        "affine": lambda k: lipflow.AffineCoupling(DIM, s=lipflow.MLP(hidden=(4,)), t=lipflow.MLP(hidden=(4,)),
                                                   scale=lipflow.Sigmoid(shift=2.0)),
        "exp": lambda k: lipflow.AffineCoupling(DIM, s=lipflow.MLP(hidden=(3,), activation="swish"),
                                                scale=lipflow.Exp(), form="glow"),
        "additive": lambda k: lipflow.AdditiveCoupling(DIM, t=lipflow.MLP(hidden=(4,))),
        "linear": lambda k: lipflow.InvertibleLinear(DIM, seed=seed + k),
        "reverse": lambda k: lipflow.Reverse(DIM),
        "actnorm": lambda k: lipflow.ActNorm(DIM),
        "residual": lambda k: lipflow.Residual(DIM, hidden=(4,), coeff=0.7),
    }
    flow = lipflow.Flow([make[kind](k) for k, kind in enumerate(kinds)])
    return flow, flow.init(seed)


def _domain_box(flow, params, centre, half, direction) -> Box:
    if direction == "inverse":  # a box of outputs: the domain of F^-1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            centre = np.asarray(flow.forward(params, centre[None, :]))[0]
    return Box(centre - half, centre + half)


def _sampled_norms(flow, params, box, direction, rng, n=64) -> np.ndarray:
    points = box.lo + (box.hi - box.lo) * rng.random((n, box.dim))
    corners = np.where(rng.random((n // 4, box.dim)) < 0.5, box.lo, box.hi)
    with np.errstate(all="ignore"):
        jac = np.asarray(jacobian(flow, params, np.vstack([points, corners]), ctx="float64", direction=direction))
    return np.linalg.norm(jac, ord=2, axis=(1, 2))


KINDS = st.sampled_from(["affine", "exp", "additive", "linear", "reverse", "actnorm", "residual"])


@CASES
@given(st.lists(KINDS, min_size=1, max_size=6), st.integers(0, 2**16),
       st.lists(st.floats(-1.5, 1.5), min_size=DIM, max_size=DIM), st.sampled_from([1e-3, 0.05, 0.3]),
       st.sampled_from(["forward", "inverse"]), st.sampled_from([1, 4, 12]))
def test_subdivision_bound_dominates_sampled_jacobians(kinds, seed, centre, half, direction, max_boxes):
    flow, params = _flow(kinds, seed)
    box = _domain_box(flow, params, np.array(centre), half, direction)
    result = subdivide(flow, params, box=box, direction=direction, tol=1.05, max_boxes=max_boxes)
    assert result.boxes <= max_boxes and result.evaluations == 2 * result.boxes - 1
    norms = _sampled_norms(flow, params, box, direction, np.random.default_rng(seed))
    if math.isfinite(result.upper):
        assert np.nanmax(norms) <= result.upper * (1 + ROUNDING), (kinds, result)
        assert result.lower <= result.upper * (1 + ROUNDING)
    # every piece's bound holds on that piece (the cover is checked through its pieces' points)
    for piece, value in result.pieces:
        if math.isfinite(value):
            inside = _sampled_norms(flow, params, piece, direction, np.random.default_rng(seed + 1), n=8)
            assert np.nanmax(inside) <= value * (1 + ROUNDING)
    volume = sum(float(np.prod(p.hi - p.lo)) for p, _ in result.pieces)
    assert volume == pytest.approx(float(np.prod(box.hi - box.lo)), rel=1e-9)


def _wide_case():
    flow, params = _flow(["affine", "linear", "affine", "actnorm", "affine"], 6)
    x = np.array([0.3, -0.4, 0.2, 0.1])
    return flow, params, Box(x - 0.5, x + 0.5)


def test_refinement_never_increases_with_budget():
    flow, params, box = _wide_case()
    for direction in ("forward", "inverse"):
        domain = box if direction == "forward" else _domain_box(flow, params, box.mid_rad()[0], 0.3, "inverse")
        uppers = [subdivide(flow, params, box=domain, direction=direction, tol=1.0, max_boxes=m).upper
                  for m in (1, 2, 4, 9)]
        assert all(b <= a for a, b in itertools.pairwise(uppers)), (direction, uppers)


def test_subdivision_tightens_a_wide_box():
    flow, params, box = _wide_case()
    lower = estimate(flow, params, box=box, n_samples=64, n_starts=2, maxiter=20).value
    one = subdivide(flow, params, box=box, tol=1.0, max_boxes=1)
    many = subdivide(flow, params, box=box, tol=1.2, max_boxes=16)
    assert lower <= many.upper * (1 + ROUNDING)
    assert many.upper / lower < 0.7 * (one.upper / lower), (one.upper, many.upper, lower)
    assert many.upper / lower < 2.5
    assert many.lower <= lower * (1 + 1e-9)  # the centres' estimate cannot beat the optimised one
    bound = many.bound()
    assert bound.kind == "upper" and bound.label == "lem:box-subdivision" and bound.value == many.upper
    assert "estimate" in bound.assumptions[1]


def test_tolerance_stops_the_refinement():
    flow, params, box = _wide_case()
    result = subdivide(flow, params, box=box, tol=3.0, max_boxes=200)
    assert result.converged and result.reason == "tolerance"
    assert result.upper <= 3.0 * result.lower and result.boxes < 200
    # the default flow bound is the same branch and bound with splits pieces
    default = flow_lipschitz(flow, params, box=box, splits=result.boxes, tol=3.0, method="meanvalue")
    assert default.value == result.upper


def test_unbounded_pieces_are_split_first_and_reported():
    flow, params = _flow(["exp", "linear", "exp", "linear", "exp"], 0)
    centre = np.zeros(DIM)
    box = Box(centre - 60.0, centre + 60.0)  # exp scales overflow float64 on most of it
    result = subdivide(flow, params, box=box, max_boxes=3)
    if math.isfinite(result.upper):
        pytest.skip("this flow has a finite bound on the whole box")
    assert any(not math.isfinite(v) for _, v in result.pieces)
    with pytest.raises(UnboundedError, match="no finite bound on"):
        result.bound()
    with pytest.raises(UnboundedError):
        flow_lipschitz(flow, params, box=box, splits=3, method="meanvalue")


def test_point_box_stops():
    flow, params = _flow(["affine", "linear"], 1)
    result = subdivide(flow, params, box=Box.point([0.1, 0.2, 0.3, 0.4]), tol=1.0, max_boxes=10)
    assert result.boxes == 1 and result.reason in ("point", "tolerance")
    assert result.upper >= result.lower > 0


@pytest.mark.parametrize("options, message", [
    ({"tol": 0.5}, "tol must be"), ({"tol": math.nan}, "tol must be"), ({"max_boxes": 0}, "max_boxes"),
    ({"max_boxes": 2.5}, "max_boxes"), ({"max_seconds": -1}, "max_seconds"), ({"direction": "up"}, "direction"),
])
def test_bad_input_is_refused(options, message):
    flow, params = _flow(["affine", "linear"], 1)
    with pytest.raises(LipflowError, match=message):
        subdivide(flow, params, box=Box.cube(-1, 1, DIM), **options)
    with pytest.raises(LipflowError, match="needs a Box"):
        subdivide(flow, params, box=(-1, 1))
    with pytest.raises(LipflowError, match="coordinates"):
        subdivide(flow, params, box=Box.cube(-1, 1, DIM + 1))


def test_inverse_without_a_contractive_branch_is_unbounded_at_once(monkeypatch):
    import dataclasses

    import lipflow.bounds.subdivide as module

    flow, params = _flow(["residual", "linear"], 0)
    real = module.prepare
    # a residual branch whose certified Lip(g) is not below 1: no piece can be bounded for F^-1
    monkeypatch.setattr(module, "prepare", lambda *a, **k: dataclasses.replace(real(*a, **k), lips=(1.0, None)))
    result = subdivide(flow, params, box=Box.cube(-0.1, 0.1, DIM), direction="inverse", max_boxes=50)
    assert result.reason == "unbounded" and result.evaluations == 0 and result.upper == math.inf
    with pytest.raises(UnboundedError):
        result.bound()
    assert math.isfinite(subdivide(flow, params, box=Box.cube(-0.1, 0.1, DIM), max_boxes=2).upper)  # forward
