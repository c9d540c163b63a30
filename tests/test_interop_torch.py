"""Tests of the optional torch bridge (lipflow.interop.torch); skipped without torch.

GPU checks carry the ``gpu`` marker: ``python -m pytest tests/test_interop_torch.py -m gpu``.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch bridge needs PyTorch: pip install 'lipflow[torch]'")

import lipflow as lf  # noqa: E402
from lipflow.analysis import jacobian_spectrum as numpy_spectrum  # noqa: E402
from lipflow.errors import LipflowError  # noqa: E402
from lipflow.interop.torch import (  # noqa: E402
    audit_invertible,
    error_budget,
    fd_penalty,
    from_torch,
    gradient_angle,
    jacobian_spectrum,
    measurement_mode,
    memory_saving_forward,
    reconstruction_error,
    resolve_device,
    to_torch,
)
from lipflow.interop.torch_measure import precision_settings  # noqa: E402

# small tensors: one thread avoids oversubscribing the cores when pytest-xdist runs workers
torch.set_num_threads(1)

U64 = lf.precision("float64").unit_roundoff
U32 = lf.precision("float32").unit_roundoff
#: the issue's export target: float64 agreement with the NumPy path
EXPORT_TOLERANCE = 1e-12
DIM = 4

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def gamma(n: int, u: float) -> float:
    """Higham's gamma_n = n u / (1 - n u)."""
    return n * u / (1 - n * u)


def block_zoo(dim: int = DIM) -> dict[str, lf.Block]:
    """Every block kind: additive, affine with every scale and both forms, residual (both
    log-det methods and both spectral norms), permutations, invertible linear, ActNorm."""
    zoo: dict[str, lf.Block] = {"additive": lf.AdditiveCoupling(dim, t=lf.MLP((8,), "relu"))}
    scales = {
        "sigmoid": lf.Sigmoid(),
        "sigmoid-biased": lf.Sigmoid(shift=2.0, bias=0.1),
        "bounded": lf.Bounded(0.5, 1.0),
        "exp": lf.Exp(),
        "softclamp": lf.SoftClamp(2.0),
    }
    for name, scale in scales.items():
        for form in ("realnvp", "glow"):
            zoo[f"affine-{name}-{form}"] = lf.AffineCoupling(
                dim, scale=scale, form=form, conditioning="second", s=lf.MLP((8,), "swish")
            )
    zoo["affine-identity-toy"] = lf.AffineCoupling(
        dim, t=lf.Constant(0.123456789), s=lf.Constant(0.1), scale="identity"
    )
    zoo["affine-softplus-elu"] = lf.AffineCoupling(dim, t=lf.MLP((8,), "softplus"), s=lf.MLP((8, 8), "elu"))
    zoo["additive-sigmoid-identity"] = lf.AdditiveCoupling(dim, t=lf.MLP((8,), "sigmoid"), conditioning=(0, 2))
    zoo["residual-exact"] = lf.Residual(dim, hidden=(8, 8), activation="lipswish")
    zoo["residual-series-power"] = lf.Residual(dim, activation="elu", logdet_method="series", spectral="power")
    zoo["residual-tanh-tol"] = lf.Residual(dim, activation="tanh", coeff=0.7, tol=1e-10)
    zoo["permutation"] = lf.Permutation(dim, seed=3)
    zoo["reverse"] = lf.Reverse(dim)
    zoo["invertible-linear"] = lf.InvertibleLinear(dim, seed=2)
    zoo["actnorm"] = lf.ActNorm(dim)
    zoo["flow"] = lf.Flow(
        [zoo[k] for k in ("actnorm", "affine-sigmoid-realnvp", "invertible-linear", "residual-exact", "additive")]
    )
    return zoo


def points(n: int = 8, dim: int = DIM, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim))


def as_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def scaled_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(1, |b|): absolute near zero, relative for large values."""
    return float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b))))


# ---- export ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(block_zoo()))
def test_export_agrees_with_numpy_in_float64(name: str) -> None:
    block = block_zoo()[name]
    params = block.init(seed=1)
    module = to_torch(block, params)
    x = points()
    y = block.forward(params, x)
    with torch.no_grad():
        forward = as_numpy(module(torch.from_numpy(x)))
        inverse = as_numpy(module.inverse(torch.from_numpy(y)))
        logdet = as_numpy(module.forward_and_logdet(torch.from_numpy(x))[1])
    assert scaled_error(forward, y) <= EXPORT_TOLERANCE
    assert scaled_error(inverse, block.inverse(params, y)) <= EXPORT_TOLERANCE
    assert scaled_error(logdet, block.logdet(params, x)) <= EXPORT_TOLERANCE


@pytest.mark.parametrize("name", list(block_zoo()))
def test_export_round_trip_returns_the_same_parameters(name: str) -> None:
    block = block_zoo()[name]
    params = block.init(seed=2)
    again_block, again = from_torch(to_torch(block, params))
    assert again_block == block
    flat = [np.asarray(leaf) for leaf in _leaves(params)]
    flat_again = [np.asarray(leaf) for leaf in _leaves(again)]
    assert len(flat) == len(flat_again)
    for a, b in zip(flat, flat_again, strict=True):
        assert a.dtype == np.float64 == b.dtype
        np.testing.assert_array_equal(a, b)


def _leaves(tree):
    if isinstance(tree, dict):
        for key in sorted(tree):
            yield from _leaves(tree[key])
    elif isinstance(tree, (list, tuple)):
        for item in tree:
            yield from _leaves(item)
    else:
        yield tree


def test_trained_parameters_come_back() -> None:
    block = lf.Flow([lf.AffineCoupling(DIM), lf.InvertibleLinear(DIM), lf.Residual(DIM)])
    params = block.init(0)
    module = to_torch(block, params)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.01)
    _, trained = from_torch(module)
    x = points()
    with torch.no_grad():
        expected = as_numpy(module(torch.from_numpy(x)))
    assert scaled_error(block.forward(trained, x), expected) <= EXPORT_TOLERANCE


def test_residual_inverse_reports_like_numpy() -> None:
    block = lf.Residual(DIM, coeff=0.9)
    params = block.init(0)
    y = points()
    _, info = block.inverse_with_info(params, y)
    module = to_torch(block, params)
    _, torch_info = module.inverse_with_info(torch.from_numpy(y))
    assert abs(torch_info.iterations - info.iterations) <= 1
    assert torch_info.all_converged and info.all_converged
    assert torch_info.lipschitz_g == pytest.approx(info.lipschitz_g, rel=1e-12)


def test_residual_nonconvergence_is_reported() -> None:
    block = lf.Residual(DIM, coeff=0.95, max_iter=2, on_nonconvergence="raise")
    module = to_torch(block, block.init(0))
    with pytest.raises(lf.NonConvergenceError):
        module.inverse(torch.from_numpy(points()))


def test_float32_export_runs_in_float32() -> None:
    block = block_zoo()["flow"]
    params = block.init(0)
    module = to_torch(block, params, dtype="float32")
    x = torch.from_numpy(points()).float()
    with torch.no_grad():
        y = module(x)
    assert y.dtype == torch.float32 and bool(torch.isfinite(y).all())
    assert all(p.dtype == torch.float32 for p in module.parameters())


# ---- bad input -----------------------------------------------------------------------------------
def test_bad_input_is_a_lipflow_error() -> None:
    block = lf.AffineCoupling(DIM)
    with pytest.raises(LipflowError, match="params do not match"):
        to_torch(block, {"t": {}})
    module = to_torch(block, block.init(0))
    with pytest.raises(LipflowError, match="shape"):
        module(torch.zeros(3, DIM + 1, dtype=torch.float64))
    with pytest.raises(LipflowError, match="to_torch"):
        from_torch(torch.nn.Linear(2, 2))
    with pytest.raises(LipflowError, match="dtype"):
        to_torch(block, block.init(0), dtype="float8")
    with pytest.raises(LipflowError, match="float64 reference"):
        error_budget(module, torch.zeros(2, DIM, dtype=torch.float64))
    with pytest.raises(LipflowError, match="eps"):
        fd_penalty(module, module.inverse, torch.zeros(2, DIM, dtype=torch.float64), eps=0.0)


def test_core_never_imports_torch_and_missing_torch_is_explained() -> None:
    code = (
        "import sys\n"
        "import lipflow, lipflow.interop\n"
        "assert 'torch' not in sys.modules, 'lipflow imported torch'\n"
        "sys.modules['torch'] = None\n"
        "try:\n"
        "    import lipflow.interop.torch\n"
        "except lipflow.LipflowError as error:\n"
        "    assert 'pip install' in str(error)\n"
        "else:\n"
        "    raise SystemExit('no LipflowError without torch')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


# ---- diagnostics against the NumPy path ----------------------------------------------------------
@pytest.mark.parametrize("direction", ["forward", "inverse"])
@pytest.mark.parametrize("method", ["full", "lanczos"])
def test_spectrum_agrees_with_numpy(direction: str, method: str) -> None:
    block = block_zoo()["flow"]
    params = block.init(3)
    x = points(6)
    at = x if direction == "forward" else block.forward(params, x)
    expected = numpy_spectrum(block, params, at, direction=direction)
    got = jacobian_spectrum(
        to_torch(block, params), torch.from_numpy(at), direction=direction, method=method, steps=DIM
    )
    assert got.kind == "exact"
    # Weyl: |sigma_i(A) - sigma_i(B)| <= ||A - B||; the two Jacobians differ by rounding of
    # O(depth * width) operations per entry, and the Krylov basis adds O(d) more
    tolerance = gamma(len(block.blocks) * 64, U64) * np.max(expected.sigma_max)
    assert np.max(np.abs(got.sigma_max - expected.sigma_max)) <= tolerance
    assert np.max(np.abs(got.sigma_min - expected.sigma_min)) <= tolerance


def test_lanczos_estimates_bracket_from_inside() -> None:
    dim = 24
    block = lf.Flow(
        [lf.AffineCoupling(dim, scale="exp"), lf.InvertibleLinear(dim), lf.AdditiveCoupling(dim, conditioning="second")]
    )
    params = block.init(0)
    x = points(5, dim)
    exact = numpy_spectrum(block, params, x)
    estimate = jacobian_spectrum(to_torch(block, params), torch.from_numpy(x), method="lanczos", steps=6)
    assert estimate.kind == "estimate" and estimate.method == "lanczos-6"
    slack = gamma(64, U64) * exact.sigma_max
    assert np.all(estimate.sigma_max <= exact.sigma_max + slack)
    assert np.all(estimate.sigma_min >= exact.sigma_min - slack)
    assert np.all(estimate.sigma_max >= 0.5 * exact.sigma_max)  # and they are not vacuous


def test_spectrum_of_exploding_inverse_is_counted_not_dropped() -> None:
    toy = lf.Flow([lf.AffineCoupling(2, t=lf.Constant(0.123456789), s=lf.Constant(1e-200), scale="identity")] * 2)
    module = to_torch(toy, toy.init(0))
    spectrum = jacobian_spectrum(module, torch.ones(3, 2, dtype=torch.float64), direction="inverse")
    assert spectrum.sigma_max.shape == (3,)
    assert np.all(np.isnan(spectrum.sigma_max) | np.isinf(spectrum.sigma_max) | (spectrum.sigma_max > 1e300))


def test_error_budget_terms_and_references() -> None:
    block = lf.Flow([lf.AffineCoupling(DIM, scale="exp", conditioning=c) for c in ("first", "second")] * 2)
    params = block.init(0)
    module = to_torch(block, params, dtype=torch.float32)
    x = torch.from_numpy(points(16))
    budget = error_budget(module, x)
    assert budget.working == "float32" and budget.reference == "float64"
    # triangle inequality of paper Section 2, up to the float64 rounding of the norms
    slack = gamma(4 * DIM, U64) * (budget.propagated + budget.delta2)
    assert np.all(budget.reconstruction <= budget.propagated + budget.delta2 + slack)
    # float32 forward errors are of order u32 times the size of the values, never zero here
    assert np.all(budget.delta > 0) and np.all(np.isfinite(budget.delta))
    mp = error_budget(module, x, reference="mp40")
    # a float64 reference differs from mp40 only by its own rounding, far below delta
    z_scale = np.max(np.abs(block.forward(params, points(16))))
    assert np.max(np.abs(mp.delta - budget.delta)) <= gamma(64, U64) * z_scale
    assert np.max(np.abs(mp.delta2 - budget.delta2)) <= gamma(64, U64) * np.max(np.abs(points(16)))
    # the reconstruction error equals the direct measurement
    np.testing.assert_array_equal(budget.reconstruction, reconstruction_error(module, x.float()))


def test_error_budget_agrees_with_the_numpy_budget() -> None:
    budget_module = pytest.importorskip("lipflow.analysis.budget", reason="needs lipflow's NumPy error budget")
    # constant shifts and permutations: float32 arithmetic is the same IEEE operations in torch
    # and NumPy, so both paths see the same z_delta and x_delta2
    flow = lf.Flow(
        [
            lf.AdditiveCoupling(DIM, t=lf.Constant(0.123456789)),
            lf.Reverse(DIM),
            lf.AdditiveCoupling(DIM, t=lf.Constant((-0.3, 1.7)), conditioning="second"),
            lf.Permutation(DIM, seed=1),
        ]
    )
    params = flow.init(0)
    x32 = (3 * points(16)).astype(np.float32)
    expected = budget_module.error_budget(flow, params, x32, estimates=False)
    got = error_budget(to_torch(flow, params, dtype="float32"), torch.from_numpy(x32), reference="mp40")
    scale = gamma(DIM, U64)
    assert np.max(np.abs(got.delta - expected.delta_norm.astype(float))) <= scale * np.max(
        expected.delta_norm.astype(float)
    )
    assert np.max(np.abs(got.delta2 - expected.delta2_norm.astype(float))) <= scale * np.max(
        expected.delta2_norm.astype(float)
    )
    np.testing.assert_allclose(got.reconstruction, expected.reconstruction_error.astype(float), rtol=scale, atol=0)
    assert np.max(got.delta) > 0


# ---- FD regulariser ------------------------------------------------------------------------------
def test_fd_penalty_of_a_linear_map_lies_between_the_singular_values() -> None:
    block = lf.Flow([lf.InvertibleLinear(DIM, seed=5), lf.ActNorm(DIM, init_std=0.5)])
    params = block.init(1)
    module = to_torch(block, params)
    x = torch.from_numpy(points(32))
    forward_only = fd_penalty(module, None, x, eps=0.1, forward_coeff=1.0, inverse_coeff=0.0)
    spectrum = numpy_spectrum(block, params, points(1))
    low, high = spectrum.sigma_min[0] ** 2 * 0.1, spectrum.sigma_max[0] ** 2 * 0.1
    slack = gamma(16, U64) * high
    assert low - slack <= float(forward_only.detach()) <= high + slack
    inverse_only = fd_penalty(module, module.inverse, x, eps=0.1, forward_coeff=0.0, inverse_coeff=1.0)
    assert (
        0.1 / spectrum.sigma_max[0] ** 2 - slack
        <= float(inverse_only.detach())
        <= 0.1 / spectrum.sigma_min[0] ** 2 + slack
    )


def test_fd_penalty_is_differentiable() -> None:
    block = lf.Flow([lf.AffineCoupling(DIM), lf.Reverse(DIM), lf.AffineCoupling(DIM)])
    module = to_torch(block, block.init(0))
    penalty = fd_penalty(module, module.inverse, torch.from_numpy(points()))
    grads = torch.autograd.grad(penalty, list(module.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().max()) > 0 for g in grads)


# ---- memory-saving backprop -------------------------------------------------------------------------
def _coupling_stack(kind: str, depth: int, dim: int = DIM) -> lf.Flow:
    blocks = []
    for i in range(depth):
        side = "first" if i % 2 == 0 else "second"
        if kind == "additive":
            blocks.append(lf.AdditiveCoupling(dim, conditioning=side, t=lf.MLP((16,), "tanh")))
        else:  # tiny scales: sigmoid(s - 6) ~ 2.5e-3, the inverse divides by them
            blocks.append(
                lf.AffineCoupling(
                    dim,
                    conditioning=side,
                    scale=lf.Sigmoid(shift=-6.0),
                    t=lf.MLP((16,), "tanh"),
                    s=lf.MLP((16,), "tanh"),
                )
            )
    return lf.Flow(blocks)


def _loss(z: torch.Tensor, logdet: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.sum(z**2) - torch.sum(logdet)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_memory_saving_gradients_equal_ordinary_on_a_stable_model(dtype: torch.dtype) -> None:
    depth = 12
    flow = _coupling_stack("additive", depth)
    module = to_torch(flow, flow.init(0), dtype=dtype)
    x = torch.from_numpy(points(16)).to(dtype).requires_grad_(True)
    z, logdet = module.forward_and_logdet(x)
    ordinary = torch.autograd.grad(_loss(z, logdet), [x, *module.parameters()])
    z2, logdet2 = memory_saving_forward(module, x)
    assert torch.equal(z, z2) and torch.equal(logdet, logdet2)
    saving = torch.autograd.grad(_loss(z2, logdet2), [x, *module.parameters()])
    u = U64 if dtype == torch.float64 else U32
    # rounding along a chain of depth blocks, each O(hidden + dim) operations per entry
    tolerance = gamma(depth * (16 + DIM), u)
    for a, b in zip(ordinary, saving, strict=True):
        assert float(torch.linalg.vector_norm(a - b)) <= tolerance * float(torch.linalg.vector_norm(a))
    angle = gradient_angle(module, _loss, x.detach())
    # unit vectors: |a^ - b^| <= 2 |a - b| / |a|, and the angle is 2 asin(|a^ - b^| / 2)
    assert angle["angle_deg"] <= np.degrees(2 * np.arcsin(min(1.0, tolerance)))


def test_accumulating_memory_saving_backward_matches_ordinary() -> None:
    flow = _coupling_stack("additive", 6)
    module = to_torch(flow, flow.init(0))
    x = torch.from_numpy(points(16))
    _loss(*module.forward_and_logdet(x)).backward()
    ordinary = [p.grad.clone() for p in module.parameters()]
    module.zero_grad(set_to_none=True)
    _loss(*memory_saving_forward(module, x, accumulate_grad=True)).backward()
    tolerance = gamma(6 * (16 + DIM), U64)
    for p, a in zip(module.parameters(), ordinary, strict=True):
        assert float(torch.linalg.vector_norm(p.grad - a)) <= tolerance * float(torch.linalg.vector_norm(a))


def test_memory_saving_gradients_diverge_on_an_unstable_model() -> None:
    flow = _coupling_stack("affine", 12)
    module = to_torch(flow, flow.init(0))
    x = torch.from_numpy(points(16))
    assert np.max(reconstruction_error(module, x)) > 1e-3  # the inverse has exploded
    angle = gradient_angle(module, _loss, x)
    assert np.isnan(angle["angle_deg"]) or angle["angle_deg"] > 10.0


def test_memory_saving_backprop_on_glow_layers() -> None:
    from lipflow.interop.torch_glow import glow_flow

    torch.manual_seed(0)
    flow, _ = glow_flow(3, levels=1, steps_per_level=2, hidden=8, coupling="additive")
    flow = flow.double()
    for p in flow.parameters():  # move away from Glow's identity initialisation
        torch.nn.init.normal_(p, std=0.05) if p.dim() == 4 else None
    x = torch.rand(4, 3, 4, 4, dtype=torch.float64)
    # orthogonal 1x1 convolutions and additive couplings: each layer's round trip errs by at
    # most gamma_n u-level in ||x||, n = the channel count of an inner product
    n = len(flow.blocks) * 2 * 12
    norms = torch.linalg.vector_norm(x.reshape(4, -1), dim=1).numpy()
    assert np.all(reconstruction_error(flow, x) <= gamma(n, U64) * norms)
    angle = gradient_angle(flow, lambda z, ld: torch.sum(z**3) - torch.sum(ld), x)
    # as for the vector stack: rounding along the chain, O(9 * hidden + channels) per entry
    assert angle["angle_deg"] <= np.degrees(2 * gamma(len(flow.blocks) * (9 * 8 + 12), U64))


# ---- third-party audit ------------------------------------------------------------------------------
def test_audit_of_a_zuko_transform() -> None:
    zuko = pytest.importorskip("zuko", reason="the third-party audit test needs zuko (the torch extra)")
    torch.manual_seed(0)
    flow = zuko.flows.MAF(features=3, transforms=3, hidden_features=(16, 16))
    flow64 = copy.deepcopy(flow).double()
    transform, transform64 = flow().transform, flow64().transform
    x = torch.randn(32, 3)
    report = audit_invertible(transform, transform.inv, x, reference=(transform64, transform64.inv))
    summary = report.summary()
    assert summary["reconstruction"]["n_inf"] == 0 and summary["reconstruction"]["n_nan"] == 0
    assert report.forward_spectrum.kind == "estimate"  # a float32 Jacobian: not exact
    # sigma_max(J_F^-1(F(x))) = 1 / sigma_min(J_F(x)), to float32 rounding amplified by cond
    product = report.inverse_spectrum.sigma_max * report.forward_spectrum.sigma_min
    cond = report.forward_spectrum.cond
    assert np.all(np.abs(product - 1) <= gamma(200, U32) * cond)
    assert np.all(report.delta > 0) and np.all(report.delta2 >= 0)
    assert report.settings["cuda_matmul_allow_tf32"] is False


def test_audit_matches_the_bridge_on_a_lipflow_module() -> None:
    block = _coupling_stack("affine", 6)
    module = to_torch(block, block.init(0))
    x = torch.from_numpy(points(8))
    report = audit_invertible(module, module.inverse, x)
    np.testing.assert_array_equal(report.reconstruction, reconstruction_error(module, x))
    with pytest.raises(LipflowError, match="keeps the shape"):
        audit_invertible(lambda v: v[:, :2], lambda v: v, x)


# ---- measurement settings and devices -------------------------------------------------------------
def test_measurement_mode_restores_settings() -> None:
    before = precision_settings()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.set_float32_matmul_precision("high")
    try:
        with measurement_mode() as settings:
            assert settings["cuda_matmul_allow_tf32"] is False
            assert torch.get_float32_matmul_precision() == "highest"
            assert torch.backends.cuda.matmul.allow_tf32 is False
        assert torch.backends.cuda.matmul.allow_tf32 is True
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before["cuda_matmul_allow_tf32"]
        torch.set_float32_matmul_precision(before["float32_matmul_precision"])


def test_device_selection() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(LipflowError, match="unknown device"):
        resolve_device("abacus")
    if not torch.cuda.is_available():
        with pytest.raises(LipflowError, match="CUDA is not available"):
            resolve_device("cuda")


# ---- example smoke run ----------------------------------------------------------------------------
def test_glow_classifier_example_runs(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    try:
        import torch_glow_classifier as example
    finally:
        sys.path.pop(0)
    out = tmp_path / "log.json"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        code = example.main(
            [
                "--iterations",
                "4",
                "--log-every",
                "2",
                "--n-train",
                "32",
                "--image-size",
                "4",
                "--levels",
                "1",
                "--steps-per-level",
                "1",
                "--hidden",
                "4",
                "--batch-size",
                "8",
                "--lanczos-steps",
                "4",
                "--regulariser",
                "fd",
                "--memory-saving",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
    assert code == 0 and out.exists()
    images = tmp_path / "data.npz"
    np.savez(images, x=np.zeros((10, 4, 4, 3), dtype=np.uint8), y=np.zeros(10, dtype=np.int64))
    assert example.main(
        [
            "--data",
            str(images),
            "--iterations",
            "1",
            "--levels",
            "1",
            "--hidden",
            "2",
            "--steps-per-level",
            "1",
            "--device",
            "cpu",
        ]
    ) in (0, 2)
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((2, 4, 4, 3)))
    assert example.main(["--data", str(bad), "--device", "cpu"]) == 2


# ---- GPU ---------------------------------------------------------------------------------------------
@pytest.mark.gpu
@cuda
def test_gpu_export_agrees_with_cpu_in_float64() -> None:
    block = block_zoo()["flow"]
    params = block.init(0)
    x = points(64)
    with measurement_mode():
        on_gpu = to_torch(block, params, device="cuda")
        with torch.no_grad():
            forward = as_numpy(on_gpu(torch.from_numpy(x).cuda()))
            inverse = as_numpy(on_gpu.inverse(torch.from_numpy(block.forward(params, x)).cuda()))
    assert scaled_error(forward, block.forward(params, x)) <= EXPORT_TOLERANCE
    assert scaled_error(inverse, block.inverse(params, block.forward(params, x))) <= EXPORT_TOLERANCE


@pytest.mark.gpu
@cuda
def test_gpu_float32_is_not_tf32_under_measurement_mode() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(256, 256, generator=generator, dtype=torch.float64)
    b = torch.randn(256, 256, generator=generator, dtype=torch.float64)
    exact = a @ b
    with measurement_mode():
        product = (a.float().cuda() @ b.float().cuda()).double().cpu()
    # float32 inner products of length 256: |error| <= gamma_256(u32) |a||b| entrywise
    bound = gamma(256, U32) * (a.abs() @ b.abs()) + 2 * U32 * exact.abs()
    assert bool(torch.all((product - exact).abs() <= bound))


@pytest.mark.gpu
@cuda
def test_gpu_memory_saving_and_diagnostics() -> None:
    flow = _coupling_stack("additive", 8)
    module = to_torch(flow, flow.init(0), device="cuda")
    x = torch.from_numpy(points(32)).cuda()
    with measurement_mode():
        angle = gradient_angle(module, _loss, x)
        spectrum = jacobian_spectrum(module, x, method="lanczos", steps=DIM)
    assert angle["angle_deg"] <= np.degrees(2 * gamma(8 * 20, U64))
    expected = numpy_spectrum(flow, flow.init(0), points(32))
    assert np.max(np.abs(spectrum.sigma_max - expected.sigma_max)) <= gamma(512, U64) * np.max(expected.sigma_max)
