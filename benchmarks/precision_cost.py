"""Forward and round-trip cost of one flow at every precision, relative to float64.

Depth-20, d = 2 coupling flow (affine and additive blocks with hidden-32 tanh conditioners,
alternating halves) on 1000 points. Run: python benchmarks/precision_cost.py [--points N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import lipflow as lf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import best_wall


def build_flow(depth: int = 20) -> lf.Flow:
    blocks = []
    for layer in range(depth):
        conditioning = "first" if layer % 2 == 0 else "second"
        if layer % 2:
            blocks.append(lf.AdditiveCoupling(2, conditioning=conditioning, t=lf.MLP((32,))))
        else:
            blocks.append(lf.AffineCoupling(2, conditioning=conditioning, t=lf.MLP((32,)), s=lf.MLP((32,))))
    return lf.Flow(blocks)




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--precisions", nargs="+",
                        default=["float64", "float32", "float16", "bfloat16", "longdouble", "mp50"])
    args = parser.parse_args()
    flow = build_flow()
    params = flow.init(seed=0)
    x = np.random.default_rng(0).standard_normal((args.points, 2))
    rows = []
    for name in args.precisions:
        ctx = lf.precision(name)
        xc = ctx.cast(x)
        repeats = 1 if ctx.is_arbitrary else 5
        forward = best_wall(lambda xc=xc, ctx=ctx: flow.forward(params, xc, ctx=ctx), repeats)
        z = flow.forward(params, xc, ctx=ctx)
        inverse = best_wall(lambda z=z, ctx=ctx: flow.inverse(params, z, ctx=ctx), repeats)
        rows.append((name, forward, inverse))
    baseline = dict((r[0], r[1]) for r in rows).get("float64", rows[0][1])
    print(f"depth-20 d=2 hidden-32 coupling flow, {args.points} points (best of 5; mp: 1 run)")
    print(f"{'precision':11s} {'forward s':>10s} {'inverse s':>10s} {'forward / float64':>18s}")
    for name, forward, inverse in rows:
        print(f"{name:11s} {forward:10.4f} {inverse:10.4f} {forward / baseline:18.1f}")


if __name__ == "__main__":
    main()
