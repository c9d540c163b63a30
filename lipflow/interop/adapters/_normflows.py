"""normflows: ``NormalizingFlow`` and its flows (``normflows.flows.*``).

normflows runs the other way round: ``NormalizingFlow.forward(z)`` maps latent -> data
(sampling), and ``log_prob``/``forward_kld`` call ``flow.inverse(x)`` on every flow in reverse
order, data -> latent. So lipflow's forward is normflows' *inverse*, and lipflow's inverse is
normflows' forward (for a residual flow with ``reverse=True`` that is the fixed-point iteration).
"""

from __future__ import annotations

from typing import Any

import torch

from lipflow.interop.adapters._common import as_logdet, first_tensor, from_library, majority_dtype

NOTE = ("normflows convention: NormalizingFlow.forward(z) maps latent -> data (sampling) and log_prob/forward_kld "
        "call flow.inverse(x) data -> latent, so lipflow's forward is normflows' inverse and lipflow's inverse is "
        "normflows' forward")


def matches(obj: Any) -> bool:
    return from_library(obj, "normflows") and isinstance(obj, torch.nn.Module) and (
        hasattr(obj, "flows") or callable(getattr(obj, "inverse", None)))


def build(cls: type, obj: Any, dtype: torch.dtype | None) -> Any:
    is_model = hasattr(obj, "flows") and hasattr(obj, "q0")
    flows = list(obj.flows) if is_model else [obj]
    kind = "normflows NormalizingFlow" if is_model else f"normflows flow {type(obj).__name__}"
    chosen, dtype_note = majority_dtype(obj, dtype, "adapt(normflows)")

    def forward_and_logdet(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        total = None
        for flow in reversed(flows):
            out = flow.inverse(x)
            x = first_tensor(out, f"normflows {type(flow).__name__}.inverse")
            logdet = as_logdet(out[1] if isinstance(out, tuple) and len(out) > 1 else None, x.shape[0], x)
            if logdet is not None:
                total = logdet if total is None else total + logdet
        return x, total

    def inverse(z: torch.Tensor) -> torch.Tensor:
        for flow in flows:
            z = first_tensor(flow(z), f"normflows {type(flow).__name__}.forward")
        return z

    return cls(
        library="normflows",
        source=obj,
        module=obj,
        dtype=chosen,
        dtype_note=dtype_note,
        direction_note=f"{kind}; {NOTE}",
        forward=lambda x: forward_and_logdet(x)[0],
        forward_and_logdet=forward_and_logdet,
        inverse=inverse,
        rebuild=lambda source, new_dtype: build(cls, source, new_dtype),
    )
