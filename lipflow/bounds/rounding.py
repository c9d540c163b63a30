"""A priori rounding-error bounds of single blocks on a box (theory ``lem:rounding-blocks``).

For a block f, a box B of inputs stored in the block's format and a precision context p,
:func:`block_rounding_error` returns a componentwise vector e with
``|f_p(x) - f(x)| <= e`` for every x in B (f_p: the block evaluated by lipflow at p with its
float64 master parameters cast to p; f: the same block in exact arithmetic with the float64
master parameters). The rules follow the arithmetic *model* of each context
(:func:`arithmetic_model`), which is stated so that it holds for the semantics actually used:
NumPy's float16 and ml_dtypes' bfloat16 (products accumulated in float32, transcendentals
evaluated in float32) and the strict per-operation contexts alike. Every number is evaluated
in float64 with upward rounding by a safe relative margin, so the bound is rigorous.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as onp

from lipflow.blocks.base import Block
from lipflow.blocks.conditioners import MLP, Constant
from lipflow.blocks.coupling import AdditiveCoupling, AffineCoupling
from lipflow.blocks.linear import ActNorm, InvertibleLinear, Permutation
from lipflow.blocks.residual import Residual
from lipflow.blocks.scales import Bounded, Exp, Identity, Sigmoid, SoftClamp
from lipflow.bounds.images import image_box
from lipflow.bounds.mlp import activation_image, activation_lipschitz, network_image, network_lipschitz
from lipflow.bounds.rigorous import Box, Interval, scalar
from lipflow.bounds.scales import scale_enclosure
from lipflow.errors import LipflowError, UnboundedError
from lipflow.precision import Precision, precision

__all__ = [
    "ArithmeticModel",
    "arithmetic_model",
    "block_rounding_error",
    "cast_error",
    "norm_upper",
    "representable_in",
    "widen",
]

_U32, _U64 = 2.0**-24, 2.0**-53
#: relative error of one libm call in float32 / float64 / x87, including its rounding (4 ulp)
_LIB32, _LIB64, _LIBLD = 2.0**-21, 2.0**-50, 2.0**-61

#: exact (float64 master) parameters are cast at call time: float64 and wider are exact
_FORMATS = {
    # name: (significand bits, largest finite, half the smallest subnormal, library error, cast error)
    "float16": (11, 65504.0, 2.0**-25, 2.0**-11 + _LIB32 * (1 + 2.0**-11), 2.0**-11),
    "bfloat16": (8, 3.3895313892515355e38, 2.0**-134, 2.0**-8 + _LIB32 * (1 + 2.0**-8),
                 2.0**-8 + _U32 * (1 + 2.0**-8)),
    "float16-strict": (11, 65504.0, 2.0**-25, 2.0**-11 + 2.0**-48 * (1 + 2.0**-11), 2.0**-11),
    "bfloat16-strict": (8, 3.3895313892515355e38, 2.0**-134, 2.0**-8 + 2.0**-48 * (1 + 2.0**-8),
                        2.0**-8 + _U32 * (1 + 2.0**-8)),
    "float32": (24, 3.4028234663852886e38, 2.0**-150, _LIB32, _U32),
    "float64": (53, 1.7976931348623157e308, 5e-324, _LIB64, 0.0),
    "longdouble": (64, 1.7976931348623157e308, 5e-324, _LIBLD, 0.0),
}


@dataclass(frozen=True)
class ArithmeticModel:
    """The model of arithmetic a rounding bound assumes for one context (lem:rounding-blocks).

    Attributes:
        name: the context name.
        u: unit roundoff of a stored result: +, -, *, / and every store round with relative error
            <= u (plus ``eta`` for underflow).
        lib: relative error of one elementwise library call (exp, expm1, log1p, tanh, and the
            strict contexts' composite sigmoid/softplus/elu) including its final rounding.
        cast: relative error of casting a float64 value (a parameter, an input) to the format.
        eta: absolute allowance per operation for gradual underflow.
        largest: the largest finite value; a bound that reaches it is refused (overflow).
        strict: whether composite functions (sigmoid, softplus) are one library call.
    """

    name: str
    u: float
    lib: float
    cast: float
    eta: float
    largest: float
    strict: bool

    def gamma(self, k: int) -> float:
        """gamma_k = k u / (1 - k u): dot products of length k satisfy
        |fl(a.b) - a.b| <= gamma_k sum |a_i b_i| + 2 k eta in every supported context."""
        ku = k * self.u
        if ku >= 0.5:
            return math.inf
        return up(ku / (1 - ku))

    def rel(self, n: int) -> float:
        """((1 + a) / (1 - a))^n - 1 with a = max(u, lib, cast): n chained relative roundings."""
        a = max(self.u, self.lib, self.cast)
        return up(math.expm1(n * (math.log1p(a) - math.log1p(-a))) * (1 + 2.0**-40))

    def describe(self) -> str:
        kind = "strict per-operation" if self.strict else "NumPy / ml_dtypes"
        return (f"{self.name} ({kind}): u = 2^{round(math.log2(self.u))}, library calls <= {self.lib:.3g} relative, "
                f"casts <= {self.cast:.3g} relative, underflow <= {self.eta:.3g} absolute per operation")


def arithmetic_model(ctx: Precision | str) -> ArithmeticModel:
    """The :class:`ArithmeticModel` of a plan context (float16/bfloat16 plain or strict, float32,
    float64, longdouble); other contexts raise."""
    ctx = precision(ctx) if isinstance(ctx, str) else ctx
    if ctx.name not in _FORMATS:
        raise LipflowError(f"no rounding model for precision {ctx.name!r}; plans use {', '.join(_FORMATS)}")
    bits, largest, eta, lib, cast = _FORMATS[ctx.name]
    if ctx.name == "longdouble" and onp.finfo(onp.longdouble).nmant + 1 != 64:
        bits, lib = 53, _LIB64  # platforms where longdouble is float64
    return ArithmeticModel(name=ctx.name, u=math.ldexp(1.0, -bits), lib=lib, cast=cast, eta=eta,
                           largest=largest, strict=ctx.name.endswith("-strict"))


# ---- outward rounding helpers --------------------------------------------------------------------
def up(value: Any, terms: int = 4) -> Any:
    """Round a non-negative float64 result of ``terms`` operations up (a safe relative margin)."""
    v = onp.asarray(value, dtype=onp.float64)
    out = onp.where(v > 0, onp.nextafter(v * (1 + (terms + 8) * 2.0**-50), onp.inf), v)
    return float(out) if onp.ndim(out) == 0 else out


def norm_upper(vector: Any) -> float:
    """An upper bound on ||v||_2."""
    v = onp.abs(onp.asarray(vector, dtype=onp.float64)).reshape(-1)
    if not onp.all(onp.isfinite(v)):
        return math.inf
    if not onp.any(v):
        return 0.0
    return up(math.sqrt(up(float(onp.sum(v * v)), v.size + 2)))


def _mag(box: Box) -> onp.ndarray:
    return box.magnitude()


def _check(values: onp.ndarray, model: ArithmeticModel, what: str) -> onp.ndarray:
    if not onp.all(onp.isfinite(values)) or onp.any(values >= model.largest * (1 - model.u)):
        raise UnboundedError(f"{what} may overflow {model.name} (largest finite {model.largest:.6g}) on this box")
    return values


def widen(box: Box, e: onp.ndarray) -> Box:
    """The box grown by e >= 0 per coordinate (outward rounded; coordinates with e = 0 unchanged)."""
    e = onp.broadcast_to(onp.asarray(e, dtype=onp.float64), box.lo.shape)
    grow = e > 0
    lo = onp.where(grow, onp.nextafter(box.lo - e, -onp.inf), box.lo)
    hi = onp.where(grow, onp.nextafter(box.hi + e, onp.inf), box.hi)
    return Box(lo, hi)


_widen = widen


# ---- casts -----------------------------------------------------------------------------------------
def representable_in(source: str, target: str) -> bool:
    """Whether every value of format ``source`` is a value of ``target`` (casting is exact)."""
    storage = {"float16-strict": "float16", "bfloat16-strict": "bfloat16"}
    a, b = storage.get(source, source), storage.get(target, target)
    if a == b:
        return True
    wider = {"float16": {"float32", "float64", "longdouble"}, "bfloat16": {"float32", "float64", "longdouble"},
             "float32": {"float64", "longdouble"}, "float64": {"longdouble"}, "longdouble": set()}
    return b in wider[a]


def cast_error(box: Box, source: str, target: str) -> onp.ndarray:
    """Componentwise bound on |cast_target(v) - v| for v in ``box`` stored in ``source``."""
    if representable_in(precision(source).name, precision(target).name):
        return onp.zeros(box.dim)
    model = arithmetic_model(target)
    magnitude = _check(_mag(box), model, "a cast")
    error = up(model.cast * magnitude + model.eta)
    # a coordinate fixed to one value that the target represents is cast exactly
    ctx = precision(target)
    point = box.lo == box.hi
    if onp.any(point):
        exact = ctx.to_float64(ctx.cast(box.lo)) == box.lo
        error = onp.where(point & exact, 0.0, error)
    return error


# ---- networks ----------------------------------------------------------------------------------------
_COMPOSITE = {"identity": 0, "relu": 0, "tanh": 1, "elu": 1, "sigmoid": 5, "softplus": 4, "swish": 6, "lipswish": 8}
_STRICT = {"identity": 0, "relu": 0, "tanh": 1, "elu": 1, "sigmoid": 1, "softplus": 1, "swish": 2, "lipswish": 4}


def _function_rel(name: str, model: ArithmeticModel) -> float:
    """Relative error of the computed activation at a stored argument (lem:rounding-blocks, item 3)."""
    table = _STRICT if model.strict else _COMPOSITE
    if name not in table:
        raise LipflowError(f"no rounding model for activation {name!r}")
    return 0.0 if table[name] == 0 else model.rel(table[name])


Enclosed = tuple[Box, onp.ndarray]


def _affine_rule(weight: Any, bias: Any, box: Box, e_in: onp.ndarray, model: ArithmeticModel) -> Enclosed:
    """h = x W + b computed as fl(dot(x, W_p) + b_p) (lem:rounding-blocks, item 2)."""
    w = onp.abs(onp.asarray(weight, dtype=onp.float64))
    b = onp.abs(onp.asarray(bias, dtype=onp.float64))
    k = w.shape[0]
    out = box.affine(onp.asarray(weight, dtype=onp.float64), onp.asarray(bias, dtype=onp.float64))
    m_in = _mag(box)
    c = model.cast
    propagated = up((e_in @ w) * (1 + c) + c * (m_in @ w), k + 4)
    dot = up(model.gamma(k) * ((m_in + e_in) @ w) * (1 + c) + 2 * k * model.eta, k + 6)
    pre = up(propagated + dot + c * b, 4)
    e_out = up(pre + model.u * (_mag(out) + pre), 4)
    _check(_mag(out) + e_out, model, "a linear layer")
    return out, e_out


def _activation_rule(name: str, box: Box, e_in: onp.ndarray, model: ArithmeticModel) -> Enclosed:
    """a = phi(h) computed as fl_phi(h_p) (lem:rounding-blocks, item 3)."""
    lip = activation_lipschitz(name)
    out = activation_image(name, box)
    moved = up(lip * e_in, 2)
    rel = _function_rel(name, model)
    e_out = up(moved + rel * (_mag(out) + moved) + (4 * model.eta if rel else 0.0), 6)
    return out, e_out


def network_rounding(weights: list[Any], biases: list[Any], activation: str, box: Box,
                     model: ArithmeticModel, e_in: onp.ndarray | None = None) -> tuple[Box, onp.ndarray]:
    """(exact image box, componentwise error) of an MLP x -> W_K(phi(...(x W_1 + b_1)...)) + b_K."""
    current, e = box, onp.zeros(box.dim) if e_in is None else e_in
    last = len(weights) - 1
    for layer, (w, b) in enumerate(zip(weights, biases, strict=True)):
        current, e = _affine_rule(w, b, current, e, model)
        if layer < last:
            current, e = _activation_rule(activation, current, e, model)
    return current, e


def _conditioner(cond: MLP | Constant, params: Any, box: Box, out_dim: int, model: ArithmeticModel) -> Enclosed:
    if isinstance(cond, Constant):
        values = cond.values(out_dim)
        return Box(values, values.copy()), up(model.cast * onp.abs(values))
    return network_rounding(params["weights"], params["biases"], cond.activation, box, model)


# ---- coupling ----------------------------------------------------------------------------------------
def _scale_rule(scale: Any, s_box: Box, e_s: onp.ndarray, model: ArithmeticModel) -> tuple[onp.ndarray, ...]:
    """(inf g, sup g, error of the computed g) per coordinate on the s box (item 4)."""
    widened = _widen(s_box, e_s)
    exact = [scale_enclosure(scale, float(lo), float(hi)) for lo, hi in zip(s_box.lo, s_box.hi, strict=True)]
    wide = [scale_enclosure(scale, float(lo), float(hi)) for lo, hi in zip(widened.lo, widened.hi, strict=True)]
    g_lo = onp.array([e.c for e in exact])
    g_hi = onp.array([e.C for e in exact])
    slope = onp.array([e.G for e in wide])
    top = onp.array([e.C for e in wide])
    u, c = model.u, model.cast
    s_mag = _mag(widened)
    if isinstance(scale, Identity):
        return g_lo, g_hi, e_s
    if isinstance(scale, Sigmoid):
        arg = up(c * abs(scale.shift) + u * (s_mag + 2 * abs(scale.shift)), 6)
        sig = up(slope * (e_s + arg) * (1 + model.u) + model.rel(5 if not model.strict else 1) * top + 4 * model.eta, 6)
        if scale.bias:
            sig = up(sig + c * scale.bias + u * (top + sig + c * scale.bias), 6)
        return g_lo, g_hi, sig
    if isinstance(scale, Bounded):
        width = scale.high - scale.low
        arg = up(c * abs(scale.shift) + u * (s_mag + 2 * abs(scale.shift)), 6)
        rel_sigma = model.rel(5 if not model.strict else 1)
        # g = low + width sigma: argument error through g' (= width sigma'), sigma's error scaled by width
        value = up(slope * (e_s + arg) * (1 + model.rel(2)) + width * (rel_sigma + model.rel(2))
                   + c * scale.low + u * (top + width) + 8 * model.eta, 8)
        return g_lo, g_hi, value
    if isinstance(scale, Exp):
        return g_lo, g_hi, up(slope * e_s + model.lib * top + model.eta, 4)
    if isinstance(scale, SoftClamp):
        exponent = scale.clamp * model.rel(7)
        growth = scalar("exp", Interval.point(exponent)).hi - 1
        return g_lo, g_hi, up(slope * e_s + top * (growth * (1 + model.lib) + model.lib) + model.eta, 8)
    raise LipflowError(f"no rounding model for scale {type(scale).__name__}")


def _coupling_rule(block: AdditiveCoupling | AffineCoupling, params: Any, box: Box, model: ArithmeticModel,
                   direction: str) -> onp.ndarray:
    idx1, idx2 = (list(i) for i in block.indices)
    first, second = box[idx1], box[idx2]
    d2 = block.n_transformed
    t_box, e_t = _conditioner(block.t, params["t"], first, d2, model)
    u, eta = model.u, model.eta
    out = onp.zeros(block.dim)
    if isinstance(block, AdditiveCoupling):
        y = second + t_box if direction == "forward" else second - t_box
        e2 = up(e_t + u * (_mag(y) + e_t), 4)
        _check(_mag(y) + e2, model, "the coupling update")
        out[idx2] = e2
        return out
    s_box, e_s = _conditioner(block.s, params["s"], first, d2, model)
    g_lo, g_hi, e_g = _scale_rule(block.scale, s_box, e_s, model)
    g_box = Box(g_lo, g_hi)
    g_mag = onp.maximum(onp.abs(g_lo), onp.abs(g_hi))
    x_mag = _mag(second)
    if direction == "forward" and block.form == "realnvp":  # fl(fl(x2 g) + t)
        prod = second * g_box
        e_p = up(x_mag * e_g + u * (_mag(prod) + x_mag * e_g) + eta, 6)
        y = prod + t_box
        e2 = up(e_p + e_t + u * (_mag(y) + e_p + e_t), 6)
    elif direction == "forward":  # fl(fl(x2 + t) g)
        a = second + t_box
        e_a = up(e_t + u * (_mag(a) + e_t), 4)
        y = a * g_box
        prop = up(e_a * (g_mag + e_g) + _mag(a) * e_g, 6)
        e2 = up(prop + u * (_mag(y) + prop) + eta, 4)
    else:
        g_min = onp.nextafter(g_lo - e_g, -onp.inf)
        if onp.any(g_min <= 0):
            raise UnboundedError(f"the computed scale of a {block.family} may reach 0 in {model.name} on this box")
        if block.form == "realnvp":  # fl(fl(y2 - t) / g)
            a = second - t_box
            e_a = up(e_t + u * (_mag(a) + e_t), 4)
            q = a / g_box
            prop = up(e_a / g_min + _mag(a) * e_g / (g_min * g_lo), 8)
            e2 = up(prop + u * (_mag(q) + prop) + eta, 4)
            y = q
        else:  # fl(fl(y2 / g) - t)
            q = second / g_box
            prop = up(x_mag * e_g / (g_min * g_lo), 6)
            e_q = up(prop + u * (_mag(q) + prop) + eta, 4)
            y = q - t_box
            e2 = up(e_q + e_t + u * (_mag(y) + e_q + e_t), 6)
    _check(_mag(y) + e2, model, "the coupling update")
    out[idx2] = e2
    return out


# ---- residual ------------------------------------------------------------------------------------------
def residual_rounding(block: Residual, params: Any, box: Box, model: ArithmeticModel, direction: str) -> onp.ndarray:
    """Forward: fl(x + g_p(x)). Inverse: the fixed-point iteration with its stopping rule (item 5)."""
    prepared = block._prepare(params)
    weights, biases = prepared["weights"], prepared["biases"]
    u = model.u
    if direction == "forward":
        g_box, e_g = network_rounding(weights, biases, block.activation, box, model)
        y = box + g_box
        e = up(e_g + u * (_mag(y) + e_g), 4)
        _check(_mag(y) + e, model, "the residual update")
        return e
    c = network_lipschitz(weights, block.activation).value
    if not c < 1:
        raise UnboundedError(f"residual branch has certified Lip(g) <= {c:.6g}, not < 1")
    one_minus_c = float(onp.nextafter(1.0 - c, 0.0))
    x_star = image_box(block, params, box, "inverse")
    g_star = network_image(weights, biases, block.activation, x_star)
    big_g = norm_upper(_mag(g_star))  # ||y - x*|| = ||g(x*)|| <= G
    widening = up(2 * big_g + 1e-300, 4)
    for _ in range(8):
        region = _widen(x_star, onp.full(block.dim, widening))
        g_box, e_g = network_rounding(weights, biases, block.activation, region, model)
        step_value = box - g_box
        r = norm_upper(e_g + u * (_mag(step_value) + e_g))
        reach = up(big_g + r / one_minus_c, 4)
        if reach <= widening:
            break
        widening = up(2 * reach, 2)
    else:
        raise UnboundedError(f"the {model.name} fixed-point iteration of a residual block is not enclosed on this box")
    _check(_mag(region), model, "the residual iterates")
    d = block.dim
    y_norm = norm_upper(_mag(box))
    # the stopping rule reads ||fl(x_k - x_{k-1})||, the difference rounded in the format
    if block.tol is None:
        rule = 4 * math.sqrt(d) * u * (1 + y_norm) * (1 + 1e-9)
    else:
        lip = min(block.lipschitz_g(prepared) * (1 + 64 * 2.0**-52), 1.0 - 1e-15)
        rule = block.tol * (1 - lip) / lip * (1 + 1e-9)
    step = up((rule + math.sqrt(d) * model.eta) / (1 - u), 8)
    stopped = up((c * step + r) / one_minus_c, 6)
    capped = up(c ** block.max_iter * big_g + r / one_minus_c, 6) if c > 0 else up(r / one_minus_c)
    bound = max(stopped, capped)
    return onp.full(d, bound)  # an l2 bound: every component is at most it (conservative in l2 by sqrt(d))


# ---- linear ----------------------------------------------------------------------------------------------
def _actnorm_rule(params: Any, box: Box, model: ArithmeticModel, direction: str) -> onp.ndarray:
    log_scale = onp.asarray(params["log_scale"], dtype=onp.float64)
    bias = onp.asarray(params["bias"], dtype=onp.float64)
    sign = 1.0 if direction == "forward" else -1.0
    factors = [scalar("exp", Interval.point(sign * v)).hi for v in log_scale]
    factor = onp.asarray(factors)
    c, u, eta = model.cast, model.u, model.eta
    # computed factor exp(+-fl(log_scale)) (one library call, the argument cast with relative error c)
    growth = onp.array([scalar("exp", Interval.point(c * abs(v))).hi - 1 for v in log_scale])
    e_f = up(factor * (growth * (1 + model.lib) + model.lib) + eta, 6)
    if direction == "forward":  # fl(fl(x + b) e)
        a = box + bias
        e_a = up(c * onp.abs(bias) + u * (_mag(a) + c * onp.abs(bias)), 4)
        lower = onp.asarray([scalar("exp", Interval.point(v)).lo for v in log_scale])
        y = a * Box(lower, factor)
        prop = up(e_a * (factor + e_f) + _mag(a) * e_f, 6)
        e = up(prop + u * (_mag(y) + prop) + eta, 4)
    else:  # fl(fl(y e^-) - b)
        lower = onp.asarray([scalar("exp", Interval.point(-v)).lo for v in log_scale])
        p = box * Box(lower, factor)
        e_p = up(_mag(box) * e_f + u * (_mag(p) + _mag(box) * e_f) + eta, 6)
        y = p - bias
        e = up(e_p + c * onp.abs(bias) + u * (_mag(y) + e_p + c * onp.abs(bias)), 6)
    _check(_mag(y) + e, model, "the ActNorm update")
    return e


def block_rounding_error(block: Block, params: Any, box: Box, ctx: Precision | str,
                         direction: str = "forward") -> onp.ndarray:
    """Componentwise e with |f_p(x) - f(x)| <= e for every x in ``box`` stored at ``ctx``
    (``direction="inverse"``: the same for f^-1, ``box`` in the output space).

    Raises:
        UnboundedError: the computation may overflow, or a scale may reach 0, on the box.
        LipflowError: no rounding model for the block kind (InvertibleLinear, custom blocks).
    """
    if direction not in ("forward", "inverse"):
        raise LipflowError(f"direction must be 'forward' or 'inverse', got {direction!r}")
    model = arithmetic_model(ctx)
    if box.dim != block.dim:
        raise LipflowError(f"box has {box.dim} coordinates but the block has dim={block.dim}")
    if not box.finite:
        raise UnboundedError("the box is not finite")
    _check(_mag(box), model, "the block input")
    if isinstance(block, Permutation):
        return onp.zeros(block.dim)
    if isinstance(block, (AdditiveCoupling, AffineCoupling)):
        return _coupling_rule(block, params, box, model, direction)
    if isinstance(block, ActNorm):
        return _actnorm_rule(params, box, model, direction)
    if isinstance(block, Residual):
        return residual_rounding(block, params, box, model, direction)
    if isinstance(block, InvertibleLinear):
        raise LipflowError("no a priori rounding bound for InvertibleLinear (triangular solves) yet; "
                           "use mode='measured' for flows with this block")
    raise LipflowError(f"no rounding model for block {type(block).__name__}")
