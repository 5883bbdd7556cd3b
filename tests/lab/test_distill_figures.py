"""The Distill a BERT page's figures and tables (sinkd.lab.distill_figures, distill_tables),
checked on the saved records of docs/results/rotten-tomatoes (real runs: 300 steps of
MiniLM-L6 students, three seeds per recipe)."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from sinkd.distill import RECIPES
from sinkd.distill import jobs as distill_jobs
from sinkd.distill.comparison import compare
from sinkd.distill.records import RunRecord, load_record
from sinkd.lab import distill_figures, distill_tables
from sinkd.lab.distill_tables import Curves
from sinkd.lab.style import COLORS

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results" / "rotten-tomatoes"
PARTS = {name: recipe.parts for name, recipe in RECIPES.items()}


def record(name: str) -> RunRecord:
    return load_record(RESULTS / f"{name}.json")


def raw(name: str) -> dict:
    """The record's JSON as written (the reference, read without sinkd)."""
    return json.loads((RESULTS / f"{name}.json").read_text())


def panel_of(fig, title: str) -> tuple[str, list]:
    """(y-axis name, traces) of the panel titled ``title``."""
    titles = [a.text for a in fig.layout.annotations]
    axis = "y" if titles.index(title) == 0 else f"y{titles.index(title) + 1}"
    return axis, [t for t in fig.data if t.yaxis == axis]


def test_every_term_is_on_its_own_scale_so_the_sinkhorn_term_is_readable():
    """On one axis with CE and KD the SinKD term's whole variation spans under 3% of the axis
    (a flat line at 0); the figure puts each term alone on its own autoscaled axis, where its
    values span the whole panel, and draws exactly the record's values."""
    data = raw("sinkd-seed0")["metrics"]
    sink = [m["sinkhorn"] for m in data]
    every = [m[p] for m in data for p in ("loss", "ce", "kd", "sinkhorn")]
    assert (max(sink) - min(sink)) / (max(every) - min(every)) < 0.03  # the defect on one axis
    fig = distill_figures.runs_figure(distill_tables.run_curves([record("sinkd-seed0")], PARTS))
    axes = {}
    for title, part in (("total loss", "loss"), ("cross-entropy (CE)", "ce"),
                        ("KD term", "kd"), ("Sinkhorn term (SinKD)", "sinkhorn")):
        axis, traces = panel_of(fig, title)
        assert len(traces) == 1 and list(traces[0].y) == [m[part] for m in data]
        assert list(traces[0].x) == list(range(1, 301))
        layout_axis = fig.layout["yaxis" + axis[1:]]
        assert layout_axis.range is None and layout_axis.autorange in (None, True)
        axes[part] = axis
    assert len(set(axes.values())) == 4  # four axes: no term shares another's scale


def test_live_loss_figure_names_and_colours_each_term():
    """The live run's figure (one unnamed run) names each trace by its term, colours it in the
    term's colour and leaves out the terms the recipe does not log (None)."""
    rows = raw("kd-seed0")["metrics"][:20]
    fig = distill_figures.loss_curves_figure(rows)
    assert [t.name for t in fig.data] == ["total loss", "cross-entropy", "KD term"]
    assert [t.line.color for t in fig.data] == [COLORS["teacher"], COLORS["ce"], COLORS["kl"]]
    assert list(fig.data[2].y) == [m["kd"] for m in rows]
    assert not any(t.yaxis == fig.data[0].yaxis for t in fig.data[1:])


def test_saved_runs_figure_draws_each_selected_run_in_every_panel_it_has():
    """Three saved runs (CE, KD, SinKD, seed 0): one legend entry per run, coloured by recipe;
    CE is in the total and CE panels only, the Sinkhorn panel holds SinKD's alone; the dev
    panel is 100 x each record's dev accuracy at its evaluation steps; the hover names the
    settings the recipe reads (no alpha for CE)."""
    names = ("ce-seed0", "kd-seed0", "sinkd-seed0")
    fig = distill_figures.runs_figure(distill_tables.run_curves([record(n) for n in names],
                                                                PARTS))
    assert [t.name for t in fig.data if t.showlegend] == [
        "ce seed 0", "kd seed 0", "sinkd seed 0"]
    assert {t.name: t.line.color for t in fig.data} == {
        "ce seed 0": COLORS["ce"], "kd seed 0": COLORS["kl"], "sinkd seed 0": COLORS["sinkhorn"]}
    assert [t.name for t in panel_of(fig, "cross-entropy (CE)")[1]] == [
        "ce seed 0", "kd seed 0", "sinkd seed 0"]
    assert [t.name for t in panel_of(fig, "KD term")[1]] == ["kd seed 0", "sinkd seed 0"]
    assert [t.name for t in panel_of(fig, "Sinkhorn term (SinKD)")[1]] == ["sinkd seed 0"]
    for trace, name in zip(panel_of(fig, "dev accuracy (%)")[1], names, strict=True):
        evals = [m for m in raw(name)["metrics"] if m.get("dev_accuracy") is not None]
        assert list(trace.x) == [50, 100, 150, 200, 250, 300] == [m["step"] for m in evals]
        assert list(trace.y) == pytest.approx([100 * m["dev_accuracy"] for m in evals],
                                              rel=1e-12)
    hover = {t.name: t.hovertemplate for t in fig.data}
    assert "α=0.9" in hover["kd seed 0"] and "β=0.8" in hover["sinkd seed 0"]
    assert "α" not in hover["ce seed 0"] and "lr=0.0002" in hover["ce seed 0"]


def test_comparison_labels_are_short_and_name_only_settings_the_recipe_reads():
    """Experiments differing in alpha: the bars' labels are the recipe plus alpha on a second
    line for KD and SinKD; the two CE experiments (CE ignores alpha) are "ce" and "ce #2";
    labels are unique and horizontal; each bar is 100 x the mean test accuracy over seeds,
    computed here from the JSON files."""
    recs = [record(f"{r}-seed{s}") for r in ("ce", "kd", "sinkd") for s in range(3)]
    other = [dataclasses.replace(r, config={**r.config, "alpha": 0.5}) for r in recs]
    fig = distill_figures.compare_figure(compare(recs + other), "test", PARTS)
    bar = fig.data[0]
    assert list(bar.x) == ["teacher", "ce", "kd<br>α=0.9", "sinkd<br>α=0.9", "ce #2",
                           "kd<br>α=0.5", "sinkd<br>α=0.5"]
    assert fig.layout.xaxis.tickangle == 0
    means = [100 * np.mean([raw(f"{r}-seed{s}")["results"]["test"] for s in range(3)])
             for r in ("ce", "kd", "sinkd")]
    assert list(bar.y)[1:4] == pytest.approx(means, rel=1e-12)
    assert list(bar.y)[4:] == pytest.approx(means, rel=1e-12)
    assert "3 seed(s)" in bar.customdata[1] and "α" not in bar.customdata[1]
    assert "α=0.5" in bar.customdata[5]


def test_comparison_table_has_readable_headers_and_no_none():
    """The displayed table: headers in words (no raw column names), accuracies as
    "mean ± std" in % computed here with numpy from the JSON files, and "—" (never None or
    nan) for the teacher's missing std and an all-stopped experiment's accuracies."""
    names = [f"{r}-seed{s}" for r in ("ce", "sinkd") for s in range(3)]
    stopped = RunRecord(config={**raw("ce-seed0")["config"], "lr": 1e-4}, stopped=True)
    table = distill_tables.comparison_table(compare([record(n) for n in names] + [stopped]),
                                            PARTS)
    assert all("_" not in c for c in table.columns)
    assert list(table.columns[:5]) == ["Recipe", "Steps", "Seeds", "Stopped", "Test acc. (%)"]
    cells = [str(v) for v in table.to_numpy().ravel()]
    assert not any(v in ("None", "nan", "NaN") for v in cells)
    for row, recipe in ((1, "ce"), (2, "sinkd")):
        tests = [raw(f"{recipe}-seed{s}")["results"]["test"] for s in range(3)]
        assert table["Test acc. (%)"][row] == (f"{100 * np.mean(tests):.1f} ± "
                                               f"{100 * np.std(tests, ddof=1):.1f}")
    assert table["Test acc. (%)"][0] == f"{100 * raw('ce-seed0')['teacher']['test_accuracy']:.1f}"
    assert table["Test acc. (%)"][3] == "—" and table["Stopped"][3] == 1
    assert list(table["Settings"]) == ["—", "lr=0.0002", "lr=0.0002", "lr=0.0001"]


def test_saved_runs_table_is_readable_and_choices_are_unique(tmp_path):
    """The list of saved runs reads "—" where a stopped run has no accuracy, each run's status
    in words (stopped, finished), accuracies in %; two runs with one label get distinct
    choices, newest first."""
    ce = record("ce-seed0")
    paths = [(tmp_path / "a.json", ce), (tmp_path / "b.json", RunRecord(
        config=dict(ce.config), stopped=True, started="2026-01-01T00:00:00+00:00"))]
    shown = distill_tables.runs_display(distill_jobs.runs_table(paths))
    assert "None" not in {str(v) for v in shown.to_numpy().ravel()}
    assert shown["Status"].tolist() == ["stopped", "finished"]
    assert shown["Test acc. (%)"].tolist() == ["—", f"{100 * ce.results['test']:.1f}"]
    assert shown["Ended"][0] == "—"
    choices = distill_tables.run_choices(paths)
    assert choices == {"ce seed 0 (stopped)": 1, "ce seed 0": 0}
    twice = distill_tables.run_choices([paths[0], paths[0]])
    assert list(twice.values()) == [1, 0] and len(set(twice)) == 2


def test_runs_figure_of_no_run_or_no_rows_is_empty():
    """Nothing selected (or a run stopped before its first step) draws no trace, no error."""
    assert not distill_figures.runs_figure([]).data
    assert not distill_figures.runs_figure([Curves("ce seed 0", [], "ce")]).data
