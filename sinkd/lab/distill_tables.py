"""What the Distill a BERT page shows of its records: readable tables, short labels, run curves.

:func:`sinkd.distill.comparison.compare` keeps its data columns (``test_mean``, ``test_std``, ...)
for the CLI and the CSV download; this module turns them into what a reader sees: headers in
words, accuracies in % as ``mean ± std``, "—" where a value is missing, and chart labels made of
the recipe and only the settings that recipe reads (CE ignores α, β, λ, ...). It does not
import :mod:`sinkd.distill` (the two subpackages stay independent): records are read by their
attributes (``recipe``, ``config``, ``metrics``, ``stopped``, ``ended``) and each recipe's loss
terms come from the page (``{name: recipe.parts for name, recipe in RECIPES.items()}``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, NamedTuple

import pandas as pd

DASH = "—"
# the loss settings each term reads (sinkd.distill.recipes: alpha weighs CE against the rest)
TERM_SETTINGS = {"kd": ("alpha", "kd_temperature", "anneal_temperature"),
                 "sinkhorn": ("alpha", "beta", "reg", "n_iters", "sinkhorn_temperature",
                              "sinkhorn_batch")}
LOSS_SETTINGS = frozenset(s for names in TERM_SETTINGS.values() for s in names)
# short names of settings in labels and hovers
SYMBOLS = {"alpha": "α", "beta": "β", "kd_temperature": "T_KD", "anneal_temperature": "anneal",
           "reg": "λ", "n_iters": "T", "sinkhorn_temperature": "τ", "lr": "lr",
           "batch_size": "batch", "max_length": "length", "student_layers": "layers",
           "train_limit": "train", "eval_limit": "eval", "teacher_steps": "teacher steps"}
# the settings a run's hover names (those its recipe reads among the loss settings)
HOVER_SETTINGS = ("steps", "batch_size", "lr", "alpha", "kd_temperature", "anneal_temperature",
                  "beta", "reg", "n_iters", "sinkhorn_temperature")
ACCURACIES = {"test": "Test acc. (%)", "best_dev": "Best dev acc. (%)",
              "final_dev": "Final dev acc. (%)"}
SHARES = {"grad_share_ce": "CE grad share (%)", "grad_share_kd": "KD grad share (%)",
          "grad_share_sinkhorn": "SinKD grad share (%)"}
RUN_COLUMNS = {"file": "File", "recipe": "Recipe", "seed": "Seed", "steps": "Steps",
               "status": "Status", "test": "Test acc. (%)", "best_dev": "Best dev acc. (%)",
               "teacher_test": "Teacher test acc. (%)", "wall_time_s": "Time (s)",
               "device": "Device", "ended": "Ended"}


class Curves(NamedTuple):
    """One run's curves for :func:`sinkd.lab.distill_figures.runs_figure`."""

    label: str  # short: "sinkd seed 0"
    rows: Sequence[Mapping[str, Any]]  # the record's metrics (one dict per step)
    recipe: str = ""  # colours the run
    hover: str = ""  # its settings, shown on hover


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def percent(mean: Any, std: Any = None) -> str:
    """``"65.0 ± 7.1"`` (fractions in, % out), ``"80.0"`` without a std, "—" without a mean.

    >>> percent(0.65, 0.0707), percent(0.8, float("nan")), percent(None)
    ('65.0 ± 7.1', '80.0', '—')
    """
    if _missing(mean):
        return DASH
    return f"{100 * mean:.1f}" + ("" if _missing(std) else f" ± {100 * std:.1f}")


def parse_settings(text: str) -> list[tuple[str, str]]:
    """The (field, value) pairs of :func:`~sinkd.distill.comparison.compare`'s ``settings``.

    >>> parse_settings("alpha=0.5, lr=0.0003")
    [('alpha', '0.5'), ('lr', '0.0003')]
    """
    if not text:
        return []
    return [tuple(item.split("=", 1)) for item in re.split(r", (?=\w+=)", text)]


def read_settings(recipe: str, names: Sequence[str],
                  parts: Mapping[str, Sequence[str]] | None) -> list[str]:
    """The ``names`` that ``recipe`` reads: loss settings only where one of its terms uses them
    (``parts[recipe]``: its terms, e.g. ``("ce", "kd")``); every name for an unknown recipe.

    >>> read_settings("ce", ["alpha", "lr"], {"ce": ("ce",)})
    ['lr']
    >>> read_settings("kd", ["alpha", "beta", "lr"], {"kd": ("ce", "kd")})
    ['alpha', 'lr']
    """
    if parts is None or recipe not in parts:
        return list(names)
    used = {s for term in parts[recipe] for s in TERM_SETTINGS.get(term, ())}
    return [n for n in names if n not in LOSS_SETTINGS or n in used]


def _short(pairs: Sequence[tuple[str, Any]]) -> str:
    return ", ".join(f"{SYMBOLS.get(k, k)}={v}" for k, v in pairs)


def experiment_labels(table: pd.DataFrame, parts: Mapping[str, Sequence[str]] | None = None,
                      ) -> tuple[list[str], list[str]]:
    """(short label, hover text) per row of ``compare``'s table.

    The label is the recipe, then the steps where rows differ in them, then the settings the
    recipe reads (``parts``: see :func:`read_settings`) as symbols on a second line when they
    fit in 24 characters (else ``#k``); labels stay unique. The hover names every setting the
    recipe reads, the seeds and the stopped runs.

    Examples
    --------
    >>> t = pd.DataFrame({"recipe": ["ce", "kd", "kd"], "steps": [5, 5, 5], "seeds": [1, 2, 2],
    ...                   "stopped": [0, 0, 1], "settings": ["alpha=0.5", "alpha=0.5",
    ...                                                      "alpha=0.9"]})
    >>> experiment_labels(t, {"ce": ("ce",), "kd": ("ce", "kd")})[0]
    ['ce', 'kd<br>α=0.5', 'kd<br>α=0.9']
    """
    students = table[table["recipe"] != "teacher"]
    steps_vary = students["steps"].nunique() > 1
    labels, hovers, seen = [], [], {}
    for row in table.itertuples(index=False):
        pairs = parse_settings(getattr(row, "settings", "") or "")
        keep = read_settings(row.recipe, [k for k, _ in pairs], parts)
        pairs = [(k, v) for k, v in pairs if k in keep]
        head = row.recipe + (f" ({row.steps} steps)" if steps_vary and row.recipe != "teacher"
                             else "")
        extra = _short(pairs)
        label = f"{head}<br>{extra}" if extra and len(extra) <= 24 else head
        seen[label] = seen.get(label, 0) + 1
        labels.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
        hover = (f"{row.recipe}, {row.steps} steps, {row.seeds} seed(s)"
                 + (f", {row.stopped} stopped" if row.stopped else "")
                 if row.recipe != "teacher" else
                 f"teacher fine-tuned {row.steps} steps, on the students' dev and test sets")
        hovers.append(hover + (f"<br>{_short(pairs)}" if pairs else ""))
    return labels, hovers


def comparison_table(table: pd.DataFrame, parts: Mapping[str, Sequence[str]] | None = None,
                     ) -> pd.DataFrame:
    """``compare``'s table for reading: headers in words, accuracies and gradient shares in %
    (``mean ± std``), "—" where missing, each row's settings only those its recipe reads.

    Gradient-share columns no row has are left out, and so is ``Settings`` when every row's is
    empty.

    Examples
    --------
    >>> t = pd.DataFrame({"recipe": ["ce"], "steps": [5], "settings": [""], "seeds": [2],
    ...     "stopped": [0], "test_mean": [0.65], "test_std": [0.0707], "best_dev_mean": [0.7],
    ...     "best_dev_std": [None], "final_dev_mean": [None], "final_dev_std": [None],
    ...     "grad_share_ce": [float("nan")]})
    >>> comparison_table(t).iloc[0].to_dict()  # doctest: +NORMALIZE_WHITESPACE
    {'Recipe': 'ce', 'Steps': 5, 'Seeds': 2, 'Stopped': 0, 'Test acc. (%)': '65.0 ± 7.1',
     'Best dev acc. (%)': '70.0', 'Final dev acc. (%)': '—'}
    """
    out = pd.DataFrame({"Recipe": table["recipe"], "Steps": table["steps"],
                        "Seeds": table["seeds"], "Stopped": table["stopped"]})
    for key, name in ACCURACIES.items():
        out[name] = [percent(m, s) for m, s in zip(table[f"{key}_mean"], table[f"{key}_std"],
                                                   strict=True)]
    for key, name in SHARES.items():
        if key in table and not all(_missing(x) for x in table[key]):
            out[name] = [percent(x) for x in table[key]]
    settings = []
    for recipe, text in zip(table["recipe"], table.get("settings", [""] * len(table)),
                            strict=True):
        pairs = parse_settings(text or "")
        keep = read_settings(recipe, [k for k, _ in pairs], parts)
        settings.append(", ".join(f"{k}={v}" for k, v in pairs if k in keep))
    if any(settings):
        out["Settings"] = [s or DASH for s in settings]
    return out.reset_index(drop=True)


def runs_display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`sinkd.distill.jobs.runs_table` for reading: headers in words, accuracies in %,
    "—" where missing.

    >>> t = pd.DataFrame([{"recipe": "ce", "status": "crashed", "test": None, "ended": None}])
    >>> runs_display(t).iloc[0].to_dict()
    {'Recipe': 'ce', 'Status': 'crashed', 'Test acc. (%)': '—', 'Ended': '—'}
    """
    out = pd.DataFrame(index=table.index)
    for col in table.columns:
        values = table[col].astype(object)
        if col in ("test", "best_dev", "teacher_test"):
            shown = [percent(x) for x in values]
        elif col == "wall_time_s":
            shown = [DASH if _missing(x) else f"{x:.0f}" for x in values]
        else:
            shown = [DASH if _missing(x) else x for x in values]
        out[RUN_COLUMNS.get(col, col)] = shown
    return out.reset_index(drop=True)


def run_label(record: Any) -> str:
    """``"<recipe> seed <k>"``, with its status in brackets unless it finished.

    >>> from types import SimpleNamespace as R
    >>> run_label(R(recipe="sinkd", config={"seed": 1}, status="stopped"))
    'sinkd seed 1 (stopped)'
    >>> run_label(R(recipe="ce", config={"seed": 0}, status="finished"))
    'ce seed 0'
    """
    return f"{record.recipe} seed {record.config.get('seed')}" + (
        "" if record.status == "finished" else f" ({record.status})")


def run_choices(records: Sequence[tuple[Any, Any]]) -> dict[str, int]:
    """A unique name per saved run (newest first) to its index in ``records`` (oldest first):
    the run's label and, when two runs share it, when it ended.

    >>> from types import SimpleNamespace as R
    >>> rs = [(None, R(recipe="ce", config={"seed": 0}, status="finished", ended=e))
    ...       for e in ("2026-01-01T10:00:00+00:00", "2026-01-02T11:30:00+00:00")]
    >>> list(run_choices(rs))
    ['ce seed 0 · 2026-01-02 11:30', 'ce seed 0 · 2026-01-01 10:00']
    """
    labels = [run_label(r) for _, r in records]
    out = {}
    for i in reversed(range(len(records))):
        name = labels[i]
        if labels.count(name) > 1:
            ended = records[i][1].ended
            name += f" · {ended[:16].replace('T', ' ')}" if ended else " · running"
        while name in out:
            name += "'"
        out[name] = i
    return out


def run_curves(records: Sequence[Any], parts: Mapping[str, Sequence[str]] | None = None,
               ) -> list[Curves]:
    """:class:`Curves` of each record: its label, metrics, recipe and the settings it reads.

    >>> from types import SimpleNamespace as R
    >>> r = R(recipe="ce", config={"seed": 0, "steps": 9, "alpha": 0.5, "lr": 1e-4},
    ...       status="finished", metrics=[{"step": 1, "loss": 0.7}])
    >>> run_curves([r], {"ce": ("ce",)})[0].hover
    'steps=9, lr=0.0001'
    """
    out = []
    for r in records:
        names = read_settings(r.recipe, [k for k in HOVER_SETTINGS if k in r.config], parts)
        hover = ", ".join(f"{SYMBOLS.get(k, k) if k != 'steps' else k}={r.config[k]}"
                          for k in names)
        out.append(Curves(run_label(r), r.metrics, r.recipe, hover))
    return out


def job_curves(runs: Sequence[Mapping[str, Any]]) -> list[Curves]:
    """:class:`Curves` of a running job's runs that have steps (finished ones stay drawn), from
    :meth:`sinkd.distill.jobs.Job.snapshot`'s rows.

    >>> job_curves([{"recipe": "ce", "seed": 0, "steps": [{"step": 1, "loss": 0.7}]},
    ...             {"recipe": "sinkd", "seed": 0, "steps": []}])[0].label
    'ce seed 0'
    """
    return [Curves(f"{r['recipe']} seed {r['seed']}", r["steps"], r["recipe"])
            for r in runs if r["steps"]]


def classroom_timing() -> dict[str, Any]:
    """The classroom preset's measurement, ``sinkd/data/classroom_time.json`` (written by
    ``bench/classroom_time.py``)."""
    return json.loads((resources.files("sinkd") / "data" / "classroom_time.json").read_text())


def _duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s} s" if s < 60 else (f"{s // 60} min {s % 60:02d} s" if s % 60 else
                                    f"{s // 60} min")


def machine_text(data: Mapping[str, Any]) -> str:
    """The machine of a measurement: ``"an idle 2-core CPU"``, or, when other programs ran,
    the share of the CPU they used during it (older measurements: the 1-minute load average
    before it; the one after counts the measured command's own load).

    >>> machine_text({"cores": 2, "idle": False, "load_before": [0.2, 0, 0],
    ...               "load_after": [2.1, 1, 0], "others_cpu_share": 0.31})
    'a 2-core CPU shared with other programs (they used 31% of it)'
    >>> machine_text({"cores": 2, "idle": False, "load_before": [5.75, 3, 1],
    ...               "load_after": [3.1, 5, 3]})
    'a 2-core CPU shared with other programs, load average 5.8 before'
    """
    if data.get("idle"):
        return f"an idle {data['cores']}-core CPU"
    if "others_cpu_share" in data:
        return (f"a {data['cores']}-core CPU shared with other programs (they used "
                f"{data['others_cpu_share']:.0%} of it)")
    return (f"a {data['cores']}-core CPU shared with other programs, load average "
            f"{data['load_before'][0]:.1f} before")


def classroom_time_text(data: Mapping[str, Any]) -> str:
    """What the classroom preset costs, in words, from its measurement (see
    :func:`classroom_timing`): the total the first time, the teacher's share of it (a one-time
    cost: cached, later runs skip it), the seconds per run after, the cores and the load.

    Examples
    --------
    >>> d = {"total_s": 300.0, "teacher_s": 120.0, "teacher_steps": 60, "cores": 2,
    ...      "load_before": [0.1, 0.2, 0.3], "load_after": [0.2, 0.2, 0.3], "idle": True,
    ...      "runs": [{"seconds": 80.0}, {"seconds": 100.0}]}
    >>> classroom_time_text(d)  # doctest: +NORMALIZE_WHITESPACE
    '5 min the first time (measured on an idle 2-core CPU), of which 2 min (40%) is the
    teacher: fine-tuned for 60 steps and its logits computed once, then cached, so later runs
    with the same data and teacher settings skip it; each run takes about 1 min 30 s'
    """
    per_run = sum(r["seconds"] for r in data["runs"]) / max(len(data["runs"]), 1)
    where = f"measured on {machine_text(data)}" + (
        "" if data.get("idle") else ": an idle machine is faster")
    return (f"{_duration(data['total_s'])} the first time ({where}), of which "
            f"{_duration(data['teacher_s'])} ({100 * data['teacher_s'] / data['total_s']:.0f}%) "
            f"is the teacher: fine-tuned for {data['teacher_steps']} steps and its logits "
            "computed once, then cached, so later runs with the same data and teacher settings "
            f"skip it; each run takes about {_duration(per_run)}")
