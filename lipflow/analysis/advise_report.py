"""The advisor's result: :class:`Advice` (plan, how its error was obtained, validation, costs),
its table, JSON form and figure, and :class:`NoPlanError`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as onp

from lipflow.analysis.plan_search import SearchResult
from lipflow.blocks.plan import Plan
from lipflow.errors import LipflowError

__all__ = ["PRECISION_COLOURS", "Advice", "BlockReport", "NoPlanError", "plot_advice"]

PRECISION_COLOURS = {"bfloat16": "#d62728", "bfloat16-strict": "#ff9896", "float16": "#ff7f0e",
                     "float16-strict": "#ffbb78", "float32": "#2ca02c", "float64": "#1f77b4",
                     "longdouble": "#9467bd"}


class NoPlanError(LipflowError):
    """No plan meets the tolerance; ``best`` is the best achievable error, ``limiting`` the block
    that limits it."""

    def __init__(self, message: str, *, best: float, limiting: str) -> None:
        super().__init__(message)
        self.best = best
        self.limiting = limiting


@dataclass(frozen=True)
class BlockReport:
    """One block of an advised plan: its precisions, the bound and the measured local error per
    direction (None where not applicable), its share of the flow's bound, whether it was kept
    above the cheapest precision (``forced``) and its per-layer attribution at the lowest precision."""

    index: int
    kind: str
    forward: str
    inverse: str
    bound_forward: float | None
    bound_inverse: float | None
    measured_forward: float | None
    measured_inverse: float | None
    contribution_forward: float | None
    contribution_inverse: float | None
    forced: str
    attribution: float | None


def _ratio(bound: float | None, measured: float | None) -> float | None:
    if bound is None or measured is None or measured == 0:
        return None
    return bound / measured


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


@dataclass(frozen=True)
class Advice:
    """An advised plan and how good it is.

    Attributes:
        plan: the plan (run it with :func:`lipflow.blocks.plan.run_forward` / ``run_inverse``).
        error, kind: the error claimed: an upper bound (kind "upper", mode "proven") or the max
            measured error (kind "estimate", mode "measured").
        how: how ``error`` was obtained, in words.
        measured: validation: {input set: (max finite error, samples, non-finite count)}.
        cost, cost_float64, cost_float32: the plan's cost and the uniform plans' under ``cost_model``.
        search: the search result (method, optimality gap for greedy).
    """

    plan: Plan
    target: str
    tol: float
    mode: str
    how: str
    error: float
    kind: str
    bound: Any
    measured: dict[str, tuple[float, int, int]]
    cost: float
    cost_float64: float
    cost_float32: float | None
    cost_model: str
    search: SearchResult
    blocks: tuple[BlockReport, ...] = field(repr=False)
    search_seconds: float = 0.0
    attribution_precision: str | None = None
    float32_error: float | None = None

    @property
    def measured_max(self) -> float:
        """Largest finite measured error over every validation set (inf if any was non-finite)."""
        if any(n for _, _, n in self.measured.values()):
            return math.inf
        return max((v for v, _, _ in self.measured.values()), default=0.0)

    @property
    def saved_vs_float64(self) -> float:
        return 1.0 - self.cost / self.cost_float64 if self.cost_float64 else 0.0

    @property
    def saved_vs_float32(self) -> float | None:
        return None if not self.cost_float32 else 1.0 - self.cost / self.cost_float32

    def summary(self) -> str:
        label = "bound" if self.kind == "upper" else "measured (estimate)"
        lines = [
            f"target {self.target}, tol {self.tol:g}, mode {self.mode}: {label} {self.error:.3g}",
            f"  {self.how}",
            f"  search: {self.search.method}" + (f", gap <= {self.search.gap:.3g}" if self.search.gap == self.search.gap
                                                 and self.search.gap > 0 else ""),
            f"  cost ({self.cost_model}): {self.cost:.4g}; saved {100 * self.saved_vs_float64:.1f}% vs all-float64"
            + ("" if self.saved_vs_float32 is None else f", {100 * self.saved_vs_float32:.1f}% vs all-float32"),
        ]
        if self.float32_error is not None:
            what = "bound" if self.kind == "upper" else "measured"
            meets = "meets" if self.float32_error <= self.tol else "does not meet"
            lines.append(f"  all-float32 plan: {what} {self.float32_error:.3g} ({meets} tol)")
        for name, (value, n, bad) in self.measured.items():
            ratio = "" if self.kind != "upper" or value == 0 else f", bound/measured {self.error / value:.3g}"
            lines.append(f"  validation {name}: max error {value:.3g} over {n} inputs, {bad} non-finite{ratio}")
        forced = [f"{b.index} ({b.kind}: {b.forced})" for b in self.blocks if b.forced]
        lines.append("  blocks kept above the cheapest precision: " + (", ".join(forced) if forced else "none"))
        return "\n".join(lines)

    def table(self) -> str:
        """Per block: precisions, bound vs measured local error (and ratio), share, attribution."""
        columns = {
            "bound fwd": [b.bound_forward for b in self.blocks],
            "meas fwd": [b.measured_forward for b in self.blocks],
            "ratio fwd": [_ratio(b.bound_forward, b.measured_forward) for b in self.blocks],
            "bound inv": [b.bound_inverse for b in self.blocks],
            "meas inv": [b.measured_inverse for b in self.blocks],
            "ratio inv": [_ratio(b.bound_inverse, b.measured_inverse) for b in self.blocks],
            "share": [None if b.contribution_forward is None else
                      (b.contribution_forward or 0.0) + (b.contribution_inverse or 0.0) for b in self.blocks],
            f"attr {self.attribution_precision or '-'}": [b.attribution for b in self.blocks],
            "forced": [b.forced or "-" for b in self.blocks],
        }
        cells = {k: [_fmt(v) for v in vals] for k, vals in columns.items()}
        return self.plan.table([b.kind for b in self.blocks], cells)

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return str(v)
            return v

        return {
            "target": self.target, "tol": self.tol, "mode": self.mode, "how": self.how,
            "error": clean(self.error), "kind": self.kind, "cost": self.cost, "cost_model": self.cost_model,
            "cost_float64": self.cost_float64, "cost_float32": self.cost_float32,
            "float32_error": clean(self.float32_error),
            "saved_vs_float64": self.saved_vs_float64, "saved_vs_float32": self.saved_vs_float32,
            "search": {"method": self.search.method, "gap": clean(self.search.gap),
                       "lower_bound": clean(self.search.lower_bound)},
            "search_seconds": self.search_seconds,
            "validation": {k: {"max_error": clean(v), "inputs": n, "nonfinite": bad}
                           for k, (v, n, bad) in self.measured.items()},
            "blocks": [{k: clean(getattr(b, k)) for k in BlockReport.__dataclass_fields__} for b in self.blocks],
        }


def plot_advice(advice: Advice) -> Any:
    """Figure: per-block precision (forward and inverse) and error contribution (bound and measured)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    n = len(advice.blocks)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6.0, 0.35 * n + 3), 5.2), sharex=True,
                                      gridspec_kw={"height_ratios": [1, 2.4]})
    used = []
    for row, direction in enumerate(("forward", "inverse")):
        for b in advice.blocks:
            name = getattr(b, direction)
            used.append(name)
            top.add_patch(plt.Rectangle((b.index - 0.45, row - 0.4), 0.9, 0.8,
                                        color=PRECISION_COLOURS.get(name, "grey")))
    top.set_yticks([0, 1], ["forward", "inverse"])
    top.set_ylim(-0.6, 1.6)
    top.set_title(f"{advice.target} error <= {advice.tol:g} ({advice.mode}), "
                  f"cost {100 * advice.saved_vs_float64:.0f}% below all-float64", fontsize=9)
    handles = [Patch(color=PRECISION_COLOURS.get(p, "grey"), label=p) for p in dict.fromkeys(used)]
    top.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    idx = onp.arange(n)
    width = 0.2
    series = [("bound fwd", [b.contribution_forward for b in advice.blocks], "#1f77b4", -1.5),
              ("bound inv", [b.contribution_inverse for b in advice.blocks], "#aec7e8", -0.5),
              ("measured fwd (local)", [b.measured_forward for b in advice.blocks], "#d62728", 0.5),
              ("measured inv (local)", [b.measured_inverse for b in advice.blocks], "#ff9896", 1.5)]
    lowest = []
    for label, values, colour, offset in series:
        vals = onp.array([onp.nan if v is None or v <= 0 else v for v in values], dtype=float)
        if onp.any(onp.isfinite(vals)):
            bottom.bar(idx + offset * width, vals, width, label=label, color=colour)
            lowest.append(onp.nanmin(vals))
    bottom.axhline(advice.tol, color="k", ls="--", lw=1, label=f"tol {advice.tol:g}")
    bottom.set_yscale("log")
    if lowest:
        bottom.set_ylim(min(min(lowest), advice.tol) / 10, None)
    bottom.set_xlabel("block")
    bottom.set_ylabel("error")
    bottom.set_xticks(idx, [f"{b.index}\n{b.kind[:8]}" for b in advice.blocks], fontsize=7)
    bottom.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    title = "measured local error per block" if advice.bound is None else \
        "share of the bound per block, and measured local error per block"
    bottom.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
