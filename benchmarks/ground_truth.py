"""Ground truth cost: forward + inverse of a depth-20, d = 2, hidden-32 coupling flow.

Times float64, double-double (``dd``), mpmath object arrays (``mp35``) and, when python-flint
is installed, arb ball object arrays at 120 bits (``arb120``, midpoints checked), and prints
each one's CPU time relative to float64 and the correct bits it achieves against an mpmath
reference at ~200 bits (``mp60``), for an affine and an additive coupling flow.

Correct bits = -log2(max over checked points of ||y - y_ref|| / ||y_ref||), forward and inverse
separately. Object-array contexts are timed on ``--slow-points`` points
and scaled linearly to ``--points`` (their cost is per element); the table says so.

Run: python benchmarks/ground_truth.py [--points 1000] [--slow-points 100] [--check-points 50]
"""

from __future__ import annotations

import os

# one BLAS thread for lipflow and baseline alike: multithreaded BLAS on a busy machine makes
# small products erratic (set OPENBLAS_NUM_THREADS yourself to override)
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import MIN_REPEATS, Target, header, per_element, print_targets  # noqa: E402

import lipflow  # noqa: E402
from lipflow.precision import precision  # noqa: E402
from lipflow.precision.arb import arb_precision, flint_available  # noqa: E402

TARGET_RATIO = 30.0
TARGET_BITS = 100.0


def make_flow(kind: str, depth: int = 20, dim: int = 2, hidden: int = 32) -> lipflow.Flow:
    """Couplings with tanh MLPs alternating the conditioning half: ``"affine"`` (sigmoid scale,
    the default block) or ``"additive"``."""
    blocks = []
    for i in range(depth):
        half = "first" if i % 2 == 0 else "second"
        if kind == "affine":
            blocks.append(
                lipflow.AffineCoupling(dim, conditioning=half, t=lipflow.MLP((hidden,)), s=lipflow.MLP((hidden,)))
            )
        else:
            blocks.append(lipflow.AdditiveCoupling(dim, conditioning=half, t=lipflow.MLP((hidden,))))
    return lipflow.Flow(blocks)


def best_time(run: Callable[[], object], repeats: int) -> float:
    """Best-of-``repeats`` CPU time of this process (steadier than wall time on a shared machine)."""
    best = math.inf
    run()
    for _ in range(repeats):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return best


def correct_bits(values: np.ndarray, reference: np.ndarray) -> float:
    """-log2 of the worst relative error per point, values and reference as mpf object arrays."""
    worst = 0.0
    for got, ref in zip(values, reference, strict=True):
        error = math.sqrt(sum(float(g - r) ** 2 for g, r in zip(got, ref, strict=True)))
        scale = math.sqrt(sum(float(r) ** 2 for r in ref))
        worst = max(worst, error / scale)
    return math.inf if worst == 0 else -math.log2(worst)


def as_mp(ctx_name: str, values: object) -> np.ndarray:
    """Results of any context as an object array of mp60 numbers (exact for dd and floats)."""
    mp60 = precision("mp60")
    if ctx_name == "dd":
        return precision("dd").to_mp(values, 60)
    if ctx_name.startswith("arb"):  # midpoints, exactly
        exact = np.frompyfunc(lambda v: mp60.context.mpf(tuple(int(p) for p in v.mid().man_exp())), 1, 1)
        return np.asarray(exact(values), dtype=object)
    return mp60.cast(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--slow-points", type=int, default=100, help="points for the object-array contexts")
    parser.add_argument("--check-points", type=int, default=50, help="points checked against mp60")
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS)
    parser.add_argument("--no-baselines", action="store_true", help="time float64 and dd only (no mp35 / arb120)")
    args = parser.parse_args()
    header("ground truth: double-double against float64 (and mpmath / arb baselines)")
    print_targets([measure(make_flow(kind), kind, args) for kind in ("affine", "additive")])


def targets(quick: bool = False) -> list[Target]:
    args = argparse.Namespace(points=1000, slow_points=20, check_points=10 if quick else 50,
                              repeats=MIN_REPEATS, no_baselines=True)
    return [measure(make_flow(kind), kind, args, verbose=False) for kind in ("affine", "additive")]


def measure(flow: lipflow.Flow, kind: str, args: argparse.Namespace, verbose: bool = True) -> Target:
    """Time and check every context on one flow; print the table."""
    params = flow.init(seed=0)
    x = np.random.default_rng(1).standard_normal((args.points, 2))
    z64 = flow.forward(params, x)
    check = slice(0, min(args.check_points, args.points))
    mp60 = precision("mp60")
    reference_z = flow.forward(params, x[check], ctx=mp60)
    reference_x = flow.inverse(params, z64[check], ctx=mp60)

    def run(ctx_name: str, n: int) -> tuple[object, object]:
        ctx = precision(ctx_name) if not ctx_name.startswith("arb") else arb_precision(int(ctx_name[3:]))
        with ctx.scope():
            return flow.forward(params, x[:n], ctx=ctx), flow.inverse(params, z64[:n], ctx=ctx)

    contexts = ["float64", "dd"] if args.no_baselines else ["float64", "dd", "mp35"]
    if args.no_baselines:
        pass
    elif flint_available():
        contexts.append("arb120")
    else:
        print("python-flint is not installed: no arb baseline (pip install 'lipflow[certified]')")

    rows = []
    for name in contexts:
        ctx = name
        slow = name == "mp35" or name.startswith("arb")
        n = min(args.slow_points, args.points) if slow else args.points
        # the float64 baseline takes milliseconds: more repeats keep its best time (and the ratio) steady
        repeats = 1 if slow else (4 * args.repeats if name == "float64" else args.repeats)
        seconds = best_time(lambda ctx=ctx, n=n: run(ctx, n), repeats) * args.points / n
        z, xr = run(ctx, check.stop)
        bits = (correct_bits(as_mp(name, z), reference_z), correct_bits(as_mp(name, xr), reference_x))
        rows.append((name, seconds, bits, slow))

    base = rows[0][1]
    dd_row = next(r for r in rows if r[0] == "dd")
    float_row = rows[0]
    lost = 53 - min(float_row[2])
    target = Target(
        f"ground truth dd / float64 forward+inverse, depth-20 {kind} flow", dd_row[1] / base, TARGET_RATIO,
        detail=f"{min(dd_row[2]):.1f} correct bits (>= {TARGET_BITS:.0f} needed); float64 loses {lost:.1f} of 53 "
               f"bits on this flow",
        extra_ok=bool(min(dd_row[2]) >= TARGET_BITS),
    )
    if verbose:
        print(f"\nforward + inverse, depth-20 d=2 hidden-32 {kind} coupling flow, {args.points} points")
        print(f"{'context':<10}{'CPU s':>10}{'us/point':>10}{'x float64':>12}{'bits fwd':>10}{'bits inv':>10}")
        for name, seconds, bits, slow in rows:
            note = f"  (timed on {min(args.slow_points, args.points)} points, scaled)" if slow else ""
            print(f"{name:<10}{seconds:>10.4f}{per_element(seconds, args.points):>10}{seconds / base:>12.1f}"
                  f"{bits[0]:>10.1f}{bits[1]:>10.1f}{note}")
    return target


if __name__ == "__main__":
    main()
