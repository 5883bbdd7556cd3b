r"""Distil a fine-tuned BERT teacher into a small BERT student, nanoGPT style.

Read top to bottom: :func:`load_data` (fixed subsets of each split), :func:`evaluate`,
:func:`student_step` (forward, the recipe's loss, AdamW), then :func:`train`, the loop. The
settings are a :class:`~sinkd.distill.config.DistillConfig`; the batches, the schedule and the
optimiser (:func:`~sinkd.distill.steps.get_batch`, :func:`~sinkd.distill.steps.lr_at`) are shared
with the teacher's fine-tuning (:mod:`sinkd.distill.steps`), and the losses are the
:data:`~sinkd.distill.recipes.RECIPES`. The teacher is fine-tuned once and its logits cached
(:func:`~sinkd.distill.teacher.prepare_teacher`); distillation reads only those logits, so the
teacher never runs in the loop (the reference code ran a wasted teacher backward every step).
The ``sinkd`` recipe is the reference objective of :func:`sinkd.distillation_objective`:

.. math::
    \mathcal{L} = (1 - \alpha)\, \mathrm{CE}(z^s, y) + \alpha\, \mathrm{KD}_{T}(z^s, z^t)
        + \beta\, \mathcal{L}_{\mathrm{SinKD}}(z^s, z^t)
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from sinkd.distill import checkpoints, models
from sinkd.distill.config import DistillConfig
from sinkd.distill.data import SPLIT_NAMES, Splits, TextData, load_splits
from sinkd.distill.recipes import RECIPES, kd_temperature_at, progress_at
from sinkd.distill.records import RunRecord, now, save_record, transport_snapshot, versions
from sinkd.distill.steps import batch_logits, get_batch, lr_at, make_optimizer, optimizer_step
from sinkd.distill.teacher import PreparedTeacher, RunStoppedError, prepare_teacher, teacher_cache
from sinkd.objective import ObjectiveTerms

SUBSET_SEED = 0  # train_limit / eval_limit: the same rows for every run, so one cached teacher
PARTS = ("ce", "kd", "sinkhorn")  # the loss terms logged per step (None where the recipe has none)


# ----------------------------------------------------------------------------- data
def load_data(config: DistillConfig) -> Splits:
    """The splits of ``config.data``: train cut to ``train_limit`` rows, dev and test to
    ``eval_limit``, each by a fixed random subset kept in its original order (the same rows
    for every run); None, or a limit above a split's size, keeps the split whole.

    >>> splits = load_data(DistillConfig(train_limit=8, eval_limit=4))
    >>> [len(splits.train), len(splits.dev), len(splits.test)]
    [8, 4, 4]
    """
    def cut(data: TextData, limit: int | None, salt: int) -> TextData:
        if limit is None or limit >= len(data):
            return data
        g = torch.Generator().manual_seed(SUBSET_SEED + salt)
        return data.subset(torch.randperm(len(data), generator=g)[:limit].sort().values.tolist())

    splits = load_splits(config.data)
    return dataclasses.replace(splits, train=cut(splits.train, config.train_limit, 0),
                               dev=cut(splits.dev, config.eval_limit, 1),
                               test=cut(splits.test, config.eval_limit, 2))


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: nn.Module, split: dict[str, Tensor], config: DistillConfig) -> float:
    """Accuracy of ``model`` on a tokenized split with ``labels`` (argmax of its logits).

    No-grad batches of ``4 * batch_size`` rows, each trimmed to its longest row; the model's
    train/eval mode is restored.
    """
    device, was_training = next(model.parameters()).device, model.training
    model.eval()
    labels, size, correct = split["labels"], 4 * config.batch_size, 0
    for start in range(0, len(labels), size):
        rows = slice(start, start + size)
        length = int(split["attention_mask"][rows].sum(1).max())  # right padding: trim
        z = batch_logits(model, {k: v[rows, :length].to(device) for k, v in split.items()
                                 if v.dim() == 2})  # (b, C)
        correct += int((z.argmax(-1).cpu() == labels[rows]).sum())
    model.train(was_training)
    return correct / len(labels)


# ----------------------------------------------------------------------------- one step
def student_step(student: nn.Module, optimizer: torch.optim.Optimizer, batch: dict[str, Tensor],
                 config: DistillConfig, *, step: int) -> tuple[ObjectiveTerms, Tensor]:
    """One update of the student on ``batch`` (with ``teacher_logits``): forward, the recipe's
    loss in float32 (the Sinkhorn term included), AdamW at ``lr_at(step)``.

    Returns the loss terms and the student's logits (B, C) in float32.
    """
    z_s = batch_logits(student, batch)  # (B, C)
    terms = RECIPES[config.recipe].loss(z_s, batch["teacher_logits"], batch["labels"],
                                        config=config, progress=progress_at(step, config.steps))
    optimizer_step(student, optimizer, terms.total, lr=lr_at(step, config))
    return terms, z_s


# ----------------------------------------------------------------------------- the loop
def train(config: DistillConfig, on_step: Callable[[dict], None] | None = None, *,
          should_stop: Callable[[], bool] | None = None,
          on_progress: Callable[[dict], None] | None = None,
          prepared: PreparedTeacher | None = None,
          resume_from: str | os.PathLike | None = None) -> RunRecord:
    """Distil the teacher into a student with ``config.recipe``; return the run record.

    Parameters
    ----------
    config : DistillConfig
        Every setting; validated first (ValueError names a bad field).
    on_step : callable, optional
        Called after every step with that step's metrics dict (``step``, ``lr``,
        ``kd_temperature``, ``loss``, ``ce``, ``kd``, ``sinkhorn``, ``examples_per_s``, and
        ``dev_accuracy`` on evaluation steps) plus ``steps``, the total.
    should_stop : callable, optional
        Asked before every step (and teacher step); True ends the run cleanly, the record
        says ``stopped`` and holds exactly the finished steps.
    on_progress : callable, optional
        Events of the teacher phase (see :func:`~sinkd.distill.teacher.prepare_teacher`).
    prepared : PreparedTeacher, optional
        :func:`~sinkd.distill.teacher.prepare_teacher`'s result for this config and data.
    resume_from : path-like, optional
        The record of a stopped run with the same config (``device``, ``out`` and
        ``cache_dir`` may differ): continue it from its last finished step, exactly as if it
        had not stopped (see :mod:`sinkd.distill.checkpoints`). A stopped run with
        ``config.out`` leaves that state.

    Returns
    -------
    RunRecord
        Test accuracy is measured once, on the best-dev checkpoint (``results["test"]``), beside
        the final and best dev accuracies. With ``config.out`` the record is also written, at
        the start, after every evaluation and at the end (atomically).
    """
    config.validate()
    record, state = _begin(config, resume_from)
    t0 = time.time() - record.wall_time_s  # a resumed run's clock goes on
    # device: bfloat16 autocast on CUDA; the losses, Sinkhorn term included, in float32
    device = models.select_device(config.device)
    record.device, record.versions = str(device), versions()
    # data: fixed subsets of each split
    splits = load_data(config)
    record.data = dict(name=splits.name, source=splits.source, labels=list(
        splits.train.label_names), **{s: len(getattr(splits, s)) for s in SPLIT_NAMES})
    # teacher logits: computed once, then cached; the teacher never runs in the loop
    try:
        teacher, logits = prepared or prepare_teacher(config, splits, on_progress=on_progress,
                                                      should_stop=should_stop)
    except RunStoppedError as stop:
        record.stopped, record.ended, record.teacher = True, now(), {"stopped": str(stop)}
        return _write(record, config, t0)
    # student: the fine-tuned teacher's first layers, or that shape with random weights
    student, tokenizer, record.teacher = _student(config, splits, teacher, logits)
    student.to(device)
    enc = {s: models.encode_split(tokenizer, getattr(splits, s), config.max_length)
           for s in SPLIT_NAMES}
    optimizer, generator = make_optimizer(student, config), torch.Generator()
    best, start, last = None, 0, None  # best: (dev accuracy, step, weights on the CPU)
    if state is not None:  # resume: weights, AdamW moments, best so far, dropout's generator
        student.load_state_dict(state["student"])
        optimizer.load_state_dict(state["optimizer"])
        best, start = state["best"], state["step"]
        checkpoints.restore_random_state(state)
    _write(record, config, t0)
    # loop: one AdamW step per batch; dev accuracy every eval_every steps and at the end
    for step in range(start, config.steps):
        if should_stop is not None and should_stop():
            record.stopped = True
            if config.out is not None and step > 0:  # resume_from needs it (before best loads)
                record.checkpoint = str(checkpoints.save_checkpoint(
                    checkpoints.checkpoint_path(config.out), student=student, optimizer=optimizer,
                    best=best, step=step))
            break
        tic = time.perf_counter()
        batch = {k: v.to(device) for k, v in get_batch(
            enc["train"], step, config, logits=logits["train"], generator=generator).items()}
        terms, z_s = student_step(student, optimizer, batch, config, step=step)
        row = _metrics(terms, config, step)  # one host sync for all the loss terms
        row["examples_per_s"] = len(batch["labels"]) / (time.perf_counter() - tic)
        if step + 1 == config.steps or (step + 1) % config.eval_every == 0:
            row["dev_accuracy"] = evaluate(student, enc["dev"], config)
            if best is None or row["dev_accuracy"] > best[0]:  # ties keep the earlier one
                best = (row["dev_accuracy"], step + 1, {k: v.detach().to("cpu", copy=True)
                                                        for k, v in student.state_dict().items()})
        record.metrics.append(row)
        last = (z_s.detach(), batch["teacher_logits"], batch["labels"])
        if on_step is not None:
            on_step({**row, "steps": config.steps})
        if "dev_accuracy" in row:
            _write(record, config, t0)
    # end: test accuracy once, on the best-dev checkpoint; final dev reported beside it
    if best is not None:
        student.load_state_dict(best[2])
    test = evaluate(student, enc["test"], config) if best is not None else None
    record.results = _results(record.metrics, best, test)
    if last is not None:
        record.last_batch = transport_snapshot(*last, reg=config.reg, n_iters=config.n_iters,
                                               temperature=config.sinkhorn_temperature)
    record.ended = now()
    if resume_from is not None and not record.stopped:  # finished: its resume state is spent
        record.checkpoint = None
        _write(record, config, t0)
        checkpoints.checkpoint_path(resume_from).unlink(missing_ok=True)
    return _write(record, config, t0)


# ----------------------------------------------------------------------------- the loop's helpers
def _begin(config: DistillConfig, resume_from: str | os.PathLike | None,
           ) -> tuple[RunRecord, dict[str, Any] | None]:
    """A new record, or the stopped run's record to continue, with its resume state (or None)."""
    fields = dataclasses.asdict(config)
    if resume_from is None:
        return RunRecord(config=fields, started=now()), None
    record, state = checkpoints.resumable(resume_from, fields)
    record.config, record.stopped, record.ended = fields, False, None
    record.resumed_at = [*record.resumed_at, len(record.metrics)]
    return record, state


def _student(config: DistillConfig, splits: Splits, teacher: nn.Module | None,
             logits: dict[str, Tensor]) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(student in train mode, tokenizer, teacher summary for the record)."""
    cache, key = teacher_cache(config, splits)
    teacher_dir = cache.teacher_dir(key)
    base = teacher or models.load_classifier(teacher_dir, splits.train.num_labels)
    torch.manual_seed(config.seed)
    student = (models.make_small_student(base.config, config.student_layers,
                                         base.config.hidden_size, seed=config.seed)
               if config.student_from_scratch else models.make_student(base, config.student_layers))
    summary = dict(path=config.teacher_path(), steps=config.teacher_steps, cache=str(teacher_dir),
                   from_cache=teacher is None, parameters=models.count_parameters(base),
                   student_parameters=models.count_parameters(student),
                   **{f"{s}_accuracy": _accuracy(logits[s], getattr(splits, s).labels)
                      for s in SPLIT_NAMES})
    return student.train(), models.load_tokenizer(teacher_dir), summary


def _accuracy(logits: Tensor, labels: tuple[int, ...]) -> float:
    return float((logits.argmax(-1) == torch.tensor(labels)).float().mean())


def _metrics(terms: ObjectiveTerms, config: DistillConfig, step: int) -> dict[str, Any]:
    """A step's row of the record: its lr, KD temperature and loss terms (None where the recipe
    has no such term)."""
    parts = RECIPES[config.recipe].parts
    values = torch.stack([terms.total.detach(), *(getattr(terms, p).detach() for p in PARTS)])
    values = values.tolist()
    return dict(step=step + 1, lr=lr_at(step, config),
                kd_temperature=kd_temperature_at(config, progress_at(step, config.steps)),
                loss=values[0], **{p: v if p in parts else None
                                   for p, v in zip(PARTS, values[1:], strict=True)})


def _results(metrics: list[dict[str, Any]], best: tuple | None,
             test: float | None) -> dict[str, Any]:
    """The record's results: steps done, final and best dev accuracy (and their steps), test."""
    evals = [row for row in metrics if "dev_accuracy" in row]
    return dict(steps_done=len(metrics), final_dev=evals[-1]["dev_accuracy"] if evals else None,
                final_dev_step=evals[-1]["step"] if evals else None,
                best_dev=best[0] if best else None, best_step=best[1] if best else None,
                test=test)


def _write(record: RunRecord, config: DistillConfig, t0: float) -> RunRecord:
    """Stamp the wall time and, with ``config.out``, save the record (atomically)."""
    record.wall_time_s = round(time.time() - t0, 3)
    if config.out is not None:
        save_record(record, config.out)
    return record
