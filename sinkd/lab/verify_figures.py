"""Figures of the verification against POT: pure functions of its results, returning plotly figures.

Our solver is drawn in the Sinkhorn colour, POT (the reference) in the reference colour, and
tolerances as grey dashed lines. Log axes cannot show an exact zero: such values are drawn at
``FLOOR`` and the hover text gives the exact value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from sinkd.lab.style import COLORS
from sinkd.lab.verify import ProblemResult, Report
from sinkd.lab.verify_limits import EmdLimit

FLOOR = 1e-18  # where exact zeros sit on a log axis
OURS, POT, TOL = COLORS["sinkhorn"], COLORS["teacher"], COLORS["ce"]


def _on_log_axis(values) -> np.ndarray:
    return np.maximum(np.asarray(values, dtype=np.float64), FLOOR)


def gap_curve_figure(result: ProblemResult) -> go.Figure:
    """max |P_ours(t) - P_POT(t)| and |cost_ours(t) - cost_POT(t)| against t, with tolerances.

    Parameters
    ----------
    result : ProblemResult
        From :func:`sinkd.lab.verify.compare_problem`.

    Returns
    -------
    go.Figure
        Four traces: the plan gap, the cost gap (log y, zeros at ``FLOOR``) and the two
        tolerances as horizontal lines.

    Examples
    --------
    >>> from sinkd.lab.verify import compare_problem
    >>> fig = gap_curve_figure(compare_problem([1.0], [1.0], [[0.5]], 1.0, 2))
    >>> [tr.name for tr in fig.data]  # doctest: +NORMALIZE_WHITESPACE
    ['max |P_ours - P_POT|', '|cost_ours - cost_POT|', 'plan tolerance', 'cost tolerance']
    """
    t = list(result.iterations)
    ends = [t[0], t[-1]] if len(t) > 1 else [t[0] - 0.5, t[0] + 0.5]
    hover = "t = %{x}<br>%{customdata:.3e}<extra>%{fullData.name}</extra>"
    fig = go.Figure([
        go.Scatter(x=t, y=_on_log_axis(result.plan_gaps), customdata=result.plan_gaps,
                   name="max |P_ours - P_POT|", mode="lines+markers", hovertemplate=hover,
                   line=dict(color=OURS)),
        go.Scatter(x=t, y=_on_log_axis(result.cost_gaps), customdata=result.cost_gaps,
                   name="|cost_ours - cost_POT|", mode="lines+markers", hovertemplate=hover,
                   line=dict(color=OURS, dash="dot"), marker=dict(symbol="diamond")),
        go.Scatter(x=ends, y=[result.tolerances["plan"]] * 2, name="plan tolerance",
                   mode="lines", line=dict(color=TOL, dash="dash")),
        go.Scatter(x=ends, y=[result.tolerances["cost"]] * 2, name="cost tolerance",
                   mode="lines", line=dict(color=TOL, dash="dot")),
    ])
    fig.update_layout(title="Ours against POT after every iteration",
                      xaxis_title="iteration t", legend=dict(orientation="h", y=-0.25),
                      yaxis=dict(type="log", exponentformat="power",
                                 title=f"difference (0 drawn at {FLOOR:.0e})"))
    return fig


def timing_figure(results: Sequence[ProblemResult]) -> go.Figure:
    """Time of T iterations, ours and POT's, side by side for each problem (ms, log x).

    Examples
    --------
    >>> from sinkd.lab.verify import compare_problem
    >>> fig = timing_figure([compare_problem([1.0], [1.0], [[0.5]], 1.0, 2)])
    >>> [tr.name for tr in fig.data], len(fig.data[0].x)
    (['ours (sinkd)', 'POT'], 1)
    """
    labels = [r.label for r in results]
    fig = go.Figure([
        go.Bar(y=labels, x=[r.ours_ms for r in results], name="ours (sinkd)", orientation="h",
               marker_color=OURS, hovertemplate="%{x:.3f} ms<extra>ours</extra>"),
        go.Bar(y=labels, x=[r.pot_ms for r in results], name="POT", orientation="h",
               marker_color=POT, hovertemplate="%{x:.3f} ms<extra>POT</extra>"),
    ])
    fig.update_layout(barmode="group", title="Time of T iterations (ms)",
                      xaxis=dict(type="log", title="ms"), height=180 + 40 * len(results),
                      yaxis=dict(autorange="reversed"), legend=dict(orientation="h", y=-0.2))
    return fig


def suite_gaps_figure(report: Report) -> go.Figure:
    """Every problem's plan gap divided by its tolerance against t: below 1 means agreement.

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
        ratio = np.asarray(p.plan_gaps, dtype=np.float64) / p.tolerances["plan"]
        fig.add_trace(go.Scatter(
            x=p.iterations, y=_on_log_axis(ratio), customdata=ratio, name=p.dtype,
            legendgroup=p.dtype, showlegend=p.dtype not in shown, mode="lines+markers",
            opacity=0.6, line=dict(color=OURS, dash="solid" if p.dtype == "float64" else "dash"),
            hovertemplate=f"{p.label}<br>t = %{{x}}<br>gap / tolerance = %{{customdata:.2e}}"
                          "<extra></extra>"))
        shown.add(p.dtype)
    last = max((max(p.iterations) for p in report.problems), default=1)
    fig.add_trace(go.Scatter(x=[1, last], y=[1.0, 1.0], name="tolerance", mode="lines",
                             line=dict(color=TOL, dash="dash")))
    fig.update_layout(title="Suite: max |P_ours - P_POT| / tolerance",
                      xaxis=dict(type="log", title="iteration t"),
                      yaxis=dict(type="log", exponentformat="power",
                                 title=f"gap / tolerance (0 drawn at {FLOOR:.0e})"),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def emd_limit_figure(limit: EmdLimit) -> go.Figure:
    """Gap of the entropic transport cost to ``ot.emd2`` against reg, under reg * log(n m).

    Log-log axes: the bound is a straight line and the gap must stay under it (gaps <= 0 are
    drawn at ``FLOOR``). Converged runs are filled circles; runs stopped before converging are
    open circles and make no claim.

    Examples
    --------
    >>> from sinkd.lab.verify_limits import emd_limit
    >>> fig = emd_limit_figure(emd_limit([1.0, 1.0], [1.0, 1.0], [[0.0, 1.0], [1.0, 0.0]]))
    >>> [tr.name for tr in fig.data]
    ['bound reg log(nm)', 'ours: <P_reg, C> - ot.emd2']
    """
    gaps = [c - limit.exact for c in limit.costs]
    fig = go.Figure([
        go.Scatter(x=limit.regs, y=limit.bounds, mode="lines", name="bound reg log(nm)",
                   line=dict(color=TOL, dash="dash")),
        go.Scatter(x=limit.regs, y=_on_log_axis(gaps), mode="lines+markers",
                   name="ours: <P_reg, C> - ot.emd2", line=dict(color=OURS),
                   marker=dict(size=10, symbol=["circle" if ok else "circle-open"
                                                for ok in limit.converged]),
                   customdata=np.column_stack([gaps, limit.n_iters, limit.marginal_errors]),
                   hovertemplate="reg = %{x:g}<br>gap = %{customdata[0]:.3e}<br>"
                                 "%{customdata[1]} iterations, marginal error "
                                 "%{customdata[2]:.1e}<extra></extra>"),
    ])
    fig.update_layout(title=f"Gap to exact OT (ot.emd2 = {limit.exact:.6g}), probability masses",
                      xaxis=dict(type="log", title="reg (λ)"),
                      yaxis=dict(type="log", exponentformat="power",
                                 title=f"transport cost - exact OT (<= 0 drawn at {FLOOR:.0e})"),
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
                hovertemplate="%{text}<br>POT %{x:.3f} ms, ours %{y:.3f} ms<extra></extra>"))
    times = [t for r in results for t in (r.ours_ms, r.pot_ms)] or [1.0]
    ends = [min(times) / 2, max(times) * 2]
    fig.add_trace(go.Scatter(x=ends, y=ends, name="equal time", mode="lines",
                             line=dict(color=TOL, dash="dash")))
    fig.update_layout(title="Suite: time of T iterations (ms)",
                      xaxis=dict(type="log", title="POT (ms)"),
                      yaxis=dict(type="log", title="ours (ms)"),
                      legend=dict(orientation="h", y=-0.25))
    return fig
