"""The divergence lab's values: defaults, limits and presets with what to notice.

The values are the teacher mixture (``n_components`` and ``mean1`` .. ``weight4``), the student
family, the divergences to fit (``use_<name>``) and the options of :func:`sinkd.lab.toy.fit`;
:func:`sinkd.lab.toy.fit_view` runs them. A preset sets all of them: the defaults with a few
changed, the question a class answers before the reveal, and its claims: per divergence a
sentence and a predicate on the fit's :class:`~sinkd.lab.toy_metrics.ToyMetrics`, counted over
seeds, step budgets and learning rates by :mod:`sinkd.lab.robustness` (and asserted to hold in
most of those runs in tests/lab/test_robustness.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sinkd.lab.spec import LAMBDA_VALUES, SEED_RANGE, Claim, PageSpec, Preset, Range
from sinkd.lab.toy import FIT_DIVERGENCES, MAX_COMPONENTS, MAX_K, STUDENTS
from sinkd.lab.toy_metrics import ToyMetrics, collapsed, saturated

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
    "reg": LAMBDA_VALUES,
    "n_iters": Range(1, 200),
    "steps": Range(10, 500),
    "lr": Range(0.001, 0.5),
    "seed": SEED_RANGE,
    "n_bins": Range(20, 160),
}
BIMODAL = dict(n_components=2, mean1=-2.5, mean2=2.5, width1=0.5, width2=0.5, weight1=1.0,
               weight2=1.0)  # two equal, well separated modes


# --- claims: per divergence a sentence and a predicate on one run's ToyMetrics ---------------
# Each predicate looks at its own divergence's row only (never a ranking against the others), so
# a grid that fits only the claimed divergences tests the same thing; thresholds are absolute.

def _gap_at_least(share: float) -> Callable[[ToyMetrics, str], bool]:
    return lambda m, d: m.has_gap and m.gap_mass[m.row(d)] >= share


def _mode_at_least(mode: int, share: float) -> Callable[[ToyMetrics, str], bool]:
    return lambda m, d: m.mode_mass[m.row(d), mode] >= share


def _mode_below(mode: int, share: float) -> Callable[[ToyMetrics, str], bool]:
    return lambda m, d: m.mode_mass[m.row(d), mode] < share


def _collapses(m: ToyMetrics, d: str) -> bool:
    return collapsed(m, m.row(d)) is not None


def _saturated_and_still(m: ToyMetrics, d: str) -> bool:
    r = m.row(d)  # at its ceiling at step 0, and W1 to the teacher moved by under 1%
    return r in saturated(m) and abs(m.w1[r] - m.w1_start[r]) < 0.01 * m.w1_start[r]


def _w1_falls_below(fraction: float) -> Callable[[ToyMetrics, str], bool]:
    return lambda m, d: m.w1[m.row(d)] < fraction * m.w1_start[m.row(d)]


def _covers_small_mode(m: ToyMetrics, d: str) -> bool:
    r = m.row(d)
    return m.mode_mass[r, 2] >= m.teacher_mode_mass[2] and m.gap_mass[r] >= 0.1


def _preset(notice: str, question: str, claims: dict[str, Claim], **values: Any) -> Preset:
    return Preset({**DEFAULTS, **values}, notice, question, claims)


PRESETS = {
    "Mode averaging (forward KL)": _preset(
        "A single Gaussian cannot fit two modes: look at where forward KL puts its mass, the "
        "gap-mass column against the teacher's, and what Sinkhorn and exact OT do.",
        "A single-Gaussian student, two teacher modes: which students will put mass in the "
        "gap between the modes?",
        {"kl": Claim("forward KL puts ≥ 30% of its mass in the gap (teacher: 1%)",
                     _gap_at_least(0.3)),
         "rkl": Claim("reverse KL collapses: ≥ 90% of its mass on one mode", _collapses),
         "js": Claim("JS puts ≥ 30% of its mass in the gap", _gap_at_least(0.3)),
         "sinkhorn": Claim("Sinkhorn averages too: ≥ 30% of its mass in the gap",
                           _gap_at_least(0.3)),
         "w1": Claim("exact OT (W1) averages too: ≥ 30% of its mass in the gap",
                     _gap_at_least(0.3))},
        **BIMODAL, student="gaussian", init_mean=0.5, init_width=1.0),
    "Mode collapse (reverse KL)": _preset(
        "Same teacher, a narrow start near the right mode: compare the per-mode mass of reverse "
        "KL (and JS) with the teacher's 50/50, and with Sinkhorn's.",
        "Same teacher, the student starts narrow near the right mode: which students stay "
        "there, and which spread over both modes?",
        {"rkl": Claim("reverse KL collapses: ≥ 90% of its mass on one mode", _collapses),
         "js": Claim("JS collapses too: ≥ 90% of its mass on one mode", _collapses),
         "kl": Claim("forward KL spreads: ≥ 20% of its mass in the gap", _gap_at_least(0.2)),
         "sinkhorn": Claim("Sinkhorn spreads like forward KL: ≥ 20% of its mass in the gap",
                           _gap_at_least(0.2)),
         "w1": Claim("exact OT (W1) spreads too: ≥ 20% of its mass in the gap",
                     _gap_at_least(0.2))},
        **BIMODAL, student="gaussian", init_mean=1.0, init_width=0.5),
    "Mode underestimation (JS)": _preset(
        "Two student components for three teacher modes, the third small (10%): look at the "
        "mass each divergence gives mode 3, and at how forward KL pays for covering it.",
        "Two student components, three teacher modes, the third holding 10%: which students "
        "will give the small mode less than half its mass?",
        {"js": Claim("JS gives mode 3 under half the teacher's 10%", _mode_below(2, 0.05)),
         "rkl": Claim("reverse KL gives mode 3 under half the teacher's 10%",
                      _mode_below(2, 0.05)),
         "kl": Claim("forward KL gives mode 3 at least the teacher's 10%, and pays with ≥ 10% "
                     "of its mass in the gap", _covers_small_mode),
         "sinkhorn": Claim("Sinkhorn also gives mode 3 under half the teacher's 10%",
                           _mode_below(2, 0.05)),
         "w1": Claim("exact OT (W1) gives mode 3 at least half the teacher's 10%",
                     _mode_at_least(2, 0.05))},
        n_components=3, mean1=-3.0, mean2=0.0, mean3=3.0, width1=0.5, width2=0.5, width3=0.5,
        weight1=0.45, weight2=0.45, weight3=0.1, student="mixture", k=2, init_mean=0.0,
        init_width=2.0),
    "No overlap: JS saturates": _preset(
        "The student starts far from the teacher, with no overlap: look at JS's loss at step 0 "
        "against log 2, its gradient norm (log scale), and whose student actually moves.",
        "The student starts 6 units away from the teacher, with no overlap: which students "
        "will move towards it?",
        {"js": Claim("JS starts within 0.001 of log 2 and its student stays put (W1 changes "
                     "< 1%)", _saturated_and_still),
         "tvd": Claim("total variation starts within 0.001 of 1 and its student stays put",
                      _saturated_and_still),
         "kl": Claim("forward KL moves, slower: W1 falls below 3/4 of its start",
                     _w1_falls_below(0.75)),
         "sinkhorn": Claim("Sinkhorn moves: W1 falls below a quarter of its start",
                           _w1_falls_below(0.25)),
         "w1": Claim("exact OT (W1) moves: W1 falls below a quarter of its start",
                     _w1_falls_below(0.25))},
        n_components=1, mean1=3.0, width1=0.3, weight1=1.0, student="gaussian", init_mean=-3.0,
        init_width=0.3),
    "Flexible student (2-Gaussian mixture)": _preset(
        "This student could match the teacher exactly, but starts on the left mode only: look "
        "at which divergences bring mass to the right mode. Which one ends closest in W1 "
        "depends on the step budget: see W1 against steps in the robustness check.",
        "A student that could match the teacher exactly starts on the left mode: which "
        "students will bring mass to the right mode?",
        {"rkl": Claim("reverse KL leaves the right mode empty: ≥ 90% stays on the left",
                      _collapses),
         "js": Claim("JS leaves the right mode empty: ≥ 90% stays on the left", _collapses),
         "kl": Claim("forward KL brings ≥ 25% of the mass to the right mode (teacher: 50%)",
                     _mode_at_least(1, 0.25)),
         "sinkhorn": Claim("Sinkhorn brings ≥ 25% of the mass to the right mode",
                           _mode_at_least(1, 0.25)),
         "w1": Claim("exact OT (W1) brings ≥ 25% of the mass to the right mode",
                     _mode_at_least(1, 0.25))},
        **BIMODAL, student="mixture", k=2, init_mean=-2.5, init_width=0.5),
}

SPEC = PageSpec(DEFAULTS, LIMITS, PRESETS)
