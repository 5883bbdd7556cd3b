"""Plotly figures of a toy fit (:class:`sinkd.lab.toy.ToyFit`): pure functions, no Streamlit.

Every figure has the teacher first (when it is drawn) and then one trace per fitted divergence,
in the order of ``fit.names``, coloured and named by :mod:`sinkd.lab.style`.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from sinkd.lab.style import COLORS, LABELS
from sinkd.lab.toy import ToyFit

_TEACHER_FILL = "rgba(34, 34, 34, 0.15)"  # COLORS["teacher"], translucent under the students


def _teacher_trace(fit: ToyFit) -> go.Scatter:
    return go.Scatter(x=fit.x, y=fit.teacher_probs, name=LABELS["teacher"], mode="lines",
                      line=dict(color=COLORS["teacher"], width=1.5, shape="hvh"),
                      fill="tozeroy", fillcolor=_TEACHER_FILL)


def _student_trace(fit: ToyFit, d: int, y: np.ndarray) -> go.Scatter:
    name = fit.names[d]
    return go.Scatter(x=fit.x, y=y, name=LABELS[name], mode="lines",
                      line=dict(color=COLORS[name], width=2))


def _layout(fig: go.Figure, title: str, xtitle: str, ytitle: str) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=xtitle, yaxis_title=ytitle, height=420,
                      legend=dict(orientation="h", y=-0.2), margin=dict(t=60, b=40))
    return fig


def fit_figure(fit: ToyFit) -> go.Figure:
    """The fitted students (bin masses) over the teacher's, one colour per divergence.

    Examples
    --------
    >>> from sinkd.lab.toy import fit as run, mixture
    >>> f = run(mixture([0.0], [1.0], [1.0]), divergences=("kl", "sinkhorn"), steps=2, n_bins=20)
    >>> [t.name for t in fit_figure(f).data]
    ['teacher', 'KL (forward)', 'Sinkhorn']
    """
    fig = go.Figure([_teacher_trace(fit)]
                    + [_student_trace(fit, d, fit.probs[d]) for d in range(len(fit.names))])
    return _layout(fig, f"Fitted students after {fit.settings['steps']} steps",
                   "x (bin centre)", "probability per bin")


def training_animation(fit: ToyFit) -> go.Figure:
    """The students during training: one frame per snapshot, with play and a step slider.

    The frames only replace the students' y values (traces 1..D); the teacher stays. The y axis
    is fixed to the largest bin mass seen, so nothing rescales while playing.
    """
    D = len(fit.names)
    fig = go.Figure([_teacher_trace(fit)]
                    + [_student_trace(fit, d, fit.snapshots[0, d]) for d in range(D)])
    fig.frames = [
        go.Frame(data=[go.Scatter(y=fit.snapshots[s, d]) for d in range(D)],
                 traces=list(range(1, D + 1)), name=str(step))
        for s, step in enumerate(fit.snapshot_steps)
    ]
    still = {"frame": {"duration": 0, "redraw": False}, "mode": "immediate",
             "transition": {"duration": 0}}
    fig.update_layout(  # play/pause at the bottom left, the step slider beside them
        updatemenus=[dict(type="buttons", direction="left", x=0.0, y=-0.2, xanchor="left",
                          yanchor="top", showactive=False, pad=dict(t=0, r=10),
                          buttons=[
                              dict(label="Play", method="animate",
                                   args=[None, {**still, "frame": {"duration": 120,
                                                                    "redraw": False},
                                                "fromcurrent": True}]),
                              dict(label="Pause", method="animate", args=[[None], still]),
                          ])],
        sliders=[dict(active=0, x=0.16, len=0.84, y=-0.2, yanchor="top",
                      currentvalue=dict(prefix="step "), pad=dict(t=0),
                      steps=[dict(label=str(step), method="animate", args=[[str(step)], still])
                             for step in fit.snapshot_steps])],
    )
    top = float(max(fit.snapshots.max(), fit.teacher_probs.max()))
    fig.update_yaxes(range=[0.0, 1.05 * top])
    _layout(fig, "Training (press play, or drag the step slider)", "x (bin centre)",
            "probability per bin")
    fig.update_layout(legend=dict(orientation="v", x=1.02, y=1.0), height=500,
                      margin=dict(t=60, b=120))  # legend on the right: the slider is below
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
            line=dict(color=COLORS[name], width=2),
            hovertemplate="step %{x}<br>loss / loss at step 0: %{y:.4g}"
                          "<br>loss: %{customdata:.6g}<extra></extra>"))
    return _layout(fig, "Loss curves (normalised)", "step", "loss ÷ its own loss at step 0")


def grad_figure(fit: ToyFit) -> go.Figure:
    """Norm of each loss's gradient with respect to its student's parameters, log scale."""
    steps = np.arange(fit.grad_norms.shape[0])
    fig = go.Figure([
        go.Scatter(x=steps, y=fit.grad_norms[:, d], name=LABELS[name], mode="lines",
                   line=dict(color=COLORS[name], width=2))
        for d, name in enumerate(fit.names)
    ])
    fig.update_yaxes(type="log", exponentformat="power")
    return _layout(fig, "Gradient norm (log scale)", "step", "‖∇ loss‖ w.r.t. the parameters")
