"""Ground truth cost: forward + inverse of a depth-20, d = 2, hidden-32 coupling flow.

Times float64, double-double (``dd``) and triple-double (``td``) with the NumPy kernels and with
the compiled numba kernels (``pip install 'lipflow[fast]'``; the same bits), the expansion
ladder's automatic choice (float64 -> dd -> td per sample until the estimated correct bits reach
100, :mod:`lipflow.analysis.expansion_reference`), mpmath object arrays (``mp35``) and, when
python-flint is installed, arb ball object arrays at 120 bits (``arb120``, midpoints checked).
It prints each one's CPU time relative to float64 and the correct bits it achieves against an
mpmath reference at ~200 bits (``mp60``), for an affine and an additive coupling flow, and the
target: the ladder's ground truth within 30x float64 with >= 100 correct bits.

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
from lipflow.analysis.expansion_reference import (  # noqa: E402
    expansion_reference_forward,
    expansion_reference_inverse,
)
from lipflow.precision import accel, precision  # noqa: E402
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
    if ctx_name in ("dd", "td"):
        return precision(ctx_name).to_mp(values, 60)
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


#: timed rows: (label, context, kernel backend); object-array contexts are timed on fewer points
ROWS = (
    ("float64", "float64", "numpy"),
    ("dd numpy", "dd", "numpy"),
    ("dd numba", "dd", "numba"),
    ("td numpy", "td", "numpy"),
    ("td numba", "td", "numba"),
    ("ladder", "ladder", "auto"),
)


def measure(flow: lipflow.Flow, kind: str, args: argparse.Namespace, verbose: bool = True) -> Target:
    """Time and check every context on one flow; print the table."""
    params = flow.init(seed=0)
    x = np.random.default_rng(1).standard_normal((args.points, 2))
    z64 = flow.forward(params, x)
    check = slice(0, min(args.check_points, args.points))
    mp60 = precision("mp60")
    reference_z = flow.forward(params, x[check], ctx=mp60)
    reference_x = flow.inverse(params, z64[check], ctx=mp60)
    ladder_note = ""

    def run(ctx_name: str, n: int) -> tuple[object, object]:
        nonlocal ladder_note
        if ctx_name == "ladder":
            forward = expansion_reference_forward(flow, params, x[:n], target_bits=TARGET_BITS)
            inverse = expansion_reference_inverse(flow, params, z64[:n], target_bits=TARGET_BITS)
            ladder_note = f"forward {forward.describe()}; inverse {inverse.describe()}"
            return forward.value, inverse.value
        ctx = precision(ctx_name) if not ctx_name.startswith("arb") else arb_precision(int(ctx_name[3:]))
        with ctx.scope():
            return flow.forward(params, x[:n], ctx=ctx), flow.inverse(params, z64[:n], ctx=ctx)

    rows_wanted = list(ROWS)
    if not accel.numba_available():
        rows_wanted = [r for r in rows_wanted if r[2] != "numba"]
        print(f"numba is not installed: no compiled rows ({accel.INSTALL_HINT}); the ladder runs on NumPy")
    if args.no_baselines:
        pass
    else:
        rows_wanted.append(("mp35", "mp35", "numpy"))
        if flint_available():
            rows_wanted.append(("arb120", "arb120", "numpy"))
        else:
            print("python-flint is not installed: no arb baseline (pip install 'lipflow[certified]')")

    rows = []
    for label, name, backend in rows_wanted:
        slow = name == "mp35" or name.startswith("arb")
        numpy_td = name == "td" and backend == "numpy"
        n = min(args.slow_points, args.points) if slow else args.points
        # the float64 baseline takes milliseconds: more repeats keep its best time (and the ratio) steady
        repeats = 1 if (slow or numpy_td) else (4 * args.repeats if name == "float64" else args.repeats)
        with accel.kernels(backend):
            seconds = best_time(lambda name=name, n=n: run(name, n), repeats) * args.points / n
            z, xr = run(name, args.points if name == "ladder" else check.stop)
        if name == "ladder":
            z, xr = z[check], xr[check]
        stored = "td" if name == "ladder" else name
        bits = (correct_bits(as_mp(stored, z), reference_z), correct_bits(as_mp(stored, xr), reference_x))
        rows.append((label, seconds, bits, slow, repeats))

    base = rows[0][1]
    ladder_row = next(r for r in rows if r[0] == "ladder")
    float_row = rows[0]
    lost = 53 - min(float_row[2])
    target = Target(
        f"ground truth (expansion ladder) / float64 forward+inverse, depth-20 {kind} flow", ladder_row[1] / base,
        TARGET_RATIO,
        detail=f"{min(ladder_row[2]):.1f} correct bits (>= {TARGET_BITS:.0f} needed); float64 loses {lost:.1f} of 53 "
               f"bits on this flow; kernels: {accel.active_backend()}",
        extra_ok=bool(min(ladder_row[2]) >= TARGET_BITS),
    )
    if verbose:
        print(f"\nforward + inverse, depth-20 d=2 hidden-32 {kind} coupling flow, {args.points} points")
        print(f"{'context':<10}{'CPU s':>10}{'us/point':>10}{'x float64':>12}{'bits fwd':>10}{'bits inv':>10}")
        for label, seconds, bits, slow, repeats in rows:
            note = f"  (timed on {min(args.slow_points, args.points)} points, scaled)" if slow else ""
            note += "  (one timed run)" if repeats == 1 and not slow else ""
            print(f"{label:<10}{seconds:>10.4f}{per_element(seconds, args.points):>10}{seconds / base:>12.1f}"
                  f"{bits[0]:>10.1f}{bits[1]:>10.1f}{note}")
        print(f"ladder: {ladder_note}")
        verdict = "met" if target.met else "NOT met"
        print(f"target ladder ground truth <= {TARGET_RATIO:.0f}x float64 with >= {TARGET_BITS:.0f} bits ({kind}): "
              f"{ladder_row[1] / base:.1f}x, {min(ladder_row[2]):.1f} bits: {verdict}")
    return target


if __name__ == "__main__":
    main()
