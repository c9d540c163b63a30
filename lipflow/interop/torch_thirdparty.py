"""``audit(model, x)``: the numerical invertibility of any supported torch flow, with no glue.

The model is adapted (:mod:`lipflow.interop.adapters`: zuko, nflows, normflows, FrEIA, lipflow
modules, callable pairs), run at its working dtype, and compared with an independent float64
copy. Per sample (paper Section 2, with F the float64 copy and z_d = F_d(x) the computed
forward pass):

* reconstruction ||x - F_d^-1(z_d)|| (measured);
* delta = ||z_d - F(x)|| (estimate: the reference is float64, not exact);
* the reference x_ref ~ F^-1(z_d): Newton's method on F with float64 Jacobian solves, started
  from the better of the model's float64 inverse and x (:mod:`lipflow.interop.torch_reference`),
  with a first-order residual certificate (estimate);
* delta2 = ||F_d^-1(z_d) - x_ref||, split into its rounding part ||F_d^-1(z_d) - F_64^-1(z_d)||
  and the *algorithmic* part ||F_64^-1(z_d) - x_ref|| (the model's own float64 inverse against
  the reference: a truncated iteration or a rounded constant, which no precision removes);
* the segment Lipschitz estimate of F^-1 (1/sigma_min of J_F at x and x_ref), the first-order
  budget Lip delta + delta2 and the ratio error / budget, and the rounding-only budget
  Lip delta + delta2_rounding (an error beyond it is not explained by rounding);
* the spectra of the float64 Jacobian of F at x (``kind="exact"``) and of F^-1 at z_d (from J_F
  at x_ref, ``kind="estimate"``): sigma_min, sigma_max, cond per sample.

Inf/NaN are counted per quantity, never averaged (:func:`summarise`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as onp

from lipflow.errors import LipflowError
from lipflow.interop import require_torch

require_torch()
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from lipflow.interop.adapters import AdaptedFlow, adapt  # noqa: E402
from lipflow.interop.torch_diagnostics import (  # noqa: E402
    FULL_JACOBIAN_MAX_DIM,
    TorchSpectrum,
    jacobian_spectrum,
    row_norms,
    summarise,
)
from lipflow.interop.torch_inputs import INPUT_KINDS, audit_inputs, box_attack  # noqa: E402
from lipflow.interop.torch_measure import measurement_mode  # noqa: E402
from lipflow.interop.torch_reference import batch_jacobian, newton_reference  # noqa: E402

__all__ = ["LABELS", "ThirdPartyReport", "audit"]

#: how each reported quantity is to be read
LABELS = {
    "reconstruction": "measured",
    "delta": "estimate",
    "delta2": "estimate",
    "delta2_rounding": "estimate",
    "algorithmic": "estimate",
    "certificate": "estimate",
    "lipschitz": "estimate",
    "budget": "estimate",
    "ratio": "estimate",
    "rounding_budget": "estimate",
    "rounding_ratio": "estimate",
    "cond": "exact",
    "sigma_min": "exact",
    "sigma_max": "exact",
}
QUANTITIES = ("reconstruction", "delta", "delta2", "delta2_rounding", "algorithmic", "certificate", "lipschitz",
              "budget", "ratio", "rounding_budget", "rounding_ratio")


@dataclass(frozen=True)
class ThirdPartyReport:
    """Per-sample results of :func:`audit` (float64 NumPy arrays, one entry per audited input).

    ``groups`` names the input set of each sample ("data", "rings", ...); ``labels`` says which
    values are measured, estimates or exact; ``algorithmic_flag`` marks samples whose float64
    inverse error exceeds the float64 rounding model ``algorithmic_tolerance``.
    """

    library: str
    direction_note: str
    dtype: str
    dtype_note: str
    reference_note: str
    x: onp.ndarray
    groups: onp.ndarray
    values: dict[str, onp.ndarray]
    forward_spectrum: TorchSpectrum
    inverse_spectrum: TorchSpectrum
    algorithmic_tolerance: onp.ndarray
    algorithmic_flag: onp.ndarray
    labels: dict[str, str] = field(default_factory=lambda: dict(LABELS))
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = float("nan")

    def __getattr__(self, name: str) -> onp.ndarray:
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(name)

    @property
    def cond(self) -> onp.ndarray:
        return self.forward_spectrum.cond

    def _count(self, mask: onp.ndarray, decided: onp.ndarray) -> dict[str, int]:
        return {"count": int(onp.sum(mask & decided)), "decided": int(onp.sum(decided))}

    def summary(self, per_sample: bool = True) -> dict[str, Any]:
        """Plain numbers: statistics (with Inf/NaN counts) per quantity and per input set, the
        counts beyond the budgets and of algorithmic errors, and per-sample cond/sigma."""
        v = self.values
        ratio_ok, rounding_ok = onp.isfinite(v["ratio"]), onp.isfinite(v["rounding_ratio"])
        alg_ok = onp.isfinite(v["algorithmic"]) & onp.isfinite(self.algorithmic_tolerance)
        result: dict[str, Any] = {
            "library": self.library,
            "direction": self.direction_note,
            "dtype": self.dtype,
            "dtype_note": self.dtype_note,
            "reference": self.reference_note,
            "n": len(self.groups),
            "labels": dict(self.labels),
            **{name: summarise(v[name]) for name in QUANTITIES},
            "cond": summarise(self.cond),
            "sigma_min": summarise(self.forward_spectrum.sigma_min),
            "sigma_max": summarise(self.forward_spectrum.sigma_max),
            "spectrum": {"method": self.forward_spectrum.method, "kind": self.forward_spectrum.kind,
                         "dtype": self.forward_spectrum.dtype},
            "beyond_budget": self._count(v["ratio"] > 1, ratio_ok),
            "beyond_rounding_budget": self._count(v["rounding_ratio"] > 1, rounding_ok),
            "algorithmic_errors": self._count(self.algorithmic_flag, alg_ok),
            "groups": {
                name: {
                    "reconstruction": summarise(v["reconstruction"][self.groups == name]),
                    "cond": summarise(self.cond[self.groups == name]),
                    "beyond_budget": self._count(v["ratio"][self.groups == name] > 1, ratio_ok[self.groups == name]),
                }
                for name in dict.fromkeys(self.groups.tolist())
            },
            "seconds": self.seconds,
        }
        if per_sample:
            result["per_sample"] = {
                "group": self.groups.tolist(),
                "cond": self.cond.tolist(),
                "sigma_min": self.forward_spectrum.sigma_min.tolist(),
                "sigma_max": self.forward_spectrum.sigma_max.tolist(),
                "ratio": v["ratio"].tolist(),
            }
        return result

    def markdown(self) -> str:
        """The summary as Markdown tables (statistics of finite values; Inf/NaN counted apart)."""
        s = self.summary(per_sample=False)

        def fmt(x: float) -> str:
            return f"{x:.3g}" if onp.isfinite(x) else str(x)

        lines = [
            f"- library: {self.library}; working dtype {self.dtype} ({self.dtype_note})",
            f"- direction: {self.direction_note}",
            f"- reference: {self.reference_note}",
            f"- spectra: {s['spectrum']['method']} ({s['spectrum']['kind']}, {s['spectrum']['dtype']})",
            f"- samples beyond the first-order budget: {s['beyond_budget']['count']} of "
            f"{s['beyond_budget']['decided']} decided; beyond the rounding-only budget: "
            f"{s['beyond_rounding_budget']['count']} of {s['beyond_rounding_budget']['decided']}",
            f"- algorithmic inverse errors (float64 inverse off the reference beyond float64 rounding): "
            f"{s['algorithmic_errors']['count']} of {s['algorithmic_errors']['decided']} decided",
            "",
            "| quantity | label | median | max | Inf | NaN |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name in (*QUANTITIES, "cond", "sigma_min", "sigma_max"):
            st = s[name]
            lines.append(f"| {name} | {self.labels[name]} | {fmt(st['median'])} | {fmt(st['max'])} | "
                         f"{st['n_inf']} | {st['n_nan']} |")
        lines += ["", "| inputs | n | reconstruction median | max | Inf | NaN | % Inf/NaN | cond max | beyond budget |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, g in s["groups"].items():
            r = g["reconstruction"]
            share = 100 * (r["n_inf"] + r["n_nan"]) / max(r["n"], 1)
            lines.append(f"| {name} | {r['n']} | {fmt(r['median'])} | {fmt(r['max'])} | {r['n_inf']} | "
                         f"{r['n_nan']} | {share:.1f} | {fmt(g['cond']['max'])} | {g['beyond_budget']['count']} of "
                         f"{g['beyond_budget']['decided']} |")
        return "\n".join(lines) + "\n"


@contextmanager
def _evaluation(module: Any) -> Any:
    """The module in eval mode inside the block; every submodule's flag restored after."""
    if module is None:
        yield
        return
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.train(flag)


def _warm_up(flow: AdaptedFlow, x: Tensor) -> None:
    """One forward pass in the model's own mode, so data-initialised layers (ActNorm) are set
    before the float64 copy is made; running batch statistics are not updated."""
    if flow.module is None:
        return
    stats = [m for m in flow.module.modules() if hasattr(m, "running_mean") and m.training]
    for m in stats:
        m.eval()
    try:
        with torch.no_grad():
            _call(flow.forward, x)
    finally:
        for m in stats:
            m.train(True)


def _call(fun: Callable[[Tensor], Tensor], v: Tensor) -> Tensor:
    """fun(v) on a private copy of v (some libraries set requires_grad on their input in place)."""
    return fun(v.detach().clone()).detach()


def _ratio(error: onp.ndarray, budget: onp.ndarray) -> onp.ndarray:
    with onp.errstate(divide="ignore", invalid="ignore"):
        ratio = error / budget
    return onp.where((budget == 0) & (error == 0), 0.0, ratio)


def audit(
    model: Any,
    x: Tensor,
    *,
    inverse: Callable[[Tensor], Tensor] | None = None,
    dtype: torch.dtype | None = None,
    inputs: str | Sequence[str] = ("data",),
    radius: float | None = None,
    noise_scale: float = 1.0,
    box: float | None = None,
    ops: int = 256,
    newton_steps: int = 12,
    max_dim: int = FULL_JACOBIAN_MAX_DIM,
    seed: int = 0,
) -> ThirdPartyReport:
    """Audit ``model`` on the batch ``x`` (and the failure-finding inputs named by ``inputs``).

    Args:
        model: any object :func:`~lipflow.interop.adapters.adapt` accepts (a forward callable
            with ``inverse=``, or a ``(forward, inverse)`` tuple, too).
        x: the in-distribution batch (n, ...); rounded to the working dtype, which is then the
            exact input.
        dtype: the working dtype (default: the floating parameters' majority; x's dtype for
            parameter-free callables).
        inputs: "all" or a subset of :data:`~lipflow.interop.torch_inputs.INPUT_KINDS`.
        radius: the largest ring radius and grid half-width (see
            :func:`~lipflow.interop.torch_inputs.audit_inputs`).
        noise_scale: the scale of the noise inputs.
        box: the dequantisation box half-width for "box-attack" (default: half a bin of 256
            levels over the data's range, (max - min) / 512).
        ops: operations per output in the float64 rounding model gamma_ops (Lip ||z|| + ||x||)
            (+ the reference's certificate) that separates algorithmic inverse errors from
            rounding; the default 256 is deliberately generous, so that rounding of a deep float64
            pass is not called algorithmic (an estimate, like the model).
        newton_steps: Newton steps at most for the reference.
        seed: seed of the noise inputs and of the box search.
        max_dim: above this many features per sample, no Jacobians are formed: the spectra are
            Lanczos estimates and the reference is the model's own float64 inverse (said so).
    """
    start = time.perf_counter()
    flow = adapt(model, inverse, dtype=dtype)
    if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[0] < 1 or not x.is_floating_point():
        raise LipflowError("audit needs a floating batch tensor x of shape (n, ...) with n >= 1")
    work = dtype or (flow.dtype if flow.dtype_from_parameters else x.dtype)
    dtype_note = flow.dtype_note if (dtype or flow.dtype_from_parameters) else "the dtype of x (no parameters)"
    device = next((p.device for p in flow.module.parameters()), x.device) if flow.module is not None else x.device
    x = x.detach().to(device=device, dtype=work)
    _warm_up(flow, x)
    with measurement_mode() as settings, _evaluation(flow.module):
        flow64 = flow.to_float64()
        if flow64.module is not None:
            flow64.module.eval()
        sets = audit_inputs(x, [k for k in (list(INPUT_KINDS) if inputs == "all" else
                                            [inputs] if isinstance(inputs, str) else inputs) if k != "box-attack"],
                            radius=radius, noise_scale=noise_scale, seed=seed)
        wants_attack = inputs == "all" or "box-attack" in ([inputs] if isinstance(inputs, str) else inputs)
        if wants_attack:
            half = box if box is not None else float(x.double().max() - x.double().min()) / 512
            sets["box-attack"] = box_attack(lambda v: _call(flow.forward, v), lambda v: _call(flow.inverse, v), x,
                                            box=half, seed=seed)[0]
        xs = torch.cat(list(sets.values())).detach()
        groups = onp.concatenate([onp.full(len(v), k, dtype=object) for k, v in sets.items()]).astype(str)
        report = _measure(flow, flow64, xs, ops=ops, newton_steps=newton_steps, max_dim=max_dim)
    return ThirdPartyReport(library=flow.library, direction_note=flow.direction_note,
                            dtype=str(work).removeprefix("torch."), dtype_note=dtype_note, groups=groups,
                            settings=settings, seconds=time.perf_counter() - start, **report)


def _measure(flow: AdaptedFlow, flow64: AdaptedFlow, xs: Tensor, *, ops: int, newton_steps: int,
             max_dim: int) -> dict[str, Any]:
    from lipflow.precision import precision

    n, d = xs.shape[0], xs[0].numel()
    x64 = xs.to(torch.float64)
    with torch.no_grad():
        z_d = _call(flow.forward, xs)
        x_d2 = _call(flow.inverse, z_d)
        z64 = z_d.to(torch.float64)
        z_ref = _call(flow64.forward, x64)
        x_model64 = _call(flow64.inverse, z64)
    finite = torch.isfinite(z64.reshape(n, -1)).all(dim=1)
    nan = onp.full(n, onp.nan)
    smin_x, smax_x, smin_ref, smax_ref = nan.copy(), nan.copy(), nan.copy(), nan.copy()
    certificate = nan.copy()
    x_ref = torch.full_like(x64, float("nan"))
    if d <= max_dim:
        idx = torch.nonzero(finite).flatten()
        if len(idx):
            ref = newton_reference(flow64.forward, z64[idx], {"model inverse": x_model64[idx], "input": x64[idx]},
                                   max_steps=newton_steps)
            x_ref[idx] = ref.x
            certificate[idx.cpu().numpy()] = ref.certificate.cpu().numpy()
            jac_x = batch_jacobian(flow64.forward, x64[idx])
            for jac, lo, hi in ((jac_x, smin_x, smax_x), (ref.jacobian, smin_ref, smax_ref)):
                ok = torch.isfinite(jac).all(dim=(1, 2))
                values = torch.full((len(idx), min(jac.shape[1:])), float("nan"), dtype=torch.float64)
                if bool(ok.any()):
                    values[ok.cpu()] = torch.linalg.svdvals(jac[ok]).cpu()
                lo[idx.cpu().numpy()], hi[idx.cpu().numpy()] = values[:, -1].numpy(), values[:, 0].numpy()
        reference_note = ("Newton's method on the float64 copy's forward map (float64 Jacobian solves), started "
                          "from the better of the model's float64 inverse and the input; first-order residual "
                          "certificate (estimate)")
        method, kind = "full float64 autograd Jacobian", "exact"
    else:
        x_ref = x_model64
        spectrum = jacobian_spectrum(flow64.forward, x64, method="lanczos")
        smin_x, smax_x = spectrum.sigma_min, spectrum.sigma_max
        smin_ref, smax_ref = smin_x, smax_x
        reference_note = (f"the model's own float64 inverse (more than {max_dim} features: no Newton refinement, so "
                          "algorithmic inverse errors are not separated)")
        method, kind = spectrum.method + " on the float64 copy", "estimate"
    with onp.errstate(divide="ignore", invalid="ignore"):
        lipschitz = onp.fmax(1 / smin_x, 1 / smin_ref)
    values = {
        "reconstruction": row_norms(xs.to(torch.float64) - x_d2.to(torch.float64)),
        "delta": row_norms(z64 - z_ref),
        "delta2": row_norms(x_d2.to(torch.float64) - x_ref),
        "delta2_rounding": row_norms(x_d2.to(torch.float64) - x_model64),
        "algorithmic": row_norms(x_model64 - x_ref) if d <= max_dim else nan.copy(),
        "certificate": certificate,
        "lipschitz": lipschitz,
    }
    values["budget"] = lipschitz * values["delta"] + values["delta2"]
    values["ratio"] = _ratio(values["reconstruction"], values["budget"])
    values["rounding_budget"] = lipschitz * values["delta"] + values["delta2_rounding"]
    values["rounding_ratio"] = _ratio(values["reconstruction"], values["rounding_budget"])
    gamma = precision("float64").gamma(ops)
    with onp.errstate(invalid="ignore"):
        tolerance = gamma * (lipschitz * row_norms(z64) + row_norms(x_ref)) + onp.nan_to_num(certificate, nan=onp.inf)
        flag = values["algorithmic"] > tolerance
    forward = TorchSpectrum(sigma_max=smax_x, sigma_min=smin_x, method=method, kind=kind, direction="forward",
                            dtype="float64")
    with onp.errstate(divide="ignore", invalid="ignore"):
        inverse = TorchSpectrum(sigma_max=1 / smin_ref, sigma_min=1 / smax_ref, method=f"{method} at the reference",
                                kind="estimate", direction="inverse", dtype="float64")
    return dict(reference_note=reference_note, x=x64.detach().cpu().numpy(), values=values, forward_spectrum=forward,
                inverse_spectrum=inverse, algorithmic_tolerance=tolerance, algorithmic_flag=flag)
