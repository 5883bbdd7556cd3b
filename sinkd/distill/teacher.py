"""The teacher: fine-tuned once per teacher, data and settings, then cached with its logits.

:func:`teacher_cache` names the cache entry of a teacher (its key covers all that shapes it,
data included); :func:`prepare_teacher` fine-tunes the teacher with :data:`TEACHER_RECIPE` (a
supervised cross-entropy phase, before and apart from distillation), then caches it and its
logits on every split with the checksums and settings that let a later run trust them
(:mod:`sinkd.distill.cache`): an entry changed, truncated or made otherwise is recomputed.
Distillation (:func:`sinkd.distill.train.train`) reads only those logits: the teacher never
runs in its loop. Under torchrun rank 0 alone prepares the teacher;
the other processes wait for it, then find it cached (:func:`sinkd.distill.parallel.main_first`).
Otherwise one process at a time builds an entry (a file lock per key): two runs, or an app and a
command line, started at once on one teacher fine-tune it once, the second reading the first's
entry (two builders would delete and rewrite each other's files).
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import filelock
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sinkd.distill import models
from sinkd.distill.cache import CacheError
from sinkd.distill.config import DistillConfig
from sinkd.distill.data import SPLIT_NAMES, Splits
from sinkd.distill.steps import batch_logits, get_batch, lr_at, make_optimizer, optimizer_step

TEACHER_SEED = 0  # the teacher is fine-tuned with one seed: every student seed distils the same one
# the teacher's own fine-tuning recipe, fixed so that every student setting shares one teacher
# (MiniLM-L6 on Rotten Tomatoes with it: 72% after 50 steps, 79% after 100, 80% after 150)
TEACHER_RECIPE = dict(batch_size=32, weight_decay=0.01, warmup_fraction=0.1)  # lr: teacher_lr
LOCK_POLL_S = 1.0  # how often a run waiting for another process's teacher asks should_stop


class CacheWarning(UserWarning):
    """A cached teacher entry failed its checks (named in the message) and is recomputed."""


class RunStoppedError(Exception):
    """should_stop() returned True while the teacher was being fine-tuned (nothing cached)."""


class PreparedTeacher(NamedTuple):
    """:func:`prepare_teacher`'s result: the teacher (when it ran) and its logits per split."""

    model: nn.Module | None  # None when read from the cache: not loaded, let alone run
    logits: dict[str, Tensor]  # "train" | "dev" | "test": (N_split, C) float32 on the CPU


def teacher_recipe(config: DistillConfig) -> dict[str, Any]:
    """The teacher's fine-tuning settings: :data:`TEACHER_RECIPE` and ``config.teacher_lr``."""
    return {**TEACHER_RECIPE, "lr": config.teacher_lr}


def teacher_cache(config: DistillConfig, splits: Splits) -> tuple[models.CacheDir, str]:
    """(cache, key) of the fine-tuned teacher; the key covers all that shapes it, data included."""
    data = f"{splits.name}-{splits.fingerprint()}-{sorted(teacher_recipe(config).items())}"
    key = models.teacher_cache_key(config.teacher_path(), data, max_length=config.max_length,
                                   steps=config.teacher_steps, seed=TEACHER_SEED)
    root = Path(config.cache_dir) if config.cache_dir else models.default_cache_dir()
    return models.CacheDir(root), key


def teacher_settings(config: DistillConfig, splits: Splits) -> dict[str, Any]:
    """What makes a cached teacher and its logits: stored in the entry's manifest and checked
    on every load (the key hashes the same things; this says them in the clear)."""
    return dict(teacher=config.teacher_path(), data=splits.name, fingerprint=splits.fingerprint(),
                recipe=teacher_recipe(config), max_length=config.max_length,
                teacher_steps=config.teacher_steps, seed=TEACHER_SEED,
                shapes={s: [len(getattr(splits, s)), splits.train.num_labels]
                        for s in SPLIT_NAMES})


def prepare_teacher(config: DistillConfig, splits: Splits, *,
                    on_progress: Callable[[dict], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> PreparedTeacher:
    """Fine-tune the teacher once on train, cache it and its logits on every split.

    Later calls with the same teacher, data and settings load the cached logits and return
    ``PreparedTeacher(None, logits)``: the teacher is not loaded, let alone run. The entry is
    verified first (:meth:`~sinkd.distill.cache.CacheDir.load_entry`: the sha256 of every file,
    the settings, the logits' shapes and finiteness); one that fails is named in a
    :class:`CacheWarning` and recomputed.
    ``on_progress`` receives ``{"phase": "wait" | "fine-tune" | "logits" | "cache", "done": int,
    "total": int, ...}`` ("wait": another process is building this entry; this one then reads
    it); ``should_stop`` is asked before every fine-tuning step and while waiting (True raises
    :class:`RunStoppedError`, caching nothing).

    Returns
    -------
    PreparedTeacher
        The teacher comes back frozen (``requires_grad`` False, no ``.grad``), in eval mode.
    """
    cache, key = teacher_cache(config, splits)
    settings = teacher_settings(config, splits)
    cached = _cached(cache, key, settings, warn=True)
    if cached is None:
        with _building(cache, key, on_progress, should_stop):
            cached = _cached(cache, key, settings, warn=False)  # another process's, meanwhile
            if cached is None:
                return _build(config, splits, cache, key, settings, on_progress=on_progress,
                              should_stop=should_stop)
    _emit(on_progress, phase="cache", done=1, total=1, key=key)
    return PreparedTeacher(None, cached)


def _cached(cache: models.CacheDir, key: str, settings: dict[str, Any], *,
            warn: bool) -> dict[str, Tensor] | None:
    """The entry's verified logits, or None: absent, or failing its checks (named in a
    :class:`CacheWarning` when ``warn``; the entry is a pure function of the settings, so it is
    rebuilt)."""
    try:
        return cache.load_entry(key, settings, {s: tuple(v) for s, v in
                                                settings["shapes"].items()})
    except CacheError as e:
        if warn:
            warnings.warn(f"{e}: recomputing the cached teacher {cache.teacher_dir(key)}",
                          CacheWarning, stacklevel=3)
        return None


@contextlib.contextmanager
def _building(cache: models.CacheDir, key: str, on_progress: Callable[[dict], None] | None,
              should_stop: Callable[[], bool] | None) -> Iterator[None]:
    """Hold ``key``'s lock file while the block runs: waits (``{"phase": "wait"}``) while
    another process builds the entry, asking ``should_stop`` every :data:`LOCK_POLL_S`."""
    path = cache.lock_file(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(path)
    waited = False
    while True:
        try:
            lock.acquire(timeout=0 if not waited else LOCK_POLL_S)
            break
        except filelock.Timeout:
            if not waited:
                waited = True
                _emit(on_progress, phase="wait", done=0, total=1, key=key)
            if should_stop is not None and should_stop():
                raise RunStoppedError("stopped while another process prepared the same "
                                      "teacher") from None
    if waited:
        _emit(on_progress, phase="wait", done=1, total=1, key=key)
    try:
        yield
    finally:
        lock.release()


def _build(config: DistillConfig, splits: Splits, cache: models.CacheDir, key: str,
           settings: dict[str, Any], *, on_progress: Callable[[dict], None] | None,
           should_stop: Callable[[], bool] | None) -> PreparedTeacher:
    """Fine-tune the teacher, then write its entry: folder, logits, manifest last."""
    device = models.select_device(config.device)
    tokenizer = models.load_tokenizer(config.teacher_path())
    model = models.load_classifier(config.teacher_path(), splits.train.num_labels,
                                   label_names=splits.train.label_names, seed=TEACHER_SEED)
    model.to(device)
    if config.teacher_steps > 0:
        _fine_tune(model, models.encode_split(tokenizer, splits.train, config.max_length), config,
                   on_progress=on_progress, should_stop=should_stop)
    model.requires_grad_(False).zero_grad(set_to_none=True)
    model.eval()
    cache.remove(key, SPLIT_NAMES)  # a stale or partial entry: nothing of it survives
    model.save_pretrained(cache.teacher_dir(key))
    tokenizer.save_pretrained(cache.teacher_dir(key))
    logits = {}
    for s in SPLIT_NAMES:
        logits[s] = models.teacher_logits(
            model, tokenizer, getattr(splits, s), max_length=config.max_length,
            batch_size=4 * config.batch_size, device=device,
            on_batch=lambda done, n, s=s: _emit(on_progress, phase="logits", split=s, done=done,
                                                total=n))
        if not torch.isfinite(logits[s]).all():  # a diverged fine-tuning: never cache it
            cache.remove(key, SPLIT_NAMES)
            raise ValueError(f"the fine-tuned teacher gives NaN or inf logits on the {s} split: "
                             f"its fine-tuning diverged; lower teacher_lr (now "
                             f"{config.teacher_lr}) or teacher_steps")
        cache.save_logits(key, s, logits[s])
    cache.write_manifest(key, settings, SPLIT_NAMES)  # last: it marks a complete entry
    return PreparedTeacher(model, logits)


def _fine_tune(model: nn.Module, train: dict[str, Tensor], config: DistillConfig, *,
               on_progress: Callable[[dict], None] | None,
               should_stop: Callable[[], bool] | None) -> None:
    """``config.teacher_steps`` cross-entropy steps on the tokenized train split, with the
    student's batches, schedule and optimiser at :func:`teacher_recipe`'s settings."""
    tc = dataclasses.replace(config, steps=config.teacher_steps, seed=TEACHER_SEED,
                             **teacher_recipe(config))
    device = next(model.parameters()).device
    torch.manual_seed(TEACHER_SEED)  # dropout
    optimizer, generator = make_optimizer(model, tc), torch.Generator()
    model.train()
    for step in range(tc.steps):
        if should_stop is not None and should_stop():
            raise RunStoppedError(f"stopped after {step} of {tc.steps} teacher steps")
        batch = {k: v.to(device) for k, v in get_batch(train, step, tc,
                                                       generator=generator).items()}
        loss = F.cross_entropy(batch_logits(model, batch), batch["labels"])
        optimizer_step(model, optimizer, loss, lr=lr_at(step, tc))
        _emit(on_progress, phase="fine-tune", done=step + 1, total=tc.steps, loss=loss.item())


def _emit(callback: Callable[[dict], None] | None, **event: Any) -> None:
    if callback is not None:
        callback(event)
