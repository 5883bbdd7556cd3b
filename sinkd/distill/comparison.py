"""The table that compares run records: one row per experiment, mean and std over seeds.

Runs are grouped by recipe, step budget and every other setting in which they differ
(:func:`compare`); only finished runs are averaged, the others are counted by status;
:func:`format_compare` prints the table as text or Markdown (``python -m sinkd compare``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from sinkd.distill.gradients import SHARE_KEYS
from sinkd.distill.records import RunRecord, full_config

_DASH = "—"


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN with fewer than 2 values)."""
    if not values:
        return math.nan, math.nan
    x = np.asarray(values, dtype=float)
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else math.nan


COLUMNS = ("recipe", "steps", "settings", "seeds", "stopped", "crashed", "running", "test_mean",
           "test_std",
           "best_dev_mean", "best_dev_std", "final_dev_mean", "final_dev_std",
           *SHARE_KEYS.values())
_SHARE_HEADERS = {SHARE_KEYS["ce"]: "CE grad %", SHARE_KEYS["kd"]: "KD grad %",
                  SHARE_KEYS["sinkhorn"]: "SinKD grad %"}
# config fields that never make two runs different experiments: seeds are averaged, the rest
# are where a run was written or computed
_NOT_SETTINGS = frozenset({"recipe", "steps", "seed", "out", "device", "cache_dir",
                           "checkpoint_every"})


def _settings(records: list[RunRecord]) -> list[tuple]:
    """Per record, the (field, value) pairs of its config that some other record differs on."""
    items = [{k: v for k, v in full_config(r.config).items() if k not in _NOT_SETTINGS}
             for r in records]
    keys = sorted({k for item in items for k in item})
    varying = [k for k in keys if len({repr(item.get(k)) for item in items}) > 1]
    return [tuple((k, item.get(k)) for k in varying) for item in items]


def _teacher_rows(records: list[RunRecord]) -> list[dict[str, Any]]:
    """One row per distinct teacher: its accuracies on the records' own dev and test sets."""
    rows: dict[tuple, dict[str, Any]] = {}
    for r in records:
        t = r.teacher
        if t.get("test_accuracy") is None or t.get("dev_accuracy") is None:
            continue  # a record stopped before its teacher was ready
        key = (t.get("cache"), t["dev_accuracy"], t["test_accuracy"])
        rows.setdefault(key, dict(
            recipe="teacher", steps=int(t.get("steps") or 0), settings="",
            seeds=1, stopped=0, crashed=0, running=0, test_mean=t["test_accuracy"],
            test_std=math.nan,
            best_dev_mean=t["dev_accuracy"], best_dev_std=math.nan,
            final_dev_mean=t["dev_accuracy"], final_dev_std=math.nan))
    return list(rows.values())


def run_grad_shares(record: RunRecord) -> dict[str, float]:
    """A run's mean gradient share of each term over its evaluations (NaN where the recipe has
    no such term, or the record none: records written before the shares were measured).

    >>> r = RunRecord(config={}, metrics=[{"step": 1, "grad_share_ce": 0.2},
    ...                                   {"step": 2, "grad_share_ce": 0.4}])
    >>> round(run_grad_shares(r)["grad_share_ce"], 12), run_grad_shares(r)["grad_share_kd"]
    (0.3, nan)
    """
    return {key: _mean_std([row[key] for row in record.metrics
                            if row.get(key) is not None])[0] for key in SHARE_KEYS.values()}


def compare(records: list[RunRecord], teacher: bool = True) -> pd.DataFrame:
    """One row per experiment (recipe, steps, other settings): mean and std over seeds.

    Runs are averaged together only when their configs agree on every field but ``seed`` (and
    where they were written or computed: ``out``, ``device``, ``cache_dir``); ``settings``
    names the fields in which the groups differ (``"lr=0.0002"``), empty when they differ only
    in recipe and steps. ``test`` is the test accuracy of the best-dev checkpoint, ``best_dev``
    the best dev accuracy over evaluations (optimistic: it chose the checkpoint), ``final_dev``
    the dev accuracy at the last step. ``grad_share_<term>`` (ce, kd, sinkhorn) is the term's
    share of the gradient at the student's logits (:mod:`sinkd.distill.gradients`), averaged
    over each run's evaluations (:func:`run_grad_shares`), then over seeds; NaN where the
    recipe has no such term or the records predate the measurement. Only finished runs are
    averaged (``seeds`` counts them); the others are counted by status in ``stopped``,
    ``crashed`` and ``running``. std uses ddof=1 and is NaN for a single seed.

    Parameters
    ----------
    records : list of RunRecord
    teacher : bool, default True
        Also one ``"teacher"`` row per distinct teacher, first: its accuracies on the same dev
        and test sets (one model, so std is NaN), the reference a student is measured against.

    Returns
    -------
    pandas.DataFrame
        Columns ``COLUMNS``, teacher rows first, then rows in the order experiments first
        appear.

    Examples
    --------
    >>> r = [RunRecord(config={"recipe": "kd", "steps": 5, "seed": s},
    ...                results={"test": t, "best_dev": t, "final_dev": t}) for s, t in
    ...      enumerate([0.5, 0.7])]
    >>> compare(r)[["recipe", "seeds", "test_mean"]].to_dict("records")
    [{'recipe': 'kd', 'seeds': 2, 'test_mean': 0.6}]
    """
    if not records:
        raise ValueError("records must hold at least one run record, got none")
    for record in records:
        if not isinstance(record, RunRecord):
            raise ValueError(f"records must be RunRecord objects, got {type(record).__name__}")
    groups: dict[tuple, list[RunRecord]] = {}
    for record, settings in zip(records, _settings(records), strict=True):
        key = (record.recipe, int(record.config.get("steps", 0)), settings)
        groups.setdefault(key, []).append(record)
    rows = _teacher_rows(records) if teacher else []
    for (recipe, steps, settings), group in groups.items():
        done = [r for r in group if r.status == "finished"]
        row: dict[str, Any] = dict(recipe=recipe, steps=steps, seeds=len(done),
                                   settings=", ".join(f"{k}={v}" for k, v in settings),
                                   **{s: sum(r.status == s for r in group)
                                      for s in ("stopped", "crashed", "running")})
        for key in ("test", "best_dev", "final_dev"):
            values = [r.results[key] for r in done if r.results.get(key) is not None]
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(values)
        shares = [run_grad_shares(r) for r in done]
        for key in SHARE_KEYS.values():
            row[key] = _mean_std([s[key] for s in shares if not math.isnan(s[key])])[0]
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def format_compare(df: pd.DataFrame, markdown: bool = False) -> str:
    """The comparison as a text table, accuracies and gradient shares in %, NaN shown as "—".

    The gradient-share columns (``CE grad %``, ``KD grad %``, ``SinKD grad %``: the mean over
    evaluations and seeds, see :func:`compare`) are left out when no row has one (records from
    before the shares were measured); the ``settings`` column comes last and is left out when
    every row's is empty; so are ``crashed`` and ``running`` when no row has such a run.

    Parameters
    ----------
    df : pandas.DataFrame
        :func:`compare`'s output.
    markdown : bool, default False
        A Markdown (GitHub) table rather than fixed-width text.

    Examples
    --------
    >>> r = RunRecord(config={"recipe": "ce", "steps": 3}, results={"test": 0.5})
    >>> print(format_compare(compare([r])))  # doctest: +NORMALIZE_WHITESPACE
    recipe steps seeds stopped test % ± best dev % ± final dev % ±
        ce     3     1       0   50.0 —        —  —         —  —
    """
    def pct(x: float) -> str:
        return _DASH if x is None or not math.isfinite(x) else f"{100 * x:.1f}"

    headers = {"test_mean": "test %", "test_std": "±", "best_dev_mean": "best dev %",
               "best_dev_std": "±", "final_dev_mean": "final dev %", "final_dev_std": "±"}
    table = df.copy()
    shares = [c for c in _SHARE_HEADERS if c in df and df[c].notna().any()]
    headers.update({c: _SHARE_HEADERS[c] for c in shares})
    for col in headers:
        table[col] = [pct(x) for x in df[col]]
    columns = [c for c in table.columns if c != "settings"
               and (c not in _SHARE_HEADERS or c in shares)
               and (c not in ("crashed", "running") or table[c].any())]
    if "settings" in table and any(table["settings"]):
        columns.append("settings")
    table = table[columns]
    table.columns = [headers.get(c, c) for c in columns]
    if not markdown:
        return table.to_string(index=False)
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(False)]
    return "\n".join(lines)
