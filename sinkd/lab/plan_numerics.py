r"""Where the kernel solver of the Transport plans page fails, per dtype, and why.

:func:`smallest_positive` is where ``exp`` underflows, :func:`underflowed` finds the rows and
columns of ``K = exp(-D / lambda)`` that are entirely 0, :func:`naive_kernel_plan` runs the kernel
iteration literally in a dtype (to show the hazard, NaN included) and :func:`dtype_hazards`
tabulates, per dtype of :data:`sinkd.lab.batches.DTYPES`, which solver stays finite;
:func:`hazard_rows`, :func:`hazard_badge`, :func:`float16_note` and :func:`failure_reason` put
those numbers into the page's table and sentences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sinkd.lab.batches import DTYPES, batch_problem, compute_dtype
from sinkd.lab.plans import PLAN_METHODS, PlanHistory
from sinkd.sinkhorn import sinkhorn
from sinkd.validation import check_choice, check_int, check_number


def naive_kernel_plan(D: np.ndarray, reg: float, n_iters: int,
                      dtype: str = "float64") -> np.ndarray:
    """The reference iteration run literally in ``dtype``: rows then columns of exp(-D / reg).

    It exists to show the hazard: ``sinkd.sinkhorn`` computes float16 in float32, so only this
    literal version shows what a float16 kernel solver does (a row or a column of K underflows to
    0, then 0 / 0 = NaN). Unit marginals. Not for use: NaN is a possible result.

    Parameters
    ----------
    D : array, shape (N, M)
        Cost.
    reg : float
        lambda > 0.
    n_iters : int
        Iterations T >= 1.
    dtype : {"float64", "float32", "float16"}

    Returns
    -------
    array, shape (N, M), float64 copy of the plan (possibly NaN).

    Examples
    --------
    >>> D = np.array([[0.0, 2.0], [2.0, 0.0]])
    >>> np.isnan(naive_kernel_plan(D + 1.9, 0.1, 5, "float16")).all()
    np.True_
    """
    check_number("reg", reg, low=0, low_open=True)
    check_int("n_iters", n_iters, low=1)
    check_choice("dtype", dtype, tuple(DTYPES))
    P = torch.exp(-torch.as_tensor(np.asarray(D, dtype=np.float64)).to(DTYPES[dtype]) / reg)
    for _ in range(n_iters):
        P = P / P.sum(1, keepdim=True)
        P = P / P.sum(0, keepdim=True)
    return P.double().numpy()


def smallest_positive(dtype: str | torch.dtype) -> float:
    """The smallest positive (subnormal) number of a float dtype: tiny * eps (IEEE)."""
    info = torch.finfo(DTYPES[dtype] if isinstance(dtype, str) else dtype)
    return info.tiny * info.eps


def underflowed(D: np.ndarray, reg: float,
                dtype: str | torch.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the rows and of the columns of K = exp(-D / reg), in ``dtype``, entirely 0.

    Such a line has a zero sum: its scaling is 1/0 and the plan gets 0/0 or inf * 0 = NaN.
    """
    dt = DTYPES[dtype] if isinstance(dtype, str) else dtype
    zero = torch.exp(-torch.as_tensor(D).to(dt) / reg) == 0  # (N, M)
    return np.flatnonzero(zero.all(1).numpy()), np.flatnonzero(zero.all(0).numpy())


@dataclass(frozen=True)
class Hazard:
    """Whether each solver stays finite in one dtype, for one batch, lambda and T."""

    dtype: str
    kernel_nan: bool  # sinkd.sinkhorn(method="kernel"): NaN/Inf in the plan
    kernel_zero_rows: int  # rows of its plan that sum to exactly 0
    log_nan: bool  # sinkd.sinkhorn(method="log")
    log_zero_rows: int
    naive_nan: bool  # naive_kernel_plan literally in this dtype
    naive_zero_rows: int
    underflow_rows: int  # rows of K = exp(-D/lambda) in this dtype that are entirely 0
    underflow_cols: int  # columns of K entirely 0
    min_exponent: float  # max over rows and columns of min D / lambda: the hardest line's best
    limit: float  # -log(smallest positive number of the dtype): exp underflows above it


def _nan_and_zero_rows(P: np.ndarray) -> tuple[bool, int]:
    return bool(not np.isfinite(P).all()), int((P.sum(1) == 0).sum())


def dtype_hazards(teacher_logits: np.ndarray, student_logits: np.ndarray, *, reg: float = 0.1,
                  n_iters: int = 20, temperature: float = 2.0) -> tuple[Hazard, ...]:
    """Per dtype (float64, float32, float16): does the kernel, log or naive kernel solver fail?

    The cost is computed in float64 and rounded to each dtype; sinkd's solvers then run as
    documented (float16 in float32), the naive kernel literally in the dtype.

    Examples
    --------
    >>> from sinkd.lab.plans import batch_for
    >>> t, s = batch_for("disjoint", 16, 10, 0.5, 1)
    >>> [h.naive_nan for h in dtype_hazards(t, s, reg=0.1, temperature=1.0)]
    [False, False, True]
    """
    check_number("reg", reg, low=0, low_open=True)
    check_int("n_iters", n_iters, low=1)
    D = batch_problem(teacher_logits, student_logits, temperature=temperature).cost  # (N, N)
    D64 = D.numpy()
    out = []
    for name, dt in DTYPES.items():
        Dd = D.to(dt)
        mass = torch.ones(D.shape[0], dtype=dt)
        plans = [sinkhorn(mass, mass, Dd, float(reg), n_iters=int(n_iters), tol=0,
                          method=m).plan.double().numpy() for m in PLAN_METHODS]
        plans.append(naive_kernel_plan(Dd.double().numpy(), reg, n_iters, name))
        (kn, kz), (ln, lz), (nn, nz) = (_nan_and_zero_rows(P) for P in plans)
        rows, cols = underflowed(Dd.double().numpy(), reg, dt)
        hardest = max(D64.min(1).max(), D64.min(0).max()) / reg
        out.append(Hazard(name, kn, kz, ln, lz, nn, nz, len(rows), len(cols), float(hardest),
                          -math.log(smallest_positive(dt))))
    return tuple(out)


# ----- the page's words about these numbers (no figure here) -----
def hazard_rows(hazards: Sequence[Hazard]) -> list[dict]:
    """The hazard table, one row per dtype."""
    return [{"dtype": h.dtype, "kernel: NaN": h.kernel_nan, "kernel: zero rows": h.kernel_zero_rows,
             "log: NaN": h.log_nan, "log: zero rows": h.log_zero_rows,
             "naive kernel: NaN": h.naive_nan, "naive kernel: zero rows": h.naive_zero_rows,
             "rows of K all 0": h.underflow_rows, "columns of K all 0": h.underflow_cols,
             "hardest line: min D/λ": round(h.min_exponent, 2),
             "underflow above": round(h.limit, 2)} for h in hazards]


def hazard_badge(hazard: Hazard) -> str | None:
    """A short flag for the plan figure when a kernel solver fails in this dtype; else None."""
    parts = []
    if hazard.kernel_nan or hazard.kernel_zero_rows:
        parts.append(f"sinkd kernel: {'NaN' if hazard.kernel_nan else 'zero rows'}")
    if hazard.dtype == "float16" and (hazard.naive_nan or hazard.naive_zero_rows):
        parts.append(f"naive float16 kernel: {'NaN' if hazard.naive_nan else 'zero rows'}")
    if not parts:
        return None
    log = "log solver: NaN" if hazard.log_nan else "log solver: finite"
    return f"⚠ {hazard.dtype}: " + "; ".join(parts) + f"; {log}"


def float16_note(hazard: Hazard) -> str:
    """What float16 does to this batch: sinkd's float32 compute against the literal iteration."""
    naive = ("gives NaN" if hazard.naive_nan else "stays finite") + (
        f" ({hazard.naive_zero_rows} zero rows)" if hazard.naive_zero_rows else "")
    return (f"float16: sinkd computes in float32 and returns float16. A literal float16 kernel "
            f"iteration (naive_kernel_plan) {naive} here: {hazard.underflow_rows} rows and "
            f"{hazard.underflow_cols} columns of K = exp(−D/λ) are entirely 0 in float16 "
            f"(exp underflows above D/λ = {hazard.limit:.1f}; the hardest row or column needs "
            f"{hazard.min_exponent:.1f}).")


def failure_reason(history: PlanHistory) -> str | None:
    """Why the plan is not finite, in words built from the computed numbers; None if finite."""
    if history.finite:
        return None
    D, reg = history.cost_matrix, history.reg
    compute = compute_dtype(history.dtype)
    name = str(compute).removeprefix("torch.")
    bad = int((~np.isfinite(history.plan)).any(1).sum())
    small = smallest_positive(compute)
    head = (f"The {history.method} solver produced NaN/Inf in {bad} of {history.n} rows of the "
            f"plan (λ = {reg:g}, computed in {name}). K = exp(-D/λ) underflows to 0 where "
            f"D_ij/λ > {-math.log(small):.1f}: the smallest positive {name} is {small:.2e}.")
    rows, cols = underflowed(D, reg, compute)
    if len(rows) or len(cols):
        lines = np.concatenate([D[rows].min(1), D[:, cols].min(0)]) / reg
        worst = float(lines.min())
        return (f"{head} In K, {_listed(rows, 'rows')} and {_listed(cols, 'columns')} are "
                f"entirely 0: even the nearest partner of each is at D/λ ≥ {worst:.1f}, and "
                f"exp(-{worst:.1f}) ≈ 1e{-worst / math.log(10):.0f} is below that. A zero sum, "
                "then 1/0 = inf and inf·0 = NaN.")
    return (f"{head} No row or column of K is entirely 0, but K spans down to "
            f"exp(-{D.max() / reg:.1f}), so the scalings 1/(Kv) overflow {name} (largest "
            f"{torch.finfo(compute).max:.2e}) and inf·0 = NaN follows.")


def _listed(idx: np.ndarray, what: str) -> str:
    if not len(idx):
        return f"0 {what}"
    shown = ", ".join(str(i) for i in idx[:8]) + (" …" if len(idx) > 8 else "")
    return f"{len(idx)} {what} ({shown})"
