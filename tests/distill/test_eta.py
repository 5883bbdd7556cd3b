"""The whole queue's time left (sinkd.distill.eta): from the classroom preset's measurement
shipped in sinkd/data/classroom_time.json, adapted to the machine by the job's own step times.
"""

import statistics

import pytest

from sinkd.distill import eta
from sinkd.distill import jobs as distill_jobs
from sinkd.distill.config import DistillConfig

PRIOR = eta.Prior(fine_tune_s=36.0, teacher_steps=60, logits_s=12.0, step_s=0.25,
                  run_overhead_s=10.0, cores=2)


def queued(total: int) -> dict:
    return {"status": "queued", "steps": [], "total": total, "teacher": None}


def running(times: list[float], total: int, teacher: dict | None = None) -> dict:
    steps = [{"step": i + 1, "time": t} for i, t in enumerate(times)]
    return {"status": "running", "steps": steps, "total": total, "teacher": teacher}


def test_the_prior_gives_back_the_classroom_measurement():
    """Before anything is measured, the classroom queue (teacher not cached) is estimated at
    exactly the measured teacher phase plus every run's seconds (the file's own numbers, to
    their 0.1 s rounding); with the teacher cached, at the runs' seconds alone."""
    data = eta.load_timing()
    prior = eta.Prior.from_timing(data)
    totals = [r["steps"] for r in data["runs"]]
    assert len(set(totals)) == 1  # equal runs: the mean overhead is exact
    first = eta.plan_eta(totals, teacher_cached=False, teacher_steps=data["teacher_steps"],
                         prior=prior)
    measured = data["teacher_s"] + sum(r["seconds"] for r in data["runs"])
    assert first["seconds"] == pytest.approx(measured, abs=0.15)
    assert first["teacher_s"] == pytest.approx(data["teacher_s"], abs=0.15)
    assert first["speed"] == 1.0 and not first["measured"]
    cached = eta.plan_eta(totals, teacher_cached=True, teacher_steps=data["teacher_steps"],
                          prior=prior)
    assert cached["seconds"] == pytest.approx(sum(r["seconds"] for r in data["runs"]), abs=0.15)
    assert data["cores"] >= 1 and data["command"].startswith("python -m sinkd distill")


def test_the_plan_scales_the_step_time_with_the_batch_size():
    """A prior measured at 16 examples per step: a plan at batch 32 costs twice its plain
    steps (100 x 2 x 0.25 s) plus the unchanged overhead; at batch 16 or with no batch given,
    exactly the prior's; and a job at batch 32 whose steps take 0.5 s is a machine of the
    prior's speed (1.0), not one twice slower (its teacher phase left is not doubled)."""
    prior = eta.Prior(36.0, 60, 12.0, step_s=0.25, run_overhead_s=10.0, batch_size=16)
    at = {b: eta.plan_eta([100], teacher_cached=True, teacher_steps=60, prior=prior,
                          batch_size=b)["seconds"] for b in (None, 16, 32, 8)}
    assert at == {None: 100 * 0.25 + 10.0, 16: 100 * 0.25 + 10.0, 32: 100 * 0.5 + 10.0,
                  8: 100 * 0.125 + 10.0}
    times = [0.5 * i for i in range(11)]
    out = eta.queue_eta([running(times, 100)], teacher_cached=True, teacher_steps=60,
                        prior=prior, batch_size=32)
    assert out["speed"] == pytest.approx(1.0) and out["step_s"] == pytest.approx(0.5)
    assert eta.Prior.from_timing(eta.load_timing()).batch_size == 16  # the classroom preset's


def test_a_machine_three_times_slower_triples_what_is_not_measured_yet():
    """Steps every 0.75 s (three times the prior's 0.25 s; two evaluation steps take 5 s):
    the median gap is one plain step, speed 3; the running run's 60 steps left cost
    60 x 0.75 + 10 x 3 x 60 / 100, the queued run 100 x 0.75 + 10 x 3."""
    gaps = [0.75] * 39
    gaps[9] = gaps[19] = 5.0  # evaluations
    times = [0.0]
    for g in gaps:
        times.append(times[-1] + g)
    out = eta.queue_eta([running(times, 100), queued(100)], teacher_cached=True,
                        teacher_steps=60, prior=PRIOR)
    assert out["step_s"] == pytest.approx(0.75) and out["speed"] == pytest.approx(3.0)
    assert out["runs_s"] == pytest.approx([60 * 0.75 + 10 * 3 * 60 / 100, 100 * 0.75 + 30])
    assert out["teacher_s"] == 0.0 and out["measured"]
    assert out["seconds"] == pytest.approx(sum(out["runs_s"]))


def test_teacher_phase_is_timed_from_its_own_events():
    """Fine-tuning at step 11 of 60, 10 s after its first step: 1 s per teacher step (the
    prior's 0.6 s, so speed 1/0.6); left: 49 teacher steps, the logits (12 s x speed) and two
    whole runs at that speed (100 x 0.25 x speed + 10 x speed each)."""
    event = {"phase": "fine-tune", "done": 11, "total": 60, "time": 20.0, "phase_time": 10.0}
    runs = [{**queued(100), "status": "running", "teacher": event}, queued(100)]
    out = eta.queue_eta(runs, teacher_cached=False, teacher_steps=60, prior=PRIOR)
    speed = 1.0 / (36.0 / 60)
    assert out["speed"] == pytest.approx(speed)
    assert out["teacher_s"] == pytest.approx(49 * 1.0 + 12.0 * speed)
    assert out["runs_s"] == pytest.approx([(100 * 0.25 + 10) * speed] * 2)
    logits = {"phase": "logits", "split": "train", "done": 3, "total": 4, "time": 30.0,
              "phase_time": 29.0}
    half = eta.queue_eta([{**runs[0], "teacher": logits}], teacher_cached=False,
                         teacher_steps=60, prior=PRIOR)
    assert half["teacher_s"] == pytest.approx(12.0 * 0.25)  # a quarter of the logits left
    cached = {"phase": "cache", "done": 1, "total": 1, "time": 1.0, "phase_time": 1.0}
    assert eta.queue_eta([{**runs[0], "teacher": cached}], teacher_cached=False,
                         teacher_steps=60, prior=PRIOR)["teacher_s"] == 0.0


def test_finished_and_stopping_runs_cost_nothing():
    """Done, stopped and failed runs add 0 s; after Stop the running run ends after its step
    and the queued runs will not start: nothing is left."""
    finished = [{**queued(50), "status": s} for s in ("done", "stopped", "failed")]
    assert eta.queue_eta(finished, teacher_cached=False, teacher_steps=60,
                         prior=PRIOR)["seconds"] == 0.0
    out = eta.queue_eta([running([0.0, 0.25], 10), queued(100)], teacher_cached=True,
                        teacher_steps=60, prior=PRIOR, stopping=True)
    assert out["runs_s"] == [0.0, 0.0] and out["seconds"] == 0.0


def test_a_real_job_times_its_teacher_and_its_steps(tiny, tmp_path):
    """A real two-run job on the tiny teacher: the teacher events carry their time and their
    phase's first time; between the runs (the second one's steps removed) the estimate for the
    second run is its steps at the median gap of the first run's real step times plus the
    prior's overhead at the measured speed; once finished, nothing is left."""
    cfg = DistillConfig(data=tiny["data"], teacher=tiny["teacher"], teacher_steps=3,
                        student_layers=1, steps=6, batch_size=8, eval_every=3, max_length=16,
                        cache_dir=str(tmp_path), device="cpu")
    job = distill_jobs.Job(distill_jobs.make_configs(cfg, ["ce", "sinkd"], [0])).start()
    assert job.wait(120)
    first, second = job.snapshot()
    assert first["teacher"]["phase"] == "logits" and second["teacher"]["phase"] == "cache"
    assert first["teacher"]["phase_time"] <= first["teacher"]["time"]
    between = [first, {**second, "status": "queued", "steps": [], "teacher": None}]
    out = eta.queue_eta(between, teacher_cached=False, teacher_steps=3, prior=PRIOR)
    gap = statistics.median(b["time"] - a["time"]
                            for a, b in zip(first["steps"], first["steps"][1:], strict=False))
    assert out["teacher_s"] == 0.0 and out["runs_s"][0] == 0.0
    assert out["runs_s"][1] == pytest.approx(6 * gap + PRIOR.run_overhead_s * gap / 0.25,
                                             rel=1e-12)
    assert eta.queue_eta(job.snapshot(), teacher_cached=False, teacher_steps=3,
                         prior=PRIOR)["seconds"] == 0.0
