"""Compiled (numba) double-double kernels: one loop per operation, one element at a time.

Each function mirrors the NumPy kernel of the same name in :mod:`lipflow.precision.dd_kernels`
operation for operation (same expressions, same evaluation order, no fast-math, no FMA
contraction), so it returns bit-identical results while making no temporaries: a dd ``tanh`` is
one pass instead of ~150 NumPy passes. The products mirror ``dd_kernels.dot``'s elementwise
path, including its TwoSum tree and the order in which its error terms are summed.

Importing this module imports numba; :mod:`lipflow.precision.dd_array` imports it only when
the numba backend is chosen (:mod:`lipflow.precision.accel`), and the kernels compile on first
call (``cache=True`` keeps the machine code on disk; a first compilation takes ~10 s per
kernel). The scalar helpers are inlined into each loop (``inline="always"``) and written without
branches (both sides computed, one selected: the selected value is the NumPy kernel's), so LLVM
vectorises the loops across elements. numba's cache follows this file only: the tables and
constants it takes from ``dd_kernels`` are frozen into the cached code (the bit-identity tests
catch a drift).
"""

from __future__ import annotations

import math

import numba
import numpy as onp
from numba import types
from numba.extending import intrinsic

from lipflow.precision import dd_kernels as k

__all__ = ["binary", "dot", "unary"]

_jit = numba.njit(cache=True, error_model="numpy", nogil=True)
_inline = numba.njit(cache=True, error_model="numpy", nogil=True, inline="always")

_SPLITTER = 134217729.0
_N = 2048
_HALF_N = 1024
_INV_STEP = k._INV_STEP
_T = k._exp_tables()
_LEADING, _TRAIL_HI, _TRAIL_LO = _T[4], _T[5], _T[6]
# module-level arrays are compile-time constants for numba (no reference counting per call)
_T0, _T1, _T2, _T3 = (onp.ascontiguousarray(t) for t in _T[:4])
#: 2^k for |k| <= 600, so scaling is two multiplications (no call to ldexp, no branch)
_POW2_BIAS = 600
_POW2 = onp.ldexp(1.0, onp.arange(-_POW2_BIAS, _POW2_BIAS + 1))
_C3H, _C3L = k._INV_FACT[3]
_C4H, _C4L = k._INV_FACT[4]


# ---- error-free transformations (as in dd_kernels) ---------------------------------------------


@_inline
def two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@_inline
def fast_two_sum(a, b):
    s = a + b
    return s, b - (s - a)


@_inline
def split(a):
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c rounded once (LLVM's fma: one instruction where the CPU has FMA)."""
    signature = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, sig, args):
        return builder.fma(args[0], args[1], args[2])

    return signature, codegen


#: inside this range Dekker's product is exact (no overflow in the splitting, no underflow in
#: the partial products), so its error term is the representable a b - p that one FMA returns
_SAFE_HI = 2.0**900
_SAFE_LO = 2.0**-900


@_inline
def _fma_exact(a, b, p):
    return abs(a) < _SAFE_HI and abs(b) < _SAFE_HI and _SAFE_LO < abs(p) < _SAFE_HI


@_inline
def two_prod(a, b):
    """Dekker's TwoProd; by FMA where Dekker's is exact (the same bits, fewer operations)."""
    p = a * b
    ah, al = split(a)
    bh, bl = split(b)
    dekker = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, (_fma(a, b, -p) if _fma_exact(a, b, p) else dekker)


@_inline
def prod_split(a1, a2, a, b):
    p = a * b
    b1, b2 = split(b)
    dekker = ((a1 * b1 - p) + a1 * b2 + a2 * b1) + a2 * b2
    return p, (_fma(a, b, -p) if _fma_exact(a, b, p) else dekker)


@_inline
def finish(hi, lo, naive):
    ok = math.isfinite(hi)
    return (hi if ok else naive), (lo if ok else 0.0)


# ---- arithmetic -------------------------------------------------------------------------------


@_inline
def add(ah, al, bh, bl):
    s, e = two_sum(ah, bh)
    t, f = two_sum(al, bl)
    s, e = fast_two_sum(s, e + t)
    hi, lo = fast_two_sum(s, e + f)
    return finish(hi, lo, ah + bh)


@_inline
def add_ordered(ah, al, bh, bl):
    s, e = fast_two_sum(ah, bh)
    return fast_two_sum(s, e + (al + bl))


@_inline
def add_double(ah, al, b):
    s, e = two_sum(ah, b)
    hi, lo = fast_two_sum(s, e + al)
    return finish(hi, lo, ah + b)


@_inline
def mul(ah, al, bh, bl):
    p, e = two_prod(ah, bh)
    hi, lo = fast_two_sum(p, e + (ah * bl + al * bh))
    return finish(hi, lo, ah * bh)


@_inline
def mul_double(ah, al, b):
    p, e = two_prod(ah, b)
    hi, lo = fast_two_sum(p, e + al * b)
    return finish(hi, lo, ah * b)


@_inline
def div(ah, al, bh, bl):
    q = ah / bh
    p, e = two_prod(q, bh)
    remainder = ((ah - p) - e) + al - q * bl
    hi, lo = fast_two_sum(q, remainder / bh)
    return finish(hi, lo, q)


# ---- exponential family -----------------------------------------------------------------------


@_inline
def clip_argument(ah, al, low, high):
    c = low if ah < low else ah
    c = high if c > high else c
    c = 0.0 if c != c else c
    return c, (al if c == ah else 0.0)


@_inline
def reduce_exp(ah, al):
    n = onp.rint(ah * _INV_STEP)
    kk = math.floor((n + _HALF_N) / _N)
    index = int(n - kk * _N) + _HALF_N
    reduced = ah - n * _LEADING
    t1, t2 = split(_TRAIL_HI)
    p = n * _TRAIL_HI
    e = (n * t1 - p) + n * t2
    rh, rl = two_sum(reduced, -p)
    rh, carry = two_sum(rh, al)
    rh, rl = fast_two_sum(rh, (rl + carry) - (e + n * _TRAIL_LO))
    return int(kk), index, rh, rl


@_inline
def scale(hi, lo, kk):
    """(hi, lo) 2^kk as two exact multiplications by powers of two: the bits of
    ``dd_kernels._scale`` (one rounding, in the second step, where the result is subnormal)."""
    half = kk >> 1
    f1, f2 = _POW2[half + _POW2_BIAS], _POW2[kk - half + _POW2_BIAS]
    return (hi * f1) * f2, (lo * f1) * f2


@_inline
def expm1_reduced(rh, rl):
    q5 = 1 / 120 + rh * (1 / 720 + rh * (1 / 5040 + rh * (1 / 40320)))
    p = rh * q5
    q4h = _C4H + p
    q4l = (p - (q4h - _C4H)) + (_C4L + rl * q5)
    r1, r2 = split(rh)
    p, e = prod_split(r1, r2, rh, q4h)
    q3h = _C3H + p
    q3l = (p - (q3h - _C3H)) + (_C3L + (e + (rh * q4l + rl * q4h)))
    p, e = prod_split(r1, r2, rh, q3h)
    qh = 0.5 + p
    ql = (p - (qh - 0.5)) + (e + (rh * q3l + rl * q3h))
    s, t = prod_split(r1, r2, rh, rh)
    t = t + 2.0 * (rh * rl)
    s1, s2 = split(s)
    p, e = prod_split(s1, s2, s, qh)
    e = e + (s * ql + t * qh)
    hi = rh + p
    lo = (p - (hi - rh)) + (rl + e)
    return fast_two_sum(hi, lo)


@_inline
def special_exp_values(ah, hi, lo):
    hi = ah if ah != ah else hi
    hi = math.inf if ah == math.inf else hi
    return hi, (lo if math.isfinite(hi) else 0.0)


@_inline
def exp(ah, al):
    ch, cl = clip_argument(ah, al, -746.0, 710.0)
    kk, index, rh, rl = reduce_exp(ch, cl)
    ph, pl = _T0[index], _T1[index]
    eh, el = expm1_reduced(rh, rl)
    th, tl = mul(ph, pl, eh, el)
    th, tl = add_ordered(ph, pl, th, tl)
    hi, lo = scale(th, tl, kk)
    return special_exp_values(ah, hi, lo)


@_inline
def expm1_in_range(ch, cl):
    kk, index, rh, rl = reduce_exp(ch, cl)
    ph, pl, mh, ml = _T0[index], _T1[index], _T2[index], _T3[index]
    eh, el = expm1_reduced(rh, rl)
    th, tl = two_prod(ph, eh)
    th, tl = fast_two_sum(th, tl + (ph * el + pl * eh))
    small_h, small_l = add_ordered(mh, ml, th, tl)
    big_h, big_l = add_ordered(ph, pl, th, tl)
    big_h, big_l = scale(big_h, big_l, kk)
    big_h, big_l = add_double(big_h, big_l, -1.0)
    near = kk == 0
    return (small_h if near else big_h), (small_l if near else big_l)


@_inline
def expm1(ah, al):
    ch, cl = clip_argument(ah, al, -746.0, 710.0)
    hi, lo = expm1_in_range(ch, cl)
    return special_exp_values(ah, hi, lo)


@_inline
def tanh(ah, al):
    sign = -1.0 if ah < 0 else 1.0
    bh, bl = clip_argument(2 * sign * ah, 2 * sign * al, 0.0, 700.0)
    eh, el = expm1_in_range(bh, bl)
    dh, dl = add_double(eh, el, 2.0)
    hi, lo = div(eh, el, dh, dl)
    hi = ah if ah != ah else hi
    return sign * hi, sign * lo


@_inline
def sigmoid(ah, al):
    sign = 1.0 if ah < 0 else -1.0
    eh, el = exp(sign * ah, sign * al)
    sh, sl = add_double(eh, el, 1.0)
    ph, pl = div(1.0, 0.0, sh, sl)
    qh, ql = mul(eh, el, ph, pl)
    positive = ah >= 0
    return (ph if positive else qh), (pl if positive else ql)


# ---- loops ------------------------------------------------------------------------------------


# one loop per kernel at module level (numba's disk cache is keyed by the function's name, so a
# loop made by a factory would share one cache entry between kernels)
@_jit
def _exp_loop(hi, lo, out_hi, out_lo):
    for i in range(hi.size):
        out_hi[i], out_lo[i] = exp(hi[i], lo[i])


@_jit
def _expm1_loop(hi, lo, out_hi, out_lo):
    for i in range(hi.size):
        out_hi[i], out_lo[i] = expm1(hi[i], lo[i])


@_jit
def _tanh_loop(hi, lo, out_hi, out_lo):
    for i in range(hi.size):
        out_hi[i], out_lo[i] = tanh(hi[i], lo[i])


@_jit
def _sigmoid_loop(hi, lo, out_hi, out_lo):
    for i in range(hi.size):
        out_hi[i], out_lo[i] = sigmoid(hi[i], lo[i])


_UNARY_LOOPS = {"exp": _exp_loop, "expm1": _expm1_loop, "tanh": _tanh_loop, "sigmoid": _sigmoid_loop}


@_jit
def _binary_loop(op, ah, al, bh, bl, out_hi, out_lo):
    for i in range(ah.size):
        if op == 0:
            out_hi[i], out_lo[i] = add(ah[i], al[i], bh[i], bl[i])
        elif op == 1:
            out_hi[i], out_lo[i] = add_double(ah[i], al[i], bh[i])
        elif op == 2:
            out_hi[i], out_lo[i] = mul(ah[i], al[i], bh[i], bl[i])
        elif op == 3:
            out_hi[i], out_lo[i] = mul_double(ah[i], al[i], bh[i])
        else:
            out_hi[i], out_lo[i] = div(ah[i], al[i], bh[i], bl[i])


_BINARY_CODES = {"add": 0, "add_double": 1, "mul": 2, "mul_double": 3, "div": 4}


def unary(name: str, hi: onp.ndarray, lo: onp.ndarray) -> tuple[onp.ndarray, onp.ndarray]:
    """The dd kernel ``name`` (exp, expm1, tanh, sigmoid) of (hi, lo), any shape."""
    shape = onp.shape(hi)
    hi = onp.ascontiguousarray(hi, dtype=onp.float64).ravel()
    lo = onp.ascontiguousarray(lo, dtype=onp.float64).ravel()
    out_hi, out_lo = onp.empty_like(hi), onp.empty_like(lo)
    _UNARY_LOOPS[name](hi, lo, out_hi, out_lo)
    return out_hi.reshape(shape), out_lo.reshape(shape)


def binary(name: str, ah, al, bh, bl=None) -> tuple[onp.ndarray, onp.ndarray]:
    """dd ``add``/``mul``/``div`` of two dd operands, or ``add_double``/``mul_double`` of a dd
    and a float64 operand (``bl`` unused), with NumPy broadcasting."""
    if bl is None:
        bl = onp.zeros(())
    ah, al, bh, bl = (onp.ascontiguousarray(x, dtype=onp.float64)
                      for x in onp.broadcast_arrays(ah, al, bh, bl))
    shape = ah.shape
    out_hi, out_lo = onp.empty(shape), onp.empty(shape)
    _binary_loop(_BINARY_CODES[name], ah.ravel(), al.ravel(), bh.ravel(), bl.ravel(),
                 out_hi.ravel(), out_lo.ravel())
    return out_hi, out_lo


@_jit
def _dot_loop(th, tl, bh, bl, out_hi, out_lo, p, e, s, ee, errors, level):
    """a (n, k) @ b (k, m), a given transposed (k, n): every step of ``dd_kernels.dot`` (the
    products, the in-order sum of their error terms, the TwoSum tree) runs for all n rows in an
    inner loop (independent rows, so LLVM vectorises it), in the order of the NumPy kernel."""
    kk, n = th.shape
    m = bh.shape[1]
    for c in range(m):
        for j in range(kk):
            b, b_lo = bh[j, c], bl[j, c]
            for r in range(n):
                a = th[j, r]
                pj, ej = two_prod(a, b)
                p[j, r] = pj
                e[j, r] = ej + (a * b_lo + tl[j, r] * b)
        for r in range(n):
            errors[r] = e[0, r]
        for j in range(1, kk):
            for r in range(n):
                errors[r] = errors[r] + e[j, r]
        length = kk
        while length > 1:
            half = length // 2
            for i in range(half):
                for r in range(n):
                    s[i, r], ee[i, r] = two_sum(p[i, r], p[half + i, r])
            for r in range(n):
                level[r] = ee[0, r]
            for i in range(1, half):
                for r in range(n):
                    level[r] = level[r] + ee[i, r]
            for r in range(n):
                errors[r] = errors[r] + level[r]
            if length % 2:
                for r in range(n):
                    s[half, r] = p[2 * half, r]
            for i in range(half + length % 2):
                for r in range(n):
                    p[i, r] = s[i, r]
            length = half + length % 2
        for r in range(n):
            hi, lo = two_sum(p[0, r], errors[r])
            out_hi[r, c], out_lo[r, c] = finish(hi, lo, p[0, r])


def dot(ah, al, bh, bl) -> tuple[onp.ndarray, onp.ndarray]:
    """a (n, k) @ b (k, m) as ``dd_kernels.dot``'s elementwise path computes it."""
    th, tl = (onp.ascontiguousarray(onp.asarray(x, dtype=onp.float64).T) for x in (ah, al))
    bh, bl = (onp.ascontiguousarray(x, dtype=onp.float64) for x in (bh, bl))
    kk, n = th.shape
    m = bh.shape[1]
    if kk == 0:
        return onp.zeros((n, m)), onp.zeros((n, m))
    out_hi, out_lo = onp.empty((n, m)), onp.empty((n, m))
    scratch = [onp.empty((kk, n)) for _ in range(4)] + [onp.empty(n), onp.empty(n)]
    _dot_loop(th, tl, bh, bl, out_hi, out_lo, *scratch)
    return out_hi, out_lo
