"""Audit any invertible torch map from its forward and inverse callables.

Third-party flows (zuko transforms, nflows transforms, hand-written INNs) need not follow
lipflow's module interface: :func:`audit_invertible` takes two callables on batches and
measures, under :func:`~lipflow.interop.torch_measure.measurement_mode`, the reconstruction
errors both ways, the Jacobian spectra of both maps, and, when float64 callables of the same
map are given, the delta/delta2 error budget of paper Section 2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as onp

from lipflow.errors import LipflowError
from lipflow.interop import require_torch

require_torch()
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from lipflow.interop.adapters._common import first_tensor  # noqa: E402
from lipflow.interop.torch_diagnostics import TorchSpectrum, jacobian_spectrum, row_norms, summarise  # noqa: E402
from lipflow.interop.torch_measure import measurement_mode  # noqa: E402

__all__ = ["AuditReport", "audit_invertible"]

Map = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class AuditReport:
    """What :func:`audit_invertible` measured (per-sample float64 arrays).

    Attributes:
        reconstruction: ||x - F^-1(F(x))|| per sample.
        reverse_reconstruction: ||z - F(F^-1(z))|| at z = F(x) (the other round trip).
        forward_spectrum, inverse_spectrum: Jacobian singular values of F at x and of F^-1
            at z = F(x).
        delta, delta2: the error budget terms against the float64 callables (None without).
        settings: the measurement settings in force.
    """

    reconstruction: onp.ndarray
    reverse_reconstruction: onp.ndarray
    forward_spectrum: TorchSpectrum
    inverse_spectrum: TorchSpectrum
    delta: onp.ndarray | None = None
    delta2: onp.ndarray | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Plain numbers: error statistics with Inf/NaN counts, and the worst conditioning."""
        result: dict[str, Any] = {
            "reconstruction": summarise(self.reconstruction),
            "reverse_reconstruction": summarise(self.reverse_reconstruction),
            "forward_sigma_max": float(onp.nanmax(self.forward_spectrum.sigma_max)),
            "forward_sigma_min": float(onp.nanmin(self.forward_spectrum.sigma_min)),
            "inverse_sigma_max": float(onp.nanmax(self.inverse_spectrum.sigma_max)),
            "spectrum_method": self.forward_spectrum.method,
            "spectrum_kind": self.forward_spectrum.kind,
        }
        if self.delta is not None and self.delta2 is not None:
            result["delta"] = summarise(self.delta)
            result["delta2"] = summarise(self.delta2)
        return result


class _Callables(torch.nn.Module):
    """Adapter: a module-like view (``__call__`` and ``inverse``) of two callables."""

    def __init__(self, forward: Map, inverse: Map) -> None:
        super().__init__()
        self._forward, self._inverse = forward, inverse

    def forward(self, x: Tensor) -> Tensor:
        return first_tensor(self._forward(x), "forward")

    def inverse(self, z: Tensor) -> Tensor:
        return first_tensor(self._inverse(z), "inverse")


def audit_invertible(
    forward: Map,
    inverse: Map,
    x: Tensor,
    *,
    reference: tuple[Map, Map] | None = None,
    method: str = "auto",
    steps: int = 32,
) -> AuditReport:
    """Measure the numerical invertibility of a third-party map on the batch ``x``.

    Args:
        forward: the map F, a callable on batches (n, ...) of one dtype.
        inverse: its inverse F^-1, on batches of the same shape and dtype.
        x: sample points (e.g. data); z = forward(x) is where the inverse is examined.
        reference: (forward64, inverse64), the same map evaluated in float64 (e.g. a
            ``copy.deepcopy(model).double()``); enables delta and delta2.
        method: how the Jacobian spectra are computed: "auto", "full" or "lanczos" (see
            ``jacobian_spectrum``).
        steps: Lanczos steps.

    Example, a zuko transform: ``t = flow().transform; audit_invertible(t, t.inv, x)``.
    """
    if not (callable(forward) and callable(inverse)):
        raise LipflowError("audit_invertible needs two callables: forward and inverse")
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] < 1:
        raise LipflowError("audit_invertible needs a batch tensor x of shape (n, ...) with n >= 1")
    adapter = _Callables(forward, inverse)
    forward, inverse = adapter.forward, adapter.inverse  # (output, logdet) tuples unwrapped
    with measurement_mode() as settings:
        with torch.no_grad():
            z = forward(x)
            if z.shape != x.shape:
                raise LipflowError(
                    f"forward maps shape {tuple(x.shape)} to {tuple(z.shape)}; an invertible map keeps the shape"
                )
            reconstruction = row_norms(x - inverse(z))
            reverse = row_norms(z - forward(inverse(z)))
        forward_spectrum = jacobian_spectrum(adapter, x, method=method, steps=steps)
        inverse_spectrum = jacobian_spectrum(adapter, z.detach(), direction="inverse", method=method, steps=steps)
        delta = delta2 = None
        if reference is not None:
            forward64, inverse64 = reference
            with torch.no_grad():
                x64 = x.to(torch.float64)
                z64 = first_tensor(forward64(x64), "reference forward")
                delta = row_norms(z64 - z.to(torch.float64))
                x1 = first_tensor(inverse64(z.to(torch.float64)), "reference inverse")
                delta2 = row_norms(x1 - inverse(z).to(torch.float64))
    return AuditReport(
        reconstruction=reconstruction,
        reverse_reconstruction=reverse,
        forward_spectrum=forward_spectrum,
        inverse_spectrum=inverse_spectrum,
        delta=delta,
        delta2=delta2,
        settings=settings,
    )
