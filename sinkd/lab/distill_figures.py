"""Figures of the distillation page: live loss curves, the recipe comparison and the terms'
gradient shares (pure plotly)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from sinkd.lab.style import COLORS, LABELS
from sinkd.validation import check_choice

# the KD recipes' colours are their divergence's; "sinkd" takes the Sinkhorn colour
_RECIPE_COLORS = {"kd": COLORS["kl"], "sinkd": COLORS["sinkhorn"], "sinkhorn": COLORS["gjsd"]}
_PART_COLORS = {"loss": COLORS["teacher"], "ce": COLORS["ce"], "kd": COLORS["kl"],
                "sinkhorn": COLORS["sinkhorn"]}
_PART_NAMES = {"loss": "total loss", "ce": LABELS["ce"], "kd": "KD term",
               "sinkhorn": "Sinkhorn term"}


def recipe_color(recipe: str) -> str:
    """The colour of a recipe: its divergence's colour from :data:`sinkd.lab.style.COLORS`.

    >>> recipe_color("ce") == COLORS["ce"]
    True
    """
    return _RECIPE_COLORS.get(recipe, COLORS.get(recipe, "#555555"))


def loss_curves_figure(steps: Sequence[dict]) -> go.Figure:
    """Each logged loss term against the step: one line per term present in ``steps``.

    Parameters
    ----------
    steps : sequence of dict
        Step events of :func:`sinkd.distill.train` (``step``, ``loss``, ``ce``, ``kd``,
        ``sinkhorn``; a term is None when the recipe does not use it).

    Returns
    -------
    plotly.graph_objects.Figure
        One scatter trace per term with at least one value.

    Examples
    --------
    >>> fig = loss_curves_figure([{"step": 1, "loss": 1.0, "ce": 1.0, "kd": None}])
    >>> [t.name for t in fig.data]
    ['total loss', 'cross-entropy']
    """
    fig = go.Figure()
    for part in ("loss", "ce", "kd", "sinkhorn"):
        rows = [(e["step"], e[part]) for e in steps if e.get(part) is not None]
        if rows:
            x, y = zip(*rows, strict=True)
            fig.add_scatter(x=list(x), y=list(y), mode="lines", name=_PART_NAMES[part],
                            line=dict(color=_PART_COLORS[part]))
    fig.update_layout(xaxis_title="step", yaxis_title="loss", height=300,
                      margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h"))
    return fig


def compare_figure(table: pd.DataFrame, metric: str = "test") -> go.Figure:
    """Bars of the mean ``metric`` accuracy (%) per experiment, error bars one std.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`sinkd.records.compare`'s output (``<metric>_mean``, ``<metric>_std`` columns).
    metric : {"test", "best_dev", "final_dev"}

    Returns
    -------
    plotly.graph_objects.Figure
        One bar trace; rows without a mean (only stopped runs) are left out; a missing std
        (one seed) draws no error bar.

    Examples
    --------
    >>> t = pd.DataFrame([dict(recipe="ce", steps=5, seeds=2, test_mean=0.6, test_std=0.1)])
    >>> [round(v, 6) for v in compare_figure(t).data[0].y]
    [60.0]
    """
    check_choice("metric", metric, ("test", "best_dev", "final_dev"))
    rows = table[[not math.isnan(m) for m in table[f"{metric}_mean"].astype(float)]]
    settings = rows["settings"] if "settings" in rows else [""] * len(rows)
    labels = [f"{r} ({s} steps, n={n}{', ' + x if x else ''})" for r, s, n, x in zip(
        rows["recipe"], rows["steps"], rows["seeds"], settings, strict=True)]  # one bar each
    std = [0.0 if math.isnan(s) else 100 * s for s in rows[f"{metric}_std"].astype(float)]
    fig = go.Figure(go.Bar(x=labels, y=[100 * m for m in rows[f"{metric}_mean"]],
                           error_y=dict(type="data", array=std, visible=True),
                           marker_color=[recipe_color(r) for r in rows["recipe"]],
                           name=f"{metric.replace('_', ' ')} accuracy"))
    fig.update_layout(yaxis_title=f"{metric.replace('_', ' ')} accuracy (%)", height=350,
                      margin=dict(l=10, r=10, t=30, b=10))
    return fig


_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def grad_shares_figure(runs: Sequence[tuple[str, Sequence[dict]]]) -> go.Figure:
    """Each term's share of the gradient at the student's logits (%) against the step, per run.

    The share of term i is ||g_i|| / sum_j ||g_j||, g_i its weighted gradient with respect to the
    batch's logits (``sinkd.distill.gradients``), measured on evaluation steps: it says how hard
    each term pulls the student, which the raw loss values do not.

    Parameters
    ----------
    runs : sequence of (str, sequence of dict)
        A label per run and its metrics rows (:func:`sinkd.distill.train`'s step events or a
        record's ``metrics``); rows with ``grad_share_ce``, ``grad_share_kd`` or
        ``grad_share_sinkhorn`` (None where the recipe has no such term) are drawn.

    Returns
    -------
    plotly.graph_objects.Figure
        One trace per run and term with at least one share, coloured by term, dashed by run,
        named ``"<label>: <term>"``; runs without shares draw nothing.

    Examples
    --------
    >>> fig = grad_shares_figure([("sinkd seed 0", [
    ...     {"step": 2, "grad_share_ce": 0.25, "grad_share_kd": 0.5, "grad_share_sinkhorn": 0.25},
    ...     {"step": 3, "loss": 1.0}])])
    >>> [(t.name, list(t.y)) for t in fig.data][-1]
    ('sinkd seed 0: Sinkhorn term', [25.0])
    """
    fig = go.Figure()
    for i, (label, rows) in enumerate(runs):
        for part in ("ce", "kd", "sinkhorn"):
            key = f"grad_share_{part}"  # sinkd.distill.gradients.SHARE_KEYS (no import: lab)
            points = [(e["step"], 100 * e[key]) for e in rows if e.get(key) is not None]
            if points:
                x, y = zip(*points, strict=True)
                fig.add_scatter(x=list(x), y=list(y), mode="lines+markers",
                                name=f"{label}: {_PART_NAMES[part]}", legendgroup=label,
                                line=dict(color=_PART_COLORS[part],
                                          dash=_DASHES[i % len(_DASHES)]))
    fig.update_layout(xaxis_title="step",
                      yaxis_title="share of the gradient at the logits (%)",
                      yaxis_range=[0, 100], height=350, margin=dict(l=10, r=10, t=30, b=10),
                      legend=dict(orientation="h"))
    return fig
