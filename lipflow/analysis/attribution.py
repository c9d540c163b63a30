"""Which layer makes the inverse explode: per-layer attribution of the reconstruction error.

For a flow F = F_L o ... o F_1 let R_j = F_1^-1 o ... o F_j^-1 (exact, R_0 = identity). The
computed forward pass v_0 = x, v_k = fl(F_k(v_{k-1})) and inverse pass w_L = v_L,
w_{k-1} = fl(F_k^-1(w_k)) give two telescoping sums (paper Section 2, split per layer):

    x_delta1 - x      = sum_k [R_k(v_k) - R_{k-1}(v_{k-1})]       (forward errors, carried back)
    x_delta2 - x_delta1 = sum_k [R_{k-1}(w_{k-1}) - R_k(w_k)]     (inverse errors, carried on)

Term k is layer k's *local* error (v_k - F_k(v_{k-1}), resp. w_{k-1} - F_k^-1(w_k)) pushed through
the exact inverses of the layers below it; the ratio of the two norms is how much those
layers *amplify* it. The sums are identities, so the contributions add up to the
reconstruction error x_delta2 - x by construction: the shares are exact vector identities, so
their norms bound it by the triangle inequality (``tests/test_analysis_attribution.py``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as onp

from lipflow.analysis.reference import (
    HARDWARE_CANDIDATES,
    ReferenceCandidate,
    block_inverse_at,
    reference_forward,
    reference_inverse,
    to_mp,
)
from lipflow.blocks.base import Params, check_input
from lipflow.blocks.flow import Flow
from lipflow.errors import LipflowError, NonConvergenceWarning
from lipflow.precision import Precision, precision
from lipflow.precision.mp import MPPrecision

__all__ = ["LayerAttribution", "layer_attribution"]


@dataclass(frozen=True)
class LayerAttribution:
    """Per-layer error attribution; arrays have shape (L, n) (layer in block order, sample).

    Attributes:
        layers: block names in block order.
        forward_local / inverse_local: ||local error|| of layer k in the forward / inverse pass.
        forward_contribution / inverse_contribution: ||its share of x - x_delta2||.
        reconstruction_error: ||x - x_delta2|| per sample (n,).
        reference: the context the exact maps were evaluated at.
        working: the working precision.
    """

    layers: tuple[str, ...]
    forward_local: onp.ndarray
    forward_contribution: onp.ndarray
    inverse_local: onp.ndarray
    inverse_contribution: onp.ndarray
    reconstruction_error: onp.ndarray
    reference: str
    working: str

    @property
    def forward_amplification(self) -> onp.ndarray:
        with onp.errstate(divide="ignore", invalid="ignore"):
            return onp.where(self.forward_local > 0, self.forward_contribution / self.forward_local, onp.nan)

    @property
    def inverse_amplification(self) -> onp.ndarray:
        with onp.errstate(divide="ignore", invalid="ignore"):
            return onp.where(self.inverse_local > 0, self.inverse_contribution / self.inverse_local, onp.nan)

    def worst_layer(self, sample: int | None = None) -> int:
        """The layer whose (forward + inverse) contribution is largest (for one sample or the max)."""
        total = self.forward_contribution + self.inverse_contribution
        column = onp.max(total, axis=1) if sample is None else total[:, sample]
        return int(onp.nanargmax(column))

    def table(self, sample: int | None = None) -> str:
        """A text table; columns are maxima over samples unless ``sample`` is given."""
        def pick(a: onp.ndarray) -> onp.ndarray:
            if sample is not None:
                return a[:, sample]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return onp.nanmax(a, axis=1)

        columns = [pick(a) for a in (self.forward_local, self.forward_contribution, self.forward_amplification,
                                     self.inverse_local, self.inverse_contribution, self.inverse_amplification)]
        what = f"sample {sample}" if sample is not None else "max over samples"
        lines = [
            f"per-layer error attribution ({self.working}, reference {self.reference}, {what})",
            f"{'k':>3} {'layer':<26} {'fwd local':>10} {'fwd contrib':>11} {'fwd ampl':>9} "
            f"{'inv local':>10} {'inv contrib':>11} {'inv ampl':>9}",
        ]
        worst = self.worst_layer(sample)
        for k, name in enumerate(self.layers):
            values = " ".join(f"{c[k]:>{w}.3g}" for c, w in zip(columns, (10, 11, 9, 10, 11, 9), strict=True))
            lines.append(f"{k:>3} {name:<26} {values}{'  <- largest' if k == worst else ''}")
        recon = self.reconstruction_error if sample is None else self.reconstruction_error[sample:sample + 1]
        lines.append(f"reconstruction error ||x - x_delta2||: max {onp.max(recon):.3g}")
        return "\n".join(lines)


def _norms(v: onp.ndarray, carrier: MPPrecision) -> onp.ndarray:
    ctx = carrier.context
    return onp.asarray([float(ctx.sqrt(ctx.fsum(e * e for e in row))) for row in v], dtype=onp.float64)


def layer_attribution(
    flow: Flow,
    params: Params,
    x: Any,
    *,
    ctx: Precision | str | None = None,
    candidates: tuple[ReferenceCandidate, ...] = HARDWARE_CANDIDATES,
) -> LayerAttribution:
    """Attribute the reconstruction error of ``flow`` at inputs ``x`` to its layers.

    The exact maps are evaluated at the widest rung the reference chooser needed for the whole
    flow (forward and inverse), so cost grows as L^2 block evaluations at that precision.

    Example, the paper's Figure 1 toy: each inverse layer divides by 0.1, so the rounding error of
    the *last* forward layer, carried back through all four divisions, dominates.
        >>> import numpy as np, lipflow
        >>> toy = lipflow.AffineCoupling(2, t=lipflow.Constant(0.123456789),
        ...                              s=lipflow.Constant(0.1), scale="identity")
        >>> flow = lipflow.Flow([toy] * 4)
        >>> a = layer_attribution(flow, flow.init(0), np.ones((1, 2), np.float32))
        >>> a.worst_layer()
        3
    """
    if not isinstance(flow, Flow):
        raise LipflowError("layer_attribution needs a Flow; wrap a single block as Flow([block])")
    x, working = check_input(x, flow.dim, "layer_attribution", ctx)
    x = onp.asarray(x, dtype=object) if working.is_arbitrary else onp.asarray(x)
    with warnings.catch_warnings(), onp.errstate(all="ignore"):
        warnings.simplefilter("ignore", NonConvergenceWarning)
        forward_trace = [onp.asarray(v) for v in flow.forward_trace(params, x, ctx=working)]
        inverse_trace, _ = flow.inverse_trace(params, forward_trace[-1], ctx=working)
    inverse_trace = [onp.asarray(v) for v in inverse_trace]  # [w_L, ..., w_0]
    finite = onp.all(onp.isfinite(working.to_float64(forward_trace[-1])), axis=1) & onp.all(
        onp.isfinite(working.to_float64(inverse_trace[-1])), axis=1)
    if not onp.all(finite):
        raise LipflowError(
            f"samples {onp.flatnonzero(~finite).tolist()} overflow to Inf/NaN at {working.name}; "
            "attribute finite samples only (error_budget counts the others)"
        )

    # the rung the whole flow needed, used for every partial composition
    used = list(reference_forward(flow, params, x, working=working, candidates=candidates).used)
    used += list(reference_inverse(flow, params, forward_trace[-1], working=working, candidates=candidates).used)
    ref = max((precision(name) for name in set(used)), key=lambda c: c.mantissa_bits)
    carrier = ref if isinstance(ref, MPPrecision) else precision("mp40")
    blocks, plist = flow.blocks, list(params)
    prepared = [ref.cast(b._prepare(p)) for b, p in zip(blocks, plist, strict=True)]

    def lift(v: onp.ndarray) -> Any:
        return to_mp(v, ref) if ref.is_arbitrary else ref.cast(v)

    def exact_inverse_through(j: int, u: Any) -> Any:
        """R_j(u): exact inverses of layers j..1 (1-based), at the reference."""
        for k in reversed(range(j)):
            u = block_inverse_at(blocks[k], plist[k], u, ref)
        return u

    n, depth = len(x), len(blocks)
    w = list(reversed(inverse_trace))  # w[j] = w_j
    v = forward_trace
    carried_v = [to_mp(onp.asarray(exact_inverse_through(j, lift(v[j]))), carrier) for j in range(depth + 1)]
    carried_w = [to_mp(onp.asarray(exact_inverse_through(j, lift(w[j]))), carrier) for j in range(depth + 1)]
    shape = (depth, n)
    forward_local, forward_contribution = onp.zeros(shape), onp.zeros(shape)
    inverse_local, inverse_contribution = onp.zeros(shape), onp.zeros(shape)
    for k in range(1, depth + 1):
        exact_forward = blocks[k - 1]._forward(prepared[k - 1], lift(v[k - 1]), ref)
        forward_local[k - 1] = _norms(to_mp(v[k], carrier) - to_mp(onp.asarray(exact_forward), carrier), carrier)
        share = carried_v[k] - carried_v[k - 1]
        forward_contribution[k - 1] = _norms(share, carrier)
        exact_inverse = block_inverse_at(blocks[k - 1], plist[k - 1], lift(w[k]), ref)
        inverse_local[k - 1] = _norms(to_mp(w[k - 1], carrier) - to_mp(onp.asarray(exact_inverse), carrier), carrier)
        inverse_share = carried_w[k - 1] - carried_w[k]
        inverse_contribution[k - 1] = _norms(inverse_share, carrier)
    error = to_mp(w[0], carrier) - to_mp(x, carrier)
    return LayerAttribution(
        layers=tuple(type(b).__name__ + (f"({b.scale.kind})" if hasattr(b, "scale") else "") for b in blocks),
        forward_local=forward_local,
        forward_contribution=forward_contribution,
        inverse_local=inverse_local,
        inverse_contribution=inverse_contribution,
        reconstruction_error=_norms(error, carrier),
        reference=ref.name,
        working=working.name,
    )
