"""The training monitor: measurements against direct computations, alarms on a constructed
drift (must fire) and on a still run (must not), the append-only log, the hooks."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import lipflow
from lipflow.analysis.jacobian import jacobian_spectrum
from lipflow.errors import LipflowError, NumericalInvertibilityError, NumericalInvertibilityWarning
from lipflow.monitor import Monitor, Thresholds, make_probe
from lipflow.monitor.log import COLUMNS
from lipflow.precision import precision
from lipflow.train import AdamConfig, fit

F32_U = float(precision("float32").unit_roundoff)


def small_flow() -> lipflow.Flow:
    return lipflow.Flow([lipflow.ActNorm(2), lipflow.AffineCoupling(2, scale="exp"), lipflow.Reverse(2),
                         lipflow.AffineCoupling(2, scale="exp")])


def data(n: int = 200, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 2))


def shrunk(params: list, step: int, rate: float) -> list:
    """Scales shrunk step by step: ActNorm log-scale and the last coupling's s output bias fall
    by ``rate`` per step (the scales fall as exp(-rate * step))."""
    p = [dict(q) if isinstance(q, dict) else q for q in params]
    p[0] = {**p[0], "log_scale": np.asarray(params[0]["log_scale"]) - rate * step}
    s = dict(p[3]["s"])
    s["biases"] = [*s["biases"][:-1], np.asarray(s["biases"][-1]) - rate * step]
    p[3] = {**p[3], "s": s}
    return p


def test_probe_has_data_rows_noise_and_a_ring_beyond_the_data() -> None:
    x = data()
    probe = make_probe(x, n=32, ring_factor=1.5)
    assert probe.inside.shape == (32, 2) and probe.ood.shape == (32, 2)
    assert all(any(np.array_equal(row, r) for r in x) for row in probe.inside)
    radius = 1.5 * np.max(np.linalg.norm(x - x.mean(0), axis=1))
    ring = probe.ood[probe.n_noise:]
    np.testing.assert_allclose(np.linalg.norm(ring - x.mean(0), axis=1), radius, rtol=1e-12)
    with pytest.raises(LipflowError, match="ring_factor"):
        make_probe(x, ring_factor=0.9)


def test_measurements_match_direct_computations() -> None:
    flow = small_flow()
    params = shrunk(flow.init(0), 1, 0.3)
    probe = make_probe(data(), n=24)
    monitor = Monitor(flow, probe, params=params, ctx="float32", spectrum_points=24, lanczos_steps=2,
                      attribution_every=1, attribution_points=3)
    monitor.check(0, params)
    record = monitor.history[-1]
    x32 = probe.inside.astype(np.float32)
    back = flow.inverse(params, flow.forward(params, x32, ctx="float32"), ctx="float32")
    errors = np.linalg.norm(x32.astype(np.float64) - back.astype(np.float64), axis=1)
    norm = math.sqrt(np.mean(np.sum(probe.inside ** 2, axis=1)))
    assert record["roundtrip_in"] == pytest.approx(errors.max() / norm, rel=1e-12)
    assert record["nonfinite_in"] == 0 and record["nonfinite_ood"] == 0
    spectrum = jacobian_spectrum(flow, params, probe.inside, ctx="float64")  # exact: Lanczos exhausts d = 2
    assert record["sigma_min"] == pytest.approx(spectrum.sigma_min.min(), rel=1e-6)
    assert record["sigma_max"] == pytest.approx(spectrum.sigma_max.max(), rel=1e-6)
    assert record["cond"] == pytest.approx(spectrum.cond.max(), rel=1e-6)
    # smallest scale per block, directly from the blocks along the float32 forward pass
    trace = flow.forward_trace(params, x32, ctx="float32")
    ctx = precision("float32")
    for k in (1, 3):
        block = flow.blocks[k]
        _, g, _ = block.shift_and_log_scale(ctx.cast(params[k]), block.split(trace[k])[0], ctx)
        assert record[f"min_scale:{k}:AffineCoupling"] == pytest.approx(float(np.min(g)), rel=1e-6)
    assert record["min_scale:0:ActNorm"] == pytest.approx(float(np.exp(params[0]["log_scale"]).min()), rel=1e-6)
    assert record["attribution_layer"] in monitor.target.layers and record["attribution"] >= 0


def run_drift(rate: float, checks: int, **options) -> Monitor:
    flow = small_flow()
    base = flow.init(0)
    monitor = Monitor(flow, make_probe(data(), n=32), params=base, ctx="float32", every=10,
                      attribution_every=0, **options)
    for step in range(0, 10 * checks, 10):
        monitor.step(step, shrunk(base, step, rate))
    return monitor


def test_constructed_drift_fires_before_the_round_trip_breaks() -> None:
    # scales fall by a factor e every 20 steps: cond reaches 1/u = 1.7e7 after ~330 steps
    with pytest.warns(NumericalInvertibilityWarning, match="rule trend") as caught:
        monitor = run_drift(0.05, 60)
    first = monitor.first_alarm
    assert first is not None and first.rule == "trend"
    assert first.layer in ("0:ActNorm", "3:AffineCoupling")  # the shrinking blocks
    broken = [r["step"] for r in monitor.history if r["roundtrip_in"] > Thresholds(F32_U).roundtrip
              or r["nonfinite_in"] > 0]
    assert broken and first.step < broken[0]
    assert len(caught) >= 1 and monitor.healthy_step == first.step - 10


def test_still_run_stays_quiet() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", NumericalInvertibilityWarning)
        monitor = run_drift(0.0, 30)
    assert monitor.alarms == [] and monitor.checks == 30
    assert monitor.status().endswith("| ok")


def test_raise_stops_and_saves_the_last_healthy_parameters(tmp_path) -> None:
    with pytest.raises(NumericalInvertibilityError) as caught:
        run_drift(0.05, 60, on_alarm="raise", save_healthy=tmp_path / "healthy")
    error = caught.value
    assert error.alarms and error.healthy_step is not None and error.healthy_step < error.alarms[0].step
    _block, params = lipflow.load_flow(tmp_path / "healthy")
    expected = shrunk(small_flow().init(0), error.healthy_step, 0.05)
    np.testing.assert_array_equal(params[0]["log_scale"], expected[0]["log_scale"])


def test_log_is_append_only_and_resumes(tmp_path) -> None:
    path = tmp_path / "monitor.csv"
    flow = small_flow()
    params = flow.init(0)
    probe = make_probe(data(), n=16)
    with Monitor(flow, probe, params=params, every=10, log=path) as monitor:
        for step in range(0, 50, 10):
            monitor.step(step, params)
        metrics = monitor.metrics
    text = path.read_text()
    assert text.splitlines()[0] == ",".join(COLUMNS)
    assert len(text.splitlines()) == 1 + 5 * len(metrics)
    with open(path, "a") as stream:  # a kill while writing the next record leaves a torn tail
        stream.write("monitor,50,roundtrip_in,in,-,0.1,exa")
    with Monitor(flow, probe, params=params, every=10, log=path) as monitor:
        assert [r["step"] for r in monitor.history] == [0, 10, 20, 30, 40]
        for step in range(30, 70, 10):  # a restart from an earlier checkpoint: logged steps stay once
            monitor.step(step, params)
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 7 * len(metrics)
    steps = [line.split(",")[1] for line in lines[1:] if line.split(",")[2] == "roundtrip_in"]
    assert steps == ["0", "10", "20", "30", "40", "50", "60"]


def test_fit_callback_records_and_can_stop_training() -> None:
    flow = small_flow()
    base = flow.init(0)
    x = data(64)
    monitor = Monitor(flow, x, params=base, every=5, attribution_every=0)
    result = fit(lambda p, b, s: (flow.forward(p, x) ** 2).mean(), base, lambda s, r: None, steps=10,
                 adam=AdamConfig(lr=1e-3), monitor=monitor.fit_callback(), monitor_every=monitor.every,
                 progress=False)
    assert [r["step"] for r in result.records] == [0, 5, 10]
    assert result.records[0]["cond"] == monitor.history[0]["cond"]


def test_bad_options_are_named() -> None:
    flow = small_flow()
    with pytest.raises(LipflowError, match="on_alarm"):
        Monitor(flow, data(), params=flow.init(0), on_alarm="panic")
    with pytest.raises(LipflowError, match="features"):
        Monitor(flow, np.ones((10, 3)), params=flow.init(0))
    with pytest.raises(LipflowError, match="params"):
        Monitor(flow, data())
    monitor = Monitor(flow, data(), params=flow.init(0))
    with pytest.raises(LipflowError, match="params"):
        monitor.step(0)


def test_plot_marks_the_first_alarm(tmp_path) -> None:
    with pytest.warns(NumericalInvertibilityWarning):
        monitor = run_drift(0.05, 40)
    figure = monitor.plot(tmp_path / "monitor.png", events={"first non-finite loss": 390})
    assert (tmp_path / "monitor.png").stat().st_size > 0
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert any(label.startswith(f"first warning, step {monitor.first_alarm.step}") for label in labels)
