"""The training monitor on torch models (through the adapter interface) and as a duck-typed
Lightning callback; skipped without torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the torch extra: pip install 'lipflow[torch]'")

import lipflow  # noqa: E402
from lipflow.analysis.jacobian import jacobian_spectrum  # noqa: E402
from lipflow.errors import LipflowError  # noqa: E402
from lipflow.interop.torch import to_torch  # noqa: E402
from lipflow.monitor import Monitor, TorchMonitorCallback, make_probe  # noqa: E402


def module_and_data():
    flow = lipflow.Flow([lipflow.ActNorm(2), lipflow.AffineCoupling(2, scale="exp"), lipflow.Reverse(2),
                         lipflow.AffineCoupling(2, scale="exp")])
    params = flow.init(0)
    data = np.random.default_rng(0).standard_normal((200, 2))
    return flow, params, to_torch(flow, params, dtype=torch.float32), data


def test_torch_measurements_match_direct_computations() -> None:
    flow, params, module, data = module_and_data()
    probe = make_probe(data, n=16)
    monitor = Monitor(module, probe, spectrum_points=16, lanczos_steps=4)
    monitor.check(0)
    record = monitor.history[-1]
    x = torch.as_tensor(probe.inside, dtype=torch.float32)
    with torch.no_grad():
        back = module.inverse(module(x))
    errors = (x.double() - back.double()).norm(dim=1).numpy()
    norm = np.sqrt(np.mean(np.sum(probe.inside ** 2, axis=1)))
    assert monitor.target.working_name == "float32"
    assert monitor.limits.unit_roundoff == 2.0 ** -24
    assert record["roundtrip_in"] == pytest.approx(errors.max() / norm, rel=1e-12)
    exact = jacobian_spectrum(flow, params, probe.inside, ctx="float64")
    tolerance = 1e3 * 2.0 ** -24  # float32 Jacobian products of a 4-block flow, relative
    assert record["sigma_min"] == pytest.approx(exact.sigma_min.min(), rel=tolerance)
    assert record["sigma_max"] == pytest.approx(exact.sigma_max.max(), rel=tolerance)
    assert record["nonfinite_ood"] == 0


def test_a_pair_of_callables_works_and_params_are_refused() -> None:
    _, _, module, data = module_and_data()
    monitor = Monitor((module.forward, module.inverse), data, every=5)
    assert monitor.step(0) == [] and monitor.checks == 1
    with pytest.raises(LipflowError, match="holds its own parameters"):
        monitor.step(5, params={"a": 1})
    with pytest.raises(LipflowError, match="params"):
        Monitor(module, data, params={})


class FakeTrainer:
    """What a Lightning trainer exposes to a callback, and nothing more."""

    def __init__(self) -> None:
        self.global_step = 0
        self.should_stop = False


def test_lightning_style_callback_stops_on_a_drift_and_keeps_healthy_weights(tmp_path) -> None:
    _, _, module, data = module_and_data()
    monitor = Monitor(module, data, every=10, on_alarm="raise", save_healthy=tmp_path / "healthy.pt")
    callback = TorchMonitorCallback(monitor)
    trainer = FakeTrainer()
    for step in range(1000):
        trainer.global_step = step
        with torch.no_grad():  # the drift: ActNorm's scales shrink by a factor e every 20 steps
            module.blocks[0].log_scale -= 0.05 if step else 0.0
        callback.on_train_batch_end(trainer, None, None, None, step)
        if trainer.should_stop:
            break
    assert trainer.should_stop and callback.error is not None
    alarm = callback.error.alarms[0]
    assert callback.error.healthy_step == alarm.step - 10
    saved = torch.load(tmp_path / "healthy.pt")
    assert torch.allclose(saved["blocks.0.log_scale"] - module.blocks[0].log_scale.detach(),
                          torch.full((2,), 0.05 * (trainer.global_step - callback.error.healthy_step)), atol=1e-4)
    assert module.training  # the check put the module back into training mode
    callback.on_train_end(trainer, None)
