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
import itertools
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

__all__ = ["DESCRIPTION", "HUGE", "SCALES", "RemediesConfig", "add_arguments", "build_flow", "failure_profile",
           "min_scale_on_inverse", "plot_failures", "run", "run_remedies", "run_remedies_profiled"]

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
    n_profile: int = 2000  # codes of the failure profile against ||z||


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


#: a sample counts as blown up when a coordinate leaves [-HUGE, HUGE]: ten times the data range [0, 1]
HUGE = 10.0
#: the failure profile's ||z|| bins: 8 bins of width 2 up to 2 sqrt(64) = 16
PROFILE_EDGES = tuple(float(e) for e in range(0, 18, 2))
#: 99% of N(0, I_64) codes have ||z|| in this range (chi distribution, 64 degrees of freedom)
TYPICAL_NORMS = (6.21, 9.84)


def failure_profile(flow: Flow, params: Any, ctx: Precision, n: int, rng: onp.random.Generator,
                    edges: tuple[float, ...] = PROFILE_EDGES) -> list[dict[str, Any]]:
    """Where sampling fails: ``n`` codes z = r u (u uniform on the sphere, r uniform on
    [edges[0], edges[-1]]) inverted at ``ctx``, binned by ||z||; per bin the count of non-finite
    samples, of finite samples with a coordinate beyond :data:`HUGE`, the largest finite |x| and
    the smallest scale g met while inverting."""
    dim = flow.blocks[0].dim
    u = rng.standard_normal((n, dim))
    u /= onp.linalg.norm(u, axis=1, keepdims=True)
    norms = rng.uniform(edges[0], edges[-1], n)
    z = norms[:, None] * u
    with onp.errstate(all="ignore"):
        drawn = ctx.to_float64(flow.inverse(params, ctx.cast(z), ctx=ctx))
    finite = onp.all(onp.isfinite(drawn), axis=1)
    size = onp.max(onp.abs(onp.where(onp.isfinite(drawn), drawn, 0.0)), axis=1)
    rows = []
    for low, high in itertools.pairwise(edges):
        inside = (norms >= low) & (norms < high)
        count = int(inside.sum())
        nonfinite = int(onp.sum(inside & ~finite))
        huge = int(onp.sum(inside & finite & (size > HUGE)))
        rows.append({"norm_low": low, "norm_high": high, "n": count, "n_nonfinite": nonfinite, "n_huge": huge,
                     "pct_failed": 100.0 * (nonfinite + huge) / count if count else onp.nan,
                     "max_abs_sample": float(onp.max(size[inside & finite])) if onp.any(inside & finite) else onp.nan,
                     "min_scale_g": _quiet_min_scale(flow, params, z[inside], ctx) if count else onp.nan})
    return rows


def _quiet_min_scale(flow: Flow, params: Any, z: onp.ndarray, ctx: Precision) -> float:
    with onp.errstate(all="ignore"):  # overflow here is what is being counted, not a fault
        return min_scale_on_inverse(flow, params, z, ctx)


def run_remedies(config: RemediesConfig, seed: int = 0, progress: bool = True, backend: Backend | None = None,
                 models: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Train each scale's flow on ``backend`` (NumPy by default); sample at every radius with
    lipflow's blocks at ``config.eval_precision``."""
    return run_remedies_profiled(config, seed, progress, backend, models)[0]


def run_remedies_profiled(config: RemediesConfig, seed: int = 0, progress: bool = True,
                          backend: Backend | None = None, models: tuple[str, ...] | None = None
                          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows per variant and radius, :func:`failure_profile` rows per variant and ||z|| bin)."""
    backend = backend or NumpyBackend()
    unknown = set(models or ()) - set(SCALES)
    if unknown:
        raise LipflowError(f"unknown remedies model(s) {sorted(unknown)}; choose from {', '.join(SCALES)}")
    digits = load_digits(seed=seed)
    train = digits.x_train
    ctx = precision(config.eval_precision)
    rows, profile = [], []
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
        profile += [{"model": name, "seed": seed, **row}
                    for row in failure_profile(flow, result.params, ctx, config.n_profile,
                                               onp.random.default_rng([seed, 77]))]
    return rows, profile


def plot_failures(profile: list[dict[str, Any]]) -> Any:
    """Left: % of samples that fail (non-finite or beyond HUGE) against ||z||; right: the largest
    finite |x| per ||z|| bin; one colour per variant, one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for index, name in enumerate(SCALES):
        mine = [r for r in profile if r["model"] == name]
        for k, seed in enumerate(dict.fromkeys(r["seed"] for r in mine)):
            rows = [r for r in mine if r["seed"] == seed]
            centre = [(r["norm_low"] + r["norm_high"]) / 2 for r in rows]
            label = name if k == 0 else None
            axes[0].plot(centre, [r["pct_failed"] for r in rows], "o-", ms=3, color=f"C{index}", label=label)
            axes[1].semilogy(centre, [r["max_abs_sample"] for r in rows], "o-", ms=3, color=f"C{index}", label=label)
        totals: dict[float, int] = {}
        for r in mine:
            centre_of_bin = (r["norm_low"] + r["norm_high"]) / 2
            totals[centre_of_bin] = totals.get(centre_of_bin, 0) + int(r["n_nonfinite"])
        for centre_of_bin, count in totals.items():
            if count:
                axes[0].annotate(f"{count}", (centre_of_bin, 97 - 5 * index), fontsize=7, ha="center",
                                 color=f"C{index}")
    axes[0].text(0.01, 0.99, "numbers: non-finite samples, all seeds", transform=axes[0].transAxes, fontsize=7,
                 va="top", color="grey")
    axes[1].axhline(HUGE, color="grey", ls=":", lw=0.8)
    axes[0].set_ylabel(f"% of samples non-finite or with |x_i| > {HUGE:g}")
    axes[0].set_ylim(-3, 103)
    axes[1].set_ylabel("largest finite |x_i| of a sample in the bin")
    for axis in axes:
        axis.axvspan(*TYPICAL_NORMS, color="grey", alpha=0.12, lw=0)
        axis.set_xlabel("||z||  (shaded: ||z|| of 99% of N(0, I) codes in 64 dimensions)")
        axis.legend(fontsize=8)
    seeds = len({r["seed"] for r in profile})
    figure.suptitle(f"Where sampling fails: codes z = r u binned by ||z|| (float32; {seeds} seed(s), one line each)",
                    fontsize=11)
    return figure


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
        rows, profile = run_remedies_profiled(config, seed=args.seed, progress=not args.no_progress, backend=backend)
    write_csv(out / "remedies.csv", rows)
    write_csv(out / "remedies_failures.csv", profile)
    save_figure(plot_remedies(rows), out / "remedies.png")
    save_figure(plot_failures(profile), out / "remedies_failures.png")
    print(text_table(rows, ["model", "radius", "test_bits_per_dim", "pct_nonfinite_samples", "min_scale_g",
                            "max_z_roundtrip_error", "max_abs_sample", "train_seconds"]))
    print(f"\nwhere sampling fails ({config.n_profile} codes binned by ||z||; failed: non-finite or |x_i| > {HUGE:g}):")
    print(text_table(profile, ["model", "norm_low", "norm_high", "n", "n_nonfinite", "n_huge", "pct_failed",
                               "max_abs_sample", "min_scale_g"]))
    print(f"\nwrote {out / 'remedies.csv'}, {out / 'remedies_failures.csv'}, {out / 'remedies.png'} and "
          f"{out / 'remedies_failures.png'} in {clock['seconds']:.0f} s")
    return 0
