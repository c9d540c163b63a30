"""The monitor's series against the training step, with the first alarm (and events) marked."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as onp

__all__ = ["plot_monitor"]

MAX_SCALE_LINES = 8


def _series(history: list[dict[str, Any]], key: str) -> onp.ndarray:
    return onp.asarray([float(r.get(key, math.nan)) for r in history], dtype=float)


def plot_monitor(monitor: Any, path: str | Path | None = None, *, events: dict[str, int] | None = None,
                 title: str = "") -> Any:
    """Four panels: round-trip error (in / OOD probe), sigma_min / sigma_max / cond estimates,
    smallest scale per block, % non-finite. Dashed red: the first alarm; dotted black: ``events``
    (e.g. ``{"first non-finite loss": 812}``). Thresholds from the unit roundoff in grey.
    Saved atomically to ``path`` when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullLocator

    history, limits = monitor.history, monitor.limits
    steps = _series(history, "step")
    figure, axes = plt.subplots(1, 4, figsize=(17, 3.9), constrained_layout=True)
    ax = axes[0]
    ax.semilogy(steps, _series(history, "roundtrip_in"), "o-", ms=3, label="in-distribution probe")
    ax.semilogy(steps, _series(history, "roundtrip_ood"), "s--", ms=3, label="OOD probe (noise + ring)")
    ax.axhline(limits.roundtrip, color="grey", lw=1, label="sqrt(u)")
    ax.set_title(f"max round-trip error ||x - F^-1(F(x))|| (exact)\nrelative to the probe RMS norm, "
                 f"{monitor.target.working_name}", fontsize=9)
    ax = axes[1]
    ax.semilogy(steps, _series(history, "sigma_min"), "o-", ms=3, label="sigma_min (min over probe)")
    ax.semilogy(steps, _series(history, "sigma_max"), "^-", ms=3, label="sigma_max (max over probe)")
    ax.semilogy(steps, _series(history, "cond"), "s-", ms=3, label="cond (max over probe)")
    ax.axhline(limits.cond, color="grey", lw=1, label="u^-1/2")
    method = history[-1].get("spectrum_method", "") if history else ""
    ax.set_title(f"Jacobian of F, estimates\n({method})", fontsize=9)
    ax = axes[2]
    layers = list(monitor.scale_layers)
    if layers:
        values = {layer: _series(history, f"min_scale:{layer}") for layer in layers}
        order = sorted(layers, key=lambda k: onp.nanmin(values[k]) if onp.any(onp.isfinite(values[k])) else onp.inf)
        for layer in order[:MAX_SCALE_LINES]:
            ax.semilogy(steps, values[layer], "-", lw=1.2, label=layer)
        ax.axhline(limits.scale, color="grey", lw=1, label="sqrt(u)")
        shown = "" if len(layers) <= MAX_SCALE_LINES else f" ({MAX_SCALE_LINES} smallest of {len(layers)})"
        ax.set_title(f"smallest scale per block on the probe (exact){shown}", fontsize=9)
    else:
        ax.text(0.5, 0.5, "no per-block scales\nfor this model", ha="center", va="center", transform=ax.transAxes)
        ax.set_title("smallest scale per block", fontsize=9)
    ax = axes[3]
    ax.plot(steps, _series(history, "nonfinite_in"), "o-", ms=3, label="in-distribution")
    ax.plot(steps, _series(history, "nonfinite_ood"), "s--", ms=3, label="OOD")
    ax.set_ylim(-5, 105)
    ax.set_title("% of probe points with Inf/NaN (exact)", fontsize=9)
    first = monitor.first_alarm
    for axis in axes[:3]:
        # at most ~8 labelled decades: a series spanning hundreds of decades otherwise makes
        # matplotlib lay out hundreds of ticks (seconds per figure)
        axis.yaxis.set_major_locator(LogLocator(numticks=8))
        axis.yaxis.set_minor_locator(NullLocator())
    for axis in axes:
        if first is not None:
            axis.axvline(first.step, color="red", ls="--", lw=1.5,
                         label=f"first warning, step {first.step} ({first.rule})")
        for index, (label, step) in enumerate((events or {}).items()):
            axis.axvline(step, color="black", ls=":" if index == 0 else "-.", lw=1.5, label=f"{label}, step {step}")
        axis.set_xlabel("training step")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6, loc="best")
    figure.suptitle(title or f"invertibility monitor ({monitor.target.library}, checks every {monitor.every} steps)",
                    fontsize=11)
    if path is not None:
        from lipflow.io import atomic_savefig

        atomic_savefig(figure, path, dpi=110)
    return figure
