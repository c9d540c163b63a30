"""Scale studies: where do the paper's instabilities appear as the experiments grow?

Runs one experiment definition (``lipflow.experiments.*``) over a grid of sizes (depth, steps,
width, learning rate) and seeds, and appends one row per finished run to a CSV, so an
interrupted study loses nothing: rerunning skips the rows already present. Every row records
wall and CPU seconds (user + system, this process). Run it at one BLAS/torch thread::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 19 \\
        python benchmarks/scale_study.py checkerboard --out results/study/checkerboard.csv
    python benchmarks/scale_study.py checkerboard --out ... --plot docs/assets/experiments/checkerboard_study.png

Studies: ``checkerboard`` (affine (0,1) out-of-box error, its ratio to the in-box error and the
smallest float64 log|det J_F| outside the box vs depth x steps x width x lr), ``remedies``
(sigmoid-Glow sampling failures near z = 0 vs steps x lr), ``attack`` (rise of the float32 error
inside the dequantisation box, 16 test digits, 100 attack steps), ``ood`` (% non-finite float32
round trips on 3 x 500 noise images vs depth x width x steps), ``classifier`` (Table 2: the
unregularised affine INN classifier against FD/NF at coefficient 1e-2 vs steps x lr; models named
``architecture/regulariser [coefficient]``), ``regression2d`` (the NF coefficient, models
``none`` or ``nf COEFF``, vs steps x lr; width fixed at 10x10). Seeds 0, 1, 2 unless ``--seeds``.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as onp

from lipflow.io import atomic_write_text

#: (depth, steps, hidden, lr) grids, smallest first
CHECKERBOARD_GRID = [
    (4, 300, (32, 32), 1e-3),
    (4, 1000, (32, 32), 1e-2),
    (8, 1000, (32, 32), 1e-2),
    (4, 6000, (32, 32), 1e-3),
]
REMEDIES_GRID = [
    (4, 200, (64,), 1e-3),
    (4, 1000, (64,), 1e-3),
    (4, 1000, (64,), 1e-2),
]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open() as handle:
        return list(csv.DictReader(handle))


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite the CSV atomically with ``rows`` appended (never half-written)."""
    old = read_rows(path)
    columns = list(old[0]) if old else list(rows[0])
    for key in rows[0]:
        if key not in columns:
            columns.append(key)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(old)
    writer.writerows({k: (repr(float(v)) if isinstance(v, (float, onp.floating)) else v) for k, v in row.items()}
                     for row in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buffer.getvalue())


def key_of(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(row[k]) for k in ("model", "depth", "steps", "hidden", "lr", "seed", "backend"))


def checkerboard_runs(depth: int, steps: int, hidden: tuple[int, ...], lr: float, seed: int, models: tuple[str, ...],
                      backend: Any) -> list[dict[str, Any]]:
    from lipflow.experiments.checkerboard import CheckerboardConfig, run_checkerboard

    rows = []
    for model in models:
        config = CheckerboardConfig(depth=depth, steps=steps, hidden=hidden, lr=lr, models=(model,))
        start_cpu, start_wall = cpu_seconds(), time.perf_counter()
        result = run_checkerboard(config, seed=seed, progress=False, backend=backend)
        inside, outside = result["rows"]
        rows.append({"model": model, "depth": depth, "steps": steps, "hidden": "x".join(map(str, hidden)), "lr": lr,
                     "seed": seed, "backend": backend.name,
                     "inside_max": inside["max"], "inside_median": inside["median"],
                     "outside_max": outside["max"], "outside_median": outside["median"],
                     "outside_n_inf": outside["n_inf"], "outside_pct_inf": outside["pct_inf"],
                     "outside_over_inside": outside["max"] / inside["max"],
                     "inside_min_logdet": inside["min_logdet"], "outside_min_logdet": outside["min_logdet"],
                     "test_nll": inside["test_nll"], "skipped_steps": inside["skipped_steps"],
                     "cpu_seconds": cpu_seconds() - start_cpu, "wall_seconds": time.perf_counter() - start_wall})
    return rows


def remedies_runs(depth: int, steps: int, hidden: tuple[int, ...], lr: float, seed: int, models: tuple[str, ...],
                  backend: Any) -> list[dict[str, Any]]:
    from lipflow.experiments.remedies import RemediesConfig, run_remedies

    config = RemediesConfig(depth=depth, steps=steps, hidden=hidden, lr=lr)
    start_cpu, start_wall = cpu_seconds(), time.perf_counter()
    result = run_remedies(config, seed=seed, progress=False, backend=backend, models=models)
    cpu, wall = cpu_seconds() - start_cpu, time.perf_counter() - start_wall
    rows = []
    for model in models:
        mine = [r for r in result if r["model"] == model]
        near = [r for r in mine if r["radius"] <= 0.1]
        rows.append({"model": model, "depth": depth, "steps": steps, "hidden": "x".join(map(str, hidden)), "lr": lr,
                     "seed": seed, "backend": backend.name,
                     "pct_nonfinite_near0": max(r["pct_nonfinite_samples"] for r in near),
                     "pct_inf_roundtrip_near0": max(r["pct_inf_roundtrip"] for r in near),
                     "max_z_error_near0": max(r["max_z_roundtrip_error"] for r in near),
                     "max_z_error_r1": next(r["max_z_roundtrip_error"] for r in mine if r["radius"] == 1.0),
                     "min_scale_g": min(r["min_scale_g"] for r in mine),
                     "max_abs_sample": max(r["max_abs_sample"] for r in mine),
                     "test_bits_per_dim": mine[0]["test_bits_per_dim"],
                     "cpu_seconds": cpu / len(models), "wall_seconds": wall / len(models)})
    return rows


ATTACK_GRID = [
    (4, 300, (64,), 1e-3),
    (4, 1000, (64,), 1e-2),
]


def attack_runs(depth: int, steps: int, hidden: tuple[int, ...], lr: float, seed: int, models: tuple[str, ...],
                backend: Any) -> list[dict[str, Any]]:
    from lipflow.experiments.attack import run_attack
    from lipflow.experiments.digit_flows import DigitFlowConfig

    config = DigitFlowConfig(depth=depth, steps=steps, hidden=hidden, lr=lr)
    start_cpu, start_wall = cpu_seconds(), time.perf_counter()
    result = run_attack(config, models, 16, 100, 0.25, 1e-3, seed=seed, progress=False, backend=backend)
    cpu, wall = cpu_seconds() - start_cpu, time.perf_counter() - start_wall
    rows = []
    for model in models:
        attacked = result["attacks"][model]
        clean, worst = attacked["clean"], attacked["worst"]
        rows.append({"model": model, "depth": depth, "steps": steps, "hidden": "x".join(map(str, hidden)), "lr": lr,
                     "seed": seed, "backend": backend.name,
                     "clean_median": float(onp.median(clean)), "worst_median": float(onp.median(worst)),
                     "worst_max": float(onp.max(worst)), "worst_n_inf": int(onp.sum(~onp.isfinite(worst))),
                     "rise_median": float(onp.median(worst / clean)),
                     "test_bpd": next(r["test_bpd"] for r in result["rows"] if r["model"] == model),
                     "cpu_seconds": cpu / len(models), "wall_seconds": wall / len(models)})
    return rows


OOD_GRID = [
    (4, 300, (64,), 1e-3),
    (4, 300, (128,), 1e-3),
    (8, 300, (64,), 1e-3),
    (8, 300, (128,), 1e-3),
    (4, 1000, (64,), 1e-3),
    (8, 1000, (128,), 1e-3),
]


def ood_runs(depth: int, steps: int, hidden: tuple[int, ...], lr: float, seed: int, models: tuple[str, ...],
             backend: Any) -> list[dict[str, Any]]:
    """Float32 round trips of the test digits and 500 images per noise set, the models trained in
    one ``run_ood`` call as ``lipflow reproduce ood --seed SEED`` does (model k gets seed + k)."""
    from lipflow.experiments.digit_flows import DigitFlowConfig
    from lipflow.experiments.ood import run_ood

    config = DigitFlowConfig(depth=depth, steps=steps, hidden=hidden, lr=lr)
    start_cpu, start_wall = cpu_seconds(), time.perf_counter()
    result = run_ood(config, models, 500, 0.5, ("float32",), seed=seed, progress=False, backend=backend)
    cpu, wall = cpu_seconds() - start_cpu, time.perf_counter() - start_wall
    rows = []
    for model in models:
        by_input = {r["input"]: r for r in result["rows"] if r["model"] == model}
        noise = [by_input[k] for k in ("uniform", "gaussian", "rademacher")]
        row = {"model": model, "depth": depth, "steps": steps, "hidden": "x".join(map(str, hidden)), "lr": lr,
               "seed": seed, "backend": backend.name,
               "test_max": by_input["digits (test)"]["max"], "test_pct_inf": by_input["digits (test)"]["pct_inf"]}
        for r in noise:
            row[f"{r['input']}_pct_inf"] = r["pct_inf"]
        row["noise_pct_inf"] = 100.0 * sum(r["n_inf"] for r in noise) / sum(r["n"] for r in noise)
        row["noise_max_finite"] = max(r["max"] for r in noise)
        row["test_bpd"] = by_input["digits (test)"]["test_bpd"]
        row["train_seconds"] = by_input["digits (test)"]["train_seconds"]
        row["cpu_seconds"], row["wall_seconds"] = cpu / len(models), wall / len(models)
        rows.append(row)
    return rows


CLASSIFIER_GRID = [
    (8, 150, (64,), 1e-2),
    (8, 300, (64,), 3e-3),
    (8, 300, (64,), 1e-2),
]


def _coefficient(model: str) -> tuple[str, str, float | None]:
    """'affine/fd 0.01' -> ('affine', 'fd', 0.01); no coefficient -> None."""
    architecture, rest = model.split("/")
    regulariser, _, coeff = rest.partition(" ")
    return architecture, regulariser, float(coeff) if coeff else None


def classifier_runs(depth: int, steps: int, hidden: tuple[int, ...], lr: float, seed: int, models: tuple[str, ...],
                    backend: Any) -> list[dict[str, Any]]:
    """One INN classifier per model 'architecture/regulariser coefficient' (``lipflow reproduce
    classifier``: same data split, initialisation and batches for every model of a seed)."""
    from lipflow.experiments.classifier import ClassifierConfig, train_and_measure
    from lipflow.experiments.data import load_digits

    data = load_digits(seed=seed)
    rows = []
    for model in models:
        architecture, regulariser, coeff = _coefficient(model)
        config = ClassifierConfig(depth=depth, steps=steps, hidden=hidden, lr=lr)
        if coeff is not None:
            config = ClassifierConfig(depth=depth, steps=steps, hidden=hidden, lr=lr, fd_coeff=coeff, nf_coeff=coeff)
        start_cpu, start_wall = cpu_seconds(), time.perf_counter()
        row, _ = train_and_measure(architecture, regulariser, data, config, seed=seed, progress=False,
                                   backend=backend)
        rows.append({"model": model, "depth": depth, "steps": steps, "hidden": "x".join(map(str, hidden)), "lr": lr,
                     "seed": seed, "backend": backend.name,
                     **{k: row[k] for k in ("test_acc", "recon_max", "recon_pct_inf", "cond_median", "cond_max",
                                            "sv_min", "spectrum_nonfinite", "angle_max_deg", "angle_nan",
                                            "skipped_steps")},
                     "cpu_seconds": cpu_seconds() - start_cpu, "wall_seconds": time.perf_counter() - start_wall})
    return rows


REGRESSION_GRID = [
    (4, 300, (10, 10), 1e-2),
    (4, 1000, (10, 10), 1e-3),
    (4, 3000, (10, 10), 1e-3),
]


def regression_runs(depth: int, steps: int, hidden: tuple[int, ...], lr: float, seed: int, models: tuple[str, ...],
                    backend: Any) -> list[dict[str, Any]]:
    """The 2D regression (``lipflow reproduce regression2d``), model 'none' or 'nf COEFF'; the
    monitor runs only at the end (final numbers on 500 test points are the same as the CLI's)."""
    from lipflow.experiments.regression2d import RegressionConfig, run_regression

    if hidden != (10, 10):
        raise SystemExit("regression2d: the conditioners are fixed 1-10-10-1 MLPs; use hidden 10x10")
    rows = []
    for model in models:
        name, _, coeff = model.partition(" ")
        config = RegressionConfig(flow_steps=depth, steps=steps, lr=lr, models=(name,), monitor_every=steps,
                                  **({"nf_coeff": float(coeff)} if coeff else {}))
        start_cpu, start_wall = cpu_seconds(), time.perf_counter()
        result = run_regression(config, seed=seed, progress=False, backend=backend)
        row = result["rows"][0]
        rows.append({"model": model, "depth": depth, "steps": steps, "hidden": "10x10", "lr": lr, "seed": seed,
                     "backend": backend.name,
                     **{k: row[k] for k in ("test_mse", "mean_error_f32", "max_error_f32", "pct_inf_f32",
                                            "median_cond", "worst_cond", "n_cond_nonfinite", "min_sigma_min",
                                            "skipped_steps")},
                     "cpu_seconds": cpu_seconds() - start_cpu, "wall_seconds": time.perf_counter() - start_wall})
    return rows


STUDIES = {"checkerboard": (CHECKERBOARD_GRID, checkerboard_runs, ("affine", "modified", "residual")),
           "remedies": (REMEDIES_GRID, remedies_runs,
                        ("sigmoid (0,1)", "biased sigmoid (0.1,1.1)", "bounded (0.5,1)", "additive")),
           "attack": (ATTACK_GRID, attack_runs, ("affine", "residual")),
           "ood": (OOD_GRID, ood_runs, ("affine", "additive", "residual")),
           "classifier": (CLASSIFIER_GRID, classifier_runs,
                          ("affine/none", "affine/fd 0.01", "affine/nf 0.01", "additive/none")),
           "regression2d": (REGRESSION_GRID, regression_runs, ("none", "nf 1e-06", "nf 0.0001", "nf 0.01"))}


def run_study(name: str, out: Path, seeds: list[int], models: tuple[str, ...], backend_name: str,
              grid: list[tuple[int, int, tuple[int, ...], float]]) -> None:
    from lipflow.experiments.backend import get_backend

    backend = get_backend(backend_name)
    runner = STUDIES[name][1]
    for depth, steps, hidden, lr in grid:
        for seed in seeds:
            wanted = [m for m in models if key_of({"model": m, "depth": depth, "steps": steps,
                                                    "hidden": "x".join(map(str, hidden)), "lr": lr, "seed": seed,
                                                    "backend": backend.name}) not in
                      {key_of(r) for r in read_rows(out)}]
            if not wanted:
                continue
            rows = runner(depth, steps, hidden, lr, seed, tuple(wanted), backend)
            append_rows(out, rows)
            for row in rows:
                print(", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                      flush=True)


def parse_grid(text: str) -> tuple[int, int, tuple[int, ...], float]:
    """depth:steps:hidden:lr, hidden as 32x32."""
    depth, steps, hidden, lr = text.split(":")
    return int(depth), int(steps), tuple(int(h) for h in hidden.split("x")), float(lr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=sorted(STUDIES))
    parser.add_argument("--out", type=Path, required=True, help="the study's CSV (appended to, resumable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", help="models (default: all of the study's)")
    parser.add_argument("--grid", type=parse_grid, nargs="+",
                        help="sizes as depth:steps:hidden:lr (e.g. 8:1000:32x32:0.01)")
    parser.add_argument("--backend", default="numpy", choices=("numpy", "torch"))
    parser.add_argument("--threads", type=int, default=1, help="BLAS/torch threads (default 1)")
    parser.add_argument("--report", action="store_true", help="print the CSV's Markdown table; train nothing")
    parser.add_argument("--plot", type=Path, help="with --report: also draw the effect against size to this PNG")
    args = parser.parse_args(argv)
    if args.report:
        rows = read_rows(args.out)
        print(markdown_table(args.study, rows))
        if args.plot:
            plot_study(args.study, rows, args.plot)
            print(f"wrote {args.plot}")
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    except ModuleNotFoundError:
        pass
    if args.backend == "torch":
        import torch
        torch.set_num_threads(args.threads)
    grid, _, default_models = STUDIES[args.study]
    run_study(args.study, args.out, args.seeds, tuple(args.models or default_models), args.backend,
              args.grid or grid)
    return 0


def summarise(rows: list[dict[str, str]], metric: str) -> dict[tuple[str, ...], tuple[float, float, float, int]]:
    """(model, depth, steps, hidden, lr) -> (median, min, max, seeds) of ``metric`` (inf kept)."""
    groups: dict[tuple[str, ...], list[float]] = {}
    for row in rows:
        if row.get(metric, "") == "":  # a column added after this row was written
            continue
        groups.setdefault(tuple(row[k] for k in ("model", "depth", "steps", "hidden", "lr")), []).append(
            float(row[metric]))
    return {k: (float(onp.median(v)), min(v), max(v), len(v)) for k, v in groups.items()}


#: per study: the metrics tabulated (median [min, max] over seeds) and the one plotted
METRICS = {"checkerboard": (["inside_max", "outside_max", "outside_over_inside", "outside_n_inf", "outside_min_logdet",
                             "test_nll", "cpu_seconds"], "outside_max"),
           "remedies": (["pct_nonfinite_near0", "max_z_error_near0", "max_z_error_r1", "min_scale_g",
                         "max_abs_sample", "test_bits_per_dim", "cpu_seconds"], "min_scale_g"),
           "attack": (["clean_median", "worst_median", "worst_max", "worst_n_inf", "rise_median", "test_bpd",
                       "cpu_seconds"], "rise_median"),
           "ood": (["test_max", "uniform_pct_inf", "gaussian_pct_inf", "rademacher_pct_inf", "noise_pct_inf",
                    "noise_max_finite", "test_bpd", "cpu_seconds"], "noise_pct_inf"),
           "classifier": (["test_acc", "recon_max", "recon_pct_inf", "cond_max", "sv_min", "angle_nan",
                           "cpu_seconds"], "cond_max"),
           "regression2d": (["test_mse", "mean_error_f32", "max_error_f32", "median_cond", "worst_cond",
                             "min_sigma_min", "cpu_seconds"], "worst_cond")}


def _size(key: tuple[str, ...]) -> str:
    _, depth, steps, hidden, lr = key
    return f"{depth} x {hidden}, {steps} steps, lr {float(lr):g}"


def markdown_table(study: str, rows: list[dict[str, str]]) -> str:
    """One line per (model, size): median [min, max] over seeds of each metric."""
    metrics, _ = METRICS[study]
    summaries = {m: summarise(rows, m) for m in metrics}
    keys = list(dict.fromkeys(tuple(r[k] for k in ("model", "depth", "steps", "hidden", "lr")) for r in rows))
    lines = ["| model | size | seeds | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 3) + "|"]
    for key in keys:
        cells = []
        for m in metrics:
            if key not in summaries[m]:
                cells.append("not recorded")
                continue
            median, low, high, _ = summaries[m][key]
            cells.append(f"{median:.3g} [{low:.2g}, {high:.2g}]")
        lines.append(f"| {key[0]} | {_size(key)} | {summaries[metrics[0]][key][3]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_study(study: str, rows: list[dict[str, str]], path: Path) -> None:
    """The plotted metric per size (x: depth x steps), median with the seed range as error bars,
    one line per model; every seed drawn as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lipflow.experiments.common import save_figure

    _, metric = METRICS[study]
    keys = list(dict.fromkeys(tuple(r[k] for k in ("model", "depth", "steps", "hidden", "lr")) for r in rows))
    sizes = list(dict.fromkeys(k[1:] for k in keys))
    models = list(dict.fromkeys(k[0] for k in keys))
    figure, axis = plt.subplots(figsize=(1.6 * len(sizes) + 4, 4.4), constrained_layout=True)
    for index, model in enumerate(models):
        offset = (index - (len(models) - 1) / 2) * 0.08
        for position, size in enumerate(sizes):
            values = [float(r[metric]) for r in rows
                      if tuple(r[k] for k in ("model", "depth", "steps", "hidden", "lr")) == (model, *size)]
            if not values:
                continue
            finite = [v for v in values if onp.isfinite(v)]
            axis.scatter([position + offset] * len(finite), finite, s=14, color=f"C{index}",
                         label=model if position == 0 else None)
            if finite:
                axis.plot([position + offset] * 2, [min(finite), max(finite)], color=f"C{index}", lw=1)
                axis.scatter([position + offset], [onp.median(finite)], marker="_", s=200, color=f"C{index}")
            bad = len(values) - len(finite)
            if bad:
                axis.annotate(f"{bad} inf", (position + offset, max(finite, default=1.0)), fontsize=7)
    axis.set_yscale("linear" if "pct" in metric else "log")  # a share of 0 % must show
    axis.set_xticks(range(len(sizes)), [_size(("", *s)) for s in sizes], rotation=20, fontsize=8)
    axis.set_ylabel(f"{metric} (dots: seeds; bar: range; tick: median)")
    axis.legend(fontsize=8)
    axis.set_title(f"{study}: {metric} against size", fontsize=10)
    save_figure(figure, path)


if __name__ == "__main__":
    sys.exit(main())
