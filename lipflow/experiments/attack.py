"""Appendix E: the invertibility attack. Inside the dequantisation box of a test digit
(||x' - x||_inf <= bin_width / 2, so x' is a valid sample of the training distribution), search
by projected sign-gradient ascent for inputs whose round trip F^-1(F(x')) fails at float32.

The paper's claim (Section 4.1.2): such inputs exist for affine coupling flows (Glow), which can
be driven to large or non-finite reconstruction errors; a Residual Flow stays stably invertible.

Objective (a smooth surrogate, since the float32 round-trip error is piecewise constant in x'):
the *simulated rounding* round trip at float64, ||G_eps(F(x')) - x'||_2, where G_eps runs the
inverse block by block and multiplies each block's input by (1 + u eps_k), u = 2^-24 the float32
unit roundoff and eps_k a fixed random sign vector per image and block. To first order this is
u ||sum_k J_{F^-1, <=k} diag(eps_k) h_k||: the inverse Jacobians applied to rounding-sized
perturbations of the activations (paper Section 2: errors grow with Lip(F^-1)). Gradients are
taken by autograd at float64; the attained error is always measured by an actual float32 round
trip, and the worst float32 error seen along the path is reported.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import autograd.numpy as anp
import numpy as onp
from autograd import grad

from lipflow.analysis.stress import simulated_rounding_error
from lipflow.blocks import Flow
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
    FULL,
    DigitFlowConfig,
    add_digit_flow_arguments,
    digit_flow_config,
    single_threaded_blas,
    train_digit_flow,
)
from lipflow.precision import precision

__all__ = ["DESCRIPTION", "FULL", "add_arguments", "attack_images", "plot_attack", "run", "run_attack",
           "simulated_rounding_error"]

DESCRIPTION = "Appendix E: invertibility attack inside the dequantisation box against affine and residual flows"
COLOURS = {"affine": "tab:red", "additive": "tab:blue", "residual": "tab:green"}


def attack_images(flow: Flow, params: Any, x: onp.ndarray, radius: float, steps: int, step_size: float,
                  rng: onp.random.Generator, measure_every: int = 5) -> dict[str, Any]:
    """Projected sign-gradient ascent on the log of :func:`simulated_rounding_error` from a
    random start in the box |x' - x|_inf <= radius. Returns the float32 error of the clean
    image, of the random start, the worst float32 error met along the path (and its x'), and
    the float32 error history (median over images, count non-finite) every ``measure_every`` steps,
    and the surrogate at the clean image, the start and the worst point."""
    prepared = precision("float64").cast(flow._prepare(params))
    signs = rng.choice([-1.0, 1.0], size=(len(flow.blocks), *x.shape))

    def objective(z: Any) -> Any:
        return anp.sum(anp.log(simulated_rounding_error(flow, prepared, z, signs)))

    gradient = grad(objective)
    current = x + rng.uniform(-radius, radius, x.shape)
    with onp.errstate(all="ignore"):
        surrogate = {"clean": onp.asarray(simulated_rounding_error(flow, prepared, x, signs)),
                     "start": onp.asarray(simulated_rounding_error(flow, prepared, current, signs))}
    clean = reconstruction_errors(flow, params, x, "float32")
    start = reconstruction_errors(flow, params, current, "float32")
    worst, worst_x = start.copy(), current.copy()
    history = []
    for step in range(1, steps + 1):
        with onp.errstate(all="ignore"):
            g = gradient(current)
        direction = onp.sign(onp.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0))
        current = onp.clip(current + step_size * direction, x - radius, x + radius)
        if step % measure_every == 0 or step == steps:
            errors = reconstruction_errors(flow, params, current, "float32")
            better = ~(errors <= worst)  # inf beats everything; inf vs inf keeps the first
            better &= ~onp.isinf(worst)
            worst = onp.where(better, errors, worst)
            worst_x[better] = current[better]
            history.append({"step": step, "median_now": float(onp.median(errors)),
                            "nonfinite_now": int(onp.sum(~onp.isfinite(errors))),
                            "median_worst": float(onp.median(worst)),
                            "nonfinite_worst": int(onp.sum(~onp.isfinite(worst)))})
    with onp.errstate(all="ignore"):
        surrogate["worst"] = onp.asarray(simulated_rounding_error(flow, prepared, worst_x, signs))
    return {"clean": clean, "start": start, "worst": worst, "worst_x": worst_x, "history": history,
            "surrogate": surrogate}


def run_attack(config: DigitFlowConfig, models: tuple[str, ...], n_images: int, steps: int, step_fraction: float,
               threshold: float, seed: int = 0, progress: bool = True,
            backend: Backend | None = None) -> dict[str, Any]:
    """Train each flow, then attack the first ``n_images`` test digits."""
    digits = load_digits(seed=seed)
    if n_images > len(digits.x_test):
        raise LipflowError(f"--images must be at most {len(digits.x_test)} (the test digits), got {n_images}")
    x = digits.x_test[:n_images]
    radius = 0.5 * digits.bin_width
    rows, attacks, histories = [], {}, []
    for index, name in enumerate(models):
        trained = train_digit_flow(name, digits, config, seed=seed + index, progress=progress, backend=backend)
        with stopwatch() as clock:
            result = attack_images(trained.flow, trained.params, x, radius, steps, step_fraction * radius,
                                   onp.random.default_rng(seed + 900))
        attacks[name] = result
        histories += [{"model": name, **h} for h in result["history"]]
        for label in ("clean", "start", "worst"):
            summary = summarise_errors(result[label])
            above = int(onp.sum(~(result[label] <= threshold)))
            rows.append({"model": name, "images": label, **summary, f"n_above_{threshold:g}": above,
                         f"pct_above_{threshold:g}": 100.0 * above / n_images,
                         "surrogate_median": float(onp.median(result["surrogate"][label])),
                         "surrogate_max": float(onp.max(result["surrogate"][label])), "attack_steps": steps,
                         "attack_seconds": clock["seconds"], "test_bpd": trained.test_bpd})
    return {"rows": rows, "attacks": attacks, "histories": histories, "x": x, "models": models,
            "config": config, "steps": steps, "threshold": threshold, "radius": radius}


def plot_attack(results: dict[str, Any]) -> Any:
    """Left: float32 error before (clean, random start) and after the attack per image, one
    colour per model, non-finite as crosses on the top edge. Middle: the median worst-so-far
    error against attack steps. Right: one clean digit and its most damaging attacked version."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = results["models"]
    figure, axes = plt.subplots(1, 3, figsize=(14, 4.6), constrained_layout=True,
                                gridspec_kw={"width_ratios": [1.4, 1.2, 1.0]})
    values = onp.concatenate([results["attacks"][m][k] for m in models for k in ("clean", "start", "worst")])
    finite = values[onp.isfinite(values)]
    high = math.ceil(max(onp.log10(finite.max()) if finite.size else 0.0, math.log10(results["threshold"])))
    bottom = math.floor(onp.log10(max(finite.min(), 1e-300))) - 0.5 if finite.size else -9
    unit = max(1.0, (high - bottom) / 12)  # headroom for the Inf row grows with the range
    top = high + 1.5 * unit
    jitter = onp.random.default_rng(0)
    width = 0.8 / len(models)
    axis = axes[0]
    for m, name in enumerate(models):
        colour = COLOURS.get(name, "k")
        for i, key in enumerate(("clean", "start", "worst")):
            e = results["attacks"][name][key]
            centre = i + (m - (len(models) - 1) / 2) * width
            ok = onp.isfinite(e)
            axis.scatter(centre + jitter.uniform(-0.3, 0.3, ok.sum()) * width, onp.log10(e[ok]), s=10, alpha=0.6,
                         color=colour, label=name if i == 0 else None)
            bad = int((~ok).sum())
            if bad:
                axis.scatter(centre + jitter.uniform(-0.3, 0.3, bad) * width, onp.full(bad, top - 0.6 * unit),
                             marker="x", s=20, color=colour)
            above = int(onp.sum(~(e <= results["threshold"])))
            axis.annotate(f"{100 * above / e.size:.0f}%", (centre, top - 0.25 * unit), ha="center", fontsize=8,
                          color=colour)
    axis.axhline(onp.log10(results["threshold"]), color="grey", ls="--", lw=0.8)
    axis.axhline(top - 0.9 * unit, color="grey", ls=":", lw=0.6)
    axis.set_xticks(range(3), ["clean x", "random start", "after attack"])
    axis.set_ylim(bottom, top)
    axis.set_ylabel("log10 ||x' - F^-1(F(x'))||_2 at float32")
    axis.set_title(f"top: % above {results['threshold']:g} (dashed) or non-finite (x)", fontsize=9)
    axis.legend(loc="lower right", markerscale=2)
    axis = axes[1]
    for name in models:
        history = [h for h in results["histories"] if h["model"] == name]
        axis.semilogy([h["step"] for h in history], [h["median_worst"] for h in history],
                      color=COLOURS.get(name, "k"), label=f"{name}: median worst")
        axis.semilogy([h["step"] for h in history], [h["median_now"] for h in history], ls=":",
                      color=COLOURS.get(name, "k"), label=f"{name}: median current")
    axis.set_xlabel("attack step")
    axis.set_ylabel("float32 reconstruction error")
    axis.legend(fontsize=8)
    axis.set_title("error along the attack", fontsize=9)
    attacked = results["attacks"][models[0]]
    worst = onp.where(onp.isfinite(attacked["worst"]), attacked["worst"], onp.inf)
    image = int(onp.argmax(worst))
    pair = onp.concatenate([results["x"][image].reshape(8, 8), onp.full((8, 1), onp.nan),
                            attacked["worst_x"][image].reshape(8, 8)], axis=1)
    axes[2].imshow(pair, cmap="gray", vmin=-0.05, vmax=1.05)
    axes[2].set_title(f"{models[0]}: test digit and attacked x'\nerror {attacked['clean'][image]:.2g} -> "
                      f"{attacked['worst'][image]:.2g} (box ±{results['radius']:.3g})", fontsize=9)
    axes[2].axis("off")
    config = results["config"]
    figure.suptitle(f"Invertibility attack in the dequantisation box ({config.depth} flow steps, {config.steps} "
                    f"training steps, {results['steps']} attack steps)", fontsize=11)
    return figure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, "attack")
    add_digit_flow_arguments(parser, "affine residual")
    parser.add_argument("--images", type=positive_int, default=32, help="test digits attacked (default 32)")
    parser.add_argument("--attack-steps", type=positive_int, help="sign-gradient steps (default 100; --full: 200)")
    parser.add_argument("--step-fraction", type=float, default=0.25,
                        help="attack step as a fraction of the box half-width (default 0.25)")
    parser.add_argument("--threshold", type=float, default=1e-3,
                        help="an attacked image counts as broken above this float32 error (default 1e-3)")


def run(args: argparse.Namespace) -> int:
    config = digit_flow_config(args)
    check_positive("--step-fraction", args.step_fraction)
    check_positive("--threshold", args.threshold)
    models = tuple(args.models) if args.models else ("affine", "residual")
    steps = args.attack_steps or (200 if args.full else 100)
    out = Path(args.out)
    with stopwatch() as clock, single_threaded_blas():
        results = run_attack(config, models, args.images, steps, args.step_fraction, args.threshold,
                             seed=args.seed, progress=not args.no_progress, backend=backend_from_args(args))
    write_csv(out / "attack.csv", results["rows"])
    write_csv(out / "attack_history.csv", results["histories"])
    save_figure(plot_attack(results), out / "attack.png")
    columns = ["model", "images", "n", "n_inf", "median", "max", f"pct_above_{args.threshold:g}", "surrogate_median",
               "surrogate_max", "attack_steps", "attack_seconds"]
    print(text_table(results["rows"], columns))
    print(f"\nwrote {out / 'attack.csv'}, {out / 'attack_history.csv'} and {out / 'attack.png'} "
          f"in {clock['seconds']:.0f} s")
    return 0
