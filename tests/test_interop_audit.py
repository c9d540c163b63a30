"""``lipflow.interop.torch.audit`` on each library's flows, checked against computations that do
not go through the audit: the library's own calls, a float64 deep copy, and
``torch.autograd.functional.jacobian`` in float64 with an SVD.

Per library two models, untrained and briefly trained. The two known algorithmic inverse errors
(normflows' residual fixed point stopping at tolerance 1e-5, FrEIA's AllInOneBlock inverting a
float32-rounded orthogonal matrix by its transpose) must be flagged; the other models, whose
inverses are closed-form, must not be. Skips with the install hint when a library is missing.
"""

from __future__ import annotations

import copy
import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch bridge needs PyTorch: pip install 'lipflow[torch]'")

from interop_models import INSTALL_HINT, MODELS, data, native, train  # noqa: E402

from lipflow.errors import LipflowError  # noqa: E402
from lipflow.interop.torch import audit  # noqa: E402
from lipflow.interop.torch_inputs import INPUT_KINDS, audit_inputs, box_attack  # noqa: E402

torch.set_num_threads(1)

ALGORITHMIC = {("normflows", "residual"), ("FrEIA", "allinone")}
CASES = [(library, name, steps) for library, models in MODELS.items() for name in models for steps in (0, 10)]


def build(library: str, name: str, steps: int):
    if importlib.util.find_spec(library) is None:
        pytest.skip(f"{library} is not installed; {INSTALL_HINT}")
    model = MODELS[library][name](0)
    return train(model, steps) if steps else model


def independent_spectrum(library: str, model, x: torch.Tensor) -> np.ndarray:
    model64 = copy.deepcopy(model).double().eval()
    forward, _ = native(library, model64)
    values = []
    for xi in x.double():
        jac = torch.autograd.functional.jacobian(lambda v: forward(v[None])[0], xi)
        values.append(torch.linalg.svdvals(jac).detach().numpy())
    return np.array(values)


@pytest.mark.parametrize(("library", "name", "steps"), CASES)
def test_audit_matches_independent_computation(library: str, name: str, steps: int) -> None:
    model = build(library, name, steps)
    x = data(16, seed=1)
    report = audit(model, x)
    model.eval()
    forward, inverse = native(library, model)
    with torch.no_grad():
        z = forward(x.clone()).detach()
        rec = inverse(z.clone()).detach()
        forward64, inverse64 = native(library, copy.deepcopy(model).double().eval())
        z64 = forward64(x.double()).detach()
        x_model64 = inverse64(z.double()).detach()
    # the measured reconstruction is the library's own float32 round trip
    assert np.array_equal(report.reconstruction, (x.double() - rec.double()).norm(dim=1).numpy())
    assert np.allclose(report.delta, (z.double() - z64).norm(dim=1).numpy(), rtol=1e-12, atol=0)
    assert np.allclose(report.delta2_rounding, (rec.double() - x_model64).norm(dim=1).numpy(), rtol=1e-12, atol=0)
    # spectra: float64 Jacobian at x, labelled exact; matches autograd.functional.jacobian + SVD
    sv = independent_spectrum(library, model, x)
    assert report.forward_spectrum.kind == "exact" and report.forward_spectrum.dtype == "float64"
    assert np.allclose(report.forward_spectrum.sigma_max, sv[:, 0], rtol=1e-10)
    assert np.allclose(report.forward_spectrum.sigma_min, sv[:, -1], rtol=1e-8)
    assert np.allclose(report.cond, sv[:, 0] / sv[:, -1], rtol=1e-8)
    assert np.array_equal(report.x, x.double().numpy())
    summary = report.summary()
    assert summary["n"] == 16 and summary["dtype"] == "float32" and len(summary["per_sample"]["cond"]) == 16
    assert summary["labels"]["delta"] == "estimate" and summary["labels"]["cond"] == "exact"
    assert summary["certificate"]["max"] < 1e-10  # Newton converged to float64 accuracy
    flagged = summary["algorithmic_errors"]
    assert flagged["decided"] == 16
    if (library, name) in ALGORITHMIC:
        assert flagged["count"] == 16, report.markdown()
        assert summary["algorithmic"]["median"] > 1e-8  # far above float64 rounding (~1e-15)
        assert summary["beyond_rounding_budget"]["count"] > 0  # rounding alone does not explain the error
    else:
        assert flagged["count"] == 0, report.markdown()
        assert summary["algorithmic"]["max"] < 1e-12
    # with the reference-based delta2, the paper's first-order budget holds on every decided sample
    assert summary["beyond_budget"]["count"] == 0 and summary["beyond_budget"]["decided"] == 16


def test_normflows_residual_error_is_algorithmic_not_rounding() -> None:
    """Independent of the audit: the float64 copy's fixed point stops short, since its residual
    F(x_model) - z is far above float64 rounding, while the audit's reference solves F(x) = z."""
    model = build("normflows", "residual", 0)
    x = data(16, seed=2)
    report = audit(model, x)
    model64 = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        z = model.eval().inverse(x.clone())
        x_model = model64.forward(z.double())
        residual = (model64.inverse(x_model.clone()) - z.double()).norm(dim=1)
    assert float(residual.min()) > 1e-9  # 1e-5 stopping rule, not rounding
    # triangle inequality: delta2 = algorithmic part +- rounding part; here the algorithm dominates
    assert np.all(np.abs(report.delta2 - report.algorithmic) <= report.delta2_rounding * (1 + 1e-12) + 1e-15)
    assert np.median(report.algorithmic) > np.median(report.delta2_rounding)
    assert report.summary()["algorithmic_errors"]["count"] == 16


def test_freia_rounded_orthogonal_matrix_is_the_cause() -> None:
    model = build("FrEIA", "allinone", 0)
    block = model.module_list[0]
    w = block.w_perm.detach().double().reshape(2, 2)
    w_inv = block.w_perm_inv.detach().double().reshape(2, 2)
    assert float((w_inv @ w - torch.eye(2, dtype=torch.float64)).abs().max()) > 1e-9  # transpose of a rounded matrix
    assert audit(model, data(8)).summary()["algorithmic_errors"]["count"] == 8


def test_working_dtype_majority_and_float64_models() -> None:
    model = build("normflows", "residual", 0)  # float32 network with a float64 scalar parameter
    report = audit(model, data(4))
    assert report.dtype == "float32" and "majority" in report.dtype_note
    model64 = copy.deepcopy(build("zuko", "maf", 0)).double()
    report64 = audit(model64, data(4))
    assert report64.dtype == "float64" and float(np.max(report64.reconstruction)) < 1e-13


def test_failure_finding_inputs_and_nonfinite_counts() -> None:
    x = data(16)
    sets = audit_inputs(x, "all", radius=8.0, n=16)
    assert set(sets) == set(INPUT_KINDS) - {"box-attack"}
    assert float(sets["rings"].norm(dim=1).max()) == pytest.approx(8.0)
    assert float(sets["grid"].abs().max()) == pytest.approx(8.0)
    assert set(sets["rademacher"].abs().flatten().tolist()) == {1.0}

    def forward(v):
        return torch.sinh(v)

    def inverse(v):
        return torch.asinh(v)

    report = audit((forward, inverse), x, inputs="all", radius=200.0)  # sinh(200) overflows in float32
    summary = report.summary()
    assert set(summary["groups"]) == set(INPUT_KINDS)
    rings = summary["groups"]["rings"]["reconstruction"]
    assert rings["n_inf"] + rings["n_nan"] > 0 and np.isfinite(rings["max"])  # counted, not averaged
    assert summary["reconstruction"]["n_inf"] + summary["reconstruction"]["n_nan"] > 0
    assert "Inf" in report.markdown()
    worst, err = box_attack(forward, inverse, x, box=0.01, points=4, candidates=8, rounds=2)
    assert float((worst - x[:4]).abs().max()) <= 0.01 + 1e-7
    base = (x[:4].double() - inverse(forward(x[:4])).double()).norm(dim=1)
    assert bool((err >= base).all())


def test_unsupported_model_names_what_is_supported() -> None:
    with pytest.raises(LipflowError, match="supported are zuko"):
        audit(torch.nn.Linear(2, 2), data(4))
    with pytest.raises(LipflowError, match="unknown input kind"):
        audit((torch.sinh, torch.asinh), data(4), inputs=("moons",))


def test_newton_reference_certificate_and_split() -> None:
    """lem:newton-certificate: Newton on F(x) = x + 0.5 tanh(A x) recovers a known preimage from a
    poor start, the certificate is at the size of the true error, and delta2 splits into its
    algorithmic and rounding parts within the triangle inequality."""
    from lipflow.interop.torch_reference import newton_reference

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3, 3, generator=gen, dtype=torch.float64) / 3

    def forward(v):
        return v + 0.5 * torch.tanh(v @ a.T)

    x_true = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    z = forward(x_true)
    ref = newton_reference(forward, z, {"poor": x_true + 0.3, "worse": x_true - 1.0})
    error = (ref.x - x_true).norm(dim=1)
    assert float(error.max()) < 1e-13 and bool((ref.steps > 0).all())
    assert float(ref.certificate.max()) < 1e-13 and set(ref.start) == {"poor"}
    # a start that is the exact preimage is kept (residual at float64 rounding)
    assert float((newton_reference(forward, z, {"exact": x_true}).x - x_true).norm(dim=1).max()) < 1e-14
    report = audit(build("FrEIA", "allinone", 0), data(8))
    v = report.values
    assert np.all(np.abs(v["delta2"] - v["algorithmic"]) <= v["delta2_rounding"] * (1 + 1e-12) + 1e-300)


def test_many_features_fall_back_to_lanczos_and_say_so() -> None:
    """Above max_dim features no Jacobian is formed: Lanczos spectra (estimates) and the model's
    own float64 inverse as the reference, with algorithmic errors left undecided."""
    model = build("zuko", "maf", 0)
    report = audit(model, data(8), max_dim=1)
    assert report.forward_spectrum.kind == "estimate" and "lanczos" in report.forward_spectrum.method
    assert "no Newton refinement" in report.reference_note
    summary = report.summary()
    assert summary["algorithmic_errors"]["decided"] == 0 and summary["algorithmic"]["n_nan"] == 8
    full = audit(model, data(8))
    assert np.allclose(report.forward_spectrum.sigma_max, full.forward_spectrum.sigma_max, rtol=1e-10)


def test_lipflow_modules_including_a_converged_fixed_point_inverse() -> None:
    """lipflow's own residual inverse iterates to its a-posteriori stopping rule, so unlike
    normflows' residual flow it shows no algorithmic error."""
    import lipflow as lf
    from lipflow.interop.torch import to_torch

    for flow in (lf.Flow([lf.AffineCoupling(2), lf.Reverse(2), lf.AffineCoupling(2)]),
                 lf.Flow([lf.Residual(2), lf.Residual(2)])):
        report = audit(to_torch(flow, flow.init(seed=0), dtype=torch.float32), data(16))
        summary = report.summary()
        assert summary["library"] == "lipflow" and summary["dtype"] == "float32"
        assert summary["algorithmic_errors"] == {"count": 0, "decided": 16}
        assert summary["beyond_rounding_budget"]["count"] == 0
