"""The teacher's side of distillation: the data, the fine-tuned teacher and its cached logits.

:func:`load_data` cuts each split to its limit (the same rows for every run), :func:`encode_split`
tokenizes a split once, :func:`teacher_cache` names the cache entry of a teacher (its key covers
all that shapes it, data included) and :func:`prepare_teacher` fine-tunes the teacher once with
:data:`TEACHER_RECIPE`, then caches it and its logits on every split. Distillation
(:func:`sinkd.distill.train`) reads only those logits: the teacher never runs in its loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from sinkd.distill import data as distill_data
from sinkd.distill import models as distill_models

if TYPE_CHECKING:  # type hints only: sinkd.distill imports this module
    from sinkd.distill.train import DistillConfig

TEACHER_SEED = 0  # the teacher is fine-tuned with one seed: every student seed distils the same one
SUBSET_SEED = 0  # train_limit / eval_limit draw the same rows for every run (and the cache key)
# the teacher's own fine-tuning recipe, fixed so that every student setting shares one teacher
# (MiniLM-L6 on Rotten Tomatoes with it: 72% after 50 steps, 79% after 100, 80% after 150)
TEACHER_RECIPE = dict(batch_size=32, weight_decay=0.01, warmup_fraction=0.1)  # lr: teacher_lr


def teacher_recipe(config: DistillConfig) -> dict:
    """The teacher's fine-tuning settings: :data:`TEACHER_RECIPE` and ``config.teacher_lr``."""
    return {**TEACHER_RECIPE, "lr": config.teacher_lr}
SPLITS = ("train", "dev", "test")


class RunStoppedError(Exception):
    """should_stop() returned True while the teacher was being fine-tuned (nothing cached)."""


def load_data(config: DistillConfig) -> distill_data.Splits:
    """The splits of ``config.data``, each cut to its limit by a fixed random subset.

    >>> from sinkd.distill.train import DistillConfig
    >>> splits = load_data(DistillConfig(train_limit=8, eval_limit=4))
    >>> [len(splits.train), len(splits.dev), len(splits.test)]
    [8, 4, 4]
    """
    splits = distill_data.load_splits(config.data)

    def cut(data: distill_data.TextData, limit: int | None, salt: int) -> distill_data.TextData:
        if limit is None or limit >= len(data):
            return data
        g = torch.Generator().manual_seed(SUBSET_SEED + salt)
        return data.subset(torch.randperm(len(data), generator=g)[:limit].sort().values.tolist())

    return dataclasses.replace(splits, train=cut(splits.train, config.train_limit, 0),
                               dev=cut(splits.dev, config.eval_limit, 1),
                               test=cut(splits.test, config.eval_limit, 2))


def encode_split(tokenizer, data: distill_data.TextData, max_length: int) -> dict[str, Tensor]:
    """A split tokenized once: input_ids, masks (N, L) padded to the longest row; labels (N,)."""
    encodings = distill_models.encode(tokenizer, data.texts, data.texts_b, max_length=max_length)
    return {**encodings, "labels": torch.tensor(data.labels, dtype=torch.long)}


def teacher_cache(config: DistillConfig,
                  splits: distill_data.Splits) -> tuple[distill_models.CacheDir, str]:
    """(cache, key) of the fine-tuned teacher; the key covers all that shapes it, data included."""
    data = f"{splits.name}-{splits.fingerprint()}-{sorted(teacher_recipe(config).items())}"
    key = distill_models.teacher_cache_key(config.teacher_path(), data, config.max_length,
                                           config.teacher_steps, TEACHER_SEED)
    root = Path(config.cache_dir) if config.cache_dir else distill_models.default_cache_dir()
    return distill_models.CacheDir(root), key


def prepare_teacher(config: DistillConfig, splits: distill_data.Splits,
                    on_progress: Callable[[dict], None] | None = None,
                    should_stop: Callable[[], bool] | None = None,
                    ) -> tuple[torch.nn.Module | None, dict[str, Tensor]]:
    """Fine-tune the teacher once on train, cache it and its logits on every split.

    Later calls with the same teacher, data and settings load the cached logits and return
    ``(None, logits)``: the teacher is not loaded, let alone run. ``on_progress`` receives
    ``{"phase": "fine-tune" | "logits" | "cache", "done": int, "total": int, ...}``.

    Returns
    -------
    (teacher or None, {"train" | "dev" | "test": tensor (N_split, C) float32 on the CPU})
        The teacher comes back frozen (``requires_grad`` False, no ``.grad``), in eval mode.
    """
    # the loop's parts, imported here: sinkd.distill imports this module at load time
    from sinkd.distill.train import _autocast, _inputs, _step, get_batch, lr_at, make_optimizer

    cache, key = teacher_cache(config, splits)
    logits = {s: cache.load_logits(key, s) for s in SPLITS}
    if all(v is not None and len(v) == len(getattr(splits, s)) for s, v in logits.items()) and (
            cache.teacher_dir(key).is_dir()):
        _emit(on_progress, phase="cache", done=1, total=1, key=key)
        return None, logits
    device = distill_models.select_device(config.device)
    tokenizer = distill_models.load_tokenizer(config.teacher_path())
    model = distill_models.load_classifier(config.teacher_path(), splits.train.num_labels,
                                           label_names=splits.train.label_names, seed=TEACHER_SEED)
    model.to(device)
    if config.teacher_steps > 0:  # supervised CE phase, before and apart from distillation
        tc = dataclasses.replace(config, steps=config.teacher_steps, seed=TEACHER_SEED,
                                 **teacher_recipe(config))
        torch.manual_seed(TEACHER_SEED)
        enc = encode_split(tokenizer, splits.train, tc.max_length)
        opt, gen = make_optimizer(model, tc), torch.Generator()
        model.train()
        for step in range(tc.steps):
            if should_stop is not None and should_stop():
                raise RunStoppedError(f"stopped after {step} of {tc.steps} teacher steps")
            batch = {k: v.to(device) for k, v in get_batch(enc, None, step, tc, gen).items()}
            with _autocast(device):
                z = model(**_inputs(batch)).logits  # (B, C)
            loss = F.cross_entropy(z.float(), batch["labels"])
            _step(model, opt, loss, lr_at(step, tc))
            _emit(on_progress, phase="fine-tune", done=step + 1, total=tc.steps, loss=loss.item())
    model.requires_grad_(False).zero_grad(set_to_none=True)
    model.eval()
    model.save_pretrained(cache.teacher_dir(key))
    tokenizer.save_pretrained(cache.teacher_dir(key))
    for s in SPLITS:  # logits last: their presence marks a complete cache entry
        logits[s] = distill_models.teacher_logits(
            model, tokenizer, getattr(splits, s), max_length=config.max_length,
            batch_size=4 * config.batch_size, device=device,
            on_batch=lambda done, n, s=s: _emit(on_progress, phase="logits", split=s, done=done,
                                                total=n))
        cache.save_logits(key, s, logits[s])
    return model, logits


def _emit(callback: Callable[[dict], None] | None, **event) -> None:
    if callback is not None:
        callback(event)


