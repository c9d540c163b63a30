"""Strict binary16 / bfloat16 forward passes against float32 and NumPy's float16 / bfloat16.

Times the forward pass of two coupling flows (the ``precision_cost`` flow: depth 20, d = 2,
hidden 32; and a depth-4, d = 8, hidden-64 affine flow) at float32, float16, bfloat16 (NumPy /
ml_dtypes semantics: dot and sum accumulate in float32) and float16-strict, bfloat16-strict
(every product, partial sum and function value rounded to the format; lem:binary32-double-rounding),
side by side in one process. The strict contexts run twice: held in float32 (the default,
lipflow.precision.strict_held) and stored in the format dtype (``held=False``, NumPy float16 /
ml_dtypes bfloat16 arithmetic: the previous representation); both give the same bits, which is
checked here. Prints CPU time per point, each time relative to float32, and how far strict and
NumPy semantics are apart (max |difference| in units of u |z|). ``--profile`` adds where the
held strict forward spends its time (cProfile, own time per function).

Target: float16-strict and bfloat16-strict forward <= 2x float32.

Run: python benchmarks/strict_lowp.py [--points 1000] [--repeats 5] [--kernels auto|numpy|numba] [--profile]
"""

from __future__ import annotations

import os

# one BLAS thread for lipflow and baseline alike (set OPENBLAS_NUM_THREADS yourself to override)
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Target, best_cpu, header, per_element, print_targets  # noqa: E402

import lipflow  # noqa: E402
from lipflow.precision import accel, precision  # noqa: E402
from lipflow.precision.strict import strict_precision  # noqa: E402

TARGET = 2.0
#: label -> context; "NAME stored" is the strict context in the format dtype (held=False)
CONTEXTS = {
    "float32": lambda: precision("float32"),
    "float16": lambda: precision("float16"),
    "float16-strict": lambda: precision("float16-strict"),
    "float16-strict stored": lambda: strict_precision("float16-strict", held=False),
    "bfloat16": lambda: precision("bfloat16"),
    "bfloat16-strict": lambda: precision("bfloat16-strict"),
    "bfloat16-strict stored": lambda: strict_precision("bfloat16-strict", held=False),
}


def make_flows() -> dict[str, tuple[lipflow.Flow, int]]:
    deep = [
        lipflow.AffineCoupling(2, conditioning="first", t=lipflow.MLP((32,)), s=lipflow.MLP((32,)))
        if i % 2 == 0
        else lipflow.AdditiveCoupling(2, conditioning="second", t=lipflow.MLP((32,)))
        for i in range(20)
    ]
    wide = [
        lipflow.AffineCoupling(8, conditioning="first" if i % 2 == 0 else "second",
                               t=lipflow.MLP((64,)), s=lipflow.MLP((64,)))
        for i in range(4)
    ]
    return {"depth20-d2-h32": (lipflow.Flow(deep), 2), "depth4-d8-h64": (lipflow.Flow(wide), 8)}


def measure(points: int, repeats: int, verbose: bool = True) -> list[Target]:
    targets = []
    for label, (flow, dim) in make_flows().items():
        params = flow.init(0)
        x = np.random.default_rng(0).standard_normal((points, dim))
        times, outputs = {}, {}
        for name, make in CONTEXTS.items():
            ctx = make()
            xc = ctx.cast(x)
            times[name] = best_cpu(lambda ctx=ctx, xc=xc, f=flow, p=params: f.forward(p, xc, ctx=ctx), repeats)
            outputs[name] = ctx.to_float64(flow.forward(params, xc, ctx=ctx))
        same = {name: bool(np.array_equal(np.nan_to_num(outputs[name]).view(np.uint64),
                                          np.nan_to_num(outputs[f"{name} stored"]).view(np.uint64))
                           and np.array_equal(np.isnan(outputs[name]), np.isnan(outputs[f"{name} stored"])))
                for name in ("float16-strict", "bfloat16-strict")}
        if verbose:
            print(f"\nforward pass, {label} coupling flow, {points} points, kernels: {accel.active_backend()}")
            print(f"{'context':<24}{'us/point':>10}{'x float32':>11}{'strict vs numpy, max |diff| / (u |z|)':>40}")
            for name in CONTEXTS:
                note = ""
                if "-strict" in name:
                    plain = name.split("-strict")[0]
                    scale = np.max(np.abs(outputs[plain]), axis=1, keepdims=True)
                    unit = scale * precision(plain).unit_roundoff
                    with np.errstate(invalid="ignore", divide="ignore"):
                        diff = np.nanmax(np.abs(outputs[name] - outputs[plain]) / unit)
                    note = f"{diff:.1f}"
                ratio = times[name] / times["float32"]
                print(f"{name:<24}{per_element(times[name], points):>10}{ratio:>11.2f}{note:>40}")
            for name, ok in same.items():
                speedup = times[f"{name} stored"] / times[name]
                print(f"{name}: held in float32 {'bit-identical to' if ok else 'DIFFERS from'} format storage; "
                      f"{speedup:.1f}x faster")
        for name in ("float16-strict", "bfloat16-strict"):
            targets.append(Target(f"strict {name} forward / float32, {label}", times[name] / times["float32"], TARGET,
                                  detail="" if same[name] else "differs from format storage", extra_ok=same[name]))
    return targets


def profile(points: int) -> None:
    """Where the held strict forward spends its time: own CPU time per function (cProfile)."""
    import cProfile
    import pstats

    for label, (flow, dim) in make_flows().items():
        params = flow.init(0)
        x = np.random.default_rng(0).standard_normal((points, dim))
        for name in ("float32", "float16-strict"):
            ctx = precision(name)
            xc = ctx.cast(x)
            flow.forward(params, xc, ctx=ctx)
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(10):
                flow.forward(params, xc, ctx=ctx)
            profiler.disable()
            print(f"\nprofile: {name} forward, {label}, 10 passes (own time; cProfile adds overhead per call)")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(8)


def targets(quick: bool = False) -> list[Target]:
    return measure(300 if quick else 1000, 5, verbose=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kernels", default="auto", choices=accel.BACKENDS,
                        help="compiled (numba) or NumPy kernels for the held strict contexts")
    parser.add_argument("--profile", action="store_true", help="also print where the strict forward spends its time")
    args = parser.parse_args()
    header("strict low precision: forward pass cost against float32")
    with accel.kernels(args.kernels):
        print_targets(measure(args.points, args.repeats))
        if args.profile:
            profile(args.points)


if __name__ == "__main__":
    main()
