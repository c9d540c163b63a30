"""Compiled (numba) kernels of the strict binary16 / bfloat16 contexts held in float32.

Every kernel is one pass: a binary32 operation and one rounding to the format per element
(``lem:binary32-double-rounding``), a sequential dot product whose products and partial sums
are each rounded, or a table lookup. The NumPy fallbacks in :mod:`lipflow.precision.strict_held`
give the same bits (``tests/test_strict_held.py`` checks both).

Rounding a float32 to the format in float32 storage:

* binary16: LLVM's ``fptrunc`` to ``half`` and ``fpext`` back, two instructions where the CPU
  converts in hardware (x86 F16C, AArch64); IEEE conversions round to nearest, ties to even,
  with subnormals and overflow to infinity. Elsewhere the bit-level rounding of
  :func:`lipflow.precision.strict_round32.round_to_format`, written in LLVM IR.
* bfloat16: the bit-level rounding (add half an ulp minus one plus the last kept bit, clear
  16 bits; NaN passes through), in LLVM IR on 32-bit integers so the loops vectorise.

Importing this module imports numba; :mod:`lipflow.precision.strict_held` imports it only when
the numba backend is chosen (:mod:`lipflow.precision.accel`). Kernels compile on first use and
are cached on disk (``cache=True``).
"""

from __future__ import annotations

import functools
import platform

import numba
import numpy as onp
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["dot", "hardware_half", "lookup", "ufunc"]

_jit = numba.njit(cache=True, error_model="numpy", nogil=True)
_inline = numba.njit(cache=True, error_model="numpy", nogil=True, inline="always")
_I32 = ir.IntType(32)
_F32 = ir.FloatType()
#: rows of the output computed together in the dot kernel (their partial sums stay in L1)
_BLOCK = 1024


@functools.cache
def hardware_half() -> bool:
    """Whether LLVM converts float32 <-> binary16 in hardware on this CPU."""
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return True
    if machine in ("x86_64", "amd64", "i686", "x86"):
        from llvmlite import binding

        features = str(binding.get_host_cpu_features().flatten())
        return "+f16c" in features.split(",")
    return False


def _bit_round(builder: ir.IRBuilder, x: ir.Value, drop: int) -> ir.Value:
    """x rounded to nearest (ties to even) on the float32 bits, ``drop`` bits cleared."""
    b = builder.bitcast(x, _I32)
    lsb = builder.and_(builder.lshr(b, ir.Constant(_I32, drop)), ir.Constant(_I32, 1))
    r = builder.add(builder.add(b, ir.Constant(_I32, (1 << (drop - 1)) - 1)), lsb)
    r = builder.and_(r, ir.Constant(_I32, (0xFFFFFFFF << drop) & 0xFFFFFFFF))
    return builder.bitcast(r, _F32)


@intrinsic
def round_bf16(typingctx, x):
    """float32 -> nearest bfloat16 value, in float32 (NaN passes through)."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        (value,) = args
        rounded = _bit_round(builder, value, 16)
        return builder.select(builder.fcmp_unordered("uno", value, value), value, rounded)

    return types.float32(types.float32), codegen


@intrinsic
def _round_f16_hardware(typingctx, x):
    """float32 -> nearest binary16 value, in float32: one conversion each way."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return builder.fpext(builder.fptrunc(args[0], ir.HalfType()), _F32)

    return types.float32(types.float32), codegen


@intrinsic
def _round_f16_bits(typingctx, x):
    """float32 -> nearest binary16 value, in float32, on the bits (strict_round32's method):
    below 2^-14 ``(x + 0.75) - 0.75`` with x's sign, >= 2^16 after rounding -> inf, NaN kept."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        (value,) = args
        sign = builder.and_(builder.bitcast(value, _I32), ir.Constant(_I32, 0x80000000))
        rounded = _bit_round(builder, value, 13)
        magnitude = builder.bitcast(builder.and_(builder.bitcast(value, _I32), ir.Constant(_I32, 0x7FFFFFFF)), _F32)
        tiny = builder.fcmp_ordered("<", magnitude, ir.Constant(_F32, 2.0**-14))
        shifted = builder.fsub(builder.fadd(value, ir.Constant(_F32, 0.75)), ir.Constant(_F32, 0.75))
        shifted_bits = builder.or_(builder.and_(builder.bitcast(shifted, _I32), ir.Constant(_I32, 0x7FFFFFFF)), sign)
        result = builder.select(tiny, builder.bitcast(shifted_bits, _F32), rounded)
        rounded_magnitude = builder.bitcast(
            builder.and_(builder.bitcast(result, _I32), ir.Constant(_I32, 0x7FFFFFFF)), _F32)
        huge = builder.fcmp_ordered(">=", rounded_magnitude, ir.Constant(_F32, 65536.0))
        infinity = builder.bitcast(builder.or_(sign, ir.Constant(_I32, 0x7F800000)), _F32)
        result = builder.select(huge, infinity, result)
        return builder.select(builder.fcmp_unordered("uno", value, value), value, result)

    return types.float32(types.float32), codegen


@intrinsic
def _half_bits(typingctx, x):
    """The binary16 bit pattern (in a uint32) of a float32 holding a binary16 value."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        half = builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))
        return builder.zext(half, _I32)

    return types.uint32(types.float32), codegen


@intrinsic
def _bits(typingctx, x):
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], _I32)

    return types.uint32(types.float32), codegen


@intrinsic
def _from_bits(typingctx, b):
    """The float32 whose bits are the low 32 bits of the integer b."""
    if not isinstance(b, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        value = args[0]
        if b.bitwidth > 32:
            value = builder.trunc(value, _I32)
        return builder.bitcast(value, _F32)

    return types.float32(b), codegen


round_f16 = _round_f16_hardware if hardware_half() else _round_f16_bits


@numba.njit(cache=True, error_model="numpy", nogil=True, inline="always")
def _round_to_odd32(x):
    """float64 -> float32 rounded to odd (an inexact result gets its last bit set); then one
    rounding to a format of at most 22 bits is the correctly rounded conversion of x
    (Boldo and Melquiond 2008)."""
    single = onp.float32(x)
    wide = onp.float64(single)
    if wide == x or x != x:
        return single
    bits = _bits(single)
    if abs(wide) > abs(x):
        bits -= numba.uint32(1)
    return _from_bits(bits | numba.uint32(1))


# ---- elementwise: one binary32 operation, one rounding -----------------------------------------
# Plain functions, compiled into NumPy ufuncs on first use (each one cached on disk by numba).
# Written out once per format on purpose: numba's disk cache never matches closures built by a
# factory (each run would compile them again and add new cache files).


def add_f16(a, b):
    return round_f16(a + b)


def subtract_f16(a, b):
    return round_f16(a - b)


def multiply_f16(a, b):
    return round_f16(a * b)


def divide_f16(a, b):
    return round_f16(a / b)


def sqrt_f16(a):
    return round_f16(onp.sqrt(a))


def round_f16_values(a):
    return round_f16(a)


def from64_f16(x):
    return round_f16(_round_to_odd32(x))


def add_bf16(a, b):
    return round_bf16(a + b)


def subtract_bf16(a, b):
    return round_bf16(a - b)


def multiply_bf16(a, b):
    return round_bf16(a * b)


def divide_bf16(a, b):
    return round_bf16(a / b)


def sqrt_bf16(a):
    return round_bf16(onp.sqrt(a))


def round_bf16_values(a):
    return round_bf16(a)


def from64_bf16(x):
    return round_bf16(onp.float32(x))


_SIGNATURES = {"add": "float32(float32, float32)", "subtract": "float32(float32, float32)",
               "multiply": "float32(float32, float32)", "divide": "float32(float32, float32)",
               "sqrt": "float32(float32)", "round": "float32(float32)", "from64": "float32(float64)"}
_FUNCTIONS = {"add": "add", "subtract": "subtract", "multiply": "multiply", "divide": "divide", "sqrt": "sqrt",
              "round": "round_{}_values", "from64": "from64"}


@functools.cache
def ufunc(name: str, fmt: str) -> onp.ufunc:
    """The fused NumPy ufunc ``name`` ("add", "subtract", "multiply", "divide", "sqrt": one
    binary32 operation and one rounding; "round": float32 -> nearest value of ``fmt``;
    "from64": float64 -> value of ``fmt`` as NumPy's ``astype`` converts, binary16 rounded
    once through binary32 rounded to odd, bfloat16 through binary32 rounded to nearest as
    ml_dtypes does), all held in float32."""
    suffix = "f16" if fmt == "float16" else "bf16"
    pattern = _FUNCTIONS[name]
    function = globals()[pattern.format(suffix) if "{}" in pattern else f"{pattern}_{suffix}"]
    return numba.vectorize([_SIGNATURES[name]], cache=True, nopython=True)(function).ufunc


# ---- sequential dot: every product and every partial sum rounded ----------------------------------


# The inner loops run across rows over contiguous slices of a transposed (k, n), so LLVM
# vectorises them; each output element is still its own sequence over j = 0, 1, ..., k-1:
# s_0 = round(a_i0 b_0c), s_j = round(s_(j-1) + round(a_ij b_jc)). The two inner loops are
# written out per format (numba caches module-level functions, not closures); the format is
# chosen once per column block, outside them.


@_inline
def _first_f16(acc, row, b_0c, width):
    for i in range(width):
        acc[i] = round_f16(row[i] * b_0c)


@_inline
def _along_f16(acc, row, b_jc, width):
    for i in range(width):
        acc[i] = round_f16(acc[i] + round_f16(row[i] * b_jc))


@_inline
def _first_bf16(acc, row, b_0c, width):
    for i in range(width):
        acc[i] = round_bf16(row[i] * b_0c)


@_inline
def _along_bf16(acc, row, b_jc, width):
    for i in range(width):
        acc[i] = round_bf16(acc[i] + round_bf16(row[i] * b_jc))


@_jit
def _dot(a_t, b, half):
    k, n = a_t.shape
    out_t = onp.empty((b.shape[1], n), dtype=onp.float32)
    for start in range(0, n, _BLOCK):
        stop = min(n, start + _BLOCK)
        width = stop - start
        for col in range(b.shape[1]):
            acc = out_t[col, start:stop]
            if half:
                _first_f16(acc, a_t[0, start:stop], b[0, col], width)
                for j in range(1, k):
                    _along_f16(acc, a_t[j, start:stop], b[j, col], width)
            else:
                _first_bf16(acc, a_t[0, start:stop], b[0, col], width)
                for j in range(1, k):
                    _along_bf16(acc, a_t[j, start:stop], b[j, col], width)
    return out_t


@_jit
def _dot_rows(a, b, half):
    return _dot(_transposed(a), b, half)


@_inline
def _transposed(a):
    n, k = a.shape
    a_t = onp.empty((k, n), dtype=onp.float32)
    for i in range(n):
        row = a[i]
        for j in range(k):
            a_t[j, i] = row[j]
    return a_t


def dot(a: onp.ndarray, b: onp.ndarray, fmt: str) -> onp.ndarray:
    """float32 a (n, k) @ b (k, m), k >= 1, both holding values of ``fmt``: each product and
    each partial sum (over k in index order) rounded to ``fmt``. The result is Fortran-ordered
    (its transpose is contiguous), so a product that feeds another one needs no transposition."""
    half = fmt == "float16"
    flags = a.flags
    if flags.f_contiguous:  # a.T is contiguous: the kernel's operand as it is
        out_t = _dot(a.T, b, half)
    elif flags.c_contiguous:
        out_t = _dot_rows(a, b, half)
    else:
        out_t = _dot(onp.ascontiguousarray(a.T), b, half)
    return out_t.T


# ---- table lookups (functions of one format value) ---------------------------------------------


@_jit
def _lookup_f16(x, table):
    out = onp.empty(x.size, dtype=onp.float32)
    for i in range(x.size):
        out[i] = table[_half_bits(x[i])]
    return out


@_jit
def _lookup_bf16(x, table):
    out = onp.empty(x.size, dtype=onp.float32)
    for i in range(x.size):
        out[i] = table[_bits(x[i]) >> numba.uint32(16)]
    return out


def lookup(x: onp.ndarray, table: onp.ndarray, fmt: str) -> onp.ndarray | None:
    """table[pattern of x] for float32 x holding values of ``fmt``, in x's layout (None: no
    compiled lookup on this CPU)."""
    if fmt == "float16" and not hardware_half():
        return None
    kernel = _lookup_f16 if fmt == "float16" else _lookup_bf16
    flags = x.flags
    if flags.c_contiguous:
        return kernel(x.reshape(-1), table).reshape(x.shape)
    if flags.f_contiguous:  # keep a Fortran layout
        return kernel(x.T.reshape(-1), table).reshape(x.T.shape).T
    return kernel(onp.ascontiguousarray(x).reshape(-1), table).reshape(x.shape)
