"""The precision advisor: the cheapest per-block precisions whose error stays within a tolerance.

``advise(flow, params, box=..., tol=1e-3)`` returns an :class:`Advice`: a :class:`Plan`, how its
error was obtained ("proven": an a priori bound, ``lem:rounding-composition``, on the whole box;
"measured": ground truth on the given samples plus out-of-distribution noise and
dequantisation-box attack inputs, an *estimate*), its cost next to all-float64 and
all-float32, and a validation run of the plan (predicted vs measured error per block).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as onp

from lipflow.analysis.advise_report import Advice, BlockReport, NoPlanError
from lipflow.analysis.plan_search import Decision, SearchResult, exact_search, greedy_search
from lipflow.analysis.stress import stress_inputs
from lipflow.blocks.base import Block
from lipflow.blocks.flow import Flow
from lipflow.blocks.plan import Plan, run_forward, run_forward_and_logdet, run_inverse
from lipflow.blocks.residual import Residual
from lipflow.bounds.api import as_box
from lipflow.bounds.rigorous import Box
from lipflow.bounds.rounding import block_rounding_error, cast_error, norm_upper, widen
from lipflow.bounds.rounding_flow import TARGETS, PlanBound, plan_error_bound
from lipflow.errors import LipflowError
from lipflow.precision import precision

__all__ = ["COST_MODELS", "DEFAULT_PRECISIONS", "MODES", "Advice", "NoPlanError", "advise", "block_costs"]

DEFAULT_PRECISIONS = ("bfloat16", "float16", "float32", "float64")
MODES = ("proven", "measured")
COST_MODELS = {
    "bytes": "bytes moved per batch of 256 samples (parameters + block input and output at the storage width)",
    "time": "measured NumPy time per block and precision (median of 3 runs on 256 samples, this machine)",
}
_BYTES = {"float16": 2, "bfloat16": 2, "float16-strict": 2, "bfloat16-strict": 2, "float32": 4, "float64": 8,
          "longdouble": 16}
_BATCH = 256


def _count(tree: Any) -> int:
    if isinstance(tree, dict):
        return sum(_count(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(_count(v) for v in tree)
    return int(onp.size(tree))


def _iterations(block: Block, name: str) -> int:
    if not isinstance(block, Residual):
        return 1
    u = precision(name).unit_roundoff
    return min(block.max_iter, max(1, math.ceil(math.log(u) / math.log(block.coeff))))


def block_costs(flow: Flow, params: Sequence[Any], precisions: Sequence[str], cost: str = "bytes",
                x: onp.ndarray | None = None) -> dict[tuple[str, int], dict[str, float]]:
    """{(direction, block): {precision: cost}} under the cost model ``cost`` (:data:`COST_MODELS`)."""
    if cost not in COST_MODELS:
        raise LipflowError(f"cost must be one of {', '.join(COST_MODELS)}, got {cost!r}")
    table: dict[tuple[str, int], dict[str, float]] = {}
    if cost == "bytes":
        for k, (block, p) in enumerate(zip(flow.blocks, params, strict=True)):
            words = _count(p) + 2 * flow.dim * _BATCH
            table["forward", k] = {n: float(_BYTES[n] * words) for n in precisions}
            table["inverse", k] = {n: float(_BYTES[n] * words * _iterations(block, n)) for n in precisions}
        return table
    x = onp.random.default_rng(0).uniform(-1, 1, (_BATCH, flow.dim)) if x is None else onp.asarray(x)[:_BATCH]
    prepared = [b._prepare(p) for b, p in zip(flow.blocks, params, strict=True)]
    trace = flow.forward_trace(params, x, ctx="float64")
    for k, block in enumerate(flow.blocks):
        for direction, inp in (("forward", trace[k]), ("inverse", trace[k + 1])):
            table[direction, k] = {}
            for n in precisions:
                ctx = precision(n)
                run = block._forward if direction == "forward" else block._inverse
                times = []
                for _ in range(3):
                    start = time.perf_counter()
                    with onp.errstate(all="ignore"):
                        run(ctx.cast(prepared[k]), ctx.cast(inp), ctx)
                    times.append(time.perf_counter() - start)
                table[direction, k][n] = float(onp.median(times))
    return table


def _plan_cost(plan: Plan, costs: dict[tuple[str, int], dict[str, float]], target: str) -> float:
    total = 0.0
    for k in range(len(plan)):
        if target != "inverse":
            total += costs["forward", k][plan.forward[k]]
        if target in ("reconstruction", "inverse"):
            total += costs["inverse", k][plan.inverse[k]]
    return total


def _bits(name: str) -> int:
    return precision(name).mantissa_bits


def _directions(target: str) -> tuple[str, ...]:
    return {"reconstruction": ("forward", "inverse"), "forward": ("forward",), "inverse": ("inverse",),
            "logdet": ("forward",)}[target]


def _assemble(flow: Flow, choices: dict[tuple[str, int], str], top: str) -> Plan:
    n = len(flow)
    return Plan(forward=tuple(choices.get(("forward", k), top) for k in range(n)),
                inverse=tuple(choices.get(("inverse", k), top) for k in range(n)))


# ---- proven -------------------------------------------------------------------------------------------
def _order(flow: Flow, target: str) -> list[tuple[str, int]]:
    keys = []
    for direction in _directions(target):
        ks = range(len(flow)) if direction == "forward" else reversed(range(len(flow)))
        keys += [(direction, k) for k in ks]
    return keys


def _proven_decisions(flow: Flow, params: Sequence[Any], envelope: PlanBound, precisions: Sequence[str],
                      costs: dict, target: str) -> list[Decision]:
    decisions = []
    sources = ("float64", *precisions)
    for direction, k in _order(flow, target):
        chain = envelope.forward if direction == "forward" else envelope.inverse
        box = chain.boxes[k]
        if direction == "forward":
            weight = envelope.lip_inverse if target == "reconstruction" else 1.0
            weight *= math.prod(chain.lips[k + 1:])
        else:
            weight = math.prod(chain.lips[:k])
        err, cast = {}, {}
        for p in precisions:
            try:
                widened = widen(box, cast_error(box, "float64", p))
                err[p] = weight * norm_upper(block_rounding_error(flow.blocks[k], params[k], widened, p, direction))
                for q in sources:
                    cast[q, p] = weight * chain.lips[k] * norm_upper(cast_error(box, q, p))
            except LipflowError:
                err[p] = math.inf
        decisions.append(Decision(tuple(precisions), dict(costs[direction, k]), err, cast))
    return decisions


def _hull(a: PlanBound, b: PlanBound) -> PlanBound:
    from dataclasses import replace

    def chain(x, y):
        if x is None:
            return y
        boxes = tuple(p.hull(q) for p, q in zip(x.boxes, y.boxes, strict=True))
        lips = tuple(max(p, q) for p, q in zip(x.lips, y.lips, strict=True))
        return replace(x, boxes=boxes, lips=lips)

    return replace(a, forward=chain(a.forward, b.forward), inverse=chain(a.inverse, b.inverse),
                   lip_inverse=max(a.lip_inverse, b.lip_inverse))


def _limiting(bound: PlanBound) -> str:
    shares = [("forward", k, v) for k, v in enumerate(bound.contributions_forward)]
    shares += [("inverse", k, v) for k, v in enumerate(bound.contributions_inverse)]
    direction, k, value = max(shares, key=lambda s: s[2])
    return f"block {k} ({direction}, contributes {value:.3g})"


def _search(decisions: list[Decision], tol: float, source: str, search: str, exact_limit: int) -> SearchResult | None:
    if search == "exact" or (search == "auto" and len(decisions) <= exact_limit):
        try:
            return exact_search(decisions, tol, source)
        except OverflowError:
            if search == "exact":
                raise
    return greedy_search(decisions, tol, source)


def _proven(flow, params, box, tol, target, precisions, costs, search, exact_limit, splits):
    top = max(precisions, key=_bits)
    accurate = Plan.uniform(flow, top)
    try:
        best = plan_error_bound(flow, params, accurate, box, target=target, splits=splits)
    except LipflowError as error:
        raise NoPlanError(f"no proven bound for the most accurate plan (all {top}) on this box: {error}",
                          best=math.inf, limiting=str(error)) from None
    if best.value > tol:
        raise NoPlanError(
            f"no plan meets tol={tol:g} provably: the best achievable bound (all {top}) is {best.value:.3g}, "
            f"limited by {_limiting(best)}; raise tol, shrink the box, add a wider precision or use mode='measured'",
            best=best.value, limiting=_limiting(best))
    envelope = best
    for _ in range(4):
        decisions = _proven_decisions(flow, params, envelope, precisions, costs, target)
        result = _search(decisions, tol, "float64", search, exact_limit)
        if result is None:
            break
        plan = _assemble(flow, dict(zip(_order(flow, target), result.choices, strict=True)), top)
        try:
            bound = plan_error_bound(flow, params, plan, box, target=target, splits=splits)
        except LipflowError:
            bound = None
        if bound is not None and bound.value <= tol:
            return plan, bound, result
        if bound is not None:
            envelope = _hull(envelope, bound)
        else:
            break
    # the search's plans did not verify: take the cheapest uniform plan whose own bound meets tol
    for name in sorted(precisions, key=lambda n: _plan_cost(Plan.uniform(flow, n), costs, target)):
        uniform = Plan.uniform(flow, name)
        try:
            bound = best if name == top else plan_error_bound(flow, params, uniform, box, target=target, splits=splits)
        except LipflowError:
            continue
        if bound.value <= tol:
            fallback = SearchResult(tuple(), _plan_cost(uniform, costs, target), bound.value,
                                    "fallback: the searched plans did not verify; cheapest uniform plan that does",
                                    math.nan, math.nan)
            return uniform, bound, fallback
    fallback = SearchResult(tuple(), 0.0, best.value, "fallback to the most accurate plan", math.nan, math.nan)
    return accurate, best, fallback


# ---- measured -----------------------------------------------------------------------------------------
def _truth(flow: Flow, params: Sequence[Any], x: onp.ndarray, target: str) -> Any:
    from lipflow.analysis.reference import reference_forward, reference_inverse

    if target == "reconstruction":
        return x
    if target == "forward":
        return reference_forward(flow, params, x, working="float32").as_float64()
    if target == "inverse":
        return reference_inverse(flow, params, x, working="float32").as_float64()
    _, ld = flow.forward_and_logdet(params, x.astype(onp.longdouble), ctx="longdouble")
    return onp.asarray(ld, dtype=onp.float64)


def plan_errors(flow: Flow, params: Sequence[Any], plan: Plan, x: onp.ndarray, truth: Any,
                target: str) -> onp.ndarray:
    """Per-sample measured error of ``plan`` (inf where the result is not finite)."""
    with onp.errstate(all="ignore"):
        if target == "reconstruction":
            value = run_inverse(flow, params, run_forward(flow, params, x, plan), plan)
        elif target == "forward":
            value = run_forward(flow, params, x, plan)
        elif target == "inverse":
            value = run_inverse(flow, params, x, plan)
        else:
            _, ld = run_forward_and_logdet(flow, params, x, plan)
            errors = onp.abs(ld - truth)
            return onp.where(onp.isfinite(errors), errors, onp.inf)
        errors = onp.linalg.norm(value - truth, axis=1)
    return onp.where(onp.isfinite(errors), errors, onp.inf)


def _measured(flow, params, sets, tol, target, precisions, costs, safety):
    import warnings

    from lipflow.errors import NonConvergenceWarning

    truths = {name: _truth(flow, params, xs, target) for name, xs in sets.items()}

    def worst(plan: Plan) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonConvergenceWarning)
            return max(float(onp.max(plan_errors(flow, params, plan, xs, truths[n], target), initial=0.0))
                       for n, xs in sets.items())

    top = max(precisions, key=_bits)
    plan = Plan.uniform(flow, top)
    best = worst(plan)
    if best > tol:
        raise NoPlanError(f"no plan meets tol={tol:g} on the measured inputs: the most accurate plan (all {top}) "
                          f"measures {best:.3g}; raise tol or add a wider precision", best=best, limiting="all blocks")
    keys = _order(flow, target)
    choices = {key: top for key in keys}
    keys.sort(key=lambda key: -(costs[key][top] - min(costs[key].values())))
    trials = 0
    error = best
    for key in keys:
        for option in sorted(precisions, key=lambda p: costs[key][p]):
            if costs[key][option] >= costs[key][choices[key]]:
                break
            trial = dict(choices)
            trial[key] = option
            candidate = _assemble(flow, trial, top)
            trials += 1
            value = worst(candidate)
            if value * safety <= tol:
                choices, error = trial, value
                break
    plan = _assemble(flow, choices, top)
    result = SearchResult(tuple(choices[k] for k in _order(flow, target)), _plan_cost(plan, costs, target), error,
                          f"greedy with measured checks ({trials} trial plans)", math.nan, math.nan)
    return plan, error, result


# ---- validation -------------------------------------------------------------------------------------
def _local_errors(flow: Flow, params: Sequence[Any], plan: Plan, x: onp.ndarray, target: str) -> dict[str, list[float]]:
    """Per block, max over samples of ||f_p(cast_p(v)) - f(v)|| with v the float64 activation
    rounded to the format the previous block stores (what the local bound eps_k + L_k c_k covers)."""
    import warnings

    from lipflow.errors import NonConvergenceWarning

    out: dict[str, list[float]] = {}
    prepared = [b._prepare(p) for b, p in zip(flow.blocks, params, strict=True)]

    def local(k: int, direction: str, v: onp.ndarray, previous: str) -> float:
        before, ctx = precision(previous), precision(getattr(plan, direction)[k])
        v = before.to_float64(before.cast(v))
        block = flow.blocks[k]
        exact = (block._forward if direction == "forward" else block._inverse)(prepared[k], v, precision("float64"))
        with onp.errstate(all="ignore"):
            run = block._forward if direction == "forward" else block._inverse
            got = ctx.to_float64(run(ctx.cast(prepared[k]), ctx.cast(v), ctx))
        return float(onp.max(onp.linalg.norm(got - exact, axis=1)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonConvergenceWarning)
        z = x
        if target != "inverse":
            trace = flow.forward_trace(params, x, ctx="float64")
            out["forward"] = [local(k, "forward", trace[k], "float64" if k == 0 else plan.forward[k - 1])
                              for k in range(len(flow))]
            z = trace[-1]
        if target in ("reconstruction", "inverse"):
            inv_trace, _ = flow.inverse_trace(params, z, ctx="float64")  # z_L .. z_0
            first = plan.forward[-1] if target == "reconstruction" else "float64"
            n = len(flow)
            out["inverse"] = [local(k, "inverse", inv_trace[n - 1 - k], first if k == n - 1 else plan.inverse[k + 1])
                              for k in range(n)]
    return out


def _attribution(flow: Flow, params: Sequence[Any], x: onp.ndarray, lowest: str) -> list[float] | None:
    if len(flow) > 32 or precision(lowest).name.endswith("-strict"):
        return None
    import warnings

    from lipflow.analysis.attribution import layer_attribution

    ctx = precision(lowest)
    try:
        with warnings.catch_warnings(), onp.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            a = layer_attribution(flow, params, ctx.cast(x[:8]), ctx=ctx)
    except (LipflowError, ArithmeticError, ValueError):
        return None
    total = a.forward_contribution + a.inverse_contribution
    return [float(v) for v in onp.nanmax(onp.where(onp.isfinite(total), total, onp.inf), axis=1)]


def advise(flow: Block, params: Any, x: Any = None, box: Any = None, *, tol: float,
           target: str = "reconstruction", precisions: Sequence[str] = DEFAULT_PRECISIONS, mode: str = "proven",
           cost: str = "bytes", search: str = "auto", exact_limit: int = 24, n_validate: int = 256,
           n_noise: int = 32, attack_radius: float | None = None, safety: float = 2.0, splits: int = 4,
           seed: int = 0) -> Advice:
    """The cheapest plan whose error is <= ``tol`` (see the module docstring).

    Args:
        flow: the model (a single block is a flow of one).
        params: its parameters (from ``flow.init`` or ``load_flow``).
        x: samples, shape (n, dim): the inputs the measured mode checks (for ``target="inverse"``
            they are latent points z); in proven mode without ``box`` their bounding box is used.
        box: (low, high) or a Box of inputs (outputs z for ``"inverse"``): the proven mode's domain.
        tol: the error tolerance (l2 per sample, or absolute for ``"logdet"``).
        target: "reconstruction" ||x - F_p^-1(F_p(x))||, "forward", "inverse" or "logdet".
        precisions: candidate contexts (plain or strict float16/bfloat16, float32, float64, longdouble).
        mode: "proven" (a priori bound on the whole box) or "measured" (ground truth on x, noise
            around it and dequantisation-box attacks; an estimate).
        cost: "bytes" or "time" (:data:`COST_MODELS`).
        search: "auto" (exact up to ``exact_limit`` decisions, else greedy), "exact" or "greedy".
        attack_radius: half-width of the dequantisation box (default 1/512 of the data's range).
        splits: sub-boxes per affine coupling in the Lipschitz bounds (more is tighter, slower).
        safety: measured mode accepts a lowered block only if the measured error times ``safety``
            stays <= tol (a maximum over samples underestimates the supremum; default 2).

    Raises:
        NoPlanError: no plan meets ``tol`` (the message gives the best achievable and the
            limiting block).
    """
    params = params if isinstance(flow, Flow) else [params]
    flow = flow if isinstance(flow, Flow) else Flow([flow])
    if target not in TARGETS:
        raise LipflowError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    if mode not in MODES:
        raise LipflowError(f"mode must be 'proven' or 'measured', got {mode!r}")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
        raise LipflowError(f"tol must be a positive number, got {tol!r}")
    if not (isinstance(safety, (int, float)) and safety >= 1):
        raise LipflowError(f"safety must be a number >= 1, got {safety!r}")
    if search not in ("auto", "exact", "greedy"):
        raise LipflowError(f"search must be 'auto', 'exact' or 'greedy', got {search!r}")
    names = tuple(dict.fromkeys(Plan.uniform(1, p).forward[0] for p in precisions))
    if not names:
        raise LipflowError("precisions is empty; e.g. precisions=('bfloat16', 'float32', 'float64')")
    rng = onp.random.default_rng(seed)
    if x is not None:
        x = onp.asarray(x, dtype=onp.float64)
        if x.ndim != 2 or x.shape[1] != flow.dim or len(x) == 0:
            raise LipflowError(f"x must have shape (n, {flow.dim}) with n >= 1, got {x.shape}")
        if not onp.all(onp.isfinite(x)):
            raise LipflowError("x contains Inf or NaN; pass finite samples")
    region = as_box(box, flow.dim)
    if region is None and x is not None and mode == "proven":
        region = Box(x.min(axis=0), x.max(axis=0))
    if mode == "proven" and region is None:
        raise LipflowError("mode='proven' needs box=(low, high) or samples x (their bounding box is used)")
    if mode == "measured" and x is None:
        if region is None:
            raise LipflowError("mode='measured' needs samples x (or a box to sample from)")
        x = rng.uniform(region.lo, region.hi, (n_validate, flow.dim))
    if x is not None and region is not None and mode == "proven" and not region.contains(x):
        raise LipflowError("some samples x lie outside the box: a proven plan says nothing about them; enlarge the box")
    costs = block_costs(flow, params, names, cost, x)
    lowest = min(names, key=_bits)
    started = time.perf_counter()
    if mode == "proven":
        if target == "logdet":
            raise LipflowError("proven bounds cover reconstruction, forward and inverse errors; "
                               "log-determinant errors are measured: use mode='measured'")
        plan, bound, result = _proven(flow, params, region, tol, target, names, costs, search, exact_limit, splits)
        claimed, kind = bound.value, "upper"
        how = (f"proven: a priori bound (lem:rounding-composition) for every input in the box "
               f"lo={region.lo.tolist()}, hi={region.hi.tolist()}")
        validation = {"box samples": rng.uniform(region.lo, region.hi, (n_validate, flow.dim))}
        if x is not None:
            validation["given samples"] = x
    else:
        held = max(1, len(x) // 4) if len(x) >= 8 else 0
        order = rng.permutation(len(x))
        search_x, held_x = x[order[held:]], x[order[:held]]
        spread = float(onp.max(x.max(axis=0) - x.min(axis=0))) or 1.0
        radius = spread / 512 if attack_radius is None else float(attack_radius)
        u = precision(lowest).unit_roundoff
        sets = {"samples": search_x, **stress_inputs(flow, params, search_x, n_noise=n_noise, radius=radius, u=u,
                                                      rng=rng)}
        if target in ("inverse", "logdet"):
            sets.pop("attack", None)
        plan, claimed, result = _measured(flow, params, sets, tol, target, names, costs, safety)
        bound, kind = None, "estimate"
        how = (f"measured: max error against ground truth on {len(search_x)} samples, "
               f"{3 * n_noise} out-of-distribution and {0 if 'attack' not in sets else len(sets['attack'])} "
               f"dequantisation-box attack inputs (radius {radius:.3g}), accepted at <= tol/{safety:g}; "
               "an estimate, not a bound")
        validation = {"held-out samples": held_x} if held else {}
        validation.update({k: v for k, v in sets.items() if k != "samples"})
    search_seconds = time.perf_counter() - started
    measured = {}
    for name, xs in validation.items():
        truth = _truth(flow, params, xs, target)
        errors = plan_errors(flow, params, plan, xs, truth, target)
        measured[name] = (float(onp.max(errors[onp.isfinite(errors)], initial=0.0)), len(xs),
                          int(onp.sum(~onp.isfinite(errors))))
    probe = next(iter(validation.values())) if validation else x
    local = _local_errors(flow, params, plan, probe[: min(len(probe), 128)], target)
    attribution = _attribution(flow, params, probe, lowest) if target != "logdet" else None
    reports = []
    for k, block in enumerate(flow.blocks):
        predicted_f = predicted_i = None
        if bound is not None and bound.forward is not None:
            predicted_f = bound.forward.eps[k] + bound.forward.lips[k] * bound.forward.casts[k]
        if bound is not None and bound.inverse is not None:
            predicted_i = bound.inverse.eps[k] + bound.inverse.lips[k] * bound.inverse.casts[k]
        forced = [f"{d}={getattr(plan, d)[k]}" for d in _directions(target)
                  if costs[d, k][getattr(plan, d)[k]] > min(costs[d, k].values())]
        reports.append(BlockReport(
            index=k, kind=type(block).__name__, forward=plan.forward[k], inverse=plan.inverse[k],
            bound_forward=predicted_f, bound_inverse=predicted_i,
            measured_forward=local.get("forward", [None] * len(flow))[k],
            measured_inverse=local.get("inverse", [None] * len(flow))[k],
            contribution_forward=None if bound is None else bound.contributions_forward[k],
            contribution_inverse=None if bound is None else bound.contributions_inverse[k],
            forced=", ".join(forced), attribution=None if attribution is None else attribution[k]))
    float32 = "float32" if "float32" in names else None
    uniform32 = Plan.uniform(flow, "float32")
    if bound is not None:
        try:
            float32_error = plan_error_bound(flow, params, uniform32, region, target=target, splits=splits).value
        except LipflowError:
            float32_error = math.inf
    else:
        float32_error = max(float(onp.max(plan_errors(flow, params, uniform32, xs, _truth(flow, params, xs, target),
                                                      target), initial=0.0)) for xs in validation.values())
    return Advice(
        plan=plan, target=target, tol=tol, mode=mode, how=how, error=claimed, kind=kind, bound=bound,
        measured=measured, cost=_plan_cost(plan, costs, target),
        cost_float64=_plan_cost(Plan.uniform(flow, "float64"), _with(costs, "float64", flow, params, cost, x), target),
        cost_float32=None if float32 is None else _plan_cost(Plan.uniform(flow, "float32"), costs, target),
        cost_model=COST_MODELS[cost], search=result, blocks=tuple(reports), search_seconds=search_seconds,
        attribution_precision=lowest if attribution is not None else None, float32_error=float32_error)


def _with(costs: dict, name: str, flow: Flow, params: Sequence[Any], cost: str, x: Any) -> dict:
    if all(name in row for row in costs.values()):
        return costs
    return block_costs(flow, params, (name,), cost, x)
