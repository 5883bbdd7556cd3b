"""Figures and captions of the Transport plans page: pure functions of sinkd.lab.plans results.

Each builder returns a plotly ``go.Figure`` built from numbers already computed by
:mod:`sinkd.lab.plans` and :mod:`sinkd.lab.plan_numerics` (nothing here solves anything), so
tests can check ``fig.data`` directly. Colours: the student and the plan in the Sinkhorn colour,
the teacher in the teacher colour, reference values in grey (``sinkd.lab.style.COLORS``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

# the page's sentences about the numerics live beside the numbers; kept importable from here
from sinkd.lab.plan_numerics import failure_reason as failure_reason
from sinkd.lab.plan_numerics import float16_note as float16_note
from sinkd.lab.plan_numerics import hazard_badge as hazard_badge
from sinkd.lab.plan_numerics import hazard_rows as hazard_rows
from sinkd.lab.plans import HALVES, ClassLevel, LambdaSweep, PlanHistory
from sinkd.lab.style import COLORS
from sinkd.lab.units import COST_UNIT, SINKD_SCALE, sci
from sinkd.validation import check_choice, check_int

STUDENT, TEACHER, REFERENCE = COLORS["sinkhorn"], COLORS["teacher"], COLORS["ce"]
WIDTH_MIN, WIDTH_MAX = 0.5, 6.0  # line widths of the lightest and the heaviest plan entry


HALF_TEXT = {"rows": "after the row scaling", "columns": "after the column scaling"}
EXACT_FLOOR = 1e-17  # a log axis cannot show 0: exact sums are drawn here (hover: the value)


def sample_ticks(n: int, most: int = 16) -> list[int]:
    """Integer tick positions 0 .. n - 1 for a sample axis, at most ``most`` of them.

    Examples
    --------
    >>> sample_ticks(2), sample_ticks(64)[:3], len(sample_ticks(64)) <= 16
    ([0, 1], [0, 4, 8], True)
    """
    check_int("n", n, low=1)
    return list(range(0, n, max(1, math.ceil(n / most))))


def _bar_range(sums: np.ndarray) -> list[float]:
    """From 0 to past the largest sum and past mass 1, so that no bar is clipped."""
    finite = sums[np.isfinite(sums)]
    top = max(1.0, float(finite.max())) if finite.size else 1.0
    return [0.0, 1.08 * top]


def _check_step(history: PlanHistory, t: int | None, half: str) -> int:
    t = history.n_iters if t is None else t
    check_int("t", t, low=1, high=history.n_iters)
    check_choice("half", half, HALVES)
    return t


def plan_figure(history: PlanHistory, t: int | None = None, half: str = "columns",
                badge: str | None = None) -> go.Figure:
    """Heatmap of the plan at one half-step, with its column sums (above) and row sums (right).

    The plan is ``history.plan_at(t, half)`` (default: t = T, after the column scaling), the
    heatmap in float32 (a colour needs no more). After the row scaling the rows have mass 1
    exactly and the columns are off; after the column scaling the reverse. Both bar axes run
    from 0 past the largest sum (and past 1); the sample axes have integer ticks. ``badge``: a
    warning drawn on the plot (see :func:`hazard_badge`). Traces: 0 the heatmap, 1 the
    column-sum bars, 2 the row-sum bars, 3-4 the lines at mass 1.
    """
    t = _check_step(history, t, half)
    P = history.plan_at(t, half)
    finite = P[np.isfinite(P)]
    zmax = max(float(finite.max()) if finite.size else 0.0, 1e-12)
    idx = np.arange(history.n)
    col_sums, row_sums = P.sum(0), P.sum(1)
    ticks = sample_ticks(history.n)
    heat = dict(type="heatmap", z=P.astype(np.float32), x=idx, y=idx, zmin=0.0, zmax=zmax,
                colorscale="Oranges", xaxis="x2", yaxis="y2",
                colorbar=dict(title=dict(text="mass"), x=1.02, len=0.8, y=0.4),
                hovertemplate="student %{y} → teacher %{x}: %{z:.4g}<extra></extra>")
    cols = dict(type="bar", x=idx, y=col_sums, marker_color=TEACHER, opacity=0.6,
                name="column sums", xaxis="x", yaxis="y",
                hovertemplate="teacher %{x}: %{y:.6g}<extra></extra>")
    rows = dict(type="bar", x=row_sums, y=idx, orientation="h", marker_color=STUDENT,
                name="row sums", xaxis="x3", yaxis="y3",
                hovertemplate="student %{y}: %{x:.6g}<extra></extra>")
    ends = [-0.5, history.n - 0.5]
    refs = [dict(type="scatter", x=ends, y=[1, 1], xaxis="x", yaxis="y", mode="lines",
                 line=dict(color=REFERENCE, dash="dash"), name="mass 1"),
            dict(type="scatter", x=[1, 1], y=ends, xaxis="x3", yaxis="y3", mode="lines",
                 line=dict(color=REFERENCE, dash="dash"), name="mass 1")]
    exact = "rows" if half == "rows" else "columns"
    layout = dict(
        title=dict(text=f"Plan at t = {t}, {HALF_TEXT[half]} ({exact} exact) · λ = "
                        f"{history.reg:g}, {history.method}, {history.dtype}", x=0.0),
        height=480, showlegend=False, bargap=0.05, margin=dict(t=50, b=50, l=60, r=10),
        xaxis=dict(domain=[0, 0.78], matches="x2", showticklabels=False),
        yaxis=dict(domain=[0.8, 1], range=_bar_range(col_sums),
                   title=dict(text="column sum")),
        xaxis2=dict(domain=[0, 0.78], anchor="y2", tickmode="array", tickvals=ticks,
                    title=dict(text="teacher sample j")),
        yaxis2=dict(domain=[0, 0.77], anchor="x2", autorange="reversed", tickmode="array",
                    tickvals=ticks, title=dict(text="student sample i")),
        xaxis3=dict(domain=[0.8, 0.95], anchor="y3", range=_bar_range(row_sums),
                    title=dict(text="row sum")),
        yaxis3=dict(domain=[0, 0.77], anchor="x3", matches="y2", showticklabels=False),
        annotations=[dict(text=badge, xref="paper", yref="paper", x=1.0, y=1.0,
                          xanchor="right", showarrow=False, font=dict(color="white"),
                          bgcolor="#D55E00")] if badge else [],
    )
    return go.Figure(dict(data=[heat, cols, rows, *refs], layout=layout))


def step_caption(history: PlanHistory, t: int, half: str) -> str:
    """What the plan at (t, half) has: its row and column L1 errors and its gap to exact OT."""
    t = _check_step(history, t, half)
    c = history.curves(half)
    gap = float(c.costs[t - 1] - history.exact_cost)
    return (f"Half-step {2 * t - (half == 'rows')} of {2 * history.n_iters}: the plan "
            f"{HALF_TEXT[half]} of iteration {t}. Row sums off by {sci(c.row_errors[t - 1])}, "
            f"column sums by {sci(c.col_errors[t - 1])} (L1); ⟨P, D⟩ − exact OT = {sci(gap)}"
            + (" (below exact OT: not a feasible plan)." if gap < 0 else "."))


def _three_panels(titles: Sequence[str], height: int = 380, **layout) -> dict:
    """Layout of three side-by-side panels (axes x/y, x2/y2, x3/y3) with titles above them."""
    out = dict(height=height, legend=dict(orientation="h", y=-0.3), annotations=[], **layout)
    for k, (title, (lo, hi)) in enumerate(zip(titles, ((0, 0.28), (0.36, 0.64), (0.72, 1)),
                                              strict=True)):
        suffix = "" if k == 0 else str(k + 1)
        out[f"xaxis{suffix}"] = dict(domain=[lo, hi], anchor=f"y{suffix}")
        out[f"yaxis{suffix}"] = dict(anchor=f"x{suffix}", exponentformat="e")
        out["annotations"].append(dict(text=title, x=(lo + hi) / 2, y=1.0, xref="paper",
                                       yref="paper", yanchor="bottom", showarrow=False))
    return out


def _line(x, y, name: str, panel: int, colour: str, dash: str = "solid", mode="lines") -> dict:
    suffix = "" if panel == 1 else str(panel)
    return dict(type="scatter", x=x, y=y, name=name, mode=mode, xaxis=f"x{suffix}",
                yaxis=f"y{suffix}", line=dict(color=colour, dash=dash))


def _hline(x, y: float, name: str, dash: str, panel: int) -> dict:
    return _line([x[0], x[-1]], [y, y], name, panel, REFERENCE, dash)


def _interleaved(history: PlanHistory, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A curve at every half-step: x = t - 1/2 after the row scaling of t, x = t after it."""
    t = np.arange(1, history.n_iters + 1)
    x = np.stack([t - 0.5, t], 1).ravel()
    y = np.stack([getattr(history.curves(h), name) for h in HALVES], 1).ravel()
    return x, y


def _marker(x: float, y: float, panel: int, label: str, show: bool) -> dict:
    trace = _line([x], [y], label, panel, "black", mode="markers")
    trace.update(marker=dict(size=11, symbol="circle-open", line=dict(width=3)),
                 legendgroup="now", showlegend=show,
                 hovertemplate=f"{label}: %{{y:.3e}}<extra></extra>")
    return trace


def convergence_figure(history: PlanHistory, t: int | None = None,
                       half: str = "columns") -> go.Figure:
    """Marginal errors, the cost's gap to exact OT and the entropy, at every half-step.

    x = t - 1/2 is the plan after the row scaling of iteration t, x = t after its column
    scaling. Panel 1 (log y): the row error after each column scaling and the column error
    after each row scaling (the other sums are exact there). Panel 2 (log y): |<P, D> - exact
    OT|, split into a line where the plan costs more than exact OT and markers where it costs
    less (only a plan without the problem's marginals can). Panel 3: the entropy, its axis
    fitted to the curve (log N and 2 log N in the title; lines where they fall inside). Every
    curve carries a marker (legend group "now") at the half-step (t, half), default (T,
    "columns"), and every panel a vertical line there.
    """
    t = _check_step(history, t, half)
    h, steps = history, np.arange(1, history.n_iters + 1)
    x_now = t - 0.5 if half == "rows" else float(t)
    now = f"t = {t}, {HALF_TEXT[half]}"
    gx, gaps = _interleaved(h, "costs")
    gaps = gaps - h.exact_cost
    ex, entropy = _interleaved(h, "entropies")
    shown = h.curves(half)
    gap_now = float(shown.costs[t - 1] - h.exact_cost)
    data = [
        _line(steps, np.maximum(h.row_errors, EXACT_FLOOR), "rows |P1 − 1| after the column "
              "scaling", 1, STUDENT, mode="lines+markers"),
        _line(steps - 0.5, np.maximum(h.after_rows.col_errors, EXACT_FLOOR), "columns |Pᵀ1 − 1| "
              "after the row scaling", 1, TEACHER, "dot", mode="lines+markers"),
        _line(gx, np.where(gaps > 0, gaps, np.nan), "⟨P, D⟩ − exact OT", 2, STUDENT),
        _line(gx, np.where(gaps < 0, -gaps, np.nan), "exact OT − ⟨P, D⟩ (below exact OT: the "
              "marginals are off)", 2, "#D55E00", mode="markers"),
        _line(ex, entropy, "entropy", 3, STUDENT, "dashdot"),
        _marker(x_now, max(float(shown.row_errors[t - 1] if half == "columns" else
                                 shown.col_errors[t - 1]), EXACT_FLOOR), 1, now, True),
        _marker(x_now, abs(gap_now), 2, now, False),
        _marker(x_now, float(shown.entropies[t - 1]), 3, now, False),
    ]
    finite = entropy[np.isfinite(entropy)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    pad = max(0.05 * (hi - lo), 1e-3)
    for value, name, dash in ((math.log(h.n), "log N (a permutation)", "dash"),
                              (2 * math.log(h.n), "2 log N (independent)", "dot")):
        if lo - pad <= value <= hi + pad:
            data.append(_hline(steps, value, name, dash, 3))
    layout = _three_panels(("marginal errors (L1)", "gap to exact OT |⟨P, D⟩ − OT|",
                            f"entropy (nats; log N = {math.log(h.n):.2f}, 2 log N = "
                            f"{2 * math.log(h.n):.2f})"), height=400)
    for suffix in ("", "2", "3"):
        layout[f"xaxis{suffix}"]["title"] = dict(text="iteration t (½: after the rows)")
        layout.setdefault("shapes", []).append(dict(
            type="line", x0=x_now, x1=x_now, y0=0, y1=1, xref=f"x{suffix}",
            yref=f"y{suffix} domain", line=dict(color="black", dash="dot", width=1)))
    layout["yaxis"]["type"] = layout["yaxis2"]["type"] = "log"
    layout["yaxis3"]["range"] = [lo - pad, hi + pad]
    return go.Figure(dict(data=data, layout=layout))


def _top_entries(P: np.ndarray, k: int) -> list[tuple[int, int, float]]:
    """The k heaviest finite positive entries (i, j, mass), heaviest first."""
    flat = np.where(np.isfinite(P) & (P > 0), P, 0.0).ravel()
    order = np.argsort(flat)[::-1][:k]
    return [(int(o // P.shape[1]), int(o % P.shape[1]), float(flat[o])) for o in order
            if flat[o] > 0]


def simplex_figure(history: PlanHistory, top_k: int | None = None,
                   n_widths: int = 8) -> go.Figure:
    """Student and teacher predictions with the plan's heaviest entries as lines (C = 2 or 3).

    C = 3: a ternary plot (a, b, c = p(class 0), p(class 1), p(class 2)). C = 2: p(class 1) on
    x, the student at y = 0 and the teacher at y = 1. Each line joins student i to teacher j;
    only the ``top_k`` heaviest entries are drawn (default 3N). Lines are grouped into
    ``n_widths`` traces by mass (bucket b holds masses in (b, b + 1] / n_widths of the heaviest),
    each wider than the last; a trace's ``meta`` lists its (i, j, mass).
    """
    c = history.n_classes
    if c not in (2, 3):
        raise ValueError(f"the simplex view needs n_classes 2 or 3, got {c}")
    ps, pt = history.student_probs, history.teacher_probs
    entries = _top_entries(history.plan, 3 * history.n if top_k is None else top_k)
    heaviest = entries[0][2] if entries else 1.0
    buckets: list[list] = [[] for _ in range(n_widths)]
    for i, j, mass in entries:
        buckets[min(n_widths - 1, math.ceil(n_widths * mass / heaviest) - 1)].append((i, j, mass))
    kind = "scatterternary" if c == 3 else "scatter"
    data = []
    for b, group in enumerate(buckets):
        if not group:
            continue
        coords: list[list] = [[] for _ in range(c)]  # per class: student, teacher, gap
        for i, j, _ in group:
            for k in range(c):
                coords[k] += [ps[i, k], pt[j, k], None]
        trace = dict(type=kind, mode="lines", legendgroup="plan", opacity=0.55,
                     hoverinfo="skip", name=f"plan, mass ≤ {(b + 1) / n_widths:.0%} of the largest",
                     meta=dict(entries=group),
                     line=dict(color=STUDENT, width=WIDTH_MIN + (WIDTH_MAX - WIDTH_MIN)
                               * (b + 1) / n_widths))
        if c == 3:
            trace.update(a=coords[0], b=coords[1], c=coords[2])
        else:
            trace.update(x=coords[1], y=[0, 1, None] * len(group))
        data.append(trace)
    for p, name, colour, symbol in ((ps, "student", STUDENT, "circle"),
                                    (pt, "teacher", TEACHER, "diamond")):
        trace = dict(type=kind, mode="markers", name=name,
                     marker=dict(color=colour, size=8, symbol=symbol))
        if c == 3:
            trace.update(a=p[:, 0], b=p[:, 1], c=p[:, 2])
        else:
            trace.update(x=p[:, 1], y=np.full(len(p), 0 if name == "student" else 1))
        data.append(trace)
    layout = dict(height=480, title=dict(
        text=f"Predictions and the plan's {len(entries)} heaviest entries (line width grows "
             "with the mass moved)"))
    if c == 3:
        layout["ternary"] = dict(aaxis=dict(title=dict(text="class 0")),
                                 baxis=dict(title=dict(text="class 1")),
                                 caxis=dict(title=dict(text="class 2")))
    else:
        layout["xaxis"] = dict(title=dict(text="p(class 1)"), range=[-0.02, 1.02])
        layout["yaxis"] = dict(tickvals=[0, 1], ticktext=["student", "teacher"],
                               range=[-0.3, 1.3])
    return go.Figure(dict(data=data, layout=layout))


def class_plan_figure(level: ClassLevel, i: int) -> go.Figure:
    """Heatmap of sample i's C x C class-level plan (student class -> teacher class, 0/1 cost)."""
    check_int("i", i, low=0, high=len(level.plans) - 1)
    P = level.plans[i]
    labels = [f"class {k}" for k in range(P.shape[0])]
    fig = go.Figure(go.Heatmap(z=P, x=labels, y=labels, colorscale="Oranges", zmin=0.0,
                               texttemplate="%{z:.3f}" if P.shape[0] <= 10 else None,
                               hovertemplate="%{y} → %{x}: %{z:.4g}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title=f"student sample {i}")
    fig.update_xaxes(title=f"teacher sample {i}")
    flag = "" if level.marginal_errors[i] <= level.tolerance else " ⚠ not converged"
    fig.update_layout(height=400, title=f"Sample {i}: ⟨P, 1 − I⟩ = {sci(level.costs[i])}, exact "
                                        f"OT (total variation) = {sci(level.exact[i])}, marginal "
                                        f"error {sci(level.marginal_errors[i])}{flag}")
    return fig


def class_level_note(level: ClassLevel, reg: float) -> str | None:
    """Why an unconverged class-wise plan may cost less than exact OT; None when converged.

    The numbers are the level's: its worst marginal error after T iterations, and the samples
    whose cost sits below their exact OT.
    """
    if level.converged:
        return None
    errors = level.marginal_errors
    worst = int(np.nanargmax(np.where(np.isfinite(errors), errors, np.inf)))
    below = level.below_exact
    head = (f"**Not converged:** after T = {level.n_iters} iterations the class-wise plans "
            f"still miss their masses: sample {worst}'s rows and columns are off by "
            f"{sci(errors[worst])} in L1 (of mass 1; converged means ≤ {sci(level.tolerance, 1)}).")
    if not len(below):
        return head + " Raise T or λ to converge."
    i = int(below[0])
    return (f"{head} So these plans are not feasible for the problem (their marginals are not "
            f"p_s and p_t), and exact OT, the least cost of a feasible plan, is no lower bound "
            f"for them: {len(below)} of {len(errors)} samples cost less than their exact OT "
            f"(sample {i}: ⟨P, 1 − I⟩ = {sci(level.costs[i])} < {sci(level.exact[i])}). "
            f"Off the diagonal the kernel is exp(−1/λ) = {sci(math.exp(-1 / reg))}, so the "
            "mass that must move between classes arrives slowly: raise T or λ.")


def cost_metrics(history: PlanHistory) -> list[tuple[str, str, str]]:
    """(label, value, help) of the page's metric row: every cost in :data:`COST_UNIT`."""
    h = history
    gap = h.costs[-1] - h.exact_cost
    return [
        ("⟨P_T, D⟩", sci(h.costs[-1]), f"{h.method} method, {h.dtype}. {COST_UNIT}"),
        ("exact OT (emd2)", sci(h.exact_cost), "The least ⟨P, D⟩ over plans with mass 1 per "
         "row and per column (λ → 0)."),
        ("gap to exact OT", sci(gap), "⟨P_T, D⟩ − exact OT: ≥ 0 for a converged plan; "
         "negative only if P_T's marginals are off."),
        ("independent coupling", sci(h.independent_cost), "⟨1 1ᵀ / N, D⟩ (λ → ∞)."),
        ("marginal error of P_T (L1)", sci(float(h.result.marginal_error)), "Rows plus columns."),
        (f"SinKD term = {SINKD_SCALE:g} ⟨P_T, D⟩", sci(h.sinkd_value),
         "The loss term SinKD adds: its 10⁻³ scale times the cost."),
    ]


def class_metrics(level: ClassLevel) -> list[tuple[str, str, str]]:
    """(label, value, help) of the class-wise metric row, in :data:`COST_UNIT`."""
    return [
        ("class-wise Σᵢ⟨Pᵢ, 1 − I⟩", sci(level.total), "Mass 1 per sample."),
        ("exact OT Σᵢ TV(p_s, p_t)", sci(float(level.exact.sum())), "Σᵢ |p_s,i − p_t,i|₁ / 2."),
        ("worst marginal error (L1)", sci(float(np.max(level.marginal_errors))),
         f"Rows plus columns; converged: ≤ {sci(level.tolerance, 1)}."),
        (f"class-wise SinKD term = {SINKD_SCALE:g} Σᵢ⟨Pᵢ, 1 − I⟩", sci(level.term),
         "sinkd_loss(level='class')."),
    ]


def sweep_figure(sweep: LambdaSweep) -> go.Figure:
    """Cost (with exact OT and independent lines), marginal error and time per iteration vs λ."""
    lam = sweep.lambdas
    data = [
        _line(lam, sweep.costs, "⟨P_T, D⟩", 1, STUDENT, mode="lines+markers"),
        _hline(lam, sweep.exact_cost, "exact OT (emd2)", "dash", 1),
        _hline(lam, sweep.independent_cost, "independent coupling", "dot", 1),
        _line(lam, sweep.marginal_errors, "marginal error", 2, TEACHER, mode="lines+markers"),
        _line(lam, 1e3 * sweep.seconds_per_iter, "ms / iteration", 3, REFERENCE,
              mode="lines+markers"),
    ]
    layout = _three_panels((f"⟨P_T, D⟩ (T = {sweep.n_iters})",
                            "marginal error (L1, rows + columns)", "time per iteration (ms)"),
                           title=dict(text=f"λ sweep ({sweep.method}, {sweep.dtype})"))
    for suffix in ("", "2", "3"):
        layout[f"xaxis{suffix}"].update(type="log", title=dict(text="λ"), exponentformat="e")
    layout["yaxis2"]["type"] = "log"
    failed = lam[~np.isfinite(sweep.costs)]
    if len(failed):  # the kernel underflowed there: say so on the plot
        layout["annotations"].append(dict(
            text=f"NaN at λ = {', '.join(f'{x:g}' for x in failed)}", x=0.0, y=-0.12,
            xanchor="left", yanchor="top", xref="paper", yref="paper", showarrow=False,
            font=dict(color="white"),
            bgcolor="#D55E00"))
    return go.Figure(dict(data=data, layout=layout))


def curves_table(history: PlanHistory) -> pd.DataFrame:
    """The numbers of :func:`convergence_figure`, one row per half-step (for a download)."""
    t = np.arange(1, history.n_iters + 1)
    frames = [pd.DataFrame({"half_step": 2 * t - (half == "rows"), "t": t,
                            "after": f"{half.removesuffix('s')} scaling",
                            "cost": c.costs, "gap_to_exact_ot": c.costs - history.exact_cost,
                            "row_error": c.row_errors, "col_error": c.col_errors,
                            "entropy": c.entropies})
              for half in HALVES for c in (history.curves(half),)]
    return pd.concat(frames).sort_values("half_step", ignore_index=True)


