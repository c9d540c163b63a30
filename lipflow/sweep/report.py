"""Summary tables of a sweep folder: ``summary.csv`` (tidy) and ``summary.md`` (for people).

A *group* is every axis but seed and depth (block, conditioner, scale, inputs, precision).
For each group and metric the summary gives, at the group's deepest finished depth, the number
of cells, how many are inf/NaN, and the min, median and max over seeds; for reconstruction
errors also the first depth at which any seed's error is not finite. Non-finite values are
counted and shown, never dropped or averaged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as onp

from lipflow.io import atomic_write_text
from lipflow.sweep.spec import SweepSpec
from lipflow.sweep.store import ResultStore

__all__ = ["GROUP_COLUMNS", "GroupSummary", "summarise", "summary_csv", "summary_markdown", "write_report"]

GROUP_COLUMNS = ("block", "conditioner", "scale", "inputs", "precision")
SUMMARY_COLUMNS = (*GROUP_COLUMNS, "metric", "depth", "cells", "nonfinite", "min", "median", "max",
                   "first_nonfinite_depth")


@dataclass(frozen=True)
class GroupSummary:
    group: tuple[str, ...]
    metric: str
    depth: int
    cells: int
    nonfinite: int
    minimum: float
    median: float
    maximum: float
    first_nonfinite_depth: int | None


def _stats(values: onp.ndarray) -> tuple[float, float, float]:
    if onp.any(onp.isnan(values)):
        return math.nan, math.nan, math.nan
    return float(onp.min(values)), float(onp.median(values)), float(onp.max(values))


def summarise(rows: Sequence[dict[str, str]], metrics: Sequence[str]) -> list[GroupSummary]:
    """One :class:`GroupSummary` per group x metric, groups in first-seen (grid) order."""
    table: dict[tuple[str, ...], dict[str, dict[int, list[float]]]] = {}
    for row in rows:
        group = tuple(row[c] for c in GROUP_COLUMNS)
        table.setdefault(group, {}).setdefault(row["metric"], {}).setdefault(int(row["depth"]), []).append(
            float(row["value"])
        )
    summaries = []
    for group, by_metric in table.items():
        for metric in metrics:
            by_depth = by_metric.get(metric)
            if not by_depth:
                continue
            deepest = max(by_depth)
            values = onp.asarray(by_depth[deepest])
            first = None
            if metric.startswith("recon_error"):
                first = next((d for d in sorted(by_depth) if not onp.all(onp.isfinite(by_depth[d]))), None)
            summaries.append(GroupSummary(group, metric, deepest, values.size, int(onp.sum(~onp.isfinite(values))),
                                          *_stats(values), first))
    return summaries


def summary_csv(summaries: Sequence[GroupSummary]) -> str:
    lines = [",".join(SUMMARY_COLUMNS)]
    for s in summaries:
        first = "" if s.first_nonfinite_depth is None else str(s.first_nonfinite_depth)
        numbers = [repr(s.minimum), repr(s.median), repr(s.maximum)]
        lines.append(",".join([*s.group, s.metric, str(s.depth), str(s.cells), str(s.nonfinite), *numbers, first]))
    return "\n".join(lines) + "\n"


def _cell_text(s: GroupSummary) -> str:
    if s.cells == 1:
        text = f"{s.median:.3g}"
    else:
        text = f"{s.median:.3g} [{s.minimum:.3g}, {s.maximum:.3g}]"
    if s.nonfinite:
        text += f" ({s.nonfinite}/{s.cells} non-finite)"
    return text


def summary_markdown(spec: SweepSpec, summaries: Sequence[GroupSummary], finished: int) -> str:
    """A Markdown report: the grid, then one table row per group (values at the deepest depth)."""
    metrics = list(dict.fromkeys(s.metric for s in summaries))
    seeds = spec.axes["seed"]
    lines = [
        f"# Sweep `{spec.name}`",
        "",
        f"{finished} of {len(spec.cells)} cells finished; reference precision {spec.reference}; "
        f"dim {spec.dim}, {spec.samples} samples per input set ('ones' is one point).",
        "",
        "Axes: " + "; ".join(f"{axis} = {', '.join(map(str, values))}" if axis != "depth" else
                             f"depth = {_depth_text(values)}" for axis, values in spec.axes.items()) + ".",
        "",
        "Values at each group's deepest finished depth"
        + (f", median [min, max] over {len(seeds)} seeds" if len(seeds) > 1 else "")
        + "; non-finite (inf/NaN) cells are counted, never dropped.",
        "",
    ]
    header = [*GROUP_COLUMNS, "depth", *metrics]
    if "recon_error" in metrics:
        header.append("first non-finite depth")
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups: dict[tuple[str, ...], dict[str, GroupSummary]] = {}
    for s in summaries:
        groups.setdefault(s.group, {})[s.metric] = s
    for group, by_metric in groups.items():
        depth = max(s.depth for s in by_metric.values())
        cells = [*group, str(depth), *(_cell_text(by_metric[m]) if m in by_metric else "" for m in metrics)]
        if "recon_error" in metrics:
            first = by_metric["recon_error"].first_nonfinite_depth if "recon_error" in by_metric else None
            cells.append("-" if first is None else str(first))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _depth_text(depths: Sequence[int]) -> str:
    depths = list(depths)
    if len(depths) > 2 and depths == list(range(depths[0], depths[-1] + 1)):
        return f"{depths[0]}..{depths[-1]}"
    return ", ".join(map(str, depths))


def write_report(folder: str | Path, *, figures: bool = True, heatmap: tuple[str, str] | None = None) -> list[Path]:
    """results.csv, summary.csv, summary.md and (optionally) the figures of a sweep folder.

    ``heatmap`` names the two axes of the heatmap (default: depth and precision).
    """
    store = ResultStore.open_existing(folder)
    spec = store.load_spec()
    if heatmap is not None:
        from lipflow.sweep.figures import check_heatmap_axes

        check_heatmap_axes(heatmap)
    rows = store.rows(spec)
    written = [store.consolidate(spec)]
    summaries = summarise(rows, spec.metrics)
    finished = len({row["cell"] for row in rows})
    atomic_write_text(store.root / "summary.csv", summary_csv(summaries))
    atomic_write_text(store.root / "summary.md", summary_markdown(spec, summaries, finished))
    written += [store.root / "summary.csv", store.root / "summary.md"]
    if figures and rows:
        from lipflow.sweep.figures import write_figures

        written += write_figures(rows, spec, store.root / "figures", heatmap=heatmap)
    return written
