"""Advised mixed-precision plan vs all-float64 and all-float32: forward + inverse time side by side,
and the advisor's own run time at depth 8, 32 and 100.

Part 1: a depth-8, d = 8 coupling flow (hidden-64 conditioners, Bounded scale) on --points points;
the plan is advised in measured mode (tol --tol, round trip, candidates bfloat16/float16/float32/
float64, cost = bytes moved), then the three plans are timed in one run (best of --repeats) with
the NumPy path and, when torch sees a CUDA device, with the torch bridge (per-module dtype).
NumPy emulates float16/bfloat16 (no faster than float32 on CPUs); the CUDA columns are the ones
where 16-bit formats can pay off. Part 2: advise() wall time in proven mode (box [-0.5, 0.5], tol = 10x the
all-float32 bound) and measured mode on the same family of flows at depth 8, 32 and 100 (greedy search beyond 24
decisions). Run: python benchmarks/advise.py [--points 4096] [--depths 8 32 100]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import lipflow as lf
from lipflow.analysis.advisor import advise
from lipflow.blocks.plan import Plan, run_forward, run_inverse
from lipflow.bounds.rounding_flow import plan_error_bound

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import best_wall


def build_flow(depth: int, dim: int = 8, hidden: int = 64) -> lf.Flow:
    blocks = []
    for k in range(depth):
        conditioning = "first" if k % 2 == 0 else "second"
        net = lf.MLP((hidden,), "tanh", init_scale=0.5)
        blocks.append(lf.AffineCoupling(dim, conditioning=conditioning, t=net, s=net, scale=lf.Bounded(0.5, 1.0)))
    return lf.Flow(blocks)




def numpy_times(flow, params, x, plans, repeats):
    out = {}
    for name, plan in plans.items():
        out[name] = best_wall(lambda plan=plan: run_inverse(flow, params, run_forward(flow, params, x, plan), plan),
                              repeats)
    return out


def torch_times(flow, params, x, plans, repeats):
    try:
        import torch

        from lipflow.interop.torch_plan import to_torch_plan
    except Exception:
        return None
    if not torch.cuda.is_available():
        return None
    out = {}
    xt = torch.from_numpy(x).cuda()
    for name, plan in plans.items():
        module = to_torch_plan(flow, params, plan, device="cuda")

        def run(module=module):
            with torch.no_grad():
                module.inverse(module(xt))
            torch.cuda.synchronize()

        run()
        out[name] = best_wall(run, repeats)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=4096)
    parser.add_argument("--tol", type=float, default=1e-2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--depths", type=int, nargs="+", default=[8, 32, 100])
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    flow = build_flow(8)
    params = flow.init(seed=0)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.points, flow.dim))
    advice = advise(flow, params, x=x[:256], tol=args.tol, mode="measured", n_noise=32)
    plans = {"float64": Plan.uniform(flow, "float64"), "float32": Plan.uniform(flow, "float32"),
             "advised": advice.plan}
    print(f"advised plan (measured, tol {args.tol:g}, error {advice.error:.3g}):")
    print(advice.plan.table(flow))
    print(f"bytes-model cost saved: {100 * advice.saved_vs_float64:.1f}% vs float64, "
          f"{100 * (advice.saved_vs_float32 or 0):.1f}% vs float32")
    numpy = numpy_times(flow, params, x, plans, args.repeats)
    gpu = torch_times(flow, params, x, plans, args.repeats)
    print(f"\nforward + inverse, depth 8, d = 8, {args.points} points (best of {args.repeats})")
    print(f"{'plan':<10} {'numpy s':>10} {'/float64':>9} {'/float32':>9}" + (
        f" {'cuda s':>10} {'/float64':>9} {'/float32':>9}" if gpu else "  (no CUDA device: torch column skipped)"))
    for name in plans:
        t = numpy[name]
        row = f"{name:<10} {t:>10.4f} {t / numpy['float64']:>9.2f} {t / numpy['float32']:>9.2f}"
        if gpu:
            row += f" {gpu[name]:>10.5f} {gpu[name] / gpu['float64']:>9.2f} {gpu[name] / gpu['float32']:>9.2f}"
        print(row)

    print("\nadvisor run time (this machine)")
    print(f"{'depth':>5} {'mode':<9} {'search':<44} {'seconds':>8} {'saved vs f64':>12}")
    for depth in args.depths:
        flow = build_flow(depth)
        params = flow.init(seed=1)
        xs = rng.uniform(-1, 1, (64, flow.dim))
        try:  # proven tolerance: 10x the all-float32 bound, so that lowering some blocks can pay
            tol32 = 10 * plan_error_bound(flow, params, Plan.uniform(flow, "float32"), (-0.5, 0.5)).value
        except lf.LipflowError:
            tol32 = float("inf")
        for mode in ("proven", "measured"):
            if mode == "proven" and tol32 == float("inf"):
                print(f"{depth:>5} {mode:<9} {'no proven bound on this box (overflow)':<44} {'-':>8} {'-':>12}")
                continue
            start = time.perf_counter()
            try:
                kwargs = {"box": (-0.5, 0.5), "tol": tol32} if mode == "proven" else {"x": xs, "tol": args.tol,
                                                                                        "n_noise": 8}
                result = advise(flow, params, mode=mode, n_validate=16, **kwargs)
                method, saved = result.search.method, f"{100 * result.saved_vs_float64:.1f}%"
            except lf.LipflowError as error:
                method, saved = f"no plan: {str(error)[:40]}", "-"
            print(f"{depth:>5} {mode:<9} {method[:44]:<44} {time.perf_counter() - start:>8.2f} {saved:>12}")


if __name__ == "__main__":
    main()
