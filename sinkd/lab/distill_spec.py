"""The Distill a BERT page's values: run settings, recipes, data, seeds, and the presets.

The recipes and the GLUE tasks are :mod:`sinkd.distill`'s; this package does not import it (the
two subpackages stay independent), so the page passes their names to :func:`spec`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sinkd.lab.spec import LAMBDA_VALUES, SEED_RANGE, PageSpec, Preset, Range

# The settings of DistillConfig the page offers, with the page's defaults: a classroom budget.
HYPER: dict[str, Any] = {
    "steps": 150, "batch_size": 16, "lr": 3e-4, "alpha": 0.9, "beta": 0.8,
    "kd_temperature": 2.0, "anneal_temperature": False, "reg": 0.1, "n_iters": 20,
    "sinkhorn_temperature": 2.0, "max_length": 32, "student_layers": 2, "train_limit": 2000,
    "eval_limit": 300, "teacher_steps": 60, "teacher_lr": 2e-4,
}
SOURCES: dict[str, Any] = {"data_source": "rotten_tomatoes", "data_file": "", "teacher": ""}
FILE = "file"  # the data source that reads the CSV/TSV at data_file
METRICS = ("test", "best_dev", "final_dev")
LIMITS: dict[str, Any] = {
    "steps": Range(1, 3000), "batch_size": Range(2, 128), "lr": Range(1e-6, 1e-3),
    "alpha": Range(0.0, 1.0), "beta": Range(0.0, 10.0), "kd_temperature": Range(0.5, 10.0),
    "reg": LAMBDA_VALUES, "n_iters": Range(1, 200), "sinkhorn_temperature": Range(0.5, 10.0),
    "max_length": Range(8, 128), "student_layers": Range(1, 6), "train_limit": Range(100, 8000),
    "eval_limit": Range(50, 1000), "teacher_steps": Range(0, 1000),
    "teacher_lr": Range(1e-6, 1e-3), "n_seeds": Range(1, 5), "first_seed": SEED_RANGE,
    "metric": METRICS,
}
# What the classroom preset costs, told to the user before they press Start. Measured once with
# `python -m sinkd distill --recipe ce sinkd --steps 150 --batch-size 16 --train-limit 2000
# --set eval_limit=300 --set max_length=32 --set teacher_steps=60 --set teacher_lr=2e-4
# --set lr=3e-4`: measure again when HYPER changes.
CLASSROOM_TIME = ("about 3 minutes (196 s) the first time, teacher fine-tuning included, "
                  "measured on an idle 2-core CPU; once the teacher is cached, under a minute "
                  "per run")


def spec(recipes: Iterable[str], glue_tasks: Iterable[str]) -> PageSpec:
    """The page's spec for these recipe names and GLUE task names (from :mod:`sinkd.distill`).

    Values: :data:`HYPER`; ``use_<recipe>`` (CE and SinKD ticked); the data source
    (``rotten_tomatoes``, a GLUE task or ``file``), ``data_file`` and ``teacher``; ``n_seeds``
    and ``first_seed``; the ``metric`` plotted.

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
            "watch the KD and Sinkhorn terms in the loss chart; about twice the classroom time."),
        "Seeds: KD vs SinKD, 3 seeds each": Preset(
            {**HYPER, **only("kd", "sinkd"), "n_seeds": 3},
            "Six runs: the error bars (one standard deviation over seeds) show how much of a "
            "difference between recipes the seed alone can make; about three times the "
            "classroom."),
        "Annealed KD temperature: SinKD, T from 4 down to 1": Preset(
            {**HYPER, **only("sinkd"), "kd_temperature": 4.0, "anneal_temperature": True},
            "The KD temperature falls linearly from 4 to 1 over the steps, as the reference "
            "does on MNLI and QQP: the KD term's scale changes along the run."),
    }
    return PageSpec(defaults, limits, presets)


def config_overrides(values: Mapping[str, Any]) -> dict[str, Any]:
    """The DistillConfig fields the page's values set: :data:`HYPER`, ``data`` and ``teacher``.

    ``data`` is the data source, or the path in ``data_file`` for ``file`` (an empty path is a
    ValueError); an empty ``teacher`` is None (the packaged MiniLM).

    Examples
    --------
    >>> v = {**HYPER, "data_source": "file", "data_file": " a.csv ", "teacher": ""}
    >>> {k: config_overrides(v)[k] for k in ("data", "teacher", "steps")}
    {'data': 'a.csv', 'teacher': None, 'steps': 150}
    """
    data = values["data_file"].strip() if values["data_source"] == FILE else values["data_source"]
    if not data:
        raise ValueError("data_file must be the path of a .csv or .tsv file when the data set "
                         "is 'file', got an empty path")
    return {**{k: values[k] for k in HYPER}, "data": data,
            "teacher": values["teacher"].strip() or None}
