"""Adapters: one interface (:class:`AdaptedFlow`) over invertible torch models.

This minimal version accepts lipflow's torch modules (``lipflow.interop.torch``) and a
``(forward, inverse)`` pair of callables; third-party flow libraries plug in behind the same
``adapt`` entry point. Importing this package never imports torch; ``adapt`` does.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from lipflow.errors import LipflowError
from lipflow.interop import require_torch

__all__ = ["AdaptedFlow", "adapt"]


class AdaptedFlow:
    """An invertible torch map seen through one interface (forward: data -> latent)."""

    def __init__(self, library: str, forward: Callable, inverse: Callable, *, module: Any = None,
                 logdet: Callable | None = None, dtype: Any = None, direction_note: str = "") -> None:
        torch = require_torch()
        self.library, self.module, self.direction_note = library, module, direction_note
        self._forward, self._inverse, self._logdet = forward, inverse, logdet
        if dtype is None and module is not None:
            dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), None)
        self.dtype = dtype if dtype is not None else torch.get_default_dtype()

    def forward(self, x: Any) -> Any:
        return self._forward(x)

    def inverse(self, z: Any) -> Any:
        return self._inverse(z)

    def forward_and_logdet(self, x: Any) -> tuple[Any, Any]:
        if self._logdet is not None:
            return self._logdet(x)
        return self._forward(x), None

    def to_float64(self) -> AdaptedFlow:
        """An independent float64 deep copy (the model itself is untouched)."""
        torch = require_torch()
        if self.module is None:
            raise LipflowError("a pair of callables has no float64 copy; pass float64 callables yourself")
        return adapt(copy.deepcopy(self.module).to(torch.float64), dtype=torch.float64)


def adapt(model: Any, inverse: Callable | None = None, *, dtype: Any = None) -> AdaptedFlow:
    """Wrap ``model`` (a lipflow torch module, or callables ``(forward, inverse)``)."""
    require_torch()
    from lipflow.interop.torch_blocks import InvertibleModule

    if inverse is None and isinstance(model, tuple) and len(model) == 2:
        model, inverse = model
    if isinstance(model, InvertibleModule) and inverse is None:
        return AdaptedFlow("lipflow", model, model.inverse, module=model, logdet=model.forward_and_logdet,
                           dtype=dtype, direction_note="lipflow modules: forward maps data to latent")
    if callable(model) and callable(inverse):
        module = model if hasattr(model, "parameters") else None
        return AdaptedFlow("callables", model, inverse, module=module, dtype=dtype,
                           direction_note="callables: the first maps data to latent, as given")
    raise LipflowError(
        f"cannot adapt a {type(model).__name__}: pass a lipflow torch module or a (forward, inverse) pair "
        "of callables, e.g. adapt(flow.transform, flow.transform.inv) for a zuko flow"
    )
