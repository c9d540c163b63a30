"""lipflow's own torch modules (``to_torch`` exports and ``torch_glow`` layers): ``module(x)`` is
data -> latent, ``module.inverse(z)`` latent -> data, ``forward_and_logdet`` where defined."""

from __future__ import annotations

from typing import Any

import torch

from lipflow.interop.adapters._common import first_tensor, from_library, majority_dtype

NOTE = "lipflow convention: module(x) maps data -> latent and module.inverse(z) maps latent -> data"


def matches(obj: Any) -> bool:
    return from_library(obj, "lipflow") and isinstance(obj, torch.nn.Module) and callable(getattr(obj, "inverse", None))


def build(cls: type, obj: Any, dtype: torch.dtype | None) -> Any:
    chosen, dtype_note = majority_dtype(obj, dtype, "adapt(lipflow)")

    def forward_and_logdet(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if callable(getattr(obj, "forward_and_logdet", None)):
            z, logdet = obj.forward_and_logdet(x)
            return z, logdet
        return first_tensor(obj(x), type(obj).__name__), None

    return cls(
        library="lipflow",
        source=obj,
        module=obj,
        dtype=chosen,
        dtype_note=dtype_note,
        direction_note=f"lipflow {type(obj).__name__}; {NOTE}",
        forward=lambda x: first_tensor(obj(x), type(obj).__name__),
        forward_and_logdet=forward_and_logdet,
        inverse=lambda z: first_tensor(obj.inverse(z), f"{type(obj).__name__}.inverse"),
        rebuild=lambda source, new_dtype: build(cls, source, new_dtype),
    )
