"""Time left for a whole distillation queue: the teacher phase and every run still to train.

A job (:class:`sinkd.distill.jobs.Job`) first prepares the teacher (fine-tune, then its logits on
every split; skipped when cached), then trains its runs one after the other. :func:`queue_eta`
adds up what is left of each phase from two sources:

- a :class:`Prior`: the phases' seconds measured once for the classroom preset
  (``bench/classroom_time.py`` writes them to ``sinkd/data/classroom_time.json``,
  :func:`load_timing` reads them);
- the job's own measurements on this machine: the median time between two step events (one
  plain student step) and the teacher's fine-tuning rate. Their ratio to the prior's is the
  machine's *speed* factor, which scales the parts not measured yet (the teacher's logits, each
  run's loading and evaluations), so the estimate adapts to the machine within a few steps.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

TIMING_FILE = "classroom_time.json"  # in sinkd/data, written by bench/classroom_time.py
FINISHED = ("done", "stopped", "failed")


@dataclass(frozen=True)
class Prior:
    """Seconds of each phase measured on a reference machine (a fallback until measured here).

    ``fine_tune_s`` covers ``teacher_steps`` fine-tuning steps (process start-up included),
    ``logits_s`` the teacher's logits on every split, ``step_s`` one plain student step of
    ``batch_size`` examples and ``run_overhead_s`` the rest of a run (loading the student,
    evaluations, test, record).
    """

    fine_tune_s: float
    teacher_steps: int
    logits_s: float
    step_s: float
    run_overhead_s: float
    cores: int | None = None
    batch_size: int | None = None  # examples per step of ``step_s`` (None: not scaled)

    def step_at(self, batch_size: int | None) -> float:
        """Seconds of one student step of ``batch_size`` examples: ``step_s`` scaled by the
        examples per step (the work of a step grows with them; length and layers are not
        scaled, which the job's own step times correct).

        >>> Prior(30.0, 60, 10.0, step_s=0.2, run_overhead_s=5.0, batch_size=16).step_at(32)
        0.4
        """
        if not batch_size or not self.batch_size:
            return self.step_s
        return self.step_s * batch_size / self.batch_size

    @classmethod
    def from_timing(cls, data: Mapping[str, Any]) -> Prior:
        """The prior of a ``bench/classroom_time.py`` measurement: its runs' plain steps give
        ``step_s`` (pooled), the rest of their seconds ``run_overhead_s`` (mean per run).

        >>> p = Prior.from_timing({"fine_tune_s": 40.0, "teacher_steps": 60, "logits_s": 8.0,
        ...     "cores": 2, "runs": [{"steps": 150, "seconds": 70.0, "steps_s": 60.0},
        ...                          {"steps": 150, "seconds": 80.0, "steps_s": 90.0}]})
        >>> p.step_s, p.run_overhead_s
        (0.5, 0.0)
        """
        runs = data["runs"]
        if not runs:
            raise ValueError("timing data must hold at least one run, got none")
        steps = sum(r["steps"] for r in runs)
        steps_s = sum(r["steps_s"] for r in runs)
        overhead = sum(r["seconds"] - r["steps_s"] for r in runs) / len(runs)
        return cls(fine_tune_s=float(data["fine_tune_s"]),
                   teacher_steps=int(data["teacher_steps"]), logits_s=float(data["logits_s"]),
                   step_s=steps_s / steps, run_overhead_s=max(overhead, 0.0),
                   cores=data.get("cores"), batch_size=data.get("batch_size"))


def load_timing() -> dict[str, Any]:
    """The classroom preset's measurement shipped in ``sinkd/data`` (see the module docstring).

    >>> sorted(k for k in load_timing() if k.endswith("_s"))[:3]
    ['fine_tune_s', 'logits_s', 'rest_s']
    """
    return json.loads((resources.files("sinkd") / "data" / TIMING_FILE).read_text())


def measured_step_s(runs: Sequence[Mapping[str, Any]]) -> float | None:
    """The median seconds between consecutive step events of a run, over all ``runs`` (each
    with ``steps``: events with a ``time``); None before any run has two steps.

    The median leaves out the evaluation steps' longer intervals: it is one plain step.

    >>> measured_step_s([{"steps": [{"time": 0.0}, {"time": 0.5}, {"time": 1.0},
    ...                             {"time": 3.0}]}])
    0.5
    """
    gaps = [b["time"] - a["time"] for r in runs
            for a, b in zip(r["steps"], r["steps"][1:], strict=False)]
    return statistics.median(gaps) if gaps else None


def teacher_step_s(event: Mapping[str, Any] | None) -> float | None:
    """Seconds per teacher fine-tuning step from a job's latest teacher event (``done`` steps,
    ``time`` and ``phase_time``, the time of the phase's first event); None before two steps.

    >>> teacher_step_s({"phase": "fine-tune", "done": 5, "total": 60, "time": 12.0,
    ...                 "phase_time": 10.0})
    0.5
    """
    if (event is None or event.get("phase") != "fine-tune" or event.get("done", 0) < 2
            or "time" not in event or "phase_time" not in event):
        return None
    span = event["time"] - event["phase_time"]
    return span / (event["done"] - 1) if span > 0 else None


def queue_eta(runs: Sequence[Mapping[str, Any]], *, teacher_cached: bool, teacher_steps: int,
              prior: Prior, stopping: bool = False,
              batch_size: int | None = None) -> dict[str, Any]:
    """Seconds left for the whole queue: the teacher phase where it is not cached, the running
    run's remaining steps and every queued run.

    Parameters
    ----------
    runs : sequence of dict
        :meth:`sinkd.distill.jobs.Job.snapshot`'s rows (``status``, ``steps``: step events
        with ``step`` and ``time``, ``total``, ``teacher``: the latest teacher event), in order.
    teacher_cached : bool
        The teacher and its logits were cached when the job started (no teacher phase).
    teacher_steps : int
        The teacher's fine-tuning steps (the job's ``teacher_steps``).
    prior : Prior
        Seconds measured on a reference machine, scaled by this machine's speed.
    stopping : bool
        The job was asked to stop: the running run (or the teacher) ends after its step and the
        queued runs will not start, so nothing is left to estimate.
    batch_size : int, optional
        The runs' examples per step: the prior's step time is scaled to it
        (:meth:`Prior.step_at`), so that a larger batch is not taken for a slower machine.

    Returns
    -------
    dict
        ``seconds`` (the total left), ``teacher_s``, ``runs_s`` (per run), ``step_s`` (one
        student step), ``speed`` (this machine's time over the prior's, 1.0 before any
        measurement) and ``measured`` (True once this job timed a step here).

    Examples
    --------
    >>> prior = Prior(fine_tune_s=30.0, teacher_steps=60, logits_s=10.0, step_s=0.2,
    ...               run_overhead_s=5.0)
    >>> queued = [{"status": "queued", "steps": [], "total": 100, "teacher": None}] * 2
    >>> queue_eta(queued, teacher_cached=False, teacher_steps=60, prior=prior)["seconds"]
    90.0
    """
    step_meas = measured_step_s(runs)
    started = any(r["steps"] for r in runs) or any(r["status"] in FINISHED for r in runs)
    first = next((r for r in runs if r["status"] == "running"), None)
    t_step = teacher_step_s(first["teacher"] if first else None)
    prior_t_step = prior.fine_tune_s / max(prior.teacher_steps, 1)
    prior_step = prior.step_at(batch_size)
    if step_meas is not None:
        speed = step_meas / prior_step
    elif t_step is not None:
        speed = t_step / prior_t_step
    else:
        speed = 1.0
    step_s = step_meas if step_meas is not None else prior_step * speed
    overhead = prior.run_overhead_s * speed
    teacher_s = 0.0
    if not teacher_cached and not started and not stopping:
        teacher_s = _teacher_left(first["teacher"] if first else None, teacher_steps,
                                  t_step if t_step is not None else prior_t_step * speed,
                                  prior.logits_s * speed)
    runs_s = []
    for r in runs:
        done = r["steps"][-1]["step"] if r["steps"] else 0
        left = max(r["total"] - done, 0)
        if r["status"] in FINISHED or stopping:
            runs_s.append(0.0)
        elif r["status"] == "running" and r["steps"]:  # evaluations spread over the steps
            runs_s.append(left * step_s + overhead * left / max(r["total"], 1))
        else:
            runs_s.append(left * step_s + overhead)
    return dict(seconds=teacher_s + sum(runs_s), teacher_s=teacher_s, runs_s=runs_s,
                step_s=step_s, speed=speed, measured=step_meas is not None)


def plan_eta(totals: Sequence[int], *, teacher_cached: bool, teacher_steps: int,
             prior: Prior, batch_size: int | None = None) -> dict[str, Any]:
    """:func:`queue_eta` of a queue not started yet: one run per entry of ``totals`` (its
    steps), at the prior's time per step scaled to ``batch_size`` (other lengths and layer
    counts differ, which the estimate while training corrects).

    >>> prior = Prior(fine_tune_s=30.0, teacher_steps=60, logits_s=10.0, step_s=0.2,
    ...               run_overhead_s=5.0)
    >>> plan_eta([100, 100], teacher_cached=True, teacher_steps=60, prior=prior)["seconds"]
    50.0
    """
    runs = [{"status": "queued", "steps": [], "total": int(t), "teacher": None} for t in totals]
    return queue_eta(runs, teacher_cached=teacher_cached, teacher_steps=teacher_steps,
                     prior=prior, batch_size=batch_size)


def _teacher_left(event: Mapping[str, Any] | None, steps: int, per_step: float,
                  logits: float) -> float:
    """Seconds left in the teacher phase after ``event`` (None: not begun)."""
    if event is None:
        return steps * per_step + logits
    if event.get("phase") == "cache":
        return 0.0
    done_frac = event.get("done", 0) / max(event.get("total", 1), 1)
    if event.get("phase") == "fine-tune":
        return (event["total"] - event.get("done", 0)) * per_step + logits
    # logits: train first, then dev and test (unknown sizes: the split's own progress)
    return logits * (1.0 - done_frac)


def format_duration(seconds: float | None) -> str:
    """``"—"``, ``"45 s"``, ``"3 min 20 s"`` or ``"1 h 05 min"``.

    >>> [format_duration(x) for x in (None, 44.6, 200, 3900)]
    ['—', '45 s', '3 min 20 s', '1 h 05 min']
    """
    if seconds is None:
        return "—"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"
