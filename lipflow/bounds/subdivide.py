"""Branch and bound over sub-boxes: Lip of a flow on a wide box from mean-value enclosures of
pieces of it (theory ``lem:box-subdivision``, on top of ``lem:mean-value-flow``).

On a convex box B, Lip_B(F) = sup_{x in B} ||J_F(x)||_2 (``lem:convex-jacobian``); for a cover
of B by sub-boxes B_i the supremum is the maximum of the pieces' suprema, so the largest of
rigorous per-piece bounds is a rigorous bound on B. The mean-value enclosure's second-order term
grows quickly with a piece's width (through deep flows it feeds back into the layers' boxes), so
small pieces give much tighter bounds than one wide box.

:func:`subdivide` keeps the pieces in a priority queue keyed by their upper bound, bisects the
worst piece along its widest side and bounds the two halves, while a running *estimate* from
below (||J(centre)||_2 of every piece, float64 autograd) measures how far the bound can still
be from the true constant. It stops when upper / estimate <= ``tol``, or the budget of pieces or
seconds is spent. A child's bound is capped by its parent's (the child lies in the parent), so
the returned bound never increases with the budget. For the inverse the box is in the domain of
F^-1 (the outputs), exactly as for :func:`lipflow.bounds.meanvalue.meanvalue_lipschitz`.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as onp
import sympy

from lipflow.blocks.base import Block
from lipflow.bounds.meanvalue import BITS, Preparation, flow_jacobian_enclosure, prepare
from lipflow.bounds.result import LipschitzBound, check_direction
from lipflow.bounds.rigorous import Box
from lipflow.errors import LipflowError, UnboundedError

__all__ = ["DEFAULT_TOL", "Subdivision", "subdivide"]

#: stop refining once the proven bound is within this factor of the estimate from below
DEFAULT_TOL = 1.5
#: default budget of pieces (the cover's size) for :func:`subdivide`
DEFAULT_MAX_BOXES = 256
#: centres evaluated together for the estimate, and how close to the tolerance (relative) the
#: bound must be for the pending centres to be evaluated at once
BATCH, NEAR = 8, 1.5
L_bb = sympy.Symbol("L_bb", nonnegative=True)


@dataclass(frozen=True)
class Subdivision:
    """The outcome of :func:`subdivide`.

    Attributes:
        upper: proven bound (max over the pieces; ``inf`` where some piece has no finite bound).
        lower: estimate from below, max ||J(centre)||_2 over every piece evaluated (float64
            autograd; not rigorous, 0 if no centre had a finite Jacobian).
        pieces: the final cover, (box, proven bound on it) per piece.
        evaluations: enclosures computed (the root and every child).
        converged: whether upper <= tol * lower was reached.
        reason: why it stopped: "tolerance", "max_boxes", "max_seconds", "point" (the worst
            piece cannot be split: it is a point) or "unbounded" (no piece can have a finite
            bound: a residual block's certified Lip(g) >= 1, for the inverse).
        seconds: wall-clock time spent.
        direction, box, tol: as requested.
    """

    upper: float
    lower: float
    pieces: tuple[tuple[Box, float], ...]
    evaluations: int
    converged: bool
    reason: str
    seconds: float
    direction: str
    box: Box
    tol: float

    @property
    def ratio(self) -> float:
        """upper / lower (a ratio of a bound to an estimate; inf where either is unusable)."""
        if not (math.isfinite(self.upper) and self.lower > 0):
            return math.inf
        return self.upper / self.lower

    @property
    def boxes(self) -> int:
        """Number of pieces in the final cover."""
        return len(self.pieces)

    def bound(self) -> LipschitzBound:
        """The proven bound as a :class:`LipschitzBound` (kind "upper"); raises
        :class:`UnboundedError` where some piece has no finite bound."""
        if not math.isfinite(self.upper):
            raise UnboundedError(f"no finite bound on {sum(not math.isfinite(u) for _, u in self.pieces)} of "
                                 f"{self.boxes} sub-boxes after {self.evaluations} enclosures ({self.reason}); "
                                 "raise the budget (splits / max_boxes) or shrink the box")
        state = "reached" if self.converged else f"not reached, stopped by {self.reason}"
        return LipschitzBound(
            value=self.upper, kind="upper", direction=self.direction, label="lem:box-subdivision",
            expression=L_bb, ingredients={"L_bb": self.upper},
            assumptions=(f"max over {self.boxes} sub-boxes covering the box of sup ||J||_2 over a ball-matrix "
                         "enclosure of the flow's Jacobian on each (lem:mean-value-flow, arb balls, mean-value "
                         "boxes)",
                         f"refinement: {self.evaluations} enclosures; estimate max ||J(centre)||_2 = "
                         f"{self.lower:.6g} (estimate, not a bound), bound/estimate {self.ratio:.4g}, "
                         f"tolerance {self.tol:g} {state}"),
            block="flow", box=self.box.as_tuple(),
        )


def _piece_upper(flow: Block, params: Any, box: Box, direction: str, prepared: Preparation) -> float:
    """A proven bound of sup ||J|| on ``box`` (lem:mean-value-flow), ``inf`` where none is finite."""
    try:
        enclosure = flow_jacobian_enclosure(flow, params, box, direction=direction, bits=prepared.bits,
                                            prepared=prepared)
        value = enclosure.norm_upper()
    except (UnboundedError, OverflowError, ZeroDivisionError):
        return math.inf
    return value if math.isfinite(value) else math.inf


def _centre_norms(flow: Block, params: Any, centres: onp.ndarray, direction: str) -> onp.ndarray:
    """||J(c)||_2 at each centre (float64 autograd; an estimate), NaN where not finite."""
    from lipflow.analysis.jacobian import jacobian

    with onp.errstate(all="ignore"):
        try:
            jac = onp.asarray(jacobian(flow, params, centres, ctx="float64", direction=direction), dtype=onp.float64)
        except (LipflowError, OverflowError, FloatingPointError, onp.linalg.LinAlgError):
            return onp.full(len(centres), onp.nan)
        finite = onp.all(onp.isfinite(jac), axis=(1, 2))
        out = onp.full(len(centres), onp.nan)
        if onp.any(finite):
            out[finite] = onp.linalg.norm(jac[finite], ord=2, axis=(1, 2))
    return out


def _largest_centre_norm(flow: Block, params: Any, boxes: list[Box], direction: str) -> float:
    """max ||J(centre)||_2 over ``boxes`` (an estimate; 0 where no centre has a finite Jacobian)."""
    norms = _centre_norms(flow, params, onp.stack([b.mid_rad()[0] for b in boxes]), direction)
    return float(onp.nanmax(norms)) if onp.any(onp.isfinite(norms)) else 0.0


def _bisect(box: Box) -> tuple[Box, Box] | None:
    """The two halves of ``box`` across its widest side (None for a point)."""
    with onp.errstate(over="ignore"):
        widths = box.hi - box.lo  # inf for a side wider than the largest float64
    j = int(onp.argmax(widths))
    middle = box.lo[j] + 0.5 * widths[j] if math.isfinite(widths[j]) else 0.5 * box.lo[j] + 0.5 * box.hi[j]
    if not box.lo[j] < middle < box.hi[j]:
        return None  # a point, or a side one float64 step wide
    left_hi, right_lo = box.hi.copy(), box.lo.copy()
    left_hi[j], right_lo[j] = middle, middle
    return Box(box.lo, left_hi), Box(right_lo, box.hi)


def _check(box: Any, tol: float, max_boxes: int, max_seconds: float | None) -> None:
    if not isinstance(box, Box):
        raise LipflowError("subdivide needs a Box (lipflow.bounds.as_box((low, high), dim))")
    if not box.finite:
        raise LipflowError("subdivide needs a finite box; use box=None with lipschitz for a global bound")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol < 1:
        raise LipflowError(f"tol must be a finite number >= 1 (bound / estimate), got {tol!r}")
    if isinstance(max_boxes, bool) or not isinstance(max_boxes, int) or max_boxes < 1:
        raise LipflowError(f"max_boxes must be a positive integer, got {max_boxes!r}")
    if max_seconds is not None and not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
        raise LipflowError(f"max_seconds must be a positive number or None, got {max_seconds!r}")


def subdivide(flow: Block, params: Any, *, box: Box, direction: str = "forward", tol: float = DEFAULT_TOL,
              max_boxes: int = DEFAULT_MAX_BOXES, max_seconds: float | None = None,
              bits: int = BITS) -> Subdivision:
    """Lip(F) on ``box`` (or Lip(F^-1) on the output box ``box``) by branch and bound over
    mean-value enclosures of sub-boxes (``lem:box-subdivision``).

    Args:
        flow: a flow of supported blocks (see :func:`lipflow.bounds.meanvalue.supported`).
        params: its parameters.
        box: the domain of the map bounded (inputs for ``"forward"``, outputs for ``"inverse"``).
        tol: stop once the proven bound is at most ``tol`` times the estimate from below.
        max_boxes: at most this many pieces in the cover (``max_boxes - 1`` bisections).
        max_seconds: optional wall-clock budget (checked between bisections; results then depend
            on the machine's speed).
        bits: arb precision of the enclosures.

    Returns:
        A :class:`Subdivision`; ``.bound()`` gives the :class:`LipschitzBound` (or raises
        :class:`UnboundedError` where some piece has no finite bound when the budget ends).
    """
    check_direction(direction)
    _check(box, tol, max_boxes, max_seconds)
    if box.dim != flow.dim:
        raise LipflowError(f"box has {box.dim} coordinates but the flow has dim={flow.dim}")
    prepared = prepare(flow, params, bits)  # raises where the enclosure cannot run (flint, blocks)
    start = time.perf_counter()
    if direction == "inverse" and any(v is not None and not v < 1 for v in prepared.lips):
        # no piece can have a finite bound (lem:mean-value-flow needs Lip(g) < 1): do not split
        return Subdivision(upper=math.inf, lower=0.0, pieces=((box, math.inf),), evaluations=0, converged=False,
                           reason="unbounded", seconds=time.perf_counter() - start, direction=direction, box=box,
                           tol=float(tol))
    order = itertools.count()
    root = _piece_upper(flow, params, box, direction, prepared)
    evaluations = 1
    # heap of (-upper, -width, tiebreak, box): the worst piece first, the widest among equals
    heap = [(-root, -float(onp.max(box.hi - box.lo)), next(order), box)]
    lower = 0.0
    # pieces whose centre norm is not yet in ``lower``: evaluated in one batch, and only once the
    # worst bound is finite (before that no estimate can stop the refinement)
    pending = [box] if max_boxes > 1 else []
    reason, converged = "max_boxes", False
    while True:
        worst = -heap[0][0]
        # batched estimate: a Jacobian call costs about as much for 8 points as for 1, so the
        # centres wait until 8 are pending, unless the bound may be near the tolerance already
        near = worst <= NEAR * tol * lower
        if pending and math.isfinite(worst) and (len(pending) >= BATCH or near or lower == 0):
            lower = max(lower, _largest_centre_norm(flow, params, pending, direction))
            pending = []
        if math.isfinite(worst) and lower > 0 and worst <= tol * lower:
            reason, converged = "tolerance", True
            break
        if len(heap) >= max_boxes:
            reason = "max_boxes"
            break
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            reason = "max_seconds"
            break
        halves = _bisect(heap[0][3])
        if halves is None:
            reason = "point"
            break
        heapq.heappop(heap)
        for half in halves:
            # the child lies in the parent: the parent's bound holds on it too (monotone refinement)
            value = min(_piece_upper(flow, params, half, direction, prepared), worst)
            evaluations += 1
            heapq.heappush(heap, (-value, -float(onp.max(half.hi - half.lo)), next(order), half))
            pending.append(half)
    if pending:  # report the estimate over every piece evaluated
        lower = max(lower, _largest_centre_norm(flow, params, pending, direction))
    upper = max(-item[0] for item in heap)
    if not converged and math.isfinite(upper) and lower > 0 and upper <= tol * lower:
        reason, converged = "tolerance", True  # reached with the last pieces' estimate
    pieces = tuple((item[3], -item[0]) for item in sorted(heap, key=lambda item: item[2]))
    return Subdivision(upper=upper, lower=lower, pieces=pieces, evaluations=evaluations, converged=converged,
                       reason=reason, seconds=time.perf_counter() - start, direction=direction, box=box,
                       tol=float(tol))
