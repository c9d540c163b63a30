"""Residual-block inverse: Anderson acceleration vs plain fixed-point iteration.

Both stop per sample on the same certified bound ||x - x*|| / ||x*|| <= 1e-12 (double-double
residual over 1 - Lip(g)). Prints mean g-evaluations per sample, their ratio (<= 1/3), the
Banach a-priori iteration count, the CPU time per point of each (best of >= 5 repeats) and
their ratio: target Anderson CPU time <= 1/2 of fixed-point's on the tight blocks. Two kinds of
block per (d, c):

* ``tight``: g(x) = W2 elu(W1 x + b) built so that its Jacobian has eigenvalues spread over
  [-c, c] (Lip(g) = c, attained): the slow case the bound is about;
* ``random``: a randomly initialised block (Lip(g) <= c^2 by the norm product, and the local
  contraction is much weaker), where plain iteration is already quick.

For the tight d = 64 blocks it then prints where each solve's time goes: float64 evaluations of
g, Anderson steps, double-double certificates (and how many calls) and the rest.

Run: python benchmarks/residual_inverse.py [--points 200]
"""

from __future__ import annotations

import os

# one BLAS thread for lipflow and baseline alike: multithreaded BLAS on a busy machine makes
# small products erratic (set OPENBLAS_NUM_THREADS yourself to override)
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Target, best_cpu, header, per_element, print_targets  # noqa: E402

import lipflow  # noqa: E402
from lipflow.analysis import residual_solvers  # noqa: E402
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


def _instrumented_solve(block: lipflow.Residual, params: dict, y: np.ndarray, method: str) -> dict:
    """One solve with its float64 g-evaluations, Anderson steps and certificates timed (CPU s)."""
    parts = {"g (float64)": 0.0, "Anderson steps": 0.0, "certificates": 0.0, "certificate calls": 0}

    def timed(name, function, float64_only=False):
        def wrapper(*args, **kwargs):
            if float64_only and args[-1].name != "float64":  # the certificates' double-double g
                return function(*args, **kwargs)
            start = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                parts[name] += time.process_time() - start
                parts["certificate calls"] += name == "certificates"
        return wrapper

    cls = type(block)
    saved = residual_solvers.certified_error_bound, residual_solvers._AndersonHistory.step, cls.g
    residual_solvers.certified_error_bound = timed("certificates", saved[0])
    residual_solvers._AndersonHistory.step = timed("Anderson steps", saved[1])
    cls.g = timed("g (float64)", saved[2], float64_only=True)
    try:
        start = time.process_time()
        solve_residual_inverse(block, params, y, method=method, rtol=RTOL, max_iter=5000)
        parts["total"] = time.process_time() - start
    finally:
        residual_solvers.certified_error_bound, residual_solvers._AndersonHistory.step, cls.g = saved
    parts["rest"] = parts["total"] - parts["g (float64)"] - parts["Anderson steps"] - parts["certificates"]
    return parts


def time_split(block: lipflow.Residual, params: dict, y: np.ndarray, method: str, repeats: int = 3) -> dict:
    """Where a solve's CPU time goes: float64 evaluations of g, Anderson steps, double-double
    certificates (and their number of calls) and the rest (setup, stopping tests, bookkeeping),
    in seconds, from the fastest of ``repeats`` instrumented solves. An estimate: the wrappers
    add about a microsecond per call."""
    return min((_instrumented_solve(block, params, y, method) for _ in range(repeats)), key=lambda p: p["total"])


def print_split(kind: str, dim: int, coeff: float, splits: dict) -> None:
    print(f"where the time goes, {kind} d={dim} c={coeff} (ms per solve, fastest of 3 instrumented solves; "
          "an estimate):")
    for method, parts in splits.items():
        names = ("g (float64)", "Anderson steps", "certificates", "rest")
        shares = ", ".join(
            f"{name} {parts[name] * 1e3:.1f}"
            + (f" ({parts['certificate calls']} calls)" if name == "certificates" else "")
            for name in names
            if method == "anderson" or name != "Anderson steps"
        )
        print(f"  {method:<12} total {parts['total'] * 1e3:6.1f}: {shares}")


def measure(
    points: int, repeats: int, kinds: tuple[str, ...] = ("tight", "random"), verbose: bool = True
) -> list[Target]:
    header_line = (
        f"{'block':<7}{'d':>4}{'c':>6}{'Lip(g)':>8}{'FP g-evals':>11}{'AA g-evals':>11}{'AA/FP':>7}"
        f"{'a-priori':>9}{'FP us/pt':>10}{'AA us/pt':>10}{'AA/FP cpu':>10}{'|AA-FP|/|x|':>12}{'converged FP/AA':>17}"
    )
    if verbose:
        print(f"certified stop at relative error {RTOL:g}; g-evaluations are means per sample over {points} points")
        print(header_line)
    targets, splits = [], []
    makers = {"tight": tight_block, "random": random_block}
    for kind in kinds:
        for dim in (2, 64):
            for coeff in (0.9, 0.97):
                block, params = makers[kind](dim, coeff)
                x = np.random.default_rng(1).standard_normal((points, dim))
                y = block.forward(params, x)
                results = {}
                for method in ("fixed_point", "anderson"):

                    def solve(method=method, block=block, params=params, y=y):
                        return solve_residual_inverse(block, params, y, method=method, rtol=RTOL, max_iter=5000)

                    seconds = best_cpu(solve, repeats)
                    results[method] = (*solve(), seconds)
                fp, aa = results["fixed_point"], results["anderson"]
                lip = aa[1].lipschitz_g
                first_step = np.linalg.norm(block.g(block._prepare(params), y, lipflow.precision("float64")), axis=1)
                apriori = max(
                    banach_a_priori_iterations(lip, s, RTOL * np.linalg.norm(v))
                    for s, v in zip(first_step, fp[0], strict=True)
                )
                true_error = np.max(np.linalg.norm(aa[0] - fp[0], axis=1) / np.linalg.norm(fp[0], axis=1))
                converged = f"{fp[1].converged.sum()}/{aa[1].converged.sum()} of {points}"
                fp_evals, aa_evals = fp[1].g_evaluations.mean(), aa[1].g_evaluations.mean()
                ratio = aa[2] / fp[2]
                if verbose:
                    print(
                        f"{kind:<7}{dim:>4}{coeff:>6.2f}{lip:>8.3f}{fp_evals:>11.1f}{aa_evals:>11.1f}"
                        f"{aa_evals / fp_evals:>7.2f}{apriori:>9d}{per_element(fp[2], points):>10}"
                        f"{per_element(aa[2], points):>10}{ratio:>10.2f}{true_error:>12.1e}{converged:>17}"
                    )
                if verbose and kind == "tight" and dim > 2:
                    splits.append((kind, dim, coeff, {m: time_split(block, params, y, m) for m in results}))
                if kind == "tight":
                    targets.append(Target(
                        f"residual Anderson / fixed-point CPU, tight d={dim} c={coeff}", ratio, 0.5,
                        detail=f"g-evaluations {aa_evals:.1f} vs {fp_evals:.1f}",
                        extra_ok=bool(aa[1].converged.sum() >= fp[1].converged.sum()),
                    ))
    if verbose:
        print("'|AA-FP|/|x|' compares the Anderson and fixed-point solutions (both certified to 1e-12)")
        for split in splits:
            print_split(*split)
    return targets


def targets(quick: bool = False) -> list[Target]:
    return measure(100 if quick else 200, 5, kinds=("tight",), verbose=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    header("residual-block inverse: Anderson acceleration vs fixed-point iteration, same certified stop")
    print_targets(measure(args.points, args.repeats))


if __name__ == "__main__":
    main()
