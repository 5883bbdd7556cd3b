"""The comparison of run records (sinkd.distill.comparison): means and stds over seeds against
numpy, grouping by settings, the teacher rows, the text and Markdown tables, the CLI."""

import math

import numpy as np
import pandas as pd
import pytest

from sinkd.cli import main
from sinkd.distill.comparison import compare, format_compare
from sinkd.distill.config import DistillConfig
from sinkd.distill.records import RunRecord, save_record


def _record(recipe: str, seed: int, test: float | None, best: float | None = None,
            final: float | None = None, steps: int = 100, stopped: bool = False) -> RunRecord:
    """A hand-made record with the given results."""
    return RunRecord(config={"recipe": recipe, "seed": seed, "steps": steps},
                     results={"test": test, "best_dev": best, "final_dev": final},
                     stopped=stopped)


def test_compare_means_and_stds_match_numpy():
    """compare's means and stds (ddof=1) equal numpy's over seeds; one seed gives NaN std."""
    a_test, a_best, a_final = [0.81, 0.78, 0.84], [0.82, 0.80, 0.85], [0.80, 0.79, 0.83]
    records = [_record("sinkd", s, t, b, f) for s, (t, b, f) in
               enumerate(zip(a_test, a_best, a_final, strict=True))]
    records += [_record("ce", 0, 0.7, 0.72, 0.71), _record("ce", 1, None, stopped=True)]
    df = compare(records)
    assert list(df["recipe"]) == ["sinkd", "ce"]
    row = df.iloc[0]
    for key, values in (("test", a_test), ("best_dev", a_best), ("final_dev", a_final)):
        assert row[f"{key}_mean"] == pytest.approx(np.mean(values), abs=1e-15)
        assert row[f"{key}_std"] == pytest.approx(np.std(values, ddof=1), abs=1e-15)
    assert (row["seeds"], row["stopped"], row["steps"]) == (3, 0, 100)
    ce = df.iloc[1]
    assert (ce["seeds"], ce["stopped"], ce["test_mean"]) == (1, 1, 0.7)
    assert math.isnan(ce["test_std"])


def test_compare_keeps_step_budgets_apart_and_rejects_empty():
    """Runs of one recipe with different step counts are separate rows; [] is refused."""
    df = compare([_record("kd", 0, 0.5, steps=10), _record("kd", 0, 0.6, steps=20)])
    assert list(df["steps"]) == [10, 20] and list(df["test_mean"]) == [0.5, 0.6]
    with pytest.raises(ValueError, match="records"):
        compare([])


def test_compare_averages_only_runs_with_equal_settings():
    """Seeds are averaged within one setting; runs that differ in lr (or anything but seed, out,
    device, cache_dir) are separate rows, and `settings` names the differing field."""
    runs = []
    for lr, tests in ((5e-5, [0.60, 0.62]), (2e-4, [0.70, 0.74])):
        for seed, test in enumerate(tests):
            r = _record("sinkd", seed, test)
            r.config.update(lr=lr, alpha=0.9, out=f"/runs/{lr}-{seed}.json", device="cpu")
            runs.append(r)
    runs[-1].config["device"] = "cuda"  # where it ran does not make another experiment
    df = compare(runs)
    assert list(df["settings"]) == ["lr=5e-05", "lr=0.0002"]
    assert list(df["seeds"]) == [2, 2]
    assert list(df["test_mean"]) == pytest.approx([np.mean([0.60, 0.62]), np.mean([0.70, 0.74])])
    assert compare(runs[:2])["settings"].tolist() == [""]  # nothing differs: no settings


def test_compare_reads_fields_missing_from_old_records_as_their_defaults():
    """A record written before a config field existed (no teacher_lr) is one experiment with a
    record that states that field's default, and differs from one with another value."""
    old, new, other = _record("kd", 0, 0.5), _record("kd", 1, 0.7), _record("kd", 2, 0.9)
    new.config["teacher_lr"] = DistillConfig().teacher_lr
    other.config["teacher_lr"] = 1e-4
    df = compare([old, new, other])
    assert list(df["seeds"]) == [2, 1] and df["test_mean"][0] == pytest.approx(0.6)
    assert list(df["settings"]) == ["teacher_lr=5e-05", "teacher_lr=0.0001"]


def test_compare_puts_the_teacher_first_once_per_teacher():
    """Records carrying their teacher's accuracies give one 'teacher' row (first) per teacher,
    with those accuracies; teacher=False leaves it out."""
    runs = [_record("ce", s, 0.7 + s / 100, 0.71, 0.7) for s in range(3)]
    for r in runs:
        r.teacher = {"cache": "/c/t1", "steps": 300, "dev_accuracy": 0.8, "test_accuracy": 0.79}
    df = compare(runs)
    assert list(df["recipe"]) == ["teacher", "ce"]
    teacher = df.iloc[0]
    assert (teacher["test_mean"], teacher["best_dev_mean"], teacher["steps"]) == (0.79, 0.8, 300)
    assert math.isnan(teacher["test_std"]) and teacher["seeds"] == 1
    assert list(compare(runs, teacher=False)["recipe"]) == ["ce"]


def test_format_compare_markdown_table():
    """markdown=True gives a GitHub table: header, separator, one line per row, settings last."""
    runs = [_record("kd", 0, 0.5), _record("kd", 0, 0.6)]
    runs[1].config["lr"] = 1e-3
    lines = format_compare(compare(runs), markdown=True).splitlines()
    assert lines[0].startswith("| recipe | steps | seeds |") and lines[0].endswith("| settings |")
    assert set(lines[1]) == {"|", "-"} and lines[1].count("|") == lines[0].count("|")
    assert lines[2].split(" | ")[-1] == "lr=5e-05 |" and "60.0" in lines[3]


def test_format_compare_shows_percent_and_dash_for_nan():
    """format_compare prints accuracies in % with one decimal, NaN as a dash."""
    text = format_compare(compare([_record("ce", 0, 0.5, 0.25, 0.125)]))
    header, line = text.splitlines()
    assert "test %" in header and "best dev %" in header
    assert line.split() == ["ce", "100", "1", "0", "50.0", "—", "25.0", "—", "12.5", "—"]
    assert "nan" not in text.lower()


def test_compare_cli_prints_the_table(tmp_path, capsys):
    """`compare A B` prints one row per recipe; an invalid file exits 2 naming it."""
    save_record(_record("kd", 0, 0.6, 0.61, 0.6), tmp_path / "a.json")
    save_record(_record("sinkd", 0, 0.7, 0.71, 0.7), tmp_path / "b.json")
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["kd", "sinkd"]
    assert lines[2].split()[4] == "70.0"
    (tmp_path / "c.json").write_text("{}")
    assert main(["compare", str(tmp_path / "c.json")]) == 2
    assert "c.json" in capsys.readouterr().err


def test_compare_frame_is_a_dataframe_with_documented_columns():
    """compare returns a pandas DataFrame with the documented columns, in order."""
    df = compare([_record("js", 0, 0.5)])
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["recipe", "steps", "settings", "seeds", "stopped", "crashed",
                                "running", "test_mean", "test_std",
                                "best_dev_mean", "best_dev_std", "final_dev_mean",
                                "final_dev_std", "grad_share_ce", "grad_share_kd",
                                "grad_share_sinkhorn"]
