"""Run every benchmark with a target, twice, and write one JSON file of ratios.

Each benchmark measures its ratios side by side in one process (CPU time, best of >= 5
repeats). This script runs all of them in two rounds on this machine; a ratio whose two
rounds differ by more than 2x is reported as ``unstable`` (and neither met nor missed),
otherwise the target is ``met`` or ``not met`` on the geometric mean of the two rounds. Ratios,
not seconds, are what two machines or two commits are compared by.

Run: python benchmarks/run_all.py [--out benchmark-ratios.json] [--quick] [--only strict residual ...]
"""

from __future__ import annotations

import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import importlib  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import ALLOCATOR, command, machine, write_json  # noqa: E402

from lipflow.precision.accel import INSTALL_HINT, numba_available  # noqa: E402

#: the dd/td and strict kernels this run uses (the strict and ground-truth targets need numba)
KERNELS = "numba" if numba_available() else "numpy"

#: short name -> benchmark module (each has ``targets(quick) -> list[Target]``)
BENCHMARKS = {
    "strict": "strict_lowp",
    "residual": "residual_inverse",
    "ground_truth": "ground_truth",
    "fd": "torch_fd_overhead",
    "spectra": "jacobian_spectra",
}
UNSTABLE_FACTOR = 2.0


def _round(names: list[str], quick: bool) -> tuple[dict, dict]:
    results, skipped = {}, {}
    for name in names:
        module_name = BENCHMARKS[name]
        if name == "fd":
            try:
                import torch  # noqa: F401
            except ImportError:
                skipped[name] = "torch is not installed (pip install 'lipflow[torch]')"
                continue
        module = importlib.import_module(module_name)
        started = time.perf_counter()
        for target in module.targets(quick):
            results[target.name] = (target, module_name)
        print(f"  {module_name}: {time.perf_counter() - started:.0f} s wall", flush=True)
    return results, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmark-ratios.json")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run; ratios are not the targets')")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=sorted(BENCHMARKS))
    args = parser.parse_args()
    names = [n for n in BENCHMARKS if n in args.only]
    started = time.perf_counter()
    rounds = []
    skipped: dict = {}
    for index in (1, 2):
        print(f"round {index} of 2", flush=True)
        results, skipped = _round(names, args.quick)
        rounds.append(results)

    entries = []
    for name, (target, module_name) in rounds[0].items():
        second = rounds[1].get(name, (None, None))[0]
        ratios = [target.ratio, second.ratio if second else math.nan]
        finite = all(math.isfinite(r) and r > 0 for r in ratios)
        spread = max(ratios) / min(ratios) if finite else math.inf
        stable = finite and spread <= UNSTABLE_FACTOR
        ratio = math.sqrt(ratios[0] * ratios[1]) if finite else math.nan
        side_ok = bool(target.extra_ok and (second is None or second.extra_ok))
        status = "unstable" if not stable else ("met" if _met(ratio, target, side_ok) else "not met")
        entries.append({
            "name": name,
            "benchmark": f"benchmarks/{module_name}.py",
            "ratio": ratio if stable else None,
            "ratio_rounds": ratios,
            "limit": target.limit,
            "direction": target.direction,
            "side_conditions_ok": side_ok,
            "status": status,
            "detail": target.detail,
        })
    payload = {
        "provisional": "timings on a shared machine; compare ratios, rerun on a quiet machine to quote",
        "machine": machine(),
        "command": command(),
        "allocator": ALLOCATOR or "default",
        "kernels": KERNELS,
        "quick": args.quick,
        "rounds": 2,
        "unstable_if_rounds_differ_by_more_than": UNSTABLE_FACTOR,
        "skipped": skipped,
        "results": entries,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    write_json(args.out, payload)
    width = max(len(e["name"]) for e in entries) if entries else 10
    print(f"\n{'target':<{width}}  {'ratio':>8}  {'limit':>8}  status")
    for e in entries:
        shown = f"{e['ratio']:.3g}" if e["ratio"] is not None else "-"
        rounds_text = " / ".join(f"{r:.3g}" for r in e["ratio_rounds"])
        limit = f"{e['direction']}{e['limit']:g}"
        print(f"{e['name']:<{width}}  {shown:>8}  {limit:>8}  {e['status']}  (rounds {rounds_text})")
    for name, why in skipped.items():
        print(f"{name}: skipped, {why}")
    if KERNELS == "numpy":
        print(f"kernels: NumPy (numba is not installed); the strict and ground-truth targets are set for the "
              f"compiled kernels: {INSTALL_HINT}")
    print(f"wrote {args.out} ({payload['wall_seconds']} s)")


def _met(ratio: float, target, side_ok: bool) -> bool:
    if not (math.isfinite(ratio) and side_ok):
        return False
    return ratio <= target.limit if target.direction == "<=" else ratio >= target.limit


if __name__ == "__main__":
    main()
