"""Fused loops of the numpy path, compiled by numba: one pass over the kernel per iteration.

BLAS runs an iteration ``u = a / (K v)``, ``v = b / (K^T u)`` as two matrix-vector products,
two passes over ``K``. Once ``K`` outgrows the L2 cache (n = 256 in float64 is 512 KB, one
core's L2 here) both passes stream it from L3, and at small n each BLAS call costs more in
dispatch than in arithmetic. :func:`scaling_blocks` takes four rows of ``K`` at a time and uses
them twice while they are in L1: their entries of ``K v``, then ``u`` there, then their share
``u_i K_i`` of ``K^T u`` (so ``v`` and the column sums are also read once per four rows). It
runs the solver's blocks of 10 iterations and their range check natively too, returning to
Python only when a block needs attention (absorption, rollback) or the iterations are done.
Same arithmetic, half the memory traffic, no Python between iterations: about 1.5x BLAS at
n = 256 and 5-10x at n <= 64 (docs/benchmarks.md). Above :data:`FUSED_UP_TO` entries per
problem (2048 x 2048 on two cores, 724 x 724 with more, where BLAS's threads should win),
:mod:`sinkd._numpy_iterations` keeps BLAS, as it does for the recorded path, whose
per-iteration errors need ``K v`` anyway.

The kernel itself comes from :func:`kernel_and_range`: one pass over ``C`` that finds its min
and max (validation) and writes ``exp(C / -reg)`` with a vectorised exponential of our own
(numba calls libm's scalar ``exp`` where Intel's SVML is absent): within 2 ulp in float64 and
1 ulp in float32, subnormals and overflow as numpy. It is single-threaded on purpose: torch's
two-thread ``exp`` was no faster here, and its OpenMP worker, left spinning, slowed the loop
that followed by up to 2x (docs/benchmarks.md).

Floating-point semantics are numpy's: ``error_model="numpy"`` makes ``x / 0`` infinite (the
loop's range checks catch it), and of the fast-math flags only ``reassoc`` and ``contract`` are
on (so that sums vectorise and use FMA, as BLAS does); NaN and Inf propagate as in numpy. Sums
run in another order than BLAS's, so iterates agree with the BLAS path to round-off (~1e-15
relative in float64), not bit for bit.

numba compiles each function on first use (a few seconds) and caches the machine code beside
this file (later processes load it in about a second); :func:`available` is False where numba
is not installed, and the numpy path then runs on BLAS alone.
"""

from __future__ import annotations

import math
import os
import threading
import time

import numpy as np


def _fused_up_to(cores: int) -> int:
    """Entries per problem up to which the fused loop runs (BLAS above), measured in whole
    solves (docs/benchmarks.md). On two cores the fused loop won at every size measured, up to
    2048 x 2048 (BLAS's second thread contends with torch's, still spinning after the kernel's
    ``exp``); with more cores BLAS's threads should win on large kernels, as they did in a loop
    timed alone here past about 724 x 724 (not measured on a many-core machine)."""
    return 2**22 if cores <= 2 else 2**19


FUSED_UP_TO = _fused_up_to(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                           else os.cpu_count() or 1)
_FLAGS = {"reassoc", "contract"}  # vectorised sums and FMA; NaN / Inf semantics kept


_COMPILING = threading.Lock()  # app sessions are threads: the first compiles, the others wait
_LOOPS: list = []  # [(scaling_blocks, plan_and_cost) or None], filled once


def _compiled():
    """The compiled loops, or None without numba (imported on first use: with the cache beside
    this file, numba's import and the loading of the loops take about 1 s)."""
    if not _LOOPS:
        with _COMPILING:
            if not _LOOPS:  # (another thread may have compiled while this one waited)
                _LOOPS.append(_compile())
    return _LOOPS[0]


def _compile():
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a requirement; BLAS works without it
        return None
    jit = numba.njit(cache=True, nogil=True, fastmath=_FLAGS, error_model="numpy")
    # the helpers the loops call, compiled first
    global _iterate, _at_least, _inside, _exp64, _exp32, _order64, _order32, _unorder64
    global _unorder32, _bits64, _from_bits64, _bits32, _from_bits32
    _bits64, _from_bits64, _bits32, _from_bits32 = _bitcasts()
    _at_least, _inside = jit(_at_least), jit(_inside)
    _iterate = jit(_iterate)
    _exp64, _exp32 = jit(_exp64), jit(_exp32)
    _order64, _order32, _unorder64, _unorder32 = (jit(f) for f in (
        _order64, _order32, _unorder64, _unorder32))
    return (jit(_scaling_blocks), jit(_plan_and_cost),
            {np.dtype(np.float64): jit(_kernel_and_range64),
             np.dtype(np.float32): jit(_kernel_and_range32)},
            {np.dtype(np.float64): jit(_exp_inplace64), np.dtype(np.float32): jit(_exp_inplace32)})


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


def available() -> bool:
    return _compiled() is not None


def warm_up() -> float:
    """Compile (or load from the cache) every loop for float32 and float64; returns seconds.

    ``make setup`` runs it once, so that a user's first call does not wait for the compiler.
    """
    start = time.perf_counter()
    if available():
        for dtype in (np.float32, np.float64):
            K, ones = np.eye(4, dtype=dtype), np.ones(4, dtype)
            u, v = scaling_blocks(K, ones, ones, ones, ones, 2, 1, None, (0.5, 2.0))[2:4]
            plan_and_cost(K, u, v, K.copy())
            kernel_and_range(K, 1.0, np.empty_like(K))
            exp_inplace(K)
    return time.perf_counter() - start


def applies(K: np.ndarray) -> bool:
    """Whether the fused loop takes this kernel: float32 / float64, C-contiguous, not too big."""
    return (K.dtype in (np.float32, np.float64) and K.flags.c_contiguous and K.ndim >= 2
            and K.shape[-1] * K.shape[-2] <= FUSED_UP_TO and K.size > 0 and available())


def exp_applies(x: np.ndarray) -> bool:
    """Whether :func:`kernel_and_range` and :func:`exp_inplace` take x (any size)."""
    return (x.dtype in (np.float32, np.float64) and x.flags.c_contiguous and x.size > 0
            and available())


def kernel_and_range(C: np.ndarray, reg: float, out: np.ndarray) -> tuple[float, float]:
    """``out = exp(C / -reg)`` and C's (min, max), in one pass; (NaN, NaN) if C has a NaN.

    C and out C-contiguous, of one shape and dtype (see :func:`exp_applies`). The division is
    numpy's (``C / -reg`` in C's dtype), the exponential :func:`_exp64` / :func:`_exp32`.
    """
    kernel_and_range_of = _compiled()[2][C.dtype]
    return kernel_and_range_of(C.reshape(-1), C.dtype.type(-reg), out.reshape(-1))


def exp_inplace(x: np.ndarray) -> np.ndarray:
    """x = exp(x) in place (x C-contiguous, see :func:`exp_applies`); returns x."""
    _compiled()[3][x.dtype](x.reshape(-1))
    return x


def _rows(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """x, already of the batch shape (validation expands it), as contiguous rows ``shape``
    (a copy only where x is a broadcast view or strided)."""
    return np.ascontiguousarray(x).reshape(shape)


def scaling_blocks(K: np.ndarray, a: np.ndarray, b: np.ndarray, u: np.ndarray, v: np.ndarray,
                   n_iters: int, block: int, guard: float | None,
                   bounds: tuple[float, float] | None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Blocks of ``block`` iterations from ``(u, v)`` (not modified), while the scalings stay
    inside ``bounds``; returns ``(u0, v0, u1, v1, before)``.

    ``(u1, v1)`` are the scalings after the last block run and ``(u0, v0)`` those before it,
    ``before`` the number of iterations run before it. The loop stops after ``n_iters``
    iterations, or after the first block that leaves ``lo <= s <= hi`` for a scaling of
    positive mass (NaN leaves it too); ``bounds=None`` checks nothing. The caller's loop then
    treats that last block as it treats any block (sinkd._iterations.run).

    K (..., n, m) C-contiguous (see :func:`applies`); a, u (..., n), b, v (..., m) of K's batch
    shape. ``guard``: lower bound on ``K v`` and ``K^T u`` (zero masses), None for none.
    """
    *batch, n, m = K.shape
    problems = math.prod(batch)
    u1, v1 = _rows(u, (problems, n)).copy(), _rows(v, (problems, m)).copy()
    u0, v0 = np.empty_like(u1), np.empty_like(v1)
    lo, hi = (-math.inf, math.inf) if bounds is None else bounds
    before = _compiled()[0](
        K.reshape(problems, n, m), _rows(a, (problems, n)), _rows(b, (problems, m)), u1, v1, u0,
        v0, n_iters, block, K.dtype.type(0 if guard is None else guard), guard is not None, lo,
        hi, bounds is not None)
    return (u0.reshape(*batch, n), v0.reshape(*batch, m), u1.reshape(*batch, n),
            v1.reshape(*batch, m), before)


def plan_and_cost(K: np.ndarray, u: np.ndarray, v: np.ndarray,
                  C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The plan ``u K v^T`` written over K, and ``<P, C>`` per problem (0-d for one problem).

    One pass reading K and C; C must be C-contiguous and of K's shape and dtype.
    """
    *batch, n, m = K.shape
    problems = math.prod(batch)
    cost = np.empty(problems, K.dtype)
    _compiled()[1](K.reshape(problems, n, m), _rows(u, (problems, n)), _rows(v, (problems, m)),
                   C.reshape(problems, n, m), cost, K.dtype.type(0))
    return K, cost.reshape(batch)


# --- the loops numba compiles (written in the subset of Python it compiles) ---

def _scaling_blocks(K, a, b, u, v, u0, v0, n_iters, block, guard, use_guard, lo, hi, check):
    problems, n, m = K.shape
    col = np.empty(m, K.dtype)  # K^T u, accumulated row by row
    done = before = 0
    while done < n_iters:
        this = min(block, n_iters - done)
        u0[:] = u
        v0[:] = v
        before = done
        for k in range(problems):
            _iterate(K[k], a[k], b[k], u[k], v[k], col, this, guard, use_guard)
        done += this
        if check and not (_inside(u, a, lo, hi) and _inside(v, b, lo, hi)):
            break
    return before


def _iterate(K, a, b, u, v, col, n_iters, guard, use_guard):
    """n_iters iterations u = a / (K v), v = b / (K^T u) of one problem, in place."""
    n, m = K.shape
    zero = guard - guard  # 0 in K's dtype (guard is finite)
    for _ in range(n_iters):
        col[:] = zero
        for i in range(0, n - 3, 4):  # four rows at a time: one pass over v and col for all
            s0, s1, s2, s3 = zero, zero, zero, zero
            for j in range(m):
                vj = v[j]
                s0 += K[i, j] * vj
                s1 += K[i + 1, j] * vj
                s2 += K[i + 2, j] * vj
                s3 += K[i + 3, j] * vj
            u0 = a[i] / _at_least(s0, guard, use_guard)
            u1 = a[i + 1] / _at_least(s1, guard, use_guard)
            u2 = a[i + 2] / _at_least(s2, guard, use_guard)
            u3 = a[i + 3] / _at_least(s3, guard, use_guard)
            u[i], u[i + 1], u[i + 2], u[i + 3] = u0, u1, u2, u3
            for j in range(m):
                col[j] += (u0 * K[i, j] + u1 * K[i + 1, j]) + (u2 * K[i + 2, j] + u3 * K[i + 3, j])
        for i in range(n - n % 4, n):  # the last n % 4 rows, one at a time
            s0 = zero
            for j in range(m):
                s0 += K[i, j] * v[j]
            u0 = a[i] / _at_least(s0, guard, use_guard)
            u[i] = u0
            for j in range(m):
                col[j] += u0 * K[i, j]
        for j in range(m):
            v[j] = b[j] / _at_least(col[j], guard, use_guard)


def _inside(s, mass, lo, hi):
    """Whether lo <= s <= hi wherever mass > 0 (False at NaN), as the loop's range check."""
    for k in range(s.shape[0]):
        for i in range(s.shape[1]):
            if mass[k, i] > 0 and not (lo <= s[k, i] <= hi):
                return False
    return True


def _at_least(s, guard, use_guard):
    """np.maximum(s, guard) where asked: NaN stays NaN (a comparison with NaN is False)."""
    return guard if use_guard and s < guard else s


def _plan_and_cost(K, u, v, C, cost, zero):
    problems, n, m = K.shape
    for k in range(problems):
        total = zero  # summed in K's dtype, as numpy's einsum does
        for i in range(n):
            ui = u[k, i]
            for j in range(m):
                p = ui * K[k, i, j] * v[k, j]
                K[k, i, j] = p
                total += p * C[k, i, j]
        cost[k] = total


# --- exp, vectorised: numba calls libm's scalar exp where SVML is absent (as here) ---
# x = k ln2 + r with |r| <= ln2 / 2 (Cody-Waite: k ln2_hi is exact), e^r by its Taylor
# polynomial, 2^k built from its bits in two factors so that a subnormal result rounds once.
# Measured against exp in float64 arithmetic: <= 2 ulp in float64, <= 1 ulp in float32
# (numpy's float32 exp: 2.4 ulp); underflow to subnormals and 0, and overflow, as numpy.

_SHIFT64, _SHIFT32 = 1.5 * 2.0**52, np.float32(1.5 * 2.0**23)  # x + shift rounds to integer
_SHIFT64_BITS = int(np.float64(_SHIFT64).view(np.int64))
_SHIFT32_BITS = np.int32(_SHIFT32.view(np.int32))
_TAYLOR64 = tuple(1.0 / math.factorial(k) for k in range(13, -1, -1))  # 1/13!, ..., 1/0!
_TAYLOR32 = tuple(np.float32(1.0 / math.factorial(k)) for k in range(7, -1, -1))
_ABS64, _ABS32 = np.int64(2**63 - 1), np.int32(2**31 - 1)  # all bits but the sign
_ONE32, _BIAS32, _MANT32 = np.int32(1), np.int32(127), np.int32(23)


def _exp64(x):
    x = min(max(x, -746.0), 710.0)  # beyond: 0 and inf (and no overflow of k below)
    t = x * 1.4426950408889634 + _SHIFT64  # log2(e); round(x / ln2) in t's last bits
    k = t - _SHIFT64
    r = (x - k * 0.693147180369123816490) - k * 1.90821492927058770002e-10  # ln2 hi, lo
    p = 0.0
    for c in _TAYLOR64:
        p = p * r + c
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
