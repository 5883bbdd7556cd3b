"""Figures of the distillation page: loss curves (live, and of saved runs), the recipe
comparison and the terms' gradient shares (pure plotly)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sinkd.lab.distill_tables import Curves, experiment_labels
from sinkd.lab.style import COLORS, LABELS
from sinkd.validation import check_choice

# the KD recipes' colours are their divergence's; "sinkd" takes the Sinkhorn colour
_RECIPE_COLORS = {"kd": COLORS["kl"], "sinkd": COLORS["sinkhorn"], "sinkhorn": COLORS["gjsd"]}
_PART_COLORS = {"loss": COLORS["teacher"], "ce": COLORS["ce"], "kd": COLORS["kl"],
                "sinkhorn": COLORS["sinkhorn"]}
_PART_NAMES = {"loss": "total loss", "ce": LABELS["ce"], "kd": "KD term",
               "sinkhorn": "Sinkhorn term"}
LOSS_TERMS = ("loss", "ce", "kd", "sinkhorn")  # as logged per step by sinkd.distill.train
_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def recipe_color(recipe: str) -> str:
    """The colour of a recipe: its divergence's colour from :data:`sinkd.lab.style.COLORS`.

    >>> recipe_color("ce") == COLORS["ce"]
    True
    """
    return _RECIPE_COLORS.get(recipe, COLORS.get(recipe, "#555555"))


_PANEL_TITLES = {"loss": "total loss", "ce": "cross-entropy (CE)", "kd": "KD term",
                 "sinkhorn": "Sinkhorn term (SinKD)", "dev_accuracy": "dev accuracy (%)"}


def _panels(runs: Sequence[Curves], accuracy: bool) -> list[str]:
    """The panels to draw: each loss term with a value in some run, then dev accuracy."""
    names = [*LOSS_TERMS, "dev_accuracy"] if accuracy else list(LOSS_TERMS)
    return [p for p in names if any(row.get(p) is not None for run in runs for row in run.rows)]


def runs_figure(runs: Sequence[Curves], *, accuracy: bool = True) -> go.Figure:
    """Each loss term of each run against the step, one panel per term, each on its own scale.

    The Sinkhorn term (about 1e-3 of the others with SinKD's scale) would be a flat line at 0
    on the axis of CE and KD (about 0.2 to 0.7), so every term gets its own panel and y-axis;
    the steps are shared.

    Parameters
    ----------
    runs : sequence of Curves
        (label, metrics rows, recipe, hover) per run (:func:`sinkd.lab.distill_tables.run_curves`);
        rows are :func:`sinkd.distill.train`'s step events or a record's ``metrics``
        (``step``, ``loss``, ``ce``, ``kd``, ``sinkhorn``, None where a recipe has no such term,
        and ``dev_accuracy`` on evaluation steps).
    accuracy : bool, default True
        Also a panel of the dev accuracy (%) at the evaluation steps.

    Returns
    -------
    plotly.graph_objects.Figure
        Panels in the order total, CE, KD, Sinkhorn, dev accuracy (those with a value), up to
        three per row (four: two by two); the x-axis is the step. One trace per run and
        panel: with one unnamed run, named and coloured by term; otherwise named by the run's
        label, coloured by its recipe, dashed per run of a recipe, one legend entry per run
        (clicking it hides the run in every panel). The hover names the run, its settings, the
        step and the value.

    Examples
    --------
    >>> fig = runs_figure([Curves("sinkd seed 0", [{"step": 1, "loss": 0.7, "ce": 0.69,
    ...     "kd": 0.7, "sinkhorn": 0.002}, {"step": 2, "loss": 0.6, "ce": 0.6, "kd": 0.6,
    ...     "sinkhorn": 0.001, "dev_accuracy": 0.75}], "sinkd")])
    >>> [(t.xaxis, t.yaxis) for t in fig.data][3], list(fig.data[4].y)
    (('x4', 'y4'), [75.0])
    """
    panels = _panels(runs, accuracy)
    cols = max(min(len(panels), 3), 1) if len(panels) != 4 else 2  # 4: 2 x 2, 5: 3 + 2
    rows = max(math.ceil(len(panels) / cols), 1)
    fig = make_subplots(rows=rows, cols=cols, shared_xaxes="all", vertical_spacing=0.2,
                        horizontal_spacing=0.08,
                        subplot_titles=[_PANEL_TITLES[p] for p in panels] or None)
    single = len(runs) == 1 and not runs[0].label
    per_recipe: dict[str, int] = {}
    for run in runs:
        k = per_recipe[run.recipe] = per_recipe.get(run.recipe, -1) + 1
        hover = "".join(f"<br>{x}" for x in (run.label, run.hover) if x).replace("{", "(")
        for i, part in enumerate(panels):
            points = [(e["step"], e[part]) for e in run.rows if e.get(part) is not None]
            if not points:
                continue
            x, y = zip(*points, strict=True)
            y = [100 * v for v in y] if part == "dev_accuracy" else list(y)
            color = (_PART_COLORS.get(part, COLORS["teacher"]) if single
                     else recipe_color(run.recipe))
            fig.add_scatter(
                x=list(x), y=y, mode="lines+markers" if part == "dev_accuracy" else "lines",
                name=_PART_NAMES.get(part, _PANEL_TITLES[part]) if single else run.label,
                legendgroup=part if single else run.label,
                showlegend=single or i == 0,
                line=dict(color=color, dash="solid" if single else _DASHES[k % len(_DASHES)]),
                hovertemplate=f"{_PANEL_TITLES[part]}{hover}<br>step %{{x}}: %{{y:.4g}}"
                              "<extra></extra>",
                row=i // cols + 1, col=i % cols + 1)
    fig.update_yaxes(tickformat=".3~g", exponentformat="e")
    fig.update_xaxes(showticklabels=True)  # on every panel: the last row may be incomplete
    for i in range(len(panels)):
        if i + cols >= len(panels):  # no panel below: name the axis
            fig.update_xaxes(title_text="step", row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(height=120 + 200 * rows, margin=dict(l=10, r=10, t=80, b=40),
                      legend=dict(orientation="h", yref="container", y=0.99, yanchor="top",
                                  x=0), hovermode="closest")
    return fig


def loss_curves_figure(steps: Sequence[dict]) -> go.Figure:
    """The live run's loss terms against the step: :func:`runs_figure` of one unnamed run,
    each term in its own panel and colour (no accuracy panel: the page shows it as a number).

    Examples
    --------
    >>> fig = loss_curves_figure([{"step": 1, "loss": 1.0, "ce": 1.0, "kd": None}])
    >>> [t.name for t in fig.data]
    ['total loss', 'cross-entropy']
    """
    return runs_figure([Curves("", steps)], accuracy=False)


def compare_figure(table: pd.DataFrame, metric: str = "test",
                   parts: Mapping[str, Sequence[str]] | None = None) -> go.Figure:
    """Bars of the mean ``metric`` accuracy (%) per experiment, error bars one std.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`sinkd.distill.comparison.compare`'s output (``<metric>_mean``, ``<metric>_std``
        columns).
    metric : {"test", "best_dev", "final_dev"}
    parts : mapping, optional
        Each recipe's loss terms (``recipe.parts`` of :data:`sinkd.distill.RECIPES`): a bar's
        label names only the settings its recipe reads
        (:func:`sinkd.lab.distill_tables.experiment_labels`); the hover names the seeds.

    Returns
    -------
    plotly.graph_objects.Figure
        One bar trace, labels horizontal; rows without a mean (only stopped runs) are left
        out; a missing std (one seed) draws no error bar.

    Examples
    --------
    >>> t = pd.DataFrame([dict(recipe="ce", steps=5, seeds=2, stopped=0, test_mean=0.6,
    ...                        test_std=0.1)])
    >>> [round(v, 6) for v in compare_figure(t).data[0].y], list(compare_figure(t).data[0].x)
    ([60.0], ['ce'])
    """
    check_choice("metric", metric, ("test", "best_dev", "final_dev"))
    rows = table[[not math.isnan(m) for m in table[f"{metric}_mean"].astype(float)]]
    labels, hovers = experiment_labels(rows, parts)
    std = [0.0 if math.isnan(s) else 100 * s for s in rows[f"{metric}_std"].astype(float)]
    fig = go.Figure(go.Bar(x=labels, y=[100 * m for m in rows[f"{metric}_mean"]],
                           error_y=dict(type="data", array=std, visible=True),
                           marker_color=[recipe_color(r) for r in rows["recipe"]],
                           customdata=hovers, name=f"{metric.replace('_', ' ')} accuracy",
                           hovertemplate="%{customdata}<br>%{y:.1f}%<extra></extra>"))
    fig.update_layout(yaxis_title=f"{metric.replace('_', ' ')} accuracy (%)", height=350,
                      margin=dict(l=10, r=10, t=30, b=10), xaxis_tickangle=0)
    return fig


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
