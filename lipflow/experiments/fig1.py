"""The paper's Figure 1 toy (Section 2): one coupling block stacked to depth L.

The block copies x1 and maps x2 -> x2 + t (additive) or x2 * g + t (affine) with the constants
t(x1) = 0.123456789 and g(s(x1)) = 0.1, no permutation between blocks, input (1, 1). The
affine inverse divides by 0.1 per layer, so its reconstruction error grows ~10x per layer; the
exact Jacobian is diag(1, 0.1^L) (affine) or the identity (additive).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as onp

from lipflow.blocks import AdditiveCoupling, AffineCoupling, Block, Constant
from lipflow.errors import LipflowError
from lipflow.io import atomic_savefig, atomic_write_text
from lipflow.precision import PRECISION_NAMES, Precision, precision

if TYPE_CHECKING:
    from lipflow.sweep import ResultStore, SweepSpec

__all__ = [
    "COLUMNS",
    "DESCRIPTION",
    "SCALE",
    "SHIFT",
    "Fig1Row",
    "add_arguments",
    "fig1_spec",
    "plot_fig1",
    "reference_precision_for",
    "rows_from_store",
    "rows_to_csv",
    "run",
    "run_fig1",
    "toy_block",
]

DESCRIPTION = "Figure 1: reconstruction error and Jacobian spectrum of a stacked toy coupling block"
COLUMNS = ("block", "precision", "depth", "recon_error", "sigma_min", "sigma_max", "cond")
SHIFT = 0.123456789
SCALE = 0.1
INPUT = (1.0, 1.0)
BLOCK_KINDS = ("additive", "affine")
DEFAULT_PRECISIONS = ("float16", "float32", "float64")


def toy_block(kind: str) -> Block:
    """The Figure 1 block: t(x1) = 0.123456789 and, for affine, g(s(x1)) = 0.1."""
    if kind == "additive":
        return AdditiveCoupling(2, conditioning=(0,), t=Constant(SHIFT))
    if kind == "affine":
        return AffineCoupling(2, conditioning=(0,), t=Constant(SHIFT), s=Constant(SCALE), scale="identity")
    raise LipflowError(f"Figure 1 block kind must be one of {BLOCK_KINDS}, got {kind!r}")


@dataclass(frozen=True)
class Fig1Row:
    block: str
    precision: str
    depth: int
    recon_error: float
    sigma_min: float
    sigma_max: float
    cond: float


def reference_precision_for(max_depth: int) -> Precision:
    """An mpmath precision whose own round-trip error stays far below 1 at ``max_depth``.

    The affine inverse amplifies rounding by 10 per layer, so the reference needs about
    ``max_depth`` decimal digits plus 40 to keep its reconstruction error below 1e-40.
    """
    return precision(f"mp{max(50, max_depth + 40)}")


def fig1_spec(
    max_depth: int = 100,
    precisions: Sequence[str] = DEFAULT_PRECISIONS,
    kinds: Iterable[str] = BLOCK_KINDS,
) -> SweepSpec:
    """Figure 1 as a sweep: kinds x (precisions + mp reference) x depth 1..max_depth on the toy block.

    The reference (:func:`reference_precision_for`) is also a working precision, as in the paper's
    high-precision curve; the spectra are those of the exact Jacobian (at the reference).
    """
    from lipflow.sweep import spec_from_mapping

    if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1:
        raise LipflowError(f"max_depth must be a positive integer, got {max_depth!r}")
    names = [precision(name).name for name in precisions]
    reference = reference_precision_for(max_depth)
    if reference.name not in names:
        names.append(reference.name)
    kinds = list(kinds)
    for kind in kinds:
        toy_block(kind)
    return spec_from_mapping(
        {
            "name": "fig1",
            "metrics": ["recon_error", "sigma_min", "sigma_max", "cond"],
            "reference": reference.name,
            "axes": {
                "block": kinds,
                "conditioner": ["toy"],
                "inputs": ["ones"],
                "seed": [0],
                "precision": names,
                "depth": {"start": 1, "stop": max_depth},
            },
        },
        source="figure 1",
    )


def _row(block: str, name: str, depth: int, values: dict[str, float]) -> Fig1Row:
    return Fig1Row(block, name, depth, *(float(values[column]) for column in COLUMNS[3:]))


def run_fig1(
    max_depth: int = 100,
    precisions: Sequence[str] = DEFAULT_PRECISIONS,
    kinds: Iterable[str] = BLOCK_KINDS,
    *,
    workers: int = 1,
) -> list[Fig1Row]:
    """All rows of ``fig1.csv``: every kind x (precisions + mp reference) x depth 1..max_depth.

    Runs :func:`fig1_spec` through the sweep engine in memory (``workers`` processes).
    Reconstruction errors are ||x - F_L^-1(F_L(x))||_2 with every step at the working precision;
    sigma_min/sigma_max/cond are those of the exact Jacobian diag(1, 0.1^L) or I, evaluated by
    the chain rule at the reference precision.
    """
    from lipflow.sweep import compute_all

    spec = fig1_spec(max_depth, precisions, kinds)
    return [_row(r.cell.block, r.cell.precision, r.cell.depth, r.values) for r in compute_all(spec, workers=workers)]


def rows_from_store(spec: SweepSpec, store: ResultStore) -> list[Fig1Row]:
    """Figure 1 rows read back from a sweep folder (values round-trip exactly through repr)."""
    grouped: dict[tuple[str, str, int], dict[str, float]] = {}
    for row in store.rows(spec):
        key = (row["block"], row["precision"], int(row["depth"]))
        grouped.setdefault(key, {})[row["metric"]] = float(row["value"])
    return [_row(*key, values) for key, values in grouped.items()]


def rows_to_csv(rows: Sequence[Fig1Row]) -> str:
    """CSV text with :data:`COLUMNS`; ``inf``/``nan`` written as such, floats as repr."""
    lines = [",".join(COLUMNS)]
    for row in rows:
        lines.append(
            ",".join([row.block, row.precision, str(row.depth)] + [repr(float(getattr(row, c))) for c in COLUMNS[3:]])
        )
    return "\n".join(lines) + "\n"


def plot_fig1(rows: Sequence[Fig1Row]) -> Any:
    """The paper's four panels (log scale): reconstruction error, sigma_min, sigma_max, cond."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 4, figsize=(17, 4.2), constrained_layout=True)
    styles = {"additive": "-", "affine": "--"}
    names = list(dict.fromkeys(row.precision for row in rows))
    colours = {name: f"C{i}" for i, name in enumerate(names)}
    working = [r for r in rows if not r.precision.startswith("mp")]
    floor = min((r.recon_error for r in working if 0 < r.recon_error < math.inf), default=1e-20) / 100
    reference_rows = [r for r in rows if r.precision.startswith("mp")]
    for kind in dict.fromkeys(row.block for row in rows):
        for name in names:
            selected = [r for r in rows if r.block == kind and r.precision == name]
            depth = onp.array([r.depth for r in selected])
            error = onp.array([r.recon_error for r in selected])
            finite = onp.isfinite(error)
            shown = onp.where(error > 0, error, onp.nan)
            axes[0].plot(depth, shown, styles[kind], color=colours[name], label=f"{kind}, {name}")
            exact = finite & (error == 0)
            if onp.any(exact):
                axes[0].plot(depth[exact], onp.full(exact.sum(), floor), "|", ms=4, color=colours[name])
            if not onp.all(finite):
                first = int(depth[~finite][0])
                axes[0].axvline(first, color=colours[name], ls=":", lw=1)
                axes[0].annotate(f"{name} {kind}: inf from L={first}", (first, 0.5), xycoords=("data", "axes fraction"),
                                 xytext=(3, 0), textcoords="offset points", fontsize=7, rotation=90,
                                 va="center", ha="left", color=colours[name])
        reference = [r for r in rows if r.block == kind and r.precision == names[-1]]
        depth = [r.depth for r in reference]
        for axis, field in zip(axes[1:], ("sigma_min", "sigma_max", "cond"), strict=True):
            axis.plot(depth, [getattr(r, field) for r in reference], styles[kind], color="k", label=kind)
    titles = [
        "reconstruction error $\\|x - F^{-1}(F(x))\\|_2$",
        "$\\sigma_{\\min}$ of $J_F$",
        "$\\sigma_{\\max}$ of $J_F$",
        "condition number $\\sigma_{\\max}/\\sigma_{\\min}$",
    ]
    for axis, title in zip(axes, titles, strict=True):
        axis.set_yscale("log")
        axis.set_xlabel("number of blocks L")
        axis.set_title(title, fontsize=10)
        axis.grid(True, which="major", alpha=0.3)
    axes[0].set_ylim(floor / 3, 1e40)  # the mp reference lies far below; the note gives its size
    axes[0].legend(fontsize=6.5, ncol=2, loc="upper left")
    note = "ticks at the bottom: error exactly 0"
    if reference_rows:
        worst = max(r.recon_error for r in reference_rows)
        note += f"\n{reference_rows[0].precision} reference: every error <= {worst:.1e} (below the axis)"
    axes[0].text(0.99, 0.02, note, transform=axes[0].transAxes, fontsize=7, ha="right")
    axes[2].set_ylim(0.1, 10)
    axes[1].legend(fontsize=8)
    figure.suptitle(
        f"Figure 1 toy: t(x1) = 0.123456789, g(s(x1)) = 0.1, input (1, 1); spectra of the exact Jacobian ({names[-1]})",
        fontsize=10,
    )
    return figure


def summary_table(rows: Sequence[Fig1Row], depths: Sequence[int] = (1, 5, 10, 20, 50, 100)) -> str:
    """A short text table: reconstruction error at a few depths and the first depth with inf."""
    max_depth = max(r.depth for r in rows)
    depths = [d for d in depths if d <= max_depth]
    header = f"{'block':9s} {'precision':10s} " + " ".join(f"{'L=' + str(d):>10s}" for d in depths) + "  first inf"
    lines = [header, "-" * len(header)]
    for kind in dict.fromkeys(r.block for r in rows):
        for name in dict.fromkeys(r.precision for r in rows):
            selected = {r.depth: r for r in rows if r.block == kind and r.precision == name}
            first_inf = next((d for d in sorted(selected) if not math.isfinite(selected[d].recon_error)), None)
            cells = " ".join(f"{selected[d].recon_error:10.2e}" for d in depths)
            lines.append(f"{kind:9s} {name:10s} {cells}  {first_inf if first_inf else '-'}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="results/fig1", help="output folder (default: results/fig1)")
    parser.add_argument("--max-depth", type=int, default=100, help="largest number of blocks L (default: 100)")
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=list(DEFAULT_PRECISIONS),
        metavar="NAME",
        help=f"working precisions (default: float16 float32 float64; any of {', '.join(PRECISION_NAMES)}); "
        "an mpmath reference with enough digits is always added",
    )
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: every available core)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _drop_other_figure1_sweep(spec: SweepSpec, folder: Path) -> None:
    """Remove a Figure 1 sweep folder left by a run with other options (e.g. --max-depth), so
    that reproducing with new options replaces it as fig1.csv is replaced; other folders stay."""
    import shutil

    from lipflow.sweep import ResultStore

    store = ResultStore(folder)
    if not store.spec_path.is_file():
        return
    try:
        saved = store.load_spec()
    except LipflowError:
        return
    ours = {"spec.toml", "cells.csv", "results.csv", ".lock"}
    if saved.name == "fig1" and saved.to_mapping() != spec.to_mapping() and {
        p.name for p in folder.iterdir()
    } <= ours:
        shutil.rmtree(folder)


def run(args: argparse.Namespace) -> int:
    """``lipflow reproduce fig1``: the Figure 1 sweep into ``--out/sweep``, then fig1.csv and fig1.png.

    The sweep folder makes the run resumable (a second run reuses finished cells) and readable
    by ``lipflow report``.
    """
    from lipflow.sweep import run_sweep

    if args.max_depth < 1:
        raise LipflowError(f"--max-depth must be at least 1, got {args.max_depth}")
    spec = fig1_spec(args.max_depth, args.precisions)
    out = Path(args.out)
    _drop_other_figure1_sweep(spec, out / "sweep")
    sweep = run_sweep(spec, out / "sweep", workers=args.workers, progress=not args.no_progress)
    rows = rows_from_store(spec, sweep.store)
    atomic_write_text(out / "fig1.csv", rows_to_csv(rows))
    figure = plot_fig1(rows)
    atomic_savefig(figure, out / "fig1.png", dpi=130)
    print(summary_table(rows))
    print(f"\nwrote {out / 'fig1.csv'} ({len(rows)} rows) and {out / 'fig1.png'}; "
          f"sweep folder {out / 'sweep'} ({sweep.computed} cells computed, {sweep.skipped} reused)")
    return 0
