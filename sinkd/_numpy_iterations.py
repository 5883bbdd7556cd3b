"""The loop's steps for numpy inputs: the same iterations as the torch path, without torch's
per-operation overhead.

:func:`sinkd.sinkhorn` promises numpy out for numpy in. At small n an iteration is a handful of
operations on vectors of 16-256 numbers, and what it costs is the framework's dispatch: about
3-5 us per torch operation against about 1 us per numpy call. So when no input is a torch tensor
(hence nothing is differentiated), :func:`sinkd._iterations.run` runs on :data:`NUMPY`:

- masses, scalings and potentials are plain vectors ``(..., n)``;
- a block of iterations is one call of the fused loop of :mod:`sinkd._fused` (compiled by
  numba: one pass over ``K`` per iteration) up to ``_fused.FUSED_UP_TO`` entries per problem;
  past that, and when every iteration is recorded, four calls per iteration: ``K v`` and
  ``K^T u`` by BLAS (``np.dot``, ``out=``) and two divisions into preallocated buffers;
- the kernel ``exp(-C / reg)`` is computed by :func:`sinkd._fused_exp.kernel_and_range`, in the
  pass that finds the cost's min and max for validation (one read of ``C``, vectorised ``exp``,
  single-threaded; without numba: torch's vectorised ``exp`` for large matrices, 2-4x numpy's on
  CPUs without AVX-512, where numpy's float64 ``exp`` is scalar);
- the plan ``u K v^T`` overwrites the kernel, with ``<P, C>`` in the same fused pass (or an
  ``einsum`` pass after BLAS).

The loop itself (blocks, range checks, rollback to the log domain, absorption, stopping) is the
one in :mod:`sinkd._iterations`, so both paths take the same decisions; the iterates agree to
round-off (the loops sum in different orders).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sinkd import _fused, _fused_exp
from sinkd._iterations import TORCH, LoopOutput, run

# numpy dtypes the numpy path computes in (everything else goes through torch, as before)
_COMPUTE_DTYPE = {np.dtype(np.float32): np.float32, np.dtype(np.float64): np.float64,
                  np.dtype(np.float16): np.float32}
_TORCH_EXP_FROM = 2048  # elements from which torch's exp beats numpy's call overhead
_TORCH_MINMAX_FROM = 2**15  # and from which torch's one-pass aminmax beats numpy's min and max


def numpy_inputs(a, b, cost):
    """``(a, b, cost)`` as numpy arrays when the numpy path applies to them, else None.

    It applies when none is a torch tensor and each holds plain numbers (bool, integers, float16,
    float32, float64); the torch path handles (and rejects) anything else, as it always did.
    """
    if isinstance(cost, torch.Tensor) or isinstance(a, torch.Tensor) or isinstance(
            b, torch.Tensor):
        return None
    arrays = []
    for x in (a, b, cost):
        if x is None:
            arrays.append(None)
            continue
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError):
            return None
        if arr.dtype.kind not in "biu" and arr.dtype not in _COMPUTE_DTYPE:
            return None
        arrays.append(arr)
    return arrays


def _exp_inplace(x: np.ndarray) -> np.ndarray:
    if x.size < _TORCH_EXP_FROM:  # (a numba or torch call costs more than numpy's here)
        return np.exp(x, out=x)
    if _fused_exp.exp_applies(x):
        return _fused_exp.exp_inplace(x)
    torch.from_numpy(x).exp_()  # without numba: vectorised, unlike numpy's float64 exp here
    return x


def _aligned_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a 64-byte cache line.

    numpy's allocations are only 16-byte aligned; the fused loop's 32-byte vector loads from a
    kernel 16 bytes off a line straddle two lines every other load (measured: 13% slower at n =
    256, float64).
    Below 64 KiB a plain ``np.empty``: finding the address costs more than the loads save.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < 2**16:
        return np.empty(shape, dtype)
    buffer = np.empty(nbytes + 64, np.uint8)
    start = -buffer.__array_interface__["data"][0] % 64  # (.ctypes costs ~5 us)
    return buffer[start:start + nbytes].view(dtype).reshape(shape)


def _matvec(M: np.ndarray, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """M x for M (..., n, m) and vectors x (..., m), into ``out`` (..., n) when given."""
    if M.ndim == 2:
        return np.dot(M, x, out=out)
    return np.matmul(M, x[..., None], out=None if out is None else out[..., None])[..., 0]


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    """log sum exp over ``axis`` (dropped); -inf for an all -inf slice, as torch.logsumexp."""
    top = x.max(axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.log(np.exp(x - top).sum(axis)) + np.squeeze(top, axis)


class NumpySteps:
    """The loop's array work on numpy arrays; masses, scalings and potentials as vectors."""

    name = "numpy"

    @staticmethod
    def finfo(x: np.ndarray):
        return np.finfo(x.dtype)

    @staticmethod
    def zeros_like(x: np.ndarray) -> np.ndarray:
        return np.zeros(x.shape, x.dtype)

    @staticmethod
    def ones_like(x: np.ndarray) -> np.ndarray:
        return np.ones(x.shape, x.dtype)

    log = staticmethod(np.log)

    @staticmethod
    def safe_log(x: np.ndarray) -> np.ndarray:
        return np.log(x)  # -inf at 0 (the caller silences numpy's warning)

    @staticmethod
    def finite_or_zero(x: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(x), x, 0.0)

    @staticmethod
    def kernel(C: np.ndarray, reg: float) -> np.ndarray:
        # -C / reg as the torch path, into one new cache-line-aligned array
        K = _aligned_empty(C.shape, C.dtype)
        if _fused_exp.exp_applies(C):
            _fused_exp.kernel_and_range(C, reg, K)  # (the range was validation's)
            return K
        return _exp_inplace(np.divide(C, -reg, out=K))

    @staticmethod
    def range_and_kernel(C: np.ndarray, reg: float) -> tuple[float, float, np.ndarray | None]:
        """C's (min, max) (NaN if C has a NaN) and its kernel ``exp(-C / reg)``, in one compiled
        pass where :mod:`sinkd._fused_exp` applies (else the kernel is None: the loop makes it).
        """
        if not _fused_exp.exp_applies(C):
            return (*NumpySteps.value_range(C), None)
        K = _aligned_empty(C.shape, C.dtype)
        return (*_fused_exp.kernel_and_range(C, reg, K), K)

    @staticmethod
    def positive(x: np.ndarray) -> np.ndarray | None:
        pos = x > 0
        return None if pos.all() else pos

    @staticmethod
    def scaling_block(K, a, b, u, v, n, guard, alpha, beta, reg, out: LoopOutput, record: bool):
        # new u, v for the block (the loop keeps the old ones to roll back), updated in place
        u, v_new = np.empty_like(u), np.empty_like(v)
        Kv, KTu = np.empty_like(u), np.empty_like(v)
        KT = np.swapaxes(K, -1, -2)
        matvec = np.dot if K.ndim == 2 else _matvec  # (one call less per product)
        for _ in range(n):
            matvec(K, v, Kv)
            if guard is not None:
                np.maximum(Kv, guard, out=Kv)
            np.divide(a, Kv, out=u)
            matvec(KT, u, KTu)
            if guard is not None:
                np.maximum(KTu, guard, out=KTu)
            v = np.divide(b, KTu, out=v_new)
            if record:  # row sums of the new plan: u * (K v); columns are exact after the v-step
                out.errors.append(np.abs(u * _matvec(K, v) - a).sum(-1))
                out.f_history.append(alpha + reg * np.log(u))
                out.g_history.append(beta + reg * np.log(v))
        return u, v

    @staticmethod
    def scaling_blocks(K, a, b, u, v, n, block, guard, bounds):
        """Blocks run by :func:`sinkd._fused.scaling_blocks` (one pass over K per iteration,
        range checks included); None where the fused loop does not apply."""
        return _fused.scaling_blocks(K, a, b, u, v, n, block, guard, bounds) if (
            _fused.applies(K)) else None

    @staticmethod
    def log_block(C, log_a, log_b, f, g, n, reg, out: LoopOutput, record: bool):
        for _ in range(n):
            f = reg * (log_a - _logsumexp((g[..., None, :] - C) / reg, -1))
            g = reg * (log_b - _logsumexp((f[..., :, None] - C) / reg, -2))
            if record:
                row_log_mass = f / reg + _logsumexp((g[..., None, :] - C) / reg, -1)
                out.errors.append(np.abs(np.exp(row_log_mass) - np.exp(log_a)).sum(-1))
                out.f_history.append(f)
                out.g_history.append(g)
        return f, g

    @staticmethod
    def extremes(u, v, a_pos, b_pos) -> tuple[float, float]:
        """(min, max) over the scalings of positive mass (NaN if any is NaN)."""
        u = u if a_pos is None else np.where(a_pos, u, 1.0)
        v = v if b_pos is None else np.where(b_pos, v, 1.0)
        if u.size == 0 or v.size == 0:
            return 1.0, 1.0
        if _fused.available() and u.dtype == v.dtype and u.dtype.kind == "f":
            return _fused.extremes(u, v)  # one call, not four
        both = np.concatenate((u, v), -1)
        return float(both.min()), float(both.max())

    @staticmethod
    def absorbed(potential, scaling, positive, reg):
        """potential + reg * log(scaling) as a log-block start (-inf where the mass is zero)."""
        merged = potential + reg * np.log(scaling)
        merged = np.where(np.isfinite(merged), merged, 0.0)
        return merged if positive is None else np.where(positive, merged, -np.inf)

    @staticmethod
    def restart(C, alpha, beta, reg, a, b, tiny):
        """Kernel on absorbed potentials and one column step (see the torch steps' restart)."""
        K = np.add(alpha[..., :, None], beta[..., None, :], out=_aligned_empty(C.shape, C.dtype))
        K -= C
        K /= reg
        _exp_inplace(K)
        u = np.ones(a.shape, a.dtype)
        v = b / np.maximum(_matvec(np.swapaxes(K, -1, -2), u), tiny)
        return u, v, K

    @staticmethod
    def row_error(K, a, u, v) -> float:
        """Largest L1 error of the plan's row marginal over the batch."""
        return float(np.max(np.abs(u * _matvec(K, v) - a).sum(-1)))

    @staticmethod
    def last_error(out: LoopOutput) -> float:
        return float(np.max(out.errors[-1]))

    # --- around the loop (sinkd.sinkhorn) ---

    @staticmethod
    def quiet():
        return np.errstate(all="ignore")  # NaN and Inf are results here (as in torch), not errors

    @staticmethod
    def as_array(x: np.ndarray, name: str, like: np.ndarray | None) -> np.ndarray:
        """The cost in its compute dtype (float16 -> float32, integers -> float64), masses in the
        cost's dtype (``numpy_inputs`` has checked that they hold numbers)."""
        if like is not None:
            return np.asarray(x, dtype=like.dtype)
        return np.asarray(x, dtype=_COMPUTE_DTYPE.get(x.dtype, np.float64))

    @staticmethod
    def full(n: int, value: float, like: np.ndarray) -> np.ndarray:
        return np.full(n, value, dtype=like.dtype)

    @staticmethod
    def value_range(x: np.ndarray) -> tuple[float, float]:
        """(min, max) of x as floats; NaN if x has a NaN."""
        if x.size == 0:
            return 0.0, 0.0
        if x.size >= _TORCH_MINMAX_FROM and x.flags.c_contiguous:  # one threaded pass, not two
            return TORCH.value_range(torch.from_numpy(x))
        return float(x.min()), float(x.max())

    @staticmethod
    def floats(*xs: np.ndarray) -> list[float]:
        return [float(x) for x in xs]

    @staticmethod
    def expand(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return np.broadcast_to(x, shape)

    @staticmethod
    def all_finite(x: np.ndarray) -> bool:
        return bool(np.isfinite(x).all())

    def iterate(self, C, a, b, reg, n_iters, tol, stabilized, record, envelope,
                masses_positive=False, K=None) -> LoopOutput:
        return run(C, a, b, reg, n_iters, tol, stabilized, record, self, masses_positive, K)

    @classmethod
    def plan_and_transport(cls, loop: LoopOutput, C: np.ndarray, envelope: bool):
        """(plan, <plan, C>): one fused pass where :mod:`sinkd._fused` applies."""
        K = loop.K
        if _fused.applies(K) and C.flags.c_contiguous and C.shape == K.shape and (
                C.dtype == K.dtype):
            return _fused.plan_and_cost(K, loop.u, loop.v, C)
        P = cls.plan(loop)
        return P, cls.transport(P, C, envelope)

    @staticmethod
    def plan(loop: LoopOutput) -> np.ndarray:
        """u K v^T, written over the kernel (nothing needs K after the loop)."""
        P = loop.K
        P *= loop.u[..., :, None]
        P *= loop.v[..., None, :]
        return P

    @staticmethod
    def transport(P: np.ndarray, C: np.ndarray, envelope: bool) -> np.ndarray:
        # einsum, not BLAS's dot: after torch's exp, a multi-threaded OpenBLAS ddot stalled
        # ~5 ms per call on 2 cores (n = 256, float64); einsum is a few us slower at worst
        return np.asarray(np.einsum("...ij,...ij->...", P, C))  # 0-d for one problem

    @staticmethod
    def potential(alpha: np.ndarray, u: np.ndarray, reg: float) -> np.ndarray:
        return alpha + reg * np.log(u)  # (..., n)

    @staticmethod
    def history(loop: LoopOutput, C: np.ndarray) -> dict:
        return dict(errors=np.stack(loop.errors), f_history=np.stack(loop.f_history),
                    g_history=np.stack(loop.g_history), cost_matrix=C)


def as_output(x, keep_dtype: bool = False) -> np.ndarray:
    """A result of the numpy path as the caller gets it: an ndarray (0-d for a scalar)."""
    return np.asarray(x)


NUMPY = NumpySteps()
