"""Figures of the verification against POT: pure functions of its results, returning plotly figures.

Our solver is drawn in the Sinkhorn colour, POT (the reference) in the reference colour, and
tolerances as grey dashed lines. Errors are relative to the reference's magnitude. Log axes
cannot show an exact zero: such values are drawn at ``FLOOR`` and the hover text gives the exact
value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sinkd.lab.plan_figures import sample_ticks
from sinkd.lab.style import COLORS
from sinkd.lab.units import sci
from sinkd.lab.verify import PlanPair, ProblemResult, Report
from sinkd.lab.verify_limits import EmdLimit

FLOOR = 1e-18  # where exact zeros sit on a log axis
OURS, POT, TOL = COLORS["sinkhorn"], COLORS["teacher"], COLORS["ce"]


def _on_log_axis(values) -> np.ndarray:
    return np.maximum(np.asarray(values, dtype=np.float64), FLOOR)


def gap_curve_figure(result: ProblemResult) -> go.Figure:
    """The relative errors of the plan and the cost against t, with their tolerances.

    Parameters
    ----------
    result : ProblemResult
        From :func:`sinkd.lab.verify.compare_problem`.

    Returns
    -------
    go.Figure
        Four traces: the plan's error max |P_ours - P_POT| / max P_POT, the cost's
        |cost_ours - cost_POT| / cost_POT (log y, zeros at ``FLOOR``) and the two tolerances as
        horizontal lines.

    Examples
    --------
    >>> from sinkd.lab.verify import compare_problem
    >>> fig = gap_curve_figure(compare_problem([1.0], [1.0], [[0.5]], 1.0, 2))
    >>> [tr.name for tr in fig.data]  # doctest: +NORMALIZE_WHITESPACE
    ['plan, relative', 'cost, relative', 'plan tolerance', 'cost tolerance']
    """
    t = list(result.iterations)
    ends = [t[0], t[-1]] if len(t) > 1 else [t[0] - 0.5, t[0] + 0.5]
    hover = "t = %{x}<br>%{customdata:.2e}<extra>%{fullData.name}</extra>"
    fig = go.Figure([
        go.Scatter(x=t, y=_on_log_axis(result.plan_errors), customdata=result.plan_errors,
                   name="plan, relative", mode="lines+markers", hovertemplate=hover,
                   line=dict(color=OURS)),
        go.Scatter(x=t, y=_on_log_axis(result.cost_errors), customdata=result.cost_errors,
                   name="cost, relative", mode="lines+markers", hovertemplate=hover,
                   line=dict(color=OURS, dash="dot"), marker=dict(symbol="diamond")),
        go.Scatter(x=ends, y=[result.tolerances["plan"]] * 2, name="plan tolerance",
                   mode="lines", line=dict(color=TOL, dash="dash")),
        go.Scatter(x=ends, y=[result.tolerances["cost"]] * 2, name="cost tolerance",
                   mode="lines", line=dict(color=TOL, dash="dot")),
    ])
    fig.update_layout(title="Ours against POT after every iteration (relative error)",
                      xaxis_title="iteration t", legend=dict(orientation="h", y=-0.25),
                      yaxis=dict(type="log", exponentformat="power",
                                 title=f"relative error (0 drawn at {FLOOR:.0e})"))
    return fig


def timing_figure(results: Sequence[ProblemResult]) -> go.Figure:
    """Time of T iterations, ours and POT's, for each problem: bars from zero (ms, linear axis),
    each labelled with its value.

    Examples
    --------
    >>> from sinkd.lab.verify import compare_problem
    >>> fig = timing_figure([compare_problem([1.0], [1.0], [[0.5]], 1.0, 2)])
    >>> [tr.name for tr in fig.data], len(fig.data[0].y), fig.layout.yaxis.rangemode
    (['ours (sinkd)', 'POT'], 1, 'tozero')
    """
    labels = [r.label for r in results]
    fig = go.Figure([
        go.Bar(x=labels, y=[r.ours_ms for r in results], name="ours (sinkd)", marker_color=OURS,
               text=[f"{sci(r.ours_ms, 2)} ms" for r in results], textposition="outside",
               hovertemplate="%{y:.2e} ms<extra>ours</extra>"),
        go.Bar(x=labels, y=[r.pot_ms for r in results], name="POT", marker_color=POT,
               text=[f"{sci(r.pot_ms, 2)} ms" for r in results], textposition="outside",
               hovertemplate="%{y:.2e} ms<extra>POT</extra>"),
    ])
    top = max([r.ours_ms for r in results] + [r.pot_ms for r in results] + [1e-3])
    fig.update_layout(barmode="group", title="Time of T iterations (ms)", height=320,
                      yaxis=dict(rangemode="tozero", range=[0, 1.25 * top], title="ms"),
                      legend=dict(orientation="h", y=-0.2), bargap=0.3)
    return fig


def suite_gaps_figure(report: Report) -> go.Figure:
    """Every problem's relative plan error divided by its tolerance against t: below 1 means
    agreement.

    One trace per problem (float64 solid, float32 dashed), plus the line at 1.

    Examples
    --------
    >>> from sinkd.lab.verify import Report, compare_problem
    >>> fig = suite_gaps_figure(Report(problems=[compare_problem([1.0], [1.0], [[0.5]], 1.0, 2)]))
    >>> [tr.name for tr in fig.data]
    ['float64', 'tolerance']
    """
    fig = go.Figure()
    shown = set()
    for p in report.problems:
        ratio = np.asarray(p.plan_errors, dtype=np.float64) / p.tolerances["plan"]
        fig.add_trace(go.Scatter(
            x=p.iterations, y=_on_log_axis(ratio), customdata=ratio, name=p.dtype,
            legendgroup=p.dtype, showlegend=p.dtype not in shown, mode="lines+markers",
            opacity=0.6, line=dict(color=OURS, dash="solid" if p.dtype == "float64" else "dash"),
            hovertemplate=f"{p.label}<br>t = %{{x}}<br>error / tolerance = %{{customdata:.2e}}"
                          "<extra></extra>"))
        shown.add(p.dtype)
    last = max((max(p.iterations) for p in report.problems), default=1)
    fig.add_trace(go.Scatter(x=[1, last], y=[1.0, 1.0], name="tolerance", mode="lines",
                             line=dict(color=TOL, dash="dash")))
    fig.update_layout(title="Suite: relative plan error / tolerance",
                      xaxis=dict(type="log", title="iteration t"),
                      yaxis=dict(type="log", exponentformat="power",
                                 title=f"error / tolerance (0 drawn at {FLOOR:.0e})"),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def emd_limit_figure(limit: EmdLimit) -> go.Figure:
    """Gap of the entropic transport cost to ``ot.emd2`` against reg, under its two bounds.

    Log-log axes: the gap of a converged plan lies under reg (H(P_reg) - H(P*)), which lies
    under reg log(n m) (a straight line); gaps <= 0 are drawn at ``FLOOR``. Converged runs are
    filled circles; runs stopped before converging are open circles and make no claim.

    Examples
    --------
    >>> from sinkd.lab.verify_limits import emd_limit
    >>> fig = emd_limit_figure(emd_limit([1.0, 1.0], [1.0, 1.0], [[0.0, 1.0], [1.0, 0.0]]))
    >>> [tr.name for tr in fig.data]
    ['bound λ log(nm)', 'bound λ (H(P_λ) - H(P*))', 'ours: ⟨P_λ, C⟩ - ot.emd2']
    """
    gaps = [c - limit.exact for c in limit.costs]
    fig = go.Figure([
        go.Scatter(x=limit.regs, y=limit.bounds, mode="lines", name="bound λ log(nm)",
                   line=dict(color=TOL, dash="dash")),
        go.Scatter(x=limit.regs, y=_on_log_axis(limit.entropy_bounds), mode="lines",
                   name="bound λ (H(P_λ) - H(P*))", line=dict(color=TOL, dash="dot")),
        go.Scatter(x=limit.regs, y=_on_log_axis(gaps), mode="lines+markers",
                   name="ours: ⟨P_λ, C⟩ - ot.emd2", line=dict(color=OURS),
                   marker=dict(size=10, symbol=["circle" if ok else "circle-open"
                                                for ok in limit.converged]),
                   customdata=np.column_stack([gaps, limit.n_iters, limit.marginal_errors]),
                   hovertemplate="λ = %{x:g}<br>gap = %{customdata[0]:.2e}<br>"
                                 "%{customdata[1]} iterations, marginal error "
                                 "%{customdata[2]:.1e}<extra></extra>"),
    ])
    fig.update_layout(title=f"Gap to exact OT (ot.emd2 = {sci(limit.exact)})",
                      xaxis=dict(type="log", title="λ (entropic weight)"),
                      yaxis=dict(type="log", exponentformat="power",
                                 title=f"cost - exact OT (<= 0 drawn at {FLOOR:.0e})"),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def timing_scatter_figure(results: Sequence[ProblemResult]) -> go.Figure:
    """POT's time against ours, one point per problem (ms, log-log); above the diagonal ours is
    slower, below it faster.

    Examples
    --------
    >>> from sinkd.lab.verify import compare_problem
    >>> fig = timing_scatter_figure([compare_problem([1.0], [1.0], [[0.5]], 1.0, 2)])
    >>> [tr.name for tr in fig.data]
    ['float64', 'equal time']
    """
    fig = go.Figure()
    for dtype, symbol in (("float64", "circle"), ("float32", "diamond")):
        chosen = [r for r in results if r.dtype == dtype]
        if chosen:
            fig.add_trace(go.Scatter(
                x=[r.pot_ms for r in chosen], y=[r.ours_ms for r in chosen], name=dtype,
                mode="markers", text=[r.label for r in chosen],
                marker=dict(color=OURS, symbol=symbol, size=8, opacity=0.7),
                hovertemplate="%{text}<br>POT %{x:.2e} ms, ours %{y:.2e} ms<extra></extra>"))
    times = [t for r in results for t in (r.ours_ms, r.pot_ms)] or [1.0]
    ends = [min(times) / 2, max(times) * 2]
    fig.add_trace(go.Scatter(x=ends, y=ends, name="equal time", mode="lines",
                             line=dict(color=TOL, dash="dash")))
    fig.update_layout(title="Suite: time of T iterations (ms)",
                      xaxis=dict(type="log", title="POT (ms)"),
                      yaxis=dict(type="log", title="ours (ms)"),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def plan_comparison_figure(pair: PlanPair) -> go.Figure:
    """Our plan, POT's plan and their difference after iteration t, side by side.

    The two plans share one colour scale (0 to the larger maximum); the difference has its own,
    symmetric about 0 and labelled in scientific notation (it is round-off where they agree).

    Examples
    --------
    >>> from sinkd.lab.verify import plans_at
    >>> fig = plan_comparison_figure(plans_at([1.0, 1.0], [1.0, 1.0], [[0.0, 1.0], [1.0, 0.0]],
    ...                                       1.0, 3))
    >>> [tr.name for tr in fig.data]
    ['ours', 'POT', 'ours - POT']
    """
    n, m = pair.ours.shape
    top = float(max(pair.ours.max(), pair.pot.max(), 0.0)) or 1.0
    diff = pair.difference
    span = float(np.abs(diff).max()) or FLOOR
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.11, subplot_titles=(
        f"ours (sinkd, {pair.method}) after t = {pair.t}",
        f"POT ({pair.pot_method}), transposed problem",
        f"ours - POT (max |·| = {sci(float(np.abs(diff).max()), 2)})"))
    hover = "student %{y}, teacher %{x}<br>%{z:.3e}<extra>%{fullData.name}</extra>"
    for col, (z, name) in enumerate(((pair.ours, "ours"), (pair.pot, "POT")), 1):
        fig.add_trace(go.Heatmap(z=z, name=name, zmin=0, zmax=top, colorscale="Viridis",
                                 showscale=col == 2, hovertemplate=hover,
                                 colorbar=dict(x=0.64, len=0.9, thickness=12)), 1, col)
    fig.add_trace(go.Heatmap(z=diff, name="ours - POT", zmin=-span, zmax=span,
                             colorscale="RdBu", zmid=0, hovertemplate=hover,
                             colorbar=dict(x=1.0, len=0.9, thickness=12,
                                           exponentformat="e")), 1, 3)
    for col in (1, 2, 3):
        fig.update_xaxes(tickvals=sample_ticks(m), title="teacher j" if col == 2 else None,
                         row=1, col=col)
        fig.update_yaxes(tickvals=sample_ticks(n), autorange="reversed", showticklabels=col == 1,
                         row=1, col=col)
    fig.update_yaxes(title="student i", row=1, col=1)
    fig.update_layout(height=360, margin=dict(t=60, b=40, l=50, r=20))
    return fig
