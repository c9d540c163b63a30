"""Theorem 2 numerically: local Lipschitz constants of trained affine vs additive coupling flows as the box grows.

The affine coupling's local constant grows as the box leaves the data box, while an additive
coupling's stays under its global bound. Trains the checkerboard's affine (scale
sigmoid(s + 2)) and an additive flow (same depth, width, steps, seed) with the NF loss, then
on boxes [-r, r]^2, r = 1 ... 8 (the data box is r = 4):

- ``estimate``: the largest sampled Jacobian spectral norm plus difference quotients on the box,
  a *lower* bound on the local constant (``lipflow.bounds.estimate``), carried as a running
  maximum over the nested boxes;
- ``upper``: the rigorous bound of ``lem:affine-local`` / ``lem:additive-tight`` chained by
  ``lem:composition`` (``lipflow.bounds.lipschitz``), evaluated with upward rounding.

Both for the whole flow (forward) and for its first block in both directions (the inverse on the
box [-r, r]^2 of outputs). Writes ``coupling_stability.csv`` and ``coupling_stability.png``::

    python examples/coupling_stability.py --out results/coupling_stability
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as onp

from lipflow.bounds import estimate, lipschitz
from lipflow.errors import UnboundedError
from lipflow.experiments.backend import get_backend
from lipflow.experiments.checkerboard import CheckerboardConfig, build_model
from lipflow.experiments.common import coupling_flow, save_figure, write_csv
from lipflow.experiments.data import DATA_BOX, checkerboard


def measure(flow, params, radii, samples: int) -> list[dict]:
    """Per box: the estimate (a running maximum over the nested boxes so far, each still a lower
    bound on the bigger box) and the rigorous upper bound (inf where none is finite)."""
    rows: list[dict] = []
    for r in sorted(radii):
        row = {"r": float(r)}
        for name, block, p, direction in (("flow forward", flow, params, "forward"),
                                          ("block 1 forward", flow.blocks[0], params[0], "forward"),
                                          ("block 1 inverse", flow.blocks[0], params[0], "inverse")):
            found = estimate(block, p, direction=direction, box=(-r, r), n_samples=samples, seed=0).value
            row[f"{name} estimate"] = max(found, rows[-1][f"{name} estimate"] if rows else found)
            try:
                row[f"{name} upper"] = lipschitz(block, p, direction=direction, box=(-r, r)).value
            except UnboundedError:
                row[f"{name} upper"] = float("inf")
        rows.append(row)
    return rows


def plot(results: dict[str, list[dict]], title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = ("flow forward", "block 1 forward", "block 1 inverse")
    figure, axes = plt.subplots(1, 3, figsize=(14, 4.3), constrained_layout=True)
    colours = {"affine": "tab:red", "additive": "tab:blue"}
    for axis, panel in zip(axes, panels, strict=True):
        for model, rows in results.items():
            r = [row["r"] for row in rows]
            upper = [row[f"{panel} upper"] for row in rows]
            axis.semilogy(r, upper, "-", color=colours[model], label=f"{model}: upper bound (lemma)")
            axis.semilogy(r, [row[f"{panel} estimate"] for row in rows], "o--", ms=3, color=colours[model],
                          label=f"{model}: estimate (lower bound)")
            if any(not onp.isfinite(u) for u in upper):
                axis.text(0.02, 0.02, f"{model}: bound infinite where the curve stops", transform=axis.transAxes,
                          fontsize=8, color=colours[model])
        axis.axvline(DATA_BOX, color="grey", ls=":", lw=1)
        axis.set_xlabel("box half-width r ([-r, r]^2; data box r = 4, dotted)")
        axis.set_ylabel("local Lipschitz constant on the box")
        axis.set_title(panel, fontsize=10)
    axes[0].legend(fontsize=7)
    figure.suptitle(title, fontsize=11)
    return figure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/coupling_stability")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--samples", type=int, default=256, help="points per box for the estimate")
    parser.add_argument("--radii", type=float, nargs="+", default=[1, 2, 3, 4, 5, 6, 7, 8])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if os.environ.get("LIPFLOW_SMOKE") == "1":  # seconds-sized run for the examples smoke test
        args.steps, args.samples, args.radii = 5, 16, [2.0, 8.0]
    config = CheckerboardConfig(depth=args.depth, hidden=(32, 32), steps=args.steps, lr=args.lr)
    backend = get_backend("numpy")
    flows = {"affine": build_model("affine", config), "additive": coupling_flow(2, config.depth, config.hidden,
                                                                                scale=None)}
    results, rows = {}, []
    for model, flow in flows.items():
        trained = backend.fit_nf(flow, flow.init(args.seed), lambda step, rng: checkerboard(config.batch, rng),
                                 steps=config.steps, lr=config.lr, seed=args.seed, progress=False)
        results[model] = measure(flow, trained.params, args.radii, args.samples)
        rows += [{"model": model, **row} for row in results[model]]
    out = Path(args.out)
    write_csv(out / "coupling_stability.csv", rows)
    save_figure(plot(results, f"Theorem 2 on the checkerboard flows ({config.depth} blocks, {config.steps} steps, "
                              f"lr {config.lr:g}, seed {args.seed})"), out / "coupling_stability.png")
    for row in rows:
        print({k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in row.items()})
    print(f"wrote {out / 'coupling_stability.csv'} and {out / 'coupling_stability.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
