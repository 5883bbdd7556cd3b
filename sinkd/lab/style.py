"""One colour, one dash and one label per divergence, the same on every page and in every figure.

The colours are the Okabe-Ito palette (Okabe & Ito, 2008, "Color Universal Design"), chosen to
stay distinguishable under the common colour-vision deficiencies, plus neutral greys; no two
divergences share both a colour and a dash, and the divergences of the lab all have their own
dash, so curves stay apart in greyscale, on a projector, and where they overlap. Variants share
their parent's colour (skew KL with KL, skew reverse KL with reverse KL) and differ by dash; the
optimal-transport family (Sinkhorn, debiased Sinkhorn) is orange/vermillion, exact OT dark grey.

:func:`projector` restyles any figure for a projector (the app's projector mode).
"""

from __future__ import annotations

import re
from typing import Any

import plotly.graph_objects as go

OKABE_ITO = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00",
             "#CC79A7")

COLORS = {
    "teacher": "#000000",
    "kl": "#0072B2",  # blue
    "rkl": "#D55E00",  # vermillion
    "js": "#009E73",  # bluish green
    "tvd": "#CC79A7",  # reddish purple
    "skew_kl": "#0072B2",
    "skew_rkl": "#D55E00",
    "gjsd": "#56B4E9",  # sky blue
    "sinkhorn": "#E69F00",  # orange
    "sinkhorn_debiased": "#56B4E9",  # sky blue: the cure of Sinkhorn's bias
    "w1": "#555555",  # dark grey: exact OT, the reference Sinkhorn approaches as lambda -> 0
    "ce": "#999999",  # grey: references and cross-entropy
    # the batch-wise page's students (sinkd.lab.batchwise_fit.STUDENTS; kl, rkl, js above)
    "class_ot": "#CC79A7",  # per-sample OT over 1 - I is the total variation: its colour
    "sinkd": "#E69F00",  # SinKD's batch-wise term: the OT family's orange
    "recipe": "#56B4E9",  # KD + beta SinKD
}

# Plotly line dashes: the six named ones, then dash lists in px for the rest.
DASHES = {
    "teacher": "solid",
    "kl": "longdash",
    "rkl": "dash",
    "js": "dot",
    "tvd": "dashdot",
    "skew_kl": "longdashdot",
    "skew_rkl": "12px,4px,2px,4px,2px,4px",
    "gjsd": "2px,6px",
    "sinkhorn": "solid",
    "sinkhorn_debiased": "8px,3px,8px,3px,2px,3px",
    "w1": "1px,3px",
    "ce": "solid",
    "class_ot": "6px,2px,2px,2px",
    "sinkd": "4px,2px",
    "recipe": "longdashdot",
}

LABELS = {
    "teacher": "teacher",
    "kl": "KL (forward)",
    "rkl": "reverse KL",
    "js": "Jensen-Shannon",
    "tvd": "total variation",
    "skew_kl": "skew KL",
    "skew_rkl": "skew reverse KL",
    "gjsd": "generalised JSD",
    "sinkhorn": "Sinkhorn",
    "sinkhorn_debiased": "debiased Sinkhorn",
    "w1": "exact OT (W1)",
    "ce": "cross-entropy",
    "class_ot": "per-sample OT (1 − I) = TVD",
    "sinkd": "SinKD batch term alone",
    "recipe": "SinKD recipe (KD + β·SinKD)",
}

# Sizes for a 1280 x 720 projector: tick labels >= 14 px, titles larger.
FONT = dict(size=15)
TICK_FONT = dict(size=14)
TITLE_FONT = dict(size=18)
LINE_WIDTH = 3

# Projector mode (the app's sidebar toggle): what :func:`projector` guarantees at least.
PROJECTOR_FONT = 18  # px: tick labels, legends, hover labels, slider labels
PROJECTOR_TITLE = 22  # px: the figure's title, axis titles, colour-bar and legend titles
PROJECTOR_LINE_FACTOR = 1.5  # lines 1.5 times thicker ...
PROJECTOR_MIN_LINE = 3.0  # ... and at least 3 px (Plotly's default is 2)


def _at_least(font: Any, size: float) -> None:
    """Raise a Plotly font's size to ``size`` (a larger size set by the figure stays)."""
    font.size = max(font.size or 0, size)


def _axis(axis: Any) -> None:
    _at_least(axis.tickfont, PROJECTOR_FONT)
    _at_least(axis.title.font, PROJECTOR_TITLE)


def _thicker(trace: Any) -> None:
    """Thicker lines; a line of width 0 (a band's edge, drawn on purpose without one) stays 0."""
    if "line" in trace and trace.line.width != 0:
        width = trace.line.width if trace.line.width is not None else 2.0
        trace.line.width = max(PROJECTOR_LINE_FACTOR * width, PROJECTOR_MIN_LINE)
    # Only colour bars that are drawn: setting a marker's colour bar makes Plotly draw one.
    bars = []
    if "colorbar" in trace and trace["showscale"] is not False:
        bars.append(trace["colorbar"])
    if "marker" in trace and "colorbar" in trace.marker and trace.marker.showscale:
        bars.append(trace.marker.colorbar)
    for bar in bars:
        _at_least(bar.tickfont, PROJECTOR_FONT)
        _at_least(bar.title.font, PROJECTOR_TITLE)


def projector(fig: go.Figure) -> go.Figure:
    """A copy of ``fig`` for a projector at 1280 x 720: every font at least
    :data:`PROJECTOR_FONT` px (ticks, legend, sliders, hover; annotations keep their own size),
    every title (the figure's, the axes', colour bars') at least :data:`PROJECTOR_TITLE` px,
    and every line :data:`PROJECTOR_LINE_FACTOR` times thicker, at least
    :data:`PROJECTOR_MIN_LINE` px, in the figure and in its animation frames. ``fig`` itself is
    left unchanged.

    Examples
    --------
    >>> fig = projector(go.Figure(go.Scatter(y=[1, 2], line=dict(width=3)), layout=dict(title="t")))
    >>> fig.layout.xaxis.tickfont.size, fig.layout.title.font.size, fig.data[0].line.width
    (18, 22, 4.5)
    """
    out = go.Figure(fig)
    lay = out.layout
    base = lay.font.size or 12  # plotly.js's default font size
    for font in (lay.font, lay.legend.font, lay.hoverlabel.font, lay.coloraxis.colorbar.tickfont):
        _at_least(font, PROJECTOR_FONT)
    for font in (lay.title.font, lay.legend.title.font, lay.coloraxis.colorbar.title.font):
        _at_least(font, PROJECTOR_TITLE)
    # The cartesian axes set in the layout or used by a trace (an unused axis is left unset:
    # setting it would make Plotly draw an empty frame beside a ternary plot).
    names = {k for k in lay.to_plotly_json() if re.fullmatch(r"[xy]axis\d*", k)}
    for trace in out.data:
        for side in ("x", "y"):
            if f"{side}axis" in trace:
                names.add(f"{side}axis{(trace[f'{side}axis'] or side)[1:]}")
    for name in sorted(names):
        _axis(lay[name])
    for ternary in out.select_ternaries():
        for axis in (ternary.aaxis, ternary.baxis, ternary.caxis):
            _axis(axis)
    # Annotations (subplot titles, notes placed in the plot) keep the size their figure chose:
    # their room is laid out for it, and larger text would run into the next panel.
    for annotation in lay.annotations:
        annotation.font.size = annotation.font.size or base
    for slider in lay.sliders:
        _at_least(slider.font, PROJECTOR_FONT)
        _at_least(slider.currentvalue.font, PROJECTOR_FONT)
    for menu in lay.updatemenus:
        _at_least(menu.font, PROJECTOR_FONT)
    for trace in out.data:
        _thicker(trace)
    for frame in out.frames:
        for trace in frame.data or ():
            _thicker(trace)
        if frame.layout is not None and frame.layout.title.text:
            _at_least(frame.layout.title.font, PROJECTOR_TITLE)
    return out
