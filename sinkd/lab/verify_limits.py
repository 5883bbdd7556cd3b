r"""The exact-OT limit of the verification: entropic transport cost against ``ot.emd2``.

The converged entropic plan :math:`P_\lambda` minimises :math:`\langle P, C\rangle - \lambda
H(P)` over the plans with the given marginals, :math:`H(P) = -\sum P \log P`. Comparing it with
the exact plan :math:`P^\star` of ``ot.emd`` gives

.. math::
    0 \;\le\; \langle P_\lambda, C\rangle - \mathrm{OT}
      \;\le\; \lambda\,(H(P_\lambda) - H(P^\star)) \;\le\; \lambda \log(nm)

(probability masses; times the total mass otherwise). Only the **converged** plan obeys it: a
plan whose marginals are off by e can undercut OT by up to 2 e max|C|. :func:`emd_limit` sweeps
reg (``EMD_REGS``, or :func:`emd_ladder` around a chosen reg) and :func:`emd_limit_checks` turns
the sweep into checks (:class:`sinkd.lab.verify_checks.Check`), the last ones of
:func:`sinkd.lab.verify.run_suite`: the gap relative to OT must lie in the interval above, whose
upper end the plans give, widened by the marginal error and round-off.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import ot

from sinkd.lab.verify_checks import Check, check
from sinkd.sinkhorn import sinkhorn

EMD_REGS = (1.0, 0.3, 0.1, 0.03, 0.01)
# the suite's regs: the entropic bias lambda (H(P_lambda) - H(P*)) is below 1e-2 of OT there,
# so the checks' bars are too (larger lambda are drawn on the page, not checked in the suite)
SUITE_REGS = (0.005, 0.002)
# a plan whose row marginals are off by more than this (L1, of mass 1) makes no claim: its
# slack 2 e max|C| would swamp the entropic bias (the sweep stops at 1e-8 where it can)
MARGINAL_LIMIT = 1e-4
EPS = float(np.finfo(np.float64).eps)


@dataclass
class EmdLimit:
    """The entropic transport cost against exact OT (``ot.emd2``) as reg shrinks, in the units
    of the masses given (their total is ``mass``)."""

    regs: list[float]
    costs: list[float]  # <P_reg, C> of the entropic plan after the run
    exact: float  # ot.emd2
    bounds: list[float]  # reg * log(n m) * mass: the loose bound
    entropy_bounds: list[float]  # reg * (H(P_reg) - H(P*)) * mass: the sharp bound
    converged: list[bool]
    marginal_errors: list[float]  # L1 errors of the plan's row marginal / mass, at the end
    n_iters: list[int]
    max_cost: float
    mass: float = 1.0


def emd_ladder(reg: float) -> list[float]:
    """EMD_REGS with ``reg`` added, largest first: the sweep towards exact OT for a chosen reg.

    Examples
    --------
    >>> emd_ladder(0.05)
    [1.0, 0.3, 0.1, 0.05, 0.03, 0.01]
    """
    return sorted({*EMD_REGS, float(reg)}, reverse=True)


def _entropy(P: np.ndarray) -> float:
    positive = P[P > 0]
    return float(-(positive * np.log(positive)).sum())


def emd_limit(a: np.ndarray, b: np.ndarray, cost: np.ndarray, regs: Sequence[float] = EMD_REGS,
              max_iters: int = 5000, tol: float = 1e-7) -> EmdLimit:
    r"""Solve to convergence for each reg and compare with ``ot.emd2``.

    Parameters
    ----------
    a, b, cost : arrays, shapes (n,), (m,), (n, m)
        Masses of equal total and cost; solved on the masses normalised to 1, reported in the
        masses' own units (times their total).
    regs : sequence of float
        Entropic weights, each > 0.
    max_iters, tol : int, float
        Log-domain Sinkhorn runs until the row-marginal L1 error is <= tol (of mass 1), at most
        max_iters.

    Returns
    -------
    EmdLimit

    Examples
    --------
    >>> lim = emd_limit([1.0, 1.0], [1.0, 1.0], [[0.0, 1.0], [1.0, 0.0]], regs=(0.01,))
    >>> lim.exact, lim.costs[0] < 1e-40, lim.entropy_bounds[0] <= lim.bounds[0]
    (0.0, True, True)
    """
    a, b, cost = (np.asarray(x, dtype=np.float64) for x in (a, b, cost))
    mass = float(a.sum())
    p, q = a / mass, b / b.sum()
    n, m = cost.shape
    exact_plan = ot.emd(p, q, cost)
    out = EmdLimit([], [], mass * float(np.sum(exact_plan * cost)), [], [], [], [], [],
                   float(np.abs(cost).max()), mass)
    for reg in regs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-convergence is recorded, not warned about
            res = sinkhorn(p, q, cost, float(reg), n_iters=max_iters, tol=tol, method="log")
        out.regs.append(float(reg))
        out.costs.append(mass * float(res.cost))
        out.bounds.append(mass * float(reg) * math.log(n * m))
        out.entropy_bounds.append(
            mass * float(reg) * max(_entropy(res.plan) - _entropy(exact_plan), 0.0))
        out.converged.append(bool(res.converged))
        out.marginal_errors.append(float(res.marginal_error))
        out.n_iters.append(res.n_iters)
    return out


def emd_limit_checks(n: int = 12, seed: int = 0, limit: EmdLimit | None = None,
                     label: str = "", regs: Sequence[float] = SUITE_REGS,
                     require_convergence: bool | None = None) -> list[Check]:
    r"""(<P_reg, C> - ot.emd2) / ot.emd2 lies in [-s, reg (H(P_reg) - H(P*)) / OT + s].

    Without ``limit``, on a random n x n problem of probability masses, solved for ``regs`` (up
    to 100,000 iterations, stopping at a marginal error of 1e-8). The slack s allows for the
    plan's marginal error e (rounding it to the marginals moves 2 e max|C| of cost) and
    round-off. A run with e > MARGINAL_LIMIT makes no claim: it gives no check, or a failed one
    with ``require_convergence`` (the default for the suite's own problem, where reaching the
    marginals is part of what is verified).
    """
    if limit is None:
        rng = np.random.default_rng(seed)
        a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(n))
        limit = emd_limit(a, b, rng.random((n, n)), regs=regs, max_iters=100_000, tol=1e-8)
        label = label or f"n={n} probability masses"
        require_convergence = True if require_convergence is None else require_convergence
    scale = abs(limit.exact) if limit.exact != 0 else 1.0
    checks = []
    for reg, c, sharp, e in zip(limit.regs, limit.costs, limit.entropy_bounds,
                                limit.marginal_errors, strict=True):
        ok = e <= MARGINAL_LIMIT
        if not ok and not require_convergence:
            continue
        slack = (2 * e + 64 * EPS) * limit.max_cost * limit.mass / scale  # marginals, round-off
        name = "transport cost of the converged plan vs ot.emd2, relative"
        made = check(name, f"{label} reg={reg:g}", (c - limit.exact) / scale,
                     sharp / scale + slack, lower=-slack)
        if not ok:  # failed: the sweep must converge to be compared with exact OT
            made = Check(f"{name}: marginals not reached (error {e:.1e})", made.problem,
                         made.error, made.tolerance, False, lower=made.lower)
        checks.append(made)
    return checks
