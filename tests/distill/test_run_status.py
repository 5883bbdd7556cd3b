"""Runs that are never lost (issue 14): run status, crash detection, periodic resume states,
no silent overwrite, `clean`, and one-line CLI errors for bad records and resume states.

Kills are real: a `python -m sinkd distill` process ended by SIGKILL from the test, or a
training process that sends SIGKILL to itself at a chosen step (deterministic).
"""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import torch
from test_distill import _cli_args, tiny_config

from sinkd.cli import main
from sinkd.distill import run_status
from sinkd.distill.checkpoints import (
    can_resume,
    check_new_record,
    checkpoint_path,
    config_of,
    load_checkpoint,
    resumable,
)
from sinkd.distill.comparison import compare, format_compare
from sinkd.distill.records import RunRecord, load_record, save_record
from sinkd.distill.train import train


def _timing_free(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "examples_per_s"} for row in metrics]


def _stop_after(k: int):
    done = []
    return done.append, lambda: len(done) >= k


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: "), err
    assert len(err.strip().splitlines()) == 1, err
    return err


# ----------------------------------------------------------------------------- status
def test_status_of_a_running_record_follows_its_process(tmp_path):
    """A record saying running reads running while its writer lives (this process), crashed
    when the pid is gone or reused by another process, and, from another host, crashed once
    its heartbeat is older than STALE_S."""
    path = tmp_path / "r.json"
    me = run_status.this_process()
    save_record(RunRecord(config={}, status="running", process=me), path)
    assert load_record(path).status == "running"
    save_record(RunRecord(config={}, status="running",
                          process={**me, "pid": _dead_pid()}), path)
    assert load_record(path).status == "crashed"
    if me["pid_start"] is not None:  # Linux: the same pid, started at another time
        save_record(RunRecord(config={}, status="running",
                              process={**me, "pid_start": me["pid_start"] - 1}), path)
        assert load_record(path).status == "crashed"
    other = {"pid": 1, "host": socket.gethostname() + "-elsewhere"}
    fresh = datetime.now(UTC) - timedelta(seconds=run_status.STALE_S / 2)
    old = datetime.now(UTC) - timedelta(seconds=run_status.STALE_S + 1)
    save_record(RunRecord(config={}, status="running", process=other,
                          heartbeat=fresh.isoformat()), path)
    assert load_record(path).status == "running"
    save_record(RunRecord(config={}, status="running", process=other,
                          heartbeat=old.isoformat()), path)
    assert load_record(path).status == "crashed"


@pytest.mark.parametrize("fields, status", [
    ({"stopped": True, "ended": "2026-01-01T00:00:00+00:00"}, "stopped"),
    ({"stopped": False, "ended": "2026-01-01T00:00:00+00:00"}, "finished"),
    ({"stopped": False, "ended": None}, "crashed"),  # an old run that died mid-way
])
def test_schema_2_records_load_with_a_status(tmp_path, fields, status):
    """Records written before statuses (schema 1 and 2) load; their status is what their
    stopped / ended fields say: neither stopped nor ended means the run died."""
    for schema in (1, 2):
        path = tmp_path / f"old{schema}.json"
        path.write_text(json.dumps({"config": {"recipe": "ce", "steps": 3, "batch_size": 8},
                                    "metrics": [{"step": 1}], "schema": schema, **fields}))
        assert load_record(path).status == status


def test_compare_averages_finished_runs_only():
    """compare averages only finished runs; stopped, crashed and running runs are counted by
    status, and format_compare shows the crashed/running columns only when some row has one."""
    def rec(seed: int, test: float | None, status: str) -> RunRecord:
        return RunRecord(config={"recipe": "kd", "steps": 10, "seed": seed},
                         results={"test": test}, status=status, stopped=status == "stopped")

    records = [rec(0, 0.5, "finished"), rec(1, 0.7, "finished"), rec(2, None, "crashed"),
               rec(3, 0.1, "crashed"), rec(4, None, "stopped"), rec(5, None, "running")]
    row = compare(records).iloc[0]
    assert (row["seeds"], row["stopped"], row["crashed"], row["running"]) == (2, 1, 2, 1)
    assert row["test_mean"] == pytest.approx(0.6, abs=1e-15)  # (0.5 + 0.7) / 2: 0.1 left out
    text = format_compare(compare(records))
    assert "crashed" in text.splitlines()[0] and "running" in text.splitlines()[0]
    assert "crashed" not in format_compare(compare(records[:2]))


# ----------------------------------------------------------------------------- never overwrite
def test_rerun_into_a_finished_record_keeps_it(tiny, tmp_path, capsys):
    """The same command again into the same --out: exit 2 with a one-line message naming
    --overwrite, the finished record byte for byte as it was, even if that second process is
    killed; --overwrite replaces it on purpose."""
    args = _cli_args(tiny, tmp_path, "--recipe", "ce")
    assert main(args) == 0
    path = tmp_path / "ce-seed0.json"
    before = path.read_bytes()
    assert load_record(path).status == "finished"
    capsys.readouterr()
    proc = subprocess.Popen([sys.executable, "-m", "sinkd", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # still going: kill -9, as in the report
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 2, stderr[-2000:]
    assert "--overwrite" in stderr and str(path) in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert path.read_bytes() == before
    assert main([*args, "--overwrite"]) == 0
    assert path.read_bytes() != before and load_record(path).status == "finished"


def test_new_run_never_replaces_a_running_one(tmp_path):
    """A running run's record (its process alive) is never replaced, not even with overwrite;
    one that ended before its first step holds nothing and is replaced freely."""
    path = tmp_path / "r.json"
    save_record(RunRecord(config={}, status="running", process=run_status.this_process()), path)
    with pytest.raises(ValueError, match="still running"):
        check_new_record(path, overwrite=True)
    with pytest.raises(ValueError, match="still running"):
        resumable(path, {})
    save_record(RunRecord(config={}, status="stopped", stopped=True), path)
    check_new_record(path)  # no steps: nothing to lose
    save_record(RunRecord(config={}, metrics=[{"step": 1}], status="crashed"), path)
    with pytest.raises(ValueError, match=r"crashed run .*--resume .*--overwrite"):
        check_new_record(path)
    (tmp_path / "x.json").write_text("not a record")
    with pytest.raises(ValueError, match="not a run record"):
        check_new_record(tmp_path / "x.json", overwrite=True)


# ----------------------------------------------------------------------------- kill and resume
_KILLER = """
import dataclasses, json, os, signal, sys
from sinkd.distill.config import DistillConfig
from sinkd.distill.train import train

config = DistillConfig(**json.loads(sys.argv[1]))
kill_at = int(sys.argv[2])

def on_step(event):
    if event["step"] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

train(config, on_step=on_step)
"""


def test_killed_run_resumes_from_its_last_checkpoint_bit_exact(tiny, tmp_path):
    """A run sends itself SIGKILL during step 7 of 10 (resume state every 3 steps, record
    written every step): the record reads crashed, holds 6 rows, and the state is at step 6;
    resuming gives every metric, the results and the last batch of the run never killed,
    bit for bit on the CPU, then the state file is gone."""
    out = tmp_path / "k.json"
    cfg = tiny_config(tiny, recipe="sinkd", steps=10, eval_every=1, checkpoint_every=3,
                      out=str(out))
    proc = subprocess.run([sys.executable, "-c", _KILLER, json.dumps(dataclasses.asdict(cfg)),
                           "8"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    record = load_record(out)
    assert record.status == "crashed" and not record.stopped
    assert len(record.metrics) == 7  # written at step 7; killed in step 8's callback
    assert load_checkpoint(checkpoint_path(out))["step"] == 6
    full = train(dataclasses.replace(cfg, out=None))
    resumed = train(cfg, resume_from=out)
    assert resumed.status == "finished" and resumed.resumed_at == [6]
    assert _timing_free(resumed.metrics) == _timing_free(full.metrics)
    assert resumed.results == full.results and resumed.last_batch == full.last_batch
    assert not checkpoint_path(out).exists() and load_record(out).status == "finished"


def test_cli_kill_9_then_resume(tiny, tmp_path, capsys):
    """`python -m sinkd distill` killed by SIGKILL mid-run: compare counts it as crashed, not
    as a seed; `--resume` continues it from its last periodic state (not "finished all its
    steps"), and the rows it redoes equal those of a run never killed."""
    args = _cli_args(tiny, tmp_path, "--recipe", "kd", "--set", "eval_every=1",
                     "--set", "checkpoint_every=3")
    args[args.index("--steps") + 1] = "100000"
    path, state = tmp_path / "kd-seed0.json", checkpoint_path(tmp_path / "kd-seed0.json")
    proc = subprocess.Popen([sys.executable, "-m", "sinkd", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and path.exists() and len(load_record(path).metrics) >= 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    record = load_record(path)
    assert record.status == "crashed"
    k = load_checkpoint(state)["step"]
    assert k % 3 == 0 and 3 <= k <= len(record.metrics)
    assert main(["compare", str(path)]) == 0
    out = capsys.readouterr().out
    header, row = out.splitlines()[0].split(), out.splitlines()[-2].split()
    assert row[0] == "kd" and int(row[header.index("seeds")]) == 0
    assert int(row[header.index("crashed")]) == 1 and f"{path} (crashed)" in out
    assert main(["distill", "--resume", str(path), "--stop-after", "2", "--no-progress"]) == 130
    resumed = load_record(path)
    assert resumed.status == "stopped" and resumed.resumed_at == [k]
    assert len(resumed.metrics) == k + 2
    on_step, should_stop = _stop_after(k + 2)
    reference = train(dataclasses.replace(config_of(record), out=str(tmp_path / "ref.json")),
                      on_step=on_step, should_stop=should_stop)
    assert _timing_free(resumed.metrics) == _timing_free(reference.metrics)
    a, b = load_checkpoint(state), load_checkpoint(checkpoint_path(tmp_path / "ref.json"))
    assert a["step"] == b["step"] == k + 2
    assert all(torch.equal(a["student"][n], b["student"][n]) for n in a["student"])


def test_run_that_raises_is_recorded_crashed(tiny, tmp_path):
    """An exception out of a run (a second Ctrl-C, a failing callback) leaves its record saying
    crashed, though its process lives on (the app's server), and it resumes."""
    out = tmp_path / "e.json"
    cfg = tiny_config(tiny, recipe="ce", steps=6, checkpoint_every=2, out=str(out))

    def on_step(event: dict) -> None:
        if event["step"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=on_step)
    record = load_record(out)
    assert record.status == "crashed" and record.process["pid"] == os.getpid()
    assert can_resume(out, record)
    assert train(cfg, resume_from=out).resumed_at == [4]
    assert not can_resume(out, load_record(out))


# ----------------------------------------------------------------------------- stop and clean
def _stopped_run(tiny, tmp_path, name: str = "js-seed0.json", steps: int = 1):
    cfg = tiny_config(tiny, recipe="js", steps=4, out=str(tmp_path / name))
    on_step, should_stop = _stop_after(steps)
    train(cfg, on_step=on_step, should_stop=should_stop)
    return tmp_path / name


def test_cli_stop_names_the_resume_state_and_its_size(tiny, tmp_path, capsys):
    """A stopped run's summary names its resume state, its size in MB/kB and `clean`."""
    assert main(_cli_args(tiny, tmp_path, "--recipe", "ce", "--stop-after", "1")) == 130
    state = checkpoint_path(tmp_path / "ce-seed0.json")
    size = state.stat().st_size
    text = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"
    out = capsys.readouterr().out
    assert f"its resume state {state} ({text})" in out
    assert f"python -m sinkd clean --all {tmp_path}" in out


def test_clean_removes_what_no_run_needs(tiny, tmp_path, capsys):
    """clean lists every resume state with its size; --dry-run removes nothing; clean removes
    finished runs' and orphans' states and keeps stopped and running runs'; --all also the
    stopped one's, never the running one's."""
    stopped = _stopped_run(tiny, tmp_path)
    data = checkpoint_path(stopped).read_bytes()
    finished = tmp_path / "fin.json"
    save_record(RunRecord(config={}, metrics=[{"step": 1}]), finished)
    running = tmp_path / "sub" / "run.json"
    save_record(RunRecord(config={}, status="running", process=run_status.this_process()),
                running)
    for p in (finished, running, tmp_path / "orphan.json"):
        checkpoint_path(p).write_bytes(data)
    states = {p: checkpoint_path(p) for p in (stopped, finished, running)}
    orphan = checkpoint_path(tmp_path / "orphan.json")
    size = f"{len(data) / 1e6:.1f} MB" if len(data) >= 1e6 else f"{len(data) / 1e3:.1f} kB"
    assert main(["clean", "--dry-run", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"would remove {states[finished]} ({size}): its run is finished" in out
    assert f"would remove {orphan} ({size}): no readable record" in out
    assert f"kept {states[stopped]} ({size}): its run is stopped" in out
    assert f"kept {states[running]} ({size}): its run is running" in out
    assert all(p.exists() for p in [*states.values(), orphan])
    assert main(["clean", str(tmp_path)]) == 0
    assert not states[finished].exists() and not orphan.exists()
    assert states[stopped].exists() and states[running].exists()
    assert main(["clean", "--all", str(tmp_path)]) == 0
    assert not states[stopped].exists() and states[running].exists()
    capsys.readouterr()
    assert main(["clean", str(tmp_path / "nowhere")]) == 2
    _one_line_error(capsys)


# ----------------------------------------------------------------------------- one-line errors
def _state_without(key: str) -> dict:
    state = {"step": 1, "best": None, "rng": torch.get_rng_state(), "student": {},
             "optimizer": {}}
    return {k: v for k, v in state.items() if k != key}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch, on the damaged files
@pytest.mark.parametrize("damage, words", [
    (lambda p: p.write_bytes(os.urandom(4096)), "not a resume state"),  # garbage
    (lambda p: p.write_bytes(b"\x80\x04\x95"), "not a resume state"),  # truncated pickle
    (lambda p: torch.save([1, 2], p), "holds a list"),  # foreign
    (lambda p: p.write_bytes(b"\x80\x04cos\nsystem\n."), "not a resume state"),  # a pickle global
    (lambda p: torch.save(_state_without("optimizer"), p), "missing ['optimizer']"),
    (lambda p: torch.save(_state_without("rng"), p), "missing ['rng']"),
])
def test_resume_with_a_bad_state_is_one_line(tiny, tmp_path, capsys, damage, words):
    """--resume of a stopped run whose .resume.pt is garbage, foreign, truncated or missing a
    key: exit 2, one line naming the file, before any model loads."""
    path = _stopped_run(tiny, tmp_path)
    damage(checkpoint_path(path))
    assert main(["distill", "--resume", str(path), "--no-progress"]) == 2
    err = _one_line_error(capsys)
    assert str(checkpoint_path(path)) in err and words in err


def _nested(depth: int) -> str:
    return '{"config": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize("command", ["resume", "compare"])
def test_directories_and_deep_json_are_one_line(tmp_path, capsys, command):
    """--resume and compare given a directory or JSON nested 100,000 deep: exit 2, one line
    naming it."""
    deep = tmp_path / "deep.json"
    deep.write_text(_nested(100_000))
    for target, words in ((tmp_path, "directory"), (deep, "nested too deeply")):
        args = ["distill", "--resume", str(target)] if command == "resume" else [
            "compare", str(target)]
        assert main(args) == 2
        err = _one_line_error(capsys)
        assert str(target) in err and words in err


@pytest.mark.parametrize("change, words", [
    ({"results": {"test": "abc"}}, "results 'test'"),
    ({"results": {"best_dev": [0.5]}}, "results 'best_dev'"),
    ({"config": {"recipe": "ce", "steps": "x"}}, "config 'steps'"),
    ({"config": {"recipe": ["ce"], "steps": 3}}, "config 'recipe'"),
    ({"config": {"recipe": "ce", "seed": 1.5}}, "config 'seed'"),
    ({"teacher": {"test_accuracy": "high", "dev_accuracy": 0.5}}, "teacher 'test_accuracy'"),
    ({"metrics": [{"step": 1, "grad_share_ce": "x"}]}, "metrics 'grad_share_ce'"),
    ({"status": "sleeping"}, "'status'"),
    ({"ended": 5}, "'ended'"),
    ({"process": [1]}, "'process'"),
    ({"wall_time_s": True}, "'wall_time_s'"),
])
def test_compare_on_wrongly_typed_fields_is_one_line(tmp_path, capsys, change, words):
    """compare on a record whose fields have the wrong type: exit 2, one line naming the file
    and the field."""
    data = {**RunRecord(config={"recipe": "ce", "steps": 3}).to_dict(), **change}
    path = tmp_path / "typed.json"
    path.write_text(json.dumps(data))
    assert main(["compare", str(path)]) == 2
    err = _one_line_error(capsys)
    assert str(path) in err and words in err


def test_resume_of_a_finished_or_overwrite_flag_is_refused(tiny, tmp_path, capsys):
    """--resume of a finished run says it finished; --overwrite does not go with --resume."""
    args = _cli_args(tiny, tmp_path, "--recipe", "ce")
    assert main(args) == 0
    path = tmp_path / "ce-seed0.json"
    capsys.readouterr()
    assert main(["distill", "--resume", str(path)]) == 2
    assert "finished all its 2 steps" in _one_line_error(capsys)
    assert main(["distill", "--resume", str(path), "--overwrite"]) == 2
    assert "--overwrite" in _one_line_error(capsys)
