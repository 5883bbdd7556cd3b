"""AppTest: the Distill a BERT page renders, clamps or reports bad settings, lists saved runs."""

import json
import re
import time
from pathlib import Path

import pytest
from app_pages import open_page
from streamlit.testing.v1 import AppTest

from sinkd.distill import RECIPES
from sinkd.distill import jobs as distill_jobs
from sinkd.distill.glue import GLUE_TASKS
from sinkd.distill.records import RunRecord, compare, save_record
from sinkd.lab import distill_spec

K = "distill_"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Every test gets an empty sinkd cache of its own (no runs, no teacher)."""
    monkeypatch.setenv("SINKD_CACHE", str(tmp_path))
    return tmp_path


def _page(query: dict | None = None) -> AppTest:
    at = open_page("distill", query=query, timeout=120)
    assert not at.exception, [e.value for e in at.exception]
    return at


def _text(at: AppTest) -> str:
    return "\n".join(m.value for m in [*at.markdown, *at.info, *at.caption])


def test_page_renders_by_default_without_running_anything(cache):
    """Default view: classroom preset (CE and SinKD, 1 seed), device and cache shown, no runs."""
    at = _page()
    assert at.title[0].value == "Distill a BERT"
    assert at.session_state[K + "use_ce"] and at.session_state[K + "use_sinkd"]
    assert not at.session_state[K + "use_kd"]
    text = _text(at)
    assert "**2 run(s)**" in text and "on device **cpu**" in text
    assert str(cache / "teachers") in text and "not cached yet" in text
    assert "measured on an idle 2-core CPU" in text
    assert f"No saved runs yet in `{cache / 'runs'}`" in text
    assert not at.button(key=K + "start").disabled


def test_bad_values_in_the_link_are_clamped_or_replaced(cache):
    """steps=0 and alpha=5 in a link are clamped to their ranges; lr=abc falls back to default."""
    at = _page({"steps": "0", "alpha": "5", "lr": "abc"})
    assert at.session_state[K + "steps"] == 1
    assert at.session_state[K + "alpha"] == 1.0
    assert at.session_state[K + "lr"] == 3e-4  # the page's default
    assert any("lr" in w.value for w in at.warning)


def test_every_recipe_and_data_set_is_offered(cache):
    """The page offers a checkbox per recipe of sinkd.distill and every data source; each preset
    is valid for them (the spec checks its values) and sets the recipes it names."""
    spec = distill_spec.spec(RECIPES, GLUE_TASKS)
    at = _page()
    assert {c.key for c in at.checkbox} >= {K + f"use_{r}" for r in RECIPES}
    assert at.selectbox(key=K + "data_source").options == [
        "rotten_tomatoes", *GLUE_TASKS, "file"]
    for name, preset in spec.presets.items():
        at.selectbox(key=K + "preset").set_value(name).run()
        assert not at.exception
        ticked = [r for r in RECIPES if at.session_state[K + f"use_{r}"]]
        assert ticked == [r for r in RECIPES if preset.values[f"use_{r}"]]
        assert f"**{len(ticked) * at.session_state[K + 'n_seeds']} run(s)**" in _text(at)


def test_no_recipe_chosen_is_an_error_not_a_traceback(cache):
    """Unticking every recipe shows st.error naming recipes; the state is kept."""
    at = _page()
    at.checkbox(key=K + "use_ce").uncheck().run()
    at.checkbox(key=K + "use_sinkd").uncheck().run()
    assert not at.exception
    assert any("recipes must name at least one recipe" in e.value for e in at.error)
    assert not at.session_state[K + "use_ce"]


def test_saved_records_fill_the_comparison_and_the_transport_link(cache):
    """Records on disk appear in the comparison table (compare's numbers) and feed the batch."""
    runs = distill_jobs.runs_dir(cache)
    records = []
    for recipe, seed, test in (("ce", 0, 0.6), ("ce", 1, 0.7), ("sinkd", 0, 0.8)):
        rec = RunRecord(config={"recipe": recipe, "steps": 10, "seed": seed},
                        results={"test": test, "best_dev": test, "final_dev": test,
                                 "steps_done": 10})
        if recipe == "sinkd":
            rec.last_batch = {"teacher_logits": [[1.0, 0.0], [0.0, 1.0]],
                              "student_logits": [[0.5, 0.5], [0.2, 0.8]]}
        save_record(rec, runs / f"{recipe}-seed{seed}.json")
        records.append(rec)
    at = _page()
    shown = next(f.value for f in at.dataframe if "test_mean" in f.value.columns)
    expected = compare(records)
    assert list(shown["recipe"]) == ["ce", "sinkd"] and list(shown["seeds"]) == [2, 1]
    assert list(shown["test_mean"]) == pytest.approx(list(expected["test_mean"]))
    assert shown["test_std"][0] == pytest.approx(0.0707106781, rel=1e-6)  # std([.6, .7], ddof=1)
    assert len(at.get("plotly_chart")) == 1
    assert at.session_state["latest_batch"] == {"teacher_logits": [[1.0, 0.0], [0.0, 1.0]],
                                                "student_logits": [[0.5, 0.5], [0.2, 0.8]]}
    links = at.get("page_link")
    assert any("transport plan" in link.proto.label for link in links)


def test_saved_gradient_shares_are_drawn_per_run_and_term(cache):
    """A record whose evaluation rows carry gradient shares gets a shares chart: one trace per
    term, its points the record's shares in percent at the record's steps."""
    rows = [{"step": 5, "loss": 1.0, "grad_share_ce": 0.1, "grad_share_kd": 0.6,
             "grad_share_sinkhorn": 0.3},
            {"step": 10, "loss": 0.5, "grad_share_ce": 0.2, "grad_share_kd": 0.7,
             "grad_share_sinkhorn": 0.1}]
    rec = RunRecord(config={"recipe": "sinkd", "steps": 10, "seed": 0}, metrics=rows,
                    results={"test": 0.8, "best_dev": 0.8, "final_dev": 0.8, "steps_done": 10})
    save_record(rec, distill_jobs.runs_dir(cache) / "sinkd-seed0.json")
    at = _page()
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # the comparison and the shares
    traces = json.loads(charts[1].proto.spec)["data"]
    names = ("cross-entropy", "KD term", "Sinkhorn term")
    assert [t["name"] for t in traces] == [f"sinkd seed 0: {name}" for name in names]
    for trace, part in zip(traces, ("ce", "kd", "sinkhorn"), strict=True):
        assert trace["x"] == [5, 10]
        assert trace["y"] == pytest.approx([100 * r[f"grad_share_{part}"] for r in rows])


def _queue(at: AppTest) -> list[dict]:
    """The rows of the job's queue table (the dataframe with a status column), or []."""
    for frame in at.dataframe:
        if "status" in frame.value.columns:
            return frame.value.to_dict("records")
    return []


def _rerun_until(at: AppTest, condition) -> None:
    """Rerun the page every 0.5 s (AppTest does not tick run_every) until ``condition(at)``,
    for at most 2 minutes; the caller asserts what it waited for."""
    for _ in range(240):
        if condition(at):
            return
        time.sleep(0.5)
        at.run()


def _statuses(at: AppTest) -> list[str]:
    return [r["status"] for r in _queue(at)]


def _steps_shown(at: AppTest) -> list[int]:
    """The step numbers in the progress bars ("step k / n")."""
    return [int(m) for p in at.get("progress") for m in re.findall(r"step (\d+) /", p.proto.text)]


def _tiny_budget(steps: int):
    """The page with one CE run on a tiny budget: 100 snippets, batch 4, length 8, no fine-tune."""
    at = _page()
    at.checkbox(key=K + "use_sinkd").uncheck().run()
    for name, value in (("teacher_steps", 0), ("train_limit", 100), ("eval_limit", 50),
                        ("steps", steps), ("batch_size", 4)):
        at.number_input(key=K + name).set_value(value).run()
    at.slider(key=K + "max_length").set_value(8).run()
    return at


def test_start_trains_in_the_background_and_lists_the_record(cache):
    """Start with a tiny budget: the worker finishes, the run shows done, its record is listed."""
    at = _tiny_budget(steps=2)
    assert not at.exception and "**1 run(s)**" in _text(at)
    at.button(key=K + "start").click().run()
    assert not at.exception
    _rerun_until(at, lambda at: _statuses(at) == ["done"])
    assert [(r["recipe"], r["status"]) for r in _queue(at)] == [("ce", "done")]
    records = distill_jobs.list_records(distill_jobs.runs_dir(cache))
    assert [r.recipe for _, r in records] == ["ce"]
    assert records[0][1].results["steps_done"] == 2
    at.run()  # the next full run lists the new record in the comparison
    assert not at.exception
    table = next(f.value for f in at.dataframe if "test_mean" in f.value.columns)
    assert list(table["recipe"]) == ["teacher", "ce"]  # the teacher on the same test set first
    assert table["test_mean"][0] == records[0][1].teacher["test_accuracy"]
    assert table["test_mean"][1] == records[0][1].results["test"]
    assert len(at.session_state["latest_batch"]["teacher_logits"]) == 4  # the batch size


def test_stop_button_stops_the_run_and_keeps_its_record(cache):
    """Stop during a long run: it ends stopped, its record is saved and marked stopped."""
    at = _tiny_budget(steps=3000)
    at.button(key=K + "start").click().run()
    # wait for the first steps, then press Stop
    _rerun_until(at, lambda at: _steps_shown(at) and any(b.key == K + "stop" for b in at.button))
    at.button(key=K + "stop").click().run()
    _rerun_until(at, lambda at: _statuses(at) == ["stopped"])
    assert not at.exception
    assert [r["status"] for r in _queue(at)] == ["stopped"]
    (path, record), = distill_jobs.list_records(distill_jobs.runs_dir(cache))
    assert record.stopped and 1 <= len(record.metrics) < 3000
    # Resume: the same run continues from its last step (then is stopped again)
    at.run()
    assert at.button(key=K + "resume").label == "Resume 1 stopped run(s)"
    at.button(key=K + "resume").click().run()
    done = len(record.metrics)
    # wait until the resumed run is past its old last step, then stop it again
    _rerun_until(at, lambda at: _statuses(at) == ["running"] and _steps_shown(at)
                 and _steps_shown(at)[0] > done)
    at.button(key=K + "stop").click().run()
    _rerun_until(at, lambda at: _statuses(at) == ["stopped"])
    (same, again), = distill_jobs.list_records(distill_jobs.runs_dir(cache))
    assert same == path and again.resumed_at == [done] and len(again.metrics) > done
    assert [m["step"] for m in again.metrics] == list(range(1, len(again.metrics) + 1))


def test_data_set_and_teacher_choices(cache, tiny):
    """A CSV file and a teacher folder are used by the runs; an empty path or an unreachable
    GLUE task is an st.error naming the problem, never a traceback."""
    at = _page()
    at.selectbox(key=K + "data_source").set_value("file").run()
    assert any("data_file must be the path" in e.value for e in at.error)
    at.text_input(key=K + "data_file").input(tiny["data"]).run()
    at.text_input(key=K + "teacher").input(tiny["teacher"]).run()
    assert not at.exception and not at.error
    assert "**2 run(s)**" in _text(at) and "not cached yet" in _text(at)
    at.selectbox(key=K + "data_source").set_value("sst2").run()
    assert not at.exception
    assert any("GLUE needs the `datasets` package" in e.value for e in at.error)
    assert at.session_state[K + "teacher"] == tiny["teacher"]
