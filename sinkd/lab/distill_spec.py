"""The Distill a BERT page's values: run settings, recipes, data, seeds, and the presets.

The recipes and the GLUE tasks are :mod:`sinkd.distill`'s; this package does not import it (the
two subpackages stay independent), so the page passes their names to :func:`spec`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sinkd.lab.distill_tables import classroom_time_text, classroom_timing
from sinkd.lab.spec import LAMBDA_VALUES, SEED_RANGE, PageSpec, Preset, Range

# The settings of DistillConfig the page offers, with the page's defaults: a classroom budget.
HYPER: dict[str, Any] = {
    "steps": 150, "batch_size": 16, "lr": 3e-4, "alpha": 0.9, "beta": 0.8,
    "kd_temperature": 2.0, "anneal_temperature": False, "reg": 0.1, "n_iters": 20,
    "sinkhorn_temperature": 2.0, "max_length": 32, "student_layers": 2, "train_limit": 2000,
    "eval_limit": 300, "teacher_steps": 60, "teacher_lr": 2e-4,
}
# No value names a path on the server (a link's values are anyone's): a user's table is uploaded
# (the page stores it and passes its copy to config_overrides) and the teacher is one of TEACHERS.
SOURCES: dict[str, Any] = {"data_source": "rotten_tomatoes", "teacher": ""}
FILE = "file"  # the data source of an uploaded CSV/TSV table
# "": the packaged MiniLM-L6 (offline); the hub's BERT-base is the paper's teacher (network).
TEACHERS = ("", "bert-base-uncased")
METRICS = ("test", "best_dev", "final_dev")
LIMITS: dict[str, Any] = {
    "steps": Range(1, 3000), "batch_size": Range(2, 128), "lr": Range(1e-6, 1e-3),
    "alpha": Range(0.0, 1.0), "beta": Range(0.0, 10.0), "kd_temperature": Range(0.5, 10.0),
    "reg": LAMBDA_VALUES, "n_iters": Range(1, 200), "sinkhorn_temperature": Range(0.5, 10.0),
    "max_length": Range(8, 128), "student_layers": Range(1, 6), "train_limit": Range(100, 8000),
    "eval_limit": Range(50, 1000), "teacher_steps": Range(0, 1000),
    "teacher_lr": Range(1e-6, 1e-3), "n_seeds": Range(1, 5), "first_seed": SEED_RANGE,
    "metric": METRICS, "teacher": TEACHERS,
}
# What the classroom preset costs, told to the user before they press Start: measured by
# `python bench/classroom_time.py`, which writes sinkd/data/classroom_time.json (its command,
# cores and load average with the seconds); run it again when HYPER changes.
CLASSROOM_TIME = classroom_time_text(classroom_timing())


def spec(recipes: Iterable[str], glue_tasks: Iterable[str]) -> PageSpec:
    """The page's spec for these recipe names and GLUE task names (from :mod:`sinkd.distill`).

    Values: :data:`HYPER`; ``use_<recipe>`` (CE and SinKD ticked); the data source
    (``rotten_tomatoes``, a GLUE task or ``file``: an uploaded table) and ``teacher`` (one of
    :data:`TEACHERS`); ``n_seeds`` and ``first_seed``; the ``metric`` plotted.

    Examples
    --------
    >>> s = spec(["ce", "kd", "rkl", "js", "sinkd"], ["sst2"])
    >>> s.limits["data_source"], [k for k, v in s.defaults.items() if k.startswith("use_") and v]
    (('rotten_tomatoes', 'sst2', 'file'), ['use_ce', 'use_sinkd'])
    """
    recipes = tuple(recipes)

    def only(*chosen: str) -> dict[str, bool]:
        return {f"use_{r}": r in chosen for r in recipes}

    defaults = {**HYPER, **only("ce", "sinkd"), **SOURCES, "n_seeds": 1, "first_seed": 0,
                "metric": "test"}
    limits = {**LIMITS, "data_source": ("rotten_tomatoes", *glue_tasks, FILE)}
    presets = {
        "Classroom: CE vs SinKD, 150 steps on 2,000 training snippets": Preset(
            {**HYPER, **only("ce", "sinkd"), "n_seeds": 1},
            f"The student alone (CE) against the reference objective (SinKD), one seed each, "
            f"after a 60-step teacher fine-tune: {CLASSROOM_TIME}. Compare both students with "
            "the teacher row of the comparison table. With one seed and 300 test snippets a gap "
            "of a few points is noise: the binomial standard error of an accuracy near 70% on "
            "300 snippets is 2.6 points, before any seed-to-seed spread (the Seeds preset "
            "measures that)."),
        "Divergences: KD, reverse KL, JS and SinKD": Preset(
            {**HYPER, **only("kd", "rkl", "js", "sinkd"), "n_seeds": 1},
            "Four objectives that differ only in how the student is pulled to the teacher: "
            "watch the KD and Sinkhorn terms in the loss chart; the same teacher as the "
            "classroom preset (cached after its first run), then four runs instead of two."),
        "Seeds: KD vs SinKD, 3 seeds each": Preset(
            {**HYPER, **only("kd", "sinkd"), "n_seeds": 3},
            "Six runs: the error bars (one standard deviation over seeds) show how much of a "
            "difference between recipes the seed alone can make; the classroom's teacher "
            "(cached after its first run), then six runs instead of two."),
        "Annealed KD temperature: SinKD, T from 4 down to 1": Preset(
            {**HYPER, **only("sinkd"), "kd_temperature": 4.0, "anneal_temperature": True},
            "The KD temperature falls linearly from 4 to 1 over the steps, as the reference "
            "does on MNLI and QQP: the KD term's scale changes along the run."),
    }
    return PageSpec(defaults, limits, presets)


def config_overrides(values: Mapping[str, Any], upload: str | None = None) -> dict[str, Any]:
    """The DistillConfig fields the page's values set: :data:`HYPER`, ``data`` and ``teacher``.

    ``data`` is the data source, or for ``file`` the page's stored copy of the uploaded table
    (``upload``; None: nothing uploaded yet, a ValueError); an empty ``teacher`` is None (the
    packaged MiniLM). Values never give a path.

    Examples
    --------
    >>> v = {**HYPER, "data_source": "file", "teacher": ""}
    >>> {k: config_overrides(v, "/cache/uploads/ab.csv")[k] for k in ("data", "teacher", "steps")}
    {'data': '/cache/uploads/ab.csv', 'teacher': None, 'steps': 150}
    """
    data = values["data_source"]
    if data == FILE:
        if not upload:
            raise ValueError("upload a CSV/TSV file (columns text and label) for the data set "
                             "'file': no usable file is uploaded yet")
        data = upload
    if values["teacher"] not in TEACHERS:
        raise ValueError(f"teacher must be one of {TEACHERS}, got {values['teacher']!r}")
    return {**{k: values[k] for k in HYPER}, "data": data, "teacher": values["teacher"] or None}
