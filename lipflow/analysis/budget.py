"""The reconstruction-error budget of paper Section 2, per sample, against ground truth.

For a model F, inputs x stored at a working precision p:

* z = F(x) at a stable reference precision, z_delta = F_p(x) computed, delta = z_delta - z;
* x_delta1 = F^-1(z_delta) (reference), x_delta2 = F_p^-1(z_delta) (computed),
  delta2 = x_delta2 - x_delta1;
* the reconstruction error ||x - x_delta2||_2 and the bound Lip(F^-1) ||delta|| + ||delta2||,
  with Lip(F^-1) a *proven* upper bound on a box containing z_delta and the exact z (a rigorous
  interval enclosure of F(x), not only the rounded reference) (``lipflow.bounds``);
* separately, *estimates*: the largest inverse-Jacobian norm on the segment [z, z_delta] (which
  is what the convex-set argument needs, theory ``lem:convex-jacobian``) and the pointwise norm
  at z (which is not enough: the pointwise version of the bound can fail in float16).

Inf/NaN samples are flagged and counted by :meth:`ErrorBudget.summary`, never averaged away.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as onp

from lipflow.analysis.jacobian import jacobian, singular_values
from lipflow.analysis.reference import ReferenceResult, reference_forward, reference_inverse, to_mp
from lipflow.blocks.base import Block, Params, check_input
from lipflow.blocks.flow import Flow
from lipflow.errors import LipflowError, NonConvergenceWarning, UnboundedError
from lipflow.precision import Precision, precision
from lipflow.precision.mp import MPPrecision

__all__ = [
    "BudgetSummary",
    "ErrorBudget",
    "error_budget",
    "exact_forward_enclosure",
    "proven_inverse_lipschitz",
    "ulp_bits",
]

#: pieces a flow's per-sample box may be bisected into for its proven Lip(F^-1) (lem:mean-value-flow)
BUDGET_SPLITS = 1
#: points on the segment [z, z_delta] at which the local estimate evaluates ||J_{F^-1}||
SEGMENT_POINTS = 5


def proven_inverse_lipschitz(model: Block, params: Params, low: onp.ndarray, high: onp.ndarray) -> float:
    """A proven upper bound of Lip(F^-1) on the box [low, high] from ``lipflow.bounds``
    (anything but an upper bound is refused). ``inf`` where no finite bound can be proven on
    the box (e.g. the scale of an affine layer overflows float64 there)."""
    from lipflow.bounds import lipschitz

    if not (onp.all(onp.isfinite(low)) and onp.all(onp.isfinite(high))):
        return math.inf  # the box reaches past float64: unproven, never an abort
    # flows: the mean-value bound on each sample's box in one piece (cheap); bisected only where
    # one piece proves nothing finite
    attempts = [{"splits": BUDGET_SPLITS}, {}] if isinstance(model, Flow) else [{}]
    for options in attempts:
        try:
            result = lipschitz(model, params, direction="inverse", box=(low, high), **options)
            break
        except UnboundedError:
            continue
    else:
        return math.inf
    if getattr(result, "kind", None) != "upper":
        raise LipflowError(f"the bound for Lip(F^-1) is a {result.kind!r}, not an upper bound; "
                           "the error budget needs a proven bound")
    return float(result.value)


def exact_forward_enclosure(model: Block, params: Params, x: onp.ndarray, *, exact: bool = True) -> Any:
    """A rigorous box containing the exact F(x), or None where none is found (overflow).

    Ball arithmetic (python-flint ``arb`` at 128 bits, :func:`lipflow.analysis.certify.enclose`:
    about one float64 ulp wide) where available, else outward-rounded interval images layer by
    layer (``lem:interval-image``). ``exact=False``: x is x rounded to float64, so the point is
    widened by one float64 step first."""
    from lipflow.analysis.reference import blocks_and_params
    from lipflow.bounds.images import image_box
    from lipflow.bounds.rigorous import Box

    x = onp.asarray(x, dtype=onp.float64)
    current = Box.point(x) if exact else Box(*_outward(x, x))
    try:
        from lipflow.analysis.certify import enclose

        with onp.errstate(all="ignore"):
            ball = enclose(model, params, (current.lo, current.hi))
        low, high = onp.asarray(ball.low, dtype=onp.float64), onp.asarray(ball.high, dtype=onp.float64)
        if onp.all(onp.isfinite(low)) and onp.all(onp.isfinite(high)):
            return Box(low, high)
    except Exception:
        pass
    try:
        with onp.errstate(all="ignore"):
            for block, block_params in zip(*blocks_and_params(model, params), strict=True):
                current = image_box(block, block_params, current, "forward")
    except (LipflowError, OverflowError):  # overflow, or a family without interval images
        return None
    return current if current.finite else None


def ulp_bits(exact: Any, computed: Any, ctx: Precision) -> onp.ndarray:
    """log2(1 + ULP distance) between two arrays stored at ``ctx``, elementwise (inf if non-finite).

    For float16, bfloat16, float32 and float64 the distance counts the representable numbers
    between the two values (exact across binades); for longdouble and mpmath it is
    |computed - exact| / ulp(exact).
    """
    exact, computed = onp.asarray(exact), onp.asarray(computed)
    finite = onp.isfinite(ctx.to_float64(exact)) & onp.isfinite(ctx.to_float64(computed))
    if not ctx.is_arbitrary and exact.dtype.itemsize in (2, 4, 8) and exact.dtype != onp.longdouble:
        width = exact.dtype.itemsize * 8
        unsigned = {2: onp.uint16, 4: onp.uint32, 8: onp.uint64}[exact.dtype.itemsize]

        def ordinal(v: onp.ndarray) -> onp.ndarray:
            bits = onp.ascontiguousarray(v).view(unsigned)
            magnitude = (bits & unsigned((1 << (width - 1)) - 1)).astype(onp.float64)
            return onp.where(bits >> unsigned(width - 1), -magnitude, magnitude)

        distance = onp.abs(ordinal(exact) - ordinal(computed))
    elif ctx.is_arbitrary:
        diff = onp.abs(ctx.to_float64(computed - exact))
        scale = onp.abs(ctx.to_float64(exact))
        with onp.errstate(divide="ignore", invalid="ignore"):
            ulp = onp.exp2(onp.floor(onp.log2(onp.where(scale > 0, scale, 1e-300))) - ctx.mantissa_bits + 1)
            distance = diff / ulp
    else:
        with onp.errstate(invalid="ignore", over="ignore"):
            distance = (onp.abs(computed - exact) / onp.spacing(onp.abs(exact))).astype(onp.float64)
    return onp.where(finite, onp.log2(1 + distance), onp.inf)


@dataclass(frozen=True)
class BudgetSummary:
    """Counts and quantiles of an :class:`ErrorBudget`; quantiles use finite, decided samples only.

    Attributes:
        n: samples.
        nonfinite_forward / nonfinite_inverse: samples whose computed forward (resp. inverse)
            output has an Inf/NaN.
        reference_unstable: samples whose reference did not stabilise (undecided).
        violations: decided samples with reconstruction error above bound + reference slack.
        unbounded: decided samples where no finite Lip(F^-1) could be proven (bound = inf).
        ratio_quantiles: {q: measured/bound} for q in 0, 0.5, 0.9, 0.99, 1, over *proven*
            samples only (decided, with a finite proven bound); NaN when none is proven.
        proven / unproven / undecided: decided samples with a finite proven bound; decided
            samples without one; samples that are not decided (non-finite or unstable reference).
        max_bits: the largest bits-of-error over decided coordinates.
        reference: the reference rungs used (forward; inverse).
    """

    n: int
    nonfinite_forward: int
    nonfinite_inverse: int
    reference_unstable: int
    violations: int
    unbounded: int
    ratio_quantiles: dict[float, float]
    max_bits: float
    reference: str
    proven: int = 0
    unproven: int = 0
    undecided: int = 0

    def __str__(self) -> str:
        if self.proven:
            quantiles = ", ".join(f"q{int(q * 100)}={v:.3g}" for q, v in self.ratio_quantiles.items())
        else:
            quantiles = "none proven"
        return (
            f"{self.n} samples: {self.proven} proven, {self.unproven} unproven, {self.undecided} undecided; "
            f"{self.violations} violations, {self.unbounded} without a finite bound, "
            f"{self.nonfinite_forward} non-finite "
            f"forward, {self.nonfinite_inverse} non-finite inverse, {self.reference_unstable} "
            f"undecided; measured/bound {quantiles}; max {self.max_bits:.1f} bits of error; "
            f"reference {self.reference}"
        )


@dataclass(frozen=True)
class ErrorBudget:
    """Per-sample error budget (arrays of length n, or (n, d); reported in float64).

    ``bound`` uses the proven ``lipschitz_bound``; ``segment_estimate`` and
    ``pointwise_estimate`` use Jacobian norms and are *estimates*, never bounds. ``holds``
    compares the reconstruction error with bound + ``reference_slack`` (the reference's own
    error estimate times Lip, plus that of x_delta1) and is False for undecided samples.
    """

    working: str
    x: onp.ndarray
    z: onp.ndarray
    z_delta: onp.ndarray
    delta: onp.ndarray
    x_delta1: onp.ndarray
    x_delta2: onp.ndarray
    delta2: onp.ndarray
    delta_norm: onp.ndarray
    delta2_norm: onp.ndarray
    reconstruction_error: onp.ndarray
    lipschitz_bound: onp.ndarray
    bound: onp.ndarray
    segment_lipschitz_estimate: onp.ndarray
    segment_estimate: onp.ndarray
    pointwise_lipschitz_estimate: onp.ndarray
    pointwise_estimate: onp.ndarray
    ratio: onp.ndarray
    bits_of_error: onp.ndarray
    reference_slack: onp.ndarray
    reference_stable: onp.ndarray
    nonfinite_forward: onp.ndarray
    nonfinite_inverse: onp.ndarray
    fixed_point_converged: onp.ndarray
    holds: onp.ndarray
    reference_forward: str
    reference_inverse: str
    box_low: onp.ndarray | None = None
    box_high: onp.ndarray | None = None

    @property
    def decided(self) -> onp.ndarray:
        """Samples with finite computed values and a stable reference."""
        return ~self.nonfinite_forward & ~self.nonfinite_inverse & self.reference_stable

    @property
    def violations(self) -> onp.ndarray:
        """Indices of decided samples where the proven bound fails (should be empty)."""
        return onp.flatnonzero(self.decided & ~self.holds)

    def summary(self) -> BudgetSummary:
        decided = self.decided
        proven = decided & onp.isfinite(self.lipschitz_bound)
        ratios = self.ratio[proven]
        quantiles = {q: float(onp.quantile(ratios, q)) if ratios.size else math.nan
                     for q in (0.0, 0.5, 0.9, 0.99, 1.0)}
        bits = self.bits_of_error[decided]
        return BudgetSummary(
            n=len(self.ratio),
            nonfinite_forward=int(onp.sum(self.nonfinite_forward)),
            nonfinite_inverse=int(onp.sum(self.nonfinite_inverse & ~self.nonfinite_forward)),
            reference_unstable=int(onp.sum(~self.reference_stable & ~self.nonfinite_forward)),
            violations=int(self.violations.size),
            unbounded=int(onp.sum(decided & ~onp.isfinite(self.lipschitz_bound))),
            proven=int(onp.sum(proven)),
            unproven=int(onp.sum(decided & ~proven)),
            undecided=int(onp.sum(~decided)),
            ratio_quantiles=quantiles,
            max_bits=float(onp.max(bits)) if bits.size else math.nan,
            reference=f"{self.reference_forward}; {self.reference_inverse}",
        )

    def counterexample(self, i: int) -> str:
        """The numbers of sample ``i``, for failure messages."""
        return (
            f"x={self.x[i].tolist()}, z_delta={self.z_delta[i].tolist()}, ||delta||={self.delta_norm[i]:.6g}, "
            f"||delta2||={self.delta2_norm[i]:.6g}, Lip(F^-1)<={self.lipschitz_bound[i]:.6g}, "
            f"bound={self.bound[i]:.6g}, ||x - x_delta2||={self.reconstruction_error[i]:.6g}, "
            f"ratio={self.ratio[i]:.6g} ({self.working})"
        )


def _norms(v: onp.ndarray, carrier: MPPrecision) -> onp.ndarray:
    ctx = carrier.context
    return onp.asarray([float(ctx.sqrt(ctx.fsum(e * e for e in row))) for row in v], dtype=onp.float64)


def _outward(low: onp.ndarray, high: onp.ndarray) -> tuple[onp.ndarray, onp.ndarray]:
    """One float64 step outward: covers values that were rounded to nearest into float64."""
    return onp.nextafter(low, -onp.inf), onp.nextafter(high, onp.inf)


def _inverse_jacobian_norms(model: Block, params: Params, points: onp.ndarray) -> onp.ndarray:
    """||J_{F^-1}(y)||_2 = 1 / sigma_min(J_F(F^-1(y))) per row of ``points``, in float64."""
    float64 = precision("float64")
    with warnings.catch_warnings(), onp.errstate(all="ignore"):
        warnings.simplefilter("ignore", NonConvergenceWarning)
        preimages = model.inverse(params, points, ctx=float64)
        values, _ = singular_values(jacobian(model, params, preimages, ctx=float64), float64)
    with onp.errstate(divide="ignore", invalid="ignore"):
        return 1.0 / values[:, -1]


def error_budget(
    model: Block,
    params: Params,
    x: Any,
    *,
    ctx: Precision | str | None = None,
    box: str | tuple[Any, Any] = "sample",
    lipschitz: Callable[[Block, Params, onp.ndarray, onp.ndarray], float] = proven_inverse_lipschitz,
    estimates: bool = True,
) -> ErrorBudget:
    """The error budget of ``model`` (a block or a Flow) at inputs ``x`` (n, d), working precision ``ctx``.

    Args:
        box: where Lip(F^-1) is bounded: ``"sample"`` (default, the smallest box containing z and
            z_delta of each sample; tightest), ``"batch"`` (one box for all samples), or
            ``(low, high)`` arrays that must contain every z and z_delta.
        lipschitz: ``(model, params, low, high) -> upper bound of Lip(F^-1) on the box``.
        estimates: compute the segment and pointwise Jacobian estimates (NaN when False; they
            cost 2 * SEGMENT_POINTS Jacobians per sample and are not needed for the bound).

    Example:
        >>> import numpy as np, lipflow
        >>> from lipflow.analysis.budget import error_budget
        >>> flow = lipflow.Flow([lipflow.AdditiveCoupling(2), lipflow.Reverse(2), lipflow.AdditiveCoupling(2)])
        >>> budget = error_budget(flow, flow.init(0), np.ones((3, 2), np.float32))
        >>> budget.summary().violations
        0
    """
    x, working = check_input(x, model.dim, "error_budget", ctx)
    if working.is_arbitrary:
        x = onp.asarray(x, dtype=object)
    else:
        x = onp.asarray(x)
    n = len(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonConvergenceWarning)
        with onp.errstate(all="ignore"):
            z_delta = onp.asarray(model.forward(params, x, ctx=working))
            if isinstance(model, Flow):
                x_delta2, infos = model.inverse_with_info(params, z_delta, ctx=working)
                converged = onp.ones(n, dtype=bool)
                for info in infos:
                    if info is not None:
                        converged &= onp.asarray(info.converged, dtype=bool)
            elif hasattr(model, "inverse_with_info"):
                x_delta2, info = model.inverse_with_info(params, z_delta, ctx=working)
                converged = onp.asarray(info.converged, dtype=bool)
            else:
                x_delta2 = model.inverse(params, z_delta, ctx=working)
                converged = onp.ones(n, dtype=bool)
    x_delta2 = onp.asarray(x_delta2)
    nonfinite_forward = ~onp.all(onp.isfinite(working.to_float64(z_delta)), axis=1)
    nonfinite_inverse = ~onp.all(onp.isfinite(working.to_float64(x_delta2)), axis=1)

    ref_z: ReferenceResult = reference_forward(model, params, x, working=working)
    ref_x1: ReferenceResult = reference_inverse(model, params, z_delta, working=working)
    carrier = max((ref_z.carrier, ref_x1.carrier), key=lambda c: c.mantissa_bits)
    if working.is_arbitrary and working.mantissa_bits > carrier.mantissa_bits:
        carrier = working  # type: ignore[assignment]
    z, x1 = carrier.cast(ref_z.value), carrier.cast(ref_x1.value)
    x_mp, z_delta_mp, x_delta2_mp = to_mp(x, carrier), to_mp(z_delta, carrier), to_mp(x_delta2, carrier)
    delta, delta2 = z_delta_mp - z, x_delta2_mp - x1
    delta_norm, delta2_norm = _norms(delta, carrier), _norms(delta2, carrier)
    reconstruction = _norms(x_mp - x_delta2_mp, carrier)

    z64, z_delta64 = carrier.to_float64(z), working.to_float64(z_delta)
    with onp.errstate(invalid="ignore"):
        low, high = _outward(onp.fmin(z64, z_delta64), onp.fmax(z64, z_delta64))
    finite_rows = ~nonfinite_forward & onp.all(onp.isfinite(z64), axis=1)
    # the box must contain the *exact* z, not only the reference's rounded one: hull with a
    # rigorous enclosure of F(x); a sample without one gets no proven bound (inf), never an abort
    enclosed = onp.zeros(n, dtype=bool)
    x64 = working.to_float64(x)
    for i in onp.flatnonzero(finite_rows):
        enclosure = exact_forward_enclosure(model, params, x64[i], exact=working.mantissa_bits <= 53)
        if enclosure is not None:
            low[i], high[i] = onp.fmin(low[i], enclosure.lo), onp.fmax(high[i], enclosure.hi)
            enclosed[i] = onp.all(onp.isfinite(low[i])) and onp.all(onp.isfinite(high[i]))
    lip = onp.full(n, onp.inf)
    user_lipschitz = lipschitz

    def lipschitz(model: Block, params: Params, low: onp.ndarray, high: onp.ndarray) -> float:
        try:  # per-sample verdicts: an overflow makes that box unproven, never aborts the batch
            return user_lipschitz(model, params, low, high)
        except (UnboundedError, OverflowError):
            return math.inf

    if box == "sample":
        for i in onp.flatnonzero(finite_rows & enclosed):
            lip[i] = lipschitz(model, params, low[i], high[i])
    elif box == "batch":
        rows = finite_rows & enclosed
        if onp.any(rows):
            lip[rows] = lipschitz(model, params, low[rows].min(axis=0), high[rows].max(axis=0))
    else:
        box_low, box_high = (onp.asarray(b, dtype=onp.float64) for b in box)
        inside = onp.all((low >= box_low) & (high <= box_high), axis=1) | ~(finite_rows & enclosed)
        if not onp.all(inside):
            raise LipflowError(
                f"box does not contain z and z_delta of samples {onp.flatnonzero(~inside).tolist()}; "
                "enlarge it or use box='sample'"
            )
        lip[finite_rows & enclosed] = lipschitz(model, params, box_low, box_high)

    with onp.errstate(all="ignore"):
        bound = (lip * delta_norm + delta2_norm) * (1 + 2.0**-50)
        slack = lip * ref_z.error_estimate + ref_x1.error_estimate
        ratio = reconstruction / bound
    stable = ref_z.stable & ref_x1.stable
    holds = stable & (reconstruction <= (bound + slack) * (1 + 2.0**-50))

    segment = onp.full(n, onp.nan)
    pointwise = onp.full(n, onp.nan)
    rows = onp.flatnonzero(finite_rows)
    if rows.size and estimates:
        steps = onp.linspace(0.0, 1.0, SEGMENT_POINTS)
        points = onp.concatenate([z64[rows] + t * (z_delta64[rows] - z64[rows]) for t in steps])
        norms = _inverse_jacobian_norms(model, params, points).reshape(SEGMENT_POINTS, rows.size)
        pointwise[rows] = norms[0]
        segment[rows] = onp.max(norms, axis=0)
    with onp.errstate(all="ignore"):
        segment_bound = segment * delta_norm + delta2_norm
        pointwise_bound = pointwise * delta_norm + delta2_norm

    return ErrorBudget(
        working=working.name,
        x=working.to_float64(x),
        z=z64,
        z_delta=z_delta64,
        delta=carrier.to_float64(delta),
        x_delta1=carrier.to_float64(x1),
        x_delta2=working.to_float64(x_delta2),
        delta2=carrier.to_float64(delta2),
        delta_norm=delta_norm,
        delta2_norm=delta2_norm,
        reconstruction_error=reconstruction,
        lipschitz_bound=lip,
        bound=bound,
        segment_lipschitz_estimate=segment,
        segment_estimate=segment_bound,
        pointwise_lipschitz_estimate=pointwise,
        pointwise_estimate=pointwise_bound,
        ratio=ratio,
        bits_of_error=ulp_bits(x, x_delta2, working),
        reference_slack=slack,
        reference_stable=stable,
        nonfinite_forward=nonfinite_forward,
        nonfinite_inverse=nonfinite_inverse,
        fixed_point_converged=converged,
        holds=holds,
        reference_forward=ref_z.describe(),
        reference_inverse=ref_x1.describe(),
        box_low=low,
        box_high=high,
    )
