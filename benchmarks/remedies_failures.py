"""Where does sampling the remedies' flows fail? The failure profile against ||z|| over seeds.

Trains the four coupling variants of ``lipflow reproduce remedies`` (default sizes unless
flags say otherwise) once per seed, inverts codes z = r u binned by ||z|| at float32
(:func:`lipflow.experiments.remedies.failure_profile`), and writes the merged per-seed CSV, a
figure (one line per seed) and a Markdown table of median [min, max] over seeds per variant
and bin. Run at one thread::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 10 \\
        python benchmarks/remedies_failures.py --seeds 0 1 2 --out results/remedies_failures
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as onp

from lipflow.experiments.backend import get_backend
from lipflow.experiments.common import save_figure, write_csv
from lipflow.experiments.remedies import SCALES, RemediesConfig, plot_failures, run_remedies_profiled


def _cell(values: list[float], fmt: str = ".3g") -> str:
    finite = [v for v in values if onp.isfinite(v)]
    if not finite:
        return "n/a"
    return f"{onp.median(finite):{fmt}} [{min(finite):{fmt}}, {max(finite):{fmt}}]"


def markdown(profile: list[dict[str, Any]]) -> str:
    """One line per (variant, ||z|| bin): non-finite and blown-up counts summed over seeds,
    % failed and the largest finite |x_i| as median [min, max] over seeds."""
    lines = ["| variant | ‖z‖ bin | codes (all seeds) | non-finite | \\|x_i\\| > 10 | % failed, median [range] | "
             "largest finite \\|x_i\\|, median [range] |", "|---|---|---|---|---|---|---|"]
    bins = list(dict.fromkeys((r["norm_low"], r["norm_high"]) for r in profile))
    for name in SCALES:
        for low, high in bins:
            rows = [r for r in profile if r["model"] == name and (r["norm_low"], r["norm_high"]) == (low, high)]
            if not rows:
                continue
            lines.append(f"| {name} | [{low:g}, {high:g}) | {sum(r['n'] for r in rows)} | "
                         f"{sum(r['n_nonfinite'] for r in rows)} | {sum(r['n_huge'] for r in rows)} | "
                         f"{_cell([r['pct_failed'] for r in rows], '.2g')} | "
                         f"{_cell([r['max_abs_sample'] for r in rows])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, help="Adam steps (default: the remedies default)")
    parser.add_argument("--backend", default="numpy", choices=("numpy", "torch"))
    args = parser.parse_args(argv)
    config = RemediesConfig() if args.steps is None else replace(RemediesConfig(), steps=args.steps)
    profile, radii = [], []
    for seed in args.seeds:
        rows, mine = run_remedies_profiled(config, seed=seed, progress=False, backend=get_backend(args.backend))
        radii += [{"seed": seed, **row} for row in rows]
        profile += mine
        print(f"seed {seed} done", flush=True)
    write_csv(args.out / "remedies_failures.csv", profile)
    write_csv(args.out / "remedies_radii.csv", radii)
    save_figure(plot_failures(profile), args.out / "remedies_failures.png")
    print(markdown(profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
