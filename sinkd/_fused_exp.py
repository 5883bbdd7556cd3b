"""The numpy path's kernel ``exp(-C / reg)``, compiled by numba with a vectorised exponential.

The kernel comes from :func:`kernel_and_range`: one pass over ``C`` that finds its min
and max (validation) and writes ``exp(C / -reg)`` with a vectorised exponential of our own
(numba calls libm's scalar ``exp`` where Intel's SVML is absent): within 2 ulp in float64 and
1 ulp in float32, subnormals and overflow as numpy. It is single-threaded on purpose: torch's
two-thread ``exp`` was no faster here, and its OpenMP worker, left spinning, slowed the loop
that followed by up to 2x (docs/benchmarks.md).

:mod:`sinkd._fused` compiles these loops with its own (:func:`compile_loops`); the functions
here run them.
"""

from __future__ import annotations

import math

import numpy as np

from sinkd import _fused


def exp_applies(x: np.ndarray) -> bool:
    """Whether :func:`kernel_and_range` and :func:`exp_inplace` take x (any size)."""
    return (x.dtype in (np.float32, np.float64) and x.flags.c_contiguous and x.size > 0
            and _fused.available())


def kernel_and_range(C: np.ndarray, reg: float, out: np.ndarray) -> tuple[float, float]:
    """``out = exp(C / -reg)`` and C's (min, max), in one pass; (NaN, NaN) if C has a NaN.

    C and out C-contiguous, of one shape and dtype (see :func:`exp_applies`). The division is
    numpy's (``C / -reg`` in C's dtype), the exponential :func:`_exp64` / :func:`_exp32`.
    """
    kernel_and_range_of = _fused._compiled()[2][C.dtype]
    return kernel_and_range_of(C.reshape(-1), C.dtype.type(-reg), out.reshape(-1))


def exp_inplace(x: np.ndarray) -> np.ndarray:
    """x = exp(x) in place (x C-contiguous, see :func:`exp_applies`); returns x."""
    _fused._compiled()[3][x.dtype](x.reshape(-1))
    return x


def compile_loops(jit) -> tuple[dict, dict]:
    """The compiled loops per dtype, ({dtype: kernel_and_range}, {dtype: exp_inplace}), with
    ``jit`` (sinkd._fused's decorator); the helpers they call are compiled first."""
    global _exp64, _exp32, _order64, _order32, _unorder64, _unorder32
    global _bits64, _from_bits64, _bits32, _from_bits32
    _bits64, _from_bits64, _bits32, _from_bits32 = _bitcasts()
    _exp64, _exp32 = jit(_exp64), jit(_exp32)
    _order64, _order32, _unorder64, _unorder32 = (jit(f) for f in (
        _order64, _order32, _unorder64, _unorder32))
    f64, f32 = np.dtype(np.float64), np.dtype(np.float32)
    return ({f64: jit(_kernel_and_range64), f32: jit(_kernel_and_range32)},
            {f64: jit(_exp_inplace64), f32: jit(_exp_inplace32)})


def _bitcasts():
    """Reinterpretations float64 <-> int64 and float32 <-> int32 (LLVM bitcasts, which the loops
    vectorise), as numba intrinsics."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    def bitcast(source, target, llvm_target):
        def typer(typingctx, x):
            def codegen(context, builder, signature, args):
                return builder.bitcast(args[0], llvm_target)
            return target(source), codegen
        return intrinsic(typer)

    return (bitcast(types.float64, types.int64, ir.IntType(64)),
            bitcast(types.int64, types.float64, ir.DoubleType()),
            bitcast(types.float32, types.int32, ir.IntType(32)),
            bitcast(types.int32, types.float32, ir.FloatType()))


# --- exp, vectorised: numba calls libm's scalar exp where SVML is absent (as here) ---
# x = k ln2 + r with |r| <= ln2 / 2 (Cody-Waite: k ln2_hi is exact), e^r by its Taylor
# polynomial, 2^k built from its bits in two factors so that a subnormal result rounds once.
# Measured against exp in extended precision: 1.02 ulp in float64, 0.92 ulp in float32 (numpy's
# float32 exp: 2.4 ulp); underflow to subnormals and 0, and overflow, as numpy's
# (tests/test_fused_exp.py). The float64 / float32 twins below differ only in their helpers:
# numba picks no helper by dtype inside one compiled function without ``overload``.

_SHIFT64, _SHIFT32 = 1.5 * 2.0**52, np.float32(1.5 * 2.0**23)  # x + shift rounds to integer
_SHIFT64_BITS = int(np.float64(_SHIFT64).view(np.int64))
_SHIFT32_BITS = np.int32(_SHIFT32.view(np.int32))
_TAYLOR64 = tuple(1.0 / math.factorial(k) for k in range(14))  # 1/0!, ..., 1/13!
_TAYLOR32 = tuple(np.float32(1.0 / math.factorial(k)) for k in range(7, -1, -1))
_ABS64, _ABS32 = np.int64(2**63 - 1), np.int32(2**31 - 1)  # all bits but the sign
_ONE32, _BIAS32, _MANT32 = np.int32(1), np.int32(127), np.int32(23)


def _exp64(x):
    x = min(max(x, -746.0), 710.0)  # beyond: 0 and inf (and no overflow of k below)
    t = x * 1.4426950408889634 + _SHIFT64  # log2(e); round(x / ln2) in t's last bits
    k = t - _SHIFT64
    r = (x - k * 0.693147180369123816490) - k * 1.90821492927058770002e-10  # ln2 hi, lo
    # 1 + r + r^2 q(r), q by Estrin's scheme: a shorter dependency chain than Horner's (measured
    # 10-15% faster on the kernel pass; 1.02 ulp max against Horner's 0.89)
    c = _TAYLOR64
    r2 = r * r
    r4 = r2 * r2
    q0 = (c[2] + c[3] * r) + (c[4] + c[5] * r) * r2
    q1 = (c[6] + c[7] * r) + (c[8] + c[9] * r) * r2
    q2 = (c[10] + c[11] * r) + (c[12] + c[13] * r) * r2
    p = 1.0 + (r + r2 * ((q0 + q1 * r4) + q2 * (r4 * r4)))
    n = _bits64(t) - _SHIFT64_BITS
    half = n >> 1
    return p * _from_bits64((half + 1023) << 52) * _from_bits64((n - half + 1023) << 52)


def _exp32(x):
    x = min(max(x, np.float32(-104.0)), np.float32(89.0))
    t = x * np.float32(1.44269504) + _SHIFT32
    k = t - _SHIFT32
    r = (x - k * np.float32(0.693359375)) - k * np.float32(-2.12194440e-4)
    p = np.float32(0.0)
    for c in _TAYLOR32:
        p = p * r + c
    n = np.int32(_bits32(t) - _SHIFT32_BITS)
    half = np.int32(n >> _ONE32)
    return p * _from_bits32(np.int32(np.int32(half + _BIAS32) << _MANT32)) * _from_bits32(
        np.int32(np.int32(n - half + _BIAS32) << _MANT32))


# The range check in the same pass: a float's bits, sign-folded, order as the float does (and
# integer min / max vectorise where NaN-aware float min / max do not). NaN orders outside +-inf.

def _order64(x):
    i = _bits64(x)
    return i ^ ((i >> 63) & _ABS64)


def _order32(x):  # (numba widens int32 arithmetic to int64: narrowed back, for 8 lanes)
    i = _bits32(x)
    return np.int32(i ^ np.int32(np.int32(i >> np.int32(31)) & _ABS32))


def _unorder64(s):
    return _from_bits64(s ^ ((s >> 63) & _ABS64))


def _unorder32(s):
    return _from_bits32(s ^ ((s >> np.int32(31)) & _ABS32))


def _kernel_and_range64(C, neg_reg, K):
    lo = hi = _order64(C[0])
    for i in range(C.shape[0]):
        s = _order64(C[i])
        lo, hi = min(lo, s), max(hi, s)
        K[i] = _exp64(C[i] / neg_reg)
    if lo < _order64(-np.inf) or hi > _order64(np.inf):
        return np.nan, np.nan
    return _unorder64(lo), _unorder64(hi)


def _kernel_and_range32(C, neg_reg, K):
    lo = hi = _order32(C[0])
    for i in range(C.shape[0]):
        s = _order32(C[i])
        lo, hi = min(lo, s), max(hi, s)
        K[i] = _exp32(C[i] / neg_reg)
    if lo < _order32(np.float32(-np.inf)) or hi > _order32(np.float32(np.inf)):
        return np.nan, np.nan
    return float(_unorder32(lo)), float(_unorder32(hi))


def _exp_inplace64(x):
    for i in range(x.shape[0]):
        x[i] = _exp64(x[i])


def _exp_inplace32(x):
    for i in range(x.shape[0]):
        x[i] = _exp32(x[i])
