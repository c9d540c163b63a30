"""Vectorised double-double kernels on pairs of float64 arrays (hi, lo).

A double-double value is the unevaluated sum hi + lo of two float64 numbers with
|lo| <= ulp(hi)/2, giving a ~106-bit significand. Every kernel is a fixed sequence of float64
array operations built from the error-free transformations TwoSum (Knuth) and TwoProd
(Dekker's splitting; NumPy has no fused multiply-add), so a batch of values costs a few dozen
vectorised float64 passes.

References:
    T. J. Dekker, "A floating-point technique for extending the available precision" (1971).
    Y. Hida, X. S. Li, D. H. Bailey, "Library for double-double and quad-double arithmetic"
    (2007).
    M. Joldes, J.-M. Muller, V. Popescu, "Tight and rigorous error bounds for basic building
    blocks of double-word arithmetic", ACM TOMS 44 (2017): addition <= 3u^2, multiplication
    <= 7u^2 and division <= 15u^2 relative error for u = 2^-53, i.e. below 2^-102.

Range: values above ~2^996 overflow Dekker's splitting; such results fall back to the plain
float64 result (lo = 0), and an infinite result stays infinite (never turns into NaN). Below
~2^-969 the lo part is subnormal and the precision degrades gradually.
"""

from __future__ import annotations

import functools

import mpmath
import numpy as onp

__all__ = [
    "add",
    "atan",
    "dd_constant",
    "div",
    "dot",
    "exp",
    "expm1",
    "fast_two_sum",
    "log",
    "log1p",
    "mul",
    "sqrt",
    "sum_along",
    "tanh",
    "two_prod",
    "two_sum",
]

Pair = tuple[onp.ndarray, onp.ndarray]

_SPLITTER = 134217729.0  # 2^27 + 1


# ---- error-free transformations ------------------------------------------------------------


def two_sum(a, b) -> Pair:
    """s + e = a + b exactly, s = fl(a + b) (Knuth's TwoSum, no ordering needed)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def fast_two_sum(a, b) -> Pair:
    """s + e = a + b exactly when |a| >= |b| (or a == 0)."""
    s = a + b
    return s, b - (s - a)


def _split(a) -> Pair:
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def two_prod(a, b) -> Pair:
    """p + e = a * b exactly, p = fl(a * b) (Dekker's product via Veltkamp splitting)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _finish(hi, lo, naive) -> Pair:
    """Keep non-finite results as the plain float64 result (inf stays inf, never NaN)."""
    finite = onp.isfinite(hi)
    if finite.all():
        return hi, lo
    fallback = onp.asarray(naive(), dtype=onp.float64)
    bad = ~finite
    hi = onp.where(bad, fallback, hi)
    lo = onp.where(bad, 0.0, lo)
    return hi, lo


# ---- arithmetic -------------------------------------------------------------------------------


def add(ah, al, bh, bl) -> Pair:
    """(a + b) with the accurate double-word sum (relative error <= 3u^2)."""
    s, e = two_sum(ah, bh)
    t, f = two_sum(al, bl)
    s, e = fast_two_sum(s, e + t)
    hi, lo = fast_two_sum(s, e + f)
    return _finish(hi, lo, lambda: ah + bh)


def add_ordered(ah, al, bh, bl) -> Pair:
    """a + b when |b| <= |a| (or a == 0) and no cancellation is possible (|b| <= |a|/2 or
    equal signs): two FastTwoSums, error ~2u^2 |a + b|. For polynomial and table steps."""
    s, e = fast_two_sum(ah, bh)
    return fast_two_sum(s, e + (al + bl))


def add_double(ah, al, b) -> Pair:
    """a + b for a double-double a and a float64 b."""
    s, e = two_sum(ah, b)
    hi, lo = fast_two_sum(s, e + al)
    return _finish(hi, lo, lambda: ah + b)


def mul(ah, al, bh, bl) -> Pair:
    """a * b (relative error <= 7u^2)."""
    p, e = two_prod(ah, bh)
    hi, lo = fast_two_sum(p, e + (ah * bl + al * bh))
    return _finish(hi, lo, lambda: ah * bh)


def mul_double(ah, al, b) -> Pair:
    """a * b for a double-double a and a float64 b."""
    p, e = two_prod(ah, b)
    hi, lo = fast_two_sum(p, e + al * b)
    return _finish(hi, lo, lambda: ah * b)


def div(ah, al, bh, bl) -> Pair:
    """a / b: one float64 quotient corrected by the exact remainder (relative error <= 15u^2)."""
    with onp.errstate(divide="ignore", invalid="ignore"):
        q = ah / bh
        p, e = two_prod(q, bh)
        remainder = ((ah - p) - e) + al - q * bl
        hi, lo = fast_two_sum(q, remainder / bh)
    return _finish(hi, lo, lambda: q)


def sqrt(ah, al) -> Pair:
    """sqrt(a) by one Newton step from the float64 root (0 stays 0, negatives give NaN)."""
    with onp.errstate(divide="ignore", invalid="ignore"):
        y = onp.sqrt(ah)
        p, e = two_prod(y, y)
        correction = (((ah - p) - e) + al) / (y + y)
        correction = onp.where(y > 0, correction, 0.0)
        hi, lo = fast_two_sum(y, correction)
    return _finish(hi, lo, lambda: y)


def ldexp(ah, al, k) -> Pair:
    """a * 2^k, exact (scaling both parts)."""
    return onp.ldexp(ah, k), onp.ldexp(al, k)


# ---- constants --------------------------------------------------------------------------------


def dd_constant(value: mpmath.mpf | float | str) -> tuple[float, float]:
    """The double-double nearest a high-precision value (given as mpf, float or decimal string)."""
    with mpmath.workprec(240):
        exact = mpmath.mpf(value)
        hi = float(exact)
        lo = float(exact - hi)
    return hi, lo


_N_TABLE = 2048  # exp reduction x = (k N + j) ln2 / N + r, |r| <= ln2 / (2N) ~ 1.7e-4
_LEADING_BITS = 31  # |n| <= 746 N / ln2 < 2^22: n * L1 has <= 53 bits


@functools.lru_cache(maxsize=1)
def _exp_tables() -> tuple[onp.ndarray, onp.ndarray, onp.ndarray, onp.ndarray, float, float, float]:
    """2^(j/N) and 2^(j/N) - 1 as double-doubles for j in [-N/2, N/2), and ln2/N split as
    L1 (31 bits, so n L1 is exact for |n| < 2^22) plus a double-double L2 (Cody-Waite)."""
    j = range(-_N_TABLE // 2, _N_TABLE // 2)
    with mpmath.workprec(240):
        exact = [mpmath.power(2, mpmath.mpf(i) / _N_TABLE) for i in j]
        power = [dd_constant(value) for value in exact]
        minus_one = [dd_constant(value - 1) for value in exact]
        step = mpmath.log(2) / _N_TABLE
        leading = _round_bits(step, _LEADING_BITS)
        trailing = dd_constant(step - leading)
    return (
        onp.array([p[0] for p in power]),
        onp.array([p[1] for p in power]),
        onp.array([m[0] for m in minus_one]),
        onp.array([m[1] for m in minus_one]),
        leading,
        *trailing,
    )


#: N / ln2 rounded to float64 (the reduction's quotient; the exact split of ln2/N is in the tables)
with mpmath.workprec(120):
    _INV_STEP = float(_N_TABLE / mpmath.log(2))


def _round_bits(value: mpmath.mpf, bits: int) -> float:
    """``value`` rounded to ``bits`` significant bits."""
    with mpmath.workprec(bits):
        return float(+value)


with mpmath.workprec(240):
    _INV_FACT = {n: dd_constant(mpmath.mpf(1) / mpmath.factorial(n)) for n in (3, 4)}
    PI = dd_constant(+mpmath.pi)
    HALF_PI = dd_constant(mpmath.pi / 2)


# ---- exponential family -----------------------------------------------------------------------


def _reduce_exp(ah, al):
    """(k, table index, r) with a = k ln2 + (j/N) ln2 + r, |r| <= ln2/(2N) (Cody-Waite)."""
    _, _, _, _, leading, trailing_hi, trailing_lo = _exp_tables()
    # n = rint(a N / ln2): |r| <= (ln2 / 2N)(1 + 2^-30) (the rho of lem:dd-expm1); |n| < 2^22
    # after clipping, so Veltkamp splits it as (n, 0)
    n = onp.rint(ah * _INV_STEP)
    k = onp.floor((n + _N_TABLE // 2) / _N_TABLE)
    index = (n - k * _N_TABLE).astype(onp.int64) + _N_TABLE // 2
    reduced = ah - n * leading  # exact: n * leading has <= 53 bits and lies near ah
    t1, t2 = _split(onp.float64(trailing_hi))
    p = n * trailing_hi
    e = (n * t1 - p) + n * t2  # p + e = n * trailing_hi exactly (Dekker with n's split (n, 0))
    rh, rl = two_sum(reduced, -p)
    rh, carry = two_sum(rh, al)  # al can reach |a| 2^-53: add it exactly, not in float64
    rh, rl = fast_two_sum(rh, (rl + carry) - (e + n * trailing_lo))
    return k.astype(onp.int64), index, rh, rl


def _scale(hi, lo, k) -> Pair:
    """(hi, lo) * 2^k; one multiplication where 2^k is a normal double, else two steps."""
    if k.size == 0 or int(onp.max(onp.abs(k))) <= 1000:
        factor = onp.ldexp(1.0, k)
        return hi * factor, lo * factor
    half = k // 2
    return ldexp(*ldexp(hi, lo, half), k - half)


def _expm1_reduced(rh, rl) -> Pair:
    """exp(r) - 1 for |r| <= ln2/(2N) ~ 1.7e-4 (N = 2048), accurate relative to the result.

    expm1(r) = r + r^2 Q with Q = 1/2 + r Q3, Q3 = 1/6 + r Q4, Q4 = 1/24 + r Q5 and Q5 =
    1/120 + r/720 + r^2/5040 + r^3/40320 (the rest < 2^-61 Q5). Each Horner step adds a term
    ~2^-12 of the constant before it, so the precision it needs drops by ~12 bits per level:
    Q5 and the product r Q5 in float64 (Q4 needs ~2^-65 relative, r Q5 contributes 2^-15 of it),
    r Q4 and r Q3 as exact TwoProducts of the hi parts plus float64 cross terms, and r^2 Q as a
    double-double product (``theory/lem-dd-expm1.md``: relative error < 2^-103)."""
    c3h, c3l = _INV_FACT[3]
    c4h, c4l = _INV_FACT[4]
    q5 = 1 / 120 + rh * (1 / 720 + rh * (1 / 5040 + rh * (1 / 40320)))
    p = rh * q5
    q4h = c4h + p  # |p| < 2^-12 c4: FastTwoSum
    q4l = (p - (q4h - c4h)) + (c4l + rl * q5)
    r1, r2 = _split(rh)
    # Q3 = c3 + r Q4
    p, e = _prod_split(r1, r2, rh, q4h)
    q3h = c3h + p
    q3l = (p - (q3h - c3h)) + (c3l + (e + (rh * q4l + rl * q4h)))
    # Q = 1/2 + r Q3
    p, e = _prod_split(r1, r2, rh, q3h)
    qh = 0.5 + p
    ql = (p - (qh - 0.5)) + (e + (rh * q3l + rl * q3h))
    # r^2 = s + t (double-double)
    s, t = _prod_split(r1, r2, rh, rh)
    t = t + 2.0 * (rh * rl)
    # r^2 Q
    p, e = _prod_split(*_split(s), s, qh)
    e = e + (s * ql + t * qh)
    # r + r^2 Q, |r^2 Q| < 2^-12 |r|: FastTwoSum, then renormalise
    hi = rh + p
    lo = (p - (hi - rh)) + (rl + e)
    return fast_two_sum(hi, lo)


def _prod_split(a1, a2, a, b) -> Pair:
    """p + e = a * b exactly, given a's Veltkamp split (a1, a2) (Dekker's product)."""
    p = a * b
    b1, b2 = _split(b)
    return p, ((a1 * b1 - p) + a1 * b2 + a2 * b1) + a2 * b2


def _clip_argument(ah, al, low: float, high: float) -> Pair:
    """Clip to [low, high] (lo dropped where clipped); NaN becomes 0 here and is restored by
    the caller from the original argument."""
    clipped = onp.clip(ah, low, high)
    if onp.isnan(clipped).any():
        clipped = onp.where(onp.isnan(clipped), 0.0, clipped)
    return clipped, onp.where(clipped == ah, al, 0.0)


def _special_exp_values(ah, hi, lo) -> Pair:
    """NaN in, NaN out; +inf in, +inf out; an overflowed result keeps lo = 0."""
    if onp.isfinite(ah).all() and onp.isfinite(hi).all():
        return hi, lo
    with onp.errstate(invalid="ignore"):
        hi = onp.where(onp.isnan(ah), ah, hi)
        hi = onp.where(ah == onp.inf, onp.inf, hi)
        lo = onp.where(onp.isfinite(hi), lo, 0.0)
    return hi, lo


def exp(ah, al) -> Pair:
    """exp(a) by table reduction (N = 256) and a short polynomial; overflow gives inf."""
    with onp.errstate(over="ignore", invalid="ignore"):
        ch, cl = _clip_argument(ah, al, -746.0, 710.0)
        k, index, rh, rl = _reduce_exp(ch, cl)
        tables = _exp_tables()
        ph, pl = tables[0].take(index, mode="clip"), tables[1].take(index, mode="clip")
        eh, el = _expm1_reduced(rh, rl)
        th, tl = mul(ph, pl, eh, el)
        th, tl = add_ordered(ph, pl, th, tl)  # 2^(j/N) (1 + expm1(r)); |expm1(r)| < 1.4e-3
        hi, lo = _scale(th, tl, k)
    return _special_exp_values(ah, hi, lo)


def expm1(ah, al) -> Pair:
    """exp(a) - 1, accurate relative to the result near 0 (no cancellation for |a| < ln2/2)."""
    with onp.errstate(over="ignore", invalid="ignore"):
        hi, lo = _expm1_in_range(*_clip_argument(ah, al, -746.0, 710.0))
    return _special_exp_values(ah, hi, lo)


def _expm1_in_range(ch, cl) -> Pair:
    """expm1 for finite arguments in [-746, 710] (no clipping, no special values)."""
    k, index, rh, rl = _reduce_exp(ch, cl)
    ph, pl, mh, ml = (table.take(index, mode="clip") for table in _exp_tables()[:4])
    eh, el = _expm1_reduced(rh, rl)
    th, tl = two_prod(ph, eh)
    th, tl = fast_two_sum(th, tl + (ph * el + pl * eh))  # 2^(j/N) expm1(r), finite
    # (2^(j/N) - 1) + 2^(j/N) expm1(r): |2^(j/N) - 1| >= 3.38e-4 |j| >= 2 |2^(j/N) expm1(r)|
    small_h, small_l = add_ordered(mh, ml, th, tl)
    big_h, big_l = add_ordered(ph, pl, th, tl)
    big_h, big_l = add_double(*_scale(big_h, big_l, k), -1.0)
    near = k == 0
    return onp.where(near, small_h, big_h), onp.where(near, small_l, big_l)


def log1p(ah, al) -> Pair:
    """log(1 + a) by one Newton step on expm1 from the float64 value (quadratic: 53 -> 106 bits)."""
    with onp.errstate(divide="ignore", invalid="ignore", over="ignore"):
        y = onp.log1p(ah + al)
        finite = onp.isfinite(y)
        y_safe = onp.where(finite, y, 0.0)
        eh, el = expm1(y_safe, onp.zeros_like(y_safe))
        nh, _ = add(eh, el, -ah, -al)
        correction = nh / (1.0 + eh)
        hi, lo = two_sum(y_safe, -correction)
        hi = onp.where(finite, hi, y)
        lo = onp.where(finite, lo, 0.0)
    return hi, lo


def log(ah, al) -> Pair:
    """log(a): log1p(a - 1) near 1, else one Newton step on exp from the float64 logarithm."""
    with onp.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mh, ml = add_double(ah, al, -1.0)
        near = onp.abs(mh) < 0.5
        near_h, near_l = log1p(onp.where(near, mh, 0.0), onp.where(near, ml, 0.0))
        y = onp.log(ah)
        finite = onp.isfinite(y)
        y_safe = onp.where(finite & ~near, y, 0.0)
        eh, el = exp(y_safe, onp.zeros_like(y_safe))
        nh, _ = add(eh, el, -ah, -al)
        far_h, far_l = two_sum(y_safe, -nh / eh)
        hi = onp.where(near, near_h, onp.where(finite, far_h, y))
        lo = onp.where(near, near_l, onp.where(finite, far_l, 0.0))
    return hi, lo


def tanh(ah, al) -> Pair:
    """tanh(a) = sign(a) e / (e + 2) with e = expm1(2|a|), |a| clipped at 350 (tanh = +-1 to
    within 1e-304 beyond)."""
    sign = onp.where(ah < 0, -1.0, 1.0)
    bh, bl = _clip_argument(2 * sign * ah, 2 * sign * al, 0.0, 700.0)
    with onp.errstate(over="ignore", invalid="ignore"):
        eh, el = _expm1_in_range(bh, bl)
    dh, dl = add_double(eh, el, 2.0)
    hi, lo = div(eh, el, dh, dl)
    if onp.isnan(ah).any():
        hi = onp.where(onp.isnan(ah), ah, hi)
    return sign * hi, sign * lo


def atan(ah, al) -> Pair:
    """arctan(a): reflect to |a| <= 1, halve the angle five times with
    atan(x) = 2 atan(x / (1 + sqrt(1 + x^2))), then an odd Taylor polynomial (|x| <= 0.025)."""
    with onp.errstate(divide="ignore", invalid="ignore"):
        sign = onp.where(ah < 0, -1.0, 1.0)
        xh, xl = sign * ah, sign * al
        big = xh > 1.0
        ih, il = div(onp.ones_like(xh), onp.zeros_like(xh), xh, xl)
        xh, xl = onp.where(big, ih, xh), onp.where(big, il, xl)
        halvings = 5
        for _ in range(halvings):
            sh, sl = mul(xh, xl, xh, xl)
            sh, sl = sqrt(*add_double(sh, sl, 1.0))
            xh, xl = div(xh, xl, *add_double(sh, sl, 1.0))
        x2h, x2l = mul(xh, xl, xh, xl)
        terms = 11
        ph, pl = _atan_coefficient(terms)
        ph, pl = onp.full_like(xh, ph), onp.full_like(xh, pl)
        for n in reversed(range(terms)):
            ph, pl = mul(ph, pl, x2h, x2l)
            ph, pl = add(*_atan_coefficient(n), ph, pl)
        ph, pl = mul(ph, pl, xh, xl)
        ph, pl = ldexp(ph, pl, halvings)
        rh, rl = add(*HALF_PI, -ph, -pl)
        hi = onp.where(big, rh, ph)
        lo = onp.where(big, rl, pl)
        hi = onp.where(onp.isinf(ah), HALF_PI[0], hi)
        lo = onp.where(onp.isinf(ah), HALF_PI[1], lo)
    return sign * hi, sign * lo


@functools.cache
def _atan_coefficient(n: int) -> tuple[float, float]:
    with mpmath.workprec(240):
        return dd_constant(mpmath.mpf(-1) ** n / (2 * n + 1))


# ---- functions built on exp / log1p ----------------------------------------------------------


def _negative_abs(ah, al) -> Pair:
    sign = onp.where(ah < 0, 1.0, -1.0)
    return sign * ah, sign * al


def sigmoid(ah, al) -> Pair:
    """1 / (1 + e^-a) for a >= 0, e^a / (1 + e^a) otherwise (no overflow, no cancellation)."""
    eh, el = exp(*_negative_abs(ah, al))
    ph, pl = div(onp.ones_like(eh), onp.zeros_like(eh), *add_double(eh, el, 1.0))
    qh, ql = mul(eh, el, ph, pl)
    positive = ah >= 0
    return onp.where(positive, ph, qh), onp.where(positive, pl, ql)


def _log1p_exp_negative_abs(ah, al) -> Pair:
    return log1p(*exp(*_negative_abs(ah, al)))


def log_sigmoid(ah, al) -> Pair:
    """min(a, 0) - log1p(exp(-|a|))."""
    negative = ah < 0
    th, tl = _log1p_exp_negative_abs(ah, al)
    return add(onp.where(negative, ah, 0.0), onp.where(negative, al, 0.0), -th, -tl)


def softplus(ah, al) -> Pair:
    """max(a, 0) + log1p(exp(-|a|))."""
    positive = ah > 0
    th, tl = _log1p_exp_negative_abs(ah, al)
    return add(onp.where(positive, ah, 0.0), onp.where(positive, al, 0.0), th, tl)


def relu(ah, al) -> Pair:
    positive = ah > 0
    return onp.where(positive, ah, 0.0), onp.where(positive, al, 0.0)


def elu(ah, al) -> Pair:
    """a for a > 0, exp(a) - 1 otherwise."""
    positive = ah > 0
    mh, ml = expm1(onp.where(positive, 0.0, ah), onp.where(positive, 0.0, al))
    return onp.where(positive, ah, mh), onp.where(positive, al, ml)


# ---- reductions -------------------------------------------------------------------------------


def _sum_in_order(x: onp.ndarray) -> onp.ndarray:
    """x[0] + x[1] + ... in this order, whatever the memory layout (``onp.sum`` switches to
    pairwise summation along a contiguous axis), so the compiled kernels can match it bit for
    bit; an empty x sums to zeros."""
    if x.shape[0] == 0:
        return onp.zeros(x.shape[1:])
    total = onp.array(x[0], dtype=onp.float64)
    for row in x[1:]:
        total += row
    return total


def sum_along(ah, al, axis: int) -> Pair:
    """Sum along ``axis`` by a pairwise tree of TwoSums; all rounding errors (and the lo
    parts) are collected and added in float64 at the end (error ~ (log2 n) u^2 sum |a|)."""
    ah = onp.ascontiguousarray(onp.moveaxis(ah, axis, 0))  # halves: contiguous blocks
    al = onp.moveaxis(al, axis, 0)
    errors = _sum_in_order(al)
    while ah.shape[0] > 1:
        half = ah.shape[0] // 2
        s, e = two_sum(ah[:half], ah[half:2 * half])
        errors = errors + _sum_in_order(e)
        ah = onp.concatenate([s, ah[2 * half:]]) if ah.shape[0] % 2 else s
    if ah.shape[0] == 0:
        return onp.zeros(ah.shape[1:]), onp.zeros(ah.shape[1:])
    s = ah[0]
    hi, lo = two_sum(s, errors)
    return _finish(hi, lo, lambda: s)


#: products with at least this many columns and this long a sum go through BLAS by exact
#: slicing (dd_gemm); smaller ones are cheaper elementwise
SLICED_MIN_COLUMNS = 4
SLICED_MIN_DEPTH = 8


def dot(ah, al, bh, bl) -> Pair:
    """NumPy ``dot`` semantics for a (..., k) and b (k,) or (k, m): exact products by TwoProd,
    cross terms a_hi b_lo + a_lo b_hi in float64, then a TwoSum tree along k. Wide products
    (k >= 8, m >= 4, operands in range) go through float64 BLAS by exact slicing instead
    (:mod:`lipflow.precision.dd_gemm`, error ~2^-106 (|a||b|)_rc)."""
    vector = bh.ndim == 1
    if vector:
        bh, bl = bh[:, None], bl[:, None]
    if bh.shape[1] >= SLICED_MIN_COLUMNS and bh.shape[0] >= SLICED_MIN_DEPTH:
        from lipflow.precision import dd_gemm

        lead, k = ah.shape[:-1], ah.shape[-1]
        rows_h, rows_l = ah.reshape(-1, k), al.reshape(-1, k)
        cutoff = dd_gemm.plan(rows_h, bh)
        if cutoff is not None:  # exact slice products in BLAS instead of an (n, k, m) array
            hi, lo = dd_gemm.sliced_dot(rows_h, rows_l, bh, bl, cutoff)
            return hi.reshape(*lead, -1), lo.reshape(*lead, -1)
    # products laid out as (k, ..., m): the TwoSum tree then halves contiguous blocks
    ah_e = onp.moveaxis(ah, -1, 0)[..., None]
    al_e = onp.moveaxis(al, -1, 0)[..., None]
    b_shape = (bh.shape[0],) + (1,) * (ah.ndim - 1) + (bh.shape[1],)
    bh, bl = bh.reshape(b_shape), bl.reshape(b_shape)
    p = ah_e * bh
    a1, a2 = _split(ah_e)
    b1, b2 = _split(bh)
    e = ((a1 * b1 - p) + a1 * b2 + a2 * b1) + a2 * b2
    e = e + (ah_e * bl + al_e * bh)
    hi, lo = sum_along(p, e, axis=0)
    return (hi[..., 0], lo[..., 0]) if vector else (hi, lo)
