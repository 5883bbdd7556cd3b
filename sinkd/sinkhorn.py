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

from sinkd import _iterations

METHODS = ("auto", "kernel", "log")
GRADS = ("unrolled", "envelope")


class SinkhornConvergenceWarning(UserWarning):
    """The marginal error was still above ``tol`` after ``n_iters`` iterations."""


@dataclass(frozen=True, eq=False)
class SinkhornResult:
    """What :func:`sinkhorn` computed. Tensors (or numpy arrays when the inputs were numpy)."""

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


def _derived(u, v, alpha, beta, a, b, P, transport, reg, envelope, convert) -> dict:
    """f, g, marginal_error and entropic_cost of a finished solve (computed on first access)."""
    f = (alpha + reg * _iterations._safe_log(u)).squeeze(-1)  # (..., n)
    g = (beta + reg * _iterations._safe_log(v)).squeeze(-1)  # (..., m)
    rows, cols = P.sum(-1), P.sum(-2)  # (..., n), (..., m)
    marginal_error = (rows - a).abs().sum(-1) + (cols - b).abs().sum(-1)
    # reg * sum P log P = sum P (f + g - C) exactly, finite even where P underflows to 0
    entropic = (rows * _iterations._finite_or_zero(f)).sum(-1) + (
        cols * _iterations._finite_or_zero(g)).sum(-1)
    if envelope:
        entropic = transport + (entropic - transport).detach()
    return {name: convert(x) for name, x in
            dict(f=f, g=g, marginal_error=marginal_error, entropic_cost=entropic).items()}


def _kernel_is_safe(C: Tensor, reg: float) -> bool:
    """Whether exp(-C / reg) and its scalings stay well inside the dtype's range."""
    limit = 0.5 * -math.log(torch.finfo(C.dtype).tiny)  # 354 in float64, 43.7 in float32
    extent = C.abs().max().item() / reg
    return extent <= limit


def _as_tensor(x, name: str, like: Tensor | None) -> Tensor:
    if isinstance(x, Tensor):
        t = x
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be a tensor or an array of numbers: {err}") from None
    if like is not None:
        t = t.to(device=like.device, dtype=like.dtype)
    elif not t.is_floating_point():
        t = t.to(torch.get_default_dtype() if isinstance(x, Tensor) else torch.float64)
    return t


def _check_finite(x: Tensor, name: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite: it contains NaN or Inf")


def _validate(a, b, cost, reg, n_iters, tol, method, grad, return_log):
    """(a, b, cost) as tensors in the compute dtype, or ValueError naming the bad argument."""
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

    C = _as_tensor(cost, "cost", None)
    if C.dim() < 2 or C.shape[-1] == 0 or C.shape[-2] == 0:
        raise ValueError(f"cost must have shape (..., n, m) with n, m >= 1, got {tuple(C.shape)}")
    if C.dtype in (torch.float16, torch.bfloat16):
        C = C.float()  # low precision is computed in float32 and returned in the input dtype
    _check_finite(C, "cost")
    n, m = C.shape[-2:]
    a = torch.full((n,), 1.0 / n, dtype=C.dtype, device=C.device) if a is None else a
    b = torch.full((m,), 1.0 / m, dtype=C.dtype, device=C.device) if b is None else b
    a, b = _as_tensor(a, "a", C), _as_tensor(b, "b", C)
    for x, name, size, what in ((a, "a", n, "rows"), (b, "b", m, "columns")):
        if x.dim() < 1 or x.shape[-1] != size:
            raise ValueError(
                f"{name} must have shape (..., {size}) to match the {size} {what} of cost "
                f"{tuple(C.shape)}, got {tuple(x.shape)}"
            )
        if not bool((torch.isfinite(x) & (x >= 0)).all()):  # one pass; say which rule broke
            _check_finite(x, name)
            raise ValueError(f"{name} must be nonnegative: masses are in [0, inf)")
    try:  # numpy's rule is torch's; torch.broadcast_shapes imports sympy on first use (~1 s)
        batch = np.broadcast_shapes(a.shape[:-1], b.shape[:-1], C.shape[:-2])
    except ValueError:
        raise ValueError(
            f"batch shapes do not broadcast: a {tuple(a.shape)}, b {tuple(b.shape)}, "
            f"cost {tuple(C.shape)}"
        ) from None
    a, b = a.expand(*batch, n), b.expand(*batch, m)
    C = C.expand(*batch, n, m)
    mass_a, mass_b = a.sum(-1), b.sum(-1)
    if bool((mass_a <= 0).any()):
        raise ValueError("a must have a positive total mass")
    # masses are compared at the precision they were given in (bfloat16 rounds at 4e-3)
    given = cost.dtype if isinstance(cost, Tensor) and cost.is_floating_point() else C.dtype
    rtol = math.sqrt(torch.finfo(C.dtype).eps) if given == C.dtype else 2 * torch.finfo(given).eps
    if not torch.allclose(mass_a, mass_b, rtol=rtol, atol=0):
        raise ValueError(
            f"a and b must have equal total masses (relative tolerance {rtol:.1e}), got "
            f"sum(a) = {mass_a.flatten()[0].item():.6g} and "
            f"sum(b) = {mass_b.flatten()[0].item():.6g}"
        )
    if grad == "envelope" and (a.requires_grad or b.requires_grad):
        raise ValueError(
            "grad='envelope' differentiates with respect to cost only; a and b must not require "
            "grad (use grad='unrolled')"
        )
    return a, b, C


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
        Ground cost. Torch tensors stay on their device; numpy in gives numpy out. float16 and
        bfloat16 are computed in float32 and returned in the input dtype.
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
    a_t, b_t, C = _validate(a, b, cost, reg, n_iters, tol, method, grad, return_log)
    reg = float(reg)
    floating_in = isinstance(cost, Tensor) and cost.is_floating_point()
    out_dtype = cost.dtype if floating_in else C.dtype
    chosen = method if method != "auto" else ("kernel" if _kernel_is_safe(C, reg) else "log")
    envelope = grad == "envelope"
    C_loop = C.detach() if envelope else C

    def solve(stabilized: bool) -> _iterations.LoopOutput:
        with torch.no_grad() if envelope else torch.enable_grad():
            return _iterations.run(
                C_loop, a_t.unsqueeze(-1), b_t.unsqueeze(-1), reg, n_iters, tol, stabilized,
                return_log,
            )

    loop = solve(chosen == "log")
    P = loop.u * loop.K * loop.v.transpose(-1, -2)  # (..., n, m)
    if method == "auto" and chosen == "kernel" and not bool(torch.isfinite(P).all()):
        chosen = "log"  # the range estimate was too optimistic: redo it stably
        loop = solve(True)
        P = loop.u * loop.K * loop.v.transpose(-1, -2)

    transport = (P * C).sum((-2, -1))
    if envelope:
        transport = (P.detach() * C).sum((-2, -1))  # d/dC = P

    converged = False
    if tol > 0:
        row_error = (P.sum(-1) - a_t).abs().sum(-1)
        converged = bool((row_error <= tol).all())
        if not converged:
            warnings.warn(
                f"sinkhorn did not converge: row-marginal error {row_error.max().item():.2e} > "
                f"tol {tol:.1e} after {loop.n_iters} iterations; raise n_iters or reg",
                SinkhornConvergenceWarning,
                stacklevel=2,
            )

    convert = partial(_convert, to_numpy=not isinstance(cost, Tensor), dtype=out_dtype)
    state = dict(u=loop.u, v=loop.v, alpha=loop.alpha, beta=loop.beta, a=a_t, b=b_t, P=P,
                 transport=transport, reg=reg, envelope=envelope, convert=convert)

    history = {}
    if return_log:
        history = dict(
            errors=torch.stack(loop.errors),
            f_history=torch.stack(loop.f_history).squeeze(-1),
            g_history=torch.stack(loop.g_history).squeeze(-1),
            cost_matrix=C.detach(),
        )
    # the history stays in the compute dtype: plan_at rebuilds plans from it accurately
    history = {k: convert(x, keep_dtype=True) for k, x in history.items()}
    return SinkhornResult(
        plan=convert(P), cost=convert(transport), n_iters=loop.n_iters, converged=converged,
        method=chosen, reg=reg, _state=state, **history,
    )
