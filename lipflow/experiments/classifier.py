"""Table 2 at small scale: additive and affine INN classifiers on the 8x8 digits, trained
unregularised, with the bi-directional FD penalty (Eq. 6) and with the NF objective as a
regulariser; test accuracy, float32 reconstruction error, Jacobian spectrum, and the angle
between memory-saving and ordinary gradients during training.

The paper's claim (Section 4.2, Table 2, App. G): the unregularised affine classifier becomes
non-invertible (Inf reconstruction error, min singular value ~1e-12), so memory-saving
gradients go wrong; FD or NF regularisation keeps it invertible at the same accuracy.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as onp

from lipflow.analysis import jacobian_spectrum
from lipflow.errors import LipflowError
from lipflow.experiments.backend import Backend, NumpyBackend, add_backend_arguments, backend_from_args
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
from lipflow.experiments.data import Digits, load_digits
from lipflow.experiments.engines import Loss, Model, fd_penalty, nf_nll
from lipflow.experiments.inn_classifier import (
    ARCHITECTURES,
    ClassifierModel,
    accuracy,
    build_classifier,
    gradient_probe,
    head_cross_entropy,
    one_hot,
)
from lipflow.train import FDRegulariser

__all__ = [
    "DEFAULT",
    "DESCRIPTION",
    "FULL",
    "QUICK",
    "REGULARISERS",
    "ClassifierConfig",
    "add_arguments",
    "classifier_loss",
    "plot_classifier",
    "run",
    "run_classifier",
    "train_and_measure",
]

DESCRIPTION = "Table 2 (small): additive/affine INN classifiers on 8x8 digits, none/FD/NF, gradient angles"
REGULARISERS = ("none", "fd", "nf")
#: pixels in [0, 1] are centred to [-0.5, 0.5] before the flow
CENTRE = 0.5


@dataclass(frozen=True)
class ClassifierConfig:
    """Sizes and hyper-parameters; the defaults are CPU-sized (about 2 minutes on one core)."""

    depth: int = 8
    hidden: tuple[int, ...] = (64,)
    head_dims: int = 64
    steps: int = 300
    batch: int = 64
    lr: float = 1e-3
    fd_coeff: float = 1e-4
    fd_eps: float = 0.1
    fd_every: int = 1
    nf_coeff: float = 1e-4
    probe_every: int = 25
    probe_size: int = 128
    spectrum_points: int = 100
    train_precision: str = "float32"
    eval_precision: str = "float32"
    architectures: tuple[str, ...] = ARCHITECTURES
    regularisers: tuple[str, ...] = REGULARISERS


#: a larger set-up for long runs (not the paper's CIFAR-10 Glow; the data set is 8x8 digits)
FULL = ClassifierConfig(depth=32, hidden=(128, 128), steps=20_000, batch=128, probe_every=200, spectrum_points=449)
#: the default of ``lipflow reproduce classifier``, from the scale study (docs/experiments/classifier.md):
#: at lr 1e-2 the unregularised affine model loses invertibility in every seed; the regularisers at
#: 1e-2 (at the authors' 1e-4 the FD-regularised training breaks at this learning rate)
DEFAULT = ClassifierConfig(steps=150, lr=1e-2, fd_coeff=1e-2, nf_coeff=1e-2)
#: ``--quick``: a smoke size for tests (seconds; shows nothing)
QUICK = ClassifierConfig(depth=2, hidden=(8,), steps=4, batch=16, probe_every=2, probe_size=16, spectrum_points=5)


def classifier_loss(model: ClassifierModel, regulariser: str, config: ClassifierConfig) -> Loss:
    """loss(ops, params, (x, targets, fd directions), step), written once for both backends:
    cross-entropy of the head on F(x), plus the FD penalty (Eq. 6, on its steps) or the NF
    objective times its coefficient (Sec. 3.3.2)."""
    fd = FDRegulariser(config.fd_coeff, config.fd_coeff, config.fd_eps, config.fd_every)
    flow = model.flow

    def loss(ops: Any, params: Any, batch: Any, step: int) -> Any:
        x, targets, directions = batch
        x = ops.asarray(x)
        z = ops.forward(flow, params["flow"], x)
        value = head_cross_entropy(ops, model, params["head"], z, targets)
        if regulariser == "fd" and fd.active(step):
            value = value + fd_penalty(ops, flow, params["flow"], x, directions, fd)
        if regulariser == "nf":
            value = value + config.nf_coeff * nf_nll(ops, *ops.forward_and_logdet(flow, params["flow"], x))
        return value

    return loss


def _sampler(data: Digits, config: ClassifierConfig) -> Any:
    """Mini-batches of centred training digits, dequantised by U[0, bin width) noise per pixel."""
    targets = one_hot(data.y_train)
    fd = FDRegulariser(config.fd_coeff, config.fd_coeff, config.fd_eps, config.fd_every)

    def sample(step: int, rng: onp.random.Generator) -> Any:
        rows = rng.integers(0, len(data.x_train), config.batch)
        x = data.x_train[rows] - CENTRE + rng.uniform(0.0, data.bin_width, (config.batch, data.x_train.shape[1]))
        return x, targets[rows], fd.directions(rng, x.shape)

    return sample


def train_and_measure(
    architecture: str, regulariser: str, data: Digits, config: ClassifierConfig, seed: int = 0,
    progress: bool = True, backend: Backend | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train one classifier on ``backend`` (NumPy by default); return its summary row and its
    gradient-probe records (probes and evaluation run on lipflow's blocks)."""
    backend = backend or NumpyBackend()
    if regulariser not in REGULARISERS:
        raise LipflowError(f"unknown regulariser {regulariser!r}; choose from {', '.join(REGULARISERS)}")
    dim = data.x_train.shape[1]
    model = build_classifier(architecture, dim, config.depth, config.hidden, config.head_dims, seed=seed)
    x_probe = data.x_train[: config.probe_size] - CENTRE
    probe = gradient_probe(model, x_probe, one_hot(data.y_train[: config.probe_size]), config.eval_precision)
    probe_seconds = [0.0]

    def timed_probe(step: int, params: Any) -> dict[str, float]:
        start = time.perf_counter()
        record = probe(step, params)
        probe_seconds[0] += time.perf_counter() - start
        return record

    with stopwatch() as clock:
        result = backend.fit(classifier_loss(model, regulariser, config), Model(parts={"flow": model.flow}),
                             model.init(seed), _sampler(data, config), steps=config.steps, lr=config.lr, seed=seed,
                             train_precision=config.train_precision, monitor=timed_probe,
                             monitor_every=config.probe_every, progress=progress,
                             description=f"classifier {architecture}/{regulariser}")
    params = result.params
    x_test = data.x_test - CENTRE
    errors = summarise_errors(reconstruction_errors(model.flow, params["flow"], x_test, config.eval_precision))
    points = x_test[: config.spectrum_points]
    with onp.errstate(all="ignore"):
        spectrum = jacobian_spectrum(model.flow, params["flow"], points, ctx="float64")
    finite = onp.isfinite(spectrum.cond)
    angles = onp.array([r["angle_deg"] for r in result.records])
    row = {
        "architecture": architecture, "regulariser": regulariser,
        "test_acc": accuracy(model, params, x_test, data.y_test, config.eval_precision),
        "recon_median": errors["median"], "recon_max": errors["max"], "recon_n_inf": errors["n_inf"],
        "recon_pct_inf": errors["pct_inf"],
        "cond_median": float(onp.median(spectrum.cond[finite])) if finite.any() else math.nan,
        "cond_max": float(onp.max(spectrum.cond[finite])) if finite.any() else math.nan,
        "sv_min": float(onp.nanmin(spectrum.sigma_min)) if finite.any() else math.nan,
        "sv_max": float(onp.nanmax(spectrum.sigma_max)) if finite.any() else math.nan,
        "spectrum_points": len(points), "spectrum_nonfinite": int(onp.sum(~finite)),
        "angle_final_deg": float(angles[-1]), "angle_max_deg": float(onp.nanmax(angles)) if onp.any(
            onp.isfinite(angles)) else math.nan, "angle_nan": int(onp.sum(onp.isnan(angles))),
        "skipped_steps": result.nonfinite_steps,
        "train_seconds": clock["seconds"] - probe_seconds[0],
    }
    records = [{"architecture": architecture, "regulariser": regulariser, **r} for r in result.records]
    return row, records


def run_classifier(config: ClassifierConfig, seed: int = 0, progress: bool = True,
                   backend: Backend | None = None) -> dict[str, Any]:
    """Every (architecture, regulariser) pair; the same data split, seed and batches for all."""
    data = load_digits(seed=seed)
    rows, records = [], []
    for architecture in config.architectures:
        for regulariser in config.regularisers:
            row, probe = train_and_measure(architecture, regulariser, data, config, seed, progress, backend)
            rows.append(row)
            records += probe
    return {"rows": rows, "records": records, "config": config}


def _bar_panel(axis: Any, rows: list[dict[str, Any]], median_key: str, max_key: str | None, style: dict[str, list],
               log: bool = True) -> None:
    """Bars of ``median_key`` per model, black ticks at ``max_key``; non-finite values not drawn."""
    positions = onp.arange(len(rows))

    def finite(key: str) -> list[float]:
        return [r[key] if math.isfinite(r[key]) else onp.nan for r in rows]

    axis.bar(positions, finite(median_key), color=style["colours"], hatch=style["hatches"],
             label=median_key.replace("_", " "))
    if max_key:
        axis.scatter(positions, finite(max_key), marker="_", s=400, color="k", label=max_key.replace("_", " "),
                     zorder=3)
        axis.legend(fontsize=8, loc="upper left")
    if log:
        axis.set_yscale("log")
    axis.set_xticks(positions, style["labels"], fontsize=8)


def _curve_panel(axis: Any, rows: list[dict[str, Any]], records: list[dict[str, Any]], key: str,
                 style: dict[str, list]) -> None:
    """``key`` of the gradient probes against the step per model; non-finite probes as crosses
    at the top of the panel (never dropped)."""
    for index, r in enumerate(rows):
        mine = [q for q in records if q["architecture"] == r["architecture"] and q["regulariser"] == r["regulariser"]]
        steps = onp.array([q["step"] for q in mine])
        values = onp.array([q[key] for q in mine], dtype=onp.float64)
        ok = onp.isfinite(values)
        axis.plot(steps[ok], values[ok], "-" if r["architecture"] == "affine" else "--", marker=".",
                  color=style["colours"][index], label=f"{r['architecture']} / {r['regulariser']}")
        if not ok.all():
            axis.scatter(steps[~ok], onp.full(int((~ok).sum()), 0.96), marker="x", s=40, color=style["colours"][index],
                         transform=axis.get_xaxis_transform(), clip_on=False)
    axis.set_yscale("log")
    axis.set_xlabel("training step")


def plot_classifier(results: dict[str, Any]) -> Any:
    """Top: test accuracy, float32 reconstruction error (% non-finite in magenta), Jacobian
    condition number. Bottom: gradient angle and worst recomputed-input error against the
    step (crosses: NaN/Inf), smallest singular value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, records, config = results["rows"], results["records"], results["config"]
    style = {"labels": [f"{r['architecture']}\n{r['regulariser']}" for r in rows],
             "colours": [f"C{REGULARISERS.index(r['regulariser'])}" for r in rows],
             "hatches": ["//" if r["architecture"] == "affine" else "" for r in rows]}
    figure, axes = plt.subplots(2, 3, figsize=(16, 9), constrained_layout=True)
    axis = axes[0, 0]
    _bar_panel(axis, [{**r, "test_acc_pct": 100 * r["test_acc"]} for r in rows], "test_acc_pct", None, style,
               log=False)
    for p, r in enumerate(rows):
        axis.text(p, 100 * r["test_acc"] + 0.5, f"{100 * r['test_acc']:.1f}", ha="center", fontsize=8)
    axis.set_ylim(0, 105)
    axis.set_title("test accuracy (%)")

    axis = axes[0, 1]
    _bar_panel(axis, rows, "recon_median", "recon_max", style)
    for p, r in enumerate(rows):
        if r["recon_n_inf"]:
            axis.text(p, 0.8, f"{r['recon_pct_inf']:.1f}%\nInf/NaN", transform=axis.get_xaxis_transform(),
                      ha="center", va="top", color="magenta", fontsize=8, fontweight="bold")
    axis.set_title(f"test ||x - F^-1(F(x))||_2 at {config.eval_precision} (finite; magenta: % non-finite)",
                   fontsize=10)

    axis = axes[0, 2]
    _bar_panel(axis, rows, "cond_median", "cond_max", style)
    axis.set_title(f"cond J_F(x) on {rows[0]['spectrum_points']} test points (float64 Jacobians)", fontsize=10)

    _curve_panel(axes[1, 0], rows, records, "angle_deg", style)
    axes[1, 0].set_ylabel("degrees")
    axes[1, 0].set_title("angle: memory-saving vs ordinary gradient (x: NaN)", fontsize=10)
    axes[1, 0].legend(fontsize=8, loc="center left")
    _curve_panel(axes[1, 1], rows, records, "recompute_error", style)
    axes[1, 1].set_title(f"worst ||x recomputed by inverses - x||_2 on the {config.probe_size} probe digits "
                         "(x: Inf/NaN)", fontsize=10)
    _bar_panel(axes[1, 2], rows, "sv_min", None, style)
    axes[1, 2].set_title("smallest singular value of J_F over the test points", fontsize=10)
    figure.suptitle(f"INN classifiers on 8x8 digits: {config.depth} x (permutation, coupling), {config.steps} Adam "
                    f"steps (lr {config.lr:g}, batch {config.batch}), trained in {config.train_precision}; "
                    f"FD coeff {config.fd_coeff:g}, NF coeff {config.nf_coeff:g}", fontsize=11)
    return figure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, "classifier")
    parser.add_argument("--steps", type=positive_int,
                        help=f"Adam steps per model (default {DEFAULT.steps}; --full: 20000)")
    parser.add_argument("--lr", type=float, help=f"Adam learning rate (default {DEFAULT.lr:g}; --full: 1e-3)")
    parser.add_argument("--quick", action="store_true", help="a smoke size (2 blocks, width 8, 4 Adam steps)")
    parser.add_argument("--depth", type=positive_int, help="coupling blocks (default 8; --full: 32)")
    parser.add_argument("--hidden", type=positive_int, nargs="+", help="conditioner hidden widths (default 64)")
    parser.add_argument("--batch", type=positive_int, help="batch size (default 64; --full: 128)")
    parser.add_argument("--head-dims", type=positive_int, help="coordinates of z the linear head reads (default 64)")
    parser.add_argument("--probe-every", type=positive_int, help="steps between gradient-angle probes (default 25)")
    parser.add_argument("--spectrum-points", type=positive_int, help="test points for the Jacobian SVD (default 100)")
    parser.add_argument("--fd-coeff", type=float,
                        help=f"FD coefficient, both directions (default {DEFAULT.fd_coeff:g}; --full: 1e-4)")
    parser.add_argument("--fd-every", type=positive_int, help="apply the FD penalty every k steps (default 1)")
    parser.add_argument("--nf-coeff", type=float,
                        help=f"NF regulariser coefficient (default {DEFAULT.nf_coeff:g}; --full: 1e-4)")
    parser.add_argument("--architectures", nargs="+", choices=ARCHITECTURES, help="default: both")
    parser.add_argument("--regularisers", nargs="+", choices=REGULARISERS, help="default: none fd nf")
    add_backend_arguments(parser)


def config_from_args(args: argparse.Namespace) -> ClassifierConfig:
    if args.full and args.quick:
        raise LipflowError("--full and --quick exclude each other; pick one")
    config = FULL if args.full else QUICK if args.quick else DEFAULT
    names = ("steps", "lr", "depth", "batch", "head_dims", "probe_every", "spectrum_points", "fd_coeff",
             "fd_every", "nf_coeff")
    changes: dict[str, Any] = {key: getattr(args, key) for key in names if getattr(args, key) is not None}
    for key in ("hidden", "architectures", "regularisers"):
        if getattr(args, key):
            changes[key] = tuple(getattr(args, key))
    check_positive("--lr", changes.get("lr"))
    for key in ("fd_coeff", "nf_coeff"):
        check_non_negative(f"--{key.replace('_', '-')}", changes.get(key))
    if changes.get("head_dims", config.head_dims) > 64:
        raise LipflowError(f"--head-dims must be at most 64 (the digits' dimension), got {changes['head_dims']}")
    return replace(config, **changes)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    backend = backend_from_args(args)
    out = Path(args.out)
    with stopwatch() as clock:
        results = run_classifier(config, seed=args.seed, progress=not args.no_progress, backend=backend)
    write_csv(out / "classifier.csv", results["rows"])
    write_csv(out / "classifier_angles.csv", results["records"])
    save_figure(plot_classifier(results), out / "classifier.png")
    print(text_table(results["rows"], ["architecture", "regulariser", "test_acc", "recon_median", "recon_max",
                                       "recon_pct_inf", "cond_median", "cond_max", "sv_min", "sv_max",
                                       "angle_final_deg", "angle_nan", "train_seconds"]))
    print(f"\nwrote {out / 'classifier.csv'}, {out / 'classifier_angles.csv'} and {out / 'classifier.png'} "
          f"in {clock['seconds']:.0f} s")
    return 0
