"""Shared pieces of the paper's experiments: reconstruction errors with non-finite results
counted, CSV output, the summary-table printer, and flow builders."""

from __future__ import annotations

import argparse
import csv
import io
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as onp

from lipflow.blocks import MLP, AdditiveCoupling, AffineCoupling, Block, Flow, Residual, Scale
from lipflow.errors import LipflowError
from lipflow.io import atomic_savefig, atomic_write_text
from lipflow.precision import Precision, precision

__all__ = [
    "ErrorSummary",
    "add_common_arguments",
    "check_non_negative",
    "check_positive",
    "coupling_flow",
    "positive_int",
    "reconstruction_errors",
    "residual_flow",
    "save_figure",
    "stopwatch",
    "summarise_errors",
    "text_table",
    "write_csv",
]


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a clear message otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def check_positive(flag: str, value: float | None) -> None:
    """A LipflowError naming ``flag`` unless ``value`` (when given) is a positive finite number."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise LipflowError(f"{flag} must be a positive number, got {value}")


def check_non_negative(flag: str, value: float | None) -> None:
    """A LipflowError naming ``flag`` unless ``value`` (when given) is a finite number >= 0."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise LipflowError(f"{flag} must be a finite number >= 0, got {value}")


def add_common_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """--out, --seed, --full, --no-progress, shared by every experiment."""
    parser.add_argument("--out", default=f"results/{name}", help=f"output folder (default: results/{name})")
    parser.add_argument("--seed", type=int, default=0, help="random seed; runs are deterministic given it")
    parser.add_argument("--full", action="store_true", help="the paper's sizes (slow on a CPU; hours)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def coupling_flow(
    dim: int, depth: int, hidden: Sequence[int], *, scale: Scale | str | None, activation: str = "swish",
    init_scale: float = 1.0,
) -> Flow:
    """``depth`` coupling blocks alternating the two halves; additive when ``scale`` is None."""
    blocks: list[Block] = []
    for k in range(depth):
        conditioning = "first" if k % 2 == 0 else "second"
        net = MLP(tuple(hidden), activation, init_scale=init_scale)
        if scale is None:
            blocks.append(AdditiveCoupling(dim, conditioning=conditioning, t=net))
        else:
            blocks.append(AffineCoupling(dim, conditioning=conditioning, t=net, s=net, scale=scale))
    return Flow(blocks)


def residual_flow(dim: int, depth: int, hidden: Sequence[int], coeff: float, **options: Any) -> Flow:
    """``depth`` residual blocks with LipSwish and spectral coefficient ``coeff``."""
    return Flow([Residual(dim, hidden=tuple(hidden), coeff=coeff, on_nonconvergence="ignore", **options)
                 for _ in range(depth)])


def reconstruction_errors(
    flow: Block, params: Any, x: onp.ndarray, ctx: Precision | str, *, direction: str = "x"
) -> onp.ndarray:
    """Per-sample ||x - F^-1(F(x))||_2 (``direction="x"``) or ||z - F(F^-1(z))||_2 (``"z"``).

    Both passes run at ``ctx``; the difference is taken in float64 from the rounded input, so
    the error is the round trip's alone. Non-finite round trips give inf (NaN -> inf), never
    dropped.
    """
    context = precision(ctx) if isinstance(ctx, str) else ctx
    start = context.cast(x)
    with onp.errstate(all="ignore"):
        if direction == "x":
            back = flow.inverse(params, flow.forward(params, start, ctx=context), ctx=context)
        elif direction == "z":
            back = flow.forward(params, flow.inverse(params, start, ctx=context), ctx=context)
        else:
            raise LipflowError(f"direction must be 'x' or 'z', got {direction!r}")
        difference = context.to_float64(back) - context.to_float64(start)
        errors = onp.sqrt(onp.sum(difference * difference, axis=1))
    return onp.where(onp.isnan(errors), onp.inf, errors)


class ErrorSummary(dict):
    """n, n_inf, pct_inf, mean/median/max over the finite errors (NaN when none is finite)."""


def summarise_errors(errors: onp.ndarray) -> ErrorSummary:
    """Counts non-finite errors and summarises the finite ones separately (paper Fig. 4)."""
    errors = onp.asarray(errors, dtype=onp.float64)
    finite = errors[onp.isfinite(errors)]
    n = int(errors.size)
    n_inf = n - int(finite.size)
    return ErrorSummary(
        n=n,
        n_inf=n_inf,
        pct_inf=100.0 * n_inf / n if n else math.nan,
        mean=float(onp.mean(finite)) if finite.size else math.nan,
        median=float(onp.median(finite)) if finite.size else math.nan,
        max=float(onp.max(finite)) if finite.size else math.nan,
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return repr(float(value))  # NumPy 2 floats would print as np.float64(...)
    return str(value)


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Rows of dicts as CSV (columns from the first row; floats as repr, inf/nan kept; cells
    with commas quoted by the csv module)."""
    if not rows:
        raise LipflowError(f"no rows to write to {path}")
    columns = list(rows[0])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_cell(row.get(c, "")) for c in columns] for row in rows)
    atomic_write_text(path, buffer.getvalue())


def text_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A fixed-width text table for the terminal summary."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0])

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if math.isfinite(value) else str(value)
        return str(value)

    cells = [[fmt(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("-" * len(lines[0]))
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def save_figure(figure: Any, path: str | Path) -> None:
    """Write a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    atomic_savefig(figure, path, dpi=120)
    plt.close(figure)


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """``with stopwatch() as t: ...`` then ``t["seconds"]``."""
    record = {"seconds": math.nan}
    start = time.perf_counter()
    try:
        yield record
    finally:
        record["seconds"] = time.perf_counter() - start
