"""Adapters: any supported third-party flow as one interface, data -> latent.

``adapt(model)`` recognises, by duck typing and without importing any of them, zuko
(``Flow``, ``LazyTransform``, ``Transform``), nflows (``Flow``, ``Transform``), normflows
(``NormalizingFlow`` and its flows), FrEIA (``SequenceINN``, ``GraphINN``, single blocks),
lipflow's torch modules, and a ``(forward, inverse)`` pair of callables. The result,
:class:`AdaptedFlow`, calls the data -> latent direction ``forward`` whatever the library calls
it, returns output tensors only (no ``(output, logdet)`` tuples, no list-wrapped tensors) and
says in ``direction_note`` how the direction was decided.

Example:
    >>> import torch
    >>> from lipflow.interop.adapters import adapt
    >>> flow = adapt(lambda x: 2 * x, lambda z: z / 2)
    >>> flow.library, flow.inverse(flow.forward(torch.ones(1, 2))).tolist()
    ('callables', [[1.0, 1.0]])
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from lipflow.interop import require_torch

require_torch()
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from lipflow.interop.adapters import _callables, _freia, _lipflow, _nflows, _normflows, _zuko  # noqa: E402
from lipflow.interop.adapters._common import AmbiguousDtypeError, UnsupportedModelError, double_copy  # noqa: E402

__all__ = ["SUPPORTED", "AdaptedFlow", "AmbiguousDtypeError", "UnsupportedModelError", "adapt"]

#: what :func:`adapt` accepts, for error messages and docs
SUPPORTED = (
    "zuko Flow / LazyTransform / Transform (e.g. zuko.flows.MAF(...))",
    "nflows Flow / Transform",
    "normflows NormalizingFlow and its flows (normflows.flows.*)",
    "FrEIA SequenceINN / GraphINN / single invertible blocks (FrEIA.modules.*)",
    "lipflow torch modules (lipflow.interop.torch.to_torch, torch_glow)",
    "a (forward, inverse) pair of callables: adapt(forward, inverse) or adapt((forward, inverse))",
)

_LIBRARIES: tuple[ModuleType, ...] = (_zuko, _nflows, _normflows, _freia, _lipflow)


class AdaptedFlow:
    """One invertible map with lipflow's conventions: ``forward`` is data -> latent.

    Attributes:
        library: "zuko", "nflows", "normflows", "freia", "lipflow" or "callables".
        module: the ``torch.nn.Module`` (None for a pair of callables or a bare zuko Transform).
        dtype: the working dtype; ``dtype_note`` says how it was chosen.
        direction_note: which library call is "forward" (data -> latent) and how that was decided.
    """

    def __init__(
        self,
        *,
        library: str,
        source: Any,
        module: torch.nn.Module | None,
        dtype: torch.dtype | None,
        dtype_note: str,
        direction_note: str,
        forward: Callable[[Tensor], Tensor],
        forward_and_logdet: Callable[[Tensor], tuple[Tensor, Tensor | None]],
        inverse: Callable[[Tensor], Tensor],
        rebuild: Callable[[Any, torch.dtype], AdaptedFlow],
    ) -> None:
        self.library = library
        self.module = module
        self.dtype_from_parameters = dtype is not None
        self.dtype = dtype if dtype is not None else torch.get_default_dtype()
        self.dtype_note = dtype_note if dtype is not None else f"{dtype_note}: torch's default dtype"
        self.direction_note = direction_note
        self._source = source
        self._forward, self._forward_and_logdet, self._inverse = forward, forward_and_logdet, inverse
        self._rebuild = rebuild

    def forward(self, x: Tensor) -> Tensor:
        """z = F(x), data -> latent (output tensor only)."""
        return self._forward(x)

    def inverse(self, z: Tensor) -> Tensor:
        """x = F^-1(z), latent -> data, by the model's own inverse algorithm."""
        return self._inverse(z)

    def forward_and_logdet(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(z, log|det J_F(x)|) with the log-determinant per sample, or None if the model has none."""
        return self._forward_and_logdet(x)

    def to_float64(self) -> AdaptedFlow:
        """An independent float64 deep copy (the model is untouched; see ``double_copy``)."""
        return self._rebuild(double_copy(self._source), torch.float64)

    def __repr__(self) -> str:
        return f"AdaptedFlow(library={self.library!r}, dtype={self.dtype}, forward: {self.direction_note})"


def adapt(model: Any, inverse: Callable | None = None, *, dtype: torch.dtype | None = None) -> AdaptedFlow:
    """``model`` as an :class:`AdaptedFlow` (see the module docstring for what is accepted).

    Args:
        model: a flow object of a supported library, a forward callable (with ``inverse``), or a
            ``(forward, inverse)`` tuple.
        inverse: the inverse callable, for a forward callable.
        dtype: the working dtype; by default the dtype holding most floating parameter elements
            (a tie raises :class:`AmbiguousDtypeError`, asking for ``dtype=``).

    Raises:
        UnsupportedModelError: for any other object (the message lists what is supported).
    """
    if isinstance(model, AdaptedFlow):
        return model
    if isinstance(model, tuple) and len(model) == 2 and inverse is None:
        model, inverse = model
    if inverse is not None:
        return _callables.build(AdaptedFlow, model, inverse, dtype)
    for library in _LIBRARIES:
        if library.matches(model):
            return library.build(AdaptedFlow, model, dtype)
    listing = "; ".join(SUPPORTED)
    raise UnsupportedModelError(
        f"cannot audit a {type(model).__module__}.{type(model).__name__}: supported are {listing}"
    )
