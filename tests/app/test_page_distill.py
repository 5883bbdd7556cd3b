"""AppTest: the Distill a BERT page renders, clamps or reports bad settings, lists saved runs;
no link or widget names a server path (tables are uploaded); a job belongs to its session."""

import dataclasses
import hashlib
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from app_pages import open_page
from streamlit.testing.v1 import AppTest

from sinkd.distill import RECIPES, sessions
from sinkd.distill import data as distill_data
from sinkd.distill import eta as distill_eta
from sinkd.distill import jobs as distill_jobs
from sinkd.distill.comparison import compare
from sinkd.distill.config import DistillConfig
from sinkd.distill.glue import GLUE_TASKS
from sinkd.distill.records import RunRecord, save_record
from sinkd.lab import distill_spec, distill_tables
from sinkd.lab.spec import Range

K = "distill_"


OWNER = "sinkd_owner"  # the page's session-state key of its session's id on the job board
UPLOADER = "sinkd_upload_file"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Every test gets an empty sinkd cache of its own (no runs, no teacher), and leaves no job
    running on the process's board (the next test's Start would find the machine busy)."""
    monkeypatch.setenv("SINKD_CACHE", str(tmp_path))
    yield tmp_path
    assert sessions.shared_board().stop_all(120)


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
    assert distill_spec.CLASSROOM_TIME in text  # the measurement of sinkd/data
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
    shown = next(f.value for f in at.dataframe if "Seeds" in f.value.columns)
    assert list(shown["Recipe"]) == ["ce", "sinkd"] and list(shown["Seeds"]) == [2, 1]
    # mean and std([.6, .7], ddof=1) = 0.0707 in %
    assert list(shown["Test acc. (%)"]) == ["65.0 ± 7.1", "80.0"]
    assert list(compare(records)["seeds"]) == [2, 1]  # the download keeps compare's columns
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
    charts = {c.key: c for c in at.get("plotly_chart")}
    assert set(charts) == {"distill_compare", "distill_saved_curves", "distill_grad_shares"}
    traces = json.loads(charts["distill_grad_shares"].proto.spec)["data"]
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
    table = next(f.value for f in at.dataframe if "Seeds" in f.value.columns)
    assert list(table["Recipe"]) == ["teacher", "ce"]  # the teacher on the same test set first
    assert table["Test acc. (%)"][0] == f"{100 * records[0][1].teacher['test_accuracy']:.1f}"
    assert table["Test acc. (%)"][1] == f"{100 * records[0][1].results['test']:.1f}"
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


def _page_text(at: AppTest) -> str:
    """Every element the page drew (its protos as text: labels, values, tables, messages)."""
    out = []

    def walk(node) -> None:
        children = getattr(node, "children", None)
        if children is not None:
            for child in children.values():
                walk(child)
        elif getattr(node, "proto", None) is not None:
            out.append(str(node.proto))

    walk(at._tree)
    return "\n".join(out)


def test_no_link_can_name_a_server_file(cache):
    """The link /distill?data_source=file&data_file=/etc/passwd (the old way to read any file)
    shows nothing of that file: no element of the page holds its first line, data_file is no
    value of the page nor of the URL it writes back, and no widget takes a path (the only data
    input is the uploader). A teacher naming a folder is not one of the offered teachers: it
    falls back to the default with a warning."""
    first_line = Path("/etc/passwd").read_text().splitlines()[0]
    at = _page({"data_source": "file", "data_file": "/etc/passwd", "teacher": "/etc"})
    assert not at.exception
    assert first_line not in _page_text(at) and "root:" not in _page_text(at)
    assert K + "data_file" not in at.session_state and "data_file" not in at.query_params
    assert at.session_state[K + "data_source"] == "file"
    assert at.session_state[K + "teacher"] == "" and any("teacher" in w.value for w in at.warning)
    assert not at.text_input  # no free text at all: nothing to type a path into
    assert [u.key for u in at.file_uploader] == [UPLOADER]
    assert at.selectbox(key=K + "teacher").options == ["MiniLM-L6 (packaged, offline)",
                                                       "BERT-base-uncased (the paper's; needs "
                                                       "the hub)"]
    assert any("no usable file is uploaded" in e.value for e in at.error)


@pytest.mark.parametrize("query", [
    {"data_file": "x" * 4000, "data_source": "file"},
    {"teacher": "t" * 4000, "preset": "p" * 4000, "data_source": "d" * 4000},
    {"steps": "9" * 4000, "lr": "1" * 4000, "alpha": "-" * 4000, "n_seeds": "1e999"},
    {"unknown": "../../etc/shadow", "steps": "nan", "seed": "%00", "first_seed": "0x10"},
])
def test_hostile_query_strings_never_give_a_traceback(cache, query):
    """4,000-character values, path-like values, unknown keys and bad numbers in a link: the
    page renders without an exception, every value stays within its limits, and the URL the
    page writes back holds only the page's own keys."""
    at = _page(query)
    assert not at.exception
    spec = distill_spec.spec(RECIPES, GLUE_TASKS)
    for name, default in spec.defaults.items():
        value = at.session_state[K + name]
        assert type(value) is type(default), name
        limit = spec.limits.get(name)
        if isinstance(limit, Range):
            assert limit.low <= value <= limit.high, name
        elif limit is not None:
            assert value in limit, name
    assert set(at.query_params) <= {*spec.defaults, "preset"}
    assert at.session_state[K + "steps"] in (150, 3000)  # the default, or "9"*4000 clamped


def _reviews(n: int = 30) -> bytes:
    rows = "".join(f"a great film {i},1\na dull film {i},0\n" for i in range(n))
    return ("text,label\n" + rows).encode()


def test_an_uploaded_table_is_stored_by_hash_parsed_once_and_trained_on(cache, monkeypatch):
    """An uploaded CSV is copied to <cache>/uploads/<sha256 of its bytes>.csv, whatever its
    name; the runs' data is that copy. It is parsed once per upload, not per rerun (two
    parses: the check and the teacher's location; an unrelated change parses nothing, a
    change of the training subset once more), and a second session uploading the same bytes
    reuses both. A broken table or one over the cap is an st.error naming the file, never a
    traceback."""
    calls = []
    real = distill_data.load_table

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(distill_data, "load_table", counted)
    data = _reviews()
    at = _page({"data_source": "file"})
    at.file_uploader(key=UPLOADER).set_value(("../../my reviews.csv", data, "text/csv")).run()
    assert not at.exception and not at.error
    stored = cache / "uploads" / f"{hashlib.sha256(data).hexdigest()[:32]}.csv"
    assert [p.name for p in (cache / "uploads").iterdir()] == [stored.name]
    assert stored.read_bytes() == data
    assert "../../my reviews.csv: 60 rows, labels ['0', '1']." in _text(at)
    assert "**2 run(s)**" in _text(at)
    assert len(calls) == 2
    for _ in range(3):
        at.run()
    at.slider(key=K + "alpha").set_value(0.5).run()
    assert len(calls) == 2 and not at.exception
    at.number_input(key=K + "train_limit").set_value(100).run()
    assert len(calls) == 3
    other = _page({"data_source": "file"})
    other.number_input(key=K + "train_limit").set_value(100).run()
    other.file_uploader(key=UPLOADER).set_value(("copy.csv", data, "text/csv")).run()
    assert len(calls) == 3 and not other.error
    # the configs the page starts point to the stored copy
    at.checkbox(key=K + "use_sinkd").uncheck().run()
    at.button(key=K + "start").click().run()
    job = sessions.shared_board().job(at.session_state[OWNER])
    assert [r.config.data for r in job.runs] == [str(stored)]
    job.stop()
    # broken tables: one error naming the uploaded file and the problem
    at.file_uploader(key=UPLOADER).set_value(("bad.csv", b"a,b\n1,2\n", "text/csv")).run()
    assert not at.exception
    assert any("Cannot use bad.csv: missing columns ['text', 'label']" in e.value
               for e in at.error)
    big = b"text,label\n" + b"x" * sessions.MAX_UPLOAD_BYTES
    at.file_uploader(key=UPLOADER).set_value(("big.csv", big, "text/csv")).run()
    assert not at.exception
    assert any("big.csv is 20.0 MB: the limit is 20 MB" in e.value for e in at.error)
    assert len(list((cache / "uploads").iterdir())) == 2  # the big one was never stored


def test_glue_without_the_hub_is_an_error(cache):
    """A GLUE task where the hub is out of reach is an st.error naming the problem; the other
    values are kept."""
    at = _page()
    at.selectbox(key=K + "teacher").set_value("bert-base-uncased").run()
    at.selectbox(key=K + "data_source").set_value("sst2").run()
    assert not at.exception
    assert any("GLUE needs the `datasets` package" in e.value for e in at.error)
    assert at.session_state[K + "teacher"] == "bert-base-uncased"


def _machine(at: AppTest) -> list[dict]:
    """The rows of the table of other sessions' runs (the dataframe with a progress column)."""
    for frame in at.dataframe:
        if "progress" in frame.value.columns:
            return frame.value.to_dict("records")
    return []


def test_a_job_belongs_to_the_session_that_started_it(cache):
    """Session A starts a long run. Session B sees it (recipe, seed, status, progress) with no
    Stop button, a disabled Start and the busy message; the board refuses B's stop and start,
    and A's run goes on. A stops it; then B may start, and only A is offered its resume."""
    first = _tiny_budget(steps=3000)
    first.button(key=K + "start").click().run()
    _rerun_until(first, lambda at: _steps_shown(at) and any(b.key == K + "stop"
                                                            for b in at.button))
    assert _machine(first) == []  # its own job is not listed among the others'
    second = _page()
    (row,) = _machine(second)
    assert (row["recipe"], row["seed"], row["status"]) == ("ce", 0, "running")
    step, total = map(int, row["progress"].split(" / "))
    assert total == 3000 and 1 <= step < 3000
    assert not any(b.key == K + "stop" for b in second.button)
    assert second.button(key=K + "start").disabled
    assert any("The machine is busy: 1 of its 1 job slot(s) are in use by other visitors"
               in w.value for w in second.warning)
    board, owner = sessions.shared_board(), second.session_state[OWNER]
    assert owner != first.session_state[OWNER]
    assert not board.stop(owner)
    with pytest.raises(sessions.BusyError, match="the machine is busy"):
        board.start(owner, [DistillConfig(steps=1)])
    job = board.job(first.session_state[OWNER])
    assert job.alive and not job.stopping
    first.button(key=K + "stop").click().run()
    _rerun_until(first, lambda at: _statuses(at) == ["stopped"])
    assert job.wait(60)
    first.run()
    assert first.button(key=K + "resume").label == "Resume 1 stopped run(s)"
    second.run()
    assert not second.button(key=K + "start").disabled and not second.warning
    assert not any(b.key == K + "resume" for b in second.button)
    with pytest.raises(PermissionError, match="did not start"):
        board.start(owner, distill_jobs.resume_configs([job.runs[0].config.out]),
                    resume_from=[job.runs[0].config.out])


def test_start_on_a_machine_that_just_got_busy_says_so(cache, tiny):
    """The page was drawn while the machine was free; another owner's real job then takes the
    only slot; pressing Start shows the busy error (no traceback) and starts nothing."""
    at = _page()
    assert not at.button(key=K + "start").disabled
    config = DistillConfig(data=tiny["data"], teacher=tiny["teacher"], teacher_steps=0,
                           student_layers=1, steps=3000, batch_size=4, max_length=8,
                           cache_dir=str(cache), device="cpu")
    board = sessions.shared_board()
    other = board.start("another session", [dataclasses.replace(config, recipe="ce")])
    at.button(key=K + "start").click().run()
    assert not at.exception
    assert any("Not started: the machine is busy" in e.value for e in at.error)
    assert board.job(at.session_state[OWNER]) is None and other.alive


RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results" / "rotten-tomatoes"


def _copy_results(cache: Path, names: list[str]) -> None:
    """Saved real records (docs/results) copied into this test's runs folder, oldest first."""
    runs = distill_jobs.runs_dir(cache)
    runs.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        target = runs / f"{name}.json"
        target.write_text((RESULTS / f"{name}.json").read_text())
        os.utime(target, (1e9 + i, 1e9 + i))  # listing order: by modification time


def _chart(at: AppTest, key: str) -> dict:
    """The plotly spec of the chart with this key."""
    return json.loads(next(c for c in at.get("plotly_chart") if c.key == key).proto.spec)


def test_finished_runs_keep_their_curves_and_are_selectable(cache):
    """Saved runs' loss curves are drawn from their records: by default the two newest runs;
    choosing one run redraws only its curves, each term's points equal to its record's."""
    _copy_results(cache, ["ce-seed0", "kd-seed0", "sinkd-seed0"])
    at = _page()
    pick = at.multiselect(key="sinkd_curves_pick")
    assert pick.options == ["sinkd seed 0", "kd seed 0", "ce seed 0"]
    assert pick.value == ["sinkd seed 0", "kd seed 0"]
    traces = _chart(at, "distill_saved_curves")["data"]
    assert {t["name"] for t in traces} == {"sinkd seed 0", "kd seed 0"}
    pick.set_value(["ce seed 0"]).run()
    assert not at.exception
    traces = _chart(at, "distill_saved_curves")["data"]
    record = json.loads((RESULTS / "ce-seed0.json").read_text())
    assert {t["name"] for t in traces} == {"ce seed 0"}
    total = next(t for t in traces if t["yaxis"] == "y")
    assert total["y"] == pytest.approx([m["loss"] for m in record["metrics"]], rel=1e-12)
    pick.set_value([]).run()
    assert not at.exception and any("No step to draw" in c.value for c in at.caption)


def test_results_table_reads_in_words_without_none(cache):
    """The comparison and the list of saved runs show headers in words and "—" where a value
    is missing (a stopped run's accuracies, one seed's std), never None or a raw column name;
    the test accuracy reads mean ± std in % of the records' own numbers."""
    _copy_results(cache, ["ce-seed0", "ce-seed1", "sinkd-seed0"])
    stopped = RunRecord(config={"recipe": "kd", "steps": 300, "seed": 0}, stopped=True)
    save_record(stopped, distill_jobs.runs_dir(cache) / "kd-seed0.json")
    at = _page()
    shown = next(f.value for f in at.dataframe if "Recipe" in f.value.columns
                 and "Seeds" in f.value.columns)
    runs = next(f.value for f in at.dataframe if "File" in f.value.columns)
    for frame in (shown, runs):
        assert not any("_" in c for c in frame.columns)
        assert not {"None", "nan"} & {str(v) for v in frame.to_numpy().ravel()}
    tests = [json.loads((RESULTS / f"ce-seed{s}.json").read_text())["results"]["test"]
             for s in (0, 1)]
    ce = shown[shown["Recipe"] == "ce"].iloc[0]
    assert ce["Test acc. (%)"] == (f"{100 * np.mean(tests):.1f} ± "
                                   f"{100 * np.std(tests, ddof=1):.1f}")
    assert shown[shown["Recipe"] == "sinkd"].iloc[0]["Test acc. (%)"].count("±") == 0
    assert "—" in set(runs["Test acc. (%)"])
    labels = _chart(at, "distill_compare")["data"][0]["x"]
    assert all(len(line) <= 24 for label in labels for line in label.split("<br>"))


def test_classroom_duration_is_stated_from_its_measurement(cache):
    """The classroom preset's duration on the page is the measurement's (sinkd/data), with the
    teacher's share and the cores, and says whether the machine was idle."""
    data = distill_eta.load_timing()
    at = _page()
    text = "\n".join([_text(at), *(c.value for c in at.caption),
                      *(s.value for s in at.success), *(i.value for i in at.info)])
    assert distill_tables.classroom_time_text(data) in text.replace("\n", " ")
    assert f"{data['cores']}-core CPU" in text


def test_a_finished_jobs_runs_keep_their_live_curves(cache):
    """A two-run job (CE then SinKD, 3 steps each): once both are done the progress chart
    still draws both runs, in every panel their terms have, with the values their records
    saved (the Sinkhorn panel: SinKD's run alone)."""
    at = _tiny_budget(steps=3)
    at.checkbox(key=K + "use_sinkd").check().run()
    at.button(key=K + "start").click().run()
    _rerun_until(at, lambda at: _statuses(at) == ["done", "done"])
    assert not at.exception
    at.run()
    spec = _chart(at, "distill_losses")
    titles = [a["text"] for a in spec["layout"]["annotations"]]
    records = {r.recipe: r for _, r in distill_jobs.list_records(distill_jobs.runs_dir(cache))}
    for title, part in (("cross-entropy (CE)", "ce"), ("Sinkhorn term (SinKD)", "sinkhorn")):
        i = titles.index(title)
        axis = "y" if i == 0 else f"y{i + 1}"
        drawn = {t["name"]: t["y"] for t in spec["data"] if t["yaxis"] == axis}
        expected = {f"{r} seed 0": [m[part] for m in records[r].metrics] for r in records
                    if records[r].metrics[0].get(part) is not None}
        assert drawn == expected  # the same floats, through JSON both ways
    assert {t["name"] for t in spec["data"]} == {"ce seed 0", "sinkd seed 0"}


def test_running_job_shows_the_whole_queues_time_left(cache):
    """While a two-run job trains, the page states the time left for the whole queue (both
    runs), from this machine's step times once steps are timed; Stop ends it."""
    at = _tiny_budget(steps=3000)
    at.checkbox(key=K + "use_sinkd").check().run()
    at.button(key=K + "start").click().run()
    _rerun_until(at, lambda at: len(_steps_shown(at)) > 0 and _steps_shown(at)[0] >= 3)
    captions = [c.value for c in at.caption if "whole queue" in c.value]
    assert len(captions) == 1 and "2 run(s) to finish" in captions[0]
    assert "this machine's step times" in captions[0]
    assert any("queue time left" in bar.proto.text for bar in at.get("progress"))
    at.button(key=K + "stop").click().run()
    _rerun_until(at, lambda at: _statuses(at) == ["stopped", "stopped"])
    assert not at.exception
