"""One colour, one dash and one label per divergence, the same on every page and in every figure.

The colours are the Okabe-Ito palette (Okabe & Ito, 2008, "Color Universal Design"), chosen to
stay distinguishable under the common colour-vision deficiencies, plus neutral greys; no two
divergences share both a colour and a dash, and the divergences of the lab all have their own
dash, so curves stay apart in greyscale, on a projector, and where they overlap. Variants share
their parent's colour (skew KL with KL, skew reverse KL with reverse KL) and differ by dash; the
optimal-transport family (Sinkhorn, debiased Sinkhorn) is orange/vermillion, exact OT dark grey.
"""

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
