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
import torch

from sinkd.lab.batches import compute_dtype
from sinkd.lab.plan_numerics import Hazard, smallest_positive, underflowed
from sinkd.lab.plans import ClassLevel, LambdaSweep, PlanHistory
from sinkd.lab.style import COLORS
from sinkd.validation import check_int

STUDENT, TEACHER, REFERENCE = COLORS["sinkhorn"], COLORS["teacher"], COLORS["ce"]
WIDTH_MIN, WIDTH_MAX = 0.5, 6.0  # line widths of the lightest and the heaviest plan entry


def frame_steps(n_iters: int, max_frames: int = 60) -> list[int]:
    """At most ``max_frames`` iterations to animate, always 1 and ``n_iters``.

    Half log-spaced (Sinkhorn changes fastest early), half evenly spaced.

    Examples
    --------
    >>> frame_steps(5)
    [1, 2, 3, 4, 5]
    >>> s = frame_steps(500); (len(s) <= 60, s[0], s[-1])
    (True, 1, 500)
    """
    if n_iters <= max_frames:
        return list(range(1, n_iters + 1))
    half = max_frames // 2
    steps = np.concatenate([np.geomspace(1, n_iters, half), np.linspace(1, n_iters, half)])
    return sorted({int(s) for s in np.rint(steps)} | {1, n_iters})


def _plan_traces(P: np.ndarray) -> list[dict]:
    """Heatmap (float32: a colour needs no more), column sums and row sums of one plan."""
    return [dict(type="heatmap", z=P.astype(np.float32)), dict(type="bar", y=P.sum(0)),
            dict(type="bar", x=P.sum(1))]


def plan_figure(history: PlanHistory, max_frames: int = 60, badge: str | None = None) -> go.Figure:
    """Heatmap of P_t with its column sums (above) and row sums (right), animated over t.

    One frame per iteration of :func:`frame_steps` (from ``history.plans_at``, i.e. plan_at(t)),
    the heatmap in float32; the figure starts at t = T. ``badge``: a warning drawn on the plot
    (see :func:`hazard_badge`). Traces 0-2 are the heatmap, the column-sum bars and the row-sum
    bars (the frames replace these three); traces 3-4 mark mass 1.
    """
    steps = frame_steps(history.n_iters, max_frames)
    plans = dict(zip(steps, history.plans_at(steps), strict=True))
    finite = [P[np.isfinite(P)] for P in plans.values()]
    zmax = max([float(v.max()) for v in finite if v.size] + [1e-12])
    idx = np.arange(history.n)
    heat, cols, rows = _plan_traces(plans[steps[-1]])
    heat.update(x=idx, y=idx, zmin=0.0, zmax=zmax, colorscale="Oranges", xaxis="x2", yaxis="y2",
                colorbar=dict(title=dict(text="mass"), x=1.02),
                hovertemplate="student %{y} → teacher %{x}: %{z:.4g}<extra></extra>")
    cols.update(x=idx, marker_color=TEACHER, opacity=0.6, name="column sums", xaxis="x", yaxis="y",
                hovertemplate="teacher %{x}: %{y:.6g}<extra></extra>")
    rows.update(y=idx, orientation="h", marker_color=STUDENT, name="row sums", xaxis="x3",
                yaxis="y3", hovertemplate="student %{y}: %{x:.6g}<extra></extra>")
    ends = [-0.5, history.n - 0.5]
    refs = [dict(type="scatter", x=ends, y=[1, 1], xaxis="x", yaxis="y", mode="lines",
                 line=dict(color=REFERENCE, dash="dash"), name="mass 1"),
            dict(type="scatter", x=[1, 1], y=ends, xaxis="x3", yaxis="y3", mode="lines",
                 line=dict(color=REFERENCE, dash="dash"), name="mass 1")]
    play = dict(frame=dict(duration=120, redraw=True), transition=dict(duration=0),
                fromcurrent=False, mode="immediate")
    still = dict(frame=dict(duration=0, redraw=True), mode="immediate")
    layout = dict(
        title=dict(text=f"Plan P_t (λ = {history.reg:g}, {history.method}, {history.dtype}, "
                        f"T = {history.n_iters})"),
        height=660, showlegend=False, bargap=0.05, margin=dict(b=130),
        xaxis=dict(domain=[0, 0.8], matches="x2", showticklabels=False),
        yaxis=dict(domain=[0.82, 1], title=dict(text="column sum")),
        xaxis2=dict(domain=[0, 0.8], anchor="y2", title=dict(text="teacher sample j")),
        yaxis2=dict(domain=[0, 0.79], anchor="x2", autorange="reversed",
                    title=dict(text="student sample i")),
        xaxis3=dict(domain=[0.82, 1], anchor="y3", title=dict(text="row sum")),
        yaxis3=dict(domain=[0, 0.79], anchor="x3", matches="y2", showticklabels=False),
        updatemenus=[dict(type="buttons", direction="left", x=0.0, y=-0.13, xanchor="left",
                          yanchor="top",
                          buttons=[dict(label="▶ play", method="animate", args=[None, play]),
                                   dict(label="❚❚ pause", method="animate",
                                        args=[[None], dict(still, frame=dict(duration=0,
                                                                             redraw=False))])])],
        sliders=[dict(active=len(steps) - 1, x=0.16, len=0.82, y=-0.11, yanchor="top",
                      currentvalue=dict(prefix="t = "),
                      steps=[dict(label=str(t), method="animate", args=[[str(t)], still])
                             for t in steps])],
        annotations=[dict(text=badge, xref="paper", yref="paper", x=1.0, y=1.08,
                          showarrow=False, font=dict(color="white"), bgcolor="#D55E00")]
        if badge else [],
    )
    # frames carry only what changes; one dict, validated once
    frames = [dict(name=str(t), traces=[0, 1, 2], data=_plan_traces(plans[t])) for t in steps]
    return go.Figure(dict(data=[heat, cols, rows, *refs], layout=layout, frames=frames))


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


def convergence_figure(history: PlanHistory) -> go.Figure:
    """Marginal errors (log y), <P_t, D> with exact OT and independent lines, entropy, against t."""
    t = np.arange(1, history.n_iters + 1)
    h = history
    data = [
        _line(t, h.row_errors, "rows |P_t 1 − 1|", 1, STUDENT),
        _line(t, h.col_errors, "columns |P_tᵀ 1 − 1|", 1, TEACHER, "dot"),
        _line(t, h.costs, "⟨P_t, D⟩", 2, STUDENT),
        _hline(t, h.exact_cost, "exact OT (emd2)", "dash", 2),
        _hline(t, h.independent_cost, "independent coupling (λ → ∞)", "dot", 2),
        _line(t, h.entropies, "entropy", 3, STUDENT, "dashdot"),
        _hline(t, math.log(h.n), "log N (a permutation)", "dash", 3),
        _hline(t, 2 * math.log(h.n), "2 log N (independent)", "dot", 3),
    ]
    layout = _three_panels(("marginal errors (L1)", "transport cost ⟨P_t, D⟩",
                            "entropy of P_t / N (nats)"))
    for suffix in ("", "2", "3"):
        layout[f"xaxis{suffix}"]["title"] = dict(text="iteration t")
    layout["yaxis"]["type"] = "log"
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
    fig.update_layout(height=400, title=f"Sample {i}: ⟨P, 1 − I⟩ = {level.costs[i]:.4g}; exact "
                                        f"OT (total variation) = {level.exact[i]:.4g}")
    return fig


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
    """The numbers of :func:`convergence_figure`, one row per iteration t (for a download)."""
    return pd.DataFrame({"t": range(1, history.n_iters + 1), "cost": history.costs,
                         "row_error": history.row_errors, "col_error": history.col_errors,
                         "entropy": history.entropies})


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
