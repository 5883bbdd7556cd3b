"""Background distillation jobs (sinkd.distill.jobs) and the page's figures
(sinkd.lab.distill_figures).

Runs use a random tiny BERT teacher saved with the packaged tokenizer and a small CSV, as in
test_distill.py, so a whole run takes about a second on the CPU.
"""

import dataclasses
import json
import math
import time

import numpy as np
import pytest

from sinkd.distill import jobs as distill_jobs
from sinkd.distill.config import DistillConfig
from sinkd.distill.records import RunRecord, compare, load_record, save_record
from sinkd.lab import distill_figures
from sinkd.lab.style import COLORS


def base(tiny: dict, tmp_path, **changes) -> DistillConfig:
    """A fast CPU config on the tiny teacher, caching under tmp_path."""
    cfg = DistillConfig(data=tiny["data"], teacher=tiny["teacher"], teacher_steps=2,
                        student_layers=1, steps=4, batch_size=8, eval_every=2, max_length=16,
                        cache_dir=str(tmp_path), device="cpu")
    return dataclasses.replace(cfg, **changes)


def test_make_configs_is_recipes_times_seeds_with_record_paths(tmp_path):
    """make_configs gives recipes x seeds (recipes outer), each saved under runs_dir."""
    cfg = DistillConfig(cache_dir=str(tmp_path))
    configs = distill_jobs.make_configs(cfg, ["ce", "sinkd"], [0, 1])
    assert [(c.recipe, c.seed) for c in configs] == [("ce", 0), ("ce", 1), ("sinkd", 0),
                                                      ("sinkd", 1)]
    assert all(c.out.startswith(str(tmp_path / "runs")) for c in configs)
    assert len({c.out for c in configs}) == 4


@pytest.mark.parametrize("recipes, seeds, word", [([], [0], "recipes"), (["ce"], [], "seeds"),
                                                   (["mse"], [0], "recipe")])
def test_make_configs_rejects_bad_input(tmp_path, recipes, seeds, word):
    """No recipe, no seed or an unknown recipe is a ValueError naming the argument."""
    with pytest.raises(ValueError, match=word):
        distill_jobs.make_configs(DistillConfig(cache_dir=str(tmp_path)), recipes, seeds)


def test_job_runs_queue_to_done_and_records_are_found_again(tiny, tmp_path):
    """A two-run queue finishes in order, streams every step, and its records reload from disk."""
    configs = distill_jobs.make_configs(base(tiny, tmp_path), ["ce", "sinkd"], [0])
    job = distill_jobs.Job(configs).start()
    assert job.wait(120)
    runs = job.snapshot()
    assert [r["status"] for r in runs] == ["done", "done"]
    for run in runs:
        assert [e["step"] for e in run["steps"]] == [1, 2, 3, 4]
        assert all(math.isfinite(e["loss"]) for e in run["steps"])
        assert run["steps"][-1]["dev_accuracy"] == run["record"].results["final_dev"]
    assert runs[0]["steps"][0]["sinkhorn"] is None and runs[1]["steps"][0]["sinkhorn"] > 0
    found = distill_jobs.list_records(distill_jobs.runs_dir(tmp_path))  # a fresh listing
    assert sorted(r.recipe for _, r in found) == ["ce", "sinkd"]
    for path, record in found:
        assert record.results["steps_done"] == 4 and not record.stopped
        assert record.to_dict() == load_record(path).to_dict()
    table = compare([r for _, r in found])
    assert sorted(table["recipe"]) == ["ce", "sinkd", "teacher"]  # one teacher, shared
    assert list(table["seeds"]) == [1, 1, 1]


def test_stop_ends_current_run_with_valid_record_and_skips_queue(tiny, tmp_path):
    """stop() mid-run: that run is stopped with a valid record, the queued one never starts."""
    configs = distill_jobs.make_configs(base(tiny, tmp_path, steps=50, eval_every=50),
                                        ["kd", "ce"], [0])
    job = distill_jobs.Job(configs).start()
    while not job.snapshot()[0]["steps"] and job.alive:
        time.sleep(0.01)
    job.stop()
    assert job.wait(120)
    first, second = job.snapshot()
    assert first["status"] == "stopped" and second["status"] == "stopped"
    assert second["steps"] == [] and second["record"] is None
    record = load_record(first["path"])
    assert record.stopped and 1 <= len(record.metrics) < 50
    assert record.metrics == [{k: v for k, v in e.items() if k not in ("time", "steps")}
                              for e in first["steps"]]


def test_bad_config_fails_with_message_and_queue_goes_on(tiny, tmp_path):
    """A config train() rejects fails with its ValueError message; the next run still runs."""
    bad = base(tiny, tmp_path, steps=0, out=str(tmp_path / "runs" / "bad.json"))
    good = base(tiny, tmp_path, recipe="ce", out=str(tmp_path / "runs" / "good.json"))
    job = distill_jobs.Job([bad, good]).start()
    assert job.wait(120)
    first, second = job.snapshot()
    assert first["status"] == "failed" and "steps must be" in first["error"]
    assert second["status"] == "done"


def test_progress_summary_rate_and_time_left():
    """Rate = (n - 1) / elapsed, time left = remaining steps / rate; latest terms and dev."""
    ev = [{"step": s, "time": 0.25 * s, "loss": 1.0 / s, "ce": 0.5, "kd": None,
           "sinkhorn": None} for s in range(1, 5)] + [
        {"step": 5, "time": 1.25, "loss": 0.2, "ce": 0.4, "kd": None, "sinkhorn": None,
         "dev_accuracy": 0.75}]
    info = distill_jobs.progress_summary(ev, 13)
    assert info["steps_per_s"] == pytest.approx(4 / 1.0)
    assert info["eta_s"] == pytest.approx(8 / 4)
    assert info["latest"] == {"loss": 0.2, "ce": 0.4} and info["dev"] == 0.75
    assert distill_jobs.progress_summary([], 5)["steps_per_s"] is None


def test_list_records_skips_foreign_files(tmp_path):
    """Files that are not run records are skipped; records come back oldest first."""
    (tmp_path / "junk.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    save_record(RunRecord(config={"recipe": "ce", "steps": 3}), tmp_path / "a.json")
    assert [p.name for p, _ in distill_jobs.list_records(tmp_path)] == ["a.json"]


def test_latest_batch_takes_newest_record_with_a_batch(tmp_path):
    """latest_batch returns the newest record's two logit lists, skipping records without one."""
    older = RunRecord(config={"recipe": "kd"}, last_batch={
        "teacher_logits": [[1.0, 0.0]], "student_logits": [[0.0, 1.0]], "plan": [[1.0]]})
    newer = RunRecord(config={"recipe": "ce"})
    batch, path, record = distill_jobs.latest_batch([(tmp_path / "a", older),
                                                     (tmp_path / "b", newer)])
    assert batch == {"teacher_logits": [[1.0, 0.0]], "student_logits": [[0.0, 1.0]]}
    assert record.recipe == "kd"


def test_loss_curves_figure_has_one_line_per_logged_term():
    """The loss figure draws each term the recipe logs, at its steps, in the style colours."""
    ev = [{"step": s, "loss": 2.0 / s, "ce": 1.0 / s, "kd": None, "sinkhorn": 0.1 * s}
          for s in (1, 2, 3)]
    fig = distill_figures.loss_curves_figure(ev)
    names = [t.name for t in fig.data]
    assert names == ["total loss", "cross-entropy", "Sinkhorn term"]
    assert list(fig.data[2].y) == pytest.approx([0.1, 0.2, 0.3])
    assert fig.data[2].line.color == COLORS["sinkhorn"]


def test_compare_figure_bars_are_means_with_std_error_bars():
    """Bars are 100 x the mean accuracy over seeds, error bars 100 x the ddof=1 std."""
    recs = [RunRecord(config={"recipe": r, "steps": 5, "seed": s},
                      results={"test": t, "best_dev": t, "final_dev": t})
            for r, ts in (("ce", [0.5, 0.7]), ("sinkd", [0.8])) for s, t in enumerate(ts)]
    fig = distill_figures.compare_figure(compare(recs), "test")
    bar = fig.data[0]
    assert list(bar.y) == pytest.approx([60.0, 80.0])
    assert list(bar.error_y.array) == pytest.approx([100 * np.std([0.5, 0.7], ddof=1), 0.0])
    assert list(bar.marker.color) == [COLORS["ce"], COLORS["sinkhorn"]]
    with pytest.raises(ValueError, match="metric"):
        distill_figures.compare_figure(compare(recs), "loss")


def test_compare_figure_keeps_experiments_with_other_settings_apart():
    """Two experiments of one recipe that differ in lr get two bars (labels name the setting),
    not one merged category."""
    recs = [RunRecord(config={"recipe": "ce", "steps": 5, "seed": 0, "lr": lr},
                      results={"test": t, "best_dev": t, "final_dev": t})
            for lr, t in ((1e-4, 0.6), (3e-4, 0.7))]
    fig = distill_figures.compare_figure(compare(recs), "test")
    assert list(fig.data[0].x) == ["ce (5 steps, n=1, lr=0.0001)", "ce (5 steps, n=1, lr=0.0003)"]
    assert list(fig.data[0].y) == [60.0, 70.0]
