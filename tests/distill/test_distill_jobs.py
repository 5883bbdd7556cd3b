"""Background distillation jobs (sinkd.distill.jobs) and the page's figures
(sinkd.lab.distill_figures).

Runs use a random tiny BERT teacher saved with the packaged tokenizer and a small CSV, as in
test_distill.py, so a whole run takes about a second on the CPU.
"""

import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

from sinkd.distill import jobs as distill_jobs
from sinkd.distill import sessions
from sinkd.distill.comparison import compare
from sinkd.distill.config import DistillConfig
from sinkd.distill.owners import PENDING_S
from sinkd.distill.records import RunRecord, load_record, save_record
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
    """A two-run queue finishes in order, streams every step, and its records reload from disk;
    the same settings started again write new records beside them (never over them)."""
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
    first = {c.out: Path(c.out).read_bytes() for c in configs}
    again = distill_jobs.make_configs(base(tiny, tmp_path), ["ce", "sinkd"], [0])
    assert [Path(c.out).name for c in again] == [
        Path(c.out).name.replace(".json", "-2.json") for c in configs]
    rerun = distill_jobs.Job(again).start()
    assert rerun.wait(120) and [r["status"] for r in rerun.snapshot()] == ["done", "done"]
    assert {p: Path(p).read_bytes() for p in first} == first
    assert all(load_record(c.out).status == "finished" for c in again)


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
    assert list(fig.data[0].x) == ["ce<br>lr=0.0001", "ce<br>lr=0.0003"]
    assert list(fig.data[0].y) == [60.0, 70.0]


# ----------------------------------------------------------------- the app server's job board
def _long(tiny, tmp_path, recipe: str = "ce"):
    """A run that would take minutes (3000 steps): it runs until stopped."""
    return distill_jobs.make_configs(base(tiny, tmp_path, steps=3000, eval_every=3000),
                                     [recipe], [0])


def _first_step(job) -> None:
    while not job.snapshot()[0]["steps"] and job.alive:
        time.sleep(0.01)


def test_board_bounds_running_jobs_and_only_the_owner_stops_one(tiny, tmp_path):
    """With one slot: the owner's job runs; another owner's start is refused as busy (naming
    the slots), its stop does nothing and the job goes on; the owner cannot start a second job
    while its first runs; once the owner stops it, the other owner may start."""
    board = sessions.JobBoard(max_jobs=1)
    job = board.start("alice", _long(tiny, tmp_path))
    _first_step(job)
    with pytest.raises(sessions.BusyError, match=r"the machine is busy: 1 of its 1 job slot"):
        board.start("bob", _long(tiny, tmp_path, "kd"))
    assert board.stop("bob") is False and board.job("bob") is None
    with pytest.raises(sessions.BusyError, match="this session's job is still running"):
        board.start("alice", _long(tiny, tmp_path, "kd"))
    steps = len(job.snapshot()[0]["steps"])
    time.sleep(0.5)
    assert job.alive and not job.stopping and len(job.snapshot()[0]["steps"]) > steps
    assert board.full and board.running() == 1
    assert board.stop("alice") is True and job.wait(120)
    assert job.snapshot()[0]["status"] == "stopped" and not board.full
    bobs = board.start("bob", [dataclasses.replace(c, steps=2)
                               for c in _long(tiny, tmp_path / "bob")])
    assert bobs.wait(120) and bobs.snapshot()[0]["status"] == "done"


def test_board_lists_every_running_job_without_owner_ids(tiny, tmp_path):
    """jobs(owner) lists the runs of every running job (yours or not) and the owner's own ended
    job, with recipe, seed, status and steps; no row holds an owner's id. A stopped job's row
    reports the steps its record on disk holds."""
    board = sessions.JobBoard(max_jobs=2)
    mine = board.start("secret-alice", _long(tiny, tmp_path / "a"))
    theirs = board.start("secret-bob", _long(tiny, tmp_path / "b", "kd"))
    _first_step(mine)
    _first_step(theirs)
    rows = board.jobs("secret-alice")
    assert [(r["yours"], r["recipe"], r["seed"], r["status"], r["total"]) for r in rows] == [
        (True, "ce", 0, "running", 3000), (False, "kd", 0, "running", 3000)]
    assert all(1 <= r["step"] < 3000 for r in rows)
    assert "secret" not in json.dumps(rows)
    assert board.stop("secret-alice") and mine.wait(120)
    record = load_record(mine.snapshot()[0]["path"])
    assert [r["recipe"] for r in board.jobs("secret-bob")] == ["kd"]  # alice's ended job: gone
    (own, _) = board.jobs("secret-alice")
    assert (own["status"], own["step"]) == ("stopped", len(record.metrics))
    assert board.stop_all(120) and board.running() == 0


def test_board_lets_only_the_owner_resume_its_stopped_runs(tiny, tmp_path):
    """A stopped run's record may be resumed by the owner whose job wrote it: another owner
    gets PermissionError naming the record; the owner's resume continues past the stop."""
    board = sessions.JobBoard()
    job = board.start("alice", _long(tiny, tmp_path))
    _first_step(job)
    board.stop("alice")
    assert job.wait(120)
    path = job.snapshot()[0]["path"]
    done = len(load_record(path).metrics)
    assert board.owns("alice", path) and not board.owns("bob", path)
    configs = distill_jobs.resume_configs([path])
    with pytest.raises(PermissionError, match=r"did not start: \['ce-seed0-"):
        board.start("bob", configs, resume_from=[path])
    resumed = board.start("alice", configs, resume_from=[path])
    while len(resumed.snapshot()[0]["steps"]) < 2 and resumed.alive:
        time.sleep(0.01)
    board.stop("alice")
    assert resumed.wait(120)
    again = load_record(path)
    assert again.resumed_at == [done] and len(again.metrics) > done


def test_board_checks_its_arguments_and_forgets_old_finished_jobs():
    """An empty or non-string owner and max_jobs outside [1, 64] are ValueErrors naming the
    argument; beyond MAX_KEPT owners the oldest finished job is forgotten (records stay)."""
    with pytest.raises(ValueError, match="max_jobs must be an integer in"):
        sessions.JobBoard(max_jobs=0)
    board = sessions.JobBoard()
    for owner in ("", "  ", None, 3):
        with pytest.raises(ValueError, match="owner must be a non-empty string"):
            board.start(owner, [DistillConfig(steps=0)])
    for k in range(sessions.MAX_KEPT + 1):
        assert board.start(f"owner{k}", [DistillConfig(steps=0)]).wait(60)  # fails at once
    assert board.job("owner0") is None and board.job("owner1") is not None
    assert board.job(f"owner{sessions.MAX_KEPT}").snapshot()[0]["status"] == "failed"


def test_uploads_stay_under_their_total_and_saved_runs_keep_their_tables(
        tmp_path, monkeypatch):
    """With room for three ~1,000-byte tables, a fourth removes the least recently used one (a
    table uploaded again counts as used now), never one in ``keep``; by default ``keep`` is
    every table a saved run's record names in the runs folder beside the uploads (a cache's
    runs/ and uploads/); with only kept tables left and
    no room, the upload is refused with a ValueError naming the limit, and nothing is written."""
    monkeypatch.setattr(sessions, "MAX_UPLOADS_TOTAL", 3000)
    folder = tmp_path / "uploads"
    tables = [f"text,label\n{'x' * 980}{i},1\n".encode()[:1000] for i in range(5)]
    paths = []
    for i, data in enumerate(tables[:3]):
        paths.append(sessions.store_upload(data, "t.csv", folder, keep=()))
        os.utime(paths[-1], (1e9 + i, 1e9 + i))  # uploaded in this order
    sessions.store_upload(tables[0], "t.csv", folder, keep=())  # used again: now the newest
    paths.append(sessions.store_upload(tables[3], "t.csv", folder, keep=()))
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        p.name for p in (paths[0], paths[2], paths[3]))  # table 1 went: least recently used
    # a saved run names table 2 (the oldest now): the default keep protects it
    record = RunRecord(config={"recipe": "ce", "steps": 10, "seed": 0, "data": str(paths[2])})
    save_record(record, distill_jobs.runs_dir(tmp_path) / "ce-seed0.json")
    os.utime(paths[2], (1e9, 1e9))
    fifth = sessions.store_upload(tables[4], "t.csv", folder)
    assert paths[2].is_file() and fifth.is_file() and not paths[0].is_file()
    with pytest.raises(ValueError, match=r"space for uploads \(0 MB\) is taken"):
        sessions.store_upload(b"text,label\nnew,1\n", "t.csv", folder,
                              keep=[paths[2], paths[3], fifth])
    assert len(list(folder.iterdir())) == 3


def test_store_upload_names_the_file_by_its_bytes_only(tmp_path):
    """The stored path is <folder>/<first 32 hex of sha256(bytes)><.csv|.tsv>: the upload's
    name gives only the (lower-cased) suffix, so '../' in it leads nowhere; equal bytes reuse
    the file (its content untouched, its time of use renewed); empty data, data over the cap
    and other suffixes are ValueErrors."""
    data = b"text\tlabel\ngood\t1\n"
    path = sessions.store_upload(data, "../../etc/passwd.TSV", tmp_path, keep=())
    assert path == tmp_path / f"{hashlib.sha256(data).hexdigest()[:32]}.tsv"
    assert path.read_bytes() == data and [p.name for p in tmp_path.iterdir()] == [path.name]
    os.utime(path, (1e9, 1e9))
    assert sessions.store_upload(data, "other.tsv", tmp_path, keep=()) == path
    assert path.read_bytes() == data and path.stat().st_mtime > 1e9
    with pytest.raises(ValueError, match=r"name's suffix must be one of \('.csv', '.tsv'\)"):
        sessions.store_upload(data, "passwd", tmp_path)
    with pytest.raises(ValueError, match="non-empty bytes"):
        sessions.store_upload(b"", "a.csv", tmp_path)
    with pytest.raises(ValueError, match="the limit is 20 MB"):
        sessions.store_upload(b"x" * (sessions.MAX_UPLOAD_BYTES + 1), "a.csv", tmp_path)
    assert len(list(tmp_path.iterdir())) == 1


def test_a_browser_is_one_owner_across_its_xsrf_cookies_and_browsers_differ():
    """Cookies made by Streamlit's own XSRF encoder for one token (a new random mask each
    page load) give one owner id, the SHA-256 of the token that Streamlit's decoder reads back;
    another token gives another id; absent or malformed cookies give None (the page then falls
    back to one id per session)."""
    from streamlit.web.server.starlette import starlette_app_utils as xsrf

    token, other = os.urandom(16), os.urandom(16)
    cookies = [xsrf.generate_xsrf_token_string(token, 1_796_527_643) for _ in range(5)]
    assert len(set(cookies)) > 1  # the masks differ: the cookies' text is no id
    owners = {sessions.browser_owner(c) for c in cookies}
    assert owners == {hashlib.sha256(xsrf.decode_xsrf_token_string(cookies[0])[0]).hexdigest()}
    assert sessions.browser_owner(xsrf.generate_xsrf_token_string(other)) not in owners
    for bad in (None, "", 42, "2|zz|00|1", "2|01020304|0a0b|1", "1|" + token.hex(),
                cookies[0].replace("|", ":")):
        assert sessions.browser_owner(bad) is None, bad


def test_a_restarted_board_lets_each_owner_resume_only_its_own_runs(tiny, tmp_path):
    """A board with an owners file (as the app's) starts alice's run and is dropped with its
    process's memory (a server restart). A new board on the same file still knows the record
    is alice's: alice may resume it, bob gets PermissionError; a damaged owners file gives a
    board that knows no one (the command line still resumes)."""
    runs = distill_jobs.runs_dir(tmp_path)
    owners = runs / sessions.OWNERS_FILE
    board = sessions.JobBoard(owners_file=owners)
    job = board.start("alice", _long(tiny, tmp_path))
    _first_step(job)
    board.stop("alice")
    assert job.wait(120)
    path = job.snapshot()[0]["path"]
    restarted = sessions.JobBoard(owners_file=owners)
    assert restarted.owns("alice", path) and not restarted.owns("bob", path)
    assert restarted.job("alice") is None  # the job itself is gone with the old process
    configs = distill_jobs.resume_configs([path])
    with pytest.raises(PermissionError, match="did not start"):
        restarted.start("bob", configs, resume_from=[path])
    resumed = restarted.start("alice", configs, resume_from=[path])
    restarted.stop("alice")
    assert resumed.wait(120) and resumed.snapshot()[0]["status"] == "stopped"
    assert [p.name for p, _ in distill_jobs.list_records(runs)] == [Path(path).name]
    owners.write_text("{not json")
    assert not sessions.JobBoard(owners_file=owners).owns("alice", path)


def test_two_boards_on_one_owners_file_keep_each_others_entries(tiny, tmp_path):
    """Two servers sharing one cache folder (two boards on one owners file, both made before
    either starts a run): alice starts on the first, bob on the second. The file then holds
    both records with their owners (the second writer merges under the file's lock instead
    of writing only its own map), each board sees the other's entry (the file is read again
    when it changed), and a restarted board lets each owner resume only its own run."""
    owners = distill_jobs.runs_dir(tmp_path) / sessions.OWNERS_FILE
    first, second = (sessions.JobBoard(owners_file=owners) for _ in range(2))
    paths = {}
    for board, who in ((first, "alice"), (second, "bob")):
        job = board.start(who, _long(tiny, tmp_path))
        _first_step(job)
        board.stop(who)
        assert job.wait(120)
        paths[who] = job.snapshot()[0]["path"]
    assert paths["alice"] != paths["bob"]
    stored = json.loads(owners.read_text())
    assert {k: v[0] for k, v in stored.items()} == {
        str(Path(path).resolve()): who for who, path in paths.items()}
    assert second.owns("alice", paths["alice"]) and not second.owns("bob", paths["alice"])
    assert first.owns("bob", paths["bob"]) and not first.owns("alice", paths["bob"])
    restarted = sessions.JobBoard(owners_file=owners)
    for who, other in (("alice", "bob"), ("bob", "alice")):
        assert restarted.owns(who, paths[who]) and not restarted.owns(other, paths[who])


def test_an_owner_entry_waits_for_its_record_then_goes_when_stale(tiny, tmp_path):
    """At a start the owners file keeps: an entry whose record is not written yet (another
    server's queued run) while younger than PENDING_S, and any entry whose record exists (an
    old bare-owner entry too); it drops an entry whose record is missing and older than
    PENDING_S."""
    runs = distill_jobs.runs_dir(tmp_path)
    runs.mkdir(parents=True)
    owners = runs / sessions.OWNERS_FILE
    saved = runs / "ce-seed0-saved.json"
    saved.write_text("{}")
    now = time.time()
    entries = {"pending": [str(runs / "queued.json"), ["carol", now - 60]],
               "stale": [str(runs / "gone.json"), ["dave", now - PENDING_S - 60]],
               "saved": [str(saved), "erin"]}
    owners.write_text(json.dumps(dict(entries.values())))
    board = sessions.JobBoard(owners_file=owners)
    assert board.owns("carol", runs / "queued.json") and board.owns("erin", saved)
    job = board.start("alice", _long(tiny, tmp_path))
    board.stop("alice")
    assert job.wait(120)
    kept = json.loads(owners.read_text())
    assert str(runs / "gone.json") not in kept
    assert kept[str(runs / "queued.json")][0] == "carol" and kept[str(saved)][0] == "erin"
    assert kept[job.snapshot()[0]["path"]][0] == "alice"


def test_a_transfer_code_moves_a_browsers_runs_to_another_browser(tiny, tmp_path):
    """A browser's transfer code is XXXX-XXXX over the code alphabet, differs between owners and
    is the same on a restarted board (its key is kept beside the owners file, readable by its
    user only). Claiming with it (any case, dashes as spaces) moves alice's saved run to bob:
    bob owns it, alice no longer, a restarted board agrees; a well-formed wrong code moves
    nothing, a malformed one is a ValueError naming ``code``. A running job moves too: after
    dave claims carol's code, dave can stop it and carol cannot."""
    owners = distill_jobs.runs_dir(tmp_path) / sessions.OWNERS_FILE
    board = sessions.JobBoard(owners_file=owners, max_jobs=2)
    job = board.start("alice", _long(tiny, tmp_path))
    _first_step(job)
    board.stop("alice")
    assert job.wait(120)
    path = job.snapshot()[0]["path"]
    code = board.transfer_code("alice")
    letters = code.replace("-", "")
    assert code[4] == "-" and len(code) == 9 and set(letters) <= set(sessions.CODE_ALPHABET)
    assert code != board.transfer_code("bob")
    assert sessions.JobBoard(owners_file=owners).transfer_code("alice") == code
    assert os.stat(f"{owners}.key").st_mode & 0o777 == 0o600
    wrong = "".join(sessions.CODE_ALPHABET[(sessions.CODE_ALPHABET.index(c) + 1)
                                           % len(sessions.CODE_ALPHABET)] for c in letters)
    assert board.claim("bob", wrong) == 0 and board.owns("alice", path)
    for bad in ("abc", "ABCD-EFG0", 12345678):
        with pytest.raises(ValueError, match="code"):
            board.claim("bob", bad)
    assert board.claim("bob", code.lower().replace("-", " ")) == 1
    assert board.owns("bob", path) and not board.owns("alice", path)
    restarted = sessions.JobBoard(owners_file=owners)
    assert restarted.owns("bob", path) and not restarted.owns("alice", path)

    running = board.start("carol", _long(tiny, tmp_path, "sinkd"))
    _first_step(running)
    assert board.claim("dave", board.transfer_code("carol")) == 1
    assert board.job("dave") is running and not board.stop("carol")
    assert board.stop("dave") and running.wait(120)
