"""i-ResNet (Behrmann et al. 2019, Table 1 and App. B): reconstruction error of residual flows
against the spectral coefficient c, and against the number of fixed-point iterations beside the
Banach bound.

Claims checked: for c <= 0.9 the float32 reconstruction error stays at rounding level
(~1e-7 relative in the paper's CIFAR models); the fixed-point error falls geometrically,
bounded by the a-priori Banach bound Lip(g)^n / (1 - Lip(g)) ||x_1 - x_0|| (theory
``lem:banach``), so smaller c needs fewer iterations.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as onp

from lipflow.blocks import Residual
from lipflow.experiments.common import (
    add_common_arguments,
    positive_int,
    residual_flow,
    save_figure,
    stopwatch,
    summarise_errors,
    text_table,
    write_csv,
)
from lipflow.experiments.data import load_digits
from lipflow.precision import precision

__all__ = [
    "DESCRIPTION",
    "FULL",
    "IResNetConfig",
    "add_arguments",
    "errors_against_coefficient",
    "errors_against_iterations",
    "run",
]

DESCRIPTION = "i-ResNet: reconstruction error against spectral coefficient c and fixed-point iterations (Banach bound)"


@dataclass(frozen=True)
class IResNetConfig:
    """Sizes. Inputs are 8x8 digits (d = 64) with uniform dequantisation noise."""

    coefficients: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
    iteration_coefficients: tuple[float, ...] = (0.5, 0.7, 0.9, 0.99)
    depth: int = 4
    hidden: tuple[int, ...] = (128,)
    n_points: int = 100
    max_iterations: int = 60
    precisions: tuple[str, ...] = ("float32", "float64")


FULL = IResNetConfig(depth=16, hidden=(512, 512), n_points=1000, max_iterations=200)


def _inputs(config: IResNetConfig, seed: int) -> onp.ndarray:
    digits = load_digits(seed=seed)
    rng = onp.random.default_rng(seed)
    x = digits.x_test[: config.n_points]
    return x + rng.uniform(0.0, digits.bin_width, x.shape)


def errors_against_coefficient(config: IResNetConfig, seed: int = 0) -> list[dict[str, Any]]:
    """Per c and precision: round-trip error (inverse iterated to the rounding floor)."""
    x = _inputs(config, seed)
    rows = []
    for c in config.coefficients:
        flow = residual_flow(x.shape[1], config.depth, config.hidden, coeff=c, max_iter=2000)
        params = flow.init(seed)
        prepared = flow._prepare(params)
        lip = max(block.lipschitz_g(p) for block, p in zip(flow.blocks, prepared, strict=True))
        for name in config.precisions:
            ctx = precision(name)
            start = ctx.cast(x)
            with onp.errstate(all="ignore"):
                back, infos = flow.inverse_with_info(params, flow.forward(params, start, ctx=ctx), ctx=ctx)
                difference = ctx.to_float64(back) - ctx.to_float64(start)
                errors = onp.sqrt(onp.sum(difference * difference, axis=1))
            errors = onp.where(onp.isnan(errors), onp.inf, errors)
            relative = errors / onp.linalg.norm(x, axis=1)
            summary = summarise_errors(errors)
            rows.append({"coeff": c, "lip_g": lip, "precision": name, "mean_error": summary["mean"],
                         "max_error": summary["max"], "max_relative_error": float(onp.max(relative)),
                         "pct_inf": summary["pct_inf"], "unit_roundoff": ctx.unit_roundoff,
                         "max_iterations": max(info.iterations for info in infos),
                         "all_converged": all(info.all_converged for info in infos)})
    return rows


def errors_against_iterations(config: IResNetConfig, seed: int = 0) -> list[dict[str, Any]]:
    """One residual block in float64: ||x_n - x|| after exactly n iterations, with the a-priori
    bound Lip(g)^n/(1 - Lip(g)) ||g(y)|| and the a-posteriori bound Lip(g)/(1 - Lip(g)) ||x_n - x_{n-1}||
    (both per sample; the row holds their maxima over samples beside the maximum error)."""
    x = _inputs(config, seed)
    ctx = precision("float64")
    rows = []
    for c in config.iteration_coefficients:
        base = Residual(x.shape[1], hidden=config.hidden, coeff=c)
        params = base.init(seed)
        prepared = base._prepare(params)
        lip = base.lipschitz_g(prepared)
        y = base.forward(params, x, ctx=ctx)
        first_step = onp.linalg.norm(base.g(prepared, y, ctx), axis=1)
        amplification = lip / (1 - lip)
        x_n = y  # the block's own iteration x_{k+1} = y - g(x_k), x_0 = y, recorded at every k
        floor = 64 * ctx.unit_roundoff * (1 + onp.linalg.norm(x, axis=1)) / (1 - lip)
        for n in range(1, config.max_iterations + 1):
            x_next = y - base.g(prepared, x_n, ctx)
            last_step = onp.linalg.norm(x_next - x_n, axis=1)
            x_n = x_next
            errors = onp.linalg.norm(x_n - x, axis=1)
            apriori = lip**n / (1 - lip) * first_step
            rows.append({"coeff": c, "lip_g": lip, "iterations": n, "max_error": float(onp.max(errors)),
                         "mean_error": float(onp.mean(errors)), "apriori_bound": float(onp.max(apriori)),
                         "aposteriori_bound": float(onp.max(amplification * last_step)),
                         "bound_violations": int(onp.sum(errors > apriori * (1 + 1e-12) + floor))})
    return rows


def plot_iresnet(coefficient_rows: list[dict[str, Any]], iteration_rows: list[dict[str, Any]]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
    for name in dict.fromkeys(r["precision"] for r in coefficient_rows):
        selected = [r for r in coefficient_rows if r["precision"] == name]
        c = [r["coeff"] for r in selected]
        line, = axes[0].plot(c, [r["max_relative_error"] for r in selected], "o-", label=f"{name}: max relative error")
        axes[0].axhline(selected[0]["unit_roundoff"], color=line.get_color(), ls=":", lw=1,
                        label=f"{name}: unit roundoff u")
        for r in selected:
            axes[0].annotate(str(r["max_iterations"]), (r["coeff"], r["max_relative_error"]), fontsize=7,
                             xytext=(3, 5 if name == "float32" else -10), textcoords="offset points")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("spectral coefficient c")
    axes[0].set_ylabel("||x - F^-1(F(x))|| / ||x||")
    axes[0].set_title("round trip, inverse iterated to the rounding floor\n(numbers: iterations used)", fontsize=10)
    axes[0].legend(fontsize=8)
    for index, c in enumerate(dict.fromkeys(r["coeff"] for r in iteration_rows)):
        selected = [r for r in iteration_rows if r["coeff"] == c]
        n = [r["iterations"] for r in selected]
        colour = f"C{index}"
        axes[1].plot(n, [r["max_error"] for r in selected], "-", color=colour,
                     label=f"c = {c} (Lip(g) <= {selected[0]['lip_g']:.3g}): max error")
        axes[1].plot(n, [r["apriori_bound"] for r in selected], "--", color=colour, lw=1, label="a-priori Banach bound")
    axes[1].set_yscale("log")
    axes[1].set_ylim(1e-17, None)
    axes[1].set_xlabel("fixed-point iterations n")
    axes[1].set_ylabel("||x_n - x||_2 (float64)")
    axes[1].set_title("one residual block: error vs iterations, with Lip(g)^n/(1-Lip(g)) ||x_1 - x_0||", fontsize=10)
    axes[1].legend(fontsize=7, ncol=2)
    return figure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, "iresnet")
    parser.add_argument("--depth", type=positive_int, help="residual blocks (default 4; --full: 16)")
    parser.add_argument("--points", type=positive_int, help="test images (default 100; --full: 1000)")
    parser.add_argument("--max-iterations", type=positive_int, help="iteration axis length (default 60)")


def run(args: argparse.Namespace) -> int:
    config = FULL if args.full else IResNetConfig()
    if args.depth:
        config = replace(config, depth=args.depth)
    if args.points:
        config = replace(config, n_points=args.points)
    if args.max_iterations:
        config = replace(config, max_iterations=args.max_iterations)
    out = Path(args.out)
    with stopwatch() as clock:
        coefficient_rows = errors_against_coefficient(config, args.seed)
        iteration_rows = errors_against_iterations(config, args.seed)
    write_csv(out / "iresnet_coeff.csv", coefficient_rows)
    write_csv(out / "iresnet_iterations.csv", iteration_rows)
    save_figure(plot_iresnet(coefficient_rows, iteration_rows), out / "iresnet.png")
    print(text_table(coefficient_rows, ["coeff", "lip_g", "precision", "mean_error", "max_relative_error",
                                        "pct_inf", "max_iterations", "all_converged"]))
    needed = []
    for c in config.iteration_coefficients:
        selected = [r for r in iteration_rows if r["coeff"] == c]
        hit = next((r["iterations"] for r in selected if r["max_error"] <= 1e-6), math.nan)
        violations = sum(r["bound_violations"] for r in selected)
        needed.append({"coeff": c, "lip_g": selected[0]["lip_g"], "iterations_to_1e-6": hit,
                       "bound_violations": violations})
    print()
    print(text_table(needed))
    print(f"\nwrote {out / 'iresnet_coeff.csv'}, {out / 'iresnet_iterations.csv'} and {out / 'iresnet.png'} "
          f"in {clock['seconds']:.0f} s")
    return 0
