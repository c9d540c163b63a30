"""FrEIA: ``SequenceINN``, ``GraphINN`` and single invertible blocks (``FrEIA.modules.*``).

FrEIA computes x -> z with ``rev=False`` and z -> x with ``rev=True`` (one ``forward`` method,
returning ``(output, log_jac_det)``; single blocks take and return lists of tensors).
"""

from __future__ import annotations

from typing import Any

import torch

from lipflow.interop.adapters._common import as_logdet, first_tensor, from_library, majority_dtype

NOTE = ("FrEIA convention: module(x) (rev=False) maps data -> latent and module(z, rev=True) maps latent -> "
        "data; outputs are (output, log_jac_det) tuples")


def matches(obj: Any) -> bool:
    return from_library(obj, "FrEIA") and isinstance(obj, torch.nn.Module)


def build(cls: type, obj: Any, dtype: torch.dtype | None) -> Any:
    network = hasattr(obj, "module_list") or hasattr(obj, "node_list")
    kind = f"FrEIA {type(obj).__name__}" + ("" if network else " (single block, list-wrapped input)")
    chosen, dtype_note = majority_dtype(obj, dtype, "adapt(FrEIA)")

    def call(v: torch.Tensor, rev: bool, jac: bool) -> Any:
        return obj(v if network else [v], rev=rev, jac=jac)

    def forward_and_logdet(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = call(x, False, True)
        z = first_tensor(out, f"FrEIA {type(obj).__name__}")
        return z, as_logdet(out[1] if len(out) > 1 else None, x.shape[0], z)

    return cls(
        library="freia",
        source=obj,
        module=obj,
        dtype=chosen,
        dtype_note=dtype_note,
        direction_note=f"{kind}; {NOTE}",
        forward=lambda x: first_tensor(call(x, False, False), f"FrEIA {type(obj).__name__}"),
        forward_and_logdet=forward_and_logdet,
        inverse=lambda z: first_tensor(call(z, True, False), f"FrEIA {type(obj).__name__}(rev=True)"),
        rebuild=lambda source, new_dtype: build(cls, source, new_dtype),
    )
