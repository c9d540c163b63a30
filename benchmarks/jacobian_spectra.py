"""sigma_min / sigma_max of a d = 784 coupling flow's Jacobian: structured Lanczos vs autograd + SVD.

Baseline: ``lipflow.analysis.jacobian_spectrum`` (d vector-Jacobian products of the batched
flow, then a full float64 SVD per sample). lipflow: ``extreme_singular_values`` (Lanczos on
J^T J and J^-T J^-1 with block-triangular products, no Jacobian formed). Prints the CPU time of
each (this process; steadier than wall time on a shared machine), the speed-up (target >= 10x)
and the largest relative disagreement of sigma_min and sigma_max (target <= 1e-6).

Run: python benchmarks/jacobian_spectra.py [--points 4] [--dim 784] [--depth 4] [--hidden 256]
"""

from __future__ import annotations

import os

# one BLAS thread for lipflow and baseline alike: multithreaded BLAS on a busy machine makes
# small products erratic (set OPENBLAS_NUM_THREADS yourself to override)
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=4)
    parser.add_argument("--dim", type=int, default=784)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    args = parser.parse_args()
    flow = make_flow(args.dim, args.depth, args.hidden)
    params = flow.init(0)
    x = np.random.default_rng(0).standard_normal((args.points, args.dim))

    start = time.process_time()
    reference = jacobian_spectrum(flow, params, x)
    t_reference = time.process_time() - start
    start = time.process_time()
    fast = extreme_singular_values(flow, params, x)
    t_fast = time.process_time() - start

    err_max = np.max(np.abs(fast.sigma_max / reference.sigma_max - 1))
    err_min = np.max(np.abs(fast.sigma_min / reference.sigma_min - 1))
    print(f"d={args.dim}, {args.depth} affine couplings (+ ActNorm, permutation), hidden={args.hidden}, "
          f"{args.points} points")
    print(f"{'method':<28}{'CPU s':>10}")
    print(f"{'d VJPs + SVD (baseline)':<28}{t_reference:>10.2f}")
    print(f"{'structured Lanczos':<28}{t_fast:>10.2f}   Lanczos steps (max, min): {fast.steps}")
    print(f"speed-up {t_reference / t_fast:.1f}x (target >= 10x)")
    print(f"max relative difference: sigma_max {err_max:.1e}, sigma_min {err_min:.1e} (target <= 1e-6); "
          f"cond range {reference.cond.min():.3g} .. {reference.cond.max():.3g}")


if __name__ == "__main__":
    main()
