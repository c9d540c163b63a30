"""nflows: ``Flow`` (a distribution with ``_transform``) and ``Transform`` modules.

nflows' ``Flow.log_prob(x)`` computes ``noise, logabsdet = self._transform(x)``: transforms map
data -> noise (latent), returning ``(outputs, logabsdet)``; ``transform.inverse`` goes back.
"""

from __future__ import annotations

from typing import Any

import torch

from lipflow.interop.adapters._common import as_logdet, first_tensor, from_library, majority_dtype

NOTE = ("nflows convention: Flow.log_prob(x) evaluates transform(x) -> (noise, logabsdet), so the transform maps "
        "data -> latent (forward) and transform.inverse maps latent -> data (inverse)")


def matches(obj: Any) -> bool:
    return from_library(obj, "nflows") and isinstance(obj, torch.nn.Module) and (
        hasattr(obj, "_transform") or callable(getattr(obj, "inverse", None)))


def build(cls: type, obj: Any, dtype: torch.dtype | None) -> Any:
    transform = obj._transform if hasattr(obj, "_transform") else obj
    kind = "nflows Flow: flow._transform" if transform is not obj else "nflows Transform"
    chosen, dtype_note = majority_dtype(obj, dtype, "adapt(nflows)")

    def forward_and_logdet(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = transform(x)
        z = first_tensor(out, "nflows transform")
        logdet = out[1] if isinstance(out, tuple) and len(out) > 1 else None
        return z, as_logdet(logdet, x.shape[0], z)

    return cls(
        library="nflows",
        source=obj,
        module=obj,
        dtype=chosen,
        dtype_note=dtype_note,
        direction_note=f"{kind}; {NOTE}",
        forward=lambda x: first_tensor(transform(x), "nflows transform"),
        forward_and_logdet=forward_and_logdet,
        inverse=lambda z: first_tensor(transform.inverse(z), "nflows transform.inverse"),
        rebuild=lambda source, new_dtype: build(cls, source, new_dtype),
    )
