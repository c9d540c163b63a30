"""Shape operations of the multi-part float arrays (double-double, triple-double).

A value ``x0 + x1 (+ x2)`` is held as equally shaped float64 parts; a NumPy shape operation
(reshape, transpose, concatenate, ...) moves every part alike and never touches the arithmetic.
:func:`shape_functions` builds the ``__array_function__`` entries of such an array type once
for :class:`~lipflow.precision.dd_array.DDArray` and
:class:`~lipflow.precision.tripledouble.TDArray`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as onp

__all__ = ["shape_functions"]

#: applied to each part with the same arguments
PER_PART = (
    onp.broadcast_to, onp.moveaxis, onp.swapaxes, onp.ravel, onp.reshape, onp.transpose,
    onp.squeeze, onp.expand_dims, onp.copy, onp.atleast_2d,
)
#: take a sequence of arrays: joined part by part
JOINED = (onp.concatenate, onp.stack)


def shape_functions(
    coerce: Callable[[Any], Any], parts: Callable[[Any], tuple[onp.ndarray, ...]], build: Callable[..., Any]
) -> dict[Callable, Callable]:
    """NumPy function -> implementation, for an array type whose values are ``parts(a)``.

    ``coerce`` turns an operand into the type, ``build(*parts)`` makes one from its parts
    (``build(x0)`` with the other parts zero).
    """

    def per_part(fun: Callable) -> Callable:
        def apply(a: Any, *args: Any, **kwargs: Any) -> Any:
            return build(*(fun(p, *args, **kwargs) for p in parts(coerce(a))))

        return apply

    def joined(fun: Callable) -> Callable:
        def apply(arrays: Any, *args: Any, **kwargs: Any) -> Any:
            split = [parts(coerce(a)) for a in arrays]
            return build(*(fun([p[i] for p in split], *args, **kwargs) for i in range(len(split[0]))))

        return apply

    def shape(a: Any) -> tuple[int, ...]:
        return parts(coerce(a))[0].shape

    table: dict[Callable, Callable] = {fun: per_part(fun) for fun in PER_PART}
    table.update({fun: joined(fun) for fun in JOINED})
    table.update({
        onp.shape: shape,
        onp.ndim: lambda a: len(shape(a)),
        onp.size: lambda a: int(onp.prod(shape(a), dtype=int)),
        onp.zeros_like: lambda a, *args, **kwargs: build(onp.zeros(shape(a))),
        onp.ones_like: lambda a, *args, **kwargs: build(onp.ones(shape(a))),
    })
    return table
