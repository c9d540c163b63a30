"""Figure 6: a Glow-like flow regresses the nearly singular map x -> (x_1, 1e-12 x_2).

The paper's claim (Section 4.2, App. F): supervised training gives no incentive to keep the
inverse stable, so the unregularised model's inverse explodes; adding the NF objective with a
small coefficient (Sec. 3.3.2) or the bi-directional FD penalty (Eq. 6) keeps it invertible.
The monitor tracks, during training, the float32 round-trip error ||x - F^-1(F(x))|| and the
spectrum of J_F (sigma_min of J_F is 1 / Lip of the inverse at that point).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as onp

from lipflow.analysis.jacobian import jacobian_spectrum
from lipflow.blocks import MLP, ActNorm, AffineCoupling, Block, Flow, Reverse, Sigmoid
from lipflow.errors import LipflowError
from lipflow.experiments import parallel
from lipflow.experiments.backend import SMALL_RUN, Backend, NumpyBackend, add_backend_arguments, backend_for_run
from lipflow.experiments.common import (
    add_common_arguments,
    check_non_negative,
    check_positive,
    positive_int,
    reconstruction_errors,
    save_figure,
    stopwatch,
    summarise_errors,
    text_table,
    write_csv,
)
from lipflow.experiments.data import regression_pairs
from lipflow.experiments.engines import Loss, Model, NumpyOps, fd_penalty, nf_nll
from lipflow.precision import precision
from lipflow.train import FDRegulariser

__all__ = [
    "DESCRIPTION",
    "FULL",
    "MODELS",
    "QUICK",
    "RegressionConfig",
    "add_arguments",
    "build_flow",
    "fd_regulariser",
    "make_objective",
    "regression_loss",
    "run",
    "run_regression",
    "train_and_evaluate",
]

DESCRIPTION = "Figure 6: exploding inverses on a nearly singular 2D regression; NF and FD regularisers"
MODELS = ("none", "nf", "fd")
LABELS = {"none": "unregularised", "nf": "NF-regularised", "fd": "FD-regularised"}
EVAL_PRECISION = "float32"


@dataclass(frozen=True)
class RegressionConfig:
    """Sizes; the defaults are the authors' training (40 000 full-batch steps at lr 1e-4) on a
    4-step model, :data:`FULL` is the authors' set-up (24 flow steps, THEORY-NOTES)."""

    flow_steps: int = 4
    steps: int = 40_000
    n_train: int = 128
    n_test: int = 500
    n_monitor: int = 200
    lr: float = 1e-4
    nf_coeff: float = 1e-6
    fd_coeff: float = 1e-4
    fd_eps: float = 0.1
    fd_every: int = 10
    monitor_every: int = 1000
    models: tuple[str, ...] = MODELS
    train_precision: str = "float64"


FULL = RegressionConfig(flow_steps=24, steps=40_000, n_train=512, lr=1e-4, fd_every=1, monitor_every=1000)
#: ``--quick``: a smoke size for tests (seconds; shows nothing)
QUICK = RegressionConfig(flow_steps=1, steps=4, n_train=16, n_test=40, n_monitor=20, monitor_every=2)


#: what ``--backend auto`` without torch costs, for its note
NUMPY_COST = "about 15 min of CPU per model at the defaults, against about 3 min on torch"


def _small(config: RegressionConfig) -> bool:
    return config.flow_steps * config.steps <= SMALL_RUN


def build_flow(config: RegressionConfig) -> Flow:
    """flow_steps x (ActNorm, reverse, affine coupling with MLPs 1-10-10-1 ReLU for t and s,
    scale sigmoid(s + 2) + 1e-6), as the authors' Glow regression model."""
    blocks: list[Block] = []
    for _ in range(config.flow_steps):
        blocks += [ActNorm(2, init_std=0.0), Reverse(2),
                   AffineCoupling(2, t=MLP((10, 10), "relu"), s=MLP((10, 10), "relu"),
                                  scale=Sigmoid(shift=2.0, bias=1e-6))]
    return Flow(blocks)


def _measure(flow: Flow, params: Any, x: onp.ndarray) -> dict[str, float]:
    """Round-trip errors at float32 and float64 and the J_F spectrum (float64) on ``x``."""
    low = summarise_errors(reconstruction_errors(flow, params, x, EVAL_PRECISION))
    high = summarise_errors(reconstruction_errors(flow, params, x, "float64"))
    spectrum = jacobian_spectrum(flow, params, x, ctx="float64")
    cond, sigma_min = spectrum.cond, spectrum.sigma_min
    finite = onp.isfinite(cond)
    return {
        "mean_error_f32": low["mean"], "max_error_f32": low["max"], "n_inf_f32": low["n_inf"],
        "pct_inf_f32": low["pct_inf"], "mean_error_f64": high["mean"], "n_inf_f64": high["n_inf"],
        "median_cond": float(onp.median(cond[finite])) if finite.any() else math.nan,
        "worst_cond": float(onp.max(cond[finite])) if finite.any() else math.nan,
        "n_cond_nonfinite": int(onp.sum(~finite)),
        "min_sigma_min": float(onp.nanmin(sigma_min)) if onp.any(onp.isfinite(sigma_min)) else math.nan,
    }


def fd_regulariser(config: RegressionConfig) -> FDRegulariser:
    """The bi-directional FD penalty (paper Eq. 6) with the config's coefficient, eps and period."""
    return FDRegulariser(config.fd_coeff, config.fd_coeff, config.fd_eps, every=config.fd_every)


def regression_loss(flow: Flow, name: str, config: RegressionConfig) -> Loss:
    """loss(ops, params, (x, y, noise), step) of model ``name``, written once for both backends:
    MSE(F(x), y), plus the NF term (Sec. 3.3.2) for "nf" or the FD penalty (Eq. 6, on its
    steps) for "fd"; noise is the FD directions drawn by ``fd_regulariser(config).directions``."""
    if name not in MODELS:
        raise LipflowError(f"unknown regression model {name!r}; choose from {', '.join(MODELS)}")
    fd = fd_regulariser(config)

    def loss(ops: Any, p: Any, batch: Any, step: int) -> Any:
        x, y, noise = batch
        x, y = ops.asarray(x), ops.asarray(y)
        z, logdet = ops.forward_and_logdet(flow, p, x)
        value = ops.mean(ops.sum((z - y) ** 2, axis=1))
        if name == "nf":
            value = value + config.nf_coeff * nf_nll(ops, z, logdet)
        if name == "fd" and fd.active(step):
            value = value + fd_penalty(ops, flow, p, x, noise, fd)
        return value

    return loss


def make_objective(flow: Flow, name: str, config: RegressionConfig, x: Any, y: Any) -> Any:
    """objective(params, noise, step) for :func:`lipflow.train.fit`: :func:`regression_loss` on
    the fixed full batch (x, y) on lipflow's blocks at the training precision."""
    loss, ops = regression_loss(flow, name, config), NumpyOps(config.train_precision)

    def objective(p: Any, noise: Any, step: int) -> Any:
        return loss(ops, p, (x, y, noise), step)

    return objective


def train_and_evaluate(name: str, config: RegressionConfig, seed: int = 0, progress: bool = True,
                       backend: Backend | None = None,
                       on_record: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train model ``name`` on ``backend`` (NumPy by default), monitoring it every
    ``config.monitor_every`` steps, then evaluate it on the test points with lipflow's blocks.
    The run depends on the name and the seed only (every model sees the same data and
    initialisation), not on which other models run or in which process."""
    backend = backend or NumpyBackend()
    x, y = regression_pairs(config.n_train, onp.random.default_rng(seed))
    x_test, y_test = regression_pairs(config.n_test, onp.random.default_rng(seed + 1))
    x_monitor = x_test[: config.n_monitor]
    flow = build_flow(config)
    fd = fd_regulariser(config)

    def sample(step: int, rng: onp.random.Generator) -> Any:
        return x, y, fd.directions(rng, x.shape)

    def monitor(step: int, p: Any) -> dict[str, float]:
        measured = _measure(flow, p, x_monitor)
        if on_record is not None:
            on_record({"model": name, "step": step, **measured})
        return measured

    with stopwatch() as clock:
        result = backend.fit(regression_loss(flow, name, config), Model(flow), flow.init(seed), sample,
                             steps=config.steps, lr=config.lr, seed=seed, train_precision=config.train_precision,
                             monitor=monitor, monitor_every=config.monitor_every, progress=progress,
                             description=f"regression2d {name}")
    history = []
    for record in result.records:
        step = int(record["step"])
        history.append({"model": name, **record,
                        "train_loss": result.losses[min(step, len(result.losses) - 1)] if result.losses
                        else math.nan})
    params = result.params
    with onp.errstate(all="ignore"):
        z_test = flow.forward(params, x_test, ctx=precision("float64"))
    final = _measure(flow, params, x_test)
    row = {"model": name, "test_mse": float(onp.mean(onp.sum((z_test - y_test) ** 2, axis=1))),
           **final, "skipped_steps": result.nonfinite_steps, "train_seconds": clock["seconds"]}
    return {"row": row, "history": history, "output": z_test,
            "test_errors": reconstruction_errors(flow, params, x_test, EVAL_PRECISION)}


def run_regression(config: RegressionConfig, seed: int = 0, progress: bool = True,
                   backend: Backend | None = None,
                   on_record: Callable[[dict[str, Any]], None] | None = None, jobs: int = 1) -> dict[str, Any]:
    """Train each model on the same data from the same initialisation on ``backend`` (NumPy by
    default); monitor and evaluate on lipflow's blocks. ``on_record`` receives each monitor
    record (with its model name) as soon as it is measured, e.g. to save a long run's history
    as it grows (in this process only: not with ``jobs > 1``). ``jobs > 1`` trains the models
    in that many worker processes (:func:`lipflow.experiments.parallel.run_models`; the FD
    model, the slowest, first); the results are the same as with ``jobs=1``."""
    if on_record is not None and jobs > 1:
        raise LipflowError("on_record sees monitor records in this process only; use jobs=1 with it")
    backend = backend or NumpyBackend()
    task = partial(train_and_evaluate, config=config, seed=seed, progress=progress and jobs == 1, backend=backend,
                   on_record=on_record)
    outcomes = parallel.run_models(task, config.models, jobs, first=("fd",), progress=progress,
                                   description=f"regression2d [{backend.name}]")
    x_test, _ = regression_pairs(config.n_test, onp.random.default_rng(seed + 1))
    return {"rows": [outcomes[n]["row"] for n in config.models],
            "history": [record for n in config.models for record in outcomes[n]["history"]],
            "x_test": x_test, "outputs": {n: outcomes[n]["output"] for n in config.models},
            "test_errors": {n: outcomes[n]["test_errors"] for n in config.models}, "config": config}


def plot_regression(results: dict[str, Any]) -> Any:
    """Left: float32 round-trip error and worst-point cond(J_F) against the training step.
    Right, per model: the learned map F(x) (top) and the test points coloured by their float32
    round-trip error (bottom, clipped to [1e-8, 1], non-finite in magenta)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    config, x = results["config"], results["x_test"]
    models = list(results["outputs"])
    figure, axes = plt.subplots(2, len(models) + 1, figsize=(4.0 * (len(models) + 1), 7.6),
                                constrained_layout=True)
    for index, name in enumerate(models):
        records = [r for r in results["history"] if r["model"] == name]
        steps = [r["step"] for r in records]
        colour, width = f"C{index}", 3.0 - 0.9 * index  # wider first, so coinciding curves stay visible
        axes[0, 0].semilogy(steps, [r["mean_error_f32"] for r in records], "o-", ms=3, lw=width, color=colour,
                            label=LABELS[name])
        axes[1, 0].semilogy(steps, [r["worst_cond"] for r in records], "o-", ms=3, lw=width, color=colour,
                            label=f"{LABELS[name]}, worst")
        axes[1, 0].semilogy(steps, [r["median_cond"] for r in records], "--", color=colour, alpha=0.7,
                            label=f"{LABELS[name]}, median")
    axes[0, 0].set_title(f"mean ||x - F^-1(F(x))|| at {EVAL_PRECISION}\n({config.n_monitor} test points)",
                         fontsize=10)
    axes[1, 0].set_title("cond(J_F) over the test points", fontsize=10)
    for axis in axes[:, 0]:
        axis.set_xlabel("training step")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6)
    cmap = plt.get_cmap("viridis").with_extremes(bad="magenta")
    image = None
    for column, name in enumerate(models, start=1):
        z = results["outputs"][name]
        row = next(r for r in results["rows"] if r["model"] == name)
        top = axes[0, column]
        top.scatter(z[:, 0], z[:, 1], s=4, c=x[:, 1], cmap="coolwarm")
        top.set_title(f"{LABELS[name]}: learned map F(x)\n(colour: x_2; target z_2 = 1e-12 x_2)", fontsize=9)
        top.set_xlabel("z_1")
        top.set_ylabel("z_2")
        errors = results["test_errors"][name]
        shown = onp.clip(onp.where(onp.isfinite(errors), errors, onp.nan), 1e-8, 1.0)
        bottom = axes[1, column]
        image = bottom.scatter(x[:, 0], x[:, 1], s=6, c=shown, cmap=cmap, norm=LogNorm(1e-8, 1.0),
                               plotnonfinite=True)
        bottom.set_title(f"round-trip error at {EVAL_PRECISION}: mean {row['mean_error_f32']:.2g}\n"
                         f"worst cond {row['worst_cond']:.2g}, non-finite {row['n_inf_f32']} of {len(errors)}",
                         fontsize=9)
        bottom.set_xlabel("x_1")
        bottom.set_ylabel("x_2")
        bottom.set_aspect("equal")
    figure.colorbar(image, ax=axes[1, -1], label=f"||x - F^-1(F(x))||_2, {EVAL_PRECISION} (magenta: inf/nan)")
    figure.suptitle(f"2D regression onto a line ({config.flow_steps} Glow steps, {config.steps} Adam steps, "
                    f"lr {config.lr:g}; NF coeff {config.nf_coeff:g}, FD coeff {config.fd_coeff:g} "
                    f"every {config.fd_every})", fontsize=11)
    return figure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, "regression2d")
    parser.add_argument("--steps", type=positive_int, help="full-batch Adam steps (default 40000, as the authors)")
    parser.add_argument("--flow-steps", type=positive_int,
                        help="(ActNorm, reverse, affine coupling) steps (default 4; --full: 24)")
    parser.add_argument("--lr", type=float, help="Adam learning rate (default 1e-4, as the authors)")
    parser.add_argument("--n-train", type=positive_int, help="training pairs (default 128; --full: 512)")
    parser.add_argument("--nf-coeff", type=float, help="NF regulariser coefficient (default 1e-6)")
    parser.add_argument("--fd-coeff", type=float, help="FD regulariser coefficient, both directions (default 1e-4)")
    parser.add_argument("--fd-every", type=positive_int, help="apply the FD penalty every k steps (default 10)")
    parser.add_argument("--monitor-every", type=positive_int, help="monitor every k steps (default 1000)")
    parser.add_argument("--models", nargs="+", choices=MODELS, help="which models (default: all three)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke size (1 flow step, 16 pairs, 4 Adam steps; shows nothing)")
    parser.add_argument("--jobs", type=positive_int,
                        help="train the models in this many processes (default: one per model, at most one per "
                             "core; one for a run of seconds); the results do not depend on it")
    add_backend_arguments(parser, default="auto",
                          auto="torch when installed, except for runs of seconds such as --quick: numpy")


def config_from_args(args: argparse.Namespace) -> RegressionConfig:
    if args.full and args.quick:
        raise LipflowError("--full and --quick exclude each other; pick one")
    config = FULL if args.full else QUICK if args.quick else RegressionConfig()
    keys = ("steps", "flow_steps", "lr", "n_train", "nf_coeff", "fd_coeff", "fd_every", "monitor_every")
    changes = {key: getattr(args, key) for key in keys if getattr(args, key) is not None}
    if args.models:
        changes["models"] = tuple(args.models)
    check_positive("--lr", changes.get("lr"))
    for key in ("nf_coeff", "fd_coeff"):
        check_non_negative(f"--{key.replace('_', '-')}", changes.get(key))
    return replace(config, **changes)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    small = _small(config)
    backend = backend_for_run(args, small, NUMPY_COST)
    jobs = args.jobs or parallel.default_jobs(config.models, small)
    out = Path(args.out)
    with stopwatch() as clock:
        results = run_regression(config, seed=args.seed, progress=not args.no_progress, backend=backend, jobs=jobs)
    write_csv(out / "regression2d.csv", results["rows"])
    write_csv(out / "regression2d_history.csv", results["history"])
    save_figure(plot_regression(results), out / "regression2d.png")
    print(text_table(results["history"], ["model", "step", "train_loss", "mean_error_f32", "n_inf_f32",
                                           "median_cond", "worst_cond", "min_sigma_min"]))
    print(f"\nfinal, on {config.n_test} test points (errors at {EVAL_PRECISION} and float64; cond of J_F in float64):")
    print(text_table(results["rows"], ["model", "test_mse", "mean_error_f32", "max_error_f32", "n_inf_f32",
                                       "pct_inf_f32", "mean_error_f64", "median_cond", "worst_cond",
                                       "min_sigma_min", "skipped_steps", "train_seconds"]))
    print(f"\nwrote {out / 'regression2d.csv'}, {out / 'regression2d_history.csv'} and {out / 'regression2d.png'} "
          f"in {clock['seconds']:.0f} s")
    return 0
