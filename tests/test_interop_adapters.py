"""The third-party adapters: every library's flows through one data -> latent interface.

Each library's tests skip with the install hint when it is missing. Checked: the direction
(against the library's own density convention), the round trip, the log-determinant against a
float64 autograd Jacobian, the float64 copy (independent, widened, data-initialised layers kept),
tuple outputs, the dtype rule and the errors.
"""

from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch", reason="the torch bridge needs PyTorch: pip install 'lipflow[torch]'")

from interop_models import INSTALL_HINT, MODELS, data, train  # noqa: E402

from lipflow.errors import LipflowError  # noqa: E402
from lipflow.interop.adapters import AdaptedFlow, AmbiguousDtypeError, UnsupportedModelError, adapt  # noqa: E402

torch.set_num_threads(1)

CASES = [(library, name) for library, models in MODELS.items() for name in models]


def build(library: str, name: str, seed: int = 0):
    if importlib.util.find_spec(library) is None:
        pytest.skip(f"{library} is not installed; {INSTALL_HINT}")
    return MODELS[library][name](seed)


def float64_logdet(flow: AdaptedFlow, x: torch.Tensor) -> torch.Tensor:
    flow64 = flow.to_float64()
    rows = [torch.autograd.functional.jacobian(lambda v: flow64.forward(v[None])[0], xi) for xi in x.double()]
    return torch.stack([torch.linalg.slogdet(j)[1] for j in rows])


@pytest.mark.parametrize(("library", "name"), CASES)
def test_adapted_flow_round_trip_logdet_and_float64_copy(library: str, name: str) -> None:
    model = build(library, name)
    x = data(16)
    flow = adapt(model)
    assert flow.library == library.lower() and flow.module is model and flow.dtype == torch.float32
    assert "data -> latent" in flow.direction_note
    with torch.no_grad():
        z, logdet = flow.forward_and_logdet(x)
        assert torch.equal(z, flow.forward(x))
        error = (flow.inverse(z) - x).norm(dim=1)
    assert z.dtype == torch.float32 and z.shape == x.shape and logdet.shape == (16,)
    # a float32 round trip errs by float32 rounding (the residual flow by its 1e-5 fixed-point tolerance)
    assert float(error.max()) < (1e-3 if name == "residual" else 1e-4)
    flow64 = flow.to_float64()
    assert flow64.dtype == torch.float64 and flow64.module is not model
    assert all(p.dtype != torch.float64 or p.numel() < 2 for p in model.parameters())  # the model is untouched
    with torch.no_grad():
        z64 = flow64.forward(x.double())
    assert z64.dtype == torch.float64
    assert float((z64 - z.double()).norm(dim=1).max()) < 1e-4 * (1 + float(z.norm(dim=1).max()))
    if name != "residual":  # normflows' residual log-determinant is a stochastic estimator
        assert torch.allclose(logdet.double(), float64_logdet(flow, x), atol=1e-4, rtol=1e-4)


def test_directions_follow_each_library_convention() -> None:
    x = data(8)
    if importlib.util.find_spec("normflows"):
        model = MODELS["normflows"]["realnvp"](0)
        flow = adapt(model)
        with torch.no_grad():
            assert torch.equal(flow.forward(x), model.inverse(x))  # normflows' forward is latent -> data
            assert torch.equal(flow.inverse(x), model.forward(x))
        assert "lipflow's forward is normflows' inverse" in flow.direction_note
    if importlib.util.find_spec("FrEIA"):
        model = MODELS["FrEIA"]["glow"](0)
        with torch.no_grad():
            assert torch.equal(adapt(model).inverse(x), model(x, rev=True)[0])
    if importlib.util.find_spec("zuko"):
        model = MODELS["zuko"]["maf"](0)
        with torch.no_grad():
            z, logdet = adapt(model).forward_and_logdet(x)
            base = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(dim=1)
            assert torch.allclose(base + logdet, model().log_prob(x), atol=1e-5)


def test_float64_copy_keeps_data_initialised_actnorm() -> None:
    if importlib.util.find_spec("normflows") is None:
        pytest.skip(f"normflows is not installed; {INSTALL_HINT}")
    model = MODELS["normflows"]["realnvp"](0)
    flow = adapt(model)
    x = data(64)
    with torch.no_grad():
        z = flow.forward(x)  # the first batch initialises ActNorm
        z64 = flow.to_float64().forward(x.double()[:3])  # a different batch must not re-initialise the copy
    assert float((z64 - z[:3].double()).abs().max()) < 1e-5


def test_briefly_trained_models_adapt() -> None:
    if importlib.util.find_spec("zuko") is None:
        pytest.skip(f"zuko is not installed; {INSTALL_HINT}")
    model = train(MODELS["zuko"]["maf"](0), steps=20)
    flow = adapt(model)
    with torch.no_grad():
        assert float((flow.inverse(flow.forward(data(8))) - data(8)).abs().max()) < 1e-4


def test_callable_pairs_and_tuple_returns() -> None:
    linear = torch.nn.Linear(2, 2).double()

    def forward(x):
        return 2 * x, torch.full((x.shape[0],), 2 * torch.log(torch.tensor(2.0)).item(), dtype=x.dtype)

    def inverse(z):
        return (z / 2,)  # a one-tuple is unwrapped too

    for flow in (adapt(forward, inverse), adapt((forward, inverse))):
        x = torch.randn(4, 2)
        z, logdet = flow.forward_and_logdet(x)
        assert flow.library == "callables" and flow.module is None and logdet.shape == (4,)
        assert torch.equal(flow.inverse(z), x) and flow.dtype == torch.get_default_dtype()
        assert flow.to_float64().forward(x.double()).dtype == torch.float64
    bound = adapt(linear.forward, lambda z: torch.linalg.solve(linear.weight, (z - linear.bias).T).T)
    assert bound.dtype == torch.float64 and "float64" in bound.dtype_note


def test_dtype_rule_and_errors() -> None:
    class Mixed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Parameter(torch.zeros(3))
            self.b = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))

    mixed = Mixed()
    with pytest.raises(AmbiguousDtypeError, match="ambiguous"):
        adapt(mixed.forward, mixed.forward)
    assert adapt(mixed.forward, mixed.forward, dtype=torch.float32).dtype == torch.float32
    with pytest.raises(UnsupportedModelError, match="supported are zuko Flow"):
        adapt(torch.nn.Linear(2, 2))
    with pytest.raises(LipflowError, match="two callables"):
        adapt(1, 2)
    with pytest.raises(LipflowError, match=r"floating torch\.dtype"):
        adapt(lambda x: x, lambda z: z, dtype=torch.int32)


def test_diagnostics_accept_third_party_models() -> None:
    """reconstruction_error / error_budget / jacobian_spectrum take library objects as they are,
    in the data -> latent direction, with the working dtype from the parameters' majority."""
    from lipflow.interop.torch import error_budget, jacobian_spectrum, reconstruction_error

    x = data(8)
    if importlib.util.find_spec("zuko"):
        model = MODELS["zuko"]["maf"](0)
        spectrum = jacobian_spectrum(model, x)
        assert spectrum.kind == "estimate" and spectrum.dtype == "float32"  # float32 Jacobian: not exact
        assert jacobian_spectrum(adapt(model).to_float64().forward, x.double()).kind == "exact"
        assert reconstruction_error(model, x).shape == (8,)
    if importlib.util.find_spec("normflows"):
        model = MODELS["normflows"]["realnvp"](0)
        with torch.no_grad():
            expected = (x.double() - model.forward(model.inverse(x)).double()).norm(dim=1).numpy()  # x -> z -> x
        assert (reconstruction_error(model, x) == expected).all()
        budget = error_budget(MODELS["normflows"]["residual"](0), x)  # float32 despite float64 scalars
        assert budget.working == "float32" and budget.delta2.shape == (8,)
        # its delta2 trusts the model's own float64 inverse, so the truncated fixed point hides in it;
        # the audit's reference does not
        from lipflow.interop.torch import audit

        assert (audit(MODELS["normflows"]["residual"](0), x).delta2 > 10 * budget.delta2).all()
    if importlib.util.find_spec("nflows"):
        assert reconstruction_error(MODELS["nflows"]["maf"](0), x).max() < 1e-5  # (output, logdet) tuples
