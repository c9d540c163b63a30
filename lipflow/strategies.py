"""Public Hypothesis strategies for invertible models (needs the ``test`` extra: hypothesis).

Every strategy takes keyword-only arguments, validates them at once (a :class:`LipflowError`
names the bad argument and a valid example) and generates values that *satisfy* the
assumptions of the result under test rather than filtering afterwards (DESIGN section 5).
Randomness inside generated objects comes from a drawn integer seed, so Hypothesis can shrink
and replay every example.

Example, a property test of the paper's reconstruction bound in three lines:

    >>> from hypothesis import event, given, settings
    >>> import lipflow.strategies as lst
    >>> from lipflow.testing import assert_error_bound
    >>> @settings(max_examples=5, deadline=None)
    ... @given(case=lst.lemma_cases(lemma="reconstruction", ctx="float32"))
    ... def test_bound(case):
    ...     checked = assert_error_bound(case.model, case.x, params=case.params, ctx=case.ctx,
    ...                                  allow_undecided=True, allow_unproven=True)
    ...     event(f"bound checked on {checked} of {len(case.x)} samples")
    >>> test_bound()

``allow_undecided=True`` skips samples whose ground truth cannot be settled: far outside the
data, nested exp scales can send the exact intermediate values beyond every float format
(mpmath refuses exp of arguments beyond 2^40), and no reference precision agrees with the
next. ``allow_unproven=True`` skips samples for which no finite Lip(F^-1) can be proven (an exp
scale far outside the data). Both kinds check nothing, so the test records how many samples
were checked (Hypothesis prints the events with ``--hypothesis-show-statistics``); without the
two flags such a sample fails the test. :class:`lipflow.analysis.budget.BudgetSummary` counts
them too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as onp
from hypothesis import strategies as st

from lipflow.blocks import (
    ACTIVATIONS,
    MLP,
    AdditiveCoupling,
    AffineCoupling,
    Block,
    Bounded,
    Constant,
    Exp,
    Flow,
    Identity,
    Residual,
    Reverse,
    Sigmoid,
    SoftClamp,
)
from lipflow.blocks.base import Params
from lipflow.blocks.residual import RESIDUAL_ACTIVATIONS
from lipflow.errors import LipflowError
from lipflow.precision import FloatPrecision, Precision, precision

__all__ = [
    "BLOCK_KINDS",
    "INPUT_KINDS",
    "LEMMAS",
    "SCALE_KINDS",
    "LemmaCase",
    "adversarial_inputs",
    "blocks",
    "conditioners",
    "flows",
    "inputs",
    "lemma_cases",
    "models",
    "params_for",
    "precisions",
    "scales",
]

BLOCK_KINDS = ("additive", "affine", "residual")
SCALE_KINDS = ("sigmoid", "bounded", "exp", "softclamp", "identity")
INPUT_KINDS = ("in_distribution", "out_of_distribution")
LEMMAS = ("reconstruction", "lem:additive-tight", "lem:affine-local", "lem:residual")
_HARDWARE = ("float16", "bfloat16", "float32", "float64", "longdouble")


# ---- validation helpers --------------------------------------------------------------------


def _choices(name: str, values: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    values = (values,) if isinstance(values, str) else tuple(values)
    bad = [v for v in values if v not in allowed]
    if not values or bad:
        raise LipflowError(f"{name} must be a non-empty selection of {list(allowed)}, got {list(values)}")
    return values


def _range(name: str, value: tuple[float, float], *, low: float = -math.inf, integer: bool = False,
           open_high: float | None = None) -> tuple[Any, Any]:
    try:
        a, b = value
    except (TypeError, ValueError):
        raise LipflowError(f"{name} must be a (min, max) pair, e.g. {name}=(1, 4); got {value!r}") from None
    if integer and not all(isinstance(v, (int, onp.integer)) for v in (a, b)):
        raise LipflowError(f"{name} must be a pair of integers, got {value!r}")
    if not (math.isfinite(a) and math.isfinite(b)) or a > b or a < low:
        raise LipflowError(f"{name} must satisfy {low} <= min <= max (finite), got {value!r}")
    if open_high is not None and b >= open_high:
        raise LipflowError(f"{name} must stay below {open_high}, got {value!r}")
    return a, b


def _context(ctx: Precision | str) -> Precision:
    return ctx if isinstance(ctx, Precision) else precision(ctx)


# ---- precisions, scales, conditioners, blocks ----------------------------------------------


def precisions(*, names: Sequence[str] = ("float16", "float32", "float64")) -> st.SearchStrategy[Precision]:
    """Precision contexts drawn from ``names`` (any name ``lipflow.precision`` accepts).

    >>> precisions(names=("float32",)).example().name
    'float32'
    """
    names = (names,) if isinstance(names, str) else tuple(names)
    if not names:
        raise LipflowError("names must list at least one precision, e.g. names=('float32',)")
    contexts = [precision(n) for n in names]
    return st.sampled_from(contexts)


def scales(*, kinds: Sequence[str] = SCALE_KINDS, min_scale: float = 0.0) -> st.SearchStrategy[Any]:
    """Scale functions g of affine couplings, with their parameters drawn.

    ``min_scale > 0`` keeps only scales with inf g >= min_scale (biased sigmoid, bounded, soft
    clamp), i.e. those with a *global* inverse bound (theory ``lem:scale-bounds``). ``identity``
    is the constant-scale toy of the paper's Figure 1 and needs a Constant s, which
    :func:`blocks` supplies.

    >>> all(s.range[0] >= 0.2 for s in [scales(kinds=("bounded",), min_scale=0.2).example()])
    True
    """
    kinds = _choices("kinds", kinds, SCALE_KINDS)
    if not (0 <= min_scale < 1):
        raise LipflowError(f"min_scale must be in [0, 1), got {min_scale!r}")
    options = []
    if "sigmoid" in kinds:
        bias = st.floats(min_scale, min_scale + 0.5) if min_scale > 0 else st.sampled_from([0.0, 0.1])
        options.append(st.builds(Sigmoid, shift=st.floats(-1, 3), bias=bias))
    if "bounded" in kinds:
        low = st.floats(max(min_scale, 0.05), max(min_scale, 0.9))
        options.append(low.flatmap(lambda a: st.builds(Bounded, low=st.just(a), high=st.floats(a + 0.05, a + 2))))
    if "softclamp" in kinds:
        # inf g = exp(-clamp) >= min_scale needs clamp <= -log(min_scale) (shaved against rounding)
        top = 3.0 if min_scale == 0 else min(3.0, -math.log(min_scale) * (1 - 1e-12))
        options.append(st.builds(SoftClamp, clamp=st.floats(min(0.1, top / 2), top)))
    if "exp" in kinds and min_scale == 0:
        options.append(st.just(Exp()))
    if "identity" in kinds and min_scale == 0:  # g = s itself: inf g is 0 without a constant s
        options.append(st.just(Identity()))
    if not options:
        raise LipflowError(f"no scale of kinds {list(kinds)} has inf g >= {min_scale}; add 'bounded' or 'softclamp'")
    return st.one_of(options)


def conditioners(*, width: tuple[int, int] = (2, 8), layers: tuple[int, int] = (1, 1),
                 activations: Sequence[str] = ("tanh", "relu", "elu", "lipswish", "swish", "sigmoid", "softplus"),
                 ) -> st.SearchStrategy[MLP]:
    """MLP conditioner recipes: ``layers`` hidden layers of ``width`` units, one activation.

    >>> conditioners(width=(4, 4), activations=("tanh",)).example().hidden[0]
    4
    """
    lo, hi = _range("width", width, low=1, integer=True)
    lo_l, hi_l = _range("layers", layers, low=0, integer=True)
    activations = _choices("activations", activations, tuple(ACTIVATIONS))
    hidden = st.integers(lo_l, hi_l).flatmap(lambda k: st.tuples(*[st.integers(lo, hi)] * k))
    return st.builds(MLP, hidden=hidden, activation=st.sampled_from(activations))


def blocks(*, dim: int = 2, kinds: Sequence[str] = BLOCK_KINDS, scale_kinds: Sequence[str] = SCALE_KINDS,
           min_scale: float = 0.0, width: tuple[int, int] = (2, 8), coeff: tuple[float, float] = (0.3, 0.9),
           forms: Sequence[str] = ("realnvp", "glow")) -> st.SearchStrategy[Block]:
    """Block configurations: additive / affine couplings (scale function and range, conditioner
    width and activation, form, conditioning half) and residual blocks (coefficient c in
    ``coeff``, c < 1 as the Banach lemma needs).

    >>> blocks(dim=4, kinds=("residual",), coeff=(0.5, 0.5)).example().coeff
    0.5
    """
    if not isinstance(dim, int) or dim < 2 or dim % 2:
        raise LipflowError(f"dim must be an even integer >= 2 (couplings split it in halves), got {dim!r}")
    kinds = _choices("kinds", kinds, BLOCK_KINDS)
    forms = _choices("forms", forms, ("realnvp", "glow"))
    c_lo, c_hi = _range("coeff", coeff, low=0.0, open_high=1.0)
    if c_lo <= 0:
        raise LipflowError(f"coeff must lie in (0, 1), got {coeff!r}")
    nets = conditioners(width=width)
    halves = st.sampled_from(["first", "second"])
    options = []
    if "additive" in kinds:
        options.append(st.builds(AdditiveCoupling, st.just(dim), t=nets, conditioning=halves))
    if "affine" in kinds:
        def affine(scale: Any) -> st.SearchStrategy[Block]:
            if isinstance(scale, Identity):
                s = st.builds(Constant, st.floats(max(0.05, min_scale), 2.0))
            else:
                s = nets
            return st.builds(AffineCoupling, st.just(dim), t=nets, s=s, scale=st.just(scale),
                             form=st.sampled_from(forms), conditioning=halves)
        scale_kinds = _choices("scale_kinds", scale_kinds, SCALE_KINDS)
        others = [k for k in scale_kinds if k != "identity"]
        # the identity scale gets a Constant s >= min_scale above, so it is offered at any min_scale
        pool = ([scales(kinds=others, min_scale=min_scale)] if others else []) + (
            [st.just(Identity())] if "identity" in scale_kinds else [])
        options.append(st.one_of(pool).flatmap(affine))
    if "residual" in kinds:
        options.append(st.builds(Residual, st.just(dim), hidden=st.tuples(st.integers(*_range("width", width, low=1,
                                 integer=True))), activation=st.sampled_from(RESIDUAL_ACTIVATIONS),
                                 coeff=st.floats(c_lo, c_hi), max_iter=st.just(500)))
    return st.one_of(options)


def flows(*, dim: int = 2, depth: tuple[int, int] = (2, 8), **block_options: Any) -> st.SearchStrategy[Flow]:
    """Flows of ``depth`` blocks from :func:`blocks` (same options), with a ``Reverse`` after
    every coupling so both halves get transformed (the reverses do not count towards depth).

    >>> 2 <= sum(1 for b in flows(dim=2, depth=(2, 3)).example().blocks if b.family != "permutation") <= 3
    True
    """
    lo, hi = _range("depth", depth, low=1, integer=True)
    layer = blocks(dim=dim, **block_options)

    def build(layers: list[Block]) -> Flow:
        sequence: list[Block] = []
        for block in layers:
            sequence.append(block)
            if block.family != "residual":
                sequence.append(Reverse(dim))
        return Flow(sequence)

    return st.lists(layer, min_size=lo, max_size=hi).map(build)


# ---- parameters --------------------------------------------------------------------------------


def _rescale_mlp(params: dict, norms: onp.ndarray) -> dict:
    weights = []
    for w, target in zip(params["weights"], norms, strict=False):
        sigma = onp.linalg.norm(w, 2)
        weights.append(w * (target / sigma) if sigma > 0 else w)
    return {"weights": weights, "biases": list(params["biases"])}


def _controlled(block: Block, params: Params, rng: onp.random.Generator, norm: tuple[float, float]) -> Params:
    if isinstance(block, Flow):
        return [_controlled(b, p, rng, norm) for b, p in zip(block.blocks, params, strict=True)]
    if isinstance(block, (AdditiveCoupling, AffineCoupling)):
        result = dict(params)
        for key in ("t", "s"):
            if params.get(key):
                count = len(params[key]["weights"])
                result[key] = _rescale_mlp(params[key], rng.uniform(*norm, size=count))
        return result
    return params


def params_for(model: Block, *, conditioner_norm: tuple[float, float] = (0.1, 1.5)) -> st.SearchStrategy[Params]:
    """Parameters of ``model`` whose conditioner weight matrices have spectral norms drawn in
    ``conditioner_norm`` (controls Lip(t), Lip(s) and, through s, the scale range). Residual
    blocks are normalised to their coefficient by the block itself.

    >>> import numpy as np, lipflow
    >>> block = lipflow.AdditiveCoupling(2, t=lipflow.MLP((4,)))
    >>> p = params_for(block, conditioner_norm=(0.5, 0.5)).example()
    >>> round(float(np.linalg.norm(p["t"]["weights"][0], 2)), 6)
    0.5
    """
    if not isinstance(model, Block):
        raise LipflowError(f"params_for needs a lipflow block or Flow, got {type(model).__name__}")
    norm = _range("conditioner_norm", conditioner_norm, low=0.0)

    def make(seed: int) -> Params:
        rng = onp.random.default_rng(seed)
        return _controlled(model, model.init(seed), rng, norm)

    return st.integers(0, 2**32 - 1).map(make)


def models(*, dim: int = 2, depth: tuple[int, int] = (2, 8), conditioner_norm: tuple[float, float] = (0.1, 1.5),
           **block_options: Any) -> st.SearchStrategy[tuple[Flow, Params]]:
    """(flow, params) pairs: :func:`flows` with :func:`params_for`."""
    return flows(dim=dim, depth=depth, **block_options).flatmap(
        lambda flow: st.tuples(st.just(flow), params_for(flow, conditioner_norm=conditioner_norm)))


# ---- inputs ----------------------------------------------------------------------------------


def inputs(*, dim: int, ctx: Precision | str = "float32", n: tuple[int, int] = (1, 8),
           kind: str = "in_distribution", radius: float = 3.0,
           magnitude: tuple[float, float] = (10.0, 1000.0)) -> st.SearchStrategy[onp.ndarray]:
    """Batches (n, dim) stored at ``ctx``.

    ``kind="in_distribution"``: uniform in [-radius, radius]^dim (the paper's data box).
    ``kind="out_of_distribution"``: random directions with norms in ``magnitude`` (paper
    Fig. 4's large-magnitude OOD inputs), capped below the format's overflow.

    >>> inputs(dim=3, ctx="float16", n=(2, 2)).example().dtype
    dtype('float16')
    """
    context = _context(ctx)
    if not isinstance(dim, int) or dim < 1:
        raise LipflowError(f"dim must be a positive integer, got {dim!r}")
    kind = _choices("kind", kind, INPUT_KINDS)[0]
    n_lo, n_hi = _range("n", n, low=1, integer=True)
    if not (math.isfinite(radius) and radius > 0):
        raise LipflowError(f"radius must be positive, got {radius!r}")
    m_lo, m_hi = _range("magnitude", magnitude, low=0.0)
    if isinstance(context, FloatPrecision) and m_hi > float(context.finfo.max) / 64:
        raise LipflowError(f"magnitude {magnitude} is too close to {context.name}'s overflow "
                           f"({float(context.finfo.max):.3g}); keep it below 1/64 of it")

    def make(args: tuple[int, int]) -> onp.ndarray:
        count, seed = args
        rng = onp.random.default_rng(seed)
        if kind == "in_distribution":
            values = rng.uniform(-radius, radius, size=(count, dim))
        else:
            direction = rng.standard_normal((count, dim))
            direction /= onp.linalg.norm(direction, axis=1, keepdims=True)
            values = direction * onp.exp(rng.uniform(math.log(max(m_lo, 1e-300)), math.log(m_hi), size=(count, 1)))
        return onp.asarray(context.cast(values))

    return st.tuples(st.integers(n_lo, n_hi), st.integers(0, 2**32 - 1)).map(make)


def _smallest_scale(model: Block, params: Params, x: onp.ndarray) -> onp.ndarray:
    """min over affine layers and coordinates of g(s(x1)) along the forward pass, per row."""
    layers = model.blocks if isinstance(model, Flow) else (model,)
    plist = list(params) if isinstance(model, Flow) else [params]
    ctx = precision("float64")
    smallest = onp.full(len(x), onp.inf)
    with onp.errstate(all="ignore"):
        for block, p in zip(layers, plist, strict=True):
            prepared = ctx.cast(block._prepare(p))
            if isinstance(block, AffineCoupling):
                _, g, _ = block.shift_and_log_scale(prepared, block.split(x)[0], ctx)
                smallest = onp.fmin(smallest, onp.min(onp.asarray(g), axis=1))
            x = block._forward(prepared, x, ctx)
    return smallest


def adversarial_inputs(model: Block, params: Params, *, ctx: Precision | str = "float32",
                       n: tuple[int, int] = (1, 4), radius: float = 3.0,
                       candidates: int = 256) -> st.SearchStrategy[onp.ndarray]:
    """Inputs in [-radius, radius]^dim where some affine layer's scale g(s(x1)) is nearest zero:
    the ``n`` best of ``candidates`` random points (the inverse divides by g, paper Sec. 3.1).

    >>> import lipflow
    >>> block = lipflow.AffineCoupling(2, scale="sigmoid")
    >>> adversarial_inputs(block, block.init(0), n=(2, 2)).example().shape
    (2, 2)
    """
    context = _context(ctx)
    if not isinstance(model, Block):
        raise LipflowError(f"model must be a lipflow block or Flow, got {type(model).__name__}")
    if not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius > 0):
        raise LipflowError(f"radius must be a positive finite number, got {radius!r}")
    n_lo, n_hi = _range("n", n, low=1, integer=True)
    if candidates < n_hi:
        raise LipflowError(f"candidates ({candidates}) must be at least the largest n ({n_hi})")

    def make(args: tuple[int, int]) -> onp.ndarray:
        count, seed = args
        pool = onp.random.default_rng(seed).uniform(-radius, radius, size=(candidates, model.dim))
        pool = onp.asarray(context.to_float64(context.cast(pool)))
        order = onp.argsort(_smallest_scale(model, params, pool), kind="stable")
        return onp.asarray(context.cast(pool[order[:count]]))

    return st.tuples(st.integers(n_lo, n_hi), st.integers(0, 2**32 - 1)).map(make)


# ---- everything for one lemma -----------------------------------------------------------------


@dataclass(frozen=True)
class LemmaCase:
    """A generated instance satisfying a lemma's assumptions.

    Attributes:
        lemma: the label (see :data:`LEMMAS`).
        model, params: the block or flow and its parameters.
        x: inputs (n, dim) at ``ctx``, inside ``box`` when the lemma needs one.
        ctx: the working precision.
        box: (low, high) of the domain the lemma is stated on, or None (global lemmas).
    """

    lemma: str
    model: Block
    params: Params
    x: onp.ndarray
    ctx: Precision
    box: tuple[onp.ndarray, onp.ndarray] | None


def lemma_cases(*, lemma: str = "reconstruction", ctx: Precision | str = "float32", dim: int = 2,
                depth: tuple[int, int] | None = None, kinds: Sequence[str] | None = None,
                input_kinds: Sequence[str] | None = None, n: tuple[int, int] = (1, 6),
                conditioner_norm: tuple[float, float] = (0.1, 1.5)) -> st.SearchStrategy[LemmaCase]:
    """Models, parameters and inputs generated to satisfy ``lemma``'s assumptions.

    * ``"reconstruction"`` (paper Section 2): a flow of ``depth`` blocks of ``kinds``, inputs of
      ``input_kinds`` (in- and out-of-distribution);
    * ``"lem:additive-tight"``: one additive coupling, any finite inputs (a global bound);
    * ``"lem:affine-local"``: one affine coupling, a box [-r, r]^dim and inputs inside it;
    * ``"lem:residual"``: one residual block with c < 1.

    ``depth``, ``kinds`` and ``input_kinds`` shape the ``"reconstruction"`` flows only; passing
    them with a single-block lemma is an error.

    >>> import numpy as np
    >>> case = lemma_cases(lemma="lem:affine-local", ctx="float64").example()
    >>> bool(np.all(np.abs(case.x) <= case.box[1]))
    True
    """
    lemma = _choices("lemma", lemma, LEMMAS)[0]
    context = _context(ctx)
    if lemma != "reconstruction":
        given = [name for name, value in (("depth", depth), ("kinds", kinds), ("input_kinds", input_kinds))
                 if value is not None]
        if given:
            raise LipflowError(f"{', '.join(given)} apply to lemma='reconstruction' only; {lemma} is about one "
                               "block (drop them, or use lemma='reconstruction')")
    depth = (2, 8) if depth is None else depth
    kinds = BLOCK_KINDS if kinds is None else kinds
    input_kinds = _choices("input_kinds", INPUT_KINDS if input_kinds is None else input_kinds, INPUT_KINDS)
    if lemma == "reconstruction":
        model_strategy = models(dim=dim, depth=depth, kinds=kinds, conditioner_norm=conditioner_norm)
    else:
        kind = {"lem:additive-tight": "additive", "lem:affine-local": "affine", "lem:residual": "residual"}[lemma]
        model_strategy = blocks(dim=dim, kinds=(kind,)).flatmap(
            lambda b: st.tuples(st.just(b), params_for(b, conditioner_norm=conditioner_norm)))

    def with_inputs(pair: tuple[Block, Params]) -> st.SearchStrategy[LemmaCase]:
        model, params = pair
        if lemma == "lem:affine-local":
            def boxed(r: float) -> st.SearchStrategy[LemmaCase]:
                def case(x: onp.ndarray) -> LemmaCase:
                    # rounding x to ctx may step past r: the box covers the stored values
                    reach = max(r, float(onp.max(onp.abs(context.to_float64(x)))))
                    return LemmaCase(lemma, model, params, x, context, (onp.full(dim, -reach), onp.full(dim, reach)))
                return inputs(dim=dim, ctx=context, n=n, radius=r).map(case)
            return st.floats(0.5, 5.0).flatmap(boxed)
        kinds_here = st.sampled_from(input_kinds)
        return kinds_here.flatmap(lambda k: inputs(dim=dim, ctx=context, n=n, kind=k).map(
            lambda x: LemmaCase(lemma, model, params, x, context, None)))

    return model_strategy.flatmap(with_inputs)
