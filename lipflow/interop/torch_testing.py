"""The assertion helpers of :mod:`lipflow.testing` for torch models and tensors.

``lipflow.testing.assert_invertible`` / ``assert_error_bound`` / ``assert_logdet`` hand over to
these functions when the model is a torch object (any flow :func:`~lipflow.interop.adapters.adapt`
accepts) or ``x`` is a torch tensor, so a torch test suite needs one line per check:

    >>> import torch
    >>> from lipflow.testing import assert_invertible
    >>> assert_invertible((torch.sinh, torch.asinh), torch.linspace(-2, 2, 8).reshape(4, 2))

Tolerances come from the working dtype's unit roundoff (Higham's gamma_ops). Where a proven
Lipschitz bound of F^-1 is not passed, the audit's segment estimate is used and every message
says so: the check is then an *estimate*, not a proof.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as onp

from lipflow.errors import LipflowError
from lipflow.interop import require_torch

require_torch()
import torch  # noqa: E402

from lipflow.interop.adapters import AdaptedFlow, adapt  # noqa: E402
from lipflow.interop.torch_reference import batch_jacobian  # noqa: E402
from lipflow.interop.torch_thirdparty import audit  # noqa: E402

__all__ = ["assert_error_bound", "assert_invertible", "assert_logdet", "is_torch_case"]

_UNIT_ROUNDOFF = {torch.float64: 2.0**-53, torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


def is_torch_case(model: Any, x: Any) -> bool:
    """True when ``x`` is a torch tensor or ``model`` a torch module / transform (torch already imported)."""
    kinds = (torch.nn.Module, torch.distributions.Transform, AdaptedFlow)
    return isinstance(x, torch.Tensor) or isinstance(model, kinds)


def _dtype(ctx: Any) -> torch.dtype | None:
    if ctx is None:
        return None
    if isinstance(ctx, torch.dtype):
        return ctx
    name = getattr(ctx, "name", ctx)
    table = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in table:
        raise LipflowError(f"torch models run at float64, float32, float16 or bfloat16, not {name!r}")
    return table[name]


def _setup(model: Any, x: Any, inverse: Callable | None, ctx: Any) -> tuple[AdaptedFlow, torch.Tensor, float]:
    flow = adapt(model, inverse, dtype=_dtype(ctx))
    dtype = _dtype(ctx) or (flow.dtype if flow.dtype_from_parameters else None)
    x = torch.as_tensor(x)
    dtype = dtype or (x.dtype if x.is_floating_point() else torch.get_default_dtype())
    if x.dim() < 2:
        raise LipflowError(f"x must be a batch (n, ...), got shape {tuple(x.shape)}; reshape one point with x[None]")
    if dtype not in _UNIT_ROUNDOFF:
        raise LipflowError(f"no unit roundoff known for {dtype}")
    return flow, x.detach().to(dtype), _UNIT_ROUNDOFF[dtype]


def _gamma(u: float, ops: int) -> float:
    return ops * u / (1 - ops * u)


def _fmt(v: Any) -> str:
    return onp.array2string(onp.asarray(v, dtype=onp.float64).reshape(-1), precision=8, separator=", ")


def assert_invertible(model: Any, x: Any, *, inverse: Callable | None = None, ctx: Any = None,
                      lipschitz_inverse: float | None = None, ops: int = 32) -> None:
    """||x - F^-1(F(x))|| <= gamma_ops (Lip(F^-1) ||F(x)|| + ||x||) per sample at the working dtype.

    Lip(F^-1) is ``lipschitz_inverse`` (a proven bound) or else the estimate 1/sigma_min of the
    float64 Jacobian at x. A non-finite round trip always fails.
    """
    flow, x, u = _setup(model, x, inverse, ctx)
    with torch.no_grad():
        z = flow.forward(x.clone()).detach()
        rec = flow.inverse(z.clone()).detach()
    n = x.shape[0]
    error = torch.linalg.vector_norm((x.double() - rec.double()).reshape(n, -1), dim=1).numpy()
    z_norm = torch.linalg.vector_norm(z.double().reshape(n, -1), dim=1).numpy()
    x_norm = torch.linalg.vector_norm(x.double().reshape(n, -1), dim=1).numpy()
    if lipschitz_inverse is None:
        flow64 = flow.to_float64()
        if flow64.module is not None:
            flow64.module.eval()
        jac = batch_jacobian(flow64.forward, x.double())
        with onp.errstate(divide="ignore"):
            lip = 1 / torch.linalg.svdvals(jac)[:, -1].numpy()
        how = "estimate 1/sigma_min(J_F(x)) in float64 (no proven bound passed)"
    else:
        lip, how = onp.full(n, float(lipschitz_inverse)), "given"
    with onp.errstate(invalid="ignore"):
        tolerance = _gamma(u, ops) * (lip * z_norm + x_norm)
        bad = onp.flatnonzero(~(error <= tolerance))
    if bad.size:
        i = int(bad[0])
        raise AssertionError(
            f"not invertible at {str(x.dtype).removeprefix('torch.')} for {bad.size} of {n} samples ({flow.library}; "
            f"{flow.direction_note}); first: x={_fmt(x[i])}, ||x - F^-1(F(x))||={error[i]:.6g} > tolerance "
            f"{tolerance[i]:.6g} = gamma_{ops} (Lip(F^-1)={lip[i]:.6g} [{how}] ||F(x)|| + ||x||)"
        )


def assert_error_bound(model: Any, x: Any, *, inverse: Callable | None = None, ctx: Any = None,
                       lipschitz_inverse: float | None = None, allow_nonfinite: bool = True,
                       allow_algorithmic: bool = False) -> None:
    """The reconstruction bound ||x - x_delta2|| <= Lip(F^-1) ||delta|| + ||delta2|| (paper Section 2)
    per sample, with delta and delta2 measured by :func:`~lipflow.interop.torch.audit` against a
    float64 copy and a Newton reference (estimates).

    Lip(F^-1) is ``lipschitz_inverse`` (a proven bound) or else the audit's segment estimate:
    then the check is an estimate and the message says so. Samples whose float64 inverse is off
    the reference beyond float64 rounding (an algorithmic error: truncated iteration, rounded
    constant) fail unless ``allow_algorithmic``; non-finite samples fail only with
    ``allow_nonfinite=False``.
    """
    flow, x, _ = _setup(model, x, inverse, ctx)
    report = audit(flow, x, dtype=x.dtype)
    v, n = report.values, x.shape[0]
    finite = onp.isfinite(v["reconstruction"]) & onp.isfinite(v["delta"]) & onp.isfinite(v["delta2"])
    if not allow_nonfinite and not finite.all():
        i = int(onp.flatnonzero(~finite)[0])
        raise AssertionError(f"{int((~finite).sum())} of {n} samples are Inf/NaN in the round trip or its reference at "
                             f"{report.dtype}; first x={_fmt(report.x[i])}")
    if lipschitz_inverse is None:
        lip, how = v["lipschitz"], "estimate (segment, float64 Jacobian; no proven bound passed)"
    else:
        lip, how = onp.full(n, float(lipschitz_inverse)), "bound (given)"
    with onp.errstate(invalid="ignore"):
        bound = lip * v["delta"] + v["delta2"]
        holds = v["reconstruction"] <= bound * (1 + 2.0**-50) + onp.nan_to_num(v["certificate"], nan=0.0)
    bad = onp.flatnonzero(finite & ~holds)
    if bad.size:
        i = int(bad[0])
        raise AssertionError(
            f"reconstruction bound violated at {report.dtype} for {bad.size} of {int(finite.sum())} decided samples "
            f"({n} in all; {report.library}); first: x={_fmt(report.x[i])}, ||delta||={v['delta'][i]:.6g}, "
            f"||delta2||={v['delta2'][i]:.6g}, Lip(F^-1)={lip[i]:.6g} [{how}], bound={bound[i]:.6g}, "
            f"||x - x_delta2||={v['reconstruction'][i]:.6g}, ratio={v['reconstruction'][i] / bound[i]:.6g}"
        )
    flagged = onp.flatnonzero(report.algorithmic_flag & finite)
    if flagged.size and not allow_algorithmic:
        i = int(flagged[0])
        raise AssertionError(
            f"the model's own inverse has an algorithmic error (beyond float64 rounding) at {flagged.size} of "
            f"{int(finite.sum())} decided samples ({report.library}); first: x={_fmt(report.x[i])}, float64 inverse "
            f"off the Newton reference by {v['algorithmic'][i]:.6g} (float64 rounding model "
            f"{report.algorithmic_tolerance[i]:.3g}; estimate), working-precision error {v['reconstruction'][i]:.6g}; "
            "a truncated iteration or a rounded constant; pass allow_algorithmic=True to accept it"
        )


def assert_logdet(model: Any, x: Any, *, ctx: Any = None, ops: int = 32) -> None:
    """|logdet(x) - log|det J_F(x)|| <= gamma_ops (|log|det J|| + dim) per sample, the reference from
    the float64 copy's autograd Jacobian (``torch.linalg.slogdet``)."""
    flow, x, u = _setup(model, x, None, ctx)
    with torch.no_grad():
        _, logdet = flow.forward_and_logdet(x.clone())
    if logdet is None:
        raise LipflowError(f"the {flow.library} model returns no log-determinant, so there is nothing to check")
    flow64 = flow.to_float64()
    if flow64.module is not None:
        flow64.module.eval()
    reference = torch.linalg.slogdet(batch_jacobian(flow64.forward, x.double()))[1].numpy()
    got = logdet.detach().double().reshape(-1).numpy()
    tolerance = _gamma(u, ops) * (onp.abs(reference) + x[0].numel())
    with onp.errstate(invalid="ignore"):
        bad = onp.flatnonzero(~(onp.abs(got - reference) <= tolerance))
    if bad.size:
        i = int(bad[0])
        raise AssertionError(
            f"log-determinant wrong at {str(x.dtype).removeprefix('torch.')} for {bad.size} of {len(got)} samples "
            f"({flow.library}); first: x={_fmt(x[i])}, computed {got[i]:.10g}, reference {reference[i]:.10g} "
            f"(float64 Jacobian), |difference| {abs(got[i] - reference[i]):.3g} > tolerance {tolerance[i]:.3g}"
        )
