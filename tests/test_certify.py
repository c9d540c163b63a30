"""Certified enclosures: they contain high-precision values and bound sampled Jacobians."""

from __future__ import annotations

import numpy as np
import pytest

import lipflow
from lipflow.analysis import jacobian_spectrum
from lipflow.errors import LipflowError
from lipflow.precision import precision

pytest.importorskip("flint", reason="needs the certified extra: pip install 'lipflow[certified]'")

from lipflow.analysis.certify import certify_invertible, check_reconstruction, enclose

MP = precision("mp40")  # ~136 bits: far tighter than any enclosure checked here
U64 = 2.0**-53
BOX = ([-1.0, -0.5], [0.5, 1.0])


def small_flow(scale="sigmoid", form="realnvp") -> lipflow.Flow:
    blocks = [
        lipflow.AffineCoupling(
            2,
            conditioning="first" if i % 2 == 0 else "second",
            scale=scale,
            form=form,
            t=lipflow.MLP((6,), activation="tanh"),
            s=lipflow.MLP((6,), activation="relu" if i % 2 else "elu"),
        )
        for i in range(3)
    ]
    return lipflow.Flow([*blocks, lipflow.ActNorm(2), lipflow.Reverse(2), lipflow.AdditiveCoupling(2)])


def sample(n: int, seed: int = 0) -> np.ndarray:
    low, high = (np.asarray(b) for b in BOX)
    return low + (high - low) * np.random.default_rng(seed).uniform(size=(n, 2))


@pytest.mark.parametrize("form", ["realnvp", "glow"])
@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_enclosure_contains_high_precision_values(form: str, direction: str) -> None:
    flow = small_flow(scale=lipflow.Bounded(0.5, 1.0), form=form)
    params = flow.init(0)
    enclosure = enclose(flow, params, BOX, direction=direction, subdivisions=3)
    assert np.all(np.isfinite(enclosure.low)) and np.all(np.isfinite(enclosure.high))
    points = sample(40)
    apply = flow.forward if direction == "forward" else flow.inverse
    values = MP.to_float64(apply(params, MP.cast(points), ctx=MP))  # within 2^-52 relative of exact
    slack = 2 * U64 * np.abs(values)
    assert np.all(enclosure.low <= values + slack) and np.all(values - slack <= enclosure.high)


@pytest.mark.parametrize("scale", ["sigmoid", "exp", lipflow.Bounded(0.5, 1.0), lipflow.SoftClamp(1.5)])
def test_certificate_bounds_sampled_jacobians(scale) -> None:
    flow = small_flow(scale=scale)
    params = flow.init(1)
    certificate = certify_invertible(flow, params, BOX, subdivisions=4)
    assert certificate.invertible
    spectrum = jacobian_spectrum(flow, params, sample(200, seed=2))
    # float64 Jacobians and their SVD err by far less than 64 d u relative here (cond < 1e3)
    slack = 1 + 64 * 2 * U64 * float(np.max(spectrum.cond))
    assert np.max(spectrum.sigma_max) <= certificate.lipschitz_forward * slack
    assert np.max(1 / spectrum.sigma_min) <= certificate.lipschitz_inverse * slack
    assert "invertible on the box" in str(certificate)


def test_min_scale_is_a_lower_bound() -> None:
    flow = small_flow()
    params = flow.init(2)
    certificate = certify_invertible(flow, params, BOX, subdivisions=2)
    trace = flow.forward_trace(params, sample(100, seed=3))
    for index, block in enumerate(flow.blocks):
        if isinstance(block, lipflow.AffineCoupling):
            x1 = block.split(trace[index])[0]
            p = flow._prepare(params)[index]
            _, g, _ = block.shift_and_log_scale(p, x1, precision("float64"))
            assert certificate.min_scale[index] <= np.min(g) * (1 + 4 * U64)


@pytest.mark.parametrize("working", ["float16", "float32"])
def test_reconstruction_bound_checked_with_certified_numbers(working: str) -> None:
    flow = small_flow()
    params = flow.init(3)
    for point in sample(3, seed=4):
        check = check_reconstruction(flow, params, point, ctx=working)
        assert check.holds
        assert check.bound >= check.delta2_upper


def test_bad_input() -> None:
    flow = small_flow()
    params = flow.init(0)
    with pytest.raises(LipflowError, match="low <= high"):
        certify_invertible(flow, params, ([1.0, 1.0], [0.0, 0.0]))
    with pytest.raises(LipflowError, match="sub-boxes"):
        certify_invertible(flow, params, BOX, subdivisions=100)
    with pytest.raises(LipflowError, match="Residual"):
        certify_invertible(lipflow.Flow([lipflow.Residual(2)]), [lipflow.Residual(2).init(0)], BOX)
