"""Matplotlib figures. Numerics live in :mod:`lipflow.analysis`; this module only draws."""

from __future__ import annotations

from typing import Any

import numpy as onp

from lipflow.analysis.attribution import LayerAttribution

__all__ = ["plot_attribution", "plot_tightness"]


def plot_attribution(attribution: LayerAttribution, *, ax: Any = None, sample: int | None = None) -> Any:
    """Bars of each layer's local error and its contribution to ||x - x_delta2|| (log scale).

    Forward-pass errors and inverse-pass errors are drawn side by side; the gap between a
    layer's local error and its contribution is the amplification by the layers below it.
    Returns the Axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(attribution.layers) + 2), 4))

    def pick(a: onp.ndarray) -> onp.ndarray:
        column = a[:, sample] if sample is not None else onp.nanmax(a, axis=1)
        return onp.where(column > 0, column, onp.nan)

    k = onp.arange(len(attribution.layers))
    width = 0.2
    series = [
        (attribution.forward_local, "forward: local error", "#9ecae1", -1.5),
        (attribution.forward_contribution, "forward: contribution", "#3182bd", -0.5),
        (attribution.inverse_local, "inverse: local error", "#fdae6b", 0.5),
        (attribution.inverse_contribution, "inverse: contribution", "#e6550d", 1.5),
    ]
    for values, label, colour, offset in series:
        ax.bar(k + offset * width, pick(values), width, label=label, color=colour)
    ax.set_yscale("log")
    ax.set_xticks(k)
    ax.set_xticklabels([f"{i}: {name}" for i, name in enumerate(attribution.layers)], rotation=40, ha="right",
                       fontsize=8)
    ax.set_ylabel("l2 error")
    what = f"sample {sample}" if sample is not None else "max over samples"
    ax.set_title(f"Per-layer error attribution ({attribution.working}, reference {attribution.reference}, {what})",
                 fontsize=9)
    ax.axhline(float(onp.max(attribution.reconstruction_error)), color="k", lw=0.8, ls="--",
               label="||x - x_delta2|| (max)")
    ax.legend(fontsize=7)
    ax.figure.tight_layout()
    return ax


def plot_tightness(ratios: dict[str, onp.ndarray], *, ax: Any = None) -> Any:
    """Histogram of measured/bound ratios per label (log10 axis); non-positive ratios are skipped."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for label, values in ratios.items():
        values = onp.asarray(values, dtype=float)
        values = values[onp.isfinite(values) & (values > 0)]
        if values.size:
            ax.hist(onp.log10(values), bins=30, alpha=0.5, label=f"{label} (n={values.size})")
    ax.set_xlabel("log10(measured / bound)")
    ax.set_ylabel("samples")
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax
