"""A ``(forward, inverse)`` pair of callables on batches; tuple returns keep their first entry.

The pair is taken as given: ``forward`` is data -> latent. Its float64 copy deep-copies the pair
(bound methods copy their modules, sharing one copy) and widens every tensor reachable from it;
pure functions without parameters simply run on float64 inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from lipflow.errors import LipflowError
from lipflow.interop.adapters._common import as_logdet, first_tensor, majority_dtype

NOTE = "given as a (forward, inverse) pair: forward is taken to map data -> latent as passed"


def build(cls: type, forward: Callable, inverse: Callable, dtype: torch.dtype | None) -> Any:
    if not (callable(forward) and callable(inverse)):
        raise LipflowError(
            f"adapt(forward, inverse) needs two callables, got {type(forward).__name__} and {type(inverse).__name__}"
        )
    chosen, dtype_note = majority_dtype((forward, inverse), dtype, "adapt(forward, inverse)")

    def forward_and_logdet(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = forward(x)
        z = first_tensor(out, "forward")
        pair = isinstance(out, (tuple, list)) and len(out) > 1 and isinstance(out[0], torch.Tensor)
        logdet = out[1] if pair else None
        return z, as_logdet(logdet, x.shape[0], z)

    return cls(
        library="callables",
        source=(forward, inverse),
        module=None,
        dtype=chosen,
        dtype_note=dtype_note,
        direction_note=NOTE,
        forward=lambda x: first_tensor(forward(x), "forward"),
        forward_and_logdet=forward_and_logdet,
        inverse=lambda z: first_tensor(inverse(z), "inverse"),
        rebuild=lambda source, new_dtype: build(cls, source[0], source[1], new_dtype),
    )
