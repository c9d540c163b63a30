"""Figures 2 and 3: affine (scale in (0, 1)), modified affine (scale in (0.5, 1)) and residual
flows trained with the NF loss on the 2D checkerboard; reconstruction error on [-8, 8]^2.

The paper's claim (Section 4.1.1): both affine models become non-invertible outside the data
box [-4, 4]^2, while the residual flow stays stable everywhere.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as onp

from lipflow.blocks import Bounded, Flow, Sigmoid
from lipflow.errors import LipflowError
from lipflow.experiments import parallel
from lipflow.experiments.backend import (
    SMALL_RUN,
    Backend,
    NumpyBackend,
    add_backend_arguments,
    backend_for_run,
)
from lipflow.experiments.backend import fallback_note as backend_fallback_note
from lipflow.experiments.common import (
    add_common_arguments,
    check_positive,
    coupling_flow,
    positive_int,
    reconstruction_errors,
    residual_flow,
    save_figure,
    stopwatch,
    summarise_errors,
    text_table,
    write_csv,
)
from lipflow.experiments.data import DATA_BOX, checkerboard
from lipflow.precision import precision
from lipflow.train import nf_loss

__all__ = [
    "DESCRIPTION",
    "FULL",
    "MODELS",
    "QUICK",
    "CheckerboardConfig",
    "add_arguments",
    "build_model",
    "default_jobs",
    "fallback_note",
    "run",
    "run_checkerboard",
    "train_and_evaluate",
]

DESCRIPTION = "Figures 2/3: reconstruction error of affine, modified affine and residual flows on the 2D checkerboard"
MODELS = ("affine", "modified", "residual")
LIMIT = 8.0


@dataclass(frozen=True)
class CheckerboardConfig:
    """Sizes; the defaults are the smallest that show the paper's effect in every seed of the
    scale study (docs/experiments/checkerboard.md), :data:`FULL` is the authors' set-up."""

    depth: int = 100
    hidden: tuple[int, ...] = (64, 64)
    steps: int = 1000
    batch: int = 256
    lr: float = 5e-4
    grid_step: float = 0.2
    n_samples: int = 2000
    train_precision: str = "float32"
    eval_precision: str = "float32"
    models: tuple[str, ...] = MODELS


FULL = CheckerboardConfig(depth=100, hidden=(128, 128, 128, 128), steps=50_000, batch=500, lr=1e-3, grid_step=0.05)
#: ``--quick``: a smoke size for tests (seconds; shows nothing)
QUICK = CheckerboardConfig(depth=2, hidden=(8,), steps=3, batch=32, grid_step=1.0)


def build_model(name: str, config: CheckerboardConfig) -> Flow:
    """affine: sigmoid(s + 2) in (0, 1); modified: 0.5 + 0.5 sigmoid(s + 2) in (0.5, 1);
    residual: LipSwish, spectral coefficient 0.8."""
    if name == "affine":
        return coupling_flow(2, config.depth, config.hidden, scale=Sigmoid(shift=2.0))
    if name == "modified":
        return coupling_flow(2, config.depth, config.hidden, scale=Bounded(0.5, 1.0, shift=2.0))
    if name == "residual":
        return residual_flow(2, config.depth, config.hidden, coeff=0.8)
    raise LipflowError(f"unknown checkerboard model {name!r}; choose from {', '.join(MODELS)}")


def _grid(step: float) -> onp.ndarray:
    axis = onp.arange(-LIMIT, LIMIT, step)
    x1, x2 = onp.meshgrid(axis, axis, indexing="xy")
    return onp.stack([x1.ravel(), x2.ravel()], axis=1)


def train_and_evaluate(name: str, config: CheckerboardConfig, seed: int = 0, progress: bool = True,
                       backend: Backend | None = None) -> dict[str, Any]:
    """Train one model on ``backend`` (NumPy by default), then evaluate its grid errors and
    draw samples with lipflow's blocks at ``config.eval_precision``. A model's run depends on
    its name and the seed only, not on which other models run or in which process."""
    backend = backend or NumpyBackend()
    grid = _grid(config.grid_step)
    inside = onp.all(onp.abs(grid) <= DATA_BOX, axis=1)
    eval_ctx = precision(config.eval_precision)
    flow = build_model(name, config)
    params = flow.init(seed + MODELS.index(name))
    with stopwatch() as clock:
        result = backend.fit_nf(flow, params, lambda step, rng: checkerboard(config.batch, rng),
                                steps=config.steps, lr=config.lr, seed=seed, train_precision=config.train_precision,
                                progress=progress, description=f"checkerboard {name}")
    errors = reconstruction_errors(flow, result.params, grid, eval_ctx)
    with onp.errstate(all="ignore"):  # log|det J_F| at float64: how far the flow contracts (Sec. 3.3.2)
        logdet = onp.asarray(flow.forward_and_logdet(result.params, grid, ctx="float64")[1], dtype=onp.float64)
    rng = onp.random.default_rng(seed + 100)
    z = rng.standard_normal((config.n_samples, 2))
    with onp.errstate(all="ignore"):
        drawn = eval_ctx.to_float64(flow.inverse(result.params, eval_ctx.cast(z), ctx=eval_ctx))
    test = checkerboard(2000, onp.random.default_rng(seed + 200))
    test_nll = float(nf_loss(flow, result.params, test, ctx="float64"))
    rows = []
    for region, mask in (("inside [-4,4]^2", inside), ("outside [-4,4]^2", ~inside)):
        summary = summarise_errors(errors[mask])
        rows.append({"model": name, "region": region, **summary,
                     "min_logdet": float(onp.min(logdet[mask])) if mask.any() else onp.nan, "test_nll": test_nll,
                     "nonfinite_samples": int(onp.sum(~onp.all(onp.isfinite(drawn), axis=1))),
                     "skipped_steps": result.nonfinite_steps, "train_seconds": clock["seconds"]})
    return {"rows": rows, "errors": errors, "samples": drawn}


def default_jobs(config: CheckerboardConfig) -> int:
    """One process per model, at most one per available core; one for a small run."""
    return parallel.default_jobs(config.models, small=_small(config))


def _small(config: CheckerboardConfig) -> bool:
    return config.depth * config.steps <= SMALL_RUN


def run_checkerboard(config: CheckerboardConfig, seed: int = 0, progress: bool = True,
                     backend: Backend | None = None, jobs: int = 1) -> dict[str, Any]:
    """Every model of ``config`` through :func:`train_and_evaluate`; ``jobs > 1`` trains the
    models in that many worker processes (:func:`lipflow.experiments.parallel.run_models`; the
    residual flow, the slowest, first). The results are the same as with ``jobs=1``."""
    backend = backend or NumpyBackend()
    task = partial(train_and_evaluate, config=config, seed=seed, progress=progress and jobs == 1, backend=backend)
    outcomes = parallel.run_models(task, config.models, jobs, first=("residual",), progress=progress,
                                   description=f"checkerboard [{backend.name}]")
    rows = [row for name in config.models for row in outcomes[name]["rows"]]
    return {"rows": rows, "grid": _grid(config.grid_step), "grids": {n: outcomes[n]["errors"] for n in config.models},
            "samples": {n: outcomes[n]["samples"] for n in config.models}, "config": config}


def plot_checkerboard(results: dict[str, Any], seed: int = 0) -> Any:
    """Top: log10 reconstruction error maps (clipped to [1e-8, 1]; non-finite in magenta) with
    the data box in green. Bottom: model samples beside data (Fig. 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle

    config, grid = results["config"], results["grid"]
    models = list(results["grids"])
    side = round(onp.sqrt(len(grid)))
    figure, axes = plt.subplots(2, len(models) + 1, figsize=(4.2 * (len(models) + 1), 8.2), constrained_layout=True)
    titles = {"affine": "affine, g in (0, 1)", "modified": "modified affine, g in (0.5, 1)",
              "residual": "residual flow, c = 0.8"}
    image = None
    for column, name in enumerate(models):
        errors = results["grids"][name].reshape(side, side)
        shown = onp.clip(onp.where(onp.isfinite(errors), errors, onp.nan), 1e-8, 1.0)
        cmap = plt.get_cmap("viridis").with_extremes(bad="magenta")
        axis = axes[0, column]
        image = axis.imshow(shown, origin="lower", extent=(-LIMIT, LIMIT, -LIMIT, LIMIT),
                            norm=LogNorm(1e-8, 1.0), cmap=cmap, interpolation="nearest")
        axis.add_patch(Rectangle((-DATA_BOX, -DATA_BOX), 2 * DATA_BOX, 2 * DATA_BOX, fill=False, ec="lime", lw=2))
        n_bad = int(onp.sum(~onp.isfinite(errors)))
        axis.set_title(f"{titles[name]}\nnon-finite: {n_bad} of {errors.size}", fontsize=10)
        drawn = results["samples"][name]
        ok = onp.all(onp.isfinite(drawn), axis=1)
        axes[1, column].scatter(drawn[ok, 0], drawn[ok, 1], s=1, alpha=0.5)
        axes[1, column].set_title(f"samples F^-1(z), {config.eval_precision} ({int((~ok).sum())} non-finite)",
                                  fontsize=9)
    data = checkerboard(len(results["samples"][models[0]]), onp.random.default_rng(seed + 300))
    axes[1, -1].scatter(data[:, 0], data[:, 1], s=1, alpha=0.5, color="k")
    axes[1, -1].set_title("data", fontsize=10)
    for axis in axes[1]:
        axis.set_xlim(-6, 6)
        axis.set_ylim(-6, 6)
        axis.set_aspect("equal")
    axes[0, -1].axis("off")
    figure.colorbar(image, ax=axes[0, -1], fraction=0.5, label="||x - F^-1(F(x))||_2 (magenta: inf/nan)")
    figure.suptitle(f"2D checkerboard: reconstruction error on [-8, 8]^2 at {config.eval_precision} "
                    f"({config.depth} blocks, {config.steps} steps)", fontsize=11)
    return figure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, "checkerboard")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke size (2 blocks, width 8, 3 Adam steps, grid step 1)")
    parser.add_argument("--depth", type=positive_int,
                        help="blocks per model (default 100, as the paper; the out-of-box explosion needs depth: "
                             "it appears from 64 blocks, see docs/experiments/checkerboard.md)")
    parser.add_argument("--steps", type=positive_int, help="Adam steps per model (default 1000; --full: 50000)")
    parser.add_argument("--batch", type=positive_int, help="batch size (default 256; --full: 500)")
    parser.add_argument("--hidden", type=positive_int, nargs="+", help="hidden widths (default 64 64; --full: 128 x 4)")
    parser.add_argument("--grid-step", type=float, help="grid spacing on [-8, 8)^2 (default 0.2; --full: 0.05)")
    parser.add_argument("--lr", type=float, help="Adam learning rate (default 5e-4; --full: 1e-3)")
    parser.add_argument("--models", nargs="+", choices=MODELS, help="which models (default: all three)")
    parser.add_argument("--jobs", type=positive_int,
                        help="train the models in this many processes (default: one per model, at most one per "
                             "core; one for a run of seconds); the results do not depend on it")
    add_backend_arguments(parser, default="auto",
                          auto="torch when installed, except for runs of seconds such as --quick: numpy")


def config_from_args(args: argparse.Namespace) -> CheckerboardConfig:
    if args.full and args.quick:
        raise LipflowError("--full and --quick exclude each other; pick one")
    config = FULL if args.full else QUICK if args.quick else CheckerboardConfig()
    keys = ("depth", "steps", "batch", "grid_step")
    changes = {key: getattr(args, key) for key in keys if getattr(args, key) is not None}
    if args.hidden:
        changes["hidden"] = tuple(args.hidden)
    if args.models:
        changes["models"] = tuple(args.models)
    check_positive("--lr", args.lr)
    if args.lr is not None:
        changes["lr"] = args.lr
    if "grid_step" in changes and not 0 < changes["grid_step"] <= 4:
        raise LipflowError(f"--grid-step must be in (0, 4], got {changes['grid_step']}")
    return replace(config, **changes)


NUMPY_COST = "about 12 min of CPU per model at the defaults, against 2-5 min on torch"


def fallback_note(requested: str, backend: Backend, config: CheckerboardConfig) -> str | None:
    """What to tell a user whose ``--backend auto`` fell back to NumPy at a size where torch
    trains several times faster (None when there is nothing to say)."""
    return backend_fallback_note(requested, backend, _small(config), NUMPY_COST)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    backend = backend_for_run(args, _small(config), NUMPY_COST)
    jobs = args.jobs or default_jobs(config)
    out = Path(args.out)
    with stopwatch() as clock:
        results = run_checkerboard(config, seed=args.seed, progress=not args.no_progress, backend=backend, jobs=jobs)
    write_csv(out / "checkerboard.csv", results["rows"])
    grid_rows = [{"x1": float(p[0]), "x2": float(p[1]), **{m: float(results["grids"][m][i]) for m in results["grids"]}}
                 for i, p in enumerate(results["grid"])]
    write_csv(out / "checkerboard_grid.csv", grid_rows)
    save_figure(plot_checkerboard(results, args.seed), out / "checkerboard.png")
    print(text_table(results["rows"], ["model", "region", "n", "n_inf", "pct_inf", "median", "max", "test_nll",
                                       "nonfinite_samples", "train_seconds"]))
    print(f"\nwrote {out / 'checkerboard.csv'}, {out / 'checkerboard_grid.csv'} and {out / 'checkerboard.png'} "
          f"in {clock['seconds']:.0f} s")
    return 0
