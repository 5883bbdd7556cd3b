"""Plotly figures of a toy fit (:class:`sinkd.lab.toy.ToyFit`): pure functions, no Streamlit.

The students are drawn as small multiples, one panel per fitted divergence on shared axes with the
teacher shaded in each (traces in pairs: teacher, student); the loss and gradient figures overlay
one curve per divergence. Colours, dashes, labels and font sizes come from :mod:`sinkd.lab.style`.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sinkd.lab.style import COLORS, DASHES, FONT, LABELS, LINE_WIDTH, TICK_FONT, TITLE_FONT
from sinkd.lab.toy import ToyFit
from sinkd.lab.toy_metrics import compute_metrics, headline

_TEACHER_FILL = "rgba(0, 0, 0, 0.15)"  # COLORS["teacher"], translucent under the students
MAX_COLS = 3  # panels per row: three keep a two-line panel title readable at 1280 px
PANEL_PX = 92  # px of each panel's plot in the first figure: nine panels fit a 720 px screen
TITLE_PX = 44  # px above each panel for its two-line title
# Plotly's default layout, with the fonts a projector needs (ticks >= 14 px, titles larger).
_FONTS = dict(font=FONT, title_font=TITLE_FONT)


def _line(name: str, width: float = LINE_WIDTH) -> dict:
    return dict(color=COLORS[name], dash=DASHES[name], width=width)


def _teacher_trace(fit: ToyFit, showlegend: bool = True) -> go.Scatter:
    return go.Scatter(x=fit.x, y=fit.teacher_probs, name=LABELS["teacher"], mode="lines",
                      line=dict(color=COLORS["teacher"], width=1, shape="hvh"),
                      fill="tozeroy", fillcolor=_TEACHER_FILL, showlegend=showlegend,
                      legendgroup="teacher", hoverinfo="skip")


def _student_trace(fit: ToyFit, d: int, y: np.ndarray, showlegend: bool = True) -> go.Scatter:
    name = fit.names[d]
    return go.Scatter(x=fit.x, y=y, name=LABELS[name], mode="lines", line=_line(name),
                      showlegend=showlegend,
                      hovertemplate="x %{x:.2f}<br>mass %{y:.4f}<extra>" + LABELS[name]
                                    + "</extra>")


def _layout(fig: go.Figure, title: str, xtitle: str, ytitle: str) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=xtitle, yaxis_title=ytitle, height=420,
                      legend=dict(orientation="h", y=-0.25, font=FONT),
                      margin=dict(t=60, b=40), **_FONTS)
    fig.update_xaxes(tickfont=TICK_FONT)
    fig.update_yaxes(tickfont=TICK_FONT)
    return fig


def panel_grid(n_panels: int) -> tuple[int, int]:
    """Rows and columns of the small multiples for ``n_panels`` divergences.

    Examples
    --------
    >>> [panel_grid(d) for d in (1, 3, 4, 9)]
    [(1, 1), (1, 3), (2, 2), (3, 3)]
    """
    cols = 2 if n_panels == 4 else min(n_panels, MAX_COLS)
    return math.ceil(n_panels / cols), cols


def _panels(fit: ToyFit, students: np.ndarray, title: str | None, panel_px: int,
            bottom_px: int) -> go.Figure:
    """One panel per divergence on shared axes: the teacher shaded in each, then its student.

    Traces come in pairs, panel by panel: ``2 d`` is the teacher, ``2 d + 1`` the student of
    ``fit.names[d]``; each panel's title names the divergence and its headline numbers. Sizes
    are in px: ``panel_px`` per panel's plot, ``TITLE_PX`` above each for its two-line title.
    """
    D = len(fit.names)
    rows, cols = panel_grid(D)
    m = compute_metrics(fit)
    titles = [f"<b>{LABELS[n]}</b><br>{headline(m, d)}" for d, n in enumerate(fit.names)]
    area = rows * panel_px + (rows - 1) * TITLE_PX  # the plot area, titles between rows
    fig = make_subplots(rows=rows, cols=cols, shared_xaxes="all", shared_yaxes="all",
                        subplot_titles=titles, vertical_spacing=TITLE_PX / area,
                        horizontal_spacing=0.025)
    for d in range(D):
        r, c = divmod(d, cols)
        fig.add_trace(_teacher_trace(fit, showlegend=False), row=r + 1, col=c + 1)
        fig.add_trace(_student_trace(fit, d, students[d], showlegend=False), row=r + 1,
                      col=c + 1)
    fig.update_annotations(font=dict(size=14))  # the subplot titles (the only annotations)
    top = float(max(students.max(), fit.teacher_probs.max()))
    fig.update_yaxes(range=[0.0, 1.08 * top], tickfont=TICK_FONT, nticks=4)
    fig.update_xaxes(tickfont=TICK_FONT, range=[float(fit.x[0]), float(fit.x[-1])])
    fig.update_yaxes(title_text="mass", title_font=FONT, title_standoff=4, col=1)
    head = TITLE_PX + (40 if title else 4)
    fig.update_layout(height=area + head + bottom_px, font=FONT, hovermode="closest",
                      margin=dict(t=head, b=bottom_px, l=64, r=8), showlegend=False)
    if title:
        fig.update_layout(title=dict(text=title, font=TITLE_FONT, x=0.0, xanchor="left",
                                     y=1.0, yanchor="top", yref="container", pad=dict(t=8)))
    return fig


def fit_figure(fit: ToyFit) -> go.Figure:
    """Small multiples: one panel per divergence, its fitted student over the shaded teacher.

    All panels share their axes; each title names the divergence and its mass per mode, gap mass
    and W1 to the teacher (:func:`sinkd.lab.toy_metrics.headline`). Traces come in pairs, teacher
    then student, in the order of ``fit.names``.

    Examples
    --------
    >>> from sinkd.lab.toy import fit as run, mixture
    >>> f = run(mixture([0.0], [1.0], [1.0]), divergences=("kl", "sinkhorn"), steps=2, n_bins=20)
    >>> [t.name for t in fit_figure(f).data]
    ['teacher', 'KL (forward)', 'teacher', 'Sinkhorn']
    """
    return _panels(fit, fit.probs, None, PANEL_PX, 30)


def training_animation(fit: ToyFit) -> go.Figure:
    """The same small multiples during training: one frame per snapshot, play and a slider.

    The frames only replace the students' y values (traces 1, 3, 5, ...); the teachers stay. The
    y axis is fixed to the largest bin mass seen, so nothing rescales while playing. The panel
    titles give the headline numbers at the end of training.
    """
    D = len(fit.names)
    fig = _panels(fit, fit.snapshots[0], "Training: press play, or drag the step slider "
                  "(panel titles: numbers at the end)", 130, 110)
    fig.frames = [
        go.Frame(data=[go.Scatter(y=fit.snapshots[s, d]) for d in range(D)],
                 traces=[2 * d + 1 for d in range(D)], name=str(step))
        for s, step in enumerate(fit.snapshot_steps)
    ]
    still = {"frame": {"duration": 0, "redraw": False}, "mode": "immediate",
             "transition": {"duration": 0}}
    margin = fig.layout.margin
    below = -40 / (fig.layout.height - margin.t - margin.b)  # under the tick labels (paper)
    fig.update_layout(  # play/pause at the bottom left, the step slider beside them
        updatemenus=[dict(type="buttons", direction="left", x=0.0, y=below, xanchor="left",
                          yanchor="top", showactive=False,
                          pad=dict(t=0, r=10, b=10), font=FONT,
                          buttons=[
                              dict(label="Play", method="animate",
                                   args=[None, {**still, "frame": {"duration": 120,
                                                                    "redraw": False},
                                                "fromcurrent": True}]),
                              dict(label="Pause", method="animate", args=[[None], still]),
                          ])],
        sliders=[dict(active=0, x=0.2, len=0.8, y=below, yanchor="top", font=FONT,
                      currentvalue=dict(prefix="step ", font=FONT), pad=dict(t=0, b=10),
                      steps=[dict(label=str(step), method="animate", args=[[str(step)], still])
                             for step in fit.snapshot_steps])],
    )
    top = float(max(fit.snapshots.max(), fit.teacher_probs.max()))
    fig.update_yaxes(range=[0.0, 1.08 * top])
    return fig


def loss_figure(fit: ToyFit) -> go.Figure:
    """Each divergence's own loss over the steps, divided by its value at step 0 (display only).

    The raw loss is in the hover. A loss that starts at exactly 0 is drawn unscaled.
    """
    steps = np.arange(fit.losses.shape[0])
    fig = go.Figure()
    for d, name in enumerate(fit.names):
        raw = fit.losses[:, d]
        scale = raw[0] if raw[0] != 0 else 1.0
        fig.add_trace(go.Scatter(
            x=steps, y=raw / scale, customdata=raw, name=LABELS[name], mode="lines",
            line=_line(name),
            hovertemplate="step %{x}<br>loss / loss at step 0: %{y:.4g}"
                          "<br>loss: %{customdata:.6g}<extra></extra>"))
    return _layout(fig, "Loss curves (normalised)", "step", "loss ÷ its own loss at step 0")


def grad_figure(fit: ToyFit) -> go.Figure:
    """Norm of each loss's gradient with respect to its student's parameters, log scale."""
    steps = np.arange(fit.grad_norms.shape[0])
    fig = go.Figure([
        go.Scatter(x=steps, y=fit.grad_norms[:, d], name=LABELS[name], mode="lines",
                   line=_line(name))
        for d, name in enumerate(fit.names)
    ])
    fig.update_yaxes(type="log", exponentformat="power")
    return _layout(fig, "Gradient norm (log scale)", "step", "‖∇ loss‖ w.r.t. the parameters")
