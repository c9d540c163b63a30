"""Long regression2d runs: does the NF regulariser at the authors' coefficient act with enough training?

Trains ``lipflow reproduce regression2d`` models (``none`` or ``nf COEFF``) for many full-batch
Adam steps (default: the authors' 40 000 at lr 1e-4, 4 flow steps, torch backend) and saves
the monitor's checkpoints (every ``--every`` steps, 200 test points) to a CSV as they are
measured, plus one ``final`` row on 500 test points when a run ends, so an interrupted run
keeps its history and a rerun skips finished (model, seed) pairs. Run at one thread::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/regression2d_long.py --out results/study/r2d_long.csv \\
        --seeds 0 1 2 --models none "nf 1e-06" "nf 0.0001"
    python benchmarks/regression2d_long.py --out results/study/r2d_long.csv --report [--merge OTHER.csv ...]
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path
from typing import Any

import numpy as onp

from lipflow.io import atomic_write_text

KEYS = ("model", "seed", "kind", "step")
COLUMNS = ("model", "seed", "kind", "step", "flow_steps", "lr", "backend", "test_mse", "mean_error_f32",
           "max_error_f32", "pct_inf_f32", "median_cond", "worst_cond", "n_cond_nonfinite", "min_sigma_min",
           "skipped_steps", "wall_seconds")


def read(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open() as handle:
        return list(csv.DictReader(handle))


def write(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buffer.getvalue())


def run(args: argparse.Namespace) -> None:
    import torch

    from lipflow.experiments.backend import get_backend
    from lipflow.experiments.regression2d import RegressionConfig, run_regression

    torch.set_num_threads(1)
    backend = get_backend(args.backend)
    for seed in args.seeds:
        for model in args.models:
            rows = read(args.out)
            if any(r["model"] == model and r["seed"] == str(seed) and r["kind"] == "final" for r in rows):
                continue
            write(args.out, [r for r in rows if not (r["model"] == model and r["seed"] == str(seed))])
            name, _, coeff = model.partition(" ")
            config = RegressionConfig(flow_steps=args.flow_steps, steps=args.steps, lr=args.lr, models=(name,),
                                      monitor_every=args.every, **({"nf_coeff": float(coeff)} if coeff else {}))
            start = time.perf_counter()
            common = {"model": model, "seed": seed, "flow_steps": args.flow_steps, "lr": args.lr,
                      "backend": backend.name}

            def save(record: dict[str, Any], common: dict[str, Any] = common, start: float = start) -> None:
                row = {**record, **common, "kind": "checkpoint", "wall_seconds": time.perf_counter() - start}
                write(args.out, [*read(args.out), row])
                print(", ".join(f"{k}={row.get(k)}" for k in ("model", "seed", "step", "max_error_f32",
                                                               "worst_cond", "median_cond")), flush=True)

            result = run_regression(config, seed=seed, progress=False, backend=backend, on_record=save)
            final = {**result["rows"][0], **common, "kind": "final", "step": args.steps,
                     "wall_seconds": time.perf_counter() - start}
            write(args.out, [*read(args.out), final])


def report(paths: list[Path]) -> str:
    """Median [min, max] over seeds per (model, kind, step) of the stability numbers."""
    rows = [row for path in paths for row in read(path)]
    metrics = ("test_mse", "max_error_f32", "median_cond", "worst_cond", "min_sigma_min")
    groups: dict[tuple[str, str, int], list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["kind"], int(row["step"])), []).append(row)
    lines = ["| model | step | points | seeds | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 4) + "|"]
    for (model, kind, step), members in sorted(groups.items(), key=lambda item: (item[0][0], item[0][2],
                                                                                  item[0][1])):
        cells = []
        for metric in metrics:
            values = [float(m[metric]) for m in members if m.get(metric, "") != ""]
            cells.append(f"{onp.median(values):.3g} [{min(values):.2g}, {max(values):.2g}]" if values else "")
        points = "500 (final)" if kind == "final" else "200"
        lines.append(f"| {model} | {step} | {points} | {len(members)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(paths: list[Path], out: Path) -> None:
    """Worst-point cond(J_F) and max float32 round-trip error (200 test points) against the
    training step, one colour per model, one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lipflow.experiments.common import save_figure

    rows = [row for path in paths for row in read(path) if row["kind"] == "checkpoint"]
    models = list(dict.fromkeys(row["model"] for row in rows))
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for index, model in enumerate(models):
        for k, seed in enumerate(sorted({row["seed"] for row in rows if row["model"] == model})):
            mine = sorted((r for r in rows if r["model"] == model and r["seed"] == seed), key=lambda r: int(r["step"]))
            steps = [int(r["step"]) for r in mine]
            for axis, key in zip(axes, ("worst_cond", "max_error_f32"), strict=True):
                axis.semilogy(steps, [float(r[key]) for r in mine], "o-", ms=3, color=f"C{index}",
                              label=model if k == 0 else None)
    axes[0].set_ylabel("worst cond(J_F) over 200 test points")
    axes[1].set_ylabel("max ||x - F^-1(F(x))||_2 at float32")
    for axis in axes:
        axis.set_xlabel("full-batch Adam step")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    first = rows[0] if rows else {"flow_steps": "?", "lr": "?"}
    figure.suptitle(f"regression2d, {first['flow_steps']} flow steps, lr {first['lr']}: stability against training "
                    "length (one line per seed)", fontsize=11)
    save_figure(figure, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the CSV (rewritten atomically, resumable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=["none", "nf 1e-06", "nf 0.0001"])
    parser.add_argument("--steps", type=int, default=40_000)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--flow-steps", type=int, default=4)
    parser.add_argument("--every", type=int, default=5000, help="checkpoint every k steps (default 5000)")
    parser.add_argument("--backend", default="torch", choices=("numpy", "torch"))
    parser.add_argument("--report", action="store_true", help="print the Markdown table; train nothing")
    parser.add_argument("--merge", type=Path, nargs="*", default=[], help="with --report: further CSVs to include")
    parser.add_argument("--plot", type=Path, help="with --report: also draw the checkpoints to this PNG")
    args = parser.parse_args(argv)
    if args.report:
        print(report([args.out, *args.merge]))
        if args.plot:
            plot([args.out, *args.merge], args.plot)
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
