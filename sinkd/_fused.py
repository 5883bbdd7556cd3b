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

The kernel ``exp(-C / reg)`` comes from :mod:`sinkd._fused_exp` (one vectorised pass, with the
cost's range check).

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
    solves (docs/benchmarks.md). On two cores the fused loop (one thread) won at every size
    measured, 1.3-2.4x at 724-1448, even at 2048 x 2048; with more cores BLAS's threads should
    win on large kernels, as its two did in a loop timed alone here past about 724 x 724 (not
    measured on a many-core machine)."""
    return 2**22 if cores <= 2 else 2**19


FUSED_UP_TO = _fused_up_to(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                           else os.cpu_count() or 1)
_FLAGS = {"reassoc", "contract"}  # vectorised sums and FMA; NaN / Inf semantics kept


_COMPILING = threading.Lock()  # app sessions are threads: the first compiles, the others wait
_LOOPS: list = []  # [(scaling_blocks, plan_and_cost, kernels, exps, extremes) or None]


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
    from sinkd import _fused_exp

    jit = numba.njit(cache=True, nogil=True, fastmath=_FLAGS, error_model="numpy")
    global _iterate, _at_least, _inside  # the helpers the loops call, compiled first
    _at_least, _inside = jit(_at_least), jit(_inside)
    _iterate = jit(_iterate)
    return (jit(_scaling_blocks), jit(_plan_and_cost), *_fused_exp.compile_loops(jit),
            jit(_extremes))


def available() -> bool:
    return _compiled() is not None


def warm_up() -> float:
    """Compile (or load from the cache) every loop for float32 and float64; returns seconds.

    ``make setup`` runs it once, so that a user's first call does not wait for the compiler.
    """
    from sinkd import _fused_exp

    start = time.perf_counter()
    if available():
        for dtype in (np.float32, np.float64):
            K, ones = np.eye(4, dtype=dtype), np.ones(4, dtype)
            u, v = scaling_blocks(K, ones, ones, ones, ones, 2, 1, None, (0.5, 2.0))[2:4]
            plan_and_cost(K, u, v, K.copy())
            extremes(u, v)
            _fused_exp.kernel_and_range(K, 1.0, np.empty_like(K))
            _fused_exp.exp_inplace(K)
    return time.perf_counter() - start


def applies(K: np.ndarray) -> bool:
    """Whether the fused loop takes this kernel: float32 / float64, C-contiguous, not too big."""
    return (K.dtype in (np.float32, np.float64) and K.flags.c_contiguous and K.ndim >= 2
            and K.shape[-1] * K.shape[-2] <= FUSED_UP_TO and K.size > 0 and available())


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


def extremes(u: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    """(min, max) over the scalings u and v together, (NaN, NaN) if one is NaN (one call)."""
    return _compiled()[4](u.reshape(-1), v.reshape(-1))


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


def _extremes(u, v):
    lo = hi = u[0]
    for x in (u, v):
        for i in range(x.shape[0]):
            if x[i] != x[i]:
                return np.nan, np.nan
            lo, hi = min(lo, x[i]), max(hi, x[i])
    return float(lo), float(hi)
