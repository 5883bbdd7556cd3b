"""Shared problem generators and independent references for the Sinkhorn solver tests.

Nothing here imports ``sinkd``: the references are written from the equations, in numpy/scipy,
so that a test compares the solver with something it does not share code with.
"""

from __future__ import annotations

import numpy as np
import ot
from scipy.special import logsumexp

MASS_KINDS = ("prob", "unit", "other")  # total 1; a = ones(n) (total n); total 3.7


def masses(rng: np.random.Generator, n: int, m: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Random positive masses a (n,), b (m,) of equal total, the total chosen by ``kind``."""
    a = rng.random(n) + 0.1
    b = rng.random(m) + 0.1
    if kind == "prob":
        total = 1.0
    elif kind == "unit":
        a, total = np.ones(n), float(n)
    elif kind == "other":
        total = 3.7
    else:
        raise ValueError(kind)
    return a * (total / a.sum()), b * (total / b.sum())


def problem(
    seed: int, n: int = 7, m: int = 5, kind: str = "prob", scale: float = 1.0, offset: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 masses a, b (equal totals) and a cost ``offset + scale * U[0, 1)``, shape (n, m)."""
    rng = np.random.default_rng(seed)
    a, b = masses(rng, n, m, kind)
    C = offset + scale * rng.random((n, m))
    return a, b, C


def pot_plan(a, b, C, reg: float, n_iters: int) -> np.ndarray:
    """POT's plan after ``n_iters`` iterations of the transposed problem, transposed back.

    POT scales columns first, sinkd rows first: on the transposed problem the orders coincide.
    """
    return ot.sinkhorn(b, a, C.T, reg, numItermax=n_iters, stopThr=0, warn=False).T


def logsumexp_sinkhorn(a, b, C, reg: float, n_iters: int, history: bool = False):
    """Plain log-domain Sinkhorn (rows, then columns) from g = 0, float64; returns the plan.

    f_i = reg (log a_i - LSE_j (g_j - C_ij) / reg), then
    g_j = reg (log b_j - LSE_i (f_i - C_ij) / reg).
    Zero masses give -inf potentials, hence exact zero rows/columns. ``history=True`` returns the
    list of the plans after every iteration instead.
    """
    a, b, C = (np.asarray(x, dtype=np.float64) for x in (a, b, C))
    with np.errstate(divide="ignore"):
        log_a, log_b = np.log(a), np.log(b)
    f, g = np.zeros(len(a)), np.zeros(len(b))
    plans = []
    for _ in range(n_iters):
        f = reg * (log_a - logsumexp((g[None, :] - C) / reg, axis=1))
        g = reg * (log_b - logsumexp((f[:, None] - C) / reg, axis=0))
        if history:
            plans.append(np.exp((f[:, None] + g[None, :] - C) / reg))
    return plans if history else np.exp((f[:, None] + g[None, :] - C) / reg)


def entropy(p: np.ndarray) -> float:
    """Shannon entropy of the normalised histogram p (natural log, 0 log 0 = 0)."""
    q = np.asarray(p, dtype=np.float64) / np.sum(p)
    q = q[q > 0]
    return float(-(q * np.log(q)).sum())


def entropic_bias_bound(a, b, reg: float) -> float:
    """Bound on <P_reg, C> - OT(a, b, C) for the converged entropic plan P_reg.

    With total mass s and P = s Q: <P_reg, C> - reg H(P_reg) <= <P*, C> - reg H(P*) and
    max(H(a), H(b)) <= H(Q) <= H(a) + H(b), so the bias is <= reg * s * min(H(a), H(b))
    <= reg * s * log(min(n, m)).
    """
    return reg * float(np.sum(a)) * min(entropy(a), entropy(b))
