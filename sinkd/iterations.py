r"""Sinkhorn iterations: one loop, into which the kernel step or the log step is passed.

For masses :math:`a` (..., n), :math:`b` (..., m), a cost :math:`C` (..., n, m) and the weight
:math:`\mathrm{reg}`, the plan after any number of iterations has the form

.. math::
    P = \mathrm{diag}(u)\, \tilde K\, \mathrm{diag}(v), \qquad
    \tilde K_{ij} = e^{(\alpha_i + \beta_j - C_{ij}) / \mathrm{reg}}

with *absorbed potentials* :math:`\alpha, \beta` and *scalings* :math:`u, v` relative to them
(a :class:`State`). A step runs iterations on a state, each one rows then columns:

- :func:`kernel_step`: ``u = a / (K v)``, ``v = b / (K^T u)``, two matrix-vector products; with
  :math:`\alpha = \beta = 0` this is Sinkhorn-Knopp on :math:`K = e^{-C/\mathrm{reg}}`, which
  underflows (NaN) when :math:`C / \mathrm{reg}` is large, as the reference code does;
- :func:`log_step`: the same iterations on the potentials with log-sum-exp,
  :math:`f_i = \mathrm{reg} (\log a_i - \mathrm{LSE}_j (g_j - C_{ij}) / \mathrm{reg})`, then
  :math:`g` alike: exact for any ``reg`` and dtype, several times slower;
- :func:`stabilised_step`: kernel steps on :math:`\tilde K`, with the scalings read back after
  each block: absorbed into :math:`\alpha, \beta` when they grow, and, when they left the safe
  range (overflow, underflow, NaN), the block is redone exactly by :func:`log_step` from its start
  (Schmitzer 2019). Where nothing overflows it costs the kernel's steps plus one read-back per
  block.

:func:`iterate` is the one loop: blocks of :data:`CHECK_EVERY` iterations (one when the history is
recorded), the stopping test and the history. The same code runs on torch tensors (autograd
through every step) and on numpy arrays; :data:`TORCH` and :data:`NUMPY` hold the few operations
that differ (matrix-vector products, log-sum-exp, reading numbers back).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

CHECK_EVERY = 10  # iterations between the stopping tests (POT checks every 10 too)

Array = Tensor | np.ndarray  # the code below is written once for both


class TorchOps:
    """What differs on torch tensors (everything differentiable, nothing in place)."""

    exp = staticmethod(torch.exp)
    log = staticmethod(torch.log)
    where = staticmethod(torch.where)
    stack = staticmethod(torch.stack)

    @staticmethod
    def ones(x: Tensor) -> Tensor:
        return torch.ones_like(x)

    @staticmethod
    def logsumexp(x: Tensor, axis: int) -> Tensor:
        return torch.logsumexp(x, axis)

    @staticmethod
    def kernel(C: Tensor, reg: float) -> Tensor:
        return torch.exp(-C / reg)

    @staticmethod
    def matvecs(K: Tensor) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
        """``v -> K v`` and ``u -> K^T u`` for vectors (..., m) and (..., n).

        One problem uses ``torch.mv`` (its backward is cheaper than a one-column matmul's). For
        many small problems a broadcast multiply-and-sum is several times faster on the CPU than
        batched BLAS products; large batched problems go to BLAS.
        """
        n, m = K.shape[-2:]
        KT = K.mT
        if K.dim() == 2:  # one kernel: one problem, or a batch sharing its cost (one GEMM)
            return ((lambda v: torch.mv(K, v) if v.dim() == 1 else v @ KT),
                    (lambda u: torch.mv(KT, u) if u.dim() == 1 else u @ K))
        if n * m <= 128 * 128:
            return (lambda v: (K * v[..., None, :]).sum(-1)), (lambda u: (K * u[..., None]).sum(-2))
        return (lambda v: (K @ v[..., None])[..., 0]), (lambda u: (KT @ u[..., None])[..., 0])

    @staticmethod
    def extremes(u: Tensor, v: Tensor) -> tuple[float, float]:
        """(min, max) over u and v, read back together (NaN if either holds a NaN)."""
        lo, hi = torch.aminmax(torch.cat((u, v), -1))
        return tuple(torch.stack((lo, hi)).tolist())

    @staticmethod
    def plan(u: Tensor, K: Tensor, v: Tensor) -> Tensor:
        return u[..., :, None] * K * v[..., None, :]

    @staticmethod
    def transport(P: Tensor, C: Tensor) -> Tensor:
        return (P * C).sum((-2, -1))


class NumpyOps:
    """What differs on numpy arrays (no autograd: buffers are reused where that saves a pass)."""

    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    where = staticmethod(np.where)
    stack = staticmethod(np.stack)

    @staticmethod
    def ones(x: np.ndarray) -> np.ndarray:
        return np.ones(x.shape, x.dtype)

    @staticmethod
    def logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
        top = x.max(axis, keepdims=True)
        top = np.where(np.isfinite(top), top, 0.0)  # an all -inf slice gives -inf, as torch's
        return np.log(np.exp(x - top).sum(axis)) + np.squeeze(top, axis)

    @staticmethod
    def kernel(C: np.ndarray, reg: float) -> np.ndarray:
        K = np.divide(C, -reg)
        return np.exp(K, out=K)

    @staticmethod
    def matvecs(K: np.ndarray) -> tuple[Callable[[np.ndarray], np.ndarray],
                                        Callable[[np.ndarray], np.ndarray]]:
        KT = K.mT
        if K.ndim == 2:  # np.dot has less call overhead than matmul for one problem; a batch
            # sharing one cost is one matrix product
            return ((lambda v: np.dot(K, v) if v.ndim == 1 else v @ KT),
                    (lambda u: np.dot(KT, u) if u.ndim == 1 else u @ K))
        return (lambda v: (K @ v[..., None])[..., 0]), (lambda u: (KT @ u[..., None])[..., 0])

    @staticmethod
    def extremes(u: np.ndarray, v: np.ndarray) -> tuple[float, float]:
        return float(min(u.min(), v.min())), float(max(u.max(), v.max()))

    @staticmethod
    def plan(u: np.ndarray, K: np.ndarray, v: np.ndarray) -> np.ndarray:
        if K.ndim < u.ndim + 1:  # a kernel shared by the batch: the plan is a new array
            K = K * u[..., :, None]
        else:  # the kernel is not needed after the loop: the plan overwrites it
            K *= u[..., :, None]
        K *= v[..., None, :]
        return K

    @staticmethod
    def transport(P: np.ndarray, C: np.ndarray) -> np.ndarray:
        if P.ndim == 2:  # one problem: one BLAS dot product
            return np.asarray(np.vdot(P, C))
        return np.einsum("...ij,...ij->...", P, C)


TORCH = TorchOps()
NUMPY = NumpyOps()


@dataclass(frozen=True)
class Problem:
    """A validated problem in the compute dtype, and how to compute on it."""

    C: Array  # (..., n, m)
    a: Array  # (..., n) row masses
    b: Array  # (..., m) column masses
    reg: float
    ops: TorchOps | NumpyOps
    tiny: float  # smallest normal number of the dtype
    log_max: float  # log of its largest number
    zero_mass: bool = True  # some mass is 0 (or not known to be positive)

    def safe_log(self, x: Array) -> Array:
        """log(x) with log(0) = -inf, and a finite gradient there (a zero mass or scaling).

        Subnormal x (below the dtype's smallest normal number) counts as 0: its gradient 1 / x
        overflows (float32 softmax tails reach 1e-45), and inf times a zero is NaN; the mass
        it drops is below the dtype's resolution of any positive total.
        """
        positive = x >= self.tiny
        return self.ops.where(positive, self.ops.log(self.ops.where(positive, x, 1.0)),
                              -math.inf)

    @cached_property
    def log_a(self) -> Array:
        return self.safe_log(self.a)

    @cached_property
    def log_b(self) -> Array:
        return self.safe_log(self.b)


@dataclass(frozen=True)
class State:
    """The iterate: plan = u * K * v^T with K = exp((alpha + beta^T - C) / reg)."""

    alpha: Array | float  # (..., n) absorbed row potential (or the number 0)
    beta: Array | float  # (..., m) absorbed column potential (or the number 0)
    u: Array  # (..., n) row scaling
    v: Array  # (..., m) column scaling
    K: Array  # (..., n, m)


Step = Callable[[Problem, State, int], State]


def potential(p: Problem, absorbed: Array | float, scaling: Array) -> Array:
    """absorbed + reg * log(scaling): the dual potential; -inf where the scaling is 0 (a zero
    mass), with a finite gradient there."""
    return absorbed + p.reg * p.safe_log(scaling)  # a zero scaling gives -inf


def restart(p: Problem, alpha: Array, beta: Array) -> State:
    """The state with scalings 1 on potentials alpha, beta, and one column step.

    exp() of the potentials carries round-off (relative eps * |alpha + beta - C| / reg); the
    column step makes the columns exact again, as after any iteration (in exact arithmetic it
    leaves v = 1).
    """
    K = p.ops.exp((alpha[..., :, None] + beta[..., None, :] - p.C) / p.reg)
    u = p.ops.ones(alpha)
    v = p.b / p.ops.matvecs(K)[1](u).clip(p.tiny)
    return State(alpha, beta, u, v, K)


def kernel_step(p: Problem, s: State, n: int, guard: bool = False) -> State:
    """n iterations ``u = a / (K v)``, ``v = b / (K^T u)`` on the state's kernel.

    ``guard`` clamps the products at the dtype's smallest number, so that a zero mass facing an
    underflowed row gives 0, not 0 / 0.
    """
    K_v, KT_u = p.ops.matvecs(s.K)
    a, b, tiny, v = p.a, p.b, p.tiny, s.v
    u = s.u
    for _ in range(n):
        u = a / (K_v(v).clip(tiny) if guard else K_v(v))
        v = b / (KT_u(u).clip(tiny) if guard else KT_u(u))
    return State(s.alpha, s.beta, u, v, s.K)


def log_step(p: Problem, s: State, n: int) -> State:
    """n log-domain iterations from the state's potentials: exact for any reg and dtype."""
    lse, C, reg = p.ops.logsumexp, p.C, p.reg
    f, g = potential(p, s.alpha, s.u), potential(p, s.beta, s.v)
    for _ in range(n):
        f = reg * (p.log_a - lse((g[..., None, :] - C) / reg, -1))
        g = reg * (p.log_b - lse((f[..., :, None] - C) / reg, -2))
    return restart(p, f, g)


def stabilised_step(p: Problem, s: State, n: int) -> State:
    """Kernel steps on the absorbed kernel; absorb large scalings; redo overflows exactly."""
    t = kernel_step(p, s, n, guard=p.zero_mass)
    u, v = t.u, t.v
    if p.zero_mass:  # a zero mass has scaling 0 by design: only positive masses are looked at
        u, v = p.ops.where(p.a > 0, u, 1.0), p.ops.where(p.b > 0, v, 1.0)
    lo, hi = p.ops.extremes(u, v)
    redo = 0.5 * p.log_max  # |log scaling| far from overflow: 354 in float64, 44 in float32
    absorb = redo / 4  # absorb early, so that the products u * K * v stay representable
    if not (math.exp(-redo) <= lo and hi <= math.exp(redo)):  # also False for NaN
        return log_step(p, s, n)
    if not (math.exp(-absorb) <= lo and hi <= math.exp(absorb)):
        return restart(p, potential(p, t.alpha, t.u), potential(p, t.beta, t.v))
    return t


@dataclass
class Run:
    """What :func:`iterate` returns: the final state and, when recorded, the history."""

    state: State
    n_iters: int
    errors: list[Array]  # each (...,): row L1 error
    f_history: list[Array]  # each (..., n)
    g_history: list[Array]  # each (..., m)


def row_error(p: Problem, s: State) -> Array:
    """(...,) L1 error of the plan's row marginal (its columns are exact after each step)."""
    return abs(s.u * p.ops.matvecs(s.K)[0](s.v) - p.a).sum(-1)


def iterate(p: Problem, step: Step, n_iters: int, tol: float = 0.0,
            record: bool = False) -> Run:
    """Run ``step`` for up to ``n_iters`` iterations from u = v = 1 on K = exp(-C / reg).

    With ``tol > 0`` it stops after the first multiple of :data:`CHECK_EVERY` iterations at
    which every problem's row error is <= tol (a read-back); ``record`` keeps the potentials and
    the row error after every iteration.
    """
    s = State(0.0, 0.0, p.ops.ones(p.a), p.ops.ones(p.b), p.ops.kernel(p.C, p.reg))
    run = Run(s, 0, [], [], [])
    block = 1 if record else CHECK_EVERY
    while run.n_iters < n_iters:
        k = min(block, n_iters - run.n_iters)
        s = step(p, s, k)
        run.n_iters += k
        if record:
            run.errors.append(row_error(p, s))
            run.f_history.append(potential(p, s.alpha, s.u))
            run.g_history.append(potential(p, s.beta, s.v))
        if tol > 0 and run.n_iters % CHECK_EVERY == 0:
            error = run.errors[-1] if record else row_error(p, s)
            if float(error.max()) <= tol:
                break
    run.state = s
    return run
