"""Figure-1 sweep through the sweep engine (2 workers) against the direct single-process loop.

The sweep: additive and affine toy blocks x float16/float32/float64 and the mpmath reference x
depth 1..100 (800 cells: reconstruction error and the exact Jacobian's spectrum). The baseline
is the direct loop Figure 1 used before the sweep engine: per kind, one chain-rule pass for the
spectra at the reference and, per precision, forward to each depth and invert back. Both must
give bit-identical numbers; the script checks that and prints times: wall (best of --repeats)
and the CPU seconds of that run, workers included (on a shared machine, wall time also
measures the load). Target: the engine at <= 10 s wall time on 2 cores.

    python benchmarks/fig1_sweep.py [--max-depth 100] [--workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import resource
import tempfile
import time
from pathlib import Path

import numpy as onp

from lipflow.analysis.jacobian import jacobian, singular_values
from lipflow.experiments.fig1 import (
    BLOCK_KINDS,
    DEFAULT_PRECISIONS,
    INPUT,
    fig1_spec,
    reference_precision_for,
    rows_from_store,
    toy_block,
)
from lipflow.precision import precision
from lipflow.sweep import run_sweep


def direct_loop(max_depth: int) -> list[tuple]:
    """The baseline: Figure 1 computed directly, one process, no store."""
    contexts = [precision(name) for name in DEFAULT_PRECISIONS]
    reference = reference_precision_for(max_depth)
    contexts.append(reference)
    rows = []
    with onp.errstate(all="ignore"):
        for kind in BLOCK_KINDS:
            block = toy_block(kind)
            params = block.init(0)
            x = reference.cast(onp.asarray([INPUT]))
            product = reference.cast(onp.eye(2))
            spectra = []
            for _ in range(max_depth):
                product = reference.dot(jacobian(block, reference.cast(params), x, ctx=reference)[0], product)
                values, _ = singular_values(product[None], reference)
                spectra.append((float(values[0, -1]), float(values[0, 0])))
                x = block._forward(reference.cast(params), x, reference)
            for ctx in contexts:
                cast = ctx.cast(params)
                start = ctx.cast(onp.asarray([INPUT]))
                forward = start
                for depth in range(1, max_depth + 1):
                    forward = block._forward(cast, forward, ctx)
                    back = forward
                    for _ in range(depth):
                        back = block._inverse(cast, back, ctx)
                    if ctx.is_arbitrary:
                        difference = ctx.to_float64(back - start)[0]
                    else:
                        difference = ctx.to_float64(back)[0] - onp.asarray(INPUT)
                    error = float(onp.sqrt(onp.sum(difference * difference)))
                    low, high = spectra[depth - 1]
                    rows.append((kind, ctx.name, depth, error, low, high, high / low if low > 0 else math.inf))
    return rows


def engine(max_depth: int, workers: int, folder: Path) -> list[tuple]:
    """The Figure-1 spec through run_sweep into a new folder: spec validation, 800 cell files,
    results.csv and reading the rows back are timed; the figures are not."""
    spec = fig1_spec(max_depth)
    run = run_sweep(spec, folder / "sweep", workers=workers, progress=False)
    rows = rows_from_store(spec, run.store)
    return [(r.block, r.precision, r.depth, r.recon_error, r.sigma_min, r.sigma_max, r.cond) for r in rows]


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _best(function, repeats: int) -> tuple[float, float, list[tuple]]:
    """(best wall time, CPU seconds of that run, result) of ``function(folder)``; each run gets a
    new empty folder (deleting the folders afterwards is not timed)."""
    best, cpu, result = math.inf, math.nan, None
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(repeats):
            folder = Path(scratch) / str(repeat)
            start, start_cpu = time.perf_counter(), _cpu_seconds()
            result = function(folder)
            wall = time.perf_counter() - start
            if wall < best:
                best, cpu = wall, _cpu_seconds() - start_cpu
    return best, cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-depth", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs each")
    args = parser.parse_args()

    baseline_time, baseline_cpu, baseline = _best(lambda folder: direct_loop(args.max_depth), args.repeats)
    serial_time, serial_cpu, serial = _best(lambda folder: engine(args.max_depth, 1, folder), args.repeats)
    parallel_time, parallel_cpu, parallel = _best(
        lambda folder: engine(args.max_depth, args.workers, folder), args.repeats
    )
    same = repr(baseline) == repr(serial) == repr(parallel)
    print(f"Figure-1 sweep: 2 kinds x 4 precisions x depth 1..{args.max_depth} = {len(baseline)} cells; "
          f"best of {args.repeats}; numbers bit-identical to the baseline: {same}")
    print(f"{'run':42s} {'wall s':>8s} {'vs baseline':>12s} {'CPU s':>8s}")
    for label, wall, cpu in (
        ("baseline: direct loop, 1 process", baseline_time, baseline_cpu),
        ("sweep engine, 1 worker (in process)", serial_time, serial_cpu),
        (f"sweep engine, {args.workers} worker processes", parallel_time, parallel_cpu),
    ):
        print(f"{label:42s} {wall:8.2f} {wall / baseline_time:11.2f}x {cpu:8.2f}")
    print(f"target: engine <= 10 s on 2 cores -> {'met' if parallel_time <= 10 else 'NOT met'}")
    if not same:
        raise SystemExit("the engine's numbers differ from the direct loop's")


if __name__ == "__main__":
    main()
