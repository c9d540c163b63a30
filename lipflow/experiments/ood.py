"""Figure 4 (right): reconstruction error of digit flows on in-distribution test digits and on
Uniform, Gaussian and Rademacher noise images of the same shape.

The paper's claim (Section 4.1.1): affine coupling flows (Glow) are numerically non-invertible
on out-of-distribution inputs (100% Inf on the three noise sets), while a Residual Flow stays
stably invertible everywhere.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as onp

from lipflow.errors import LipflowError
from lipflow.experiments.backend import Backend, backend_from_args
from lipflow.experiments.common import (
    add_common_arguments,
    check_positive,
    positive_int,
    reconstruction_errors,
    save_figure,
    stopwatch,
    summarise_errors,
    text_table,
    write_csv,
)
from lipflow.experiments.data import load_digits
from lipflow.experiments.digit_flows import (
    DIGIT_DIM,
    DIGIT_MODELS,
    FULL,
    DigitFlowConfig,
    add_digit_flow_arguments,
    digit_flow_config,
    single_threaded_blas,
    train_digit_flow,
)

__all__ = ["DEFAULT", "DESCRIPTION", "FULL", "INPUT_SETS", "QUICK", "add_arguments", "noise_inputs", "plot_ood", "run",
           "run_ood"]

DESCRIPTION = "Figure 4 right: reconstruction error and share of Inf of digit flows on test digits and on noise"
INPUT_SETS = ("digits (test)", "uniform", "gaussian", "rademacher")
#: the default size, from the scale study (docs/experiments/ood.md): the smallest tried where the
#: affine flow's round trips fail on a large share of the noise images in every seed
DEFAULT = DigitFlowConfig(depth=8, hidden=(128,), steps=300)
#: ``--quick``: a smoke size for tests (seconds; shows nothing)
QUICK = DigitFlowConfig(depth=1, hidden=(8,), steps=5, batch=16)
COLOURS = {"affine": "tab:red", "additive": "tab:blue", "residual": "tab:green"}


def noise_inputs(kind: str, n: int, rng: onp.random.Generator, half_width: float = 0.5) -> onp.ndarray:
    """n noise images of 64 pixels, centred at mid-grey 0.5 with spread ``half_width``:
    uniform 0.5 + w U(-1, 1), gaussian 0.5 + w N(0, 1) (not clipped), rademacher 0.5 + w {-1, +1}.
    With the default w = 0.5, uniform fills the pixel range [0, 1] and rademacher images are
    black-and-white (pixels exactly 0 or 1)."""
    shape = (n, DIGIT_DIM)
    if kind == "uniform":
        unit = rng.uniform(-1.0, 1.0, shape)
    elif kind == "gaussian":
        unit = rng.standard_normal(shape)
    elif kind == "rademacher":
        unit = rng.choice([-1.0, 1.0], size=shape)
    else:
        raise LipflowError(f"unknown noise {kind!r}; choose uniform, gaussian or rademacher")
    return 0.5 + half_width * unit


def run_ood(config: DigitFlowConfig, models: tuple[str, ...], n_noise: int, half_width: float,
            precisions: tuple[str, ...], seed: int = 0, progress: bool = True,
            backend: Backend | None = None) -> dict[str, Any]:
    """Train each flow on the digits, then measure per-sample ||x - F^-1(F(x))||_2."""
    digits = load_digits(seed=seed)
    rng = onp.random.default_rng(seed + 500)
    inputs = {"digits (test)": digits.x_test}
    for kind in INPUT_SETS[1:]:
        inputs[kind] = noise_inputs(kind, n_noise, rng, half_width)
    rows, errors = [], {}
    for index, name in enumerate(models):
        trained = train_digit_flow(name, digits, config, seed=seed + index, progress=progress, backend=backend)
        for ctx in precisions:
            for label, x in inputs.items():
                e = reconstruction_errors(trained.flow, trained.params, x, ctx)
                errors[(name, label, ctx)] = e
                rows.append({"model": name, "input": label, "precision": ctx, **summarise_errors(e),
                             "test_bpd": trained.test_bpd, "skipped_steps": trained.nonfinite_steps,
                             "train_seconds": trained.seconds})
    return {"rows": rows, "errors": errors, "models": models, "precisions": precisions, "config": config,
            "half_width": half_width}


def plot_ood(results: dict[str, Any]) -> Any:
    """log10 error per input set (box + jittered points), one colour per model; non-finite
    samples drawn as crosses on the top edge and counted in the label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ctx = results["precisions"][0]
    models = results["models"]
    figure, axis = plt.subplots(figsize=(10, 5.2), constrained_layout=True)
    width = 0.8 / len(models)
    finite_logs = [onp.log10(onp.maximum(e[onp.isfinite(e)], 1e-300))
                   for (_, _, precision_name), e in results["errors"].items() if precision_name == ctx]
    finite_logs = [v for v in finite_logs if v.size]
    low = min((float(v.min()) for v in finite_logs), default=-8.0)
    high = max((float(v.max()) for v in finite_logs), default=0.0)
    unit = max(1.0, (math.ceil(high) - low) / 12)  # headroom for the Inf row grows with the range
    top = math.ceil(high) + 1.5 * unit
    jitter = onp.random.default_rng(0)
    for m, name in enumerate(models):
        for i, label in enumerate(INPUT_SETS):
            e = results["errors"][(name, label, ctx)]
            centre = i + (m - (len(models) - 1) / 2) * width
            finite = e[onp.isfinite(e)]
            logs = onp.log10(onp.maximum(finite, 1e-300))
            colour = COLOURS.get(name, "k")
            if logs.size:
                axis.boxplot(logs, positions=[centre], widths=width * 0.7, showfliers=False,
                             medianprops={"color": colour}, boxprops={"color": colour},
                             whiskerprops={"color": colour}, capprops={"color": colour})
                axis.scatter(centre + jitter.uniform(-0.3, 0.3, logs.size) * width, logs, s=3, alpha=0.35,
                             color=colour, label=name if i == 0 else None)
            bad = e.size - finite.size
            if bad:
                axis.scatter(centre + jitter.uniform(-0.3, 0.3, bad) * width, onp.full(bad, top - 0.6 * unit),
                             marker="x", s=12, color=colour)
            axis.annotate(f"{100 * bad / e.size:.3g}%", (centre, top - 0.25 * unit), ha="center", fontsize=8,
                          color=colour)
    axis.axhline(top - 0.9 * unit, color="grey", lw=0.6, ls=":")
    axis.set_xticks(range(len(INPUT_SETS)), INPUT_SETS)
    axis.set_ylim(low - 0.5, top)
    axis.text(-0.45, top - 0.75 * unit, "Inf/NaN", fontsize=8, color="grey", va="center")
    axis.set_ylabel(f"log10 ||x - F^-1(F(x))||_2 at {ctx}")
    axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), markerscale=4, title="model")
    config = results["config"]
    axis.set_title(f"Digits flows ({config.depth} steps, {config.steps} Adam steps): reconstruction error on "
                   f"test digits and noise (w = {results['half_width']}); top: % non-finite (x: Inf/NaN)",
                   fontsize=10)
    return figure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, "ood")
    add_digit_flow_arguments(parser, "all three", DEFAULT)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke size (1 flow step, width 8, 5 Adam steps, 20 noise images per set)")
    parser.add_argument("--noise", type=positive_int, help="images per noise set (default 500; --quick: 20)")
    parser.add_argument("--noise-width", type=float, default=0.5,
                        help="noise spread w around mid-grey 0.5 (default 0.5: the pixel range)")
    parser.add_argument("--float64", action="store_true", help="also measure the round trip at float64")


def run(args: argparse.Namespace) -> int:
    config = digit_flow_config(args, DEFAULT, QUICK)
    check_positive("--noise-width", args.noise_width)
    n_noise = args.noise or (20 if args.quick else 500)
    models = tuple(args.models) if args.models else DIGIT_MODELS
    precisions = ("float32", "float64") if args.float64 else ("float32",)
    out = Path(args.out)
    with stopwatch() as clock, single_threaded_blas():
        results = run_ood(config, models, n_noise, args.noise_width, precisions, seed=args.seed,
                          progress=not args.no_progress, backend=backend_from_args(args))
    write_csv(out / "ood.csv", results["rows"])
    save_figure(plot_ood(results), out / "ood.png")
    print(text_table(results["rows"], ["model", "input", "precision", "n", "n_inf", "pct_inf", "median", "max",
                                       "test_bpd"]))
    print(f"\nwrote {out / 'ood.csv'} and {out / 'ood.png'} in {clock['seconds']:.0f} s")
    return 0
