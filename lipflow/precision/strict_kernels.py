"""Vectorised kernels of the strict binary16 / bfloat16 contexts (``lem:binary32-double-rounding``).

By the lemma, an operation +, -, *, / or sqrt on binary16 (or bfloat16) operands computed in
binary32 and rounded once to the format is the correctly rounded result. NumPy's float16 and
ml_dtypes' bfloat16 ufuncs do exactly that (binary32 operation, one rounding), so

* a product of two stored numbers is one float32 multiplication (exact: 2p <= 24 bits) and one
  rounding, done for all k products of a dot at once;
* a sum rounded after every addition is ``np.add.accumulate`` along the summation axis in the
  storage dtype: a C loop doing out[j] = out[j-1] + in[j] in index order, each addition in
  binary32 and rounded once (``accumulate`` is sequential by definition; ``reduce`` is not,
  NumPy may sum pairwise in float32).

Both give results bit-identical to rounding the exact value once, which is what the
reference loop (:func:`reference_dot`, float64 arithmetic and one rounding) computes.
"""

from __future__ import annotations

import numpy as onp

__all__ = ["accumulate_rounded", "reference_dot", "sequential_dot", "sequential_sum"]

#: products of at most this many elements are formed at once (the rest is done in row chunks)
CHUNK_ELEMENTS = 1 << 21


def accumulate_rounded(stack: onp.ndarray) -> onp.ndarray:
    """Sum ``stack`` (k, ...) along axis 0 one addition at a time, each partial sum rounded
    to the stack's format (binary32 addition then one rounding: correctly rounded)."""
    if stack.shape[0] == 1:
        return stack[0].copy()
    return onp.add.accumulate(stack, axis=0)[-1]


def sequential_sum(x: onp.ndarray, axis: int | None, dtype: onp.dtype) -> onp.ndarray:
    """``x`` summed along ``axis`` in index order, every partial sum rounded to ``dtype``."""
    x = onp.asarray(x, dtype=dtype)
    if axis is None:
        x, axis = x.ravel(), 0
    moved = onp.moveaxis(x, axis, 0)
    if moved.shape[0] == 0:
        return onp.zeros(moved.shape[1:], dtype=dtype)
    return onp.asarray(accumulate_rounded(onp.ascontiguousarray(moved)), dtype=dtype)


def sequential_dot(a: onp.ndarray, b: onp.ndarray, dtype: onp.dtype, *, held: bool = False) -> onp.ndarray:
    """a (..., k) @ b (k, m): each product rounded once to ``dtype``, then summed over k in
    index order with every partial sum rounded (the strict dot). ``held``: a and b are float32
    arrays whose elements are values of ``dtype`` (used as they are, no conversion)."""
    if held:
        a32, b32 = onp.asarray(a, dtype=onp.float32), onp.asarray(b, dtype=onp.float32)
    else:
        a32, b32 = onp.asarray(a, dtype=dtype), onp.asarray(b, dtype=dtype)
    lead, k = a32.shape[:-1], a32.shape[-1]
    m = b32.shape[1]
    if k == 0:
        return onp.zeros((*lead, m), dtype=dtype)
    rows = a32.reshape(-1, k)
    n = rows.shape[0]
    result = onp.empty((n, m), dtype=dtype)
    b32 = b32.astype(onp.float32, copy=False)[:, None, :]  # (k, 1, m)
    step = max(1, CHUNK_ELEMENTS // max(1, k * m))
    for start in range(0, n, step):
        block = rows[start : start + step].astype(onp.float32, copy=False).T[:, :, None]  # (k, rows, 1)
        # float32 products of two p-bit numbers (p <= 11) are exact; one rounding to the format
        products = onp.multiply(block, b32).astype(dtype)
        result[start : start + step] = accumulate_rounded(products)
    return result.reshape(*lead, m)


def reference_dot(a: onp.ndarray, b: onp.ndarray, dtype: onp.dtype, round_to) -> onp.ndarray:
    """The strict dot by definition, one index at a time: each product and partial sum
    computed in float64 (exact products; sums rounded once in binary64, which the lemma makes
    innocuous as 53 >= 2p + 2) and rounded by ``round_to``. The oracle of the tests."""
    aw, bw = onp.asarray(a).astype(onp.float64), onp.asarray(b).astype(onp.float64)
    k = aw.shape[-1]
    if k == 0:
        return onp.zeros((*aw.shape[:-1], bw.shape[1]), dtype=dtype)
    result = round_to(aw[..., 0:1] * bw[0], dtype)
    for j in range(1, k):
        product = round_to(aw[..., j : j + 1] * bw[j], dtype)
        result = round_to(result.astype(onp.float64) + product.astype(onp.float64), dtype)
    return result
