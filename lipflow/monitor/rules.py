"""Early-warning rules on the monitor's series; every threshold derives from the unit roundoff.

With u the unit roundoff of the working precision (float32: 2^-24 ~ 6e-8) and kappa the
estimated condition number of J_F on the in-distribution probe (largest over its points):

- ``nonfinite``: any Inf/NaN in the forward pass or the round trip on either probe (the
  out-of-distribution probe is where inverses explode first, paper Section 4.3).
- ``roundtrip``: the largest round-trip error ||x - F^-1(F(x))|| relative to the probe's RMS
  norm exceeds sqrt(u): half the working digits are gone.
- ``conditioning``: the first-order round-trip error level u * kappa exceeds sqrt(u)
  (kappa > u^-1/2): conditioning alone can cost half the digits (paper Sec. 2: the error is
  amplified by Lip(F^-1) = 1/sigma_min).
- ``scale``: a block's smallest affine scale g falls below sqrt(u): its inverse multiplies by
  more than u^-1/2 (theory ``thm:coupling-stability``: Lip of the inverse grows as 1/min g).
- ``trend``: kappa has already cost a quarter of the digits (kappa > u^-1/4) and a
  least-squares line through log10 kappa over the last ``window`` checks rises fast enough to
  reach 1/u (every digit lost) within ``horizon`` steps; equivalently, log sigma_min falls
  faster than the decades left before u * sigma_max, per ``horizon`` steps. (The level gate
  keeps the fast, harmless moves of early training, e.g. from kappa = 1 at an identity
  initialisation to kappa = 4, from being extrapolated.)

The thresholds are properties of the precision, not of a model or a data set; ``horizon``
(default 1000 steps) says how far ahead a trend is extrapolated and ``window`` (default 5)
how many checks the line is fitted to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as onp

__all__ = ["Alarm", "Thresholds", "evaluate"]


@dataclass(frozen=True)
class Alarm:
    """One fired rule at one check: which quantity, at which layer, its value and threshold."""

    step: int
    rule: str
    quantity: str
    layer: str
    value: float
    threshold: float
    message: str


@dataclass(frozen=True)
class Thresholds:
    """The rule thresholds for unit roundoff ``unit_roundoff`` (see the module docstring)."""

    unit_roundoff: float
    horizon: int = 1000
    window: int = 5

    @property
    def roundtrip(self) -> float:
        return math.sqrt(self.unit_roundoff)

    @property
    def cond(self) -> float:
        return 1.0 / math.sqrt(self.unit_roundoff)

    @property
    def scale(self) -> float:
        return math.sqrt(self.unit_roundoff)

    @property
    def trend_gate(self) -> float:
        return self.unit_roundoff ** -0.25

    @property
    def singular_cond(self) -> float:
        return 1.0 / self.unit_roundoff


def trend_slope(steps: list[int], values: list[float]) -> float:
    """Least-squares slope of log10(values) against steps (NaN with fewer than 3 finite points)."""
    pairs = [(s, math.log10(v)) for s, v in zip(steps, values, strict=True) if math.isfinite(v) and v > 0]
    if len(pairs) < 3:
        return math.nan
    s, y = onp.array(pairs).T
    s = s - s.mean()
    denominator = float(onp.dot(s, s))
    return float(onp.dot(s, y - y.mean()) / denominator) if denominator > 0 else math.nan


def evaluate(step: int, record: dict[str, float], history: list[dict[str, float]], scales: dict[str, float],
             culprit: str, limits: Thresholds) -> list[Alarm]:
    """The alarms that fire on ``record`` (this check) given earlier checks ``history``.

    ``culprit`` is the layer named for whole-model quantities (the block with the smallest
    scale, or the one the last attribution blamed, or "model").
    """
    alarms: list[Alarm] = []

    def fire(rule: str, quantity: str, layer: str, value: float, threshold: float, text: str) -> None:
        alarms.append(Alarm(step, rule, quantity, layer, value, threshold,
                            f"step {step}: {text} [rule {rule}, layer {layer}]"))

    for probe in ("in", "ood"):
        share = record[f"nonfinite_{probe}"]
        if share > 0 or math.isnan(share):
            where = "in-distribution" if probe == "in" else "out-of-distribution"
            fire("nonfinite", f"nonfinite_{probe}", culprit, share, 0.0,
                 f"{share:.3g}% of the {where} probe gives Inf/NaN in the forward pass or the round trip")
    error = record["roundtrip_in"]
    if error > limits.roundtrip:
        fire("roundtrip", "roundtrip_in", culprit, error, limits.roundtrip,
             f"round-trip error {error:.3g} (relative) exceeds sqrt(u) = {limits.roundtrip:.3g}")
    cond = record["cond"]
    if cond > limits.cond:
        fire("conditioning", "cond", culprit, cond, limits.cond,
             f"cond(J_F) ~ {cond:.3g} (estimate) exceeds u^-1/2 = {limits.cond:.3g}: u*cond > sqrt(u)")
    for layer, value in scales.items():
        if value < limits.scale:
            fire("scale", "min_scale", layer, value, limits.scale,
                 f"smallest affine scale {value:.3g} fell below sqrt(u) = {limits.scale:.3g}")
    recent = [*history[-(limits.window - 1):], record] if limits.window > 1 else [record]
    slope = trend_slope([int(r["step"]) for r in recent], [r["cond"] for r in recent])
    if math.isfinite(slope) and slope > 0 and math.isfinite(cond) and cond > limits.trend_gate:
        left = math.log10(limits.singular_cond) - math.log10(max(cond, 1.0))
        if left <= 0 or left / slope <= limits.horizon:
            sigma_slope = trend_slope([int(r["step"]) for r in recent], [r["sigma_min"] for r in recent])
            fire("trend", "cond", culprit, 1000 * slope, 1000 * max(left, 0.0) / limits.horizon,
                 f"log10 cond(J_F) rises {1000 * slope:.3g} decades per 1k steps (log10 sigma_min: "
                 f"{1000 * sigma_slope:+.3g}); at this rate cond reaches 1/u = {limits.singular_cond:.3g} "
                 f"within {max(left, 0.0) / slope:.0f} steps (horizon {limits.horizon})")
    return alarms
