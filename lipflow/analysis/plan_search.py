"""The cheapest plan under an additive error budget: exact Pareto dynamic programming and a greedy
search with a certified optimality gap.

A search sees a sequence of decisions (the forward blocks, then the inverse blocks in the order
the inverse visits them). Decision d picks one option p at cost ``cost[d][p]``, adds the error
``err[d][p]`` and the cast error ``cast[d][(q, p)]`` that depends on the previous decision's
choice q. The plan error is the sum, which must not exceed ``tol``.

* :func:`exact_search` keeps, per decision and option, the Pareto front of (cost, error) over
  all prefixes: the cheapest feasible plan is exact (no approximation at any size; the front
  may grow, so it is used for small flows).
* :func:`greedy_search` starts from the most accurate plan and repeatedly lowers the decision
  with the best cost saved per error added while the budget allows. Its result is compared with
  a Lagrangian lower bound on the optimal cost (cast terms dropped, which only lowers it), so
  ``gap = cost - lower_bound`` bounds how far from optimal it can be.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Decision", "SearchResult", "exact_search", "greedy_search", "lagrangian_lower_bound"]


@dataclass(frozen=True)
class Decision:
    """One choice: ``options`` in order of preference for ties, with costs, errors and casts."""

    options: tuple[str, ...]
    cost: dict[str, float]
    err: dict[str, float]
    cast: dict[tuple[str, str], float]

    def cast_from(self, previous: str, option: str) -> float:
        return self.cast.get((previous, option), 0.0)


@dataclass(frozen=True)
class SearchResult:
    """choices (one per decision), their cost and error, the method and the optimality gap
    (0 for exact; an upper bound on cost - optimal cost for greedy)."""

    choices: tuple[str, ...]
    cost: float
    error: float
    method: str
    gap: float
    lower_bound: float


def _total(decisions: Sequence[Decision], choices: Sequence[str], source: str) -> tuple[float, float]:
    cost = error = 0.0
    previous = source
    for decision, choice in zip(decisions, choices, strict=True):
        cost += decision.cost[choice]
        error += decision.err[choice] + decision.cast_from(previous, choice)
        previous = choice
    return cost, error


def exact_search(decisions: Sequence[Decision], tol: float, source: str = "float64",
                 max_front: int = 20000) -> SearchResult | None:
    """The cheapest choices with total error <= tol (None if none); exact Pareto DP."""
    fronts: dict[str, list[tuple[float, float, tuple[str, ...]]]] = {source: [(0.0, 0.0, ())]}
    for decision in decisions:
        new: dict[str, list[tuple[float, float, tuple[str, ...]]]] = {}
        for option in decision.options:
            own_cost, own_err = decision.cost[option], decision.err[option]
            if not math.isfinite(own_err):
                continue
            candidates = []
            for previous, front in fronts.items():
                cast = decision.cast_from(previous, option)
                for cost, err, path in front:
                    total = err + own_err + cast
                    if total <= tol:
                        candidates.append((cost + own_cost, total, (*path, option)))
            candidates.sort(key=lambda c: (c[0], c[1]))
            pruned, best = [], math.inf
            for cost, err, path in candidates:
                if err < best:
                    pruned.append((cost, err, path))
                    best = err
            if len(pruned) > max_front:
                raise OverflowError("Pareto front too large for the exact search")
            if pruned:
                new[option] = pruned
        if not new:
            return None
        fronts = new
    best_cost, best_err, best_path = min((item for front in fronts.values() for item in front),
                                         key=lambda c: (c[0], c[1]))
    return SearchResult(best_path, best_cost, best_err, "exact (Pareto dynamic programming)", 0.0, best_cost)


def lagrangian_lower_bound(decisions: Sequence[Decision], tol: float) -> float:
    """max over lambda >= 0 of sum_d min_p (cost + lambda err) - lambda tol: a lower bound on the
    optimal cost (weak duality; the cast terms are non-negative and dropped)."""
    best = -math.inf
    for exponent in range(-40, 41):
        lam = 0.0 if exponent == -40 else 10.0 ** (exponent / 2) / max(tol, 1e-300)
        total = -lam * tol
        for decision in decisions:
            total += min(decision.cost[p] + (lam * decision.err[p] if decision.err[p] else 0.0)
                         for p in decision.options if math.isfinite(decision.err[p]))
        best = max(best, total)
    return best


def greedy_search(decisions: Sequence[Decision], tol: float, source: str = "float64") -> SearchResult | None:
    """Greedy descent from the most accurate choices; gap from :func:`lagrangian_lower_bound`."""
    choices = [min((p for p in d.options if math.isfinite(d.err[p])), key=lambda p: (d.err[p], -d.cost[p]),
                   default=None) for d in decisions]
    if any(c is None for c in choices):
        return None
    cost, error = _total(decisions, choices, source)
    if error > tol:
        return None
    n = len(decisions)

    def local(d: int, option: str, previous: str, following: str | None) -> float:
        value = decisions[d].err[option] + decisions[d].cast_from(previous, option)
        if following is not None:
            value += decisions[d + 1].cast_from(option, following)
        return value

    while True:
        best = None
        for d, decision in enumerate(decisions):
            previous = source if d == 0 else choices[d - 1]
            following = choices[d + 1] if d + 1 < n else None
            now = local(d, choices[d], previous, following)
            for option in decision.options:
                saving = decision.cost[choices[d]] - decision.cost[option]
                if saving <= 0 or not math.isfinite(decision.err[option]):
                    continue
                added = local(d, option, previous, following) - now
                if error + added > tol:
                    continue
                score = saving / max(added, 1e-300)
                if best is None or score > best[0]:
                    best = (score, d, option, added, saving)
        if best is None:
            break
        _, d, option, added, saving = best
        choices[d] = option
        error += added
        cost -= saving
    cost, error = _total(decisions, choices, source)
    lower = lagrangian_lower_bound(decisions, tol)
    return SearchResult(tuple(choices), cost, error, "greedy (gap from a Lagrangian lower bound)",
                        max(0.0, cost - lower), lower)
