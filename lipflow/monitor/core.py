"""The training-time invertibility monitor: cheap checks every ``every`` steps, early warnings.

Example, a lipflow flow trained by any loop:

    >>> import numpy as np, lipflow
    >>> from lipflow.monitor import Monitor
    >>> flow = lipflow.Flow([lipflow.AffineCoupling(2), lipflow.Reverse(2)] * 2)
    >>> params = flow.init(0)
    >>> data = np.random.default_rng(0).standard_normal((256, 2))
    >>> monitor = Monitor(flow, data, params=params, ctx="float32", every=50)
    >>> monitor.step(0, params)
    []
    >>> monitor.status().split(" | ")[0]
    'step 0'
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as onp

from lipflow.errors import LipflowError, NumericalInvertibilityError, NumericalInvertibilityWarning
from lipflow.monitor.log import MonitorLog
from lipflow.monitor.probes import Probe, make_probe
from lipflow.monitor.rules import Alarm, Thresholds, evaluate
from lipflow.monitor.targets import LipflowTarget, as_target
from lipflow.precision import Precision

__all__ = ["ON_ALARM", "Monitor"]

ON_ALARM = ("warn", "raise", "record")
BASE_METRICS = ("roundtrip_in", "roundtrip_ood", "nonfinite_in", "nonfinite_ood", "sigma_min", "sigma_max",
                "cond", "attribution")
PROBES = {"roundtrip_in": "in", "roundtrip_ood": "ood", "nonfinite_in": "in", "nonfinite_ood": "ood",
          "sigma_min": "in", "sigma_max": "in", "cond": "in", "attribution": "in"}


class Monitor:
    """Watch a flow's numerical invertibility while it trains.

    Args:
        model: a lipflow ``Flow`` (give ``params``), or a torch model / ``(forward, inverse)``
            pair that ``lipflow.interop.adapters.adapt`` accepts (or an ``AdaptedFlow``).
        probe: a :class:`~lipflow.monitor.probes.Probe`, or training data (N, d) to build one
            (``make_probe``: a fixed data batch, noise and a ring beyond the data's radius).
        params: the flow's current params (lipflow flows; pass new ones to :meth:`step`).
        ctx: working precision of the checks for lipflow flows (default float64; a torch model
            is checked in its own dtype).
        every: check every ``every`` steps (:meth:`step` is a no-op in between).
        attribution_every: per-layer attribution of the round-trip error every k-th check
            (lipflow flows; 0 disables it).
        spectrum_points: probe points the sigma estimates are computed at.
        lanczos_steps: Lanczos steps per estimate (exact once they reach the dimension).
        attribution_points: probe points attributed (cost grows as L^2 block evaluations).
        on_alarm: "warn" (a ``NumericalInvertibilityWarning`` when a rule starts firing),
            "raise" (``NumericalInvertibilityError``: stop training) or "record" (log only).
        horizon: how far (steps) the trend rule extrapolates.
        window: how many checks the trend rule fits its line to (>= 3).
        log: path of the append-only CSV. Reopening a log resumes it: its checks become the
            history the trend rule sees; a check at step s drops remembered checks at steps >= s
            (a restart from a checkpoint), while the log keeps the first record of each step.
        save_healthy: path to save the last healthy parameters to when the first alarm fires
            (lipflow: ``PATH.json`` + ``PATH.npz``; torch: a ``state_dict`` file).
        scales: torch models only: ``scales(x) -> {layer: smallest scale}``, if you can read them.
        run: the ``run`` column of the log.
    """

    def __init__(self, model: Any, probe: Probe | Any, *, params: Any = None, ctx: Precision | str | None = None,
                 every: int = 50, attribution_every: int = 10, spectrum_points: int = 16, lanczos_steps: int = 4,
                 attribution_points: int = 4, on_alarm: str = "warn", horizon: int = 1000, window: int = 5,
                 log: str | Path | None = None, save_healthy: str | Path | None = None, scales: Any = None,
                 run: str = "monitor") -> None:
        for name, value in (("every", every), ("spectrum_points", spectrum_points), ("lanczos_steps", lanczos_steps),
                            ("attribution_points", attribution_points), ("horizon", horizon)):
            if not (isinstance(value, int) and value >= 1):
                raise LipflowError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(attribution_every, int) and attribution_every >= 0):
            raise LipflowError(f"attribution_every must be 0 (off) or a positive integer, got {attribution_every!r}")
        if not (isinstance(window, int) and window >= 3):
            raise LipflowError(f"window must be an integer >= 3 (a trend needs 3 points), got {window!r}")
        if on_alarm not in ON_ALARM:
            raise LipflowError(f"on_alarm must be one of {', '.join(ON_ALARM)}, got {on_alarm!r}")
        self.target = as_target(model, params, ctx, scales)
        self.probe = probe if isinstance(probe, Probe) else make_probe(probe)
        if self.probe.dim != self._model_dim():
            raise LipflowError(f"the probe has {self.probe.dim} features but the model takes {self._model_dim()}")
        self.every, self.attribution_every, self.on_alarm = every, attribution_every, on_alarm
        self.spectrum_points, self.lanczos_steps, self.attribution_points = (
            spectrum_points, lanczos_steps, attribution_points)
        self.limits = Thresholds(self.target.unit_roundoff, horizon=horizon, window=window)
        self.run, self.save_healthy = run, save_healthy
        self.norm = float(onp.sqrt(onp.mean(onp.sum(self.probe.inside ** 2, axis=1)))) or 1.0
        self.scale_layers = tuple(self.target.scales(self.probe.inside))
        self.metrics = (*BASE_METRICS, *(f"min_scale:{layer}" for layer in self.scale_layers), "alarms")
        self.history: list[dict[str, Any]] = []
        self.alarms: list[Alarm] = []
        self.active: set[str] = set()
        self.checks = 0
        self.seconds = 0.0
        self.healthy_params: Any = self.target.snapshot()
        self.healthy_step: int | None = None
        self.saved_healthy: Path | None = None
        self.last_attribution: tuple[str, float] | None = None
        self._log = MonitorLog(log, self.metrics) if log is not None else None
        self._logged = self._log.logged_steps() if self._log is not None else set()
        if self._log is not None:
            self.history = [self._record_from_rows(rows) for rows in self._log.records.values()]
            self.history.sort(key=lambda r: r["step"])

    # ---- driving ----------------------------------------------------------------------------------
    def step(self, step: int, params: Any = None) -> list[Alarm]:
        """Check at ``step`` if it is a multiple of ``every`` (else return at once); the alarms
        fired. lipflow flows: pass the current ``params``."""
        if step % self.every:
            return []
        return self.check(step, params)

    def check(self, step: int, params: Any = None) -> list[Alarm]:
        """Measure now, log, apply the rules, warn/raise; returns the alarms fired at this check."""
        start = time.perf_counter()
        if isinstance(self.target, LipflowTarget):
            if params is None:
                raise LipflowError("pass the flow's current params: monitor.step(step, params)")
            self.target.set_params(params)
        else:
            self.target.set_params(params)
        record, kinds, scales = self._measure(step)
        culprit = self._culprit(scales)
        self.history = [r for r in self.history if r["step"] < step]  # a restart from an earlier step
        fired = evaluate(step, record, self.history, scales, culprit, self.limits)
        record["alarms"] = float(len(fired))
        record["alarm_rules"] = ";".join(f"{a.rule}@{a.layer}" for a in fired)
        self.history.append(record)
        self.checks += 1
        if self._log is not None and step not in self._logged:
            self._log.write(self._rows(record, kinds, scales))
            self._logged.add(step)
        self.seconds += time.perf_counter() - start
        if not fired:
            self.healthy_params, self.healthy_step = self.target.snapshot(), step
            self.active.clear()
            return []
        self.alarms.extend(fired)
        self._save_healthy()
        new = [a for a in fired if a.rule not in self.active]
        self.active = {a.rule for a in fired}
        if self.on_alarm == "raise":
            raise NumericalInvertibilityError(
                "; ".join(a.message for a in fired) + f" (last healthy check: step {self.healthy_step})",
                alarms=tuple(fired), healthy_step=self.healthy_step)
        if self.on_alarm == "warn":
            for alarm in new:
                warnings.warn(NumericalInvertibilityWarning(alarm.message), stacklevel=3)
        return fired

    def close(self) -> None:
        """Flush and close the log (also done by ``with Monitor(...) as monitor:``)."""
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- conveniences -----------------------------------------------------------------------------
    @property
    def first_alarm(self) -> Alarm | None:
        return self.alarms[0] if self.alarms else None

    def fit_callback(self) -> Any:
        """``monitor(step, params) -> dict`` for ``lipflow.train.fit(..., monitor=cb, monitor_every=every)``."""
        def callback(step: int, params: Any) -> dict[str, float]:
            self.check(step, params)
            record = self.history[-1]
            return {k: v for k, v in record.items() if isinstance(v, float) and k != "step"}

        return callback

    def status(self) -> str:
        """One line for a progress bar's postfix, e.g. ``step 300 | rt 2e-07 | cond~41 | ok``."""
        if not self.history:
            return "no check yet"
        r = self.history[-1]
        parts = [f"step {r['step']}", f"rt {r['roundtrip_in']:.2g}", f"cond~{r['cond']:.2g}",
                 f"smin~{r['sigma_min']:.2g}"]
        if r["nonfinite_ood"] or r["nonfinite_in"]:
            parts.append(f"nonfinite {r['nonfinite_in']:.3g}%/{r['nonfinite_ood']:.3g}% (in/ood)")
        parts.append(f"ALARM {r['alarm_rules']}" if r["alarms"] else "ok")
        return " | ".join(parts)

    def plot(self, path: str | Path | None = None, *, events: dict[str, int] | None = None, title: str = "") -> Any:
        """The series against step with the first alarm marked (see ``lipflow.monitor.plot``)."""
        from lipflow.monitor.plot import plot_monitor

        return plot_monitor(self, path, events=events, title=title)

    # ---- internals --------------------------------------------------------------------------------
    def _model_dim(self) -> int:
        if isinstance(self.target, LipflowTarget):
            return self.target.flow.dim
        return self.probe.dim  # torch models: the first check raises on a mismatch

    def _measure(self, step: int) -> tuple[dict[str, Any], dict[str, str], dict[str, float]]:
        record: dict[str, Any] = {"step": step}
        kinds: dict[str, str] = {}
        for probe, x in (("in", self.probe.inside), ("ood", self.probe.ood)):
            trip = self.target.roundtrip(x)
            finite = trip.errors[~trip.nonfinite]
            record[f"roundtrip_{probe}"] = float(onp.max(finite)) / self.norm if finite.size else math.nan
            record[f"nonfinite_{probe}"] = 100.0 * float(onp.mean(trip.nonfinite))
            kinds[f"roundtrip_{probe}"] = kinds[f"nonfinite_{probe}"] = "exact"
        scales = self.target.scales(self.probe.inside)
        spectrum = self.target.spectrum(self.probe.inside[: self.spectrum_points], self.lanczos_steps)
        with warnings.catch_warnings(), onp.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            smin, smax = onp.asarray(spectrum.sigma_min, float), onp.asarray(spectrum.sigma_max, float)
            record["sigma_min"] = float(onp.nanmin(smin)) if onp.any(onp.isfinite(smin)) else math.nan
            record["sigma_max"] = float(onp.nanmax(smax)) if onp.any(onp.isfinite(smax)) else math.nan
            cond = onp.where(smin > 0, smax / smin, onp.inf)
            record["cond"] = float(onp.nanmax(cond)) if onp.any(~onp.isnan(cond)) else math.nan
        kinds["sigma_min"] = kinds["sigma_max"] = kinds["cond"] = spectrum.kind
        record["spectrum_method"] = spectrum.method
        record["attribution"], record["attribution_layer"], kinds["attribution"] = math.nan, "-", "not computed"
        if self.attribution_every and self.checks % self.attribution_every == 0:
            found = self.target.attribution(self.probe.inside[: self.attribution_points])
            if found is not None:
                layer, contribution, _ = found
                record["attribution"], record["attribution_layer"] = contribution / self.norm, layer
                kinds["attribution"] = "exact"
                self.last_attribution = (layer, contribution / self.norm)
        for layer in self.scale_layers:
            record[f"min_scale:{layer}"] = scales.get(layer, math.nan)
        return record, kinds, scales

    def _culprit(self, scales: dict[str, float]) -> str:
        finite = {k: v for k, v in scales.items() if math.isfinite(v)}
        if finite:
            return min(finite, key=finite.__getitem__)
        if self.last_attribution is not None:
            return self.last_attribution[0]
        return "model"

    def _rows(self, record: dict[str, Any], kinds: dict[str, str], scales: dict[str, float]) -> list[dict[str, str]]:
        common = {"run": self.run, "step": str(record["step"]), "working": self.target.working_name}
        rows = []
        for metric in self.metrics:
            layer, probe, kind = "-", PROBES.get(metric, "in"), kinds.get(metric, "exact")
            if metric == "attribution":
                layer = record["attribution_layer"]
            elif metric.startswith("min_scale:"):
                layer = metric.split(":", 1)[1]
            elif metric == "alarms":
                layer, probe = record["alarm_rules"] or "-", "-"
            rows.append({**common, "metric": metric, "probe": probe, "layer": layer,
                         "value": repr(float(record[metric])), "kind": kind})
        return rows

    def _record_from_rows(self, rows: list[dict[str, str]]) -> dict[str, Any]:
        record: dict[str, Any] = {"step": int(rows[0]["step"]), "spectrum_method": "(from the log)"}
        for row in rows:
            record[row["metric"]] = float(row["value"])
            if row["metric"] == "attribution":
                record["attribution_layer"] = row["layer"]
            if row["metric"] == "alarms":
                record["alarm_rules"] = "" if row["layer"] == "-" else row["layer"]
        return record

    def _save_healthy(self) -> None:
        if self.save_healthy is None or self.saved_healthy is not None:
            return
        path = Path(self.save_healthy)
        if isinstance(self.target, LipflowTarget):
            from lipflow.blocks.serialise import save_flow

            save_flow(path, self.target.flow, self.healthy_params)
        elif self.healthy_params is not None:
            import torch

            from lipflow.io import atomic_path

            with atomic_path(path) as temporary:
                torch.save(self.healthy_params, temporary)
        self.saved_healthy = path
