"""Triple-double kernels: values x0 + x1 + x2 of three float64 (~159-bit significands).

Every kernel is written once, as straight-line float64 arithmetic on its arguments plus the
selectors :func:`where`, :func:`take`, :func:`to_int`, :func:`rint`, :func:`floor`,
:func:`isfinite`, :func:`isnan` and :func:`pow2`. Called on NumPy arrays it is the NumPy kernel
(a few hundred vectorised passes); :mod:`lipflow.precision.td_numba` compiles the *same
functions* on scalars with numba (those names rebound to scalar versions, :func:`two_prod` by
FMA where Dekker's product is exact, hence the same bits), so the two backends agree bit for
bit (``tests/test_triple_double.py``).

Arithmetic (renormalised 3-term expansions, error-free TwoSum/TwoProd; u = 2^-53):
- ``add``: exact TwoSums of the leading parts, the third-order terms summed in float64:
  error <= ~4 u^3 (|a| + |b|);
- ``mul``: three exact TwoProds, the u^2 terms in float64: relative error <= ~10 u^3;
- ``div``: three quotient digits by exact residuals: relative error <= ~16 u^3;
- ``exp``/``expm1``/``tanh``/``sigmoid``: table reduction (2^(j/2048) as triple-doubles,
  ln2/2048 split Cody-Waite style) and a polynomial evaluated in float64, double-double and
  triple-double by decreasing term size; relative error ~2^-130 and below (checked against
  mpmath at 240 bits in the tests; an estimate, not a proof).

References: Y. Hida, X. S. Li, D. H. Bailey, "Library for double-double and quad-double
arithmetic" (2007); N. Fabiano, J.-M. Muller, J. Picot, "Algorithms for triple-word
arithmetic", IEEE TC 68 (2019).

Range: finite values with magnitudes in [2^-900, 2^900] keep all three parts normal; results
that overflow fall back to the float64 result (x1 = x2 = 0), inf stays inf.
"""

from __future__ import annotations

import mpmath
import numpy as onp

from lipflow.precision import dd_kernels as _dd

__all__ = [
    "add",
    "div",
    "dot",
    "exp",
    "expm1",
    "mul",
    "renorm",
    "sigmoid",
    "tanh",
    "td_constant",
]

_SPLITTER = 134217729.0
_N = 2048
_INV_STEP = _dd._INV_STEP
#: |a| beyond which tanh(a) is +-1 to within 2^-180 (and the kernels stay far from overflow)
_TANH_CLIP = 64.0


# ---- selectors (rebound to scalar versions by td_numba) ------------------------------------


def where(condition, a, b):
    return onp.where(condition, a, b)


def take(table, index):
    return table.take(index)


def to_int(x):
    return x.astype(onp.int64)


def rint(x):
    return onp.rint(x)


def floor(x):
    return onp.floor(x)


def isfinite(x):
    return onp.isfinite(x)


def isnan(x):
    return onp.isnan(x)


def pow2(k):
    return onp.ldexp(1.0, k)


# ---- error-free transformations ----------------------------------------------------------------


def two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def split(a):
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def two_prod(a, b):
    p = a * b
    ah, al = split(a)
    bh, bl = split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def renorm(x0, x1, x2):
    """The same value x0 + x1 + x2 (exactly) with the parts in decreasing order of size."""
    s, t2 = two_sum(x1, x2)
    r0, t1 = two_sum(x0, s)
    r1, r2 = two_sum(t1, t2)
    return r0, r1, r2


# ---- arithmetic -------------------------------------------------------------------------------


def add(a0, a1, a2, b0, b1, b2):
    """a + b: error <= ~4 u^3 (|a| + |b|)."""
    s0, e0 = two_sum(a0, b0)
    s1, e1 = two_sum(a1, b1)
    t1, f1 = two_sum(s1, e0)
    t2 = (f1 + e1) + (a2 + b2)
    r0, r1, r2 = renorm(s0, t1, t2)
    return renorm(r0, r1, r2)  # a second pass after cancellation in s0


def mul(a0, a1, a2, b0, b1, b2):
    """a * b: relative error <= ~10 u^3 (the dropped a1 b2 + a2 b1 + a2 b2 and roundings)."""
    p0, e0 = two_prod(a0, b0)
    p1, e1 = two_prod(a0, b1)
    p2, e2 = two_prod(a1, b0)
    s1, f1 = two_sum(p1, p2)
    s1, f2 = two_sum(s1, e0)
    t2 = ((f1 + f2) + (e1 + e2)) + ((a0 * b2 + a1 * b1) + a2 * b0)
    return renorm(p0, s1, t2)


def mul_double(a0, a1, a2, b):
    """a * b for a float64 b: ``mul`` with b1 = b2 = 0 and the terms that are exactly zero
    omitted (the same value, so ``mul``'s bound holds)."""
    p0, e0 = two_prod(a0, b)
    p1, e1 = two_prod(a1, b)
    s1, f1 = two_sum(p1, e0)
    t2 = (f1 + e1) + a2 * b
    return renorm(p0, s1, t2)


def div(a0, a1, a2, b0, b1, b2):
    """a / b: three quotient digits, each from the residual a - b (q0 + ...) in triple-double."""
    q0 = a0 / b0
    m0, m1, m2 = mul_double(b0, b1, b2, q0)
    r0, r1, r2 = add(a0, a1, a2, -m0, -m1, -m2)
    q1 = r0 / b0
    m0, m1, m2 = mul_double(b0, b1, b2, q1)
    r0, r1, r2 = add(r0, r1, r2, -m0, -m1, -m2)
    q2 = r0 / b0
    return renorm(q0, q1, q2)


def finish(x0, x1, x2, naive):
    """A non-finite result keeps the float64 result (inf stays inf), with zero tails."""
    ok = isfinite(x0)
    return where(ok, x0, naive), where(ok, x1, 0.0), where(ok, x2, 0.0)


def add_checked(a0, a1, a2, b0, b1, b2):
    x0, x1, x2 = add(a0, a1, a2, b0, b1, b2)
    return finish(x0, x1, x2, a0 + b0)


def mul_checked(a0, a1, a2, b0, b1, b2):
    x0, x1, x2 = mul(a0, a1, a2, b0, b1, b2)
    return finish(x0, x1, x2, a0 * b0)


def div_checked(a0, a1, a2, b0, b1, b2):
    x0, x1, x2 = div(a0, a1, a2, b0, b1, b2)
    return finish(x0, x1, x2, a0 / b0)


def _dd_mul(ah, al, bh, bl):
    p, e = two_prod(ah, bh)
    return _fast_two_sum(p, e + (ah * bl + al * bh))


def _dd_add(ah, al, bh, bl):
    s, e = two_sum(ah, bh)
    return _fast_two_sum(s, e + (al + bl))


def _fast_two_sum(a, b):
    s = a + b
    return s, b - (s - a)


# ---- constants and tables ---------------------------------------------------------------------


def td_constant(value) -> tuple[float, float, float]:
    """The triple-double nearest a high-precision value (mpf, float or decimal string)."""
    with mpmath.workprec(320):
        exact = mpmath.mpf(value)
        x0 = float(exact)
        x1 = float(exact - x0)
        x2 = float(exact - x0 - x1)
    return x0, x1, x2


def _tables() -> tuple[onp.ndarray, ...]:
    """2^(j/N) and 2^(j/N) - 1 (j in [-N/2, N/2)) as triple-doubles: six float64 arrays."""
    with mpmath.workprec(320):
        powers = [mpmath.power(2, mpmath.mpf(i) / _N) for i in range(-_N // 2, _N // 2)]
        t = [td_constant(p) for p in powers]
        m = [td_constant(p - 1) for p in powers]
    return tuple(onp.array([row[i] for row in rows]) for rows in (t, m) for i in range(3))


TB0, TB1, TB2, TB3, TB4, TB5 = _tables()


with mpmath.workprec(320):
    _STEP = mpmath.log(2) / _N
    _L0 = _dd._round_bits(_STEP, 31)  # n * _L0 is exact for |n| < 2^22
    _L1, _L2, _L3 = td_constant(_STEP - _L0)
    _C3 = _dd.dd_constant(mpmath.mpf(1) / 6)
    _C4 = _dd.dd_constant(mpmath.mpf(1) / 24)
    _C5 = _dd.dd_constant(mpmath.mpf(1) / 120)
    _C6 = _dd.dd_constant(mpmath.mpf(1) / 720)
    (_C3H, _C3L), (_C4H, _C4L), (_C5H, _C5L), (_C6H, _C6L) = _C3, _C4, _C5, _C6
    _C7, _C8, _C9 = (float(mpmath.mpf(1) / mpmath.factorial(n)) for n in (7, 8, 9))


# ---- exponential family -----------------------------------------------------------------------


def reduce_exp(a0, a1, a2):
    """(k, j, r) with a = k ln2 + (j - N/2) ln2/N + r, |r| <= ln2/(2N) (1 + 2^-30)."""
    n = rint(a0 * _INV_STEP)
    k = floor((n + _N // 2) / _N)
    index = to_int(n - k * _N) + _N // 2
    x0 = a0 - n * _L0  # exact (as in dd_kernels)
    p1, e1 = two_prod(n, _L1)
    p2, e2 = two_prod(n, _L2)
    s1, t1 = two_sum(e1, p2)
    m0, m1, m2 = renorm(p1, s1, (t1 + e2) + n * _L3)  # n (L1 + L2 + L3) to ~u^3
    r0, r1, r2 = add(x0, a1, a2, -m0, -m1, -m2)
    return to_int(k), index, r0, r1, r2


def expm1_reduced(r0, r1, r2):
    """exp(r) - 1 for |r| <= 1.7e-4: r + r^2 Q, Q = 1/2 + r Q3, Q3 = 1/6 + r Q4, ...; Q7
    in float64, Q6 ... Q3 in double-double, Q and r^2 Q in triple-double (each level needs ~13
    bits less than the one before)."""
    q7 = _C7 + r0 * (_C8 + r0 * _C9)
    ph, pl = _dd_mul(r0, r1, q7, 0.0)
    qh, ql = _dd_add(_C6H, _C6L, ph, pl)
    ph, pl = _dd_mul(r0, r1, qh, ql)
    qh, ql = _dd_add(_C5H, _C5L, ph, pl)
    ph, pl = _dd_mul(r0, r1, qh, ql)
    qh, ql = _dd_add(_C4H, _C4L, ph, pl)
    ph, pl = _dd_mul(r0, r1, qh, ql)
    qh, ql = _dd_add(_C3H, _C3L, ph, pl)
    q0, q1, q2 = mul(r0, r1, r2, qh, ql, 0.0)
    q0, q1, q2 = add(0.5, 0.0, 0.0, q0, q1, q2)
    s0, s1, s2 = mul(r0, r1, r2, r0, r1, r2)
    p0, p1, p2 = mul(s0, s1, s2, q0, q1, q2)
    return add(r0, r1, r2, p0, p1, p2)


def _scale(x0, x1, x2, k):
    """x 2^k in two exact steps (k up to +-1100)."""
    half = k // 2
    f1, f2 = pow2(half), pow2(k - half)
    return (x0 * f1) * f2, (x1 * f1) * f2, (x2 * f1) * f2


def _clip(a0, a1, a2, low, high):
    """Clip to [low, high] (tails dropped where clipped); NaN becomes 0 here."""
    c = where(a0 < low, low, where(a0 > high, high, a0))
    c = where(isnan(c), 0.0, c)
    keep = c == a0
    return c, where(keep, a1, 0.0), where(keep, a2, 0.0)


def _exp_in_range(a0, a1, a2):
    k, index, r0, r1, r2 = reduce_exp(a0, a1, a2)
    t0, t1, t2 = take(TB0, index), take(TB1, index), take(TB2, index)
    e0, e1, e2 = expm1_reduced(r0, r1, r2)
    p0, p1, p2 = mul(t0, t1, t2, e0, e1, e2)
    v0, v1, v2 = add(t0, t1, t2, p0, p1, p2)
    return _scale(v0, v1, v2, k)


def _expm1_in_range(a0, a1, a2):
    k, index, r0, r1, r2 = reduce_exp(a0, a1, a2)
    t0, t1, t2 = take(TB0, index), take(TB1, index), take(TB2, index)
    m0, m1, m2 = take(TB3, index), take(TB4, index), take(TB5, index)
    e0, e1, e2 = expm1_reduced(r0, r1, r2)
    p0, p1, p2 = mul(t0, t1, t2, e0, e1, e2)
    # k = 0: (2^(j/N) - 1) + 2^(j/N) expm1(r), no cancellation (|2^(j/N) - 1| >= 2 |p|);
    # else 2^k (2^(j/N) + 2^(j/N) expm1(r)) - 1 (adding -0 and scaling by 2^0 are exact)
    near = k == 0
    b0, b1, b2 = add(where(near, m0, t0), where(near, m1, t1), where(near, m2, t2), p0, p1, p2)
    b0, b1, b2 = _scale(b0, b1, b2, where(near, 0, k))
    return add(b0, b1, b2, where(near, -0.0, -1.0), 0.0, 0.0)


def _special(a0, x0, x1, x2):
    """NaN in, NaN out; +inf in, +inf out; an overflowed result keeps zero tails."""
    x0 = where(isnan(a0), a0, where(a0 == onp.inf, onp.inf, x0))
    ok = isfinite(x0)
    return x0, where(ok, x1, 0.0), where(ok, x2, 0.0)


def exp(a0, a1, a2):
    """exp(a); overflow gives inf."""
    c0, c1, c2 = _clip(a0, a1, a2, -746.0, 710.0)
    x0, x1, x2 = _exp_in_range(c0, c1, c2)
    return _special(a0, x0, x1, x2)


def expm1(a0, a1, a2):
    """exp(a) - 1, accurate relative to the result near 0."""
    c0, c1, c2 = _clip(a0, a1, a2, -746.0, 710.0)
    x0, x1, x2 = _expm1_in_range(c0, c1, c2)
    return _special(a0, x0, x1, x2)


def tanh(a0, a1, a2):
    """tanh(a) = sign(a) e / (e + 2), e = expm1(2 |a|), |a| clipped at 64."""
    sign = where(a0 < 0, -1.0, 1.0)
    b0, b1, b2 = _clip(2.0 * sign * a0, 2.0 * sign * a1, 2.0 * sign * a2, 0.0, 2 * _TANH_CLIP)
    e0, e1, e2 = _expm1_in_range(b0, b1, b2)
    d0, d1, d2 = add(e0, e1, e2, 2.0, 0.0, 0.0)
    y0, y1, y2 = div(e0, e1, e2, d0, d1, d2)
    y0 = where(isnan(a0), a0, y0)
    return sign * y0, sign * y1, sign * y2


def sigmoid(a0, a1, a2):
    """1 / (1 + e^-a) for a >= 0, e^a / (1 + e^a) otherwise, e = exp(-|a|)."""
    sign = where(a0 < 0, 1.0, -1.0)
    e0, e1, e2 = exp(sign * a0, sign * a1, sign * a2)
    d0, d1, d2 = add(e0, e1, e2, 1.0, 0.0, 0.0)
    p0, p1, p2 = div(1.0, 0.0, 0.0, d0, d1, d2)
    q0, q1, q2 = mul(e0, e1, e2, p0, p1, p2)
    positive = a0 >= 0
    return where(positive, p0, q0), where(positive, p1, q1), where(positive, p2, q2)


# ---- products ----------------------------------------------------------------------------------


def dot(a0, a1, a2, b0, b1, b2):
    """a (n, k) @ b (k, m): exact-ish products summed left to right in triple-double
    (error <= ~(k + 10) u^3 sum |a||b|)."""
    n, depth = a0.shape
    m = b0.shape[1]
    if depth == 0:
        zero = onp.zeros((n, m))
        return zero, zero.copy(), zero.copy()
    acc = mul(a0[:, :1], a1[:, :1], a2[:, :1], b0[:1], b1[:1], b2[:1])
    for j in range(1, depth):
        term = mul(a0[:, j:j + 1], a1[:, j:j + 1], a2[:, j:j + 1], b0[j:j + 1], b1[j:j + 1], b2[j:j + 1])
        acc = add(*acc, *term)
    return finish(*acc, acc[0])
