"""What one sweep cell computes: a depth-L flow at one precision, measured by named metrics.

The flow of a cell is built layer by layer from the cell's seed, so the depth-L flow is the
first L layers of every deeper one ("the same network, deeper"). Layer k of a seed ``s`` gets
its parameters from ``SeedSequence(s, spawn_key=(1, k))`` and the inputs from
``SeedSequence(s, spawn_key=(0,))``: numbers depend on the cell alone, never on scheduling.

Within a process, forward activations and Jacobian products of shallower cells are memoised
and extended; the recursion is the same one a fresh computation runs, so a cell's numbers are
bit-identical whether or not its prefix was cached.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as onp

from lipflow.analysis.jacobian import jacobian, singular_values
from lipflow.blocks import MLP, AdditiveCoupling, AffineCoupling, Block, Flow, Residual
from lipflow.experiments.fig1 import toy_block
from lipflow.precision import Precision, precision
from lipflow.sweep.spec import Cell

__all__ = [
    "METRICS",
    "CellResult",
    "ModelSettings",
    "available_metrics",
    "build_layer",
    "cell_inputs",
    "compute_cell",
    "versions",
]

#: metric name -> what it measures (the docs and the report quote these)
METRICS: dict[str, str] = {
    "recon_error": "max over samples of ||x - F^-1(F(x))||_2, both passes at the working precision",
    "recon_error_median": "median over samples of ||x - F^-1(F(x))||_2 (working precision)",
    "nonfinite": "number of samples whose reconstruction is inf or NaN",
    "forward_error": "max over samples of ||F_p(x) - F(x)||_2, F at the reference precision (delta)",
    "inverse_error": "max over samples of ||F_p^-1(z) - F^-1(z)||_2 at z = F_p(x), reference F^-1 (delta2)",
    "sigma_min": "min over samples of sigma_min(J_F(x)), exact Jacobian at the float64 inputs (reference)",
    "sigma_max": "max over samples of sigma_max(J_F(x)), exact Jacobian (reference precision)",
    "cond": "max over samples of sigma_max/sigma_min of J_F(x), exact Jacobian (reference precision)",
    "inverse_sigma_min": "min over samples of sigma_min of the computed inverse's Jacobian at z = F_p(x) "
    "(autograd at the working precision)",
    "inverse_sigma_max": "max over samples of sigma_max of the computed inverse's Jacobian (working precision)",
    "inverse_cond": "max over samples of the condition number of the computed inverse's Jacobian",
}

#: the error-budget metrics (paper Section 2), present when lipflow.analysis.budget is installed
BUDGET_METRICS: dict[str, str] = {
    "delta": "max over samples of ||delta|| = ||F_p(x) - F(x)||_2 from lipflow.analysis.budget",
    "delta2": "max over samples of ||delta2|| = ||F_p^-1(z_delta) - F^-1(z_delta)||_2 (budget)",
    "bound": "max over samples of the proven bound Lip(F^-1) ||delta|| + ||delta2|| (budget)",
    "ratio": "max over decided samples of measured/bound (<= 1 when the bound holds; NaN if none decided)",
    "violations": "decided samples whose reconstruction error exceeds the proven bound (expected 0)",
    "undecided": "samples with inf/NaN values or an unstable reference (not counted in ratio)",
}


def budget_available() -> bool:
    return importlib.util.find_spec("lipflow.analysis.budget") is not None


def available_metrics() -> tuple[str, ...]:
    """The metric names a spec may ask for (budget metrics only when their module is present)."""
    return (*METRICS, *BUDGET_METRICS) if budget_available() else tuple(METRICS)


@dataclass(frozen=True)
class ModelSettings:
    """The spec settings a worker needs to build a cell's flow and reference."""

    dim: int
    samples: int
    hidden: tuple[int, ...]
    activation: str
    coeff: float
    reference: str
    metrics: tuple[str, ...]


@dataclass(frozen=True)
class CellResult:
    """A finished cell: metric values (float64; inf/NaN kept) and where they were computed."""

    cell: Cell
    values: dict[str, float]
    semantics: str
    versions: dict[str, str]


@functools.cache
def versions() -> dict[str, str]:
    """Versions of the packages whose arithmetic a result depends on."""
    import mpmath

    import lipflow

    return {
        "lipflow": lipflow.__version__,
        "numpy": onp.__version__,
        "autograd": importlib.metadata.version("autograd"),
        "mpmath": mpmath.__version__,
    }


# ---- the network and inputs of a cell -------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def build_layer(chain: tuple[Any, ...], settings: ModelSettings, k: int) -> tuple[Block, Any]:
    """Layer k (0-based) of the flow of ``chain`` = (block, conditioner, scale, inputs, seed)."""
    kind, conditioner, scale, _, seed = chain
    if conditioner == "toy":
        block = toy_block(kind)
        return block, block.init(0)
    dim = settings.dim
    halves = (tuple(range(dim // 2)), tuple(range(dim // 2, dim)))
    conditioning = halves[k % 2]
    rng = onp.random.default_rng(onp.random.SeedSequence(seed, spawn_key=(1, k)))
    net = MLP(hidden=settings.hidden, activation=settings.activation)
    if kind == "additive":
        block: Block = AdditiveCoupling(dim, conditioning=conditioning, t=net)
    elif kind == "affine":
        block = AffineCoupling(dim, conditioning=conditioning, t=net, s=net, scale=scale)
    else:
        block = Residual(dim, hidden=settings.hidden, activation=settings.activation, coeff=settings.coeff,
                         on_nonconvergence="ignore")
    return block, block.init(rng)


@functools.lru_cache(maxsize=256)
def cell_inputs(inputs: str, seed: int, dim: int, samples: int) -> onp.ndarray:
    """The float64 inputs: ``ones`` (the Figure 1 point), ``normal`` N(0, I), ``uniform``
    U[-1, 1]^d, ``wide`` N(0, 10^2 I) (out of distribution); read-only."""
    rng = onp.random.default_rng(onp.random.SeedSequence(seed, spawn_key=(0,)))
    if inputs == "ones":
        x = onp.ones((1, dim))
    elif inputs == "normal":
        x = rng.standard_normal((samples, dim))
    elif inputs == "uniform":
        x = rng.uniform(-1.0, 1.0, (samples, dim))
    else:
        x = 10.0 * rng.standard_normal((samples, dim))
    x.setflags(write=False)
    return x


@functools.lru_cache(maxsize=4096)
def _prepared(chain: tuple[Any, ...], settings: ModelSettings, k: int, name: str) -> Any:
    block, params = build_layer(chain, settings, k)
    return precision(name).cast(block._prepare(params))


def _layer(chain: tuple[Any, ...], settings: ModelSettings, k: int, ctx: Precision) -> tuple[Block, Any]:
    return build_layer(chain, settings, k)[0], _prepared(chain, settings, k, ctx.name)


_LAYER_LISTS: dict[tuple[Any, ...], list[tuple[Block, Any]]] = {}


def _layers(chain: tuple[Any, ...], settings: ModelSettings, depth: int, ctx: Precision) -> list[tuple[Block, Any]]:
    """[(block, params cast to ctx)] for layers 0..depth-1 (a memoised, growing list)."""
    key = (chain, settings, ctx.name)
    layers = _LAYER_LISTS.get(key)
    if layers is None:
        if len(_LAYER_LISTS) >= 256:
            _LAYER_LISTS.clear()
        layers = _LAYER_LISTS[key] = []
    while len(layers) < depth:
        layers.append(_layer(chain, settings, len(layers), ctx))
    return layers


# ---- memoised chains over depth ---------------------------------------------------------------------
# Each chain keeps only its deepest state (and, for spectra, the small per-depth singular values),
# so memory does not grow with depth; a request shallower than the state restarts from layer 0.
_CHAINS: dict[tuple[Any, ...], dict[str, Any]] = {}
_MAX_CHAINS = 64


def _chain_state(key: tuple[Any, ...], start: Callable[[], dict[str, Any]], depth: int) -> dict[str, Any]:
    state = _CHAINS.get(key)
    if state is None or state["depth"] > depth:
        if state is None and len(_CHAINS) >= _MAX_CHAINS:
            _CHAINS.clear()
        state = _CHAINS[key] = start()
    return state


def _forward_to(chain: tuple, settings: ModelSettings, ctx: Precision, x: Any, tag: str, depth: int) -> Any:
    """x_depth of x_{k+1} = F_k(x_k) at ``ctx`` from x_0 = ``x`` (``tag`` names the start point)."""
    state = _chain_state((chain, settings, ctx.name, tag, "forward"), lambda: {"depth": 0, "x": x}, depth)
    while state["depth"] < depth:
        block, params = _layer(chain, settings, state["depth"], ctx)
        state["x"] = block._forward(params, state["x"], ctx)
        state["depth"] += 1
    return state["x"]


def _spectra(chain: tuple, settings: ModelSettings, reference: Precision, x64: onp.ndarray, depth: int) -> onp.ndarray:
    """Singular values (n, d) of J_{F_depth}(x) = J_depth(x_{depth-1}) ... J_1(x_0) at the reference."""

    def start() -> dict[str, Any]:
        eye = reference.cast(onp.eye(settings.dim))
        return {"depth": 0, "x": reference.cast(x64), "products": [eye] * len(x64), "values": [None]}

    key = (chain, settings, reference.name, "spectra")
    state = _CHAINS.get(key)
    if state is not None and depth < len(state["values"]):
        return state["values"][depth]
    state = _chain_state(key, start, depth)
    while state["depth"] < depth:
        k = state["depth"]
        block, params = build_layer(chain, settings, k)
        layer = jacobian(block, params, state["x"], ctx=reference)
        state["products"] = [reference.dot(layer[i], p) for i, p in enumerate(state["products"])]
        values, _ = singular_values(onp.asarray(state["products"]), reference)
        block, prepared = _layer(chain, settings, k, reference)
        state["x"] = block._forward(prepared, state["x"], reference)
        state["values"].append(values)
        state["depth"] = k + 1
    return state["values"][depth]


def _distances(ctx: Precision, computed: Any, x: Any) -> onp.ndarray:
    """Per-sample ||computed - x||_2 in float64 (differences exact for float32/64/16 inputs)."""
    if ctx.is_arbitrary or ctx.name == "longdouble":
        difference = ctx.to_float64(computed - x)
    else:
        difference = ctx.to_float64(computed) - ctx.to_float64(x)
    with onp.errstate(invalid="ignore", over="ignore"):
        return onp.sqrt(onp.sum(difference * difference, axis=1))


def _exactly_at(reference: Precision, x: Any) -> Any:
    """``x`` (any working precision) as reference numbers, exactly: float formats widen through
    float64, longdouble through an exact float64 head + tail (mpf refuses np.longdouble)."""
    x = onp.asarray(x)
    if x.dtype == object:
        return reference.cast(x)
    if x.dtype == onp.longdouble:
        head = x.astype(onp.float64)
        with onp.errstate(invalid="ignore", over="ignore"):
            tail = onp.where(onp.isfinite(head), (x - head.astype(onp.longdouble)).astype(onp.float64), 0.0)
        return reference.cast(head) + reference.cast(tail)
    return reference.cast(x.astype(onp.float64))


def _cond(values: onp.ndarray) -> onp.ndarray:
    low, high = values[:, -1], values[:, 0]
    with onp.errstate(divide="ignore", invalid="ignore"):
        return onp.where(low > 0, high / onp.where(low > 0, low, 1.0), onp.where(onp.isnan(low), onp.nan, math.inf))


# ---- one cell -----------------------------------------------------------------------------------------
def compute_cell(cell: Cell, settings: ModelSettings) -> CellResult:
    """Every metric of ``settings.metrics`` for ``cell`` (see :data:`METRICS`)."""
    try:
        with onp.errstate(all="ignore"):
            values = _compute(cell, settings)
    except Exception as error:
        raise RuntimeError(f"sweep cell {cell} failed: {type(error).__name__}: {error}") from error
    ctx = precision(cell.precision)
    return CellResult(cell, {m: float(values[m]) for m in settings.metrics}, ctx.semantics, versions())


def _compute(cell: Cell, settings: ModelSettings) -> dict[str, float]:
    wanted = set(settings.metrics)
    ctx, reference = precision(cell.precision), precision(settings.reference)
    chain, depth = cell.chain, cell.depth
    x64 = cell_inputs(cell.inputs, cell.seed, settings.dim, settings.samples)
    x = ctx.cast(x64)
    z = _forward_to(chain, settings, ctx, x, "inputs", depth)
    values: dict[str, float] = {}

    # working inverse, keeping its trace z_depth, ..., z_0
    trace = [z]
    layers = _layers(chain, settings, depth, ctx)
    for k in reversed(range(depth)):
        block, params = layers[k]
        trace.append(block._inverse(params, trace[-1], ctx))
    back = trace[-1]
    errors = _distances(ctx, back, x)
    values["recon_error"] = onp.max(errors)
    values["recon_error_median"] = onp.median(errors)
    values["nonfinite"] = int(onp.sum(~onp.isfinite(errors)))

    if {"forward_error", "inverse_error"} & wanted:
        start = _exactly_at(reference, x)
        exact = _forward_to(chain, settings, reference, start, f"from-{ctx.name}", depth)
        values["forward_error"] = onp.max(_distances(reference, _exactly_at(reference, z), exact))
        if "inverse_error" in wanted:
            exact_back = _exactly_at(reference, z)
            exact_layers = _layers(chain, settings, depth, reference)
            for k in reversed(range(depth)):
                block, params = exact_layers[k]
                exact_back = block._inverse(params, exact_back, reference)
            values["inverse_error"] = onp.max(_distances(reference, _exactly_at(reference, back), exact_back))

    if {"sigma_min", "sigma_max", "cond"} & wanted:
        spectrum = _spectra(chain, settings, reference, x64, depth)
        values["sigma_min"] = onp.min(spectrum[:, -1])
        values["sigma_max"] = onp.max(spectrum[:, 0])
        values["cond"] = onp.max(_cond(spectrum))

    if {"inverse_sigma_min", "inverse_sigma_max", "inverse_cond"} & wanted:
        products = [ctx.cast(onp.eye(settings.dim))] * onp.shape(x)[0]
        for step, k in enumerate(reversed(range(depth))):
            block, params = build_layer(chain, settings, k)
            layer = jacobian(block, params, trace[step], ctx=ctx, direction="inverse")
            products = [ctx.dot(layer[i], p) for i, p in enumerate(products)]
        spectrum, _ = singular_values(onp.asarray(products), ctx)
        values["inverse_sigma_min"] = onp.min(spectrum[:, -1])
        values["inverse_sigma_max"] = onp.max(spectrum[:, 0])
        values["inverse_cond"] = onp.max(_cond(spectrum))

    if set(BUDGET_METRICS) & wanted:
        values.update(_budget(cell, settings, x))
    return values


def _budget(cell: Cell, settings: ModelSettings, x: Any) -> dict[str, float]:
    """Budget metrics from :func:`lipflow.analysis.budget.error_budget` on the depth-L flow."""
    from lipflow.analysis.budget import error_budget

    layers = [build_layer(cell.chain, settings, k) for k in range(cell.depth)]
    flow = Flow([block for block, _ in layers])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        budget = error_budget(flow, [params for _, params in layers], x, ctx=precision(cell.precision))
    decided = budget.decided
    ratios = onp.asarray(budget.ratio)[decided]
    return {
        "delta": onp.max(budget.delta_norm),
        "delta2": onp.max(budget.delta2_norm),
        "bound": onp.max(budget.bound),
        "ratio": onp.max(ratios) if ratios.size else math.nan,
        "violations": int(budget.violations.size),
        "undecided": int(onp.sum(~decided)),
    }
