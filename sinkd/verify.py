"""Verify our Sinkhorn solver against POT (Python Optimal Transport), live.

Every check compares a number we compute with one POT computes independently and records the
discrepancy, the tolerance it must meet and the time each side took. The identities used:

- rows-then-columns scaling equals POT's columns-then-rows on the transposed problem, iteration by
  iteration: ``P_ours(a, b, C, t) == ot.sinkhorn(b, a, C.T, reg, numItermax=t, stopThr=0).T``;
- hence the transport costs agree (``ot.sinkhorn2``), and so do gradients of the cost through the
  unrolled iterations (POT's torch backend differentiates through its loop too);
- our kernel and log-domain methods agree where the kernel does not underflow;
- as reg -> 0 the transport cost of the entropic plan tends to exact OT (``ot.emd2``) within the
  entropic bias bound ``reg * log(n m)`` (probability masses).

``python -m sinkd verify`` runs :func:`run_suite` and exits non-zero on any failed check.
"""

from __future__ import annotations

import json
import math
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import ot
import torch

from sinkd.sinkhorn import sinkhorn

TOLERANCE = {"float64": 1e-12, "float32": 1e-4}  # max |difference| per unit of total mass


@dataclass(frozen=True)
class Check:
    """One comparison: what, on which problem, how far apart, and the bar it had to clear."""

    name: str
    problem: str
    error: float
    tolerance: float
    passed: bool
    ours_ms: float | None = None
    pot_ms: float | None = None


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_json(self) -> str:
        return json.dumps({"passed": self.passed, "meta": self.meta,
                           "checks": [asdict(c) for c in self.checks]}, indent=1)


def _timed(fn: Callable):
    start = time.perf_counter()
    value = fn()
    return value, 1e3 * (time.perf_counter() - start)


def _check(name, problem, error, tolerance, ours_ms=None, pot_ms=None) -> Check:
    error = float(error)
    passed = math.isfinite(error) and error <= tolerance
    return Check(name, problem, error, tolerance, passed, ours_ms, pot_ms)


def _iterations_to_compare(n_iters: int) -> list[int]:
    if n_iters <= 20:
        return list(range(1, n_iters + 1))
    marks = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    return [t for t in marks if t < n_iters] + [n_iters]


def check_problem(a: np.ndarray, b: np.ndarray, cost: np.ndarray, reg: float, n_iters: int,
                  dtype: str = "float64", label: str = "") -> list[Check]:
    """All POT comparisons on one problem: plans per iteration, cost, kernel vs log, gradient."""
    a, b, cost = (np.asarray(x, dtype=np.float64) for x in (a, b, cost))
    mass = float(a.sum())
    tol = TOLERANCE[dtype] * max(1.0, mass)
    n, m = cost.shape
    problem = label or f"n={n} m={m} reg={reg:g} T={n_iters} {dtype} mass={mass:g}"
    tdt = getattr(torch, dtype)
    C = torch.tensor(cost, dtype=tdt)
    at, bt = torch.tensor(a, dtype=tdt), torch.tensor(b, dtype=tdt)
    checks = []

    ours, ours_ms = _timed(lambda: sinkhorn(at, bt, C, reg, n_iters=n_iters, tol=0,
                                            return_log=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # POT warns about its own numerical issues at small reg
        ref, pot_ms = _timed(lambda: ot.sinkhorn(b, a, cost.T, reg, numItermax=n_iters,
                                                 stopThr=0, warn=False).T)
        worst = 0.0
        for t in _iterations_to_compare(n_iters):
            ref_t = ref if t == n_iters else ot.sinkhorn(b, a, cost.T, reg, numItermax=t,
                                                         stopThr=0, warn=False).T
            worst = max(worst, float(np.abs(ours.plan_at(t).double().numpy() - ref_t).max()))
        pot_cost = float(ot.sinkhorn2(b, a, cost.T, reg, numItermax=n_iters, stopThr=0,
                                      warn=False))
    checks.append(_check("plan after every iteration vs ot.sinkhorn (transposed)", problem,
                         worst, tol, ours_ms, pot_ms))
    checks.append(_check("transport cost vs ot.sinkhorn2", problem,
                         abs(float(ours.cost) - pot_cost), tol))

    kernel = sinkhorn(at, bt, C, reg, n_iters=n_iters, tol=0, method="kernel")
    log = sinkhorn(at, bt, C, reg, n_iters=n_iters, tol=0, method="log")
    if bool(torch.isfinite(kernel.plan).all()):  # where the kernel underflows there is no peer
        gap = float((kernel.plan.double() - log.plan.double()).abs().max())
        checks.append(_check("kernel method vs log method", problem, gap, tol))

    checks.append(_gradient_check(a, b, cost, reg, min(n_iters, 50), dtype, problem, tol))
    return checks


def _gradient_check(a, b, cost, reg, n_iters, dtype, problem, tol) -> Check:
    """d<P, C>/dC through the unrolled iterations, ours against POT's torch backend."""
    tdt = getattr(torch, dtype)
    C = torch.tensor(cost, dtype=tdt, requires_grad=True)
    res = sinkhorn(torch.tensor(a, dtype=tdt), torch.tensor(b, dtype=tdt), C, reg,
                   n_iters=n_iters, tol=0, method="kernel")
    (ours,) = torch.autograd.grad(res.cost, C)
    CT = torch.tensor(cost.T.copy(), dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = ot.sinkhorn2(torch.tensor(b), torch.tensor(a), CT, reg, numItermax=n_iters,
                             stopThr=0, warn=False)
    (theirs,) = torch.autograd.grad(value, CT)
    error = float((ours.double() - theirs.T).abs().max()) if torch.isfinite(ours).all() else math.inf
    return _check(f"gradient of the cost (T={n_iters}, unrolled) vs POT torch", problem, error,
                  tol * 10)


def emd_limit_checks(n: int = 12, seed: int = 0) -> list[Check]:
    """As reg shrinks, <P_reg, C> approaches ot.emd2 within reg * log(n m) (probability masses)."""
    rng = np.random.default_rng(seed)
    a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(n))
    cost = rng.random((n, n))
    exact = float(ot.emd2(a, b, cost))
    checks = []
    for reg in (1.0, 0.1, 0.01, 0.001):
        res = sinkhorn(a, b, cost, reg, n_iters=100_000, tol=1e-10, method="log")
        gap = float(res.cost) - exact
        bound = reg * math.log(n * n)
        # the entropic plan can only cost more than the optimum, and at most the bound more
        error = max(gap - bound, -gap - 1e-12, 0.0)
        checks.append(_check(f"cost - ot.emd2 within reg*log(n^2) = {bound:.2g} (gap {gap:.2e})",
                             f"n={n} reg={reg:g} probability masses", error, 0.0))
    return checks


def random_problems(quick: bool, seed: int):
    """The random suite: sizes, reg, T, unit and probability masses, float64 and float32."""
    rng = np.random.default_rng(seed)
    sizes = [(5, 7), (16, 16)] if quick else [(5, 7), (16, 16), (32, 24), (64, 64)]
    regs = [0.01, 0.1, 1.0, 10.0]
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
                for dtype in ("float64", "float32"):
                    if dtype == "float32" and reg < 0.1:
                        continue  # float32 kernel scalings lose digits at small reg: log-only
                    yield a, b, cost, reg, T, dtype


def run_suite(quick: bool = False, seed: int = 0,
              on_check: Callable[[int, int], None] | None = None) -> Report:
    """Run every comparison; ``on_check(done, total)`` reports progress."""
    problems = list(random_problems(quick, seed))
    report = Report(meta=dict(
        seed=seed, quick=quick, torch=torch.__version__, pot=ot.__version__,
        numpy=np.__version__, python=platform.python_version(), tolerances=TOLERANCE,
    ))
    total = len(problems) + 1
    sinkhorn(np.ones(2), np.ones(2), np.eye(2), 1.0)  # warm-up: first-call costs are not timed
    for done, (a, b, cost, reg, T, dtype) in enumerate(problems, 1):
        report.checks.extend(check_problem(a, b, cost, reg, T, dtype))
        if on_check:
            on_check(done, total)
    report.checks.extend(emd_limit_checks(seed=seed))
    if on_check:
        on_check(total, total)
    return report


def format_report(report: Report) -> str:
    """A plain-text table, one line per check, failures marked."""
    lines = [f"{'':4} {'error':>9} {'tol':>8} {'ours ms':>8} {'POT ms':>8}  check | problem"]
    for c in report.checks:
        ms = [f"{x:8.2f}" if x is not None else f"{'':8}" for x in (c.ours_ms, c.pot_ms)]
        lines.append(f"{'ok' if c.passed else 'FAIL':4} {c.error:9.1e} {c.tolerance:8.0e} "
                     f"{ms[0]} {ms[1]}  {c.name} | {c.problem}")
    failed = sum(not c.passed for c in report.checks)
    lines.append(f"{len(report.checks) - failed} checks agree with POT, {failed} disagree")
    return "\n".join(lines)
