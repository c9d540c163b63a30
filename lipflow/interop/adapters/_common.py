"""Shared pieces of the third-party adapters: library detection, tuple outputs, dtypes, float64 copies.

Nothing here imports a flow library: a library is recognised by the top-level package of a class
in the object's MRO (duck typing on the class, not ``isinstance`` against an imported type).
"""

from __future__ import annotations

import copy
import functools
import types
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from lipflow.errors import LipflowError
from lipflow.interop import require_torch

require_torch()
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

__all__ = [
    "AmbiguousDtypeError",
    "UnsupportedModelError",
    "as_logdet",
    "double_copy",
    "first_tensor",
    "floating_tensors",
    "from_library",
    "majority_dtype",
]


class UnsupportedModelError(LipflowError):
    """The object is none of the flows the adapters know; the message lists those."""


class AmbiguousDtypeError(LipflowError):
    """The floating parameters split evenly between dtypes; pass ``dtype=``."""


def from_library(obj: Any, package: str) -> bool:
    """True when a class in ``type(obj).__mro__`` is defined in the top-level package ``package``."""
    return any(cls.__module__.split(".")[0] == package for cls in type(obj).__mro__)


def first_tensor(out: Any, who: str) -> Tensor:
    """The output tensor of ``out``: a tensor, or the first entry of an ``(output, logdet)`` tuple
    or of a one-element list/tuple of tensors (FrEIA)."""
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)) and out:
        head = out[0]
        if isinstance(head, Tensor):
            return head
        if isinstance(head, (tuple, list)) and len(head) == 1 and isinstance(head[0], Tensor):
            return head[0]
        if isinstance(head, (tuple, list)) and len(head) > 1:
            raise LipflowError(
                f"{who} returned {len(head)} output tensors; the audit needs one input and one output tensor "
                "(concatenate multiple inputs/outputs into one tensor in a small wrapper)"
            )
    raise LipflowError(f"{who} returned {type(out).__name__}, not a tensor or an (output, logdet) tuple")


def as_logdet(value: Any, n: int, like: Tensor) -> Tensor | None:
    """A log-determinant as a (n,) tensor: scalars are broadcast, per-element values summed."""
    if value is None:
        return None
    if not isinstance(value, Tensor):
        value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if value.dim() == 0:
        return value.expand(n)
    if value.shape[0] != n:
        raise LipflowError(f"log-determinant of shape {tuple(value.shape)} does not match a batch of {n}")
    return value.reshape(n, -1).sum(dim=1)


def floating_tensors(obj: Any, limit: int = 10000) -> Iterator[Tensor]:
    """Floating tensors reachable from ``obj``: module parameters (buffers when there are none),
    or, for plain objects and bound methods, tensors and modules among their attributes."""
    seen: set[int] = set()
    stack = [obj]
    while stack and len(seen) < limit:
        item = stack.pop()
        if id(item) in seen or isinstance(item, (types.ModuleType, type)):
            continue
        seen.add(id(item))
        if isinstance(item, torch.nn.Module):
            tensors = [p for p in item.parameters() if p.is_floating_point()]
            yield from tensors or [b for b in item.buffers() if b.is_floating_point()]
        elif isinstance(item, Tensor):
            if item.is_floating_point():
                yield item
        elif isinstance(item, (tuple, list)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, functools.partial):
            stack.extend([item.func, *item.args, *item.keywords.values()])
        elif hasattr(item, "__self__") and not isinstance(item, type):
            stack.append(item.__self__)
        elif hasattr(item, "__dict__") and not isinstance(item, type) and not callable(getattr(item, "__code__", None)):
            stack.extend(vars(item).values())


def majority_dtype(obj: Any, dtype: torch.dtype | None, who: str) -> tuple[torch.dtype | None, str]:
    """(working dtype, how it was chosen): ``dtype`` when given, else the dtype holding most
    floating parameter elements; a tie is ambiguous and raises; None when there are no parameters."""
    if dtype is not None:
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise LipflowError(f"dtype must be a floating torch.dtype such as torch.float32, got {dtype!r}")
        return dtype, "given as dtype="
    counts: Counter[torch.dtype] = Counter()
    for tensor in floating_tensors(obj):
        counts[tensor.dtype] += tensor.numel()
    if not counts:
        return None, "no floating parameters found"
    ranked = counts.most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        listing = ", ".join(f"{str(d).removeprefix('torch.')}: {c}" for d, c in ranked)
        raise AmbiguousDtypeError(
            f"{who}: the working dtype is ambiguous (parameter elements per dtype: {listing}); "
            "pass dtype=torch.float32 (or the dtype you compute in)"
        )
    chosen = ranked[0][0]
    if len(ranked) == 1:
        return chosen, f"all {ranked[0][1]} floating parameter elements are {str(chosen).removeprefix('torch.')}"
    listing = ", ".join(f"{str(d).removeprefix('torch.')}: {c}" for d, c in ranked)
    return chosen, f"majority of floating parameter elements ({listing})"


def _double_in_place(obj: Any, seen: set[int]) -> None:
    if id(obj) in seen or isinstance(obj, (types.ModuleType, type)):
        return
    seen.add(id(obj))
    if isinstance(obj, torch.nn.Module):
        obj.double()
        for module in obj.modules():  # plain tensor attributes beside parameters and buffers
            for key, value in list(vars(module).items()):
                if isinstance(value, Tensor) and value.is_floating_point():
                    setattr(module, key, value.detach().double())
        return
    if isinstance(obj, (tuple, list)):
        for item in obj:
            _double_in_place(item, seen)
        return
    if isinstance(obj, dict):
        for key, value in list(obj.items()):
            if isinstance(value, Tensor) and value.is_floating_point():
                obj[key] = value.double()
            else:
                _double_in_place(value, seen)
        return
    if isinstance(obj, functools.partial):
        for item in (obj.func, *obj.args, *obj.keywords.values()):
            _double_in_place(item, seen)
        return
    if hasattr(obj, "__self__") and not isinstance(obj, type):
        _double_in_place(obj.__self__, seen)
        return
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        for key, value in list(vars(obj).items()):
            if isinstance(value, Tensor) and value.is_floating_point():
                setattr(obj, key, value.detach().double())
            else:
                _double_in_place(value, seen)


def double_copy(obj: Any) -> Any:
    """An independent deep copy of ``obj`` whose floating tensors are float64 (``.double()`` on
    modules; tensor attributes of plain objects such as zuko transforms widened too).

    Widening is exact, so the copy computes the same map in float64. Data-initialised layers
    (ActNorm) keep the state they reached in ``obj``: copy after one batch has initialised them.
    """
    clone = copy.deepcopy(obj)
    _double_in_place(clone, set())
    return clone


Maps = tuple[Callable[[Tensor], Tensor], Callable[[Tensor], tuple[Tensor, Tensor | None]], Callable[[Tensor], Tensor]]
