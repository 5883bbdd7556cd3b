r"""Verify our Sinkhorn solver against POT (Python Optimal Transport), live.

Every check compares a number we compute with one POT computes independently and records the
discrepancy **relative to the reference's magnitude**, the tolerance it must meet and the time
each side took. The identities used:

- rows-then-columns scaling equals POT's columns-then-rows on the transposed problem, iteration by
  iteration: ``P_ours(a, b, C, t) == ot.sinkhorn(b, a, C.T, reg, numItermax=t, stopThr=0).T``
  (POT's ``method="sinkhorn_log"`` where its float64 kernel would underflow);
- hence the transport costs agree (``ot.sinkhorn2``), and so do gradients of the cost through all
  T unrolled iterations (POT's torch backend differentiates through its loop too);
- both of our methods, kernel and log domain, give POT's plan within the kernel's range
  (max|C|/reg below ``KERNEL_LIMIT``); beyond it the kernel underflows and is only reported on;
- the transport cost of the converged entropic plan lies between exact OT (``ot.emd2``) and
  exact OT plus the entropic bias (:mod:`sinkd.lab.verify_limits`).

The relative tolerances follow the precision the dtype allows on the problem
(:func:`sinkd.lab.verify_checks.tolerances`), none above 1e-2. ``python -m sinkd verify`` runs
:func:`run_suite` and exits non-zero on any failed check. The page's problem is
:func:`sinkd.lab.batches.sinkd_problem`.
"""

from __future__ import annotations

import json
import math
import platform
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import ot
import torch

from sinkd.lab.units import sci
from sinkd.lab.verify_checks import (
    DTYPES,
    MAX_TOLERANCE,
    TOLERANCE,
    Check,
    check,
    relative_error,
    summary_line,
    tolerances,
)
from sinkd.lab.verify_limits import SUITE_REGS, emd_limit_checks
from sinkd.sinkhorn import sinkhorn
from sinkd.validation import check_choice, check_int

__all__ = ["DTYPES", "KERNEL_LIMIT", "PlanPair", "ProblemResult", "Report", "compare_problem",
           "check_problem", "format_report", "plans_at", "run_suite", "tolerances"]

# exp(-C / reg) and its scalings stay representable up to this max|C| / reg (sinkd's "auto"
# rule): 354 in float64, 43.7 in float32. POT runs in float64.
KERNEL_LIMIT = {name: 0.5 * -math.log(float(np.finfo(name).tiny)) for name in DTYPES}
POT_KERNEL_LIMIT = KERNEL_LIMIT["float64"]
GRADIENT_NOTE = "(32 ε max C/λ)"
RESUME_AFTER = 1000  # POT iterations that fresh per-t runs may cost before POT is resumed


@dataclass
class ProblemResult:
    """Everything compared on one problem: the checks and the curves and times behind them."""

    label: str
    dtype: str  # the dtype asked for; the plan comparisons ran in tolerances["plan_dtype"]
    reg: float
    n_iters: int
    pot_method: str  # POT's solver used as the reference: "sinkhorn" or "sinkhorn_log"
    tolerances: dict[str, Any]
    iterations: list[int]  # the t compared
    plan_errors: list[float]  # max |P_ours(t) - P_POT(t)| / max P_POT(t) for each t
    cost_errors: list[float]  # |<P_ours(t), C> - <P_POT(t), C>| / <P_POT(t), C>
    ours_cost: float  # <P_T, C> (the masses' own units)
    pot_cost: float  # ot.sinkhorn2 on the transposed problem
    ours_ms: float  # best of a few runs of T iterations, no history recorded
    pot_ms: float
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # comparisons that could not be made, and why

    def to_dict(self, checks: bool = False) -> dict:
        """The numbers, JSON-ready (null where not finite); the checks only if asked for."""
        data = asdict(self)
        if not checks:
            del data["checks"]
        return _finite_or_none(data)


@dataclass
class Report:
    """A suite's checks, the problems they came from, and the versions that ran them."""

    checks: list[Check] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    problems: list[ProblemResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def rows(self) -> list[dict]:
        """One dict per check, with its error / tolerance ratio, for a table."""
        return [{**asdict(c), "ratio": c.ratio} for c in self.checks]

    def to_json(self) -> str:
        """Strict JSON: non-finite numbers are written as null."""
        data = {"passed": self.passed, "summary": summary_line(self.checks), "meta": self.meta,
                "checks": self.rows(),
                "problems": [p.to_dict() for p in self.problems]}
        return json.dumps(_finite_or_none(data), indent=1, allow_nan=False)


@dataclass(frozen=True)
class PlanPair:
    """Our plan and POT's after iteration ``t`` of one problem, float64 arrays (n, m)."""

    t: int
    ours: np.ndarray
    pot: np.ndarray
    method: str  # the method our solver ran ("kernel" or "log")
    pot_method: str

    @property
    def difference(self) -> np.ndarray:
        return self.ours - self.pot


def _finite_or_none(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_none(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _best_ms(fn: Callable, repeats: int) -> float:
    """Best of ``repeats`` runs, or fewer once 0.2 s have been spent (slow runs vary little)."""
    best, spent = math.inf, 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best, spent = min(best, 1e3 * elapsed), spent + elapsed
        if spent > 0.2:
            break
    return best


def _iterations_to_compare(n_iters: int) -> list[int]:
    if n_iters <= 20:
        return list(range(1, n_iters + 1))
    marks = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    return [t for t in marks if t < n_iters] + [n_iters]


def _pot_method(cost: np.ndarray, reg: float) -> str:
    return "sinkhorn" if np.abs(cost).max() / reg <= POT_KERNEL_LIMIT else "sinkhorn_log"


def _cost_error(ours: float, reference: float) -> float:
    return relative_error([ours], [reference])


def plans_at(a, b, cost, reg: float, t: int, dtype: str = "float64") -> PlanPair:
    """Our plan and POT's (transposed problem, transposed back) after iteration ``t``.

    Examples
    --------
    >>> pair = plans_at([1.0, 1.0], [1.0, 1.0], [[0.0, 1.0], [1.0, 0.0]], 1.0, 3)
    >>> bool(abs(pair.difference).max() < 1e-15), pair.pot_method
    (True, 'sinkhorn')
    """
    check_choice("dtype", dtype, DTYPES)
    t = check_int("t", t, low=1)
    tdt = getattr(torch, dtype)
    at, bt, C = (torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=tdt) for x in (a, b, cost))
    ours = sinkhorn(at, bt, C, reg, n_iters=t, tol=0)
    a, b, cost = (np.asarray(x, dtype=np.float64) for x in (a, b, cost))
    method = _pot_method(cost, reg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # POT warns about its own numerics at small reg
        pot = ot.sinkhorn(b, a, cost.T, reg, method=method, numItermax=t, stopThr=0,
                          warn=False).T
    return PlanPair(t, ours.plan.double().numpy(), np.asarray(pot), ours.method, method)


def compare_problem(a: np.ndarray, b: np.ndarray, cost: np.ndarray, reg: float, n_iters: int,
                    dtype: str = "float64", label: str = "", every_iteration: bool = False,
                    repeats: int = 3) -> ProblemResult:
    """All POT comparisons on one problem: plans per iteration, cost, both methods, gradient.

    Parameters
    ----------
    a, b : arrays, shapes (n,), (m,)
        Row and column masses of equal total (not necessarily 1).
    cost : array, shape (n, m)
    reg, n_iters : float, int
        Entropic weight lambda > 0 and iterations T >= 1, all run (``tol=0`` on both sides).
    dtype : {"float64", "float32"}
        Our solver's dtype; POT always runs in float64 (the reference). A comparison whose
        float32 bar would exceed 1e-2 runs ours in float64 (a note says so).
    label : str
        Names the problem in the checks; a description of it by default.
    every_iteration : bool
        Compare the plans after every t <= T (else after t = 1, 2, 5, 10, ... and T).
    repeats : int
        Timings are the best of up to this many runs (fewer once 0.2 s is spent).

    Returns
    -------
    ProblemResult

    Examples
    --------
    >>> res = compare_problem([1.0, 1.0], [1.0, 1.0], [[0.0, 1.0], [1.0, 0.0]], 1.0, 3)
    >>> [c.passed for c in res.checks], res.iterations
    ([True, True, True, True], [1, 2, 3])
    """
    check_choice("dtype", dtype, DTYPES)
    tol = tolerances(np.asarray(cost, dtype=np.float64), reg, dtype)
    run = tol["plan_dtype"]
    tdt = getattr(torch, run)
    at, bt, C = (torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=tdt) for x in (a, b, cost))
    ours = sinkhorn(at, bt, C, reg, n_iters=n_iters, tol=0, return_log=True)  # validates all
    a, b, cost = (np.asarray(x, dtype=np.float64) for x in (a, b, cost))
    n, m = cost.shape
    method = _pot_method(cost, reg)
    problem = label or (f"n={n} m={m} reg={reg:g} T={n_iters} {dtype} mass={a.sum():g}"
                        + ("" if method == "sinkhorn" else " POT=sinkhorn_log"))
    pot = dict(reg=reg, method=method, stopThr=0, warn=False)
    steps = list(range(1, n_iters + 1)) if every_iteration else _iterations_to_compare(n_iters)
    plan_errors, cost_errors = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # POT warns about its own numerics at small reg
        refs = _pot_plans(a, b, cost, steps, pot)
        for t, ref in zip(steps, refs, strict=True):
            mine = (ours.plan if t == n_iters else ours.plan_at(t)).double().numpy()
            plan_errors.append(relative_error(mine, ref))
            cost_errors.append(_cost_error(float(np.sum(mine * cost)), float(np.sum(ref * cost))))
        pot_cost = float(ot.sinkhorn2(b, a, cost.T, numItermax=n_iters, **pot))
        cost_errors[-1] = _cost_error(float(ours.cost), pot_cost)  # the solver's own cost at T
        ours_ms = _best_ms(lambda: sinkhorn(at, bt, C, reg, n_iters=n_iters, tol=0), repeats)
        pot_ms = _best_ms(lambda: ot.sinkhorn(b, a, cost.T, numItermax=n_iters, **pot), repeats)
    result = ProblemResult(problem, dtype, float(reg), n_iters, method, tol, steps, plan_errors,
                           cost_errors, float(ours.cost), pot_cost, ours_ms, pot_ms)
    if run != dtype:
        result.notes.append(
            f"In {dtype}, max C/λ = {sci(tol['kappa'], 2)} allows no plan check within "
            f"{MAX_TOLERANCE:g}: ours ran in float64 for these comparisons.")
    result.checks += [
        check("plan after every iteration vs ot.sinkhorn (transposed)", problem,
              max(plan_errors), tol["plan"], ours_ms, pot_ms),
        check("transport cost vs ot.sinkhorn2", problem, cost_errors[-1], tol["cost"]),
    ]
    result.checks += _other_method(ours, at, bt, C, reg, n_iters, refs[-1], tol, run, problem,
                                   result.notes)
    if sum(steps) > RESUME_AFTER:
        result.notes.append(
            f"POT's plans for t < {n_iters} come from resuming POT from its own state (warmstart),"
            f" one run of {n_iters} iterations in all; the plan at t = {n_iters} is a fresh "
            f"ot.sinkhorn(numItermax={n_iters}).")
    if method == "sinkhorn_log":
        result.notes.append(
            f"POT's float64 kernel would underflow (max C/λ = {sci(tol['kappa'], 2)} > "
            f"{POT_KERNEL_LIMIT:.0f}): the reference is ot.sinkhorn(method='sinkhorn_log').")
    if tol["gradient_dtype"] != run:
        result.notes.append(
            f"The gradient's {run} bar {GRADIENT_NOTE} would exceed {MAX_TOLERANCE:g} at max "
            f"C/λ = {sci(tol['kappa'], 2)}: the gradient check runs ours in float64.")
    result.checks.append(_gradient_check(a, b, cost, reg, n_iters, tol["gradient_dtype"],
                                         problem, tol["gradient"], method))
    return result


def _other_method(ours, at, bt, C, reg, n_iters, ref, tol, run, problem, notes) -> list[Check]:
    """The method "auto" did not run, against POT's plan at T; or a note where it cannot be."""
    other = "log" if ours.method == "kernel" else "kernel"
    if other == "kernel" and tol["kappa"] > KERNEL_LIMIT[run]:
        res = sinkhorn(at, bt, C, reg, n_iters=n_iters, tol=0, method="kernel")
        gap = relative_error(res.plan.double().numpy(), ref)
        outcome = (f"is off by {sci(gap, 2)} (relative)" if math.isfinite(gap)
                   else "has NaN or Inf")
        notes.append(
            f"max C/λ = {sci(tol['kappa'], 2)} is beyond the {run} kernel's range "
            f"({KERNEL_LIMIT[run]:.1f}): exp(-C/λ) underflows and the kernel method's plan "
            f"{outcome}, so it is not checked. method='auto' runs the log domain here, "
            "which the other checks verify.")
        return []
    res = sinkhorn(at, bt, C, reg, n_iters=n_iters, tol=0, method=other)
    return [check(f"{other} method's plan at T vs ot.sinkhorn", problem,
                  relative_error(res.plan.double().numpy(), ref), tol["plan"])]


def _pot_plans(a: np.ndarray, b: np.ndarray, cost: np.ndarray, steps: list[int],
               pot: dict) -> list[np.ndarray]:
    """POT's plan after each t of ``steps`` (transposed problem, transposed back).

    Fresh runs ``numItermax=t`` when they cost at most RESUME_AFTER iterations in all; else, for
    t < T, POT is resumed from its own state (``warmstart``), t - t_prev iterations at a time, so
    every t <= 200 costs T iterations, not T^2 / 2 (exact for sinkhorn_log; the kernel's u, v
    pass through log and exp, 1 ulp). The last t is always a fresh run.
    """
    if sum(steps) <= RESUME_AFTER:
        return [ot.sinkhorn(b, a, cost.T, numItermax=t, **pot).T for t in steps]
    plans, state, done = [], None, 0
    for t in steps[:-1]:
        plan, log = ot.sinkhorn(b, a, cost.T, numItermax=t - done, warmstart=state, log=True,
                                **pot)
        state = ((log["log_u"], log["log_v"]) if pot["method"] == "sinkhorn_log"
                 else (np.log(log["u"]), np.log(log["v"])))
        plans.append(plan.T)
        done = t
    return plans + [ot.sinkhorn(b, a, cost.T, numItermax=steps[-1], **pot).T]


def check_problem(a: np.ndarray, b: np.ndarray, cost: np.ndarray, reg: float, n_iters: int,
                  dtype: str = "float64", label: str = "") -> list[Check]:
    """The checks of :func:`compare_problem` alone."""
    return compare_problem(a, b, cost, reg, n_iters, dtype, label).checks


def _gradient_check(a, b, cost, reg, n_iters, dtype, problem, rel, method) -> Check:
    """d<P, C>/dC through all T unrolled iterations, ours against POT's torch backend,
    relative to the largest entry of POT's gradient."""
    tdt = getattr(torch, dtype)
    C = torch.tensor(cost, dtype=tdt, requires_grad=True)
    res = sinkhorn(torch.tensor(a, dtype=tdt), torch.tensor(b, dtype=tdt), C, reg,
                   n_iters=n_iters, tol=0)
    (ours,) = torch.autograd.grad(res.cost, C)
    CT = torch.tensor(cost.T.copy(), dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = ot.sinkhorn2(torch.tensor(b), torch.tensor(a), CT, reg, method=method,
                             numItermax=n_iters, stopThr=0, warn=False)
    (theirs,) = torch.autograd.grad(value, CT)
    error = relative_error(ours.double().numpy(), theirs.T.numpy())  # NaN fails the check
    return check(f"gradient of the cost (all T={n_iters} iterations unrolled, ours in {dtype}) "
                 "vs POT torch", problem, error, rel)


def random_problems(quick: bool, seed: int) -> Iterator[tuple]:
    """The random suite: sizes, reg, T, unit and probability masses, float64 and float32."""
    rng = np.random.default_rng(seed)
    sizes = [(5, 7), (16, 16)] if quick else [(5, 7), (16, 16), (32, 24), (64, 64)]
    regs = [0.001, 0.01, 0.1, 1.0, 10.0]
    iters = [1, 5, 20] if quick else [1, 2, 5, 20, 200]
    for (n, m) in sizes:
        for reg in regs:
            for masses in ("unit", "probability"):
                cost = rng.random((n, m)) * 2.0  # SinKD's L1 costs live in [0, 2]
                if masses == "unit":
                    a, b = np.ones(n), np.full(m, n / m)
                else:
                    a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(m))
                T = int(rng.choice(iters))
                for dtype in DTYPES:
                    yield a, b, cost, reg, T, dtype


def run_suite(quick: bool = False, seed: int = 0,
              on_check: Callable[[int, int], None] | None = None) -> Report:
    """Run every comparison; ``on_check(done, total)`` reports progress."""
    problems = list(random_problems(quick, seed))
    report = Report(meta=dict(
        seed=seed, quick=quick, torch=torch.__version__, pot=ot.__version__,
        numpy=np.__version__, python=platform.python_version(), tolerance_floors=TOLERANCE,
        tolerance_rule=("errors relative to the reference's magnitude; bars max(floor, 4 eps "
                        "max|C|/reg) (plan, cost), max(floor, 32 eps max|C|/reg) (gradient), "
                        f"none above {MAX_TOLERANCE:g}; see sinkd.lab.verify_checks"),
    ))
    total = len(problems) + 1
    sinkhorn(np.ones(2), np.ones(2), np.eye(2), 1.0, n_iters=10, tol=0)  # warm-up: not timed
    for done, (a, b, cost, reg, T, dtype) in enumerate(problems, 1):
        result = compare_problem(a, b, cost, reg, T, dtype)
        report.problems.append(result)
        report.checks.extend(result.checks)
        if on_check:
            on_check(done, total)
    report.checks.extend(emd_limit_checks(seed=seed, regs=SUITE_REGS))
    if on_check:
        on_check(total, total)
    return report


def format_report(report: Report) -> str:
    """A plain-text table, one line per check, failures marked."""
    lines = [f"{'':4} {'error':>9} {'tol':>8} {'err/tol':>8} {'ours ms':>8} {'POT ms':>8}  "
             "check | problem   (errors relative to the reference)"]
    for c in report.checks:
        ms = [f"{sci(x, 2):>8}" if x is not None else f"{'':8}" for x in (c.ours_ms, c.pot_ms)]
        lines.append(f"{'ok' if c.passed else 'FAIL':4} {sci(c.error, 2):>9} "
                     f"{sci(c.tolerance, 2):>8} {sci(c.ratio, 2):>8} {ms[0]} {ms[1]}  {c.name} "
                     f"| {c.problem}")
    failed = sum(not c.passed for c in report.checks)
    lines.append(f"{len(report.checks) - failed} checks agree with POT, {failed} disagree")
    return "\n".join(lines)
