"""The divergence lab's values: defaults, limits and presets with what to notice.

The values are the teacher mixture (``n_components`` and ``mean1`` .. ``weight4``), the student
family, the divergences to fit (``use_<name>``) and the options of :func:`sinkd.lab.toy.fit`;
:func:`sinkd.lab.toy.fit_view` runs them. A preset sets all of them: the defaults with a few
changed. Each phenomenon a notice names is checked on the computed fit in tests/lab/test_toy.py.
"""

from __future__ import annotations

from typing import Any

from sinkd.lab.spec import SEED_RANGE, PageSpec, Preset, Range
from sinkd.lab.toy import FIT_DIVERGENCES, MAX_COMPONENTS, MAX_K, STUDENTS

COMPONENTS = range(1, MAX_COMPONENTS + 1)
DEFAULTS: dict[str, Any] = {
    "n_components": 2,
    **{f"mean{i}": m for i, m in zip(COMPONENTS, (-2.5, 2.5, 0.0, 4.0), strict=True)},
    **{f"width{i}": 0.5 for i in COMPONENTS},
    **{f"weight{i}": 1.0 for i in COMPONENTS},
    "student": "gaussian",
    "k": 2,
    **{f"use_{name}": True for name in FIT_DIVERGENCES},
    "init_mean": 0.5,
    "init_width": 1.0,
    "reg": 0.1,
    "n_iters": 20,
    "steps": 120,
    "lr": 0.08,
    "seed": 0,
    "n_bins": 80,
}
LIMITS: dict[str, Any] = {
    "n_components": Range(1, MAX_COMPONENTS),
    **{f"mean{i}": Range(-5.0, 5.0) for i in COMPONENTS},
    **{f"width{i}": Range(0.05, 3.0) for i in COMPONENTS},
    **{f"weight{i}": Range(0.0, 10.0) for i in COMPONENTS},
    "student": STUDENTS,
    "k": Range(1, MAX_K),
    "init_mean": Range(-5.0, 5.0),
    "init_width": Range(0.05, 3.0),
    "reg": Range(0.01, 5.0),
    "n_iters": Range(1, 200),
    "steps": Range(10, 500),
    "lr": Range(0.001, 0.5),
    "seed": SEED_RANGE,
    "n_bins": Range(20, 160),
}
BIMODAL = dict(n_components=2, mean1=-2.5, mean2=2.5, width1=0.5, width2=0.5, weight1=1.0,
               weight2=1.0)  # two equal, well separated modes


def _preset(notice: str, **values: Any) -> Preset:
    return Preset({**DEFAULTS, **values}, notice)


PRESETS = {
    "Mode averaging (forward KL)": _preset(
        "A single Gaussian cannot fit two modes: look at where forward KL puts its mass, the "
        "gap-mass column against the teacher's, and which divergence ends closest in W1.",
        **BIMODAL, student="gaussian", init_mean=0.5, init_width=1.0),
    "Mode collapse (reverse KL)": _preset(
        "Same teacher, a narrow start near the right mode: compare the per-mode mass of reverse "
        "KL (and JS) with the teacher's 50/50, and with Sinkhorn's.",
        **BIMODAL, student="gaussian", init_mean=1.0, init_width=0.5),
    "Mode underestimation (JS)": _preset(
        "Two student components for three teacher modes, the third small (10%): look at the "
        "mass each divergence gives mode 3, and at how forward KL pays for covering it.",
        n_components=3, mean1=-3.0, mean2=0.0, mean3=3.0, width1=0.5, width2=0.5, width3=0.5,
        weight1=0.45, weight2=0.45, weight3=0.1, student="mixture", k=2, init_mean=0.0,
        init_width=2.0),
    "No overlap: JS saturates": _preset(
        "The student starts far from the teacher, with no overlap: look at JS's loss at step 0 "
        "against log 2, its gradient norm (log scale), and whose student actually moves.",
        n_components=1, mean1=3.0, width1=0.3, weight1=1.0, student="gaussian", init_mean=-3.0,
        init_width=0.3),
    "Flexible student (2-Gaussian mixture)": _preset(
        "This student could match the teacher exactly, but starts on the left mode only: look "
        "at which divergences bring mass to the right mode, and at W1 at the end.",
        **BIMODAL, student="mixture", k=2, init_mean=-2.5, init_width=0.5),
}

SPEC = PageSpec(DEFAULTS, LIMITS, PRESETS)
