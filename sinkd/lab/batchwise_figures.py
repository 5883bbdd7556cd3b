"""Plotly figures of a batch-wise fit (:class:`sinkd.lab.batchwise_fit.BatchFit`): pure
functions, no Streamlit.

On the simplex (a ternary plot: one corner per class) every prediction is a point. The
teacher's are hollow black markers, a student's filled markers in the student's colour
(:mod:`sinkd.lab.style`); the marker's *shape* is the input's teacher label (circle, square,
diamond for classes 0, 1, 2), so a square in the circles' corner is a prediction paired with the
wrong input, whatever the clouds look like.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sinkd.lab.batchwise_fit import BatchFit
from sinkd.lab.style import COLORS, FONT, LABELS, TICK_FONT, TITLE_FONT

SYMBOLS = ("circle", "square", "diamond")  # marker shape = the input's teacher label
_AXIS = dict(min=0, linewidth=1, ticks="", showticklabels=False, showgrid=False)


def _points(p: np.ndarray, labels: np.ndarray, name: str, colour: str,
            hollow: bool) -> go.Scatterternary:
    return go.Scatterternary(
        a=p[:, 0], b=p[:, 1], c=p[:, 2], mode="markers", name=name,
        marker=dict(symbol=[SYMBOLS[k] + ("-open" if hollow else "") for k in labels],
                    color=colour, size=9 if hollow else 7, opacity=0.9 if hollow else 0.8,
                    line=dict(width=1.5 if hollow else 0.5,
                              color=colour if hollow else "white")),
        customdata=np.column_stack([np.arange(len(p)), labels]),
        hovertemplate=f"{name}<br>sample %{{customdata[0]}} (teacher label "
                      "%{customdata[1]})<br>p = (%{a:.2f}, %{b:.2f}, %{c:.2f})<extra></extra>")


def _shown(f: BatchFit, students: Sequence[str] | None) -> list[str]:
    shown = list(f.students if students is None else students)
    unknown = [s for s in shown if s not in f.students]
    if not shown or unknown:
        raise ValueError(f"students must be some of the fitted {list(f.students)}, got {shown}")
    return shown


def cloud_figure(f: BatchFit, students: Sequence[str] | None = None, *,
                 animate: bool = True, cols: int = 3) -> go.Figure:
    """The teacher's and each student's predictions on the simplex, one panel per student.

    Traces: per panel the teacher (hollow) then the student (filled), at the end of training.
    With ``animate`` the student traces get one frame per recorded step (a play button from
    step 0 and a step slider).

    Examples
    --------
    >>> from sinkd.lab.batchwise_fit import fit
    >>> fig = cloud_figure(fit(steps=4, n=12, students=("kl", "sinkd")))
    >>> [t.name for t in fig.data], len(fig.frames)
    (['teacher', 'KL (forward)', 'teacher', 'SinKD batch term alone'], 5)
    """
    shown = _shown(f, students)
    cols = min(cols, len(shown))
    rows = math.ceil(len(shown) / cols)
    idx = [f.students.index(s) for s in shown]
    m = f.metrics
    titles = [f"<b style='color:{COLORS[s]}'>{LABELS[s]}</b><br>cloud OT {m[s].cloud_ot:.2f} · "
              f"paired L1 {m[s].paired_l1:.2f} · acc {m[s].accuracy:.0%}" for s in shown]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles,
                        specs=[[{"type": "ternary"}] * cols] * rows,
                        vertical_spacing=0.16, horizontal_spacing=0.06)
    labels, teacher = f.batch.labels, f.batch.teacher_probs
    last = len(f.frame_steps) - 1  # the panels open at the end of training
    for k, (s, i) in enumerate(zip(shown, idx, strict=True)):
        r, c = divmod(k, cols)
        fig.add_trace(_points(teacher, labels, "teacher", COLORS["teacher"], True),
                      row=r + 1, col=c + 1)
        fig.add_trace(_points(f.frames[last, i], labels, LABELS[s], COLORS[s], False),
                      row=r + 1, col=c + 1)
    for key in [k for k in fig.layout if k.startswith("ternary")]:
        fig.layout[key].update(sum=1, aaxis=dict(title="", **_AXIS),  # top corner: class 0
                               baxis=dict(title="1", **_AXIS), caxis=dict(title="2", **_AXIS))
    fig.update_annotations(font=dict(size=13))
    fig.update_layout(height=270 * rows + 110 + (90 if animate else 0), font=FONT,
                      showlegend=False, margin=dict(t=125, b=90 if animate else 20, l=30, r=30),
                      title=dict(text=f"Predictions on the simplex after {f.settings['steps']} "
                                      "steps<br><sup>corners: classes 0 (top), 1, 2; hollow black: "
                                      "the teacher; filled: the student; marker shape: the "
                                      "input's teacher label (○ 0, □ 1, ◇ 2)</sup>",
                                 font=TITLE_FONT))
    if animate:
        student_traces = [2 * k + 1 for k in range(len(shown))]
        fig.frames = [go.Frame(
            data=[go.Scatterternary(a=f.frames[t, i][:, 0], b=f.frames[t, i][:, 1],
                                    c=f.frames[t, i][:, 2]) for i in idx],
            traces=student_traces, name=str(step)) for t, step in enumerate(f.frame_steps)]
        still = {"frame": {"duration": 0, "redraw": True}, "mode": "immediate",
                 "transition": {"duration": 0}}
        play = {**still, "fromcurrent": False, "frame": {"duration": 150, "redraw": True}}
        fig.update_layout(
            updatemenus=[dict(type="buttons", direction="left", x=0.0, y=0.0, xanchor="left",
                              yanchor="top", showactive=False, pad=dict(t=40, r=10),
                              buttons=[dict(label="▶ Play from step 0", method="animate",
                                            args=[None, play]),
                                       dict(label="Pause", method="animate",
                                            args=[[None], still])])],
            sliders=[dict(active=last, x=0.3, len=0.7, y=0.0, yanchor="top", pad=dict(t=30),
                          currentvalue=dict(prefix="step ", font=FONT),
                          steps=[dict(label=str(step), method="animate",
                                      args=[[str(step)], still]) for step in f.frame_steps])])
    return fig


def plan_figure(f: BatchFit) -> go.Figure:
    """SinKD's transport plan at the end, between the SinKD-alone student's predictions (rows)
    and the teacher's (columns), samples sorted by teacher label: the batch term's view of who
    is matched to whom. A right pairing is mass on the diagonal.

    Examples
    --------
    >>> from sinkd.lab.batchwise_fit import fit
    >>> fig = plan_figure(fit(steps=2, n=12, students=("sinkd",)))
    >>> fig.data[0].type, fig.data[0].z.shape
    ('heatmap', (12, 12))
    """
    order = np.lexsort((np.arctan2(f.batch.x[:, 1], f.batch.x[:, 0]), f.batch.labels))
    P = f.plan[np.ix_(order, order)]
    n = len(P)
    ids = np.broadcast_to(order, (n, n))  # positions 0..n-1 on both axes; ids in the hover
    fig = go.Figure(go.Heatmap(
        z=P, x=np.arange(n), y=np.arange(n), customdata=np.stack([ids.T, ids], -1),
        colorscale="Greys", zmin=0, colorbar=dict(title="mass"),
        hovertemplate="student sample %{customdata[0]} → teacher sample %{customdata[1]}"
                      "<br>mass %{z:.3f}<extra></extra>"))
    for b in np.flatnonzero(np.diff(f.batch.labels[order])) + 0.5:  # class boundaries
        fig.add_hline(y=b, line=dict(color=COLORS["sinkd"], width=1, dash="dot"))
        fig.add_vline(x=b, line=dict(color=COLORS["sinkd"], width=1, dash="dot"))
    own = float(np.trace(f.plan)) / n
    who = LABELS["sinkd" if "sinkd" in f.students else f.students[0]]
    fig.update_layout(
        title=dict(text=f"SinKD's plan at the end<br><sup>{who} → teacher; diagonal (own "
                        f"pairs): {own:.0%}</sup>", font=TITLE_FONT),
        xaxis=dict(title="teacher sample (sorted by label)", tickfont=TICK_FONT,
                   showticklabels=False),
        yaxis=dict(title="student sample", tickfont=TICK_FONT, showticklabels=False,
                   autorange="reversed", scaleanchor="x"),
        height=480, font=FONT, margin=dict(t=70, b=50))
    return fig


def metrics_figure(f: BatchFit) -> go.Figure:
    """Per student, the cloud OT (pairs ignored) beside the paired L1 (sample by sample), both
    in L1 units; the identity pairing is one plan, so cloud OT <= paired L1 always.

    Examples
    --------
    >>> from sinkd.lab.batchwise_fit import fit
    >>> fig = metrics_figure(fit(steps=2, n=12, students=("kl", "sinkd")))
    >>> [t.name for t in fig.data], list(fig.data[0].x)
    (['cloud OT (pairs ignored)', 'paired L1 (sample by sample)'], ['KL (forward)', \
'SinKD batch term alone'])
    """
    names = [LABELS[s] for s in f.students]
    colours = [COLORS[s] for s in f.students]
    fig = go.Figure()
    for metric, label, pattern in (("cloud_ot", "cloud OT (pairs ignored)", ""),
                                   ("paired_l1", "paired L1 (sample by sample)", "/")):
        values = [getattr(f.metrics[s], metric) for s in f.students]
        fig.add_trace(go.Bar(x=names, y=values, name=label,
                             marker=dict(color=colours, pattern_shape=pattern,
                                         line=dict(color="#000000", width=1)),
                             text=[f"{v:.2f}" for v in values], textposition="outside",
                             hovertemplate="%{x}<br>" + label + ": %{y:.3f}<extra></extra>"))
    top = max(max(m.paired_l1, m.cloud_ot) for m in f.metrics.values())
    fig.update_layout(barmode="group", height=420, font=FONT,
                      title=dict(text="Cloud against pairs (L1 between probability vectors)",
                                 font=TITLE_FONT),
                      yaxis=dict(title="distance to the teacher", range=[0, 1.15 * top + 0.05],
                                 tickfont=TICK_FONT),
                      xaxis=dict(tickfont=TICK_FONT),
                      legend=dict(orientation="h", y=1.0, yanchor="bottom", x=1.0,
                                  xanchor="right"),
                      margin=dict(t=90, b=40))
    return fig
