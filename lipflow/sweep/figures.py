"""Figures of a sweep folder (PNG and PDF): error vs depth, spectra vs depth, heatmaps.

A *model* is (block, conditioner, scale, inputs); each gets a panel. Several seeds are shown
as the median with a min-max band. Non-finite values are never hidden: the first depth with
an inf/NaN error gets a dotted line and a label, exact zeros a tick on the bottom edge, and
in heatmaps inf cells are black and labelled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as onp

from lipflow.errors import LipflowError
from lipflow.io import atomic_savefig
from lipflow.sweep.spec import AXES, SweepSpec

__all__ = [
    "MODEL_COLUMNS",
    "check_heatmap_axes",
    "heatmap_axes",
    "plot_error_vs_depth",
    "plot_heatmap",
    "plot_spectra_vs_depth",
    "write_figures",
]

MODEL_COLUMNS = ("block", "conditioner", "scale", "inputs")
MAX_PANELS = 12
SPECTRUM_METRICS = ("sigma_min", "sigma_max", "cond")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _model_label(model: tuple[str, ...]) -> str:
    block, conditioner, scale, inputs = model
    parts = [block]
    if conditioner not in ("-", "mlp"):
        parts.append(conditioner)
    if scale not in ("-", "identity"):
        parts.append(f"scale {scale}")
    parts.append(f"inputs {inputs}")
    return ", ".join(parts)


def _table(rows: Sequence[dict[str, str]], metric: str) -> dict[tuple[str, ...], dict[str, dict[int, list[float]]]]:
    """model -> precision -> depth -> values over seeds."""
    table: dict[tuple[str, ...], dict[str, dict[int, list[float]]]] = {}
    for row in rows:
        if row["metric"] == metric:
            model = tuple(row[c] for c in MODEL_COLUMNS)
            table.setdefault(model, {}).setdefault(row["precision"], {}).setdefault(int(row["depth"]), []).append(
                float(row["value"])
            )
    return table


def _series(by_depth: dict[int, list[float]]) -> tuple[onp.ndarray, onp.ndarray, onp.ndarray, onp.ndarray]:
    """(depths, median, min, max) over seeds; a depth with any NaN gives NaN."""
    depths = onp.array(sorted(by_depth))
    values = [onp.asarray(by_depth[d]) for d in depths]
    median = onp.array([onp.median(v) for v in values])
    low = onp.array([onp.min(v) for v in values])
    high = onp.array([onp.max(v) for v in values])
    return depths, median, low, high


def _panels(count: int, width: float = 5.0, height: float = 3.8) -> tuple[Any, list[Any]]:
    plt = _pyplot()
    columns = min(count, 3)
    lines = math.ceil(count / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(width * columns, height * lines), squeeze=False,
                                constrained_layout=True)
    flat = list(axes.flat)
    for axis in flat[count:]:
        axis.set_visible(False)
    return figure, flat[:count]


def plot_error_vs_depth(rows: Sequence[dict[str, str]], metric: str = "recon_error") -> Any:
    """One panel per model: ``metric`` against depth, one line per precision (log scale)."""
    table = _table(rows, metric)
    models = list(table)[:MAX_PANELS]
    figure, axes = _panels(len(models))
    for axis, model in zip(axes, models, strict=True):
        for index, (name, by_depth) in enumerate(table[model].items()):
            colour = f"C{index % 10}"
            depths, median, low, high = _series(by_depth)
            positive = onp.where(median > 0, median, onp.nan)
            axis.plot(depths, positive, "o-", ms=2.5, lw=1.2, color=colour, label=name)
            if onp.any(low != high):
                band = onp.isfinite(low) & onp.isfinite(high) & (low > 0)
                axis.fill_between(depths[band], low[band], high[band], color=colour, alpha=0.2, lw=0)
            zeros = median == 0
            if onp.any(zeros):
                axis.plot(depths[zeros], onp.full(zeros.sum(), 0.02 + 0.03 * index), "|", ms=5, color=colour,
                          transform=axis.get_xaxis_transform())
            bad = ~onp.isfinite(high)
            if onp.any(bad):
                first = int(depths[bad][0])
                axis.axvline(first, color=colour, ls=":", lw=1)
                axis.text(first, 0.98, f" {name}: inf/NaN from L={first}", transform=axis.get_xaxis_transform(),
                          rotation=90, va="top", ha="right", fontsize=7, color=colour)
        axis.set_yscale("log")
        axis.set_xlabel("depth L (blocks)")
        axis.set_ylabel(metric)
        axis.set_title(_model_label(model), fontsize=9)
        axis.grid(True, which="major", alpha=0.3)
        axis.legend(fontsize=7, loc="lower right")
    figure.suptitle(f"{metric} against depth (ticks on the bottom edge: exactly 0; band: min-max over seeds)",
                    fontsize=10)
    return figure


def plot_spectra_vs_depth(rows: Sequence[dict[str, str]]) -> Any:
    """sigma_min, sigma_max and cond of the exact Jacobian against depth, one line per model."""
    present = [m for m in SPECTRUM_METRICS if any(row["metric"] == m for row in rows)]
    figure, axes = _panels(len(present), width=4.8)
    for axis, metric in zip(axes, present, strict=True):
        table = _table(rows, metric)
        for index, (model, by_precision) in enumerate(list(table.items())[:MAX_PANELS]):
            # the exact Jacobian does not depend on the working precision: one line per model
            by_depth = next(iter(by_precision.values()))
            depths, median, low, high = _series(by_depth)
            colour = f"C{index % 10}"
            axis.plot(depths, median, "-", lw=1.4, color=colour, label=_model_label(model))
            if onp.any(low != high):
                axis.fill_between(depths, low, high, color=colour, alpha=0.2, lw=0)
        axis.set_yscale("log")
        axis.set_xlabel("depth L (blocks)")
        axis.set_title({"sigma_min": "$\\sigma_{\\min}(J_F)$", "sigma_max": "$\\sigma_{\\max}(J_F)$",
                        "cond": "cond$(J_F)$ = $\\sigma_{\\max}/\\sigma_{\\min}$"}[metric], fontsize=10)
        axis.grid(True, which="major", alpha=0.3)
    if present:
        axes[0].legend(fontsize=7)
    figure.suptitle("Spectrum of the exact Jacobian (reference precision; band: min-max over seeds)", fontsize=10)
    return figure


def heatmap_axes(spec: SweepSpec) -> tuple[str, str]:
    """Default heatmap axes: depth x precision, or the first axes with several values."""
    varied = [axis for axis in AXES if axis != "seed" and len(spec.axes[axis]) > 1]
    preferred = [axis for axis in ("depth", "precision") if axis in varied]
    chosen = preferred + [axis for axis in varied if axis not in preferred]
    if len(chosen) >= 2:
        return chosen[0], chosen[1]
    return "depth", "precision"


def plot_heatmap(rows: Sequence[dict[str, str]], x_axis: str, y_axis: str, metric: str = "recon_error") -> Any:
    """log10 of ``metric`` (median over seeds) over two axes, one panel per value of the others.

    Black cells with "inf" are non-finite, white cells with "0" exact zeros.
    """
    plt = _pyplot()
    others = [c for c in ("block", "conditioner", "scale", "inputs", "precision", "depth") if c not in (x_axis, y_axis)]
    panels: dict[tuple[str, ...], dict[tuple[str, str], list[float]]] = {}
    for row in rows:
        if row["metric"] == metric:
            key = tuple(row[c] for c in others)
            panels.setdefault(key, {}).setdefault((row[x_axis], row[y_axis]), []).append(float(row["value"]))
    keys = list(panels)[:MAX_PANELS]
    figure, axes = _panels(len(keys), width=5.5, height=3.6)
    logs = []
    for key in keys:
        for values in panels[key].values():
            v = float(onp.median(values))
            if math.isfinite(v) and v > 0:
                logs.append(math.log10(v))
    low, high = (min(logs), max(logs)) if logs else (0.0, 1.0)
    image = None
    for axis, key in zip(axes, keys, strict=True):
        cells = panels[key]
        xs = list(dict.fromkeys(x for x, _ in cells))
        ys = list(dict.fromkeys(y for _, y in cells))
        xs.sort(key=lambda v: int(v) if x_axis in ("depth", "seed") else 0)
        grid = onp.full((len(ys), len(xs)), onp.nan)
        for (x, y), values in cells.items():
            v = float(onp.median(values))
            grid[ys.index(y), xs.index(x)] = math.log10(v) if math.isfinite(v) and v > 0 else onp.nan
        image = axis.imshow(grid, aspect="auto", origin="lower", cmap="viridis", vmin=low, vmax=high,
                            interpolation="nearest")
        for (x, y), values in cells.items():
            v = float(onp.median(values))
            if not math.isfinite(v) or v == 0:
                colour = "black" if not math.isfinite(v) else "white"
                axis.add_patch(plt.Rectangle((xs.index(x) - 0.5, ys.index(y) - 0.5), 1, 1, color=colour))
                if len(xs) <= 40:
                    label = "0" if v == 0 else ("nan" if math.isnan(v) else "inf")
                    axis.text(xs.index(x), ys.index(y), label, ha="center", va="center", fontsize=6,
                              color="white" if colour == "black" else "black")
        step = max(1, len(xs) // 12)
        axis.set_xticks(range(0, len(xs), step), [xs[i] for i in range(0, len(xs), step)], fontsize=7)
        axis.set_yticks(range(len(ys)), ys, fontsize=7)
        axis.set_xlabel(x_axis)
        axis.set_ylabel(y_axis)
        axis.set_title(", ".join(f"{c}={v}" for c, v in zip(others, key, strict=True) if v != "-"), fontsize=7)
    if image is not None:
        figure.colorbar(image, ax=axes, label=f"log10 {metric} (median over seeds)", shrink=0.9)
    figure.suptitle(f"{metric} over {x_axis} x {y_axis} (black: inf/NaN, white: exactly 0)", fontsize=10)
    return figure


def check_heatmap_axes(axes: Sequence[str]) -> tuple[str, str]:
    """Two distinct axis names other than seed (seeds are summarised by the median)."""
    allowed = [axis for axis in AXES if axis != "seed"]
    if len(axes) != 2 or axes[0] == axes[1] or any(axis not in allowed for axis in axes):
        raise LipflowError(f"heatmap axes must be two different names from {', '.join(allowed)}, got {list(axes)}")
    return axes[0], axes[1]


def write_figures(
    rows: Sequence[dict[str, str]], spec: SweepSpec, folder: str | Path, *, heatmap: tuple[str, str] | None = None
) -> list[Path]:
    """Every figure the sweep's metrics allow, as PNG and PDF in ``folder``."""
    plt = _pyplot()
    folder = Path(folder)
    metrics = set(row["metric"] for row in rows)
    figures: dict[str, Any] = {}
    for metric in ("recon_error", "forward_error", "inverse_error"):
        if metric in metrics:
            figures[f"{metric}_vs_depth"] = plot_error_vs_depth(rows, metric)
    if metrics & set(SPECTRUM_METRICS):
        figures["spectra_vs_depth"] = plot_spectra_vs_depth(rows)
    heat_metric = "recon_error" if "recon_error" in metrics else spec.metrics[0]
    x_axis, y_axis = check_heatmap_axes(heatmap) if heatmap else heatmap_axes(spec)
    figures[f"heatmap_{heat_metric}_{x_axis}_{y_axis}"] = plot_heatmap(rows, x_axis, y_axis, heat_metric)
    written = []
    for name, figure in figures.items():
        for suffix in ("png", "pdf"):
            path = folder / f"{name}.{suffix}"
            atomic_savefig(figure, path, dpi=130)
            written.append(path)
        plt.close(figure)
    return written
