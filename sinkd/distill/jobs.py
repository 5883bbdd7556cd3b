"""Background distillation jobs: a queue of (recipe, seed) runs trained in a worker thread.

A :class:`Job` runs :func:`sinkd.distill.train.train` for each queued config in order, in a daemon
thread that never touches a user interface: every step's metrics are appended to a list under
a lock, and :meth:`Job.snapshot` returns copies for a poller (the app's page) to draw. A
:class:`threading.Event` asks the running run to stop after its current step; the runs still
queued are then marked stopped without starting. Each run writes its record under a runs
folder (``default_cache_dir()/runs``), so :func:`list_records` finds them again after a
restart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from sinkd.distill.checkpoints import can_resume, config_of
from sinkd.distill.config import DistillConfig
from sinkd.distill.data import SPLIT_NAMES
from sinkd.distill.models import CacheDir, default_cache_dir
from sinkd.distill.records import RunRecord, load_record
from sinkd.distill.teacher import teacher_cache
from sinkd.distill.train import load_data, train

STATUSES = ("queued", "running", "done", "stopped", "failed")
LOSS_PARTS = ("loss", "ce", "kd", "sinkhorn")


def runs_dir(cache_dir: str | Path | None = None) -> Path:
    """The folder of saved run records: ``<cache_dir>/runs`` (default: the sinkd cache).

    >>> runs_dir("/tmp/x").as_posix()
    '/tmp/x/runs'
    """
    return Path(cache_dir if cache_dir else default_cache_dir()) / "runs"


def settings_hash(config: DistillConfig) -> str:
    """8 hex digits naming a config's settings apart from recipe, seed, out and device.

    >>> settings_hash(DistillConfig(recipe="ce")) == settings_hash(DistillConfig(recipe="kd"))
    True
    """
    fields = {k: v for k, v in dataclasses.asdict(config).items()
              if k not in ("recipe", "seed", "out", "device")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:8]


def make_configs(base: DistillConfig, recipes: Sequence[str], seeds: Sequence[int], *,
                 folder: str | Path | None = None) -> list[DistillConfig]:
    """One validated config per (recipe, seed), recipes outer, each with its record path.

    Parameters
    ----------
    base : DistillConfig
        The shared settings.
    recipes, seeds : sequences
        At least one each; every recipe runs with every seed.
    folder : path, optional
        Where records go (default :func:`runs_dir` of ``base.cache_dir``); a record is named
        ``<recipe>-seed<k>-<settings_hash>.json``, or ``...-<hash>-2.json`` and on where that
        is taken: a new run never writes over a saved record (a stopped one is resumed apart).

    Returns
    -------
    list of DistillConfig
        Raises ValueError naming a bad field, or when recipes or seeds is empty.

    Examples
    --------
    >>> [c.recipe for c in make_configs(DistillConfig(), ["ce", "sinkd"], [0], folder="/tmp/r")]
    ['ce', 'sinkd']
    """
    if not recipes:
        raise ValueError("recipes must name at least one recipe, got none")
    if not seeds:
        raise ValueError("seeds must hold at least one seed, got none")
    folder = Path(folder) if folder is not None else runs_dir(base.cache_dir)
    key = settings_hash(base)
    return [DistillConfig.from_overrides(
        {"recipe": r, "seed": int(s), "out": str(_free_path(folder, f"{r}-seed{int(s)}-{key}"))},
        base=base) for r in recipes for s in seeds]


def _free_path(folder: Path, stem: str) -> Path:
    """``folder/stem.json``, or ``stem-2.json``, ``stem-3.json``, ...: the first not taken."""
    path, k = folder / f"{stem}.json", 1
    while path.exists():
        k += 1
        path = folder / f"{stem}-{k}.json"
    return path


def list_records(folder: str | Path) -> list[tuple[Path, RunRecord]]:
    """Every readable record ``*.json`` in ``folder``, oldest first (unreadable files skipped).

    >>> list_records("/nonexistent/folder")
    []
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime):
        try:
            out.append((path, load_record(path)))
        except ValueError:  # a foreign or damaged file: not a run of ours
            continue
    return out


def progress_summary(steps: Sequence[dict], total: int) -> dict[str, Any]:
    """Step, rate and time left of a run from its step events (each with a ``time`` in s).

    The rate is (events - 1) / (time of last - time of first), so it leaves out the teacher
    phase and the first step's warm-up; None until two steps are done.

    >>> ev = [{"step": 1, "time": 0.0, "loss": 1.0}, {"step": 2, "time": 0.5, "loss": 0.5}]
    >>> progress_summary(ev, 4)["eta_s"]
    1.0
    """
    if not steps:
        return dict(step=0, total=total, steps_per_s=None, eta_s=None, latest={}, dev=None)
    last = steps[-1]
    span = last["time"] - steps[0]["time"]
    rate = (len(steps) - 1) / span if len(steps) > 1 and span > 0 else None
    devs = [e["dev_accuracy"] for e in steps if e.get("dev_accuracy") is not None]
    latest = {p: last[p] for p in LOSS_PARTS if last.get(p) is not None}
    return dict(step=last["step"], total=total, steps_per_s=rate,
                eta_s=(total - last["step"]) / rate if rate else None, latest=latest,
                dev=devs[-1] if devs else None)


@dataclass
class RunState:
    """One queued run: its config, status, step events, teacher events, error and record."""

    config: DistillConfig
    status: str = "queued"
    steps: list[dict] = field(default_factory=list)
    teacher: dict | None = None  # the latest teacher-phase event (fine-tune, logits, cache)
    error: str | None = None
    record: RunRecord | None = None
    resume_from: Path | None = None  # a stopped run's record, continued (checkpoints.py)


class Job:
    """Train ``configs`` in order in one background thread; poll with :meth:`snapshot`.

    Parameters
    ----------
    configs : iterable of DistillConfig
        The runs, in order (see :func:`make_configs`); a bad one fails with its message.
    threads : int, optional
        torch intra-op threads while the job runs (torch's setting is per process: restored
        after); None keeps the current one.
    resume_from : sequence of path or None, optional
        Per config, the stopped run's record it continues (see :func:`resume_configs`), or
        None for a fresh run.

    Examples
    --------
    >>> job = Job([DistillConfig(steps=0)])
    >>> job.start().wait(60)
    True
    >>> job.snapshot()[0]["status"], job.snapshot()[0]["error"][:25]
    ('failed', 'ValueError: steps must be')
    """

    def __init__(self, configs: Iterable[DistillConfig], threads: int | None = None,
                 resume_from: Sequence[str | Path | None] | None = None) -> None:
        self.runs = [RunState(c) for c in configs]
        for run, path in zip(self.runs, resume_from or [None] * len(self.runs), strict=True):
            run.resume_from = Path(path) if path is not None else None
        self.threads = threads
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="sinkd-distill", daemon=True)
        self.started_at: float | None = None

    def start(self) -> Job:
        """Start the worker thread; return self."""
        self.started_at = time.time()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the current run to stop after its step; the queued ones will not start."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    @property
    def alive(self) -> bool:
        """True while the worker thread runs."""
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the worker to finish; True if it did within ``timeout`` seconds."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def snapshot(self) -> list[dict[str, Any]]:
        """Copies of each run's state (safe to read while the worker appends)."""
        with self._lock:
            return [dict(recipe=r.config.recipe, seed=r.config.seed, status=r.status,
                         steps=list(r.steps), total=r.config.steps, teacher=r.teacher,
                         error=r.error, record=r.record, path=r.config.out) for r in self.runs]

    def _work(self) -> None:
        previous = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            for run in self.runs:
                if self._stop.is_set():
                    run.status = "stopped"
                    continue
                self._run(run)
        finally:
            if self.threads:
                torch.set_num_threads(previous)

    def _run(self, run: RunState) -> None:
        def on_step(event: dict) -> None:
            with self._lock:
                run.steps.append({**event, "time": time.perf_counter()})

        def on_progress(event: dict) -> None:
            now = time.perf_counter()  # "phase_time": the phase's first event (eta.py's rate)
            with self._lock:
                same = run.teacher is not None and all(
                    run.teacher.get(k) == event.get(k) for k in ("phase", "split"))
                run.teacher = {**event, "time": now,
                               "phase_time": run.teacher["phase_time"] if same else now}

        with self._lock:
            run.status = "running"
        try:
            record = train(run.config, on_step=on_step, should_stop=self._stop.is_set,
                           on_progress=on_progress, resume_from=run.resume_from)
        except Exception as exc:  # any failure is shown to the user, the queue goes on
            with self._lock:
                run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"
            return
        with self._lock:
            run.record = record
            run.status = "stopped" if record.stopped else "done"


def resumable_records(records: Sequence[tuple[Path, RunRecord]]) -> list[Path]:
    """The runs among ``records`` that can continue (:func:`checkpoints.can_resume`): stopped
    ones with their resume state on disk or before their first step, and crashed ones (from
    their last periodic state, or step 0).

    >>> resumable_records([(Path("r.json"), RunRecord(config={}, status="crashed"))])
    [PosixPath('r.json')]
    """
    return [path for path, r in records if can_resume(path, r)]


def resume_configs(paths: Sequence[str | Path]) -> list[DistillConfig]:
    """The configs that continue the stopped runs at ``paths`` (their own settings, their own
    record files); pass them with ``resume_from=paths`` to :class:`Job`."""
    return [dataclasses.replace(config_of(load_record(p)), out=str(p)) for p in paths]


# The settings teacher_location depends on (teacher.teacher_cache and load_data read them).
TEACHER_FIELDS = ("data", "data_dir", "train_limit", "eval_limit", "teacher", "teacher_lr",
                  "teacher_steps", "max_length", "cache_dir")


def teacher_location(config: DistillConfig) -> tuple[CacheDir, str]:
    """(cache, key) of ``config``'s fine-tuned teacher. It loads the data (a user's table is
    parsed again), so a caller that asks on every rerun caches it by :data:`TEACHER_FIELDS`."""
    return teacher_cache(config, load_data(config))


def teacher_status(config: DistillConfig, location: tuple[CacheDir, str] | None = None,
                   ) -> tuple[Path, bool]:
    """(folder of the fine-tuned teacher for ``config``, whether it and its logits are cached).

    The teacher is fine-tuned once per (teacher, data subset, max_length, teacher_steps);
    every recipe and seed reuses it. ``location``: :func:`teacher_location`'s answer, if known.
    """
    cache, key = location if location is not None else teacher_location(config)
    # the manifest is written last (it checksums the rest): files without it are a crashed or
    # half-written entry, which the next run rebuilds; loading verifies the checksums
    cached = cache.has_entry(key) and all(cache.logits_file(key, s).is_file()
                                          for s in SPLIT_NAMES)
    return cache.teacher_dir(key), cached


def runs_table(records: Sequence[tuple[Path, RunRecord]]) -> pd.DataFrame:
    """One row per saved run, newest first: recipe, seed, steps, status (running, stopped,
    finished or crashed, as :func:`sinkd.distill.records.load_record` resolved it), student and
    teacher accuracies.

    >>> runs_table([]).shape[0]
    0
    """
    rows = [dict(file=path.name, recipe=r.recipe, seed=r.config.get("seed"),
                 steps=f"{r.results.get('steps_done', len(r.metrics))}/{r.config.get('steps')}",
                 status=r.status, test=r.results.get("test"), best_dev=r.results.get("best_dev"),
                 teacher_test=r.teacher.get("test_accuracy"), wall_time_s=r.wall_time_s,
                 device=r.device, ended=r.ended)
            for path, r in reversed(records)]
    return pd.DataFrame(rows, columns=["file", "recipe", "seed", "steps", "status", "test",
                                       "best_dev", "teacher_test", "wall_time_s", "device",
                                       "ended"])


def latest_batch(records: Sequence[tuple[Path, RunRecord]],
                 ) -> tuple[dict[str, list], Path, RunRecord] | None:
    """The newest record holding a last batch: (transport page's batch, its file, the record).

    The batch is ``{"teacher_logits": (N, C) list, "student_logits": (N, C) list}``, the
    source the transport page offers as its latest distillation batch.

    >>> latest_batch([]) is None
    True
    """
    for path, record in reversed(records):
        if record.last_batch:
            batch = {k: record.last_batch[k] for k in ("teacher_logits", "student_logits")}
            return batch, path, record
    return None
