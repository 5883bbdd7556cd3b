"""The Transport plans page's values: defaults, limits and presets with what to notice.

Every notice is a claim about computed numbers; tests/app/test_page_transport.py checks each one
on the values its preset sets.
"""

from __future__ import annotations

from typing import Any

from sinkd.lab.batches import DTYPES
from sinkd.lab.plans import HALVES, PLAN_METHODS, SOURCES
from sinkd.lab.spec import (
    CLASSES_RANGE,
    LAMBDA_VALUES,
    N_RANGE,
    NOISE_RANGE,
    SEED_RANGE,
    PageSpec,
    Preset,
    Range,
)

DEFAULTS: dict[str, Any] = dict(
    source="aligned", n=16, c=3, noise=0.5, seed=0,  # the batch
    tau=2.0, lam=0.1, T=20, method="kernel", dtype="float64",  # SinKD's reference settings
    sample=0,  # the sample whose class-level plan is shown
    t=20, half="columns",  # the half-step shown: after the row or the column scaling of t
)
# Where the viewer is, not what the view is: presets leave these alone (the page moves t to the
# new T when T or the preset changes), so stepping does not leave a preset.
STEP_VALUES = ("sample", "t", "half")
LIMITS: dict[str, Any] = dict(
    source=SOURCES, n=N_RANGE, c=CLASSES_RANGE, noise=NOISE_RANGE, seed=SEED_RANGE,
    tau=Range(0.5, 10.0), lam=LAMBDA_VALUES, T=Range(1, 500), method=PLAN_METHODS,
    dtype=tuple(DTYPES), sample=Range(0, N_RANGE.high - 1), t=Range(1, 500), half=HALVES,
)


def _preset(notice: str, **values: Any) -> Preset:
    """A preset sets every value but the step values, so its notice holds whatever came
    before."""
    return Preset({k: v for k, v in {**DEFAULTS, **values}.items() if k not in STEP_VALUES},
                  notice)


PRESETS = {
    "SinKD reference (aligned)": _preset(
        "After T = 20 iterations every column sums to 1 (to round-off) while the rows are still "
        "off: the row error stays above 1e-4. The cost has settled: it moved by less than 1% "
        "over the last 10 iterations. The plan is no permutation: its entropy is well above "
        "log N, the entropic blur spreads each student's mass over several teachers. The "
        "class-wise plans are far from converged (a sample's marginals off by more than 0.1) "
        "and cost less than exact OT: the page flags them."),
    "shuffled: the pairing is lost": _preset(
        "The student rows are the aligned preset's rows in another order, and the SinKD term "
        "equals the aligned preset's (compare the metric) although the heavy entries of the "
        "plan leave the diagonal: the batch-wise term ignores which rows were paired.",
        source="shuffled"),
    "overconfident student": _preset(
        "The student's points sit near the corners of the simplex, away from the teachers: "
        "the SinKD term is larger than the aligned preset's.", source="overconfident"),
    "underconfident student": _preset(
        "The student's points crowd the centre of the simplex: the SinKD term is larger than "
        "the aligned preset's, and the exact OT cost too.", source="underconfident"),
    "small λ: near exact OT": _preset(
        "With λ = 0.01 and T = 500 the cost lands within 1% of the exact OT line, and the plan "
        "is nearly a permutation: its entropy is within 0.2 nats of log N (2 log N would be "
        "the independent coupling's).",
        lam=0.01, T=500, method="log"),
    "large λ: all blur": _preset(
        "With λ = 10 the plan is almost the independent coupling: the cost is within 2% of the "
        "independent line, the entropy within 0.01 nats of 2 log N.", lam=10.0),
    "disjoint in float16": _preset(
        "sinkd computes float16 in float32, so its kernel plan stays finite; the literal float16 "
        "kernel iteration does not: the table and the plot's badge show NaN for the naive "
        "float16 kernel, while the log method is finite in every dtype.",
        source="disjoint", c=10, tau=1.0, seed=1, dtype="float16"),
    "disjoint in float32, λ = 0.01": _preset(
        "The kernel solver fails in float32: whole columns of K = exp(-D/λ) are 0 (teachers far "
        "from every student) and the plan is NaN. The page says why and shows the log method's "
        "plan, which is finite.",
        source="disjoint", lam=0.01, dtype="float32"),
}

SPEC = PageSpec(DEFAULTS, LIMITS, PRESETS)
