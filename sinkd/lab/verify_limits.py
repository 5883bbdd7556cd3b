r"""The exact-OT limit of the verification: entropic transport cost against ``ot.emd2``.

As reg -> 0 the transport cost of the converged entropic plan tends to exact OT (``ot.emd2``)
within the entropic bias bound ``reg * log(n m)`` (probability masses). :func:`emd_limit` sweeps
reg (``EMD_REGS``, or :func:`emd_ladder` around a chosen reg) and :func:`emd_limit_checks` turns
the sweep into checks (:class:`sinkd.lab.verify_checks.Check`), the last ones of
:func:`sinkd.lab.verify.run_suite`.
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


@dataclass
class EmdLimit:
    """The entropic transport cost against exact OT (``ot.emd2``) as reg shrinks."""

    regs: list[float]
    costs: list[float]  # <P_reg, C> of the converged entropic plan, probability masses
    exact: float  # ot.emd2
    bounds: list[float]  # reg * log(n m)
    converged: list[bool]
    marginal_errors: list[float]  # L1 errors of the plan's marginals at the end
    n_iters: list[int]
    max_cost: float


def emd_ladder(reg: float) -> list[float]:
    """EMD_REGS with ``reg`` added, largest first: the sweep towards exact OT for a chosen reg.

    Examples
    --------
    >>> emd_ladder(0.05)
    [1.0, 0.3, 0.1, 0.05, 0.03, 0.01]
    """
    return sorted({*EMD_REGS, float(reg)}, reverse=True)


def emd_limit(a: np.ndarray, b: np.ndarray, cost: np.ndarray, regs: Sequence[float] = EMD_REGS,
              max_iters: int = 5000, tol: float = 1e-7) -> EmdLimit:
    r"""Solve to convergence for each reg (probability masses) and compare with ``ot.emd2``.

    For the converged entropic plan :math:`P_\mathrm{reg}` of probability masses,
    :math:`0 \le \langle P_\mathrm{reg}, C \rangle - \mathrm{OT}(a, b) \le \mathrm{reg}\log(nm)`:
    it can only cost more than the optimum, and its entropy, at most :math:`\log(nm)`, bounds how
    much more.

    Parameters
    ----------
    a, b, cost : arrays, shapes (n,), (m,), (n, m)
        Masses (normalised here to total 1) and cost.
    regs : sequence of float
        Entropic weights, each > 0.
    max_iters, tol : int, float
        Log-domain Sinkhorn runs until the row-marginal L1 error is <= tol, at most max_iters.

    Returns
    -------
    EmdLimit

    Examples
    --------
    >>> lim = emd_limit([1.0, 1.0], [1.0, 1.0], [[0.0, 1.0], [1.0, 0.0]], regs=(0.01,))
    >>> lim.exact, lim.costs[0] < lim.bounds[0]
    (0.0, True)
    """
    a, b, cost = (np.asarray(x, dtype=np.float64) for x in (a, b, cost))
    p, q = a / a.sum(), b / b.sum()
    n, m = cost.shape
    out = EmdLimit([], [], float(ot.emd2(p, q, cost)), [], [], [], [],
                   float(np.abs(cost).max()))
    for reg in regs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-convergence is recorded, not warned about
            res = sinkhorn(p, q, cost, float(reg), n_iters=max_iters, tol=tol, method="log")
        out.regs.append(float(reg))
        out.costs.append(float(res.cost))
        out.bounds.append(float(reg) * math.log(n * m))
        out.converged.append(bool(res.converged))
        out.marginal_errors.append(float(res.marginal_error))
        out.n_iters.append(res.n_iters)
    return out


def emd_limit_checks(n: int = 12, seed: int = 0, limit: EmdLimit | None = None,
                     label: str = "") -> list[Check]:
    """As reg shrinks, <P_reg, C> approaches ot.emd2 within reg * log(n m) (probability masses).

    Without ``limit``, on a random n x n problem. A plan with row-marginal error e may undercut
    or overshoot by up to 2 e max|C| (rounding it to the marginals moves that much mass), so that
    slack is allowed; runs that did not converge make no claim and give no check. A check's
    error is how far the gap lies outside [-slack, bound + slack] (tolerance 0).
    """
    if limit is None:
        rng = np.random.default_rng(seed)
        a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(n))
        limit = emd_limit(a, b, rng.random((n, n)), regs=(1.0, 0.1, 0.01, 0.001),
                          max_iters=100_000, tol=1e-10)
        label = label or f"n={n} probability masses"
    checks = []
    for reg, c, bound, ok, e in zip(limit.regs, limit.costs, limit.bounds, limit.converged,
                                    limit.marginal_errors, strict=True):
        if not ok:
            continue
        gap, slack = c - limit.exact, 2 * e * limit.max_cost + 1e-12
        error = max(gap - bound - slack, -gap - slack, 0.0)
        checks.append(check(f"cost - ot.emd2 = {gap:.2e} within [0, reg*log(n m) = {bound:.2g}]",
                             f"{label} reg={reg:g}", error, 0.0))
    return checks
