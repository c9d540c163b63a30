"""Precision advice for three flows: the Figure 1 toy, a trained checkerboard coupling flow and a trained residual flow.

For each flow: which blocks may run in bfloat16/float16 at tol 1e-3 (round trip), proven on a box
and measured on data, the cost saved against all-float64 and all-float32, and the measured errors.
Writes advise_flows.md (tables) and one advise_<flow>.png per flow into the working folder.
Set LIPFLOW_SMOKE=1 for a seconds-long run.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

import lipflow as lf
from lipflow.analysis.advise_report import plot_advice
from lipflow.analysis.advisor import NoPlanError, advise
from lipflow.experiments.checkerboard import CheckerboardConfig, build_model
from lipflow.experiments.data import checkerboard
from lipflow.experiments.fig1 import toy_block
from lipflow.io import atomic_savefig, atomic_write_text
from lipflow.train import AdamConfig, fit, nf_loss

SMOKE = os.environ.get("LIPFLOW_SMOKE") == "1"
TOL = 1e-3
#: a looser tolerance, measured only, to show where 16-bit formats start to fit
LOOSE = 2e-2
PRECISIONS = ("bfloat16", "float16", "float32", "float64")


def train(name: str, steps: int, depth: int, seed: int = 0) -> tuple[lf.Flow, list]:
    config = CheckerboardConfig(depth=depth, hidden=(16, 16) if SMOKE else (32, 32), steps=steps, lr=1e-3)
    flow = build_model(name, config)
    params = flow.init(seed)
    result = fit(lambda p, batch, step: nf_loss(flow, p, batch, ctx="float32"), params,
                 lambda step, rng: checkerboard(config.batch, rng), steps=steps, adam=AdamConfig(lr=config.lr),
                 seed=seed, progress=False)
    return flow, result.params


def describe(name: str, flow: lf.Flow, params: list, x: np.ndarray | None, box: tuple[float, float]) -> str:
    lines = [f"## {name}", ""]
    for mode, tol in (("proven", TOL), ("measured", TOL), ("measured", LOOSE)):
        start = time.perf_counter()
        try:
            if mode == "proven":
                advice = advise(flow, params, box=box, tol=tol, precisions=PRECISIONS, n_validate=256)
            else:
                advice = advise(flow, params, x=x, tol=tol, mode="measured", precisions=PRECISIONS,
                                n_noise=16 if SMOKE else 64)
        except NoPlanError as error:
            lines += [f"**{mode}, tol {tol:g}**: {error}", ""]
            continue
        seconds = time.perf_counter() - start
        lines += [f"**{mode}, tol {tol:g}** ({seconds:.1f} s)", "", "```text", advice.summary(), "",
                  advice.table(), "```", ""]
        figure = plot_advice(advice)
        atomic_savefig(figure, f"advise_{name.split()[0].lower()}_{mode}_{tol:g}.png", dpi=110)
        import matplotlib.pyplot as plt

        plt.close(figure)
    return "\n".join(lines)


def main() -> int:
    steps = 3 if SMOKE else 300
    depth = 2 if SMOKE else 4
    rng = np.random.default_rng(1)
    sections = []
    toy = lf.Flow([toy_block("affine")] * (3 if SMOKE else 5))
    ones = np.ones((1, 2))
    sections.append(describe("Figure1 toy (affine, x = (1, 1))", toy, toy.init(0), ones, (1.0, 1.0)))
    x = checkerboard(128 if SMOKE else 512, rng)
    for name in ("modified", "residual"):
        flow, params = train(name, steps, depth)
        sections.append(describe(f"{name.capitalize()} checkerboard flow (depth {depth})", flow, params, x,
                                 (-4.0, 4.0)))
    atomic_write_text("advise_flows.md", "\n".join(sections) + "\n")
    print("\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
