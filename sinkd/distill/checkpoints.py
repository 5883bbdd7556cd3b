"""Stop and resume a distillation run: the state a stopped run leaves beside its record.

A run stopped after k of its steps writes ``<record>.resume.pt`` (next to ``<record>.json``):
the student's weights, the AdamW state, the best-dev checkpoint so far, the step k and torch's
random state (dropout). Batches depend only on (step, seed)
(:func:`sinkd.distill.steps.get_batch`), so :func:`sinkd.distill.train.train` with
``resume_from=<record>`` continues at step k + 1 exactly as the uninterrupted run would have
(bit for bit on the CPU). The file is deleted once the resumed run finishes.

Under torchrun, rank 0 writes it, with every rank's random state (each draws its own dropout
masks); every rank reads it on ``--resume``, so the files must be on a file system they share.
A run may resume on another number of processes: the batches are global, so only dropout's
masks then differ from the uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from sinkd.distill.config import DistillConfig
from sinkd.distill.records import RunRecord, full_config, load_record

# config fields a resumed run may change: where it runs and where its record goes
RESUMABLE_CHANGES = frozenset({"device", "out", "cache_dir"})


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


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read :func:`save_checkpoint`'s file (tensors and plain values only: weights_only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


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


def resumable(record_path: str | os.PathLike, config_fields: dict[str, Any],
              ) -> tuple[RunRecord, dict[str, Any] | None]:
    """The stopped record at ``record_path`` and its resume state, checked against a config.

    Parameters
    ----------
    record_path : path-like
        A run record written by a run that was stopped.
    config_fields : dict
        The resuming run's config (``dataclasses.asdict``); it must equal the record's except
        for :data:`RESUMABLE_CHANGES`.

    Returns
    -------
    (RunRecord, dict or None)
        The state is None when the run stopped before its first step (nothing to restore: the
        run starts from step 0).

    Raises
    ------
    ValueError
        Naming ``resume_from``: not a record, not stopped, another config, state file missing
        or not matching the record's steps.
    """
    try:
        record = load_record(record_path)
    except ValueError as exc:
        raise ValueError(f"resume_from: {exc}") from None
    if not record.stopped:
        raise ValueError(f"resume_from must be a stopped run's record; {record_path} finished "
                         f"all its {len(record.metrics)} steps")
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
    if not path.is_file():
        raise ValueError(f"resume_from: {path} (the state of {record_path}) is missing; the run "
                         "cannot be resumed, start it again")
    state = load_checkpoint(path)
    if state["step"] != len(record.metrics):
        raise ValueError(f"resume_from: {path} holds step {state['step']} but the record has "
                         f"{len(record.metrics)} steps")
    return record, state


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
