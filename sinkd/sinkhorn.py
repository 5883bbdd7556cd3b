r"""Entropic optimal transport: the problem, the solver entry point and its result.

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
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from functools import cached_property, partial

import numpy as np
import torch
from torch import Tensor

from sinkd import _iterations, _numpy_iterations

METHODS = ("auto", "kernel", "log")
GRADS = ("unrolled", "envelope")


class SinkhornConvergenceWarning(UserWarning):
    """The marginal error was still above ``tol`` after ``n_iters`` iterations."""


@dataclass(frozen=True, eq=False)
class SinkhornResult:
    """What :func:`sinkhorn` computed: tensors, or numpy arrays when the cost was not a tensor."""

    plan: Tensor  # (..., n, m) transport plan after the last iteration
    cost: Tensor  # (...,) transport cost <P, C>, without the entropy term
    n_iters: int  # iterations run
    converged: bool  # marginal_error <= tol everywhere (always False when tol = 0)
    method: str  # the method that ran: "kernel" or "log"
    reg: float
    errors: Tensor | None = None  # (n_iters, ...) row-marginal L1 error after each iteration
    f_history: Tensor | None = None  # (n_iters, ..., n) f after each iteration
    g_history: Tensor | None = None  # (n_iters, ..., m) g after each iteration
    cost_matrix: Tensor | None = None  # (..., n, m) the cost, kept for plan_at (return_log)
    # f, g, marginal_error and entropic_cost are computed on first access: the SinKD loss needs
    # only the cost, and at small n their ~20 tensor operations cost as much as the iterations
    _state: dict | None = field(default=None, repr=False)  # what _derived needs (picklable)

    @cached_property
    def _extras(self) -> dict:
        return _derived(**self._state)

    @property
    def f(self) -> Tensor:
        """(..., n) row potential: P_ij = exp((f_i + g_j - C_ij) / reg); -inf where a_i = 0."""
        return self._extras["f"]

    @property
    def g(self) -> Tensor:
        """(..., m) column potential."""
        return self._extras["g"]

    @property
    def marginal_error(self) -> Tensor:
        """(...,) L1 error of the plan's rows plus L1 error of its columns."""
        return self._extras["marginal_error"]

    @property
    def entropic_cost(self) -> Tensor:
        """(...,) <P, C> + reg * sum P log P: the objective minimised (exact for the plan)."""
        return self._extras["entropic_cost"]

    def plan_at(self, t: int) -> Tensor:
        """The plan after iteration ``t`` (1 <= t <= n_iters), from the recorded potentials.

        Needs ``return_log=True``. Costs one ``exp`` of an (n, m) matrix: the animation of a whole
        run never re-runs the solver.
        """
        if self.f_history is None:
            raise ValueError("plan_at needs the history: call sinkhorn(..., return_log=True)")
        if not 1 <= t <= self.n_iters:
            raise ValueError(f"t must be in [1, {self.n_iters}] (iterations run), got {t}")
        f, g, C = self.f_history[t - 1], self.g_history[t - 1], self.cost_matrix
        if isinstance(C, np.ndarray):
            return np.exp((f[..., :, None] + g[..., None, :] - C) / self.reg)
        return torch.exp((f[..., :, None] + g[..., None, :] - C) / self.reg).to(self.plan.dtype)


def _convert(x: Tensor, to_numpy: bool, dtype: torch.dtype, keep_dtype: bool = False):
    """A result tensor as the caller gets it: numpy for numpy inputs, else in the input dtype."""
    if to_numpy:
        return x.detach().cpu().numpy()
    return x if keep_dtype else x.to(dtype)


def _derived(u, v, alpha, beta, a, b, P, transport, reg, envelope, convert, steps=None) -> dict:
    """f, g, marginal_error and entropic_cost of a finished solve (computed on first access)."""
    steps = steps or _iterations.TORCH
    with steps.quiet():
        f = steps.potential(alpha, u, reg)  # (..., n)
        g = steps.potential(beta, v, reg)  # (..., m)
        rows, cols = P.sum(-1), P.sum(-2)  # (..., n), (..., m)
        marginal_error = abs(rows - a).sum(-1) + abs(cols - b).sum(-1)
        # reg * sum P log P = sum P (f + g - C) exactly, finite even where P underflows to 0
        entropic = (rows * steps.finite_or_zero(f)).sum(-1) + (
            cols * steps.finite_or_zero(g)).sum(-1)
    if envelope:
        entropic = transport + (entropic - transport).detach()
    return {name: convert(x) for name, x in
            dict(f=f, g=g, marginal_error=marginal_error, entropic_cost=entropic).items()}


def _check_options(reg, n_iters, tol, method, grad, return_log) -> float:
    """reg as a float, or ValueError naming the bad option."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if grad not in GRADS:
        raise ValueError(f"grad must be one of {GRADS}, got {grad!r}")
    if not isinstance(return_log, bool):
        raise ValueError(f"return_log must be True or False, got {return_log!r}")
    if isinstance(n_iters, bool) or not isinstance(n_iters, (int, np.integer)) or n_iters < 1:
        raise ValueError(f"n_iters must be an integer >= 1, got {n_iters!r}")
    if isinstance(reg, Tensor) and reg.numel() == 1:
        reg = reg.item()
    if isinstance(reg, bool) or not isinstance(reg, numbers.Real) or not math.isfinite(reg) or (
            reg <= 0):
        raise ValueError(f"reg must be a finite number > 0, got {reg!r}")
    if not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0 (0 runs exactly n_iters), got {tol!r}")
    return float(reg)


def _validate(a, b, cost, grad, steps, reg):
    """(a, b, cost) in the compute dtype, broadcast to one batch shape, max |cost|, whether
    every mass is positive, and the kernel exp(-cost / reg) where the range pass computed it
    (numpy; else None); or ValueError naming the bad argument. ``steps`` converts and reduces
    (torch or numpy): one min/max reduction per argument, and the masses read back together."""
    C = steps.as_array(cost, "cost", None)
    if C.ndim < 2 or C.shape[-1] == 0 or C.shape[-2] == 0:
        raise ValueError(f"cost must have shape (..., n, m) with n, m >= 1, got {tuple(C.shape)}")
    # NaN if C has one; +-inf show up as the min or the max
    low, high, K = steps.range_and_kernel(C, reg)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("cost must be finite: it contains NaN or Inf")
    n, m = C.shape[-2:]
    a = steps.full(n, 1.0 / n, C) if a is None else steps.as_array(a, "a", C)
    b = steps.full(m, 1.0 / m, C) if b is None else steps.as_array(b, "b", C)
    masses_positive = True
    for x, name, size, what in ((a, "a", n, "rows"), (b, "b", m, "columns")):
        if x.ndim < 1 or x.shape[-1] != size:
            raise ValueError(
                f"{name} must have shape (..., {size}) to match the {size} {what} of cost "
                f"{tuple(C.shape)}, got {tuple(x.shape)}"
            )
        x_low, x_high = steps.value_range(x)
        if not (math.isfinite(x_low) and math.isfinite(x_high)):
            raise ValueError(f"{name} must be finite: it contains NaN or Inf")
        if x_low < 0:
            raise ValueError(f"{name} must be nonnegative: masses are in [0, inf)")
        masses_positive = masses_positive and x_low > 0
    if a.ndim > 1 or b.ndim > 1 or C.ndim > 2:  # a batch (one problem needs no broadcasting)
        try:  # numpy's rule is torch's; torch.broadcast_shapes imports sympy on first use (~1 s)
            batch = np.broadcast_shapes(a.shape[:-1], b.shape[:-1], C.shape[:-2])
        except ValueError:
            raise ValueError(
                f"batch shapes do not broadcast: a {tuple(a.shape)}, b {tuple(b.shape)}, "
                f"cost {tuple(C.shape)}"
            ) from None
        a, b = steps.expand(a, (*batch, n)), steps.expand(b, (*batch, m))
        if C.shape != (*batch, n, m):
            C, K = steps.expand(C, (*batch, n, m)), None  # (the loop writes a full kernel)
    # masses are compared at the precision they were given in (bfloat16 rounds at 4e-3)
    given = cost.dtype if isinstance(cost, Tensor) and cost.is_floating_point() else C.dtype
    rtol = (math.sqrt(steps.finfo(C).eps) if given == C.dtype
            else 2 * torch.finfo(given).eps)
    mass_a, mass_b = a.sum(-1), b.sum(-1)
    if a.ndim == 1:  # one problem: two numbers, compared in Python
        mass_a, mass_b = steps.floats(mass_a, mass_b)
        positive = mass_a > 0
        equal = abs(mass_a - mass_b) <= rtol * abs(mass_b)  # torch.allclose with atol = 0
    else:
        positive = bool((mass_a > 0).all())
        equal = bool((abs(mass_a - mass_b) <= rtol * abs(mass_b)).all())
    if not positive:
        raise ValueError("a must have a positive total mass")
    if not equal:
        first_a, first_b = steps.floats(mass_a.reshape(-1)[0], mass_b.reshape(-1)[0]) if (
            a.ndim > 1) else (mass_a, mass_b)
        raise ValueError(
            f"a and b must have equal total masses (relative tolerance {rtol:.1e}), got "
            f"sum(a) = {first_a:.6g} and sum(b) = {first_b:.6g}"
        )
    if grad == "envelope" and (getattr(a, "requires_grad", False)
                               or getattr(b, "requires_grad", False)):
        raise ValueError(
            "grad='envelope' differentiates with respect to cost only; a and b must not require "
            "grad (use grad='unrolled')"
        )
    return a, b, C, max(-low, high), masses_positive, K


def sinkhorn(
    a,
    b,
    cost,
    reg: float,
    n_iters: int = 1000,
    tol: float = 1e-9,
    method: str = "auto",
    grad: str = "unrolled",
    return_log: bool = False,
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
        Column masses. None means uniform, 1/m each.
    cost : tensor or array, shape (..., n, m)
        Ground cost. Torch tensors stay on their device (float16 and bfloat16 are computed in
        float32 and returned in the input dtype). numpy in gives numpy out: when no input is a
        tensor, the iterations run in numpy (there is nothing to differentiate), without torch's
        per-operation overhead; float16 arrays are computed and returned in float32. The first
        numpy call in a process loads the compiled loop (numba, about 1 s; about 12 s the very
        first time, while it compiles and caches it: ``make setup`` does that once).
    reg : float
        Entropic regularisation, > 0. Small values sharpen the plan towards exact OT.
    n_iters : int
        Maximum number of iterations (>= 1).
    tol : float
        Stop when the L1 error of the row marginal is <= tol (checked every 10 iterations, as in
        POT). ``tol=0`` runs exactly ``n_iters`` iterations.
    method : {"auto", "kernel", "log"}
        "kernel" scales ``exp(-C / reg)``: fastest, underflows (NaN) when ``C / reg`` is large.
        "log" is stabilised (absorbed potentials with exact log-domain fallback): stable for
        any ``reg`` and dtype, about as fast where the kernel works. "auto" uses the kernel where
        ``max |C| / reg`` is safely inside the dtype's range, else "log".
    grad : {"unrolled", "envelope"}
        "unrolled" differentiates through every iteration (the reference behaviour).
        "envelope" treats the plan as constant: d cost / d C = P, no graph through the
        iterations; this is the exact gradient of ``entropic_cost`` at convergence.
    return_log : bool
        Also record the potentials and row-marginal error after every iteration
        (``errors``, ``f_history``, ``g_history``, ``plan_at(t)``).

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
    reg = _check_options(reg, n_iters, tol, method, grad, return_log)
    arrays = _numpy_iterations.numpy_inputs(a, b, cost)
    if arrays is not None:  # numpy in, numpy out, nothing to differentiate: no torch overhead
        steps = _numpy_iterations.NUMPY
        a, b, cost = arrays
        convert = _numpy_iterations.as_output
    else:
        steps = _iterations.TORCH
    with steps.quiet():
        a_x, b_x, C, extent, masses_positive, K = _validate(a, b, cost, grad, steps, reg)
        envelope = grad == "envelope" and arrays is None
        if arrays is None:
            floating_in = isinstance(cost, Tensor) and cost.is_floating_point()
            convert = partial(_convert, to_numpy=not isinstance(cost, Tensor),
                              dtype=cost.dtype if floating_in else C.dtype)
        # the kernel and its scalings must stay well inside the dtype's range
        kernel_safe = extent / reg <= 0.5 * -math.log(steps.finfo(C).tiny)  # 354 f64, 43.7 f32
        chosen = method if method != "auto" else ("kernel" if kernel_safe else "log")

        def solve(stabilized: bool, K=None):
            loop = steps.iterate(C, a_x, b_x, reg, n_iters, tol, stabilized, return_log, envelope,
                                 masses_positive, K)
            return (loop, *steps.plan_and_transport(loop, C, envelope))

        loop, P, transport = solve(chosen == "log", K)  # (the plan overwrites K)
        # C is finite, so a finite <P, C> means a finite plan unless the sum overflowed
        if method == "auto" and chosen == "kernel" and not (
                steps.all_finite(transport) or steps.all_finite(P)):
            chosen = "log"  # the range estimate was too optimistic: redo it stably
            loop, P, transport = solve(True)

        converged = False
        if tol > 0:
            row_error = abs(P.sum(-1) - a_x).sum(-1)
            converged = bool((row_error <= tol).all())
    if tol > 0 and not converged:
        warnings.warn(
            f"sinkhorn did not converge: row-marginal error {row_error.max().item():.2e} > "
            f"tol {tol:.1e} after {loop.n_iters} iterations; raise n_iters or reg",
            SinkhornConvergenceWarning,
            stacklevel=2,
        )

    state = dict(u=loop.u, v=loop.v, alpha=loop.alpha, beta=loop.beta, a=a_x, b=b_x, P=P,
                 transport=transport, reg=reg, envelope=envelope, convert=convert, steps=steps)
    # the history stays in the compute dtype: plan_at rebuilds plans from it accurately
    history = ({k: convert(x, keep_dtype=True) for k, x in steps.history(loop, C).items()}
               if return_log else {})
    return SinkhornResult(
        plan=convert(P), cost=convert(transport), n_iters=loop.n_iters, converged=converged,
        method=chosen, reg=reg, _state=state, **history,
    )
