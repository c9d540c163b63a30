"""Torch-native diagnostics: reconstruction error, the delta/delta2 error budget, Jacobian spectra.

Works on any invertible torch module with ``forward`` (its ``__call__``) and ``inverse`` on
batches whose first axis indexes samples (vectors (n, d) or images (n, c, h, w); samples are
flattened for norms and Jacobians). Norms are l2 per sample, computed in float64; Inf/NaN
samples are kept and counted, never dropped.

Error budget (paper Section 2): with z_delta = F_delta(x) the computed forward pass,
delta = z_delta - F(x) and x_delta2 = F_delta^-1(z_delta),
delta2 = x_delta2 - F^-1(z_delta), so that ||x - x_delta2|| <= ||x - F^-1(z_delta)|| + ||delta2||,
where the first term is the forward error propagated by the exact inverse (at most
Lip(F^-1) ||delta||). "Exact" maps are a float64 copy of the module or lipflow's mpmath path.

Spectra: ``method="full"`` forms the Jacobian by one reverse-mode product per output
coordinate (as ``jacrev`` does) and takes its singular values in float64. ``method="lanczos"``
never forms it: it builds a Krylov basis V of J^T J by Lanczos with full reorthogonalisation
(J v by forward mode through a double reverse pass, J^T u by reverse mode) and returns the
singular values of J V (Rayleigh-Ritz). Then sigma_max(JV) <= sigma_max(J) and
sigma_min(JV) >= sigma_min(J) in exact arithmetic: both are *estimates*, bracketing from inside.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as onp

from lipflow.errors import LipflowError
from lipflow.interop import require_torch

require_torch()
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

__all__ = [
    "TorchErrorBudget",
    "TorchSpectrum",
    "error_budget",
    "jacobian_spectrum",
    "reconstruction_error",
    "row_norms",
    "summarise",
]

#: above this many features per sample, ``method="auto"`` uses Lanczos instead of the full Jacobian
FULL_JACOBIAN_MAX_DIM = 256


def row_norms(v: Tensor) -> onp.ndarray:
    """l2 norm of each sample (first axis), in float64, as a NumPy array (Inf/NaN kept)."""
    flat = v.detach().reshape(v.shape[0], -1).to(torch.float64)
    return torch.linalg.vector_norm(flat, dim=1).cpu().numpy()


def summarise(values: onp.ndarray) -> dict[str, float | int]:
    """Counts of Inf and NaN and statistics of the finite values (never averaged with them)."""
    values = onp.asarray(values, dtype=onp.float64)
    finite = values[onp.isfinite(values)]
    stats: dict[str, float | int] = {
        "n": int(values.size),
        "n_inf": int(onp.sum(onp.isinf(values))),
        "n_nan": int(onp.sum(onp.isnan(values))),
    }
    for name, fun in (("mean", onp.mean), ("median", onp.median), ("max", onp.max)):
        stats[name] = float(fun(finite)) if finite.size else float("nan")
    return stats


THIRD_PARTY = ("zuko", "nflows", "normflows", "FrEIA")


class _Adapted:
    """A third-party flow seen with lipflow's conventions: call = data -> latent, ``inverse``."""

    def __init__(self, flow: Any) -> None:
        self.flow = flow

    def __call__(self, x: Tensor) -> Tensor:
        return self.flow.forward(x)

    def inverse(self, z: Tensor) -> Tensor:
        return self.flow.inverse(z)


def as_invertible(module: Any) -> Any:
    """zuko / nflows / normflows / FrEIA objects through :func:`lipflow.interop.adapters.adapt`
    (tuple outputs unwrapped, each library's direction convention applied); others unchanged."""
    from lipflow.interop.adapters import adapt
    from lipflow.interop.adapters._common import from_library

    if any(from_library(module, name) for name in THIRD_PARTY):
        return _Adapted(adapt(module))
    return module


def _needs_inverse(module: Any, who: str) -> None:
    if not callable(getattr(module, "inverse", None)):
        raise LipflowError(
            f"{who} needs a module with an inverse method; for other invertible maps use "
            "audit_invertible(forward, inverse, x)"
        )


def _module_dtype(module: Any) -> torch.dtype:
    """The dtype holding most floating parameter elements (a tie raises; see ``majority_dtype``)."""
    from lipflow.interop.adapters._common import majority_dtype

    if isinstance(module, _Adapted):
        return module.flow.dtype
    dtype, _ = majority_dtype(module, None, "error_budget")
    return dtype if dtype is not None else torch.get_default_dtype()


def _module_device(module: Any) -> torch.device:
    if isinstance(module, _Adapted):
        module = module.flow.module
        if module is None:
            return torch.device("cpu")
    for tensor in [*module.parameters(), *module.buffers()]:
        return tensor.device
    return torch.device("cpu")


def reconstruction_error(module: Any, x: Tensor) -> onp.ndarray:
    """||x - F^-1(F(x))||_2 per sample (float64 array; Inf/NaN where the inverse explodes)."""
    module = as_invertible(module)
    _needs_inverse(module, "reconstruction_error")
    with torch.no_grad():
        return row_norms(x - module.inverse(module(x)))


@dataclass(frozen=True)
class TorchErrorBudget:
    """Per-sample terms of the reconstruction error budget (paper Section 2), float64 arrays.

    Attributes:
        reconstruction: ||x - x_delta2||, the error a user sees.
        delta: ||F_delta(x) - F(x)||, the forward pass's error.
        propagated: ||x - F^-1(z_delta)||, the forward error after the exact inverse
            (at most Lip(F^-1) ||delta|| over the segment [z, z_delta]).
        delta2: ||F_delta^-1(z_delta) - F^-1(z_delta)||, the inverse pass's own error.
        working: the dtype of the module measured; reference: "float64" or "mpNN".
    """

    reconstruction: onp.ndarray
    delta: onp.ndarray
    propagated: onp.ndarray
    delta2: onp.ndarray
    working: str
    reference: str

    def summary(self) -> dict[str, dict[str, float | int]]:
        return {name: summarise(getattr(self, name)) for name in ("reconstruction", "delta", "propagated", "delta2")}


def _reference_maps(module: Any, reference: str) -> tuple[Callable, Callable, Callable]:
    """(forward, inverse, norm of difference to a working-precision tensor) at the reference."""
    if reference == "float64":
        exact = _Adapted(module.flow.to_float64()) if isinstance(module, _Adapted) else (
            copy.deepcopy(module).to(torch.float64))

        def distance(reference_value: Tensor, working_value: Tensor) -> onp.ndarray:
            return row_norms(reference_value - working_value.to(torch.float64))

        def forward(x: Tensor) -> Tensor:
            with torch.no_grad():
                return exact(x.to(torch.float64))

        def inverse(z: Tensor) -> Tensor:
            with torch.no_grad():
                return exact.inverse(z.to(torch.float64))

        return forward, inverse, distance
    if reference.startswith("mp"):
        from lipflow.interop.torch import from_torch
        from lipflow.precision import precision

        context = precision(reference)
        block, params = from_torch(module)

        def as_mp(t: Tensor) -> onp.ndarray:
            return context.cast(t.detach().to("cpu", torch.float64).numpy())

        def distance_mp(reference_value: onp.ndarray, working_value: Tensor) -> onp.ndarray:
            diff = reference_value - as_mp(working_value)
            return onp.asarray(context.to_float64(context.sqrt(context.sum(diff * diff, axis=1))), dtype=onp.float64)

        return (
            lambda x: block.forward(params, as_mp(x), ctx=context),
            lambda z: block.inverse(params, as_mp(z), ctx=context),
            distance_mp,
        )
    raise LipflowError(f"reference must be 'float64' or an mpmath precision such as 'mp50', got {reference!r}")


def error_budget(module: Any, x: Tensor, *, reference: str = "float64") -> TorchErrorBudget:
    """delta, delta2 and the reconstruction error of ``module`` at its own dtype on ``x``.

    ``x`` is rounded to the module's dtype first (that rounded x is the exact input). The
    reference is a float64 copy of the module (parameters widened exactly), or, for modules
    made by ``to_torch``, lipflow's mpmath path (``reference="mp50"``).
    """
    module = as_invertible(module)
    _needs_inverse(module, "error_budget")
    dtype = _module_dtype(module)
    if reference == "float64" and dtype == torch.float64:
        raise LipflowError(
            "the module already works in float64, so a float64 reference measures nothing; use "
            "reference='mp50' (modules made by to_torch) or measure a float32 copy"
        )
    forward_ref, inverse_ref, distance = _reference_maps(module, reference)
    x = x.detach().to(device=_module_device(module), dtype=dtype)
    with torch.no_grad():
        z_delta = module(x)
        x_delta2 = module.inverse(z_delta)
    z_exact = forward_ref(x)
    x_delta1 = inverse_ref(z_delta)
    return TorchErrorBudget(
        reconstruction=row_norms(x.to(torch.float64) - x_delta2.to(torch.float64)),
        delta=distance(z_exact, z_delta),
        propagated=distance(x_delta1, x),
        delta2=distance(x_delta1, x_delta2),
        working=str(dtype).removeprefix("torch."),
        reference=reference,
    )


@dataclass(frozen=True)
class TorchSpectrum:
    """Extreme singular values of per-sample Jacobians (float64 arrays, NaN for non-finite).

    Attributes:
        sigma_max, sigma_min: per sample.
        method: "full" (singular values of the computed Jacobian) or "lanczos-k"
            (Ritz estimates from k steps: sigma_max from below, sigma_min from above).
        kind: "exact" only for a full float64 Jacobian at the point, else "estimate" (a float32
            Jacobian's singular values are off by up to cond * u32 relative).
        direction: "forward" or "inverse"; dtype: the working dtype of the products.
    """

    sigma_max: onp.ndarray
    sigma_min: onp.ndarray
    method: str
    kind: str
    direction: str
    dtype: str

    @property
    def cond(self) -> onp.ndarray:
        with onp.errstate(divide="ignore", invalid="ignore"):
            return onp.where(self.sigma_min > 0, self.sigma_max / self.sigma_min, onp.inf)


def _map_of(module: Any, direction: str) -> Callable[[Tensor], Tensor]:
    if direction == "forward":
        return module
    if direction == "inverse":
        _needs_inverse(module, "jacobian_spectrum(direction='inverse')")
        return module.inverse
    raise LipflowError(f"direction must be 'forward' or 'inverse', got {direction!r}")


def _full_singular_values(fun: Callable[[Tensor], Tensor], x: Tensor) -> onp.ndarray:
    n, d = x.shape[0], x[0].numel()
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        y = fun(x)
        rows = []
        for k in range(y[0].numel()):
            cotangent = torch.zeros_like(y).reshape(n, -1)
            cotangent[:, k] = 1
            (row,) = torch.autograd.grad(y, x, cotangent.reshape(y.shape), retain_graph=True)
            rows.append(row.reshape(n, d))
    jac = torch.stack(rows, dim=1).to(torch.float64)
    finite = torch.isfinite(jac).all(dim=2).all(dim=1)
    values = torch.full((n, min(jac.shape[1], d)), float("nan"), dtype=torch.float64, device=jac.device)
    if bool(finite.any()):
        values[finite] = torch.linalg.svdvals(jac[finite])
    return values.cpu().numpy()


def _lanczos_singular_values(fun: Callable[[Tensor], Tensor], x: Tensor, steps: int, seed: int) -> onp.ndarray:
    n, d = x.shape[0], x[0].numel()
    steps = min(steps, d)
    generator = torch.Generator(device="cpu").manual_seed(seed)

    def random_unit() -> Tensor:
        v = torch.randn(n, d, generator=generator, dtype=torch.float64).to(x.device)
        return v / torch.linalg.vector_norm(v, dim=1, keepdim=True)

    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        y = fun(xg)
        u = torch.zeros_like(y, requires_grad=True)
        (jt_u,) = torch.autograd.grad(y, xg, u, create_graph=True)

        def jvp(v: Tensor) -> Tensor:
            (value,) = torch.autograd.grad(jt_u, u, v.to(x.dtype).reshape(x.shape), retain_graph=True)
            return value.reshape(n, -1)

        def vjp(w: Tensor) -> Tensor:
            (value,) = torch.autograd.grad(y, xg, w.reshape(y.shape), retain_graph=True)
            return value.reshape(n, d)

        basis = [random_unit()]
        images = []
        for j in range(steps):
            jv = jvp(basis[j])
            images.append(jv.to(torch.float64))
            if j == steps - 1:
                break
            w = vjp(jv).to(torch.float64)
            before = torch.linalg.vector_norm(w, dim=1, keepdim=True)
            stacked = torch.stack(basis, dim=2)  # (n, d, j+1)
            for _ in range(2):  # full reorthogonalisation, twice is enough
                w = w - torch.einsum("ndk,nk->nd", stacked, torch.einsum("ndk,nd->nk", stacked, w))
            after = torch.linalg.vector_norm(w, dim=1, keepdim=True)
            # Krylov space exhausted (or J v = 0): continue with a fresh direction
            broken = ~(after > 1e-8 * before) | ~torch.isfinite(after)
            if bool(broken.any()):
                fresh = random_unit()
                for _ in range(2):
                    fresh = fresh - torch.einsum("ndk,nk->nd", stacked, torch.einsum("ndk,nd->nk", stacked, fresh))
                w = torch.where(broken, fresh, w)
                after = torch.linalg.vector_norm(w, dim=1, keepdim=True)
            basis.append(w / after)
    jv_matrix = torch.stack(images, dim=2)  # (n, d_out, k)
    finite = torch.isfinite(jv_matrix).all(dim=2).all(dim=1)
    values = torch.full((n, steps), float("nan"), dtype=torch.float64, device=jv_matrix.device)
    if bool(finite.any()):
        values[finite] = torch.linalg.svdvals(jv_matrix[finite])
    return values.cpu().numpy()


def jacobian_spectrum(
    module: Any,
    x: Tensor,
    *,
    direction: str = "forward",
    method: str = "auto",
    steps: int = 32,
    seed: int = 0,
) -> TorchSpectrum:
    """sigma_max and sigma_min of the Jacobian of F (or F^-1) at each sample of ``x``.

    Args:
        module: a module (its ``__call__`` is F) with ``inverse`` for ``direction="inverse"``,
            or any callable for ``direction="forward"``.
        x: points (n, ...) at which to differentiate (for the inverse: points z in the image).
        method: "full", "lanczos", or "auto" (full up to ``FULL_JACOBIAN_MAX_DIM`` features).
        steps: Lanczos steps (capped at the number of features; then the result is exact).
    """
    fun = _map_of(as_invertible(module), direction)
    d = x[0].numel()
    if method == "auto":
        method = "full" if d <= FULL_JACOBIAN_MAX_DIM else "lanczos"
    if method == "full":
        # singular values of the computed Jacobian are exact only when it is computed in float64
        values, label = _full_singular_values(fun, x), "full"
        kind = "exact" if x.dtype == torch.float64 else "estimate"
    elif method == "lanczos":
        if steps < 1:
            raise LipflowError(f"Lanczos needs steps >= 1, got {steps}")
        values = _lanczos_singular_values(fun, x, steps, seed)
        label = f"lanczos-{min(steps, d)}"
        kind = "exact" if steps >= d and x.dtype == torch.float64 else "estimate"
    else:
        raise LipflowError(f"method must be 'auto', 'full' or 'lanczos', got {method!r}")
    return TorchSpectrum(
        sigma_max=values[:, 0],
        sigma_min=values[:, -1],
        method=label,
        kind=kind,
        direction=direction,
        dtype=str(x.dtype).removeprefix("torch."),
    )
