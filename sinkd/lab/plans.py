r"""Transport plans of the SinKD term, iteration by iteration: what the Transport plans page shows.

For teacher and student logits :math:`z^t, z^s` (N, C) the batch-wise SinKD construction is

.. math::
    p^s_i = \mathrm{softmax}(z^s_i / \tau), \quad p^t_j = \mathrm{softmax}(z^t_j / \tau), \quad
    D_{ij} = \lVert p^s_i - p^t_j \rVert_1, \quad
    P_t = \text{t rows-then-columns scalings of } e^{-D/\lambda} \text{ to unit marginals}

and the term is :math:`10^{-3} \langle P_T, D \rangle`. :func:`plan_history` runs
:func:`sinkd.sinkhorn` once with ``return_log=True`` and derives every curve from the plans
``result.plan_at(t)`` (evaluated in batches: :meth:`PlanHistory.plans_at`), and from the plans
after each iteration's row scaling (its potentials ``f_t`` with the previous ``g_{t-1}``: the
half-steps, :data:`HALVES`); :func:`class_level` is the per-sample C x C view;
:func:`lambda_sweep` scans lambda. The batch and its transport
problem come from :mod:`sinkd.lab.batches`; where the kernel solver fails per dtype is
:mod:`sinkd.lab.plan_numerics`.

Dtypes: float64 and float32 run the solver in that dtype. float16 cost matrices are computed in
float32 by :func:`sinkd.sinkhorn` and returned in float16, history included, so the frames
``plan_at(t)`` of a float16 run are recomputed from float16 potentials: their error in the
exponent is about ``|f| 2^-11 / lambda``, visible at small lambda.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import ot
import torch

from sinkd.lab.batches import BATCH_KINDS, batch_problem, compute_dtype, logits_pair, toy_batch
from sinkd.lab.spec import LAMBDA_VALUES
from sinkd.sinkhorn import SinkhornResult, sinkhorn
from sinkd.validation import check_choice, check_int, check_number

SCALE = 1e-3  # the SinKD term's multiplier (reference)
PLAN_METHODS = ("kernel", "log")
LAMBDAS = LAMBDA_VALUES  # the sweep's grid: the values of the app's one λ control
LATEST = "latest distillation batch"  # the extra source the distillation page may provide
SOURCES = (*BATCH_KINDS, LATEST)
# The distillation page's link adds this query parameter: the page then opens on LATEST.
LATEST_QUERY = {"batch": "latest"}
# The two half-steps of an iteration: the plan after its row scaling, then after its column
# scaling (the end of the iteration, what plan_at(t) gives).
HALVES = ("rows", "columns")
# L1 marginal error (rows plus columns, mass 1 per problem) below which a plan counts as
# converged, per dtype of the page: about the round-off of the sums in that dtype's compute.
CONVERGED_L1 = {"float64": 1e-9, "float32": 1e-4, "float16": 1e-4}


def batch_for(source: str, n: int, n_classes: int, noise: float, seed: int,
              latest: Mapping | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Teacher and student logits (N, C) of a toy batch kind, or of ``latest`` for ``LATEST``.

    ``latest`` is the distillation page's ``{"teacher_logits": list, "student_logits": list}``.

    Examples
    --------
    >>> t, s = batch_for("aligned", 4, 3, 0.0, 0)
    >>> t.shape, bool(np.allclose(t, s))
    ((4, 3), True)
    """
    if source != LATEST:
        return toy_batch(source, n, n_classes, noise, seed)
    if not isinstance(latest, Mapping):
        raise ValueError("source 'latest distillation batch' needs a batch: none was stored")
    return logits_pair(latest.get("teacher_logits"), latest.get("student_logits"))


def _limits(D: np.ndarray) -> tuple[float, float]:
    """Exact OT with unit masses (lambda -> 0) and the independent coupling's cost N mean(D)."""
    ones = np.ones(len(D))
    return float(ot.emd2(ones, ones, D)), float(D.sum() / len(D))


def _entropy(P: np.ndarray) -> float:
    """Entropy (nats) of P / sum(P) over the N^2 pairs: log N for a permutation, 2 log N flat."""
    q = P / P.sum()
    q = q[q > 0]
    return float(-(q * np.log(q)).sum())


def step(t: int, half: str, delta: int, n_iters: int) -> tuple[int, str]:
    """The half-step ``delta`` half-steps from (t, half), clipped to (1, "rows") ... (T, "columns").

    Half-steps are numbered 1, 2, ..., 2T: (t, "rows") is 2t - 1 and (t, "columns") is 2t, so
    delta = +-1 moves half an iteration and +-2 a whole one.

    Examples
    --------
    >>> step(3, "columns", 1, 20), step(3, "rows", -1, 20), step(1, "rows", -2, 20)
    ((4, 'rows'), (2, 'columns'), (1, 'rows'))
    """
    check_int("n_iters", n_iters, low=1)
    check_int("t", t, low=1, high=n_iters)
    check_choice("half", half, HALVES)
    check_int("delta", delta)
    k = min(max(2 * t - (half == "rows") + delta, 1), 2 * n_iters)
    return (k + 1) // 2, HALVES[1 - k % 2]


@dataclass(frozen=True)
class Curves:
    """Curves over t = 1..T of the plans at one half-step of each iteration."""

    costs: np.ndarray  # (T,) <P, D>
    row_errors: np.ndarray  # (T,) sum_i |(P 1)_i - 1|
    col_errors: np.ndarray  # (T,) sum_j |(P^T 1)_j - 1|
    entropies: np.ndarray  # (T,) entropy of P / sum(P), nats


@dataclass(frozen=True, eq=False)
class PlanHistory:
    """One SinKD solve with its history: everything the page's plan figures show."""

    student_probs: np.ndarray  # (N, C) softmax(z_s / tau) as computed, float64 copy
    teacher_probs: np.ndarray  # (N, C)
    cost_matrix: np.ndarray  # (N, N) D as the solver received it (in `dtype`), float64 copy
    result: SinkhornResult  # the single solve (return_log=True), tensors in `dtype`
    costs: np.ndarray  # (T,) <P_t, D>
    row_errors: np.ndarray  # (T,) sum_i |(P_t 1)_i - 1|
    col_errors: np.ndarray  # (T,) sum_j |(P_t^T 1)_j - 1|
    entropies: np.ndarray  # (T,) entropy of P_t / sum(P_t), nats
    after_rows: Curves  # the same curves for the plans after each iteration's row scaling
    exact_cost: float  # ot.emd2 with unit masses: the lambda -> 0 limit
    independent_cost: float  # <1 1^T / N, D> = N mean(D): the lambda -> infinity limit
    sinkd_value: float  # SCALE * result.cost: the SinKD term
    reg: float
    n_iters: int
    method: str
    dtype: str
    temperature: float

    @property
    def n(self) -> int:
        return self.cost_matrix.shape[0]

    @property
    def n_classes(self) -> int:
        return self.student_probs.shape[1]

    @property
    def plan(self) -> np.ndarray:
        """(N, N) the solver's final plan, float64 copy (NaN where the kernel failed)."""
        return self.result.plan.double().numpy()

    @property
    def finite(self) -> bool:
        """Whether the final plan and every curve are finite."""
        curves = (self.costs, self.row_errors, self.col_errors, self.entropies)
        return bool(np.isfinite(self.plan).all() and all(np.isfinite(c).all() for c in curves))

    def curves(self, half: str = "columns") -> Curves:
        """The curves of the plans after the row scaling (``"rows"``) or after the whole
        iteration (``"columns"``) of each t."""
        check_choice("half", half, HALVES)
        if half == "rows":
            return self.after_rows
        return Curves(self.costs, self.row_errors, self.col_errors, self.entropies)

    def gaps(self, half: str = "columns") -> np.ndarray:
        """(T,) <P, D> - exact OT at each t: >= 0 for any plan with the problem's marginals;
        an unconverged plan has other marginals, so its gap can be negative."""
        return self.curves(half).costs - self.exact_cost

    def plan_at(self, t: int, half: str = "columns") -> np.ndarray:
        """(N, N) the plan after iteration t (1 <= t <= n_iters), float64 copy of plan_at(t);
        ``half="rows"``: the plan after that iteration's row scaling (see :meth:`plans_at`)."""
        if half == "columns":
            return self.result.plan_at(t).double().numpy()
        check_int("t", t, low=1, high=self.n_iters)
        return _plans_at(self.result, [t], half)[0]

    def plans_at(self, steps: Sequence[int], half: str = "columns") -> np.ndarray:
        """(len(steps), N, N) the plan at each t of ``steps``, as one batched evaluation.

        The same formula as :meth:`SinkhornResult.plan_at`, exp((f + g - C) / reg) in the
        result's dtype, applied to the stacked recorded potentials: one exp instead of one per
        frame. ``half="columns"``: f_t and g_t, the plan after iteration t (``plan_at(t)``).
        ``half="rows"``: f_t and g_(t-1) (g_0 = 0, the start v = 1), the plan after the row
        scaling of iteration t, before its column scaling: its rows have the masses exactly.
        """
        return _plans_at(self.result, steps, half)


def _plans_at(result: SinkhornResult, steps: Sequence[int], half: str = "columns") -> np.ndarray:
    check_choice("half", half, HALVES)
    idx = torch.as_tensor(list(steps), dtype=torch.long) - 1
    if idx.numel() and not bool(((idx >= 0) & (idx < result.n_iters)).all()):
        raise ValueError(f"steps must be in [1, {result.n_iters}], got {list(steps)}")
    g_all = result.g_history
    if half == "rows":  # the column potential the row scaling of iteration t saw: g_(t-1)
        g_all = torch.cat((torch.zeros_like(g_all[:1]), g_all[:-1]))
    f, g = result.f_history[idx], g_all[idx]  # (F, N), (F, N)
    P = torch.exp((f[..., :, None] + g[..., None, :] - result.cost_matrix) / result.reg)
    return P.double().numpy()  # (F, N, N)


def _curves(result: SinkhornResult, D64: np.ndarray, half: str) -> Curves:
    """The four curves of the plans at one half-step of every iteration."""
    n_iters = result.n_iters
    curves = np.empty((4, n_iters))
    chunk = max(1, 2**18 // D64.size)  # plans per batch: bounded memory at any N and T
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for start in range(0, n_iters, chunk):
            steps = range(start + 1, min(start + chunk, n_iters) + 1)
            P = _plans_at(result, steps, half)  # (F, N, N)
            curves[:, start:start + len(steps)] = (
                (P * D64).sum((1, 2)), np.abs(P.sum(2) - 1).sum(1), np.abs(P.sum(1) - 1).sum(1),
                [_entropy(p) if np.isfinite(p).all() else np.nan for p in P])
    return Curves(*curves)


def _check_solve(reg: float, n_iters: int, method: str) -> None:
    check_number("reg", reg, low=0, low_open=True)
    check_int("n_iters", n_iters, low=1)
    check_choice("method", method, PLAN_METHODS)


def plan_history(teacher_logits: np.ndarray, student_logits: np.ndarray, *, reg: float = 0.1,
                 n_iters: int = 20, method: str = "kernel", dtype: str = "float64",
                 temperature: float = 2.0) -> PlanHistory:
    r"""Solve the SinKD transport problem once and record the plan after every iteration.

    Curves, for :math:`t = 1..T` and :math:`P_t` = ``result.plan_at(t)``:

    .. math::
        c_t = \langle P_t, D \rangle, \quad
        e^{rows}_t = \lVert P_t \mathbf{1} - \mathbf{1} \rVert_1, \quad
        e^{cols}_t = \lVert P_t^\top \mathbf{1} - \mathbf{1} \rVert_1, \quad
        H_t = -\sum_{ij} q_{ij} \log q_{ij}, \; q = P_t / \textstyle\sum P_t

    Parameters
    ----------
    teacher_logits, student_logits : array, shape (N, C)
        Logits of the batch.
    reg : float
        Entropic weight lambda > 0.
    n_iters : int
        Iterations T >= 1, all run (``tol=0``, as SinKD does).
    method : {"kernel", "log"}
        Solver method of :func:`sinkd.sinkhorn`.
    dtype : {"float64", "float32", "float16"}
        Dtype of the cost given to the solver (float16 is computed in float32).
    temperature : float
        Softmax temperature tau > 0.

    Returns
    -------
    PlanHistory

    Examples
    --------
    >>> t, s = batch_for("aligned", 8, 3, 0.5, 0)
    >>> h = plan_history(t, s, reg=0.1, n_iters=20)
    >>> bool(h.exact_cost <= h.costs[-1] <= h.independent_cost)
    True
    """
    _check_solve(reg, n_iters, method)
    problem = batch_problem(teacher_logits, student_logits, temperature=temperature, dtype=dtype)
    result = sinkhorn(problem.mass, problem.mass, problem.cost, float(reg), n_iters=int(n_iters),
                      tol=0, method=method, return_log=True)
    D64 = problem.cost.double().numpy()
    full = _curves(result, D64, "columns")
    exact, independent = _limits(D64)
    return PlanHistory(
        student_probs=problem.student_probs.double().numpy(),
        teacher_probs=problem.teacher_probs.double().numpy(), cost_matrix=D64,
        result=result, costs=full.costs, row_errors=full.row_errors, col_errors=full.col_errors,
        entropies=full.entropies, after_rows=_curves(result, D64, "rows"),
        exact_cost=exact, independent_cost=independent,
        sinkd_value=SCALE * float(result.cost),
        reg=float(reg), n_iters=int(n_iters), method=method, dtype=dtype,
        temperature=float(temperature),
    )


@dataclass(frozen=True, eq=False)
class ClassLevel:
    """Per-sample C x C transport between p_s[i] and p_t[i] under the 0/1 class cost."""

    plans: np.ndarray  # (N, C, C) plan of sample i: student class (rows) to teacher class
    costs: np.ndarray  # (N,) <P_i, 1 - I>
    exact: np.ndarray  # (N,) exact OT under the 0/1 cost: total variation |p_s_i - p_t_i|_1 / 2
    total: float  # sum of costs: the level="class" term before SCALE (unit marginals)
    term: float  # SCALE * total: sinkd_loss(level="class")
    row_errors: np.ndarray  # (N,) |P_i 1 - p_s_i|_1: the rows' distance to their masses
    col_errors: np.ndarray  # (N,) |P_i^T 1 - p_t_i|_1
    n_iters: int
    tolerance: float  # CONVERGED_L1 of the dtype

    @property
    def marginal_errors(self) -> np.ndarray:
        """(N,) L1 error of each sample's rows plus its columns."""
        return self.row_errors + self.col_errors

    @property
    def converged(self) -> bool:
        """Whether every sample's plan has its masses to the dtype's round-off (NaN: no)."""
        return bool(np.all(self.marginal_errors <= self.tolerance))

    @property
    def below_exact(self) -> np.ndarray:
        """Indices of the samples whose cost sits below their exact OT (possible only for a
        plan without the problem's marginals)."""
        return np.flatnonzero(self.costs < self.exact)


def class_level(history: PlanHistory) -> ClassLevel:
    """The class-wise view of the same batch and options (sinkd_loss's level="class").

    Examples
    --------
    >>> t, s = batch_for("aligned", 4, 3, 0.5, 0)
    >>> cl = class_level(plan_history(t, s, reg=0.01, n_iters=200, method="log"))
    >>> bool(np.allclose(cl.costs, cl.exact, atol=0.05))
    True
    """
    compute = compute_dtype(history.dtype)  # masses are probabilities: float16 would not sum to 1
    p_s = torch.as_tensor(history.student_probs).to(compute)  # (N, C)
    p_t = torch.as_tensor(history.teacher_probs).to(compute)
    n, c = p_s.shape
    M = (1.0 - torch.eye(c, dtype=compute)).expand(n, c, c)  # (N, C, C)
    res = sinkhorn(p_s, p_t, M, history.reg, n_iters=history.n_iters, tol=0,
                   method=history.method)
    costs = res.cost.double().numpy()
    P = res.plan.double().numpy()  # (N, C, C)
    return ClassLevel(P, costs, 0.5 * np.abs(history.student_probs - history.teacher_probs).sum(1),
                      float(costs.sum()), SCALE * float(costs.sum()),
                      row_errors=np.abs(P.sum(2) - p_s.double().numpy()).sum(1),
                      col_errors=np.abs(P.sum(1) - p_t.double().numpy()).sum(1),
                      n_iters=history.n_iters, tolerance=CONVERGED_L1[history.dtype])


@dataclass(frozen=True)
class LambdaSweep:
    """The SinKD transport at each lambda of a grid, same batch, T, method and dtype."""

    lambdas: np.ndarray  # (L,)
    costs: np.ndarray  # (L,) <P_T, D>
    marginal_errors: np.ndarray  # (L,) L1 error of rows plus columns of P_T
    seconds_per_iter: np.ndarray  # (L,) best of `repeats` solves, divided by T
    exact_cost: float
    independent_cost: float
    n_iters: int
    method: str
    dtype: str


def lambda_sweep(teacher_logits: np.ndarray, student_logits: np.ndarray, *,
                 lambdas: Sequence[float] = LAMBDAS, n_iters: int = 20, method: str = "log",
                 dtype: str = "float64", temperature: float = 2.0, repeats: int = 3,
                 progress: Callable[[float], None] | None = None) -> LambdaSweep:
    """Cost, marginal error and time per iteration of the SinKD solve for each lambda.

    Converged entropic plans have a cost nondecreasing in lambda, from exact OT (lambda -> 0)
    to the independent coupling (lambda -> infinity); with few iterations T, small lambdas
    are not converged, which the marginal error shows.

    Parameters
    ----------
    teacher_logits, student_logits : array, shape (N, C)
    lambdas : sequence of float
        Grid of lambda > 0.
    n_iters, method, dtype, temperature
        As in :func:`plan_history`.
    repeats : int
        Solves timed per lambda (the fastest counts).
    progress : callable, optional
        Called with the fraction done after each lambda.

    Returns
    -------
    LambdaSweep

    Examples
    --------
    >>> t, s = batch_for("aligned", 6, 3, 0.5, 0)
    >>> sw = lambda_sweep(t, s, lambdas=(0.05, 0.5, 5.0), n_iters=300, repeats=1)
    >>> bool(np.all(np.diff(sw.costs) > 0))
    True
    """
    lambdas = [float(x) for x in lambdas]
    if not lambdas:
        raise ValueError("lambdas must name at least one lambda, got none")
    for reg in lambdas:
        _check_solve(reg, n_iters, method)
    check_int("repeats", repeats, low=1)
    problem = batch_problem(teacher_logits, student_logits, temperature=temperature, dtype=dtype)
    D, mass = problem.cost, problem.mass
    rows = []
    for k, reg in enumerate(lambdas):
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            res = sinkhorn(mass, mass, D, reg, n_iters=int(n_iters), tol=0, method=method)
            best = min(best, time.perf_counter() - start)
        rows.append((float(res.cost), float(res.marginal_error), best / n_iters))
        if progress is not None:
            progress((k + 1) / len(lambdas))
    costs, errors, seconds = (np.array(col) for col in zip(*rows, strict=True))
    return LambdaSweep(np.array(lambdas), costs, errors, seconds, *_limits(D.double().numpy()),
                       int(n_iters), method, dtype)
