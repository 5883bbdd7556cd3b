"""The batch-wise page's values: defaults, limits, and presets with a question and claims.

The values are :func:`sinkd.lab.batchwise_fit.fit`'s options (the batch, the start, Adam) and
the losses' (Sinkhorn lambda ``lam``, iterations ``n_iters``, temperature ``tau``, the recipe's
``beta``). Each preset has, per student, a :class:`~sinkd.lab.spec.Claim` whose predicate is
data: an :class:`AllOf` of :class:`Compare` rules on the measured numbers
(:class:`~sinkd.lab.batchwise_fit.Metrics` of every student, and of the teacher against itself).
:func:`sinkd.lab.batchwise.robustness` counts in how many runs each claim held; the counts in
the notices are what tests/lab/test_batchwise.py recomputes.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sinkd.lab.batchwise_fit import Metrics
from sinkd.lab.batchwise_toy import STARTS, TEACHERS
from sinkd.lab.spec import LAMBDA_VALUES, SEED_RANGE, Claim, PageSpec, Preset, Range
from sinkd.lab.style import LABELS

BETAS = (0.0, 0.8, 8.0, 80.0, 800.0)  # the recipe's weight of the SinKD term (reference 0.8)
METRIC_NAMES = {
    "paired_l1": "paired L1",
    "cloud_ot": "cloud OT",
    "accuracy": "accuracy",
    "confidence": "confidence",
    "kl": "KL(t‖s)",
    "own_mass": "own-pair mass",
}
_OPS = {"<=": operator.le, ">=": operator.ge}


@dataclass(frozen=True)
class Compare:
    """``metric`` of the claimed student ``op`` a bound: ``value``, plus ``factor`` times the
    metric ``against`` (default: the same) of student ``of`` (default: the claimed student
    itself; "teacher": the teacher against itself) when either is given.

    >>> from sinkd.lab.batchwise_fit import Metrics
    >>> m = {"kl": Metrics(1.2, 0.9, 0.4, 1.1, 0.4, 0.0), "rkl": Metrics(0.7, 5, 0.7, 0.3, 0.9, 0)}
    >>> Compare("paired_l1", "<=", of="kl")(m, "rkl"), str(Compare("cloud_ot", ">=", 0.8))
    (True, 'cloud OT >= 0.8')
    >>> rule = Compare("paired_l1", ">=", factor=2, against="cloud_ot")
    >>> str(rule), rule(m, "rkl")
    ('paired L1 >= 2 × its cloud OT', True)
    """

    metric: str
    op: str
    value: float = 0.0
    of: str | None = None
    factor: float = 1.0
    against: str | None = None

    def __post_init__(self) -> None:
        if self.op not in _OPS or {self.metric, self.against or self.metric} - set(METRIC_NAMES):
            raise ValueError(f"Compare needs metrics of {list(METRIC_NAMES)} and an op of "
                             f"{list(_OPS)}, got {self.metric!r}, {self.against!r}, {self.op!r}")

    def __call__(self, m: Mapping[str, Metrics], student: str) -> bool:
        bound = self.value
        if self.of is not None or self.against is not None:
            bound += self.factor * getattr(m[self.of or student], self.against or self.metric)
        return _OPS[self.op](getattr(m[student], self.metric), bound)

    def __str__(self) -> str:
        name = METRIC_NAMES[self.metric]
        if self.of is None and self.against is None:
            return f"{name} {self.op} {self.value:g}"
        whose = f"{LABELS.get(self.of, self.of)}'s" if self.of else "its"
        scaled = f"{self.factor:g} × " if self.factor != 1 else ""
        shift = f" {'+' if self.value >= 0 else '−'} {abs(self.value):g}" if self.value else ""
        return (f"{name} {self.op} {scaled}{whose} {METRIC_NAMES[self.against or self.metric]}"
                f"{shift}")


@dataclass(frozen=True)
class AllOf:
    """Every rule holds: the predicate of a :class:`~sinkd.lab.spec.Claim`."""

    rules: tuple[Compare, ...]

    def __call__(self, m: Mapping[str, Metrics], student: str) -> bool:
        return all(rule(m, student) for rule in self.rules)

    def __str__(self) -> str:
        return " and ".join(map(str, self.rules))


def claim(sentence: str, *rules: Compare) -> Claim:
    """A claim whose sentence ends with its rules, so the page shows exactly what is tested."""
    return Claim(f"{sentence} ({AllOf(rules)})", AllOf(rules))


DEFAULTS: dict[str, Any] = dict(
    teacher="six_arcs", start="small", n=36, uncertain=0.25, seed=0,  # the batch and start
    steps=100, lr=0.1,  # Adam, the same for every student
    lam=0.1, n_iters=20, tau=2.0, beta=0.8,  # SinKD's reference settings
)
LIMITS: dict[str, Any] = dict(
    teacher=TEACHERS, start=STARTS, n=Range(12, 64), uncertain=Range(0.0, 0.6),
    seed=SEED_RANGE, steps=Range(10, 400), lr=Range(0.005, 0.5), lam=LAMBDA_VALUES,
    n_iters=Range(1, 200), tau=Range(0.5, 10.0), beta=BETAS,
)

TOO_SIMPLE = dict(teacher="six_arcs", start="small")
ROLLED = dict(teacher="linear", start="rolled")
CHANCE = dict(teacher="linear", start="small")
PER_SAMPLE = ("kl", "rkl", "js", "class_ot", "recipe")  # students with a per-sample term


def _preset(changes: Mapping[str, Any], notice: str, question: str,
            claims: Mapping[str, Claim]) -> Preset:
    return Preset({**DEFAULTS, **changes}, notice, question=question, claims=claims)


PRESETS = {
    "Batch-wise: a student too simple for the teacher": _preset(
        TOO_SIMPLE,
        "Each class of this teacher owns two opposite arcs of inputs, which no linear student "
        "can reproduce. Compare the cloud OT column (how far the student's cloud of "
        "predictions is from the teacher's, pairs ignored) with the paired L1 column (sample "
        "by sample), and the recipe's row with KL's.",
        "A linear student cannot copy this teacher. Which students end with a cloud of "
        "predictions like the teacher's, and which are closest to it sample by sample?",
        {
            "kl": claim("averages: hedged predictions near the simplex's centre, far from the "
                        "teacher's cloud", Compare("confidence", "<=", 0.6),
                        Compare("cloud_ot", ">=", 0.8)),
            "rkl": claim("commits to one class per input and is closer sample by sample than "
                         "KL", Compare("confidence", ">=", 0.7),
                         Compare("paired_l1", "<=", of="kl")),
            "js": claim("is no further sample by sample than KL",
                        Compare("paired_l1", "<=", of="kl")),
            "class_ot": claim("commits like reverse KL and is closer sample by sample than KL",
                              Compare("confidence", ">=", 0.7),
                              Compare("paired_l1", "<=", of="kl")),
            "sinkd": claim("matches the cloud, not the pairs",
                           Compare("cloud_ot", "<=", 0.3),
                           Compare("paired_l1", ">=", factor=4.0, against="cloud_ot")),
            "recipe": claim("ends where KD alone ends: the SinKD term, weighted 0.8 × 1e-3, "
                            "barely moves it", Compare("cloud_ot", ">=", of="kl", value=-0.05),
                            Compare("cloud_ot", "<=", of="kl", value=0.05)),
        }),
    "Batch-wise: every label moved at the start": _preset(
        ROLLED,
        "The teacher is one a linear student can copy, and the start already has the "
        "teacher's cloud, with every prediction moved to the next class: accuracy 0. Watch "
        "the accuracy column, and the cloud OT of SinKD's term alone.",
        "The student starts with the teacher's cloud of predictions, but every label is moved "
        "to the next class. Which students put the labels back?",
        {**{s: claim("puts the labels back", Compare("accuracy", ">=", 0.5))
            for s in PER_SAMPLE},
         "sinkd": claim("keeps the wrong labels: the cloud already matches, so the batch-wise "
                        "term has nothing to fix", Compare("accuracy", "<=", 0.2),
                        Compare("cloud_ot", "<=", 0.1))}),
    "Batch-wise: a pairing left to chance": _preset(
        CHANCE,
        "The teacher is one a linear student can copy exactly, and every student starts near "
        "the centre of the simplex. Compare the accuracy and paired L1 of SinKD's term alone "
        "with the others'.",
        "Every student starts near the centre of the simplex, and a linear student can copy "
        "this teacher exactly. Which students end with the teacher's labels?",
        {**{s: claim("copies the teacher sample by sample", Compare("accuracy", ">=", 0.9),
                     Compare("paired_l1", "<=", 0.1)) for s in PER_SAMPLE},
         "sinkd": claim("finds the teacher's cloud but a pairing set by the start, not by the "
                        "teacher", Compare("cloud_ot", "<=", 0.25),
                        Compare("accuracy", "<=", 0.5))}),
}

SPEC = PageSpec(DEFAULTS, LIMITS, PRESETS)
