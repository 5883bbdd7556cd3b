r"""Entropic optimal transport: the solver's entry point, its checks and its result.

The problem (Cuturi 2013) for masses :math:`a` (..., n) and :math:`b` (..., m) of equal total and
a cost :math:`C` (..., n, m):

.. math::
    P^\star = \arg\min_{P \ge 0} \langle P, C \rangle + \mathrm{reg} \sum_{ij} P_{ij} \log P_{ij}
    \quad \text{s.t.} \quad P \mathbf{1} = a, \; P^\top \mathbf{1} = b

Its solution has the form :math:`P = \mathrm{diag}(u) K \mathrm{diag}(v)`,
:math:`K = e^{-C/\mathrm{reg}}`, or in log form
:math:`P_{ij} = e^{(f_i + g_j - C_{ij})/\mathrm{reg}}`.
Sinkhorn's algorithm alternates the two projections; here each iteration scales the *rows* to
``a`` and then the *columns* to ``b``, the order of the SinKD reference code (Cui et al. 2024), so
after any iteration the columns are exact and the rows approximate. POT (``ot.sinkhorn``) scales
columns first, hence, iteration by iteration and to round-off::

    sinkhorn(a, b, C, reg, n_iters=T, tol=0).plan
        == ot.sinkhorn(b, a, C.T, reg, numItermax=T, stopThr=0).T

The iterations themselves are in :mod:`sinkd.iterations`; this module turns the caller's
arguments into a :class:`sinkd.iterations.Problem` and the final state into a
:class:`SinkhornResult`.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from torch import Tensor

from sinkd import iterations
from sinkd.iterations import NUMPY, TORCH, Problem, State
from sinkd.problem import ArrayLike, Arrays, Output, as_arrays, check_values, read, shared_cost
from sinkd.validation import check_bool, check_choice, check_int, check_number

METHODS = ("auto", "kernel", "log")
GRADS = ("unrolled", "envelope")

ArrayT = TypeVar("ArrayT", Tensor, np.ndarray)


class SinkhornConvergenceWarning(UserWarning):
    """The marginal error was still above ``tol`` after ``n_iters`` iterations."""


def kernel_is_safe(max_abs_cost: float, reg: float, dtype: torch.dtype | np.dtype) -> bool:
    """Whether ``exp(-C / reg)`` and its scalings stay well inside ``dtype``'s range: what
    ``method="auto"`` asks before it runs the kernel (about |C| / reg <= 354 in float64, 43.7 in
    float32). The SinKD loss asks it with the known bound of its cost, without reading C."""
    finfo = torch.finfo(dtype) if isinstance(dtype, torch.dtype) else np.finfo(dtype)
    return max_abs_cost / reg <= 0.5 * -math.log(finfo.tiny)


def _log_fits(max_abs_cost: float, reg: float, dtype: torch.dtype | np.dtype) -> bool:
    """Whether the log iterations' (f + g - C) / reg stays finite in ``dtype``: |f|, |g| and
    |C| are each about max|C| at most, so three of them over min(reg, 1) must fit."""
    finfo = torch.finfo(dtype) if isinstance(dtype, torch.dtype) else np.finfo(dtype)
    return 3 * max_abs_cost / min(reg, 1.0) <= float(finfo.max)


def _promoted(arrays: Arrays, max_abs_cost: float, reg: float) -> tuple[Any, Any, Any, Output]:
    """The problem's arrays in float64 and an output back in their dtype, or ValueError where
    even float64 cannot hold the log iterations."""
    if not _log_fits(max_abs_cost, reg, torch.float64):
        limit = float(np.finfo(np.float64).max) * min(reg, 1.0) / 3
        raise ValueError(f"cost must have max |cost| <= {limit:.3g} for reg = {reg:g} (the log "
                         f"iterations overflow float64 beyond), got max |cost| = "
                         f"{max_abs_cost:.3g}")
    C, a, b, output = arrays.C, arrays.a, arrays.b, arrays.output
    if isinstance(C, Tensor):
        back = output.dtype or C.dtype
        C, a, b = (x.to(torch.float64) for x in (C, a, b))
    else:
        back = None  # numpy results are returned as computed, as for float64 input
        C, a, b = (x.astype(np.float64) for x in (C, a, b))
    return C, a, b, Output(to_numpy=output.to_numpy, dtype=back)


@dataclass(frozen=True)
class _Solved:
    """What the derived fields of a result are computed from (on first access)."""

    problem: Problem
    state: State  # K dropped: numpy computes the plan in its place
    plan: Any  # in the compute dtype
    transport: Any
    envelope: bool
    output: Output


@dataclass(frozen=True, eq=False)
class SinkhornResult(Generic[ArrayT]):
    """What :func:`sinkhorn` computed: tensors, or numpy arrays when the cost was not a tensor.

    ``f``, ``g``, ``marginal_error`` and ``entropic_cost`` are computed on first access: the
    SinKD loss needs only ``cost``.
    """

    plan: ArrayT  # (..., n, m) transport plan after the last iteration
    cost: ArrayT  # (...,) transport cost <P, C>, without the entropy term
    n_iters: int  # iterations run
    converged: bool  # marginal_error <= tol everywhere (always False when tol = 0)
    method: str  # the method that ran: "kernel" or "log"
    reg: float
    errors: ArrayT | None = None  # (n_iters, ...) row-marginal L1 error after each iteration
    f_history: ArrayT | None = None  # (n_iters, ..., n) f after each iteration
    g_history: ArrayT | None = None  # (n_iters, ..., m) g after each iteration
    cost_matrix: ArrayT | None = None  # (..., n, m) the cost, kept for plan_at (return_log)
    _solved: _Solved | None = field(default=None, repr=False)

    @cached_property
    def _derived(self) -> dict[str, ArrayT]:
        s = self._solved
        p, P, ops = s.problem, s.plan, s.problem.ops
        quiet = np.errstate(all="ignore") if ops is NUMPY else contextlib.nullcontext()
        with quiet:
            f = iterations.potential(p, s.state.alpha, s.state.u)  # (..., n)
            g = iterations.potential(p, s.state.beta, s.state.v)  # (..., m)
            rows, cols = P.sum(-1), P.sum(-2)
            error = abs(rows - p.a).sum(-1) + abs(cols - p.b).sum(-1)
            # reg * sum P log P = sum P (f + g - C): exact, and finite where P underflows to 0
            entropic = ((rows * ops.where(f > -math.inf, f, 0.0)).sum(-1)
                        + (cols * ops.where(g > -math.inf, g, 0.0)).sum(-1))
        if s.envelope:  # value of the entropic cost, gradient P (envelope theorem)
            entropic = s.transport + (entropic - s.transport).detach()
        return {name: s.output(x) for name, x in
                dict(f=f, g=g, marginal_error=error, entropic_cost=entropic).items()}

    @property
    def f(self) -> ArrayT:
        """(..., n) row potential: P_ij = exp((f_i + g_j - C_ij) / reg); -inf where a_i = 0."""
        return self._derived["f"]

    @property
    def g(self) -> ArrayT:
        """(..., m) column potential."""
        return self._derived["g"]

    @property
    def marginal_error(self) -> ArrayT:
        """(...,) L1 error of the plan's rows plus L1 error of its columns."""
        return self._derived["marginal_error"]

    @property
    def entropic_cost(self) -> ArrayT:
        """(...,) <P, C> + reg * sum P log P: the objective minimised (exact for the plan)."""
        return self._derived["entropic_cost"]

    def plan_at(self, t: int) -> ArrayT:
        """The plan after iteration ``t`` (1 <= t <= n_iters), from the recorded potentials.

        Needs ``return_log=True``. Costs one ``exp`` of an (n, m) matrix: the animation of a whole
        run never re-runs the solver.
        """
        if self.f_history is None or self.g_history is None or self.cost_matrix is None:
            raise ValueError("plan_at needs the history: call sinkhorn(..., return_log=True)")
        t = check_int("t", t, low=1, high=self.n_iters)
        f, g, C = self.f_history[t - 1], self.g_history[t - 1], self.cost_matrix
        if isinstance(C, np.ndarray):
            with np.errstate(all="ignore"):
                return np.exp((f[..., :, None] + g[..., None, :] - C) / self.reg)
        return torch.exp((f[..., :, None] + g[..., None, :] - C) / self.reg).to(self.plan.dtype)


def sinkhorn(
    a: ArrayLike | None,
    b: ArrayLike | None,
    cost: ArrayLike,
    reg: float,
    *,
    n_iters: int = 1000,
    tol: float = 1e-9,
    method: str = "auto",
    grad: str = "unrolled",
    return_log: bool = False,
    checks: bool = True,
) -> SinkhornResult:
    r"""Solve entropic optimal transport by Sinkhorn's algorithm (rows, then columns).

    The function solves the following optimisation problem:

    .. math::
        P^\star = \arg\min_{P \ge 0} \langle P, C \rangle
            + \mathrm{reg} \sum_{ij} P_{ij} \log P_{ij}
        \quad \text{s.t.} \quad P \mathbf{1} = a, \quad P^\top \mathbf{1} = b

    where:

    - :math:`C` is the cost, shape (..., n, m), any leading (batch) dimensions;
    - :math:`a` (..., n) and :math:`b` (..., m) are nonnegative masses of equal total (not
      necessarily 1: the SinKD loss uses unit masses, total N);
    - :math:`\mathrm{reg} > 0` is the entropic weight (lambda in the SinKD paper).

    Each iteration scales the rows of the plan to ``a`` then its columns to ``b``. The result
    equals ``ot.sinkhorn(b, a, C.T, reg, numItermax=T, stopThr=0).T`` after every T (see the
    module docstring).

    Parameters
    ----------
    a : tensor or array, shape (..., n), or None
        Row masses. None means uniform, 1/n each.
    b : tensor or array, shape (..., m), or None
        Column masses. None means uniform, 1/m each. The totals of a and b must agree to the
        precision they were given in (relative sqrt(eps) of the least precise float32 / float64
        input, 2 eps for float16 / bfloat16).
    cost : tensor or array, shape (..., n, m)
        Ground cost; a, b and cost broadcast over the batch dimensions. When one input is a
        tensor the solver runs in torch (autograd, the cost's device; float16 and bfloat16 are
        computed in float32 and returned in the input dtype); otherwise in numpy (numpy out;
        float16 is computed and returned in float32). Results are tensors when ``cost`` is one.
    reg : float
        Entropic regularisation, > 0. Small values sharpen the plan towards exact OT.
    n_iters : int
        Maximum number of iterations (>= 1).
    tol : float
        Stop when the L1 error of the row marginal is <= tol (checked every 10 iterations, as in
        POT). ``tol=0`` runs exactly ``n_iters`` iterations.
    method : {"auto", "kernel", "log"}
        "kernel" scales ``exp(-C / reg)``: fastest, underflows (NaN) when ``C / reg`` is large.
        "log" is stabilised (absorbed potentials, exact log-domain redo of a block that
        overflows): finite for any ``reg`` and dtype, about as fast where the kernel works.
        Where the kernel underflows and an unrolled gradient is needed (an input requires
        grad), "log" runs plain log-sum-exp iterations instead (the same iterates, slower),
        whose backward stays finite where the kernel steps' would be NaN on tiny masses.
        Where ``max |C| / reg`` overflows the dtype itself (a float32 cost of 1e38), it
        iterates in float64 and returns the dtype; beyond float64's range, a ValueError says
        which ``max |C|`` the ``reg`` allows. (``checks=False`` reads no max: no promotion.)
        "auto" uses the kernel where ``max |C| / reg`` is safely inside the dtype's range
        (:func:`kernel_is_safe`), else "log".
    grad : {"unrolled", "envelope"}
        "unrolled" differentiates through every iteration (the reference behaviour).
        "envelope" treats the plan as constant: d cost / d C = P, no graph through the
        iterations; this is the exact gradient of ``entropic_cost`` at convergence.
    return_log : bool
        Also record the potentials and row-marginal error after every iteration
        (``errors``, ``f_history``, ``g_history``, ``plan_at(t)``).
    checks : bool
        Check the values (cost and masses finite, masses nonnegative with equal positive
        totals) and let "log" watch its scalings: both read numbers back from the device.
        ``checks=False`` reads nothing back when ``tol=0`` (stopping on ``tol`` reads the error
        back every 10 iterations), so a training step on a GPU never waits for the host: no
        value checks, "log" runs plain log-sum-exp iterations (the same iterates, slower), and
        "auto" runs "log" (it cannot look at max |C|).

    Returns
    -------
    SinkhornResult
        ``plan``, ``cost``, ``entropic_cost``, ``f``, ``g``, ``marginal_error``, ``n_iters``,
        ``converged``, ``method``, and the history when ``return_log``.

    Examples
    --------
    >>> import numpy as np
    >>> res = sinkhorn([0.5, 0.5], [0.5, 0.5], np.array([[0.0, 1.0], [1.0, 0.0]]), reg=1.0)
    >>> np.round(res.plan, 8)  # as ot.sinkhorn([.5, .5], [.5, .5], M, 1.0) prints
    array([[0.36552929, 0.13447071],
           [0.13447071, 0.36552929]])

    References
    ----------
    .. [1] M. Cuturi, "Sinkhorn Distances: Lightspeed Computation of Optimal Transport",
       NeurIPS 2013.
    .. [2] B. Schmitzer, "Stabilized Sparse Scaling Algorithms for Entropy Regularized Transport
       Problems", SIAM J. Sci. Comput. 41(3), 2019 (absorption, log-domain stabilisation).
    .. [3] X. Cui et al., "Sinkhorn Distance Minimization for Knowledge Distillation",
       LREC-COLING 2024 (rows-then-columns order, unrolled gradients).

    See Also
    --------
    sinkd.sinkd_loss : the batch-wise SinKD term built on this solver.
    """
    reg = check_number("reg", reg, low=0, low_open=True)
    n_iters = check_int("n_iters", n_iters, low=1)
    tol = check_number("tol", tol, low=0)
    method = check_choice("method", method, METHODS)
    grad = check_choice("grad", grad, GRADS)
    return_log = check_bool("return_log", return_log)
    checks = check_bool("checks", checks)
    torch_path = any(isinstance(x, Tensor) for x in (a, b, cost))
    arrays = as_arrays(a, b, cost, torch_path)
    C, a, b, output = arrays.C, arrays.a, arrays.b, arrays.output
    ops = TORCH if torch_path else NUMPY
    envelope = grad == "envelope" and torch_path
    if envelope and (a.requires_grad or b.requires_grad):
        raise ValueError("grad='envelope' differentiates with respect to cost only; a and b must "
                         "not require grad (use grad='unrolled')")
    quiet = np.errstate(all="ignore") if ops is NUMPY else contextlib.nullcontext()
    with quiet:
        values = check_values(arrays) if checks else None  # None: nothing known
        if values is not None and not _log_fits(values.max_abs_cost, reg, C.dtype):
            # (f + g - C) / reg would overflow this dtype (a float32 cost of 1e38 at reg
            # 0.1): the log iterations run in float64 and the results return in the dtype
            C, a, b, output = _promoted(arrays, values.max_abs_cost, reg)
        safe = values is not None and kernel_is_safe(values.max_abs_cost, reg, C.dtype)
        chosen = ("kernel" if safe else "log") if method == "auto" else method
        finfo = torch.finfo(C.dtype) if torch_path else np.finfo(C.dtype)
        # a cost broadcast over the batch stays one matrix: one kernel for every problem
        problem = Problem(C=shared_cost(C.detach() if envelope else C), a=a, b=b, reg=reg,
                          ops=ops, tiny=float(finfo.tiny), log_max=math.log(float(finfo.max)),
                          zero_mass=values is None or values.zero_mass)
        # Where the kernel underflows, the stabilised step's backward can overflow (a / (K v)
        # with K v near underflow and a tiny mass: inf, times a zero of K: NaN), so there an
        # unrolled gradient goes through plain log-sum-exp steps (the same iterates, slower),
        # whose backward is bounded softmax weights.
        unrolled = torch_path and not envelope and torch.is_grad_enabled() and any(
            x.requires_grad for x in (C, a, b))
        stabilised = checks and (safe or not unrolled)
        log_step = iterations.stabilised_step if stabilised else iterations.log_step

        def solve(step: iterations.Step):
            with torch.no_grad() if envelope else contextlib.nullcontext():
                run = iterations.iterate(problem, step, n_iters, tol, return_log)
                P = ops.plan(run.state.u, run.state.K, run.state.v)
            return run, P, ops.transport(P, C)  # envelope: d/dC = P

        run, P, transport = solve(iterations.kernel_step if chosen == "kernel" else log_step)
        if method == "auto" and chosen == "kernel" and not np.isfinite(read(transport.max())[0]):
            chosen = "log"  # the range estimate was too optimistic (huge masses): redo it stably
            run, P, transport = solve(log_step)
        converged = False
        if tol > 0:
            error = read(abs(P.sum(-1) - a).sum(-1).max())[0]
            converged = error <= tol
    if tol > 0 and not converged:
        warnings.warn(f"sinkhorn did not converge: row-marginal error {error:.2e} > tol "
                      f"{tol:.1e} after {run.n_iters} iterations; raise n_iters or reg",
                      SinkhornConvergenceWarning, stacklevel=2)
    history = {}
    if return_log:
        history = dict(errors=ops.stack(run.errors), f_history=ops.stack(run.f_history),
                       g_history=ops.stack(run.g_history), cost_matrix=C)
        history = {k: output(x.detach() if torch_path else x, keep_dtype=True)
                   for k, x in history.items()}
    state = State(run.state.alpha, run.state.beta, run.state.u, run.state.v, None)
    return SinkhornResult(
        plan=output(P), cost=output(transport), n_iters=run.n_iters, converged=converged,
        method=chosen, reg=reg, **history,
        _solved=_Solved(problem, state, P, transport, envelope, output),
    )
