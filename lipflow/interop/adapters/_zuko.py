"""zuko: ``Flow`` (lazy distribution), ``LazyTransform`` and ``Transform``.

zuko's ``NormalizingFlow.log_prob(x)`` evaluates ``transform(x)`` and the base density there, so
a zuko transform maps data -> latent: it is lipflow's forward; its inverse is ``transform.inv``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from lipflow.errors import LipflowError
from lipflow.interop.adapters._common import as_logdet, from_library, majority_dtype

NOTE = ("zuko convention: NormalizingFlow.log_prob(x) evaluates transform(x) against the base density, so "
        "transform maps data -> latent (forward) and transform.inv maps latent -> data (inverse)")


def _is_transform(obj: Any) -> bool:
    return isinstance(obj, torch.distributions.Transform)


def matches(obj: Any) -> bool:
    return from_library(obj, "zuko") and (_is_transform(obj) or isinstance(obj, torch.nn.Module))


def _transform_getter(obj: Any) -> tuple[Callable[[], Any], str]:
    if _is_transform(obj):
        return (lambda: obj), "zuko Transform"
    if hasattr(obj, "transform") and hasattr(obj, "base"):
        return (lambda: obj.transform()), "zuko Flow: flow.transform()"
    if callable(obj) and hasattr(obj, "inv"):
        return (lambda: obj()), "zuko LazyTransform: lazy()"
    raise LipflowError(f"a zuko {type(obj).__name__} is neither a Flow, a LazyTransform nor a Transform")


def build(cls: type, obj: Any, dtype: torch.dtype | None) -> Any:
    get, kind = _transform_getter(obj)
    try:
        get()
    except Exception as error:
        raise LipflowError(
            f"{kind} failed without a context ({type(error).__name__}: {error}); conditional flows need a fixed "
            "context: adapt(lambda x: flow(c).transform(x), lambda z: flow(c).transform.inv(z))"
        ) from None
    chosen, dtype_note = majority_dtype(obj, dtype, "adapt(zuko)")

    def forward(x: torch.Tensor) -> torch.Tensor:
        return get()(x)

    def forward_and_logdet(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        t = get()
        if hasattr(t, "call_and_ladj"):
            z, ladj = t.call_and_ladj(x)
        else:
            z = t(x)
            ladj = t.log_abs_det_jacobian(x, z)
        return z, as_logdet(ladj, x.shape[0], z)

    def inverse(z: torch.Tensor) -> torch.Tensor:
        return get().inv(z)

    return cls(
        library="zuko",
        source=obj,
        module=obj if isinstance(obj, torch.nn.Module) else None,
        dtype=chosen,
        dtype_note=dtype_note,
        direction_note=f"{kind}; {NOTE}",
        forward=forward,
        forward_and_logdet=forward_and_logdet,
        inverse=inverse,
        rebuild=lambda source, new_dtype: build(cls, source, new_dtype),
    )
