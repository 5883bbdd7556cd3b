"""Stop and resume a distillation run: the state a stopped run leaves beside its record.

A run stopped after k of its steps writes ``<record>.resume.pt`` (next to ``<record>.json``):
the student's weights, the AdamW state, the best-dev checkpoint so far, the step k and torch's
random state (dropout). Batches depend only on (step, seed)
(:func:`sinkd.distill.steps.get_batch`), so :func:`sinkd.distill.train.train` with
``resume_from=<record>`` continues at step k + 1 exactly as the uninterrupted run would have
(bit for bit on the CPU). A running run also writes it every ``checkpoint_every`` steps, so a
run killed outright (kill -9, a crash: its record then reads ``crashed``) resumes from the last
one, its record's later rows dropped and redone. The file is deleted once the run finishes;
:func:`stale_states` finds those left behind (``python -m sinkd clean``).

Under torchrun, rank 0 writes it, with every rank's random state (each draws its own dropout
masks); every rank reads it on ``--resume``, so the files must be on a file system they share.
A run may resume on another number of processes: the batches are global, so only dropout's
masks then differ from the uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from sinkd.distill.config import DistillConfig
from sinkd.distill.records import RunRecord, full_config, load_record

# config fields a resumed run may change: where it runs, where its record goes, how often it
# saves its state
RESUMABLE_CHANGES = frozenset({"device", "out", "cache_dir", "checkpoint_every"})
STATE_KEYS = ("step", "best", "student", "optimizer")  # what every resume state holds


def checkpoint_path(record_path: str | os.PathLike) -> Path:
    """Where the resume state of the record at ``record_path`` lives.

    >>> checkpoint_path("runs/sinkd-seed0.json").as_posix()
    'runs/sinkd-seed0.resume.pt'
    """
    return Path(record_path).with_suffix(".resume.pt")


def random_state(device: torch.device) -> dict[str, torch.Tensor]:
    """This process's random state (dropout): the CPU generator's and, on CUDA, ``device``'s."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def save_checkpoint(path: str | os.PathLike, *, student: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, best: tuple | None, step: int,
                    ranks: list[dict[str, torch.Tensor]] | None = None) -> Path:
    """Write the resume state after ``step`` finished steps, atomically (temp file, rename).

    Parameters
    ----------
    path : path-like
        :func:`checkpoint_path` of the run's record.
    student, optimizer : the run's model and AdamW optimiser, as they are after ``step`` steps.
    best : tuple or None
        (best dev accuracy, its step, its state dict on the CPU), or None before any evaluation.
    step : int
        Finished steps; the resumed run starts at 0-based step ``step``.
    ranks : list of dict, optional
        Under torchrun, every rank's :func:`random_state`, in rank order (each rank draws its
        own dropout masks); None: this process's generators.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = dict(step=step, best=best, rng=torch.get_rng_state(),
                 student={k: v.detach().to("cpu", copy=True)
                          for k, v in student.state_dict().items()},
                 optimizer=optimizer.state_dict())
    if ranks is not None:
        state["ranks"] = ranks
    elif torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, *, mmap: bool = False) -> dict[str, Any]:
    """Read :func:`save_checkpoint`'s file (tensors and plain values only: weights_only).

    ``mmap=True`` maps the tensors' bytes instead of reading them (a check before the run,
    which reads the file again when it resumes: the weights and AdamW moments are most of it).
    Raises ValueError naming the file when it is not one: unreadable, truncated, a foreign
    pickle, or missing one of :data:`STATE_KEYS` or the random state.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError, KeyError,
            AttributeError, TypeError, IndexError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a resume state of sinkd: {first[:200]}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a resume state of sinkd: holds a "
                         f"{type(state).__name__}, not a dict")
    missing = [k for k in STATE_KEYS if k not in state]
    if "rng" not in state and "ranks" not in state:
        missing.append("rng")
    if missing:
        raise ValueError(f"{path}: not a resume state of sinkd: missing {missing}")
    if not isinstance(state["step"], int) or isinstance(state["step"], bool) or state["step"] < 1:
        raise ValueError(f"{path}: not a resume state of sinkd: step must be a positive int, got "
                         f"{state['step']!r:.40}")
    return state


def restore_random_state(state: dict[str, Any], rank: int = 0,
                         device: torch.device | None = None) -> bool:
    """Put torch's random generators back where the stopped run left them (dropout masks).

    A state saved under torchrun holds one per rank: ``rank``'s is restored (its CUDA generator
    on ``device``). Returns False, restoring nothing, when the state has none for ``rank`` (a run
    resumed on more processes than it stopped on).
    """
    if "ranks" not in state:
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return True
    if rank >= len(state["ranks"]):
        return False
    mine = state["ranks"][rank]
    torch.set_rng_state(mine["cpu"])
    if "cuda" in mine and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(mine["cuda"], device)
    return True


def resumable(record_path: str | os.PathLike, config_fields: dict[str, Any], *,
              mmap: bool = False) -> tuple[RunRecord, dict[str, Any] | None]:
    """The stopped or crashed record at ``record_path`` and its resume state, checked against
    a config.

    Parameters
    ----------
    record_path : path-like
        A run record written by a run that was stopped, or that crashed (its process died).
    config_fields : dict
        The resuming run's config (``dataclasses.asdict``); it must equal the record's except
        for :data:`RESUMABLE_CHANGES`.
    mmap : bool
        Map the state's tensors rather than read them (:func:`load_checkpoint`): for a check
        ahead of the run that discards the state.

    Returns
    -------
    (RunRecord, dict or None)
        The state is None when the run ended before its first step, or crashed before its
        first periodic checkpoint (nothing to restore: the run starts from step 0). A crashed
        run's record keeps only the rows up to its state's step (the rest are redone).

    Raises
    ------
    ValueError
        Naming ``resume_from``: not a record, finished or still running, another config, state
        file missing, unreadable or not matching the record's steps.
    """
    try:
        record = load_record(record_path)
    except ValueError as exc:
        raise ValueError(f"resume_from: {exc}") from None
    if record.status == "finished":
        raise ValueError(f"resume_from must be a stopped or crashed run's record; {record_path} "
                         f"finished all its {len(record.metrics)} steps")
    if record.status == "running":
        raise ValueError(f"resume_from: {record_path} is still running (process "
                         f"{_process_text(record)}); stop it first")
    before = full_config(record.config)
    changed = sorted(k for k in set(config_fields) | set(before)
                     if k not in RESUMABLE_CHANGES and config_fields.get(k) != before.get(k))
    if changed:
        diffs = ", ".join(f"{k}: {before.get(k)!r} -> {config_fields.get(k)!r}"
                          for k in changed)
        raise ValueError(f"resume_from: the config must equal the stopped run's (only "
                         f"{sorted(RESUMABLE_CHANGES)} may change); differs in {diffs}")
    if not record.metrics:
        return record, None
    path = checkpoint_path(record_path)
    if record.status == "crashed" and not path.is_file():  # died before its first checkpoint
        record.metrics = []
        return record, None
    if not path.is_file():
        raise ValueError(f"resume_from: {path} (the state of {record_path}) is missing; the run "
                         "cannot be resumed, start it again")
    try:
        state = load_checkpoint(path, mmap=mmap)
    except ValueError as exc:
        raise ValueError(f"resume_from: {exc}") from None
    # a crashed run's record may hold rows past its last checkpoint (written before it)
    steps = len(record.metrics)
    if state["step"] > steps or (record.status != "crashed" and state["step"] != steps):
        raise ValueError(f"resume_from: {path} holds step {state['step']} but the record has "
                         f"{steps} steps")
    record.metrics = record.metrics[:state["step"]]
    return record, state


def can_resume(record_path: str | os.PathLike, record: RunRecord) -> bool:
    """Whether ``resume_from=record_path`` can continue ``record`` (its loaded record): a
    crashed run always (from its last state, or step 0), a stopped one with its state on disk
    or before its first step.

    >>> can_resume("r.json", RunRecord(config={}, status="crashed"))
    True
    >>> can_resume("r.json", RunRecord(config={}, metrics=[{"step": 1}], status="finished"))
    False
    """
    if record.status == "stopped":
        return not record.metrics or checkpoint_path(record_path).is_file()
    return record.status == "crashed"


def _process_text(record: RunRecord) -> str:
    p = record.process or {}
    return f"pid {p.get('pid')} on {p.get('host')}"


def check_new_record(path: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse to start a new run whose record would replace another run's.

    A finished, stopped or crashed run's record at ``path`` is kept unless ``overwrite`` (one
    that ended before its first step holds nothing to lose: it is replaced); a running one
    (its process alive) always; a file there that is not a record too. ValueError says which,
    and how to go on (resume, overwrite, another name).
    """
    path = Path(path)
    if not path.exists():
        return
    try:
        record = load_record(path)
    except ValueError as exc:
        raise ValueError(f"out: {path} exists and is not a run record to replace ({exc}); "
                         "choose another path") from None
    if record.status == "running":
        raise ValueError(f"out: {path} is the record of a run still running "
                         f"({_process_text(record)}); choose another path")
    if overwrite or not record.metrics:
        return
    steps = f"{len(record.metrics)} of {record.config.get('steps')} steps"
    hint = (f"continue it with: python -m sinkd distill --resume {path}; "
            if record.status in ("stopped", "crashed") else "")
    raise ValueError(f"out: {path} already holds a {record.status} run ({steps}); {hint}"
                     "pass --overwrite (overwrite=True) to replace it, or choose another "
                     "--out")


def resume_states(folder: str | os.PathLike) -> list[tuple[Path, int, str | None]]:
    """Every resume state under ``folder`` (recursively): (path, size in bytes, its run's
    status, or None when its record is gone or unreadable), in path order."""
    out = []
    for state in sorted(Path(folder).rglob("*.resume.pt")):
        record_path = state.with_name(state.name[:-len(".resume.pt")] + ".json")
        try:
            status = load_record(record_path).status
        except ValueError:
            status = None
        try:
            out.append((state, state.stat().st_size, status))
        except OSError:  # removed meanwhile
            continue
    return out


def is_stale(status: str | None, abandon: bool = False) -> bool:
    """Whether no run will need a resume state whose run has ``status`` (None: no record).

    Its record is gone, unreadable or finished; with ``abandon`` also stopped or crashed (given
    up: the run can then no longer resume). A running run's state is never stale.

    >>> [is_stale(s) for s in (None, "finished", "stopped", "running")]
    [True, True, False, False]
    >>> is_stale("crashed", abandon=True)
    True
    """
    return status in (None, "finished") or (abandon and status in ("stopped", "crashed"))


def config_of(record: RunRecord) -> DistillConfig:
    """The config of a record, validated; fields added since it was written take their
    defaults, unknown keys are refused.

    >>> config_of(RunRecord(config={"recipe": "kd", "steps": 5})).steps
    5
    """
    names = {f.name for f in dataclasses.fields(DistillConfig)}
    unknown = sorted(set(record.config) - names)
    if unknown:
        raise ValueError(f"record config has unknown keys {unknown}")
    return DistillConfig(**record.config).validate()
