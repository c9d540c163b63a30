"""Cost of strict per-operation rounding vs NumPy's float16 / bfloat16 semantics.

Times the forward pass of a small affine coupling flow in ``float16`` (NumPy: dot and sum
accumulate in float32, functions evaluated in float32) and ``float16-strict`` (every product,
partial sum and function value rounded to binary16), likewise for bfloat16, in one run; prints
the time ratio and how far the two semantics' outputs are apart (in float64 units of the
format's unit roundoff, relative to the output's size).

Run: python benchmarks/strict_lowp.py [--points 1000] [--dim 8] [--hidden 64] [--depth 4]
"""

from __future__ import annotations

import os

# one BLAS thread for lipflow and baseline alike: multithreaded BLAS on a busy machine makes
# small products erratic (set OPENBLAS_NUM_THREADS yourself to override)
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import lipflow  # noqa: E402
from lipflow.precision import precision  # noqa: E402


def best_time(run, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    blocks = [
        lipflow.AffineCoupling(
            args.dim,
            conditioning="first" if i % 2 == 0 else "second",
            t=lipflow.MLP((args.hidden,)),
            s=lipflow.MLP((args.hidden,)),
        )
        for i in range(args.depth)
    ]
    flow = lipflow.Flow(blocks)
    params = flow.init(0)
    x = np.random.default_rng(0).standard_normal((args.points, args.dim))
    print(f"forward pass, depth-{args.depth} affine coupling flow, d={args.dim}, hidden={args.hidden}, "
          f"{args.points} points")
    print(f"{'format':<10}{'numpy s':>10}{'strict s':>10}{'strict/numpy':>14}{'max diff / (u |z|)':>20}")
    for storage in ("float16", "bfloat16"):
        plain, strict = precision(storage), precision(f"{storage}-strict")
        t_plain = best_time(lambda p=plain: flow.forward(params, x, ctx=p), args.repeats)
        t_strict = best_time(lambda p=strict: flow.forward(params, x, ctx=p), args.repeats)
        z_plain = plain.to_float64(flow.forward(params, x, ctx=plain))
        z_strict = strict.to_float64(flow.forward(params, x, ctx=strict))
        scale = np.max(np.abs(z_plain), axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            diff = np.nanmax(np.abs(z_strict - z_plain) / (scale * plain.unit_roundoff))
        print(f"{storage:<10}{t_plain:>10.4f}{t_strict:>10.4f}{t_strict / t_plain:>14.1f}{diff:>20.1f}")


if __name__ == "__main__":
    main()
