"""sigma_min / sigma_max of a d = 784 coupling flow's Jacobian: structured Lanczos vs autograd + SVD.

Baseline: ``lipflow.analysis.jacobian_spectrum`` (d vector-Jacobian products of the batched
flow, then a full float64 SVD per sample). lipflow: ``extreme_singular_values`` (Lanczos on
J^T J and J^-T J^-1 with block-triangular products, no Jacobian formed). Prints the CPU time of
each (this process, best of >= 5 repeats), the speed-up (target >= 10x) and the largest
relative disagreement of sigma_min and sigma_max (target <= 1e-6).

Run: python benchmarks/jacobian_spectra.py [--points 4] [--dim 784] [--depth 4] [--hidden 256] [--repeats 5]
"""

from __future__ import annotations

import os

# one BLAS thread for lipflow and baseline alike: multithreaded BLAS on a busy machine makes
# small products erratic (set OPENBLAS_NUM_THREADS yourself to override)
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Target, best_cpu, header, print_targets  # noqa: E402

import lipflow  # noqa: E402
from lipflow.analysis import jacobian_spectrum  # noqa: E402
from lipflow.analysis.fast_spectra import extreme_singular_values  # noqa: E402


def make_flow(dim: int, depth: int, hidden: int) -> lipflow.Flow:
    blocks: list[lipflow.Block] = []
    for i in range(depth):
        blocks.append(
            lipflow.AffineCoupling(
                dim,
                conditioning="first",
                t=lipflow.MLP((hidden,)),
                s=lipflow.MLP((hidden,)),
                scale=lipflow.Sigmoid(shift=2.0),
            )
        )
        blocks.append(lipflow.ActNorm(dim))
        blocks.append(lipflow.Permutation(dim, seed=i))
    return lipflow.Flow(blocks)


def main() -> None:
    args = parse(None)
    header("Jacobian spectra: structured Lanczos vs d VJPs + SVD")
    target = measure(args, verbose=True)
    print_targets([target])


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=4)
    parser.add_argument("--dim", type=int, default=784)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each method, at least 5")
    return parser.parse_args(argv)


def targets(quick: bool = False) -> list[Target]:
    argv = ["--dim", "196", "--points", "2"] if quick else []
    return [measure(parse(argv))]


def measure(args: argparse.Namespace, verbose: bool = False) -> Target:
    flow = make_flow(args.dim, args.depth, args.hidden)
    params = flow.init(0)
    x = np.random.default_rng(0).standard_normal((args.points, args.dim))
    reference = jacobian_spectrum(flow, params, x)
    fast = extreme_singular_values(flow, params, x)
    t_reference = best_cpu(lambda: jacobian_spectrum(flow, params, x), args.repeats)
    t_fast = best_cpu(lambda: extreme_singular_values(flow, params, x), args.repeats)

    err_max = float(np.max(np.abs(fast.sigma_max / reference.sigma_max - 1)))
    err_min = float(np.max(np.abs(fast.sigma_min / reference.sigma_min - 1)))
    agreement = max(err_max, err_min)
    if verbose:
        print(f"d={args.dim}, {args.depth} affine couplings (+ ActNorm, permutation), hidden={args.hidden}, "
              f"{args.points} points")
        print(f"{'method':<28}{'CPU s':>10}")
        print(f"{'d VJPs + SVD (baseline)':<28}{t_reference:>10.2f}")
        print(f"{'structured Lanczos':<28}{t_fast:>10.2f}   Lanczos steps (max, min): {fast.steps}")
        print(f"max relative difference: sigma_max {err_max:.1e}, sigma_min {err_min:.1e} (target <= 1e-6); "
              f"cond range {reference.cond.min():.3g} .. {reference.cond.max():.3g}")
    return Target(f"Jacobian spectra speed-up, Lanczos vs VJPs + SVD, d={args.dim}", t_reference / t_fast, 10.0,
                  direction=">=", detail=f"relative disagreement {agreement:.1e} (<= 1e-6)",
                  extra_ok=agreement <= 1e-6)


if __name__ == "__main__":
    main()
