"""Strict binary16 / bfloat16 forward passes against float32 and NumPy's float16 / bfloat16.

Times the forward pass of two coupling flows (the ``precision_cost`` flow: depth 20, d = 2,
hidden 32; and a depth-4, d = 8, hidden-64 affine flow) at float32, float16, bfloat16 (NumPy /
ml_dtypes semantics: dot and sum accumulate in float32) and float16-strict, bfloat16-strict
(every product, partial sum and function value rounded to the format; lem:binary32-double-rounding),
side by side in one process. Prints CPU time per point, each time relative to float32, and how
far strict and NumPy semantics are apart (max |difference| in units of u |z|).

Target: float16-strict and bfloat16-strict forward <= 2x float32.

Run: python benchmarks/strict_lowp.py [--points 1000] [--repeats 5]
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
from lipflow.precision import precision  # noqa: E402

TARGET = 2.0
CONTEXTS = ("float32", "float16", "float16-strict", "bfloat16", "bfloat16-strict")


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
        for name in CONTEXTS:
            ctx = precision(name)
            xc = ctx.cast(x)
            times[name] = best_cpu(lambda ctx=ctx, xc=xc, f=flow, p=params: f.forward(p, xc, ctx=ctx), repeats)
            outputs[name] = ctx.to_float64(flow.forward(params, xc, ctx=ctx))
        if verbose:
            print(f"\nforward pass, {label} coupling flow, {points} points")
            print(f"{'context':<17}{'us/point':>10}{'x float32':>11}{'strict vs numpy, max |diff| / (u |z|)':>40}")
            for name in CONTEXTS:
                note = ""
                if name.endswith("-strict"):
                    plain = name.removesuffix("-strict")
                    scale = np.max(np.abs(outputs[plain]), axis=1, keepdims=True)
                    unit = scale * precision(plain).unit_roundoff
                    with np.errstate(invalid="ignore", divide="ignore"):
                        diff = np.nanmax(np.abs(outputs[name] - outputs[plain]) / unit)
                    note = f"{diff:.1f}"
                ratio = times[name] / times["float32"]
                print(f"{name:<17}{per_element(times[name], points):>10}{ratio:>11.2f}{note:>40}")
        for name in ("float16-strict", "bfloat16-strict"):
            targets.append(Target(f"strict {name} forward / float32, {label}", times[name] / times["float32"], TARGET))
    return targets


def targets(quick: bool = False) -> list[Target]:
    return measure(300 if quick else 1000, 5, verbose=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    header("strict low precision: forward pass cost against float32")
    print_targets(measure(args.points, args.repeats))


if __name__ == "__main__":
    main()
