"""Small batched linear algebra at any working precision, differentiable by autograd.

``numpy.linalg`` refuses float16, bfloat16, longdouble and object (mpmath) arrays, so the
log-determinant and the triangular solves the blocks need are written here with array
operations only: they run at the working precision and autograd differentiates them.
"""

from __future__ import annotations

from typing import Any

import autograd.numpy as anp
import numpy as onp
from autograd.extend import defvjp, primitive
from autograd.tracer import getval

from lipflow.precision import Precision

__all__ = [
    "batched_logabsdet",
    "batched_matmul",
    "batched_solve",
    "solve_unit_lower",
    "solve_upper",
    "spectral_norm",
]


def batched_logabsdet(matrices: Any, ctx: Precision) -> Any:
    """log |det A| for a batch of square matrices, shape (n, d, d) -> (n,).

    Gaussian elimination with partial pivoting written as successive Schur complements, so
    every operation is an array operation at the working precision. A singular matrix gives
    -inf (a zero pivot), never an exception.
    """
    a = matrices
    n, d = onp.shape(a)[0], onp.shape(a)[1]
    total = ctx.zeros((n,))
    rows = onp.arange(n)
    for _ in range(d):
        pivot_row = onp.argmax(onp.abs(_as_float64(getval(a)[:, :, 0])), axis=1)
        # bring the pivot row to the top (a per-sample row swap)
        size = onp.shape(a)[1]
        order = onp.tile(onp.arange(size), (n, 1))
        order[rows, pivot_row] = 0
        order[:, 0] = pivot_row
        a = a[rows[:, None], order]
        pivot = a[:, 0, 0]
        total = total + ctx.log(anp.abs(pivot))
        if size == 1:
            break
        multipliers = a[:, 1:, 0] / pivot[:, None]
        a = a[:, 1:, 1:] - multipliers[:, :, None] * a[:, 0:1, 1:]
    return total


def batched_solve(matrices: Any, rhs: Any, ctx: Precision) -> Any:
    """x[i] with A[i] x[i] = b[i] for a batch, shapes (n, d, d) and (n, d) -> (n, d).

    Gaussian elimination with partial pivoting on the augmented matrix, written as successive
    Schur complements of array operations at the working precision (like
    :func:`batched_logabsdet`), then back substitution. A zero pivot gives inf/NaN, never an
    exception.
    """
    n, d = onp.shape(rhs)
    if n == 0:
        return rhs
    a = anp.concatenate([matrices, rhs[:, :, None]], axis=2)
    rows = onp.arange(n)
    pivot_rows = []
    for _ in range(d):
        size = onp.shape(a)[1]
        pivot_row = onp.argmax(onp.abs(_as_float64(getval(a)[:, :, 0])), axis=1)
        order = onp.tile(onp.arange(size), (n, 1))
        order[rows, pivot_row] = 0
        order[:, 0] = pivot_row
        a = a[rows[:, None], order]
        pivot_rows.append(a[:, 0, :])  # (n, size + 1): pivot, the rest of the row, the rhs
        if size == 1:
            break
        multipliers = a[:, 1:, 0] / a[:, 0:1, 0]
        a = a[:, 1:, 1:] - multipliers[:, :, None] * a[:, 0:1, 1:]
    solution: list[Any] = []  # x_{d-1}, x_{d-2}, ... (back substitution)
    for k in reversed(range(d)):
        row = pivot_rows[k]
        value = row[:, -1]
        for offset, x_j in enumerate(reversed(solution), start=1):
            value = value - row[:, offset] * x_j
        solution.append(value / row[:, 0])
    return anp.concatenate([x[:, None] for x in reversed(solution)], axis=1)


_EINSUM_FORMATS = ("float16", "float32", "float64", "longdouble")


def batched_matmul(a: Any, b: Any, ctx: Precision) -> Any:
    """a[i] @ b[i] for stacks of matrices, keeping the storage type.

    NumPy's einsum serves the native formats and mpmath; every other format (bfloat16, whose
    einsum fails; emulated and double-double formats) goes through its own ``ctx.dot``.
    """
    if onp.shape(a)[0] == 0:
        return ctx.zeros((0, onp.shape(a)[1], onp.shape(b)[2]))
    if ctx.is_arbitrary or ctx.name in _EINSUM_FORMATS:
        return anp.einsum("nij,njk->nik", a, b)
    # bfloat16 has no einsum and strict/double-double formats round in their own dot
    return anp.concatenate([ctx.dot(a[i], b[i])[None] for i in range(onp.shape(a)[0])], axis=0)


def solve_unit_lower(lower: Any, rhs: Any) -> Any:
    """Solve L x = b for each row b of ``rhs`` (n, d), L unit lower triangular (d, d)."""
    d = onp.shape(lower)[0]
    columns = []
    for i in range(d):
        value = rhs[:, i]
        for j in range(i):
            value = value - lower[i, j] * columns[j]
        columns.append(value)
    return anp.concatenate([column[:, None] for column in columns], axis=1)


def solve_upper(upper: Any, rhs: Any) -> Any:
    """Solve U x = b for each row b of ``rhs`` (n, d), U upper triangular (d, d)."""
    d = onp.shape(upper)[0]
    columns: list[Any] = [None] * d
    for i in reversed(range(d)):
        value = rhs[:, i]
        for j in range(i + 1, d):
            value = value - upper[i, j] * columns[j]
        columns[i] = value / upper[i, i]
    return anp.concatenate([column[:, None] for column in columns], axis=1)


def _as_float64(a: Any) -> onp.ndarray:
    return a.astype(onp.float64) if hasattr(a, "astype") else onp.asarray(a, dtype=onp.float64)


def _result_dtype(matrix: Any) -> onp.dtype:
    dtype = onp.asarray(matrix).dtype
    return onp.dtype(onp.float64) if dtype == object else dtype


def _largest_singular_triplet(matrix: Any) -> tuple[float, onp.ndarray, onp.ndarray]:
    u, s, vt = onp.linalg.svd(_as_float64(matrix))
    return float(s[0]), u[:, 0], vt[0]


@primitive
def spectral_norm(matrix: Any) -> Any:
    """The largest singular value of a matrix, from an exact float64 SVD (not power iteration).

    Returned in the matrix's dtype (float64 for mpmath arrays). Differentiable:
    d sigma_max / dW = u v^T for the top singular pair (u, v).
    """
    sigma, _, _ = _largest_singular_triplet(matrix)
    return onp.asarray(sigma, dtype=_result_dtype(matrix))


def _spectral_norm_vjp(ans, matrix):
    _, u, v = _largest_singular_triplet(matrix)
    outer = onp.outer(u, v).astype(_result_dtype(matrix))
    return lambda g: g * outer


defvjp(spectral_norm, _spectral_norm_vjp)
