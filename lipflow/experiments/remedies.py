"""Daniels' remedies for affine coupling (Design choices for INNs, Section 2.1): sample a
Glow-like flow trained on 8x8 digits at latent codes shrinking towards z = 0 and ask which
scale functions invert stably.

Scales compared: Glow's sigmoid(s + 2) in (0, 1); a biased sigmoid in (0.1, 1.1); a bounded
scale in (0.5, 1); additive coupling (g = 1). Daniels' claim: codes near the origin drive
sigmoid scales towards 0 and break sampling; the biased and bounded scales and additive
coupling invert stably.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as onp

from lipflow.blocks import MLP, ActNorm, AdditiveCoupling, AffineCoupling, Block, Bounded, Flow, Permutation, Sigmoid
from lipflow.errors import LipflowError
from lipflow.experiments.backend import Backend, NumpyBackend, add_backend_arguments, backend_from_args
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
from lipflow.precision import Precision, precision
from lipflow.train import nf_loss

__all__ = ["DESCRIPTION", "SCALES", "RemediesConfig", "add_arguments", "build_flow", "min_scale_on_inverse", "run"]

DESCRIPTION = "Daniels' remedies: sampling near z = 0 with sigmoid, biased sigmoid, bounded and additive couplings"
SCALES = {
    "sigmoid (0,1)": Sigmoid(shift=2.0),
    "biased sigmoid (0.1,1.1)": Sigmoid(shift=2.0, bias=0.1),
    "bounded (0.5,1)": Bounded(0.5, 1.0, shift=2.0),
    "additive": None,
}


@dataclass(frozen=True)
class RemediesConfig:
    depth: int = 4
    hidden: tuple[int, ...] = (64,)
    steps: int = 1000  # the scale study's smallest size where the sigmoid Glow breaks in every seed (docs)
    batch: int = 128
    lr: float = 1e-2
    radii: tuple[float, ...] = (1.0, 0.5, 0.1, 0.01, 0.0)
    n_samples: int = 200
    eval_precision: str = "float32"


FULL = RemediesConfig(depth=16, hidden=(256, 256), steps=20_000, n_samples=2000)


def build_flow(scale: Any, config: RemediesConfig, x_init: onp.ndarray) -> tuple[Flow, list[Any]]:
    """ActNorm (data-initialised), then ``depth`` x (shuffle, coupling): a small Glow."""
    dim = x_init.shape[1]
    blocks: list[Block] = [ActNorm(dim)]
    for k in range(config.depth):
        blocks.append(Permutation(dim, seed=k))
        net = MLP(config.hidden, "relu", init_scale=0.1)
        if scale is None:
            blocks.append(AdditiveCoupling(dim, t=net))
        else:
            blocks.append(AffineCoupling(dim, t=net, s=net, scale=scale))
    flow = Flow(blocks)
    params = flow.init(0)
    params[0] = blocks[0].data_init(x_init)
    return flow, params


def min_scale_on_inverse(flow: Flow, params: Any, z: Any, ctx: Precision) -> float:
    """The smallest scale g met by any affine block while inverting ``z`` (1 without any)."""
    trace, _ = flow.inverse_trace(params, ctx.cast(z), ctx=ctx)
    smallest = 1.0
    count = len(flow.blocks)
    with onp.errstate(all="ignore"):
        for index, block in enumerate(flow.blocks):
            if not isinstance(block, AffineCoupling):
                continue
            y1, _ = block.split(trace[count - 1 - index])
            _, g, _ = block.shift_and_log_scale(ctx.cast(block._prepare(params[index])), y1, ctx)
            values = ctx.to_float64(g)
            smallest = min(smallest, float(onp.nanmin(values)) if onp.any(onp.isfinite(values)) else onp.nan)
    return smallest


def run_remedies(config: RemediesConfig, seed: int = 0, progress: bool = True, backend: Backend | None = None,
                 models: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Train each scale's flow on ``backend`` (NumPy by default); sample at every radius with
    lipflow's blocks at ``config.eval_precision``."""
    backend = backend or NumpyBackend()
    unknown = set(models or ()) - set(SCALES)
    if unknown:
        raise LipflowError(f"unknown remedies model(s) {sorted(unknown)}; choose from {', '.join(SCALES)}")
    digits = load_digits(seed=seed)
    train = digits.x_train
    ctx = precision(config.eval_precision)
    rows = []
    for index, (name, scale) in enumerate(SCALES.items()):
        if models is not None and name not in models:
            continue
        rng = onp.random.default_rng([seed, index])
        flow, params = build_flow(scale, config, train + rng.uniform(0, digits.bin_width, train.shape))

        def sample(step: int, r: onp.random.Generator) -> onp.ndarray:
            chosen = train[r.integers(0, len(train), config.batch)]
            return chosen + r.uniform(0, digits.bin_width, chosen.shape)

        with stopwatch() as clock:
            result = backend.fit_nf(flow, params, sample, steps=config.steps, lr=config.lr, seed=seed,
                                    train_precision="float32", progress=progress, description=f"remedies {name}")
        test = digits.x_test + rng.uniform(0, digits.bin_width, digits.x_test.shape)
        test_nll = float(nf_loss(flow, result.params, test, ctx="float64")) / (64 * onp.log(2))
        for radius in config.radii:
            z = radius * onp.random.default_rng(seed + 1).standard_normal((config.n_samples, train.shape[1]))
            with onp.errstate(all="ignore"):
                drawn = ctx.to_float64(flow.inverse(result.params, ctx.cast(z), ctx=ctx))
            errors = reconstruction_errors(flow, result.params, z, ctx, direction="z")
            summary = summarise_errors(errors)
            finite = onp.isfinite(drawn)
            largest = float(onp.max(onp.abs(drawn[finite]))) if onp.any(finite) else onp.inf
            rows.append({"model": name, "radius": radius, "test_bits_per_dim": test_nll,
                         "pct_nonfinite_samples": 100.0 * float(onp.mean(~onp.all(onp.isfinite(drawn), axis=1))),
                         "max_abs_sample": largest,
                         "min_scale_g": min_scale_on_inverse(flow, result.params, z, ctx),
                         "pct_inf_roundtrip": summary["pct_inf"], "max_z_roundtrip_error": summary["max"],
                         "skipped_steps": result.nonfinite_steps, "train_seconds": clock["seconds"]})
    return rows


def plot_remedies(rows: list[dict[str, Any]]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for name in SCALES:
        selected = [r for r in rows if r["model"] == name]
        radius = [max(r["radius"], 1e-3) for r in selected]
        axes[0].plot(radius, [r["max_z_roundtrip_error"] for r in selected], "o-", label=name)
        axes[1].plot(radius, [r["min_scale_g"] for r in selected], "o-", label=name)
    axes[0].set_ylabel("max ||z - F(F^-1(z))||_2 (finite samples)")
    axes[1].set_ylabel("smallest scale g met while inverting")
    for axis in axes:
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("latent radius r, z = r * N(0, I)  (r = 0 drawn at 1e-3)")
        axis.legend(fontsize=8)
    figure.suptitle("Sampling a small Glow on 8x8 digits near z = 0 (float32)", fontsize=11)
    return figure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, "remedies")
    parser.add_argument("--depth", type=positive_int, help="coupling blocks (default 4; --full: 16)")
    parser.add_argument("--steps", type=positive_int, help="Adam steps per model (default 1000; --full: 20000)")
    parser.add_argument("--samples", type=positive_int, help="latent codes per radius (default 200)")
    parser.add_argument("--hidden", type=positive_int, nargs="+", help="hidden widths (default 64; --full: 256 256)")
    parser.add_argument("--lr", type=float, help="Adam learning rate (default 1e-2)")
    add_backend_arguments(parser)


def run(args: argparse.Namespace) -> int:
    config = FULL if args.full else RemediesConfig()
    for key, field in (("depth", "depth"), ("steps", "steps"), ("samples", "n_samples")):
        if getattr(args, key):
            config = replace(config, **{field: getattr(args, key)})
    if args.hidden:
        config = replace(config, hidden=tuple(args.hidden))
    check_positive("--lr", args.lr)
    if args.lr is not None:
        config = replace(config, lr=args.lr)
    if config.depth < 1:
        raise LipflowError("--depth must be at least 1")
    backend = backend_from_args(args)
    out = Path(args.out)
    with stopwatch() as clock:
        rows = run_remedies(config, seed=args.seed, progress=not args.no_progress, backend=backend)
    write_csv(out / "remedies.csv", rows)
    save_figure(plot_remedies(rows), out / "remedies.png")
    print(text_table(rows, ["model", "radius", "test_bits_per_dim", "pct_nonfinite_samples", "min_scale_g",
                            "max_z_roundtrip_error", "max_abs_sample", "train_seconds"]))
    print(f"\nwrote {out / 'remedies.csv'} and {out / 'remedies.png'} in {clock['seconds']:.0f} s")
    return 0
