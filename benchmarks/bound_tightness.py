"""Tightness of the reconstruction bound over random lemma cases, and what the budget costs.

For each working precision (float16, float32, float64) draws ``--cases`` reconstruction lemma
cases (``lipflow.strategies.lemma_cases``: flows of depth 2..8 mixing additive, affine with every
scale kind, and residual blocks; in- and out-of-distribution inputs; derandomised, so a run is
reproducible) and runs ``error_budget`` on each. Prints, per precision:

* quantiles of the tightness ratio ||x - x_delta2|| / (Lip(F^-1) ||delta|| + ||delta2||) over
  decided samples with a finite bound (ratio 0 = exact reconstruction, counted separately);
* counts of samples: violations (ratio above 1 beyond the reference slack; must be 0),
  non-finite forward / inverse, undecided (reference unstable), unbounded (no finite proven Lip),
  and samples where ``error_budget`` raised (mpmath overflow in the reference; shown, not hidden);
* how often each reference rung was used (forward and inverse passes, per sample);
* the CPU time of ``error_budget`` against a plain float64 forward + inverse of the same inputs,
  and their ratio (this process, one BLAS thread).

Run: python benchmarks/bound_tightness.py [--cases 40] [--box sample] [--plot tightness.png]
"""

from __future__ import annotations

import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

import lipflow.strategies as lst  # noqa: E402
from lipflow.analysis.budget import error_budget  # noqa: E402
from lipflow.errors import NonConvergenceWarning  # noqa: E402

PRECISIONS = ("float16", "float32", "float64")
QUANTILES = (0.0, 0.1, 0.5, 0.9, 0.99, 1.0)
#: "longdouble (checked against float64): 3" fragments of ReferenceResult.describe()
_RUNG = re.compile(r"([\w.-]+ \((?:checked against [\w.-]+|UNSTABLE)\)): (\d+)")


@dataclass
class Tally:
    """What one precision's cases produced."""

    cases: int = 0
    samples: int = 0
    ratios: list[float] = field(default_factory=list)
    exact: int = 0
    violations: int = 0
    nonfinite_forward: int = 0
    nonfinite_inverse: int = 0
    undecided: int = 0
    unbounded: int = 0
    crashed: int = 0
    rungs_forward: Counter = field(default_factory=Counter)
    rungs_inverse: Counter = field(default_factory=Counter)
    budget_seconds: float = 0.0
    roundtrip_seconds: float = 0.0


def _rungs(description: str) -> Counter:
    return Counter({name: int(count) for name, count in _RUNG.findall(description)})


def _roundtrip_seconds(case: lst.LemmaCase, repeats: int) -> float:
    """Best-of CPU time of a plain float64 forward + inverse of the case's inputs."""
    x = case.ctx.to_float64(case.x)
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        with np.errstate(all="ignore"):
            case.model.inverse(case.params, case.model.forward(case.params, x))
        best = min(best, time.process_time() - start)
    return best


def measure(working: str, cases: int, box: str) -> Tally:
    tally = Tally()

    @settings(max_examples=cases, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=lst.lemma_cases(lemma="reconstruction", ctx=working, dim=2, depth=(2, 8), n=(1, 3),
                                conditioner_norm=(0.1, 1.2)))
    def run(case: lst.LemmaCase) -> None:
        start = time.process_time()
        try:
            budget = error_budget(case.model, case.params, case.x, ctx=case.ctx, box=box, estimates=False)
        except (OverflowError, ArithmeticError) as error:  # counted and shown, never skipped silently
            tally.crashed += len(case.x)
            tally.cases += 1
            tally.samples += len(case.x)
            print(f"  CRASH ({working}): {type(error).__name__}: {error} at x={case.ctx.to_float64(case.x).tolist()}")
            return
        tally.budget_seconds += time.process_time() - start
        tally.roundtrip_seconds += _roundtrip_seconds(case, repeats=5)
        tally.cases += 1
        tally.samples += len(case.x)
        summary = budget.summary()
        tally.violations += summary.violations
        tally.nonfinite_forward += summary.nonfinite_forward
        tally.nonfinite_inverse += summary.nonfinite_inverse
        tally.undecided += summary.reference_unstable
        tally.unbounded += summary.unbounded
        tally.rungs_forward += _rungs(budget.reference_forward)
        tally.rungs_inverse += _rungs(budget.reference_inverse)
        usable = budget.decided & np.isfinite(budget.bound) & (budget.bound > 0)
        ratios = budget.ratio[usable]
        tally.exact += int(np.sum(ratios == 0))
        tally.ratios.extend(float(r) for r in ratios[ratios > 0])
        if summary.violations:
            print(f"  VIOLATION ({working}): {budget.counterexample(int(budget.violations[0]))}")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonConvergenceWarning)
        run()
    return tally


def report(working: str, tally: Tally) -> None:
    ratios = np.asarray(tally.ratios)
    print(f"\n{working}: {tally.cases} cases, {tally.samples} samples")
    if ratios.size:
        quantiles = "  ".join(f"q{int(100 * q)}={np.quantile(ratios, q):.3g}" for q in QUANTILES)
        print(f"  tightness ||x - x_delta2|| / bound over {ratios.size} samples with a nonzero error: {quantiles}")
        print(f"  samples with ratio > 0.1: {int(np.sum(ratios > 0.1))}, > 0.5: {int(np.sum(ratios > 0.5))}")
    else:
        print("  tightness: no sample with a nonzero error and a finite bound")
    print(f"  exact reconstructions (error 0): {tally.exact}")
    print(f"  violations {tally.violations} | non-finite forward {tally.nonfinite_forward} | non-finite inverse "
          f"{tally.nonfinite_inverse} | undecided {tally.undecided} | unbounded (Lip = inf) {tally.unbounded} "
          f"| error_budget raised {tally.crashed}")
    for what, rungs in (("forward", tally.rungs_forward), ("inverse", tally.rungs_inverse)):
        used = ", ".join(f"{name}: {count}" for name, count in sorted(rungs.items(), key=lambda kv: -kv[1]))
        print(f"  reference rungs ({what}, samples): {used}")
    ratio = tally.budget_seconds / tally.roundtrip_seconds if tally.roundtrip_seconds > 0 else float("inf")
    print(f"  CPU: error_budget {tally.budget_seconds:.2f} s, float64 round trip "
          f"{tally.roundtrip_seconds * 1e3:.2f} ms (best of 5 per case); ratio {ratio:.3g}x")


def save_plot(path: Path, tallies: dict[str, Tally]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lipflow.plots import plot_tightness

    ax = plot_tightness({name: np.asarray(t.ratios) for name, t in tallies.items()})
    ax.axvline(0.0, color="k", lw=0.8, ls="--")
    ax.set_title("Reconstruction error / proven bound (ratio 1 = bound attained)", fontsize=9)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    os.close(handle)
    ax.figure.savefig(temporary, dpi=100)
    os.replace(temporary, path)
    plt.close(ax.figure)
    print(f"\nhistogram written to {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40, help="lemma cases per precision (default 40)")
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--box", choices=("sample", "batch"), default="sample",
                        help="where Lip(F^-1) is proven: per sample (tightest) or one box per case")
    parser.add_argument("--plot", type=Path, default=None, help="write a histogram of the ratios (PNG)")
    args = parser.parse_args(argv)
    if args.cases < 1:
        parser.error("--cases must be at least 1")
    print(f"bound tightness: {args.cases} reconstruction lemma cases per precision, Lip(F^-1) proven per {args.box}")
    tallies = {}
    for working in args.precisions:
        tallies[working] = measure(working, args.cases, args.box)
        report(working, tallies[working])
    if args.plot is not None:
        save_plot(args.plot, tallies)
    return 1 if any(t.violations for t in tallies.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
