"""One colour per divergence, the same on every page and in every figure."""

COLORS = {
    "teacher": "#222222",
    "kl": "#1f77b4",
    "rkl": "#d62728",
    "js": "#2ca02c",
    "tvd": "#9467bd",
    "skew_kl": "#17becf",
    "skew_rkl": "#e377c2",
    "gjsd": "#bcbd22",
    "sinkhorn": "#ff7f0e",
    "ce": "#7f7f7f",
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
    "ce": "cross-entropy",
}
