r"""What a divergence-lab fit shows about SinKD, in plain sentences computed from the fit.

:func:`sinkd_lines` says where the lab's Sinkhorn student also averages, underestimates a mode,
collapses or ends behind another divergence, and why, from numbers it computes: the entropic
bias (the cost :math:`W_\lambda(t, t) = \langle P_T(t, t), C \rangle > 0` a perfect student
would still pay), the plan's marginal error after T scalings (an unconverged plan), and lambda
against the bin width. :data:`SCOPE` states what the lab transports, unlike SinKD.
:data:`LAMBDA_NOTE` is the page's sentence on raising lambda, checked by a test that fits at
small and large lambda (tests/lab/test_toy.py).
"""

from __future__ import annotations

import numpy as np
import torch

from sinkd.lab.style import LABELS
from sinkd.lab.toy import DTYPE, ToyFit
from sinkd.lab.toy_losses import solver_method
from sinkd.lab.toy_metrics import (
    TIE_REL,
    ToyMetrics,
    averaging,
    collapsed,
    mass_pct,
    underweighted,
)
from sinkd.sinkhorn import sinkhorn

UNCONVERGED = 1e-3  # a plan whose row sums are off by more than this (L1, in mass) is unconverged

SCOPE = (
    "**What this lab is, and is not, about SinKD.** Here Sinkhorn moves probability mass "
    "between *ordered* bins of one distribution, with cost |x_i − x_j|: shifting mass to a "
    "neighbouring bin is cheap. SinKD does something else: in each batch it transports the N "
    "student predictions onto the N teacher predictions (batch-wise, cost ‖p_s − p_t‖₁ between "
    "probability vectors; see the batch-wise page). Class labels have no order: over unordered "
    "classes (cost 1 − I) the transport between one sample's two predictions is the total "
    "variation distance, and saturates like it. So what Sinkhorn does here is a lesson about "
    "transport costs, not a test of SinKD's loss."
)

LAMBDA_NOTE = (
    "Raise λ to 5 and Sinkhorn's student does **not** blur: it gets narrower and taller in the "
    "middle, with more mass in the gap. At large λ the plan nears the independent coupling, "
    "whose cost E|X − Y| is smallest for a student concentrated at the teacher's median. The "
    "debiased Sinkhorn divergence subtracts that self-transport pull and stays close to exact "
    "OT's student."
)


def plan_diagnostics(fit: ToyFit, d: int) -> tuple[float, float]:
    r"""For row ``d`` of the fit: the row-marginal L1 error of its final plan after T scalings,
    and the teacher's entropic self-cost :math:`W_\lambda(t, t)`.

    Parameters
    ----------
    fit : ToyFit
    d : int
        A row of ``fit.names``.

    Returns
    -------
    (float, float)
        :math:`\sum_i |(P_T \mathbf 1)_i - s_i|` for the fitted student ``s`` and the teacher,
        and :math:`\langle P_T(t, t), C \rangle` (0 for exact OT).

    Examples
    --------
    >>> from sinkd.lab.toy import fit as run, mixture
    >>> f = run(mixture([0.0], [1.0], [1.0]), divergences=("sinkhorn",), steps=2, n_bins=20)
    >>> err, self_cost = plan_diagnostics(f, 0)
    >>> err >= 0.0 and self_cost > 0.0
    True
    """
    x = torch.as_tensor(fit.x, dtype=DTYPE)
    C = (x[:, None] - x[None, :]).abs()
    reg, T = fit.settings["reg"], fit.settings["n_iters"]
    s, t = torch.as_tensor(fit.probs[d]), torch.as_tensor(fit.teacher_probs)
    s, t = s / s.sum(), t / t.sum()  # exact totals: the solver compares them
    method = solver_method(C, reg)
    plan = sinkhorn(s, t, C, reg, n_iters=T, tol=0, method=method, checks=False).plan
    self_cost = sinkhorn(t, t, C, reg, n_iters=T, tol=0, method=method, checks=False).cost
    return float((plan.sum(-1) - s).abs().sum()), float(self_cost)


def _what_sinkhorn_did(m: ToyMetrics, s: int) -> list[str]:
    """Where Sinkhorn averages, collapses, underestimates or loses, from the metrics."""
    L, lines = [LABELS[n] for n in m.names], []
    if s in averaging(m):
        others = [L[d] for d in averaging(m) if d != s]
        lines.append(f"Sinkhorn **averages** too: {mass_pct(m.gap_mass[s])} of its mass in the gap "
                     f"(teacher {mass_pct(m.teacher_gap_mass)})"
                     + (f", like {', '.join(others)}." if others else "."))
    j = collapsed(m, s)
    if j is not None:
        lines.append(f"Sinkhorn **collapses**: {mass_pct(m.mode_mass[s, j])} on mode {j + 1}.")
    else:
        for j in underweighted(m, s):
            lines.append(f"Sinkhorn **underestimates** mode {j + 1} (x≈{m.centres[j]:.1f}): "
                         f"{mass_pct(m.mode_mass[s, j])} against the teacher's "
                         f"{mass_pct(m.teacher_mode_mass[j])}.")
    order = [int(d) for d in np.argsort(m.w1, kind="stable")]
    best = order[0]
    if m.w1[s] > m.w1[best] * (1 + TIE_REL):
        lines.append(f"Sinkhorn **loses** in W1 to the teacher: rank {order.index(s) + 1} of "
                     f"{len(m.names)} ({m.w1[s]:.3f}; {L[best]} {m.w1[best]:.3f}).")
    return lines


def _why(fit: ToyFit, m: ToyMetrics, s: int) -> list[str]:
    """Why, measured: entropic bias and its cure, the plan's convergence, lambda vs the bins."""
    reg, T = fit.settings["reg"], fit.settings["n_iters"]
    err, self_cost = plan_diagnostics(fit, s)
    lines = [f"**Entropic bias**: with λ = {reg:g} even the teacher pays "
             f"W_λ(t, t) = {self_cost:.3g} against itself (exact OT: 0), so the teacher does not "
             "minimise Sinkhorn's loss: a student pulled towards the teacher's median pays less "
             "(the pull grows with λ)."]
    for name, what in (("sinkhorn_debiased", "removes that bias"), ("w1", "has no blur at all")):
        if name in m.names:
            o = m.row(name)
            rel = (m.w1[o] - m.w1[s]) / max(m.w1[s], 1e-12)
            verdict = ("about the same W1 as Sinkhorn" if abs(rel) <= TIE_REL
                       else "closer to the teacher" if rel < 0 else "**farther** from the teacher")
            label = LABELS[name][0].upper() + LABELS[name][1:]
            lines.append(f"{label}, which {what}, ends at W1 = {m.w1[o]:.3f}: {verdict} "
                         f"(Sinkhorn {m.w1[s]:.3f}).")
    if "w1" in m.names and s in averaging(m) and m.row("w1") in averaging(m):
        lines.append("Exact OT averages as well: the cause is the student family and the "
                     "|x_i − x_j| cost, not the entropic blur.")
    if err > UNCONVERGED:
        lines.append(f"**Unconverged plan**: after T = {T} scalings the plan's row sums are off "
                     f"by {err:.2g} (L1, in mass) at the fitted student: the gradient comes from "
                     "a plan that does not yet transport the student's mass. Raise T.")
    else:
        lines.append(f"The plan has converged at the fitted student: after T = {T} scalings "
                     f"its row sums are off by {err:.1g}.")
    lines.append(f"**Bin geometry**: λ = {reg:g} is {reg / fit.dx:.2g} bin widths "
                 f"(Δx = {fit.dx:.3g}): the kernel e^(−|x_i − x_j|/λ) spreads each bin's mass "
                 "over a distance of about λ, and moving mass to the next bin costs only Δx.")
    return lines


def sinkd_lines(fit: ToyFit, m: ToyMetrics) -> list[str]:
    """The "what this shows about SinKD" box: markdown lines computed from ``fit`` and ``m``.

    First where Sinkhorn also averages, collapses, underestimates a mode or loses in W1 (when
    it was fitted), then why (entropic bias and its cure, the plan's convergence after T, lambda
    against the bin width), then :data:`SCOPE`.

    Examples
    --------
    >>> from sinkd.lab.toy import fit as run, mixture
    >>> from sinkd.lab.toy_metrics import compute_metrics
    >>> f = run(mixture([-2.5, 2.5], [0.5, 0.5], [1, 1]), divergences=("kl",), steps=2)
    >>> sinkd_lines(f, compute_metrics(f))[-1] == SCOPE
    True
    """
    lines: list[str] = []
    if "sinkhorn" in m.names:
        s = m.row("sinkhorn")
        lines += _what_sinkhorn_did(m, s) or [
            f"Sinkhorn ends at W1 = {m.w1[s]:.3f}, among the closest fits "
            f"(within {TIE_REL:.0%} of the best) and without averaging, collapsing or "
            "underestimating a mode here."]
        lines += _why(fit, m, s)
    lines.append(SCOPE)
    return lines
