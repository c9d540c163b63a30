"""The invertibility attack against the checkerboard's 100-block flows, inside the data squares.

The checkerboard default's affine flow (100 blocks; ``lipflow reproduce checkerboard``) has an
exploding inverse *outside* the data box. Does the same depth make it attackable *inside* the
data? The checkerboard's data are uniform on 8 squares of side 2, so each square plays the role
of a dequantisation box: every point in it is a valid sample of the training distribution. This
script trains a model exactly as the checkerboard default does (same config, init and seed, so
the same parameters), then runs :func:`lipflow.experiments.attack.attack_images` from each
square's centre (4 random starts per square, 32 in all) with the square as the box (half-width
1), 100 steps of a quarter of the half-width, and prints the float32 round-trip error at the
centre, the random start and the worst point found, and the median rise worst / start (the
paper's effect would be a rise of >= 1e3 for the affine flow with the residual flow within 10x).

Run: OMP_NUM_THREADS=1 python benchmarks/attack_checkerboard.py --models affine --seeds 0 1 2
"""

from __future__ import annotations

import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as onp  # noqa: E402

from lipflow.experiments.attack import attack_images  # noqa: E402
from lipflow.experiments.backend import get_backend  # noqa: E402
from lipflow.experiments.checkerboard import MODELS, CheckerboardConfig, build_model  # noqa: E402
from lipflow.experiments.data import checkerboard  # noqa: E402

#: the 8 data squares [2i, 2i + 2] x [2j, 2j + 2] of lipflow.experiments.data.checkerboard
SQUARES = ((-2, -2), (-2, 0), (-1, -1), (-1, 1), (0, -2), (0, 0), (1, -1), (1, 1))


def attack_model(name: str, seed: int, backend: str, steps: int) -> dict[str, float]:
    config = CheckerboardConfig()
    flow = build_model(name, config)
    started = time.process_time()
    trained = get_backend(backend).fit_nf(flow, flow.init(seed + MODELS.index(name)),
                                          lambda step, rng: checkerboard(config.batch, rng), steps=config.steps,
                                          lr=config.lr, seed=seed, progress=False)
    train_seconds = time.process_time() - started
    centres = onp.repeat(onp.array([[2 * i + 1, 2 * j + 1] for i, j in SQUARES], dtype=float), 4, axis=0)
    started = time.process_time()
    result = attack_images(flow, trained.params, centres, 1.0, steps, 0.25, onp.random.default_rng(seed + 900))
    attack_seconds = time.process_time() - started
    row: dict[str, float] = {}
    for key in ("clean", "start", "worst"):
        values = result[key]
        finite = onp.isfinite(values)
        row[f"{key}_median"] = float(onp.median(values))
        row[f"{key}_max"] = float(onp.max(values[finite])) if finite.any() else onp.nan
        row[f"{key}_n_inf"] = int((~finite).sum())
    row["rise_median"] = float(onp.median(result["worst"] / result["start"]))
    row["train_cpu_s"], row["attack_cpu_s"] = train_seconds, attack_seconds
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=["affine"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--backend", default="torch", help="training engine (default torch)")
    parser.add_argument("--steps", type=int, default=100, help="attack steps (default 100)")
    args = parser.parse_args()
    print(f"{'model':<9}{'seed':>5}{'centre':>11}{'start':>11}{'worst med':>11}{'worst max':>11}{'n_inf':>6}"
          f"{'rise':>8}{'train s':>9}{'attack s':>9}")
    for name in args.models:
        for seed in args.seeds:
            r = attack_model(name, seed, args.backend, args.steps)
            print(f"{name:<9}{seed:>5}{r['clean_median']:>11.2e}{r['start_median']:>11.2e}{r['worst_median']:>11.2e}"
                  f"{r['worst_max']:>11.2e}{r['worst_n_inf']:>6}{r['rise_median']:>8.2f}{r['train_cpu_s']:>9.0f}"
                  f"{r['attack_cpu_s']:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
