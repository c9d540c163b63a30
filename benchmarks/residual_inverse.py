"""Residual-block inverse: Anderson acceleration vs plain fixed-point iteration.

Both stop per sample on the same certified bound ||x - x*|| / ||x*|| <= 1e-12 (double-double
residual over 1 - Lip(g)). Prints mean g-evaluations per sample, their ratio (target <= 1/3),
the Banach a-priori iteration count, the CPU time of each and the true error against a
float64 reference solution. Two kinds of block per (d, c):

* ``tight``: g(x) = W2 elu(W1 x + b) built so that its Jacobian has eigenvalues spread over
  [-c, c] (Lip(g) = c, attained): the slow case the bound is about;
* ``random``: a randomly initialised block (Lip(g) <= c^2 by the norm product, and the local
  contraction is much weaker), where plain iteration is already quick.

Run: python benchmarks/residual_inverse.py [--points 200]
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
from lipflow.analysis.residual_solvers import banach_a_priori_iterations, solve_residual_inverse  # noqa: E402

RTOL = 1e-12


def tight_block(dim: int, coeff: float, seed: int = 0) -> tuple[lipflow.Residual, dict]:
    """A residual block whose g has Lip(g) = coeff exactly and a Jacobian spectrum spread
    over [-coeff, coeff] where elu is in its linear part (so fixed-point iteration is slow)."""
    block = lipflow.Residual(dim, hidden=(dim,), activation="elu", coeff=float(np.sqrt(coeff)))
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    spread = np.cos(np.pi * np.arange(dim) / max(dim - 1, 1))
    # rows are samples: h = x W1, g = elu(h + b) W2, so J_g^T = W1 diag(elu') W2
    params = {
        "weights": [q, (spread[:, None] * q.T)],
        "biases": [np.full(dim, 0.5), np.zeros(dim)],
    }
    return block, params


def random_block(dim: int, coeff: float) -> tuple[lipflow.Residual, dict]:
    block = lipflow.Residual(dim, hidden=(max(32, dim),), coeff=coeff)
    return block, block.init(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200)
    args = parser.parse_args()
    header = (
        f"{'block':<7}{'d':>4}{'c':>6}{'Lip(g)':>8}{'FP g-evals':>11}{'AA g-evals':>11}{'AA/FP':>7}"
        f"{'a-priori':>9}{'FP cpu':>8}{'AA cpu':>8}{'|AA-FP|/|x|':>12}{'converged FP/AA':>17}"
    )
    print(f"certified stop at relative error {RTOL:g}; g-evaluations are means per sample "
          f"over {args.points} points")
    print(header)
    for kind, make in (("tight", tight_block), ("random", random_block)):
        for dim in (2, 64):
            for coeff in (0.9, 0.97):
                block, params = make(dim, coeff)
                x = np.random.default_rng(1).standard_normal((args.points, dim))
                y = block.forward(params, x)
                results = {}
                for method in ("fixed_point", "anderson"):
                    start = time.process_time()
                    solution, info = solve_residual_inverse(block, params, y, method=method, rtol=RTOL, max_iter=5000)
                    results[method] = (solution, info, time.process_time() - start)
                fp, aa = results["fixed_point"], results["anderson"]
                lip = aa[1].lipschitz_g
                first_step = np.linalg.norm(block.g(block._prepare(params), y, lipflow.precision("float64")), axis=1)
                apriori = max(
                    banach_a_priori_iterations(lip, s, RTOL * np.linalg.norm(v))
                    for s, v in zip(first_step, fp[0], strict=True)
                )
                true_error = np.max(np.linalg.norm(aa[0] - fp[0], axis=1) / np.linalg.norm(fp[0], axis=1))
                n_points = args.points
                converged = f"{fp[1].converged.sum()}/{aa[1].converged.sum()} of {n_points}"
                fp_evals, aa_evals = fp[1].g_evaluations.mean(), aa[1].g_evaluations.mean()
                print(
                    f"{kind:<7}{dim:>4}{coeff:>6.2f}{lip:>8.3f}{fp_evals:>11.1f}{aa_evals:>11.1f}"
                    f"{aa_evals / fp_evals:>7.2f}{apriori:>9d}{fp[2]:>8.3f}{aa[2]:>8.3f}{true_error:>12.1e}"
                    f"{converged:>17}"
                )
    print("AA/FP target <= 0.33; '|AA-FP|/|x|' compares the Anderson and fixed-point solutions "
          "(both certified to 1e-12)")


if __name__ == "__main__":
    main()
