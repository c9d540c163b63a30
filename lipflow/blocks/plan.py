"""Mixed-precision plans: one precision context per block, forward and inverse separately.

A :class:`Plan` is data (DESIGN section 7, "plans are data"): the names of the contexts block
k runs in for the forward pass and for the inverse pass. :func:`run_forward` and
:func:`run_inverse` execute a flow under a plan, casting the activation at every block
boundary to the next block's context (the cast is one rounding when the next format is
narrower; it is accounted for in ``lem:rounding-composition``). Inputs are cast to the first
block's context, results are returned as float64 (exact for every supported storage format).

Example:
    >>> import numpy as np, lipflow
    >>> from lipflow.blocks.plan import Plan, run_forward, run_inverse
    >>> flow = lipflow.Flow([lipflow.AdditiveCoupling(2), lipflow.Reverse(2)])
    >>> params = flow.init(seed=0)
    >>> plan = Plan(forward=("bfloat16", "float16"), inverse=("float32", "float64"))
    >>> x = np.array([[0.5, -1.0]])
    >>> bool(np.abs(run_inverse(flow, params, run_forward(flow, params, x, plan), plan) - x).max() < 1e-2)
    True
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as onp

from lipflow.blocks.base import Block, Params
from lipflow.blocks.flow import Flow
from lipflow.errors import LipflowError
from lipflow.io import atomic_write_text
from lipflow.precision import Precision, precision

__all__ = [
    "PLAN_FORMAT_VERSION",
    "Plan",
    "load_plan",
    "plan_path",
    "run_forward",
    "run_forward_and_logdet",
    "run_inverse",
    "save_plan",
]

PLAN_FORMAT_VERSION = 1


def _names(values: Sequence[str], what: str) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise LipflowError(f"Plan.{what} must be a sequence of precision names, one per block, got {values!r}")
    names = []
    for index, value in enumerate(values):
        context = precision(value)  # unknown names raise with the valid list
        if context.is_arbitrary or context.name == "dd":
            raise LipflowError(
                f"Plan.{what}[{index}] = {value!r}: plans use hardware or strict formats (float16, bfloat16, "
                "float32, float64, longdouble, float16-strict, bfloat16-strict); mpmath and double-double "
                "are reference precisions"
            )
        names.append(context.name)
    return tuple(names)


@dataclass(frozen=True)
class Plan:
    """One precision per block and direction (block order, as in ``flow.blocks``).

    Attributes:
        forward: context names for blocks 1..L in the forward pass.
        inverse: context names for blocks 1..L in the inverse pass (block k's inverse runs in
            ``inverse[k]``; the inverse pass visits blocks L..1).
    """

    forward: tuple[str, ...]
    inverse: tuple[str, ...]

    def __post_init__(self) -> None:
        forward, inverse = _names(self.forward, "forward"), _names(self.inverse, "inverse")
        if len(forward) != len(inverse) or not forward:
            raise LipflowError(
                f"Plan needs one forward and one inverse precision per block, got {len(forward)} forward "
                f"and {len(inverse)} inverse names"
            )
        object.__setattr__(self, "forward", forward)
        object.__setattr__(self, "inverse", inverse)

    @classmethod
    def uniform(cls, blocks: int | Flow, name: str, inverse: str | None = None) -> Plan:
        """Every block in ``name`` (and the inverse in ``inverse``, default the same)."""
        n = len(blocks) if isinstance(blocks, Flow) else int(blocks)
        return cls(forward=(name,) * n, inverse=((inverse or name),) * n)

    def __len__(self) -> int:
        return len(self.forward)

    def contexts(self, direction: str) -> tuple[Precision, ...]:
        """The contexts of ``direction`` ("forward" or "inverse") in block order."""
        if direction not in ("forward", "inverse"):
            raise LipflowError(f"direction must be 'forward' or 'inverse', got {direction!r}")
        return tuple(precision(n) for n in getattr(self, direction))

    def check(self, flow: Block) -> Flow:
        """``flow`` as a Flow whose length matches the plan (a single block is a flow of one)."""
        flow = flow if isinstance(flow, Flow) else Flow([flow])
        if len(flow) != len(self):
            raise LipflowError(f"the plan has {len(self)} entries but the flow has {len(flow)} blocks")
        return flow

    def to_dict(self) -> dict[str, Any]:
        return {"format": "lipflow-plan", "version": PLAN_FORMAT_VERSION,
                "forward": list(self.forward), "inverse": list(self.inverse)}

    @classmethod
    def from_dict(cls, document: Any) -> Plan:
        if not isinstance(document, dict) or document.get("format") != "lipflow-plan":
            raise LipflowError("not a lipflow plan (no 'format': 'lipflow-plan')")
        if document.get("version") != PLAN_FORMAT_VERSION:
            version = document.get("version")
            raise LipflowError(f"plan format version {version!r}; this lipflow reads {PLAN_FORMAT_VERSION}")
        return cls(forward=tuple(document.get("forward", ())), inverse=tuple(document.get("inverse", ())))

    def table(self, flow: Block | Sequence[str] | None = None, columns: dict[str, Sequence[Any]] | None = None) -> str:
        """The plan as a text table: block, kind, forward and inverse precision (and ``columns``);
        ``flow`` is the flow or the block kinds' names."""
        if isinstance(flow, Flow):
            kinds = [type(b).__name__ for b in flow.blocks]
        elif flow is not None and not isinstance(flow, Block):
            kinds = [str(k) for k in flow]
        else:
            kinds = ["-"] * len(self)
        extra = columns or {}
        header = ["block", "kind", "forward", "inverse", *extra]
        rows = [[str(k), kinds[k], self.forward[k], self.inverse[k],
                 *(_cell(v[k]) for v in extra.values())] for k in range(len(self))]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def plan_path(path: str | os.PathLike[str]) -> Path:
    """``PATH.plan.json``: where a plan lives beside a flow saved as ``PATH.json``/``PATH.npz``."""
    base = Path(path)
    if base.name.endswith(".plan.json"):
        return base
    return base.with_suffix("").with_name(base.with_suffix("").name + ".plan.json")


def save_plan(path: str | os.PathLike[str], plan: Plan, flow: Block | None = None,
              extra: dict[str, Any] | None = None) -> Path:
    """Write the plan as JSON to ``PATH.plan.json`` (beside the flow saved at ``PATH``)."""
    if flow is not None:
        plan.check(flow)
    document = plan.to_dict()
    if extra:
        document["report"] = extra
    target = plan_path(path)
    atomic_write_text(target, json.dumps(document, indent=2))
    return target


def load_plan(path: str | os.PathLike[str], flow: Block | None = None) -> Plan:
    """Read a plan written by :func:`save_plan`; with ``flow``, check it has one entry per block."""
    target = plan_path(path)
    if not target.is_file():
        raise LipflowError(f"{target} does not exist; write one with save_plan or `lipflow advise`")
    try:
        document = json.loads(target.read_text())
    except json.JSONDecodeError as error:
        raise LipflowError(f"{target} is not valid JSON: {error}") from None
    plan = Plan.from_dict(document)
    if flow is not None:
        plan.check(flow)
    return plan


def _prepared(flow: Flow, params: Params) -> list[Params]:
    flow._check_params(params)
    return [block._prepare(p) for block, p in zip(flow.blocks, params, strict=True)]


def _as_input(x: Any, dim: int, who: str) -> onp.ndarray:
    x = onp.asarray(x)
    if x.ndim != 2 or x.shape[1] != dim:
        raise LipflowError(f"{who}: input must have shape (n, {dim}), got {x.shape}")
    if x.dtype == object:
        raise LipflowError(f"{who}: pass a float array (cast mpmath values to float64 first)")
    return x


def run_forward(flow: Block, params: Params, x: Any, plan: Plan, *, trace: bool = False) -> Any:
    """F(x) with block k in ``plan.forward[k]``; float64 result (or the float64 trace x_0..x_L)."""
    params = params if isinstance(flow, Flow) else [params]
    flow = plan.check(flow)
    x = _as_input(x, flow.dim, "run_forward")
    prepared = _prepared(flow, params)
    value, states = x, [onp.asarray(x, dtype=onp.float64)]
    for block, p, ctx in zip(flow.blocks, prepared, plan.contexts("forward"), strict=True):
        value = block._forward(ctx.cast(p), ctx.cast(value), ctx)
        if trace:
            states.append(ctx.to_float64(value))
    return states if trace else onp.asarray(value).astype(onp.float64)


def run_inverse(flow: Block, params: Params, z: Any, plan: Plan, *, trace: bool = False) -> Any:
    """F^-1(z) with block k's inverse in ``plan.inverse[k]``; float64 result (or the float64 trace
    z_L..z_0 in the order computed)."""
    params = params if isinstance(flow, Flow) else [params]
    flow = plan.check(flow)
    z = _as_input(z, flow.dim, "run_inverse")
    prepared = _prepared(flow, params)
    contexts = plan.contexts("inverse")
    value, states = z, [onp.asarray(z, dtype=onp.float64)]
    for index in reversed(range(len(flow))):
        ctx = contexts[index]
        value = flow.blocks[index]._inverse(ctx.cast(prepared[index]), ctx.cast(value), ctx)
        if trace:
            states.append(ctx.to_float64(value))
    return states if trace else onp.asarray(value).astype(onp.float64)


def run_forward_and_logdet(flow: Block, params: Params, x: Any, plan: Plan) -> tuple[onp.ndarray, onp.ndarray]:
    """(F(x), log|det J_F(x)|) with block k (map and log-determinant) in ``plan.forward[k]``; the
    per-block log-determinants are added in float64."""
    params = params if isinstance(flow, Flow) else [params]
    flow = plan.check(flow)
    x = _as_input(x, flow.dim, "run_forward_and_logdet")
    prepared = _prepared(flow, params)
    value, total = x, onp.zeros(len(x))
    for block, p, ctx in zip(flow.blocks, prepared, plan.contexts("forward"), strict=True):
        cast_p, cast_x = ctx.cast(p), ctx.cast(value)
        total = total + onp.asarray(ctx.to_float64(block._logdet(cast_p, cast_x, ctx)), dtype=onp.float64)
        value = block._forward(cast_p, cast_x, ctx)
    return onp.asarray(value).astype(onp.float64), total
