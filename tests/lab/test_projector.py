"""sinkd.lab.style.projector: the projector restyling of the app's figures, on the lab's real
figures (a cartesian small-multiples fit, its training animation, a ternary cloud with a slider,
a heatmap with a colour bar)."""

import re

import plotly.graph_objects as go
import pytest

from sinkd.lab import batchwise, batchwise_figures, toy, toy_figures
from sinkd.lab.batchwise_spec import SPEC as BATCHWISE
from sinkd.lab.divergence_lab_spec import SPEC as DIVERGENCE_LAB
from sinkd.lab.style import (
    PROJECTOR_FONT,
    PROJECTOR_LINE_FACTOR,
    PROJECTOR_MIN_LINE,
    PROJECTOR_TITLE,
    projector,
)

PLOTLY_LINE = 2.0  # plotly.js's default line width, px


@pytest.fixture(scope="module")
def figures() -> dict[str, go.Figure]:
    fit = toy.fit_view({**DIVERGENCE_LAB.defaults, "steps": 20})
    bfit = batchwise.fit_view({**BATCHWISE.defaults, "steps": 20})
    return {"fit": toy_figures.fit_figure(fit), "training": toy_figures.training_animation(fit),
            "losses": toy_figures.loss_figure(fit),
            "clouds": batchwise_figures.cloud_figure(bfit),
            "plan": batchwise_figures.plan_figure(bfit)}


def _size(font, base) -> float:
    """The size plotly.js draws a font at: its own, else the layout's base font."""
    return font.size if font.size is not None else base


def _axes(fig: go.Figure) -> list:
    lay = fig.layout
    cartesian = [lay[k] for k in lay.to_plotly_json() if re.fullmatch(r"[xy]axis\d*", k)]
    ternary = [getattr(t, f"{c}axis") for t in fig.select_ternaries() for c in "abc"]
    return cartesian + ternary


NAMES = ["fit", "training", "losses", "clouds", "plan"]


@pytest.mark.parametrize("name", NAMES)
def test_every_font_and_title_reaches_the_projector_sizes(figures, name):
    """After projector(), the base font and every axis's tick labels are >= 18 px, every title
    (the figure's, each axis's, each colour bar's) >= 22 px, legend and slider labels >= 18 px,
    on every axis the figure draws (cartesian and ternary); annotations (subplot titles, laid
    out for their size) keep the size they were drawn at."""
    fig = projector(figures[name])
    lay = fig.layout
    base = lay.font.size
    assert base >= PROJECTOR_FONT
    axes = _axes(fig)
    assert axes, "the figure draws axes"
    for axis in axes:
        assert _size(axis.tickfont, base) >= PROJECTOR_FONT
        assert _size(axis.title.font, base) >= PROJECTOR_TITLE
    if lay.title.text:
        assert lay.title.font.size >= PROJECTOR_TITLE
    before = figures[name].layout
    for old, annotation in zip(before.annotations, lay.annotations, strict=True):
        assert annotation.font.size == _size(old.font, before.font.size or 12)  # kept
    assert _size(lay.legend.font, base) >= PROJECTOR_FONT
    for slider in lay.sliders:
        assert slider.font.size >= PROJECTOR_FONT
        assert slider.currentvalue.font.size >= PROJECTOR_FONT
    for trace in fig.data:
        if "colorbar" in trace and trace.colorbar.title.text:
            assert trace.colorbar.title.font.size >= PROJECTOR_TITLE
            assert trace.colorbar.tickfont.size >= PROJECTOR_FONT


@pytest.mark.parametrize("name", [n for n in NAMES if n != "plan"])  # the plan: a heatmap
def test_lines_get_thicker_and_bands_stay_without_edges(figures, name):
    """Every drawn line, in the figure and in each animation frame, is 1.5 times its width
    (plotly's default 2 px where unset) and at least 3 px; a line set to width 0 stays 0."""
    before, after = figures[name], projector(figures[name])
    pairs = list(zip(before.data, after.data, strict=True))
    for f0, f1 in zip(before.frames, after.frames, strict=True):
        pairs += list(zip(f0.data, f1.data, strict=True))
    lined = [(a, b) for a, b in pairs if "line" in a]
    assert lined
    for a, b in lined:
        if a.line.width == 0:
            assert b.line.width == 0
        else:
            width = a.line.width if a.line.width is not None else PLOTLY_LINE
            assert b.line.width == pytest.approx(
                max(PROJECTOR_LINE_FACTOR * width, PROJECTOR_MIN_LINE))


@pytest.mark.parametrize("name", NAMES)
def test_projector_keeps_the_data_and_leaves_the_figure_unchanged(figures, name):
    """projector() returns a new figure: the input's JSON is unchanged, and the copy has the
    same traces (type, x, y, z) and frames."""
    fig = figures[name]
    original = fig.to_json()
    out = projector(fig)
    assert fig.to_json() == original and out is not fig
    assert len(out.data) == len(fig.data) and len(out.frames) == len(fig.frames)
    for a, b in zip(fig.data, out.data, strict=True):
        assert a.type == b.type
        for attr in ("x", "y", "z", "a", "b", "c"):
            if attr in a:
                assert a[attr] == b[attr] if not hasattr(a[attr], "shape") else \
                    (a[attr] == b[attr]).all()


def test_larger_sizes_set_by_a_figure_are_kept():
    """A font already larger than the projector's sizes keeps its size (max, not overwrite),
    and no cartesian axis is added to a figure that has none (a ternary plot)."""
    fig = go.Figure(go.Scatter(y=[1, 2]), layout=dict(
        title=dict(text="t", font=dict(size=30)), xaxis=dict(tickfont=dict(size=25))))
    out = projector(fig)
    assert out.layout.title.font.size == 30 and out.layout.xaxis.tickfont.size == 25
    assert out.layout.yaxis.tickfont.size == PROJECTOR_FONT
    ternary = projector(go.Figure(go.Scatterternary(a=[0.2], b=[0.3], c=[0.5])))
    assert not [k for k in ternary.layout.to_plotly_json() if re.fullmatch(r"[xy]axis\d*", k)]
    assert ternary.layout.ternary.aaxis.tickfont.size == PROJECTOR_FONT


def test_only_drawn_colour_bars_are_restyled():
    """A heatmap's colour bar gets the projector sizes; a scatter's marker colour bar, not drawn
    (no showscale), stays unset: setting it would make plotly.js draw a broken bar."""
    out = projector(go.Figure([go.Heatmap(z=[[1, 2]]), go.Scatter(y=[1, 2], mode="markers")]))
    assert out.data[0].colorbar.tickfont.size == PROJECTOR_FONT
    assert out.data[0].colorbar.title.font.size == PROJECTOR_TITLE
    assert "colorbar" not in out.data[1].marker.to_plotly_json()
