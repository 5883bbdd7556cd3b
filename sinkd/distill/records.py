"""Run records of a distillation: one JSON file per run (:mod:`sinkd.distill.comparison`
compares them).

A record holds everything needed to read a run later without rerunning it: the full config,
the metrics of every finished step, the final results, the teacher's provenance, the device,
library versions, times, its status (running, stopped, finished or crashed: see
:mod:`sinkd.distill.run_status`), and the last batch's logits and transport plan (which the
transport page opens). Files are written atomically (temporary file, then ``os.replace``), so a
run interrupted at any moment leaves the previous complete record.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

import sinkd
from sinkd.distill.config import DistillConfig
from sinkd.distill.gradients import SHARE_KEYS
from sinkd.distill.run_status import STATUSES, resolve
from sinkd.losses import pairwise_cost
from sinkd.sinkhorn import sinkhorn

SCHEMA = 3  # bump when the layout of a record changes (2: world_size, global_batch; 3: status,
# process, heartbeat); older records load


@dataclass
class RunRecord:
    """One distillation run, as stored on disk (plain JSON types only)."""

    config: dict[str, Any]  # every DistillConfig field, as given (teacher["path"] resolves it)
    metrics: list[dict[str, Any]] = field(default_factory=list)  # one dict per finished step
    results: dict[str, Any] = field(default_factory=dict)  # final_dev, best_dev, best_step, test
    data: dict[str, Any] = field(default_factory=dict)  # name, source, labels, split sizes
    teacher: dict[str, Any] = field(default_factory=dict)  # path, from_cache, accuracies, ...
    device: str = "cpu"  # the torch device the student trained on
    versions: dict[str, str] = field(default_factory=dict)  # torch, transformers, sinkd
    started: str = ""  # ISO 8601 time the run started
    ended: str | None = None  # ISO 8601 time it ended (None while running)
    wall_time_s: float = 0.0  # seconds from start to the last write
    stopped: bool = False  # True when should_stop() ended it before config["steps"]
    last_batch: dict[str, Any] | None = None  # logits, labels and SinKD plan of the last step
    resumed_at: list[int] = field(default_factory=list)  # finished steps at each resume
    checkpoint: str | None = None  # a stopped run's resume state (checkpoints.py), if any
    world_size: int = 1  # processes that trained it (torchrun); 1 in records before schema 2
    global_batch: int | None = None  # rows per step over all processes; None: config batch_size
    status: str | None = None  # one of run_status.STATUSES; None: from `stopped` (finished/stopped)
    process: dict[str, Any] | None = None  # pid, host, pid_start of the process writing it
    heartbeat: str | None = None  # ISO 8601 time of the running process's last write
    schema: int = SCHEMA  # layout version of this record

    def __post_init__(self) -> None:
        if self.global_batch is None:  # one process: the global batch is the batch
            self.global_batch = int(full_config(self.config)["batch_size"])
        if self.status is None:  # a record made in memory: what `stopped` says
            self.status = "stopped" if self.stopped else "finished"

    @property
    def recipe(self) -> str:
        """The run's recipe ("?" when its config does not say)."""
        return str(self.config.get("recipe", "?"))

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON types; non-finite floats become None (strict JSON)."""
        return _finite(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """Build a record from :meth:`to_dict`'s output; ValueError names a missing/bad key."""
        if not isinstance(data, dict):
            raise ValueError(f"a run record must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown keys in run record: {unknown}; valid keys: {sorted(known)}")
        if "config" not in data:
            raise ValueError("run record has no 'config'")
        for key, kind in _KINDS.items():
            if key in data and not (isinstance(data[key], kind) and (
                    kind is bool or not isinstance(data[key], bool))):  # True is not an int here
                raise ValueError(f"run record key {key!r} must be {_kind_name(kind)}, got "
                                 f"{_short(data[key])}")
        if data.get("schema", SCHEMA) > SCHEMA:
            raise ValueError(f"run record schema {data['schema']} is newer than this sinkd's "
                             f"({SCHEMA})")
        _check_contents(data)
        data = dict(data)
        if "status" not in data:  # schema 1 and 2: a run that neither stopped nor ended died
            data["status"] = ("stopped" if data.get("stopped") else
                              "finished" if data.get("ended") else "crashed")
        return cls(**data)


_NUMBER = (int, float)
# the type each key must have; "a or None" keys allow null
_KINDS: dict[str, Any] = {
    "config": dict, "metrics": list, "results": dict, "data": dict, "teacher": dict, "device": str,
    "versions": dict, "started": str, "ended": (str, type(None)), "wall_time_s": _NUMBER,
    "stopped": bool, "last_batch": (dict, type(None)), "resumed_at": list,
    "checkpoint": (str, type(None)), "world_size": int, "global_batch": (int, type(None)),
    "status": str, "process": (dict, type(None)), "heartbeat": (str, type(None)), "schema": int}


def _kind_name(kind: Any) -> str:
    if kind is _NUMBER:
        return "a number"
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text[:80]


def _check_contents(data: dict[str, Any]) -> None:
    """The values that compare and resume read: statuses, steps, seeds and accuracies."""
    if "status" in data and data["status"] not in STATUSES:
        raise ValueError(f"run record key 'status' must be one of {STATUSES}, got "
                         f"{_short(data['status'])}")
    if not all(isinstance(m, dict) and isinstance(m.get("step"), int)
               for m in data.get("metrics", [])):
        raise ValueError("run record 'metrics' must be a list of dicts with an int 'step'")
    for key in ("steps", "seed", "batch_size"):
        value = data["config"].get(key)
        if key in data["config"] and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError(f"run record config {key!r} must be an int, got {_short(value)}")
    if "recipe" in data["config"] and not isinstance(data["config"]["recipe"], str):
        raise ValueError(f"run record config 'recipe' must be a string, got "
                         f"{_short(data['config']['recipe'])}")
    numbers = [("results", k, data.get("results", {}).get(k)) for k in
               ("test", "best_dev", "final_dev")]
    numbers += [("teacher", k, data.get("teacher", {}).get(k)) for k in
                ("test_accuracy", "dev_accuracy", "steps")]
    numbers += [("metrics", k, row.get(k)) for row in data.get("metrics", [])
                for k in (*SHARE_KEYS.values(), "dev_accuracy")]
    for where, key, value in numbers:
        if value is not None and (not isinstance(value, _NUMBER) or isinstance(value, bool)):
            raise ValueError(f"run record {where} {key!r} must be a number or null, got "
                             f"{_short(value)}")


def _finite(value: Any) -> Any:
    """Replace NaN and infinities by None, recursively (json's NaN is not standard JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def save_record(record: RunRecord, path: str | os.PathLike) -> Path:
    """Write ``record`` as JSON to ``path`` atomically (a reader never sees half a file).

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> p = save_record(RunRecord(config={"recipe": "ce"}), Path(d) / "run.json")
    >>> load_record(p).recipe
    'ce'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record.to_dict(), indent=1, allow_nan=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_record(path: str | os.PathLike) -> RunRecord:
    """Read a record written by :func:`save_record`; ValueError names the file if invalid.

    A record that says ``running`` whose process is gone is returned as ``crashed``
    (:func:`sinkd.distill.run_status.resolve`).
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise ValueError("it is a directory, not a run record file")
        record = RunRecord.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such run record") from None
    except RecursionError:  # json's decoder recurses once per nesting level
        raise ValueError(f"{path}: not a valid run record: JSON nested too deeply") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a valid run record: {exc}") from None
    record.status = resolve(record.status, record.process, record.heartbeat)
    return record


def transport_snapshot(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       labels: torch.Tensor, *, reg: float, n_iters: int,
                       temperature: float) -> dict[str, Any]:
    """A batch's logits, labels and SinKD plan P (N, N) after ``n_iters`` scalings, as lists.

    The transport page opens it as its "latest distillation batch". Computed in float64 with
    unit masses, like the SinKD term (:func:`sinkd.sinkd_loss`).

    Examples
    --------
    >>> z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> snap = transport_snapshot(z, z, torch.tensor([0, 1]), reg=0.1, n_iters=20,
    ...                           temperature=2.0)
    >>> [round(sum(col), 6) for col in zip(*snap["plan"])]  # columns are exact after each scaling
    [1.0, 1.0]
    """
    z_s = student_logits.detach().double().cpu()  # (N, C)
    z_t = teacher_logits.detach().double().cpu()  # (N, C)
    D = pairwise_cost(torch.softmax(z_s / temperature, -1),
                      torch.softmax(z_t / temperature, -1))  # (N, N) L1 cost
    ones = torch.ones(len(D), dtype=D.dtype)  # unit masses
    plan = sinkhorn(ones, ones, D, reg, n_iters=n_iters, tol=0).plan  # (N, N)
    return dict(student_logits=z_s.tolist(), teacher_logits=z_t.tolist(), labels=labels.tolist(),
                plan=plan.tolist(), reg=reg, n_iters=n_iters, temperature=temperature)


def versions() -> dict[str, str]:
    """Versions of torch, transformers and sinkd (the last two from package metadata, so
    transformers is not imported for it)."""
    return {"torch": torch.__version__, "transformers": importlib.metadata.version("transformers"),
            "sinkd": sinkd.__version__}


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def full_config(config: dict[str, Any]) -> dict[str, Any]:
    """A record's config with every DistillConfig field: those added after the record was
    written take their defaults, which reproduce what runs did before the field existed.

    >>> full_config({"recipe": "ce"})["teacher_lr"]
    5e-05
    """
    return {**asdict(DistillConfig()), **config}
