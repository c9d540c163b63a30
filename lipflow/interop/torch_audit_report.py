"""Files of an audit: a Markdown report, the summary as JSON and three figures.

``write_audit_report(report, out)`` writes, each atomically (complete or absent):
``report.md`` (tables of :meth:`ThirdPartyReport.markdown` and the figures), ``summary.json``,
``error_vs_radius.png`` (reconstruction error against ||x||, per input set, non-finite samples
drawn at the top edge and counted in the legend), ``cond_hist.png`` (per-sample condition
numbers of the float64 Jacobian) and ``budget.png`` (per-sample ratio of the error to the
first-order budget and to the rounding-only budget; above 1 is beyond).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as onp

from lipflow.io import atomic_savefig, atomic_write_text

__all__ = ["FIGURES", "in_distribution_error", "write_audit_report"]

FIGURES = ("error_vs_radius.png", "cond_hist.png", "budget.png")
IN_DISTRIBUTION = ("data", "box-attack")


def in_distribution_error(report: Any) -> tuple[float, int, int]:
    """(worst finite reconstruction error, number of non-finite, number of samples) over the
    in-distribution inputs ("data" and "box-attack", valid samples of the data distribution)."""
    mask = onp.isin(report.groups, IN_DISTRIBUTION)
    errors = report.values["reconstruction"][mask]
    finite = errors[onp.isfinite(errors)]
    return (float(finite.max()) if finite.size else float("nan")), int((~onp.isfinite(errors)).sum()), int(mask.sum())


def _groups(report: Any) -> list[str]:
    return list(dict.fromkeys(report.groups.tolist()))


def _error_figure(report: Any) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    radius = onp.sqrt(onp.sum(report.x.reshape(len(report.x), -1) ** 2, axis=1))
    errors = report.values["reconstruction"]
    finite = onp.isfinite(errors) & (errors > 0)
    top = float(errors[finite].max()) * 10 if finite.any() else 1.0
    floor = float(errors[finite].min()) / 10 if finite.any() else 1e-20
    for name in _groups(report):
        m = report.groups == name
        bad = m & ~onp.isfinite(errors)
        ax.scatter(radius[m & finite], errors[m & finite], s=10, label=f"{name} ({int(bad.sum())} Inf/NaN)")
        ax.scatter(radius[m & (errors == 0)], onp.full(int((m & (errors == 0)).sum()), floor), s=10, marker="v",
                   color="grey")
        if bad.any():
            ax.scatter(radius[bad], onp.full(int(bad.sum()), top), marker="x", color="black")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_yscale("log")
    ax.set_xlabel("||x|| (input radius)")
    ax.set_ylabel("||x - F^-1(F(x))|| at " + report.dtype)
    ax.set_title(f"{report.library}: reconstruction error (x: Inf/NaN at top; v: exact 0)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _cond_figure(report: Any) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    cond = report.cond
    finite = onp.isfinite(cond) & (cond > 0)
    logs = onp.log10(cond[finite])
    if logs.size:
        edges = onp.linspace(math.floor(logs.min()), math.ceil(logs.max()) + 1e-9, 30)
        names = [g for g in _groups(report) if (report.groups[finite] == g).any()]
        ax.hist([logs[report.groups[finite] == g] for g in names], bins=edges, stacked=True, label=names)
    ax.set_xlabel("log10 cond(J_F(x)) (float64 Jacobian, exact)")
    ax.set_ylabel("samples")
    ax.set_title(f"{report.library}: condition numbers; {int((~finite).sum())} non-finite not shown", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _budget_figure(report: Any) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    index = onp.arange(len(report.groups))
    for key, marker, text in (("ratio", "o", "error / (Lip delta + delta2)"),
                              ("rounding_ratio", "^", "error / (Lip delta + delta2 rounding part)")):
        ratio = report.values[key]
        ok = onp.isfinite(ratio) & (ratio > 0)
        beyond = int((ratio[onp.isfinite(ratio)] > 1).sum())
        ax.scatter(index[ok], ratio[ok], s=8, marker=marker, label=f"{text}: {beyond} beyond")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    starts = [int(onp.flatnonzero(report.groups == g)[0]) for g in _groups(report)]
    for s, g in zip(starts, _groups(report), strict=True):
        ax.axvline(s, color="grey", linewidth=0.5)
        ax.text(s, ax.get_ylim()[1], g, fontsize=6, va="top", rotation=90)
    ax.set_xlabel("sample (grouped by input set)")
    ax.set_ylabel("ratio (estimate)")
    ax.set_title(f"{report.library}: per-sample first-order budget (above 1: beyond)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def write_audit_report(report: Any, out: str | Path, *, tol: float | None = None, title: str = "") -> dict[str, Any]:
    """Write the report files to ``out``; return the summary (with the --tol verdict when given)."""
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = report.summary()
    worst, nonfinite, n = in_distribution_error(report)
    summary["in_distribution"] = {"worst_error": worst, "nonfinite": nonfinite, "n": n}
    if tol is not None:
        summary["tolerance"] = {"tol": tol, "exceeded": bool(nonfinite > 0 or not worst <= tol)}
    for name, make in zip(FIGURES, (_error_figure, _cond_figure, _budget_figure), strict=True):
        fig = make(report)
        atomic_savefig(fig, out / name, dpi=120)
        plt.close(fig)
    lines = [f"# Numerical invertibility audit{': ' + title if title else ''}", "",
             f"Audited {summary['n']} inputs in {summary['seconds']:.2f} s.", "", report.markdown(),
             f"Worst in-distribution reconstruction error (data and dequantisation-box inputs): {worst:.3g} "
             f"({nonfinite} of {n} Inf/NaN)."]
    if tol is not None:
        verdict = "EXCEEDED" if summary["tolerance"]["exceeded"] else "met"
        lines.append(f"Tolerance {tol:g}: {verdict}.")
    lines += ["", *[f"![{name}]({name})" for name in FIGURES], ""]
    atomic_write_text(out / "report.md", "\n".join(lines))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=float) + "\n")
    return summary
