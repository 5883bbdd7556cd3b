"""The batch-wise page's views: a fit from the page's values, its table, the sentences the page
shows (computed from the measured numbers only), the answer to a preset's question, and the
robustness counts of a preset's claims (also ``python -m sinkd toy --preset NAME``).

The toy (batch, teachers, students' losses, training) is :mod:`sinkd.lab.batchwise_toy`, a
fit and its measurements :mod:`sinkd.lab.batchwise_fit`, the presets and their claims
:mod:`sinkd.lab.batchwise_spec`, the figures :mod:`sinkd.lab.batchwise_figures`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from sinkd.lab.batchwise_fit import BatchFit, Metrics, fit, fit_grid
from sinkd.lab.batchwise_spec import SPEC
from sinkd.lab.batchwise_toy import SCALE, Options, Progress
from sinkd.lab.style import LABELS

FIT_KEYS = ("teacher", "n", "uncertain", "start", "steps", "lr", "seed")


def options_of(values: Mapping[str, Any]) -> Options:
    """The losses' options from the page's values (``lam``, ``n_iters``, ``tau``, ``beta``)."""
    try:
        return Options(reg=float(values["lam"]), n_iters=int(values["n_iters"]),
                       tau=float(values["tau"]), beta=float(values["beta"]))
    except KeyError as err:
        raise ValueError(f"values is missing {err.args[0]!r}") from None


def fit_view(values: Mapping[str, Any]) -> BatchFit:
    """Run :func:`sinkd.lab.batchwise_fit.fit` from the page's flat values (the keys of
    :data:`sinkd.lab.batchwise_spec.SPEC`).

    >>> f = fit_view(dict(SPEC.defaults, steps=3, n=12))
    >>> len(f.students), f.settings["steps"]
    (6, 3)
    """
    try:
        kwargs = {k: values[k] for k in FIT_KEYS}
    except KeyError as err:
        raise ValueError(f"values is missing {err.args[0]!r}") from None
    teacher = kwargs.pop("teacher")
    return fit(teacher, options=options_of(values), **kwargs)


def measurements(f: BatchFit) -> dict[str, Metrics]:
    """Every student's :class:`Metrics`, and the teacher's against itself (key "teacher"):
    what the claims of :mod:`sinkd.lab.batchwise_spec` are predicates on."""
    return {**f.metrics, "teacher": f.teacher_metrics}


def metrics_frame(f: BatchFit) -> pd.DataFrame:
    """One row per student (and the common start, and the teacher): the measured numbers."""
    rows = [("start (all students)", f.start_metrics)]
    rows += [(LABELS[s], f.metrics[s]) for s in f.students]
    rows += [("teacher", f.teacher_metrics)]
    return pd.DataFrame([{
        "student": name, "paired L1": m.paired_l1, "cloud OT": m.cloud_ot,
        "accuracy": m.accuracy, "KL(t‖s)": m.kl, "confidence": m.confidence,
        "own-pair mass": m.own_mass} for name, m in rows])


def _rank(f: BatchFit, student: str, metric: str) -> int:
    """1 for the smallest value of ``metric`` among the students."""
    values = sorted(getattr(m, metric) for m in f.metrics.values())
    return values.index(getattr(f.metrics[student], metric)) + 1


def outcomes(f: BatchFit) -> list[str]:
    """What this fit shows about SinKD, one sentence per finding, from its numbers only."""
    m, t, o = f.metrics, f.teacher_metrics, f.options
    n = len(f.students)
    out = [f"The common start: cloud OT {f.start_metrics.cloud_ot:.2f}, paired L1 "
           f"{f.start_metrics.paired_l1:.2f}, accuracy {f.start_metrics.accuracy:.0%}."]
    if "sinkd" in m:
        s = m["sinkd"]
        text = (f"SinKD's batch term alone: cloud OT {s.cloud_ot:.2f} (rank "
                f"{_rank(f, 'sinkd', 'cloud_ot')} of {n}, 1 = closest), paired L1 "
                f"{s.paired_l1:.2f} (rank {_rank(f, 'sinkd', 'paired_l1')} of {n}), accuracy "
                f"{s.accuracy:.0%}.")
        if s.paired_l1 >= 2 * s.cloud_ot + 0.05:
            text += (" Its cloud is much closer than its pairs: the term compares the two clouds "
                     "of predictions and ignores which prediction belongs to which input "
                     "(permuting the batch leaves it unchanged), so nothing in it pulls a "
                     "prediction towards its own input's teacher.")
        elif s.paired_l1 <= 0.1:
            text += " Here its pairs are right as well."
        if s.confidence < t.confidence - 0.2:
            text += (f" Its predictions hedge (confidence {s.confidence:.2f}, the teacher's "
                     f"{t.confidence:.2f}): with λ = {o.reg:g} the plan spreads each "
                     "prediction's mass over many teacher predictions (entropic blur), and the "
                     "term pulls it to their middle.")
        out.append(text)
    per_sample = [s for s in ("kl", "rkl", "js", "class_ot", "recipe") if s in m]
    if per_sample:
        best = min(per_sample, key=lambda s: m[s].paired_l1)
        out.append(f"Closest sample by sample: {LABELS[best]} (paired L1 "
                   f"{m[best].paired_l1:.2f}, accuracy {m[best].accuracy:.0%}).")
    if "kl" in m and m["kl"].confidence < t.confidence - 0.2:
        out.append(f"Forward KL averages: mean confidence {m['kl'].confidence:.2f} against the "
                   f"teacher's {t.confidence:.2f}, so its cloud sits towards the simplex's centre "
                   f"(cloud OT {m['kl'].cloud_ot:.2f}).")
    if "class_ot" in m:
        out.append(f"Per-sample OT over unordered classes (cost 1 − I) is the total variation "
                   f"(exactly, λ → 0): every unit of mass that moves costs 1 whatever class it "
                   f"goes to, so there is no geometry to exploit; it ends at paired L1 "
                   f"{m['class_ot'].paired_l1:.2f}, cloud OT {m['class_ot'].cloud_ot:.2f}.")
    if "recipe" in m and "kl" in m:
        r, k = m["recipe"], m["kl"]
        text = (f"The recipe (KD + β·SinKD, β = {o.beta:g}, scale {SCALE:g}): at the start the "
                f"SinKD term's gradient is {f.recipe_share:.2%} of KD's. It ends at cloud OT "
                f"{r.cloud_ot:.2f} (KD alone: {k.cloud_ot:.2f}) and paired L1 {r.paired_l1:.2f} "
                f"({k.paired_l1:.2f}).")
        if abs(r.cloud_ot - k.cloud_ot) <= 0.05 and abs(r.paired_l1 - k.paired_l1) <= 0.05:
            text += " At this weight it behaves like KD alone."
        else:
            cloud = "closer to" if r.cloud_ot < k.cloud_ot else "further from"
            pairs = "closer" if r.paired_l1 < k.paired_l1 else "no closer"
            text += (f" At this weight the SinKD term changes where it ends: its cloud is "
                     f"{cloud} the teacher's than KD's, its pairs {pairs}.")
        out.append(text)
    return out


def claim_results(f: BatchFit, preset_name: str) -> dict[str, bool]:
    """Whether each claim of a preset holds on this fit (student -> bool)."""
    claims = _preset(preset_name).claims
    m = measurements(f)
    return {s: bool(c.holds(m, s)) for s, c in claims.items() if s in f.metrics}


def reveal(f: BatchFit, preset_name: str) -> list[str]:
    """The answer to a preset's question on this fit: per student its claim, whether it held
    here, and the numbers it was decided on."""
    claims, held = _preset(preset_name).claims, claim_results(f, preset_name)
    lines = []
    for s, ok in held.items():
        x = f.metrics[s]
        lines.append(f"{'✅' if ok else '❌'} **{LABELS[s]}** {claims[s].sentence}: "
                     f"{'holds' if ok else 'does not hold'} here (cloud OT {x.cloud_ot:.2f}, "
                     f"paired L1 {x.paired_l1:.2f}, accuracy {x.accuracy:.0%}, confidence "
                     f"{x.confidence:.2f}).")
    return lines


def _preset(preset_name: str):
    if preset_name not in SPEC.presets:
        raise ValueError(f"preset must be one of {list(SPEC.presets)}, got {preset_name!r}")
    return SPEC.presets[preset_name]


def robustness(preset_name: str, *, seeds: int = 8,
               on_progress: Progress | None = None) -> dict[str, dict[str, Any]]:
    """In how many runs each claim of a batch-wise preset held: seeds 0 .. ``seeds`` - 1,
    budgets half, as set and 4x the preset's steps, learning rates the preset's and 2.5 times
    it (:func:`sinkd.lab.batchwise_fit.fit_grid`: one stacked optimisation).

    Returns
    -------
    dict
        student -> ``{"claim": str, "runs": int, "held": int}``, the shape of the divergence
        lab's :func:`sinkd.lab.robustness.robustness`; tests/lab/test_batchwise.py checks
        every preset's counts.
    """
    preset = _preset(preset_name)
    v = preset.values
    grid = fit_grid(v["teacher"], n=v["n"], uncertain=v["uncertain"], start=v["start"],
                    steps=v["steps"], lr=v["lr"], options=options_of(v), seeds=seeds,
                    on_progress=on_progress)
    return {s: {"claim": c.sentence, "runs": len(grid),
                "held": sum(bool(c.holds(m, s)) for m in grid.values())}
            for s, c in preset.claims.items()}
