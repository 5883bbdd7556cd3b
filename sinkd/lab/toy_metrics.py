r"""What a fitted toy student did, measured: mode masses, gap mass, W1, divergences, convergence,
and the outcome sentences the page shows (derived from these numbers only).

Definitions (teacher components with positive weight, sorted by mean):

- **mode regions**: bin i belongs to mode m when :math:`x_i` is closer to :math:`\mu_m` than to
  any other component mean (the bins between the midpoints); components with equal means share a
  region;
- **gap**: the bins strictly between the lowest and the highest mode mean where the teacher's
  bin mass is below ``GAP_FRACTION`` (5%) of its largest bin mass; empty with one mode;
- **W1**: :math:`W_1(p, q) = \sum_i |F_p(x_i) - F_q(x_i)| \, \Delta x` (exact in 1-D, CDFs
  :math:`F` on the grid of spacing :math:`\Delta x`);
- **steps to convergence**: the first step :math:`s` after which the loss stays within 1% of its
  total change, :math:`|L_t - L_{\mathrm{final}}| \le 0.01\,|L_0 - L_{\mathrm{final}}|` for all
  :math:`t \ge s` (relative to the change, not to :math:`L_{\mathrm{final}}` itself, which is
  near 0 for a student that can match the teacher; changes below round-off, 1e-12, count as
  none, so a loss that never moved has converged at step 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sinkd.lab.style import LABELS
from sinkd.lab.toy import Mixture, ToyFit

GAP_FRACTION = 0.05  # gap bins: teacher mass below 5% of its peak bin mass, between modes
AVERAGING_FACTOR = 3.0  # "covers the gap": gap mass >= 3x the teacher's and >= teacher's + 5 pts
UNDER_FACTOR = 0.5  # "underestimates a mode": < half the teacher's mass there
COLLAPSE_SHARE = 0.9  # "collapses": >= 90% of the mass on one mode the teacher gives less
SATURATION_TOL = 1e-3  # a loss this close to its ceiling at step 0 counts as saturated
SKEW = 0.1  # sinkd.divergence's default skew, used by the fits
CEILINGS = {  # upper bounds of the bounded divergences: saturation is measured against them
    "js": ("log 2", math.log(2.0)),
    "tvd": ("1", 1.0),
    "skew_kl": ("log 10", -math.log(SKEW)),
    "skew_rkl": ("log 10", -math.log(SKEW)),
}
TIE_REL = 0.01  # W1 values within 1% of the best are reported as tied
ROUND_OFF = 1e-12  # a loss that changed by less than this (relative) never moved


def mode_regions(x: np.ndarray, teacher: Mixture) -> tuple[np.ndarray, np.ndarray]:
    """Mode centres (M,) (distinct component means, sorted) and each bin's mode index (n,).

    Examples
    --------
    >>> from sinkd.lab.toy import mixture
    >>> c, lab = mode_regions(np.array([-2.0, -0.5, 0.5, 2.0]), mixture([1, -1], [1, 1], [1, 1]))
    >>> c.tolist(), lab.tolist()
    ([-1.0, 1.0], [0, 0, 1, 1])
    """
    centres = np.unique(np.asarray(teacher.means, dtype=float))
    labels = np.abs(x[:, None] - centres[None, :]).argmin(1)
    return centres, labels


def gap_mask(x: np.ndarray, teacher_probs: np.ndarray, centres: np.ndarray,
             fraction: float = GAP_FRACTION) -> np.ndarray:
    """Bins between the outermost modes where the teacher has < ``fraction`` of its peak, (n,)."""
    between = (x > centres.min()) & (x < centres.max())
    return between & (teacher_probs < fraction * teacher_probs.max())


def w1(p: np.ndarray, q: np.ndarray, dx: float) -> np.ndarray:
    r"""Exact 1-D Wasserstein-1 between bin masses on a uniform grid: :math:`\sum |F_p - F_q| dx`.

    ``p`` (..., n), ``q`` (n,) or (..., n); returns (...,).

    Examples
    --------
    >>> float(w1(np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0]), 0.5))
    1.0
    """
    return np.abs(np.cumsum(p, -1) - np.cumsum(q, -1)).sum(-1) * dx


def kl_from_logs(lp: np.ndarray, lq: np.ndarray) -> np.ndarray:
    """KL(p || q) = sum p (log p - log q) from finite log-probabilities, over the last axis."""
    return (np.exp(lp) * (lp - lq)).sum(-1)


def js_from_logs(lp: np.ndarray, lq: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (natural log, in [0, log 2]) from log-probabilities."""
    lm = np.logaddexp(lp, lq) - math.log(2.0)
    return 0.5 * kl_from_logs(lp, lm) + 0.5 * kl_from_logs(lq, lm)


def steps_to_convergence(losses: np.ndarray, tol: float = 0.01) -> np.ndarray:
    """First step after which each loss stays within ``tol`` of its total change; (steps+1, D) in.

    Examples
    --------
    >>> steps_to_convergence(np.array([[4.0], [2.0], [1.02], [1.0]])).tolist()
    [2]
    """
    final = losses[-1]
    band = np.maximum(tol * np.abs(losses[0] - final), ROUND_OFF * np.maximum(1.0, np.abs(final)))
    outside = np.abs(losses - final) > band  # (steps+1, D)
    last_outside = np.where(outside.any(0), outside.shape[0] - 1 - outside[::-1].argmax(0), -1)
    return last_outside + 1


@dataclass(frozen=True, eq=False)
class ToyMetrics:
    """The metrics of one :class:`~sinkd.lab.toy.ToyFit` (D divergences, M modes)."""

    names: tuple[str, ...]
    centres: np.ndarray  # (M,) mode centres
    teacher_mode_mass: np.ndarray  # (M,)
    mode_mass: np.ndarray  # (D, M)
    has_gap: bool
    teacher_gap_mass: float
    gap_mass: np.ndarray  # (D,)
    w1: np.ndarray  # (D,) fitted student to teacher
    w1_start: np.ndarray  # (D,) starting student to teacher
    kl: np.ndarray  # (D,) KL(teacher || student), final
    rkl: np.ndarray  # (D,) KL(student || teacher), final
    js: np.ndarray  # (D,) final
    loss_start: np.ndarray  # (D,) each divergence's own loss at step 0
    loss_final: np.ndarray  # (D,)
    grad_start: np.ndarray  # (D,) gradient norm at step 0
    steps_conv: np.ndarray  # (D,)

    def row(self, name: str) -> int:
        return self.names.index(name)


def compute_metrics(fit: ToyFit) -> ToyMetrics:
    """Measure every fitted student of ``fit`` against the teacher (see the module docstring).

    Parameters
    ----------
    fit : ToyFit
        From :func:`sinkd.lab.toy.fit`.

    Returns
    -------
    ToyMetrics
        Mode and gap masses, W1 at the start and the end, final KL / reverse KL / JS (from the
        log-probabilities, so finite even where a mass underflows), each loss at the start and
        the end, the gradient norm at the start and the steps to convergence.

    Examples
    --------
    >>> from sinkd.lab.toy import fit, mixture
    >>> m = compute_metrics(fit(mixture([-2, 2], [0.5, 0.5], [3, 1]), divergences=("kl",), steps=2))
    >>> m.teacher_mode_mass.round(3).tolist(), m.mode_mass.shape
    ([0.75, 0.25], (1, 2))
    """
    x, pt, ps = fit.x, fit.teacher_probs, fit.probs
    centres, labels = mode_regions(x, fit.teacher)
    onehot = labels[:, None] == np.arange(len(centres))[None, :]  # (n, M)
    gap = gap_mask(x, pt, centres)
    return ToyMetrics(
        names=fit.names, centres=centres, teacher_mode_mass=pt @ onehot,
        mode_mass=ps @ onehot, has_gap=bool(gap.any()), teacher_gap_mass=float(pt[gap].sum()),
        gap_mass=ps[:, gap].sum(1), w1=w1(ps, pt, fit.dx),
        w1_start=w1(fit.snapshots[0], pt, fit.dx),
        kl=kl_from_logs(fit.teacher_log_probs, fit.log_probs),
        rkl=kl_from_logs(fit.log_probs, fit.teacher_log_probs),
        js=js_from_logs(fit.log_probs, fit.teacher_log_probs),
        loss_start=fit.losses[0], loss_final=fit.losses[-1], grad_start=fit.grad_norms[0],
        steps_conv=steps_to_convergence(fit.losses),
    )


def metrics_frame(m: ToyMetrics) -> pd.DataFrame:
    """The metrics table, one row per divergence; the teacher's values are in the headers.

    Examples
    --------
    >>> from sinkd.lab.toy import fit, mixture
    >>> f = fit(mixture([0.0], [1.0], [1.0]), divergences=("kl", "js"), steps=2, n_bins=20)
    >>> metrics_frame(compute_metrics(f))["divergence"].tolist()
    ['KL (forward)', 'Jensen-Shannon']
    """
    cols: dict[str, object] = {"divergence": [LABELS[d] for d in m.names]}
    for j, c in enumerate(m.centres):
        cols[f"mass on mode {j + 1} (x≈{c:.1f}; teacher {m.teacher_mode_mass[j]:.3f})"] = (
            m.mode_mass[:, j])
    if m.has_gap:
        cols[f"gap mass (teacher {m.teacher_gap_mass:.3f})"] = m.gap_mass
    cols.update({
        "W1 to teacher": m.w1, "W1 at start": m.w1_start, "KL(t||s)": m.kl, "KL(s||t)": m.rkl,
        "JS": m.js, "own loss at start": m.loss_start, "own loss at end": m.loss_final,
        "|grad| at start": m.grad_start, "steps to convergence": m.steps_conv,
    })
    return pd.DataFrame(cols)


def headline(m: ToyMetrics, d: int) -> str:
    """Row ``d``'s headline numbers: mass per mode, gap mass (when there is a gap), W1.

    Examples
    --------
    >>> from sinkd.lab.toy import fit, mixture
    >>> f = fit(mixture([-2.5, 2.5], [0.5, 0.5], [1, 1]), divergences=("kl",), steps=2)
    >>> [part.split()[0] for part in headline(compute_metrics(f), 0).split(" · ")]
    ['modes', 'gap', 'W1']
    """
    parts = ["modes " + " / ".join(mass_pct(v) for v in m.mode_mass[d])]
    if m.has_gap:
        parts.append(f"gap {mass_pct(m.gap_mass[d])}")
    parts.append(f"W1 {m.w1[d]:.2f}")
    return " · ".join(parts)


def summary_frame(m: ToyMetrics) -> pd.DataFrame:
    """The table the page shows first: one row per divergence, five short columns (the teacher's
    values in the headers); :func:`metrics_frame` has every column.

    Examples
    --------
    >>> from sinkd.lab.toy import fit, mixture
    >>> f = fit(mixture([-2.5, 2.5], [0.5, 0.5], [1, 1]), divergences=("kl", "w1"), steps=2)
    >>> list(summary_frame(compute_metrics(f)).columns)[:3]
    ['divergence', 'mass per mode (teacher 50% / 50%)', 'gap mass (teacher 1.0%)']
    """
    cols: dict[str, object] = {"divergence": [LABELS[d] for d in m.names]}
    teacher = " / ".join(mass_pct(v) for v in m.teacher_mode_mass)
    cols[f"mass per mode (teacher {teacher})"] = [
        " / ".join(mass_pct(v) for v in row) for row in m.mode_mass]
    if m.has_gap:
        cols[f"gap mass (teacher {mass_pct(m.teacher_gap_mass)})"] = [
            mass_pct(v) for v in m.gap_mass]
    cols["W1 start → end"] = [f"{a:.2f} → {b:.3f}" for a, b in zip(m.w1_start, m.w1, strict=True)]
    cols["|grad| at start"] = [f"{v:.1e}" for v in m.grad_start]
    cols["steps to converge"] = m.steps_conv
    return pd.DataFrame(cols)


def mass_pct(v: float) -> str:
    """A share of mass as the pages print it: whole percent, one decimal under 9.5%.

    >>> mass_pct(0.5), mass_pct(0.012)
    ('50%', '1.2%')
    """
    return f"{100 * v:.0f}%" if v >= 0.095 else f"{100 * v:.1f}%"


def averaging(m: ToyMetrics) -> list[int]:
    """Rows whose gap mass is >= 3x the teacher's and >= the teacher's + 5 points."""
    if not m.has_gap:
        return []
    floor = max(AVERAGING_FACTOR * m.teacher_gap_mass, m.teacher_gap_mass + 0.05)
    return [d for d in range(len(m.names)) if m.gap_mass[d] >= floor]


def underweighted(m: ToyMetrics, d: int) -> list[int]:
    """Modes (teacher mass >= 5%) to which row ``d`` gives less than half the teacher's mass."""
    t = m.teacher_mode_mass
    return [j for j in range(len(t)) if t[j] >= 0.05 and m.mode_mass[d, j] < UNDER_FACTOR * t[j]]


def collapsed(m: ToyMetrics, d: int) -> int | None:
    """The mode holding >= 90% of row ``d``'s mass while it underweights another, else None."""
    top = int(m.mode_mass[d].argmax())
    if (len(m.centres) > 1 and m.mode_mass[d, top] >= COLLAPSE_SHARE
            and m.teacher_mode_mass[top] < COLLAPSE_SHARE and underweighted(m, d)):
        return top
    return None


def saturated(m: ToyMetrics) -> list[int]:
    """Rows of a bounded divergence whose loss at step 0 is within 1e-3 of its ceiling."""
    return [d for d, name in enumerate(m.names) if name in CEILINGS
            and CEILINGS[name][1] - m.loss_start[d] <= SATURATION_TOL]


def outcomes(m: ToyMetrics) -> list[str]:
    """Sentences (markdown) describing what the fits did, each built from the computed numbers.

    One line per phenomenon found (mode averaging, collapse, underestimation, saturation) listing
    the divergences that show it, then the closest fit in W1 and what Sinkhorn did.

    Examples
    --------
    >>> from sinkd.lab.toy import fit, mixture
    >>> f = fit(mixture([-2.5, 2.5], [0.5, 0.5], [1, 1]), divergences=("kl",), steps=60, lr=0.1)
    >>> outcomes(compute_metrics(f))[0].startswith("**Mode averaging**")
    True
    """
    L, lines = [LABELS[d] for d in m.names], []
    t_modes = ", ".join(mass_pct(v) for v in m.teacher_mode_mass)
    avg = averaging(m)
    if avg:
        lines.append(f"**Mode averaging**: mass put in the gap between the modes (teacher: "
                     f"{mass_pct(m.teacher_gap_mass)}): "
                     + ", ".join(f"{L[d]} {mass_pct(m.gap_mass[d])}" for d in avg) + ".")
    col = [(d, collapsed(m, d)) for d in range(len(m.names))]
    col = [(d, j) for d, j in col if j is not None]
    if col:
        lines.append(f"**Mode collapse**: ≥ {COLLAPSE_SHARE:.0%} of the mass on one mode "
                     f"(teacher per mode: {t_modes}): " + ", ".join(
                         f"{L[d]} {mass_pct(m.mode_mass[d, j])} on mode {j + 1} "
                         f"(x≈{m.centres[j]:.1f})" for d, j in col) + ".")
    under = [(d, underweighted(m, d)) for d in range(len(m.names)) if collapsed(m, d) is None]
    under = [(d, js) for d, js in under if js]
    if under:
        lines.append("**Mode underestimation**: less than half the teacher's mass on a mode: "
                     + "; ".join(f"{L[d]} " + ", ".join(
                         f"mode {j + 1} (x≈{m.centres[j]:.1f}) {mass_pct(m.mode_mass[d, j])} vs "
                         f"{mass_pct(m.teacher_mode_mass[j])}" for j in js) for d, js in under)
                     + ".")
    sat = saturated(m)
    if sat:
        lines.append(f"**Saturated at the start** (loss within {SATURATION_TOL:g} of its ceiling): "
                     + "; ".join(
                         f"{L[d]} {m.loss_start[d]:.4f} (ceiling {CEILINGS[m.names[d]][0]} = "
                         f"{CEILINGS[m.names[d]][1]:.4f}), gradient norm {m.grad_start[d]:.1e}"
                         for d in sat) + ".")
    lines.append("**W1 to the teacher, start → end**: " + ", ".join(
        f"{L[d]} {m.w1_start[d]:.2f} → {m.w1[d]:.2f}" for d in range(len(m.names))) + ".")
    order = np.argsort(m.w1, kind="stable")
    best, worst = int(order[0]), int(order[-1])
    tied = [d for d in order[1:] if m.w1[d] <= m.w1[best] * (1 + TIE_REL)]
    tie = (f", tied within {TIE_REL:.0%} with " + ", ".join(
        f"{L[d]} ({m.w1[d]:.3f})" for d in tied)) if tied else ""
    lines.append(f"**Closest to the teacher in W1**: {L[best]} (W1 = {m.w1[best]:.3f}){tie}; "
                 f"farthest: {L[worst]} (W1 = {m.w1[worst]:.3f}).")
    if "sinkhorn" in m.names:
        s = m.row("sinkhorn")
        rank = int(np.where(order == s)[0][0]) + 1
        if rank == 1:
            verdict = "the closest fit" + (f" (tied within {TIE_REL:.0%})" if tied else " of all")
        elif m.w1[s] <= m.w1[best] * (1 + TIE_REL):
            verdict = f"tied within {TIE_REL:.0%} with the closest fit, {L[best]}"
        else:
            verdict = (f"**not** the closest fit: rank {rank} of {len(m.names)} by W1, "
                       f"{L[best]} is closer ({m.w1[best]:.3f})")
        lines.append(f"**Sinkhorn**: W1 to the teacher went from {m.w1_start[s]:.2f} to "
                     f"{m.w1[s]:.3f}, {verdict}; gradient norm at the start "
                     f"{m.grad_start[s]:.2g}; mass per mode "
                     f"{', '.join(mass_pct(v) for v in m.mode_mass[s])} (teacher: {t_modes}).")
    return lines
