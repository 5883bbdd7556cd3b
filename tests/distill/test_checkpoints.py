"""Stop and resume (sinkd.distill.checkpoints, train(resume_from=...), distill --resume, Job)."""

import dataclasses

import pytest
from test_distill import _cli_args, tiny_config

from sinkd.cli import main
from sinkd.distill import cli as cli_distill
from sinkd.distill import jobs as distill_jobs
from sinkd.distill.checkpoints import checkpoint_path, load_checkpoint
from sinkd.distill.records import load_record
from sinkd.distill.train import train


def _timing_free(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "examples_per_s"} for row in metrics]


def _stop_after(k: int):
    """A should_stop that says yes once k steps have reported."""
    done = []
    return done.append, lambda: len(done) >= k


def test_resume_continues_exactly_like_an_uninterrupted_run(tiny, tmp_path):
    """Stop after 3 of 6 steps, resume: every metric, the results and the weights of the best
    checkpoint equal those of the run that never stopped (CPU, bit for bit)."""
    full = train(tiny_config(tiny, recipe="sinkd", out=str(tmp_path / "full.json")))
    out = tmp_path / "run.json"
    cfg = tiny_config(tiny, recipe="sinkd", out=str(out))
    on_step, should_stop = _stop_after(3)
    stopped = train(cfg, on_step=on_step, should_stop=should_stop)
    assert stopped.stopped and len(stopped.metrics) == 3
    assert stopped.checkpoint == str(checkpoint_path(out)) and checkpoint_path(out).is_file()
    assert load_checkpoint(checkpoint_path(out))["step"] == 3
    events = []
    resumed = train(cfg, on_step=events.append, resume_from=out)
    assert [e["step"] for e in events] == [4, 5, 6]
    assert not resumed.stopped and resumed.resumed_at == [3] and resumed.checkpoint is None
    assert _timing_free(resumed.metrics) == _timing_free(full.metrics)
    assert resumed.results == full.results
    assert resumed.last_batch == full.last_batch
    assert not checkpoint_path(out).exists()  # spent
    assert load_record(out).to_dict() == resumed.to_dict()
    assert resumed.wall_time_s >= stopped.wall_time_s


def test_resume_twice_and_from_before_the_first_step(tiny, tmp_path):
    """Stopped at 0 steps, then at 4, then finished: the same metrics as one straight run."""
    full = train(tiny_config(tiny, recipe="kd"))
    out = tmp_path / "r.json"
    cfg = tiny_config(tiny, recipe="kd", out=str(out))
    first = train(cfg, should_stop=lambda: True)  # during the teacher phase or before step 1
    assert first.stopped and first.metrics == [] and not checkpoint_path(out).exists()
    on_step, should_stop = _stop_after(4)
    second = train(cfg, on_step=on_step, should_stop=should_stop, resume_from=out)
    assert second.stopped and len(second.metrics) == 4 and second.resumed_at == [0]
    third = train(cfg, resume_from=out)
    assert third.resumed_at == [0, 4] and not third.stopped
    assert _timing_free(third.metrics) == _timing_free(full.metrics)
    assert third.results == full.results


def test_resume_refuses_what_it_cannot_continue(tiny, tmp_path):
    """resume_from names the problem: a finished run, another config, a missing state file."""
    out = tmp_path / "r.json"
    cfg = tiny_config(tiny, recipe="ce", out=str(out), steps=3)
    train(cfg)
    with pytest.raises(ValueError, match="resume_from must be a stopped or crashed run's record"):
        train(cfg, resume_from=out)
    on_step, should_stop = _stop_after(1)
    train(cfg, on_step=on_step, should_stop=should_stop, overwrite=True)
    with pytest.raises(ValueError, match=r"differs in lr: 5e-05 -> 0\.001"):
        train(dataclasses.replace(cfg, lr=1e-3), resume_from=out)
    # device and out may change: a copy of the record elsewhere resumes into its own file
    checkpoint_path(out).unlink()
    with pytest.raises(ValueError, match="is missing"):
        train(cfg, resume_from=out)
    with pytest.raises(ValueError, match="resume_from: .*no such run record"):
        train(cfg, resume_from=tmp_path / "none.json")


def test_cli_resume_continues_a_stopped_record(tiny, tmp_path, capsys):
    """`distill --resume R` finishes R with R's own settings; other flags with it exit 2."""
    cfg = tiny_config(tiny, recipe="js", steps=2, out=str(tmp_path / "js-seed0.json"))
    on_step, should_stop = _stop_after(1)
    train(cfg, on_step=on_step, should_stop=should_stop)
    path = tmp_path / "js-seed0.json"
    assert main(["distill", "--resume", str(path), "--steps", "5"]) == 2
    assert "only --device and --stop-after may be given" in capsys.readouterr().err
    assert main(["distill", "--resume", str(path), "--device", "cpu", "--no-progress"]) == 0
    out = capsys.readouterr().out
    record = load_record(path)
    assert not record.stopped and len(record.metrics) == 2 and record.resumed_at == [1]
    assert "js seed 0: test" in out and "2 of 2 steps" in out


def test_cli_stop_prints_the_resume_command(tiny, tmp_path, capsys, monkeypatch):
    """A run stopped from the command line (here: its stop flag set after one step) says how
    to continue it."""
    calls = []
    monkeypatch.setattr(cli_distill._StopFlag, "__call__",
                        lambda self: calls.append(1) or len(calls) > 1)
    assert main(_cli_args(tiny, tmp_path, "--recipe", "ce")) == 130
    assert f"continue with: python -m sinkd distill --resume {tmp_path / 'ce-seed0.json'}" in (
        capsys.readouterr().out)


def test_job_resumes_stopped_records(tiny, tmp_path):
    """A Job built from resume_configs continues stopped runs into their own record files."""
    cfg = tiny_config(tiny, recipe="sinkd", steps=4, out=str(tmp_path / "a.json"))
    on_step, should_stop = _stop_after(2)
    train(cfg, on_step=on_step, should_stop=should_stop)
    records = distill_jobs.list_records(tmp_path)
    paths = distill_jobs.resumable_records(records)
    assert paths == [tmp_path / "a.json"]
    job = distill_jobs.Job(distill_jobs.resume_configs(paths), resume_from=paths).start()
    assert job.wait(120)
    snap = job.snapshot()[0]
    assert snap["status"] == "done", snap["error"]
    assert [e["step"] for e in snap["steps"]] == [3, 4]
    assert distill_jobs.resumable_records(distill_jobs.list_records(tmp_path)) == []


def _bytes_read() -> int:
    """Bytes this process has read through read() calls so far (/proc/self/io's rchar)."""
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


def test_the_check_before_a_resume_maps_the_state_the_run_reads_it(tmp_path):
    """A resume state of a 2048 x 2048 student after one AdamW step (weights and two moments,
    about 50 MB): load_checkpoint(mmap=True), the check the CLI makes before the teacher,
    reads under a tenth of the file through read() (the tensors are mapped), the full load all
    of it; both give the same step and bit-equal tensors."""
    import torch

    from sinkd.distill.checkpoints import save_checkpoint

    student = torch.nn.Linear(2048, 2048)
    optimizer = torch.optim.AdamW(student.parameters())
    student(torch.randn(3, 2048)).sum().backward()
    optimizer.step()
    path = save_checkpoint(tmp_path / "run.resume.pt", student=student, optimizer=optimizer,
                           best=None, step=1)
    size = path.stat().st_size
    assert size > 48e6
    before = _bytes_read()
    mapped = load_checkpoint(path, mmap=True)
    mapped_read = _bytes_read() - before
    before = _bytes_read()
    full = load_checkpoint(path)
    full_read = _bytes_read() - before
    assert mapped_read < size / 10 and full_read >= size * 0.95, (mapped_read, full_read, size)
    assert mapped["step"] == full["step"] == 1
    assert all(torch.equal(mapped["student"][k], full["student"][k]) for k in full["student"])
    moments = list(zip(mapped["optimizer"]["state"].values(),
                       full["optimizer"]["state"].values(), strict=True))
    assert len(moments) == 2 and all(torch.equal(m[k], f[k]) for m, f in moments
                                     for k in ("exp_avg", "exp_avg_sq"))
