"""Rigorous (outward-rounded) arithmetic for Lipschitz bounds (theory ``lem:rigorous-evaluation``).

* scalar enclosures: float64 operations widened by one ulp (``math.nextafter``), transcendental
  functions through mpmath's interval kernels at 80 bits, rounded outward to float64;
* :class:`Box` (vector intervals) with outward-rounded arithmetic and affine-layer images
  (``lem:interval-image``);
* a certified upper bound on ``||W||_2`` and lower bound on ``sigma_min(W)`` from a float64 SVD
  plus a proven rounding margin;
* :func:`evaluate_upper`: a sympy expression evaluated in interval arithmetic, rounded up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as onp
import sympy
from mpmath import libmp
from mpmath.libmp import libmpi

from lipflow.errors import LipflowError, UnboundedError

__all__ = [
    "ETA",
    "PREC",
    "UNIT_ROUNDOFF",
    "Box",
    "Interval",
    "down",
    "evaluate_upper",
    "gamma",
    "scalar",
    "singular_value_bounds",
    "spectral_norm_upper",
    "up",
]

PREC = 80
"""Working precision (bits) of the mpmath interval kernels."""
UNIT_ROUNDOFF = 2.0**-53
ETA = 2.0**-1074  # smallest subnormal: the absolute error of an underflowing product is <= ETA/2


def gamma(k: int) -> float:
    """gamma_k = k u / (1 - k u), rounded up; valid for k u < 1/2."""
    ku = k * UNIT_ROUNDOFF
    if ku >= 0.5:
        raise LipflowError(f"dimension {k} too large for the float64 rounding-error bound")
    return up(up(ku) / down(1.0 - ku))


def up(x: float) -> float:
    """The next float above ``x`` (covers the rounding of one correctly rounded operation)."""
    return math.nextafter(float(x), math.inf)


def down(x: float) -> float:
    """The next float below ``x``."""
    return math.nextafter(float(x), -math.inf)


def _inflate(values: onp.ndarray, terms: int) -> onp.ndarray:
    """A float array >= the exact value of a computed sum of ``terms`` non-negative products."""
    factor = 1.0 + 2.0 * gamma(terms + 2)
    return onp.nextafter(values * factor + (terms + 1) * ETA, onp.inf)


# ---- scalar intervals (mpmath libmpi at PREC bits) ----------------------------------------------
#: |arguments| of Interval.exp beyond this give the endpoints 0 / +inf (exp(1000) > 1e434)
EXP_ARGUMENT_LIMIT = 1000


def _mpf(x: float) -> tuple:
    return libmp.from_float(float(x))


@dataclass(frozen=True)
class Interval:
    """A closed real interval [lo, hi] held as an mpmath ``mpi`` pair at :data:`PREC` bits."""

    mpi: tuple

    @classmethod
    def point(cls, x: float) -> Interval:
        m = _mpf(x)
        return cls((m, m))

    @classmethod
    def of(cls, lo: float, hi: float) -> Interval:
        if math.isnan(lo) or math.isnan(hi):
            raise UnboundedError(f"interval endpoint is NaN ([{lo}, {hi}]): an overflow upstream")
        if not lo <= hi:
            raise LipflowError(f"empty interval [{lo}, {hi}]")
        return cls((_mpf(lo), _mpf(hi)))

    @staticmethod
    def _wrap(value: Any) -> Interval:
        if isinstance(value, Interval):
            return value
        if isinstance(value, sympy.Rational):
            p, q = Interval.point(float(value.p)), Interval.point(float(value.q))
            if abs(value.p) < 2**53 and value.q < 2**53:
                return p / q
        if isinstance(value, (int, float, onp.floating, onp.integer)):
            if not math.isfinite(float(value)):  # an overflow upstream: no finite bound, not bad input
                raise UnboundedError(f"cannot use {value!r} in interval arithmetic (an overflow upstream)")
            if float(value) != value:
                raise LipflowError(f"integer {value} is not exactly representable")
            return Interval.point(float(value))
        raise LipflowError(f"cannot use {value!r} in interval arithmetic")

    def __add__(self, other: Any) -> Interval:
        return Interval(libmpi.mpi_add(self.mpi, self._wrap(other).mpi, PREC))

    __radd__ = __add__

    def __sub__(self, other: Any) -> Interval:
        return Interval(libmpi.mpi_sub(self.mpi, self._wrap(other).mpi, PREC))

    def __rsub__(self, other: Any) -> Interval:
        return self._wrap(other) - self

    def __mul__(self, other: Any) -> Interval:
        return Interval(libmpi.mpi_mul(self.mpi, self._wrap(other).mpi, PREC))

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Interval:
        other = self._wrap(other)
        if other.lo <= 0.0 <= other.hi:
            raise UnboundedError("interval division by an interval containing 0")
        return Interval(libmpi.mpi_div(self.mpi, other.mpi, PREC))

    def __rtruediv__(self, other: Any) -> Interval:
        return self._wrap(other) / self

    def __neg__(self) -> Interval:
        return Interval(libmpi.mpi_neg(self.mpi, PREC))

    def __pow__(self, k: int) -> Interval:
        if not isinstance(k, (int, onp.integer)):
            raise LipflowError("Interval powers must be integers; use sqrt()")
        if k < 0:
            return 1 / (self ** (-k))
        return Interval(libmpi.mpi_pow_int(self.mpi, int(k), PREC))

    def sqrt(self) -> Interval:
        if self.lo < 0:
            raise LipflowError("square root of an interval with negative values")
        return Interval(libmpi.mpi_sqrt(self.mpi, PREC))

    def exp(self) -> Interval:
        """exp, with arguments beyond +-:data:`EXP_ARGUMENT_LIMIT` sent to the endpoints +inf / 0.

        Far outside float64's range this is still a valid enclosure, and it keeps mpmath from
        evaluating exp of astronomically large numbers (nested exps of a huge box would need
        working precisions of millions of bits).
        """
        limit = libmp.from_int(EXP_ARGUMENT_LIMIT)
        lo, hi = self.mpi
        inner_lo = lo if libmp.mpf_gt(lo, libmp.mpf_neg(limit)) else libmp.mpf_neg(limit)
        inner_hi = hi if libmp.mpf_lt(hi, limit) else limit
        if libmp.mpf_gt(inner_lo, inner_hi):  # the whole argument lies beyond one limit
            inner_lo = inner_hi = limit if libmp.mpf_ge(lo, limit) else libmp.mpf_neg(limit)
        out_lo, out_hi = libmpi.mpi_exp((inner_lo, inner_hi), PREC)
        if libmp.mpf_lt(lo, libmp.mpf_neg(limit)):
            out_lo = libmp.fzero
        if libmp.mpf_gt(hi, limit):
            out_hi = libmp.finf
        return Interval((out_lo, out_hi))

    def log(self) -> Interval:
        if self.lo <= 0:
            raise LipflowError("logarithm of an interval with non-positive values")
        return Interval(libmpi.mpi_log(self.mpi, PREC))

    def atan(self) -> Interval:
        return Interval(libmpi.mpi_atan(self.mpi, PREC))

    def abs(self) -> Interval:
        return Interval(libmpi.mpi_abs(self.mpi, PREC))

    def hull(self, other: Interval) -> Interval:
        return Interval.of(min(self.lo, other.lo), max(self.hi, other.hi))

    def maximum(self, other: Any) -> Interval:
        other = self._wrap(other)
        return Interval.of(max(self.lo, other.lo), max(self.hi, other.hi))

    def minimum(self, other: Any) -> Interval:
        other = self._wrap(other)
        return Interval.of(min(self.lo, other.lo), min(self.hi, other.hi))

    @property
    def lo(self) -> float:
        """Lower endpoint rounded down to float64."""
        return libmp.to_float(self.mpi[0], rnd=libmp.round_floor)

    @property
    def hi(self) -> float:
        """Upper endpoint rounded up to float64."""
        return libmp.to_float(self.mpi[1], rnd=libmp.round_ceiling)


def _sigmoid_iv(v: Interval) -> Interval:
    return 1 / (1 + (-v).exp())


def _tanh_iv(v: Interval) -> Interval:
    return 1 - 2 / ((2 * v).exp() + 1)


def _softplus_iv(v: Interval) -> Interval:
    return (1 + v.exp()).log()


_INCREASING: dict[str, Callable[[Interval], Interval]] = {
    "sigmoid": _sigmoid_iv,
    "tanh": _tanh_iv,
    "softplus": _softplus_iv,
    "exp": Interval.exp,
    "log": Interval.log,
    "atan": Interval.atan,
    "sqrt": Interval.sqrt,
}


def scalar(name: str, x: float | Interval) -> Interval:
    """Enclosure of an increasing scalar function: exp, log, atan, sqrt, sigmoid, tanh, softplus.

    Each endpoint is evaluated separately (monotonicity), which avoids the dependency effect.
    """
    try:
        func = _INCREASING[name]
    except KeyError:
        raise LipflowError(f"no interval enclosure for function {name!r}") from None
    v = x if isinstance(x, Interval) else Interval.point(x)
    if v.mpi[0] == v.mpi[1]:
        return func(v)
    return Interval.of(func(Interval.point(v.lo)).lo, func(Interval.point(v.hi)).hi)


def scalar_bound(name: str, x: float, upper: bool) -> float:
    """One endpoint: a float below (``upper=False``) or above f(x) for increasing f."""
    value = _INCREASING[name](Interval.point(x))
    return value.hi if upper else value.lo


# ---- boxes --------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Box:
    """A float64 box prod_i [lo_i, hi_i] with outward-rounded arithmetic."""

    lo: onp.ndarray
    hi: onp.ndarray

    def __post_init__(self) -> None:
        lo = onp.asarray(self.lo, dtype=onp.float64).reshape(-1)
        hi = onp.asarray(self.hi, dtype=onp.float64).reshape(-1)
        if lo.shape != hi.shape:
            raise LipflowError(f"box bounds have shapes {lo.shape} and {hi.shape}")
        if onp.any(onp.isnan(lo)) or onp.any(onp.isnan(hi)) or onp.any(lo > hi):
            if not (onp.all(onp.isfinite(lo)) and onp.all(onp.isfinite(hi))):  # inf - inf inside an image
                raise UnboundedError("an interval image overflowed float64 (inf or NaN bounds); shrink the box")
            raise LipflowError("box needs lo <= hi in every coordinate (and no NaN)")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    @classmethod
    def cube(cls, low: float, high: float, dim: int) -> Box:
        return cls(onp.full(dim, float(low)), onp.full(dim, float(high)))

    @classmethod
    def point(cls, x: Any) -> Box:
        x = onp.asarray(x, dtype=onp.float64).reshape(-1)
        return cls(x, x.copy())

    @property
    def dim(self) -> int:
        return self.lo.size

    @property
    def finite(self) -> bool:
        return bool(onp.all(onp.isfinite(self.lo)) and onp.all(onp.isfinite(self.hi)))

    def __getitem__(self, index: Any) -> Box:
        return Box(self.lo[index], self.hi[index])

    def mid_rad(self) -> tuple[onp.ndarray, onp.ndarray]:
        """(c, r) with [lo, hi] contained in [c - r, c + r]."""
        c = self.lo + 0.5 * (self.hi - self.lo)
        c = onp.where(onp.isfinite(c), c, 0.5 * self.lo + 0.5 * self.hi)
        r = onp.nextafter(onp.maximum(self.hi - c, c - self.lo), onp.inf)
        return c, r

    def radius_norm(self) -> float:
        """An upper bound on the l2 norm of the half-widths."""
        _, r = self.mid_rad()
        return up(math.sqrt(up(float(onp.sum(_inflate(r * r, r.size))))))

    def magnitude(self) -> onp.ndarray:
        """max(|lo|, |hi|) per coordinate (exact)."""
        return onp.maximum(onp.abs(self.lo), onp.abs(self.hi))

    def contains(self, points: Any) -> bool:
        points = onp.atleast_2d(onp.asarray(points, dtype=onp.float64))
        return bool(onp.all((points >= self.lo) & (points <= self.hi)))

    def hull(self, other: Box) -> Box:
        return Box(onp.minimum(self.lo, other.lo), onp.maximum(self.hi, other.hi))

    def intersect(self, other: Box) -> Box:
        lo, hi = onp.maximum(self.lo, other.lo), onp.minimum(self.hi, other.hi)
        if onp.any(lo > hi):  # both are enclosures of one set: cannot be disjoint
            raise LipflowError("internal error: disjoint enclosures of the same image")
        return Box(lo, hi)

    def __add__(self, other: Box | onp.ndarray | float) -> Box:
        o_lo, o_hi = _bounds(other)
        return Box(onp.nextafter(self.lo + o_lo, -onp.inf), onp.nextafter(self.hi + o_hi, onp.inf))

    def __neg__(self) -> Box:
        return Box(-self.hi, -self.lo)

    def __sub__(self, other: Box | onp.ndarray | float) -> Box:
        return self + (-other if isinstance(other, Box) else -onp.asarray(other, dtype=onp.float64))

    def __mul__(self, other: Box | onp.ndarray | float) -> Box:
        o_lo, o_hi = _bounds(other)
        products = onp.stack([self.lo * o_lo, self.lo * o_hi, self.hi * o_lo, self.hi * o_hi])
        products = onp.where(onp.isnan(products), 0.0, products)  # 0 * inf: the factor 0 is exact
        return Box(onp.nextafter(products.min(0), -onp.inf), onp.nextafter(products.max(0), onp.inf))

    def reciprocal(self) -> Box:
        if onp.any((self.lo <= 0) & (self.hi >= 0)):
            raise UnboundedError("reciprocal of an interval containing 0")
        return Box(onp.nextafter(1.0 / self.hi, -onp.inf), onp.nextafter(1.0 / self.lo, onp.inf))

    def __truediv__(self, other: Box) -> Box:
        return self * other.reciprocal()

    def affine(self, weight: onp.ndarray, bias: onp.ndarray | None = None) -> Box:
        """Enclosure of {x W + b : x in box} for a float64 matrix W (``lem:interval-image``)."""
        w = onp.asarray(weight, dtype=onp.float64)
        m = w.shape[0]
        b = onp.zeros(w.shape[1]) if bias is None else onp.asarray(bias, dtype=onp.float64)
        c, r = self.mid_rad()
        center = c @ w + b
        aw = onp.abs(w)
        rad = r @ aw + gamma(m + 1) * (onp.abs(c) @ aw + onp.abs(b))
        rad = _inflate(rad, m + 3)
        out = Box(onp.nextafter(center - rad, -onp.inf), onp.nextafter(center + rad, onp.inf))
        if not out.finite:
            raise UnboundedError("interval image overflowed: the box is too large for float64")
        return out

    def apply(self, name: str) -> Box:
        """Image under an increasing elementwise function (``scalar`` names)."""
        lo = [scalar_bound(name, float(v), False) for v in self.lo]
        hi = [scalar_bound(name, float(v), True) for v in self.hi]
        return Box(onp.array(lo), onp.array(hi))

    def as_tuple(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return tuple(map(float, self.lo)), tuple(map(float, self.hi))


def _bounds(other: Box | onp.ndarray | float) -> tuple[onp.ndarray, onp.ndarray]:
    if isinstance(other, Box):
        return other.lo, other.hi
    value = onp.asarray(other, dtype=onp.float64)
    return value, value


# ---- certified singular values ------------------------------------------------------------------
def _gram_certificate(c_hat: onp.ndarray, radius: onp.ndarray | None, k: int) -> tuple[onp.ndarray, onp.ndarray]:
    """(G_hat, R) with |C^T C - G_hat| <= R for any C with |C - C_hat| <= radius."""
    g_hat = c_hat.T @ c_hat
    ac = onp.abs(c_hat)
    r = gamma(k) * (ac.T @ ac)
    if radius is not None:
        r = r + 2.0 * (ac.T @ radius) + radius.T @ radius
    return g_hat, _inflate(r, k + 4)


def _gershgorin(g_hat: onp.ndarray, r: onp.ndarray) -> tuple[float, float]:
    """(lower, upper) bounds on the eigenvalues of any symmetric G with |G - g_hat| <= r."""
    off = onp.abs(g_hat) + r
    onp.fill_diagonal(off, 0.0)
    n = off.shape[0]
    row = _inflate(off.sum(axis=1), n)
    diag = onp.diag(g_hat)
    rdiag = onp.diag(r)
    upper = onp.nextafter(onp.nextafter(diag + rdiag, onp.inf) + row, onp.inf)
    lower = onp.nextafter(onp.nextafter(diag - rdiag, -onp.inf) - row, -onp.inf)
    return float(lower.min()), float(upper.max())


def singular_value_bounds(matrix: Any) -> tuple[float, float]:
    """Certified (lower bound of sigma_min, upper bound of sigma_max) of a float64 matrix.

    The lower bound is 0.0 when it cannot be certified positive (or the matrix is wide).
    Theory: ``lem:rigorous-evaluation``.
    """
    w = onp.asarray(matrix, dtype=onp.float64)
    if w.ndim != 2 or w.size == 0:
        raise LipflowError(f"need a non-empty 2-D matrix, got shape {w.shape}")
    if not onp.all(onp.isfinite(w)):
        raise UnboundedError("matrix has non-finite entries; no finite spectral norm bound")
    m, n = w.shape
    scale = float(onp.max(onp.abs(w)))
    if scale == 0.0:
        return 0.0, 0.0
    # exact power-of-two scaling avoids overflow/underflow in the Gram products
    exponent = math.frexp(scale)[1]
    ws = onp.ldexp(w, -exponent)
    _, _, vt = onp.linalg.svd(ws, full_matrices=True)
    v = vt.T
    c_hat = ws @ v
    delta = _inflate(gamma(n) * (onp.abs(ws) @ onp.abs(v)), n + 2)
    g_hat, r_g = _gram_certificate(c_hat, delta, m)
    p_hat, r_p = _gram_certificate(v, None, n)
    g_lo, g_hi = _gershgorin(g_hat, r_g)
    p_lo, p_hi = _gershgorin(p_hat, r_p)
    if not (p_lo > 0 and math.isfinite(g_hi)):
        raise LipflowError("could not certify the spectral norm (ill-conditioned SVD basis)")
    upper = math.ldexp(up(math.sqrt(up(up(g_hi) / p_lo))), exponent)
    lower = 0.0
    if m >= n and g_lo > 0:
        lower = math.ldexp(down(math.sqrt(down(down(g_lo) / up(p_hi)))), exponent)
    return lower, up(upper)


def spectral_norm_upper(matrix: Any) -> float:
    """A certified upper bound on ||W||_2 (float64 SVD plus a proven rounding margin)."""
    return singular_value_bounds(matrix)[1]


# ---- sympy expressions, evaluated upward --------------------------------------------------------
_FUNCS: dict[type, Callable[[Interval], Interval]] = {
    sympy.exp: Interval.exp,
    sympy.log: Interval.log,
    sympy.atan: Interval.atan,
    sympy.Abs: Interval.abs,
}


def _eval(expr: sympy.Basic, env: Mapping[sympy.Symbol, Interval]) -> Interval:
    if isinstance(expr, sympy.Symbol):
        return env[expr]
    if expr is sympy.pi:
        return Interval(libmpi.mpi_pi(PREC))
    if isinstance(expr, sympy.Integer):
        return Interval._wrap(int(expr))
    if isinstance(expr, sympy.Rational):
        return Interval._wrap(expr)
    if isinstance(expr, sympy.Float):
        raise LipflowError("bound expressions must use exact (Rational) constants, not Float")
    if isinstance(expr, sympy.Add):
        total = _eval(expr.args[0], env)
        for arg in expr.args[1:]:
            total = total + _eval(arg, env)
        return total
    if isinstance(expr, sympy.Mul):
        total = _eval(expr.args[0], env)
        for arg in expr.args[1:]:
            total = total * _eval(arg, env)
        return total
    if isinstance(expr, sympy.Pow):
        base, power = _eval(expr.args[0], env), expr.args[1]
        if power == sympy.Rational(1, 2):
            return base.sqrt()
        if power == -sympy.Rational(1, 2):
            return 1 / base.sqrt()
        if isinstance(power, sympy.Integer):
            return base ** int(power)
        return (_eval(power, env) * base.log()).exp()
    if isinstance(expr, (sympy.Max, sympy.Min)):
        values = [_eval(arg, env) for arg in expr.args]
        result = values[0]
        for value in values[1:]:
            result = result.maximum(value) if isinstance(expr, sympy.Max) else result.minimum(value)
        return result
    for func, method in _FUNCS.items():
        if isinstance(expr, func):
            return method(_eval(expr.args[0], env))
    raise LipflowError(f"cannot evaluate {expr!r} rigorously")


def evaluate_upper(expr: sympy.Expr, values: Mapping[sympy.Symbol | str, float]) -> float:
    """Upper endpoint (rounded up to float64) of ``expr`` in interval arithmetic at ``values``.

    Rigorous when the expression is monotone in each ingredient in the direction of its bound
    (theory ``lem:rigorous-evaluation``).
    """
    env: dict[sympy.Symbol, Interval] = {}
    for key, value in values.items():
        symbol = key if isinstance(key, sympy.Symbol) else sympy.Symbol(key)
        value = float(value)
        if not math.isfinite(value):
            raise UnboundedError(f"ingredient {symbol} = {value} is not finite")
        env[symbol] = Interval.point(value)
    for symbol in expr.free_symbols:
        if symbol not in env:
            env[symbol] = Interval.point(float(values[str(symbol)]))
    return _eval(expr, env).hi
