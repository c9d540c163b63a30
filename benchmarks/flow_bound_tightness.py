"""Tightness, coverage and cost of proven Lipschitz bounds of random flows, and a soundness run.

Random flows (dim 4) of depth 2, 8, 20 and 50 cycle through affine couplings (every scale kind),
additive couplings, invertible linear layers, ActNorm, reversals and residual blocks, with
random parameters (``Flow.init``). For each depth the benchmark reports, side by side for the
default bound (``lipflow.bounds.lipschitz``: ``lem:mean-value-flow`` on boxes, at most 16
sub-boxes), the branch and bound with a larger budget (``lem:box-subdivision``,
``lipflow.bounds.subdivide.subdivide``, ``--refine`` sub-boxes) and the plain per-layer
composition (``lem:composition``, method="composition"):

* flow on a box (each half-width of ``--half`` around an N(0, 1) input, or around its image for
  the inverse; half-widths above 0.01 only up to ``--wide-max-depth``): upper / lower, the lower
  side an estimate (the larger of ``lipflow.bounds.estimate``'s sampled-and-optimised value and
  the subdivision's ||J(centre)|| over its pieces): median, p90, max over the flows, and the
  share of finite upper bounds; the sub-boxes the subdivision used;
* global (no box): the same ratio against the estimate on [-3, 3]^d, and the share of flows
  that have a finite global bound at all (affine couplings have none, ``thm:coupling-stability``);
* the error budget in bfloat16 on N(0, 1) inputs (per-sample boxes around [z, z_delta]): the
  share of samples with a finite round trip that get a finite proven Lip(F^-1), and violations;
* the cost of one box bound (default; subdivided) relative to one float64 forward pass of the
  same flow (CPU time, this process, one BLAS thread: provisional, noisy on a shared machine).

``--soundness N`` instead draws N random cases (depth 1..10, boxes of half-width 1e-6..0.5, both
directions; the mean-value bound on one piece, or with ``--soundness-pieces P`` the branch and
bound with P pieces, checked on the box and on its piece with the smallest bound) and counts
unsound bounds: a sampled-and-optimised lower bound above the upper one (beyond 1e-12
relative). It prints how many cases were decided (a finite upper bound) and how many had none.
Every number is labelled bound (proven), estimate (sampled) or ratio.

Run: nice -n 10 python benchmarks/flow_bound_tightness.py [--flows 3] [--depths 2 8 20 50] [--half 0.01 0.1]
     nice -n 10 python benchmarks/flow_bound_tightness.py --soundness 10000 [--soundness-pieces 4]
"""

from __future__ import annotations

import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

import lipflow  # noqa: E402
from lipflow.analysis.budget import error_budget  # noqa: E402
from lipflow.bounds import Box, estimate, lipschitz  # noqa: E402
from lipflow.bounds.flow import flow_lipschitz  # noqa: E402
from lipflow.bounds.meanvalue import REFINE_TOL  # noqa: E402
from lipflow.bounds.subdivide import subdivide  # noqa: E402
from lipflow.errors import LipflowError, UnboundedError  # noqa: E402

DIM = 4
DEPTHS = (2, 8, 20, 50)
SCALES = (lambda: lipflow.Sigmoid(shift=2.0), lambda: lipflow.Bounded(0.5, 1.0),
          lambda: lipflow.SoftClamp(1.0), lambda: lipflow.Exp())


def random_flow(depth: int, rng: np.random.Generator) -> tuple[lipflow.Flow, list]:
    """A flow of ``depth`` blocks cycling coupling / mixing / normalising layers, random params."""
    blocks: list[lipflow.Block] = []
    for k in range(depth):
        slot = k % 3
        if slot == 0:
            if rng.random() < 0.7:
                mlp = lambda: lipflow.MLP(hidden=(8,), activation=str(rng.choice(["tanh", "swish"])))  # noqa: E731
                blocks.append(lipflow.AffineCoupling(DIM, s=mlp(), t=mlp(), scale=SCALES[rng.integers(4)](),
                                                     form=str(rng.choice(["realnvp", "glow"]))))
            else:
                blocks.append(lipflow.AdditiveCoupling(DIM, t=lipflow.MLP(hidden=(8,))))
        elif slot == 1:
            blocks.append(lipflow.InvertibleLinear(DIM, seed=int(rng.integers(10**6))) if rng.random() < 0.7
                          else lipflow.Reverse(DIM))
        else:
            blocks.append(lipflow.Residual(DIM, hidden=(8,), coeff=float(rng.uniform(0.5, 0.9))) if rng.random() < 0.3
                          else lipflow.ActNorm(DIM))
    flow = lipflow.Flow(blocks)
    return flow, flow.init(int(rng.integers(2**31)))


def _quiet():
    context = warnings.catch_warnings()
    context.__enter__()
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    return context


def _upper(flow, params, direction, box, method):
    try:
        if box is None:
            return lipschitz(flow, params, direction=direction).value
        return flow_lipschitz(flow, params, direction=direction, box=box, method=method).value
    except (UnboundedError, OverflowError):
        return math.inf
    except LipflowError as error:  # e.g. no global bound for an affine coupling
        if "no finite" in str(error) or "global" in str(error) or "unbounded" in str(error).lower():
            return math.inf
        raise


def _stats(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    share = f"finite {len(finite)}/{len(values)}"
    if not finite:
        return f"none finite ({share})"
    arr = np.array(finite)
    return f"median {np.median(arr):.3g}  p90 {np.quantile(arr, 0.9):.3g}  max {arr.max():.3g}  ({share})"


def tightness(depth: int, flows: int, half: float, seed: int, refine: int, tol: float,
              with_global: bool = True, verbose: bool = False) -> dict:
    """Ratios per row; the lower side of every ratio is the larger of two estimates: the sampled-
    and-optimised one (``estimate``) and the branch and bound's ||J(centre)|| over its pieces."""
    rng = np.random.default_rng(seed + depth)
    rows: dict[str, list[float]] = {}
    costs: dict[str, list[float]] = {}
    pieces: list[int] = []
    for _ in range(flows):
        flow, params = random_flow(depth, rng)
        x = rng.standard_normal(DIM)
        z = np.asarray(flow.forward(params, x[None, :]))[0]
        if not np.all(np.isfinite(z)):
            continue
        start = time.perf_counter()
        for _repeat in range(20):
            flow.forward(params, x[None, :], ctx="float64")
        forward_seconds = (time.perf_counter() - start) / 20
        for direction, centre in (("forward", x), ("inverse", z)):
            box = Box(centre - half, centre + half)
            lower = estimate(flow, params, direction=direction, box=box, n_samples=64, n_starts=2, maxiter=20).value
            refined = None
            if refine:
                start = time.perf_counter()
                refined = subdivide(flow, params, box=box, direction=direction, tol=tol, max_boxes=refine)
                costs.setdefault("subdivided", []).append((time.perf_counter() - start) / forward_seconds)
                lower = max(lower, refined.lower)
                pieces.append(refined.boxes)
            start = time.perf_counter()
            upper = _upper(flow, params, direction, box, "auto")
            costs.setdefault("default", []).append((time.perf_counter() - start) / forward_seconds)
            rows.setdefault(f"box {direction} (default)", []).append(upper / lower)
            if refined is not None:
                rows.setdefault(f"box {direction} (subdivided)", []).append(refined.upper / lower)
            if verbose:
                line = f"      flow {_ + 1} {direction}: default {upper / lower:.3g}"
                if refined is not None:
                    line += (f", subdivided {refined.upper / lower:.3g} on {refined.boxes} sub-boxes "
                             f"({refined.reason}, {costs['subdivided'][-1]:.3g}x a forward pass)")
                print(line, flush=True)
            composed = _upper(flow, params, direction, box, "composition")
            rows.setdefault(f"box {direction} (composition)", []).append(composed / lower)
            if with_global:
                global_lower = estimate(flow, params, direction=direction, n_samples=64, n_starts=1, maxiter=10).value
                rows.setdefault(f"global {direction}", []).append(_upper(flow, params, direction, None, "auto")
                                                                  / global_lower)
    return {"rows": rows, "cost": costs, "pieces": pieces}


def budget_share(depth: int, flows: int, samples: int, seed: int, baseline: bool) -> dict:
    rng = np.random.default_rng(seed + 1000 + depth)
    out = {"finite_roundtrip": 0, "proven": 0, "violations": 0, "baseline_proven": 0, "seconds": 0.0}
    for _ in range(flows):
        flow, params = random_flow(depth, rng)
        x = rng.standard_normal((samples, DIM)).astype(np.float32)
        start = time.perf_counter()
        budget = error_budget(flow, params, x, ctx="bfloat16", estimates=False)
        out["seconds"] += time.perf_counter() - start
        finite = ~budget.nonfinite_forward & ~budget.nonfinite_inverse
        out["finite_roundtrip"] += int(finite.sum())
        out["proven"] += int((finite & np.isfinite(budget.lipschitz_bound)).sum())
        out["violations"] += int(budget.violations.size)
        if baseline:
            def composed(model, p, low, high):
                try:
                    return flow_lipschitz(model, p, direction="inverse", box=Box(low, high),
                                          method="composition").value
                except (UnboundedError, OverflowError):
                    return math.inf

            old = error_budget(flow, params, x, ctx="bfloat16", estimates=False, lipschitz=composed)
            out["baseline_proven"] += int((finite & np.isfinite(old.lipschitz_bound)).sum())
    return out


def soundness(cases: int, seed: int, refine: int = 0) -> int:
    """Random cases; ``refine`` > 0: the branch and bound (lem:box-subdivision) with at most
    ``refine`` pieces (tolerance 1, so it always uses them), checked on the whole box and on its
    piece with the smallest bound."""
    rng = np.random.default_rng(seed)
    decided = unproven = unsound = pieces_checked = 0
    worst = 0.0
    start = time.perf_counter()
    for case in range(cases):
        flow, params = random_flow(int(rng.integers(1, 11)), rng)
        direction = "forward" if rng.random() < 0.5 else "inverse"
        centre = rng.standard_normal(DIM)
        if direction == "inverse":
            centre = np.asarray(flow.forward(params, centre[None, :]))[0]
            if not np.all(np.isfinite(centre)):
                continue
        half = float(10 ** rng.uniform(-6, math.log10(0.5)))
        box = Box(centre - half, centre + half)
        checks = []  # (box, proven bound on it)
        if refine:
            result = subdivide(flow, params, box=box, direction=direction, tol=1.0, max_boxes=refine)
            upper = result.upper
            finite = [(piece, value) for piece, value in result.pieces if math.isfinite(value)]
            if math.isfinite(upper) and len(result.pieces) > 1:
                checks.append(min(finite, key=lambda item: item[1]))
        else:
            try:  # the mean-value bound on one piece (bisected pieces are such boxes too)
                upper = flow_lipschitz(flow, params, direction=direction, box=box, method="meanvalue",
                                       splits=1).value
            except (UnboundedError, OverflowError):
                upper = math.inf
        if not math.isfinite(upper):
            unproven += 1
            continue
        decided += 1
        checks.insert(0, (box, upper))
        pieces_checked += len(checks) - 1
        for index, (region, bound) in enumerate(checks):
            lower = estimate(flow, params, direction=direction, box=region, n_samples=8, n_starts=1, maxiter=3,
                             seed=case).value
            worst = max(worst, lower / bound)
            if lower > bound * (1 + 1e-12):
                unsound += 1
                what = "box" if index == 0 else "smallest piece"
                print(f"UNSOUND case {case} ({what}): depth {len(flow.blocks)} {direction} half {half:.3g}: "
                      f"bound {bound!r} < estimate {lower!r}")
        if (case + 1) % 500 == 0:
            print(f"  {case + 1} cases, {time.perf_counter() - start:.0f} s: {decided} decided, {unproven} without "
                  f"a finite bound, {unsound} unsound, largest estimate/bound {worst:.6f}", flush=True)
    mode = f"branch and bound, {refine} pieces" if refine else "mean-value bound on one piece"
    print(f"soundness ({mode}): {cases} cases drawn, {decided} decided (finite proven bound), {unproven} without "
          f"a finite bound, {pieces_checked} pieces checked too; unsound bounds: {unsound}; largest estimate/bound "
          f"ratio {worst:.6f} (must be <= 1); {time.perf_counter() - start:.0f} s")
    return unsound


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS))
    parser.add_argument("--flows", type=int, default=3, help="random flows per depth (default 3)")
    parser.add_argument("--half", type=float, nargs="+", default=[0.01, 0.1],
                        help="box half-widths (default 0.01 0.1)")
    parser.add_argument("--wide-max-depth", type=int, default=20,
                        help="half-widths above 0.01 only up to this depth (default 20)")
    parser.add_argument("--refine", type=int, default=256,
                        help="sub-boxes of the branch and bound (lem:box-subdivision; default 256, 0: off)")
    parser.add_argument("--tol", type=float, default=REFINE_TOL,
                        help=f"its stopping ratio bound/estimate (default {REFINE_TOL}, as lipschitz's own)")
    parser.add_argument("--samples", type=int, default=16,
                        help="bfloat16 budget samples per flow (default 16; a quarter beyond depth 20)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the composition baseline in the budget")
    parser.add_argument("--no-budget", action="store_true", help="skip the bfloat16 budget rows")
    parser.add_argument("--soundness", type=int, default=0, help="run N random soundness cases instead")
    parser.add_argument("--soundness-pieces", type=int, default=0,
                        help="with --soundness: check the branch and bound with this many pieces (0: one piece)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="print each flow's ratios as they come")
    args = parser.parse_args(argv)
    _quiet()
    if args.soundness:
        return 1 if soundness(args.soundness, args.seed, args.soundness_pieces) else 0
    print(f"random flows, dim {DIM}, {args.flows} flows per depth; ratios = proven upper bound / lower estimate "
          f"(max of sampled-and-optimised and the subdivision's centre values); subdivided = branch and bound "
          f"with at most {args.refine} sub-boxes, tolerance {args.tol}")
    for depth in args.depths:
        print(f"\ndepth {depth}:")
        for index, half in enumerate(args.half):
            if half > 0.01 and depth > args.wide_max_depth:
                print(f"  half-width {half}: skipped (--wide-max-depth {args.wide_max_depth})")
                continue
            result = tightness(depth, args.flows, half, args.seed, args.refine, args.tol, with_global=index == 0,
                               verbose=args.verbose)
            print(f"  half-width {half}:")
            for name, values in result["rows"].items():
                print(f"    {name:28s} upper/lower {_stats(values)}")
            for name, values in result["cost"].items():
                cost = np.array(values)
                print(f"    cost of one box bound ({name}) / one float64 forward pass: median {np.median(cost):.3g}x, "
                      f"max {cost.max():.3g}x")
            if result["pieces"]:
                used = np.array(result["pieces"])
                print(f"    sub-boxes used (subdivided): median {np.median(used):.0f}, max {used.max()} "
                      f"(budget {args.refine})")
        if args.no_budget:
            continue
        samples = args.samples if depth <= 20 else max(1, args.samples // 4)
        baseline = not args.no_baseline and depth <= 20  # the composition is slow and vacuous deeper
        share = budget_share(depth, args.flows, samples, args.seed, baseline)
        total = max(share["finite_roundtrip"], 1)
        line = (f"  bfloat16 budget: finite proven Lip(F^-1) for {share['proven']}/{share['finite_roundtrip']} "
                f"finite-round-trip samples ({100 * share['proven'] / total:.1f}%)")
        if baseline:
            line += f", composition {share['baseline_proven']} ({100 * share['baseline_proven'] / total:.1f}%)"
        print(line + f"; violations {share['violations']}; {share['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
