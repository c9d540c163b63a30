"""What the monitor measures on one model: a lipflow flow (NumPy/autograd) or a torch model.

A target evaluates, at the model's working precision, the round trip x -> F^-1(F(x)) on a
probe, the smallest affine scale per block, estimates of the extreme singular values of J_F
(a few Lanczos steps: ``lipflow.analysis.fast_spectra`` for coupling flows, the torch
diagnostics' Lanczos for torch models) and, for lipflow flows, the per-layer attribution of
the round-trip error (``lipflow.analysis.attribution``, paper Section 2 split per layer).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as onp

from lipflow.blocks.flow import Flow
from lipflow.errors import LipflowError, NonConvergenceWarning
from lipflow.precision import Precision, precision

__all__ = ["LipflowTarget", "RoundTrip", "Spectrum", "TorchTarget", "as_target"]

FULL_JACOBIAN_MAX_DIM = 32


@dataclass(frozen=True)
class RoundTrip:
    """Per-row ||x - F^-1(F(x))||_2 (float64 norms of working-precision passes; Inf where a
    pass overflowed) and which rows had a non-finite forward or round-trip value."""

    errors: onp.ndarray
    nonfinite: onp.ndarray


@dataclass(frozen=True)
class Spectrum:
    """Per-row sigma_min / sigma_max of J_F (NaN where not finite); ``kind`` is "estimate"
    (Ritz values: sigma_max from below, sigma_min from above) or "exact" (full SVD, or Lanczos
    that exhausted the dimension)."""

    sigma_min: onp.ndarray
    sigma_max: onp.ndarray
    method: str
    kind: str


def _row_norms(v: onp.ndarray) -> onp.ndarray:
    with onp.errstate(over="ignore", invalid="ignore"):
        norms = onp.linalg.norm(v, axis=1)
    return onp.where(onp.all(onp.isfinite(v), axis=1), norms, onp.inf)


class LipflowTarget:
    """A lipflow :class:`~lipflow.blocks.flow.Flow` with its current params, checked at ``ctx``."""

    library = "lipflow"

    def __init__(self, flow: Flow, params: Any, ctx: Precision | str = "float64") -> None:
        if not isinstance(flow, Flow):
            raise LipflowError(f"the monitor needs a lipflow Flow (wrap one block as Flow([block])), "
                               f"got {type(flow).__name__}")
        flow._check_params(params)
        self.flow, self.params = flow, params
        self.working = precision(ctx) if isinstance(ctx, str) else ctx
        self.unit_roundoff = float(self.working.unit_roundoff)
        self.working_name = self.working.name
        self.layers = tuple(f"{k}:{type(b).__name__}" for k, b in enumerate(flow.blocks))

    def set_params(self, params: Any) -> None:
        self.params = params

    def snapshot(self) -> Any:
        return copy.deepcopy(self.params)

    def roundtrip(self, x: onp.ndarray) -> RoundTrip:
        with warnings.catch_warnings(), onp.errstate(all="ignore"):
            warnings.simplefilter("ignore", NonConvergenceWarning)
            xw = self.working.cast(x)
            z = self.flow.forward(self.params, xw, ctx=self.working)
            back = self.flow.inverse(self.params, z, ctx=self.working)
            z64, back64 = self.working.to_float64(z), self.working.to_float64(back)
            nonfinite = ~(onp.all(onp.isfinite(z64), axis=1) & onp.all(onp.isfinite(back64), axis=1))
            errors = _row_norms(self.working.to_float64(xw) - back64)
        return RoundTrip(errors=errors, nonfinite=nonfinite)

    def scales(self, x: onp.ndarray) -> dict[str, float]:
        """Smallest scale of every scaled block on the probe, along the working-precision forward
        pass (affine couplings: g(s(x1)); ActNorm / InvertibleLinear: exp(log_scale)); NaN if
        the pass there is not finite."""
        result: dict[str, float] = {}
        with warnings.catch_warnings(), onp.errstate(all="ignore"):
            warnings.simplefilter("ignore", NonConvergenceWarning)
            trace = self.flow.forward_trace(self.params, self.working.cast(x), ctx=self.working)
            prepared = self.working.cast(self.flow._prepare(self.params))
            for name, block, p, v in zip(self.layers, self.flow.blocks, prepared, trace, strict=False):
                if hasattr(block, "shift_and_log_scale"):
                    _, g, _ = block.shift_and_log_scale(p, block.split(v)[0], self.working)
                elif isinstance(p, dict) and "log_scale" in p:
                    g = onp.exp(onp.asarray(self.working.to_float64(p["log_scale"])))
                else:
                    continue
                g = onp.abs(onp.asarray(self.working.to_float64(g), dtype=onp.float64))
                result[name] = float(onp.min(g)) if onp.all(onp.isfinite(g)) else math.nan
        return result

    def spectrum(self, x: onp.ndarray, steps: int) -> Spectrum:
        from lipflow.analysis.fast_spectra import extreme_singular_values

        d = x.shape[1]
        with warnings.catch_warnings(), onp.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                values = extreme_singular_values(self.flow, self.params, x, max_steps=steps, rtol=1e-3)
                kind = "exact" if steps >= d else "estimate"
                return Spectrum(values.sigma_min, values.sigma_max, f"lanczos-{min(steps, d)} (float64)", kind)
            except LipflowError:
                pass
            except (ValueError, FloatingPointError, onp.linalg.LinAlgError):
                nan = onp.full(len(x), math.nan)
                return Spectrum(nan, nan, "lanczos (failed: non-finite Jacobian)", "estimate")
            if d > FULL_JACOBIAN_MAX_DIM:
                nan = onp.full(len(x), math.nan)
                return Spectrum(nan, nan, "unavailable for these blocks above dim 32", "estimate")
            from lipflow.analysis.jacobian import jacobian_spectrum

            spectrum = jacobian_spectrum(self.flow, self.params, x, ctx="float64")
            return Spectrum(spectrum.sigma_min, spectrum.sigma_max, "full SVD (float64)", "exact")

    def attribution(self, x: onp.ndarray) -> tuple[str, float, float] | None:
        """(worst layer, its contribution to ||x - x_delta2|| and the error itself, maxima over
        the rows), or None when some row overflows (then the non-finite count says more)."""
        from lipflow.analysis.attribution import layer_attribution

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = layer_attribution(self.flow, self.params, self.working.cast(x), ctx=self.working)
        except (LipflowError, ArithmeticError):
            return None
        worst = result.worst_layer()
        total = result.forward_contribution + result.inverse_contribution
        return self.layers[worst], float(onp.max(total[worst])), float(onp.max(result.reconstruction_error))


class TorchTarget:
    """A torch model through :func:`lipflow.interop.adapters.adapt` (forward: data -> latent).

    ``scales``, optional, is a callable ``scales(x_tensor) -> {layer name: smallest scale}``
    for models whose per-block scales the caller can read (e.g. through forward hooks).
    """

    def __init__(self, adapted: Any, scales: Any = None) -> None:
        import torch

        self.torch, self.adapted, self._scales = torch, adapted, scales
        self.library = adapted.library
        self.unit_roundoff = float(torch.finfo(adapted.dtype).eps) / 2
        self.working_name = str(adapted.dtype).removeprefix("torch.")
        self.layers = ()
        module = adapted.module
        parameter = next(iter(module.parameters()), None) if module is not None else None
        self.device = parameter.device if parameter is not None else torch.device("cpu")

    def set_params(self, params: Any) -> None:
        if params is not None:
            raise LipflowError("a torch model holds its own parameters: call monitor.step(step) without params")

    def snapshot(self) -> Any:
        module = self.adapted.module
        return None if module is None else {k: v.detach().clone() for k, v in module.state_dict().items()}

    def _tensor(self, x: onp.ndarray) -> Any:
        return self.torch.as_tensor(x, dtype=self.adapted.dtype, device=self.device)

    @contextmanager
    def _evaluating(self) -> Iterator[None]:
        """Eval mode during a check (batch-norm statistics stay untouched), restored after."""
        module = self.adapted.module
        was = bool(module is not None and module.training)
        if module is not None:
            module.eval()
        try:
            yield
        finally:
            if was:
                module.train()

    def roundtrip(self, x: onp.ndarray) -> RoundTrip:
        xt = self._tensor(x)
        with self.torch.no_grad(), self._evaluating():
            z = self.adapted.forward(xt)
            back = self.adapted.inverse(z)
        z64 = z.detach().to(self.torch.float64).cpu().numpy().reshape(len(x), -1)
        back64 = back.detach().to(self.torch.float64).cpu().numpy().reshape(len(x), -1)
        nonfinite = ~(onp.all(onp.isfinite(z64), axis=1) & onp.all(onp.isfinite(back64), axis=1))
        x64 = xt.to(self.torch.float64).cpu().numpy().reshape(len(x), -1)
        return RoundTrip(errors=_row_norms(x64 - back64), nonfinite=nonfinite)

    def scales(self, x: onp.ndarray) -> dict[str, float]:
        if self._scales is None:
            return {}
        with self.torch.no_grad(), self._evaluating():
            return {str(k): float(v) for k, v in self._scales(self._tensor(x)).items()}

    def spectrum(self, x: onp.ndarray, steps: int) -> Spectrum:
        from lipflow.interop.torch_diagnostics import jacobian_spectrum

        with self._evaluating(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = jacobian_spectrum(self.adapted.forward, self._tensor(x), method="lanczos", steps=steps)
        return Spectrum(result.sigma_min, result.sigma_max, f"{result.method} ({result.dtype})", result.kind)

    def attribution(self, x: onp.ndarray) -> None:
        return None


def as_target(model: Any, params: Any, ctx: Precision | str | None, scales: Any) -> LipflowTarget | TorchTarget:
    """A lipflow Flow (with ``params``) or anything :func:`lipflow.interop.adapters.adapt` accepts."""
    if isinstance(model, Flow):
        if params is None:
            raise LipflowError("a lipflow Flow needs its params: Monitor(flow, params=flow.init(0), ...)")
        return LipflowTarget(model, params, ctx or "float64")
    if params is not None:
        raise LipflowError("params= is for lipflow flows; a torch model holds its own parameters")
    from lipflow.interop.adapters import AdaptedFlow, adapt

    adapted = model if isinstance(model, AdaptedFlow) else adapt(model)
    return TorchTarget(adapted, scales)
