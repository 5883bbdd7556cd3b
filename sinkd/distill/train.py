r"""Distil a fine-tuned BERT teacher into a small BERT student, nanoGPT style.

Read top to bottom: :func:`load_data` (fixed subsets of each split), :func:`evaluate`,
:func:`student_step` (forward, the recipe's loss, AdamW), then :func:`train`, the loop. The
settings are a :class:`~sinkd.distill.config.DistillConfig`; the batches, the schedule and the
optimiser (:func:`~sinkd.distill.steps.get_batch`, :func:`~sinkd.distill.steps.lr_at`) are shared
with the teacher's fine-tuning (:mod:`sinkd.distill.steps`), and the losses are the
:data:`~sinkd.distill.recipes.RECIPES`. The teacher is fine-tuned once and its logits cached
(:func:`~sinkd.distill.teacher.prepare_teacher`); distillation reads only those logits, so the
teacher never runs in the loop (the reference code ran a wasted teacher backward every step).
Under torchrun the same loop runs on every process, each on its shard of every global batch
(:mod:`sinkd.distill.parallel`); rank 0 prepares the teacher, evaluates and writes.
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

from sinkd.distill import checkpoints, models, parallel, paths
from sinkd.distill.config import DistillConfig
from sinkd.distill.data import SPLIT_NAMES, Splits, TextData, load_splits
from sinkd.distill.gradients import NORM_KEYS, SHARE_KEYS, TOTAL_KEY, term_gradient_norms
from sinkd.distill.recipes import RECIPES, kd_temperature_at, progress_at
from sinkd.distill.records import RunRecord, now, save_record, transport_snapshot, versions
from sinkd.distill.run_status import HEARTBEAT_S, this_process
from sinkd.distill.steps import batch_logits, get_batch, lr_at, make_optimizer, optimizer_step
from sinkd.distill.teacher import PreparedTeacher, RunStoppedError, prepare_teacher, teacher_cache
from sinkd.objective import ObjectiveTerms

SUBSET_SEED = 0  # train_limit / eval_limit: the same rows for every run, so one cached teacher
PARTS = ("ce", "kd", "sinkhorn")  # the loss terms logged per step (None where the recipe has none)
RANK_SEED = 1_000_003  # rank r > 0 under torchrun draws dropout from seed + r * RANK_SEED


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

    splits = load_splits(config.data, data_dir=config.data_dir)
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
                 config: DistillConfig, *, step: int, grad_norms: bool = False,
                 ) -> tuple[ObjectiveTerms, Tensor, dict[str, float | None] | None]:
    """One update of the student on ``batch`` (with ``teacher_logits``): forward, the recipe's
    loss in float32 (the Sinkhorn term included), AdamW at ``lr_at(step)``.

    Returns the loss terms, the student's logits (B, C) in float32 and, with ``grad_norms``,
    each weighted term's gradient norm at those logits and its share
    (:func:`~sinkd.distill.gradients.term_gradient_norms`, taken before the update), else None.
    """
    z_s = batch_logits(student, batch)  # (B, C)
    recipe = RECIPES[config.recipe]
    terms = recipe.loss(z_s, batch["teacher_logits"], batch["labels"], config=config,
                        progress=progress_at(step, config.steps))
    norms = term_gradient_norms(terms, z_s, recipe.weights(config)) if grad_norms else None
    optimizer_step(student, optimizer, terms.total, lr=lr_at(step, config))
    return terms, z_s, norms


# ----------------------------------------------------------------------------- the loop
def train(config: DistillConfig, on_step: Callable[[dict], None] | None = None, *,
          should_stop: Callable[[], bool] | None = None,
          on_progress: Callable[[dict], None] | None = None,
          prepared: PreparedTeacher | None = None,
          resume_from: str | os.PathLike | None = None, overwrite: bool = False) -> RunRecord:
    """Distil the teacher into a student with ``config.recipe``; return the run record.

    Parameters
    ----------
    config : DistillConfig
        Every setting; validated first (ValueError names a bad field).
    on_step : callable, optional
        Called after every step with that step's metrics dict (``step``, ``lr``,
        ``kd_temperature``, ``loss``, ``ce``, ``kd``, ``sinkhorn``, ``examples_per_s``, and on
        evaluation steps ``dev_accuracy`` and the weighted terms' gradient norms and shares,
        ``grad_norm_<term>``, ``grad_norm_total``, ``grad_share_<term>``, see
        :mod:`sinkd.distill.gradients`) plus ``steps``, the total.
    should_stop : callable, optional
        Asked before every step (and teacher step); True ends the run cleanly, the record
        says ``stopped`` and holds exactly the finished steps.
    on_progress : callable, optional
        Events of the teacher phase (see :func:`~sinkd.distill.teacher.prepare_teacher`).
    prepared : PreparedTeacher, optional
        :func:`~sinkd.distill.teacher.prepare_teacher`'s result for this config and data.
    resume_from : path-like, optional
        The record of a stopped or crashed run with the same config (``device``, ``out``,
        ``cache_dir`` and ``checkpoint_every`` may differ): continue it from its last saved
        state, exactly as if it had not stopped (see :mod:`sinkd.distill.checkpoints`). With
        ``config.out`` a stopped run leaves that state, and a running one writes it every
        ``config.checkpoint_every`` steps.
    overwrite : bool, default False
        Replace the record of another run at ``config.out``; without it a finished, stopped or
        crashed run's record there (one with finished steps) raises ValueError before anything
        loads. A running run's record is never replaced.

    Returns
    -------
    RunRecord
        Test accuracy is measured once, on the best-dev checkpoint (``results["test"]``), beside
        the final and best dev accuracies. With ``config.out`` the record is also written, at
        the start, after every evaluation, at least every ``HEARTBEAT_S`` seconds and at the
        end (atomically); its ``status`` is ``running`` until it ends ``finished`` or
        ``stopped`` (``crashed`` if it raises, or for a reader once its process is gone).

    Notes
    -----
    Inside a ``torch.distributed`` process group of W ranks (``python -m sinkd distill`` under
    torchrun creates it, :func:`~sinkd.distill.parallel.process_group`) every rank calls this
    with the same config: rank r trains on rows r B / W .. (r + 1) B / W of each global batch of
    ``batch_size`` B (a multiple of W, else ValueError before any model loads), the student in
    DDP. Each row of the record is the global batch's (the terms averaged over the ranks), and
    ``world_size`` and ``global_batch`` say how it ran. Rank 0 alone prepares the teacher (the
    others wait, then read its cache), evaluates, and writes the record and the checkpoint; the
    other ranks return a record without evaluations. ``should_stop`` on any rank stops every
    rank after the same step.
    """
    started: list[RunRecord] = []  # the record once begun, marked crashed if the run raises
    try:
        return _train(config, on_step, should_stop, on_progress, prepared, resume_from,
                      overwrite, started)
    except BaseException:  # a second Ctrl-C included: the record says it ended, the state stays
        if started and started[0].status == "running" and config.out is not None \
                and parallel.is_main():
            started[0].status, started[0].ended = "crashed", now()
            try:
                save_record(started[0], config.out)
            except OSError:  # the failure may be the disk itself: the reader sees the dead pid
                pass
        raise


def _train(config: DistillConfig, on_step: Callable[[dict], None] | None,
           should_stop: Callable[[], bool] | None, on_progress: Callable[[dict], None] | None,
           prepared: PreparedTeacher | None, resume_from: str | os.PathLike | None,
           overwrite: bool, started: list[RunRecord]) -> RunRecord:
    """:func:`train`'s run; ``started`` receives the record once it exists."""
    config.validate()
    # torchrun: W processes, each with B / W rows of every global batch (sinkd.distill.parallel)
    world, rank = parallel.world_size(), parallel.rank()
    parallel.check_batch_size(config.batch_size, world)  # before any model loads
    paths.check_output_paths(config)  # before any data or model loads: a bad path fails at once
    record, state = _begin(config, resume_from, overwrite)
    record.world_size, record.global_batch = world, config.batch_size
    t0 = time.time() - record.wall_time_s  # a resumed run's clock goes on
    started.append(_write(record, config, t0))  # "running" on disk: the path is taken

    def progress(event: dict) -> None:  # the teacher phase keeps the heartbeat too
        if time.time() - t0 - record.wall_time_s > HEARTBEAT_S:
            _write(record, config, t0)
        if on_progress is not None:
            on_progress(event)
    # device: bfloat16 autocast on CUDA; the losses, Sinkhorn term included, in float32
    device = parallel.device_of_rank(models.select_device(config.device))
    record.device, record.versions = str(device), versions()
    # data: fixed subsets of each split
    splits = load_data(config)
    record.data = dict(name=splits.name, source=splits.source, labels=list(
        splits.train.label_names), **{s: len(getattr(splits, s)) for s in SPLIT_NAMES})
    # teacher logits: computed once, then cached; the teacher never runs in the loop
    # (under torchrun rank 0 prepares it while the others wait, then they read its cache)
    try:
        teacher, logits = prepared or parallel.main_first(lambda: prepare_teacher(
            config, splits, on_progress=progress, should_stop=should_stop),
            shared=(RunStoppedError,))
    except RunStoppedError as stop:
        record.stopped, record.ended, record.teacher = True, now(), {"stopped": str(stop)}
        record.status = "stopped"
        return _write(record, config, t0)
    # student: the fine-tuned teacher's first layers, or that shape with random weights
    student, tokenizer, record.teacher = _student(config, splits, teacher, logits)
    dtype = getattr(torch, config.dtype)
    student.to(device=device, dtype=dtype)
    if rank > 0:  # each process its own dropout masks (rank 0's are those of one process)
        torch.manual_seed(config.seed + rank * RANK_SEED)
    enc = {s: models.encode_split(tokenizer, getattr(splits, s), config.max_length)
           for s in SPLIT_NAMES}
    optimizer, generator = make_optimizer(student, config), torch.Generator()
    best, start, last = None, 0, None  # best: (dev accuracy, step, weights on the CPU)
    if state is not None:  # resume: weights, AdamW moments, best so far, dropout's generator
        student.load_state_dict(state["student"])
        optimizer.load_state_dict(state["optimizer"])
        best, start = state["best"] if parallel.is_main() else None, state["step"]
        if not checkpoints.restore_random_state(state, rank, device):  # more ranks than saved
            torch.manual_seed(config.seed + rank * RANK_SEED + start)
    model = parallel.wrap(student, device)  # DDP under torchrun: gradients averaged over ranks
    train_logits = logits["train"].to(dtype)
    _write(record, config, t0)
    # loop: one AdamW step per batch; dev accuracy every eval_every steps and at the end
    for step in range(start, config.steps):
        if parallel.any_rank(should_stop is not None and should_stop()):  # all stop at one step
            record.stopped, record.status = True, "stopped"
            if config.out is not None and step > 0:  # resume_from needs it (before best loads)
                _save_state(record, config, t0, student, optimizer, best, step, device)
            break
        tic = time.perf_counter()
        batch = get_batch(enc["train"], step, config, logits=train_logits, generator=generator)
        rows = len(batch["labels"])  # the global batch; this process trains on its shard
        batch = {k: v.to(device) for k, v in parallel.shard(batch, rank, world).items()}
        evaluating = step + 1 == config.steps or (step + 1) % config.eval_every == 0
        # gradient norms on evaluation steps, which every process shares (a collective may run)
        terms, z_s, norms = student_step(model, optimizer, batch, config, step=step,
                                         grad_norms=evaluating)
        row = _metrics(terms, config, step, norms)  # one host sync for all the loss terms
        if world > 1:  # the row of the global batch, from every rank's
            row.update(_global_row(row, world))
        row["examples_per_s"] = rows / (time.perf_counter() - tic)
        if evaluating and parallel.is_main():  # rank 0 evaluates, keeps the best, writes
            row["dev_accuracy"] = evaluate(student, enc["dev"], config)
            if best is None or row["dev_accuracy"] > best[0]:  # ties keep the earlier one
                best = (row["dev_accuracy"], step + 1, {k: v.detach().to("cpu", copy=True)
                                                        for k, v in student.state_dict().items()})
        record.metrics.append(row)
        last = (z_s.detach(), batch["teacher_logits"], batch["labels"])
        if on_step is not None:
            on_step({**row, "steps": config.steps})
        if config.out is not None and config.checkpoint_every is not None \
                and (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            _save_state(record, config, t0, student, optimizer, best, step + 1, device)
        elif "dev_accuracy" in row or time.time() - t0 - record.wall_time_s > HEARTBEAT_S:
            _write(record, config, t0)
    # end: test accuracy once, on the best-dev checkpoint; final dev reported beside it
    if best is not None:
        student.load_state_dict(best[2])
    test = evaluate(student, enc["test"], config) if best is not None else None
    record.results = _results(record.metrics, best, test)
    if last is not None:  # the global batch's rows, gathered from every rank
        last = tuple(parallel.gather_rows(x, differentiable=False) for x in last)
        record.last_batch = transport_snapshot(*last, reg=config.reg, n_iters=config.n_iters,
                                               temperature=config.sinkhorn_temperature)
    record.ended = now()
    if not record.stopped:  # finished: its resume states are spent
        record.status, record.checkpoint = "finished", None
    _write(record, config, t0)
    if not record.stopped and parallel.is_main():  # after the write: a kill between leaves both
        for path in (resume_from, config.out):
            if path is not None:
                checkpoints.checkpoint_path(path).unlink(missing_ok=True)
    parallel.barrier()  # all leave once rank 0 has written (torchrun ends the rest when one exits)
    return record


# ----------------------------------------------------------------------------- the loop's helpers
def _begin(config: DistillConfig, resume_from: str | os.PathLike | None, overwrite: bool,
           ) -> tuple[RunRecord, dict[str, Any] | None]:
    """A new record, or the stopped or crashed run's record to continue, with its resume state
    (or None); either says ``running``, by this process."""
    fields = dataclasses.asdict(config)
    if resume_from is None:
        if config.out is not None:  # never lose a run unasked; rank 0 checks, all raise
            parallel.main_first(lambda: parallel.is_main() and _claim(config.out, overwrite),
                                shared=(ValueError,))
        record, state = RunRecord(config=fields, started=now()), None
    else:
        record, state = checkpoints.resumable(resume_from, fields)
        record.config, record.stopped, record.ended = fields, False, None
        record.resumed_at = [*record.resumed_at, len(record.metrics)]
    record.status, record.process = "running", this_process()
    return record, state


def _claim(out: str, overwrite: bool) -> None:
    """Check that a new run may write ``out``; drop the replaced run's resume state."""
    checkpoints.check_new_record(out, overwrite)
    checkpoints.checkpoint_path(out).unlink(missing_ok=True)


def _save_state(record: RunRecord, config: DistillConfig, t0: float, student: nn.Module,
                optimizer: torch.optim.Optimizer, best: tuple | None, step: int,
                device: torch.device) -> None:
    """The record, then the resume state after ``step`` steps (every rank calls it): a kill
    between the two leaves a record with at least the state's rows, which resume cuts back."""
    ranks = parallel.gather_objects(checkpoints.random_state(device)) \
        if parallel.world_size() > 1 else None  # every rank's dropout generator
    if parallel.is_main():
        record.checkpoint = str(checkpoints.checkpoint_path(config.out))
        _write(record, config, t0)
        checkpoints.save_checkpoint(record.checkpoint, student=student, optimizer=optimizer,
                                    best=best, step=step, ranks=ranks)


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
    if not config.dropout:  # every dropout, attention's included (it reads the module's p)
        for module in student.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0
    summary = dict(path=config.teacher_path(), steps=config.teacher_steps, cache=str(teacher_dir),
                   from_cache=teacher is None, parameters=models.count_parameters(base),
                   student_parameters=models.count_parameters(student),
                   **{f"{s}_accuracy": _accuracy(logits[s], getattr(splits, s).labels)
                      for s in SPLIT_NAMES})
    return student.train(), models.load_tokenizer(teacher_dir), summary


def _accuracy(logits: Tensor, labels: tuple[int, ...]) -> float:
    return float((logits.argmax(-1) == torch.tensor(labels)).float().mean())


def _metrics(terms: ObjectiveTerms, config: DistillConfig, step: int,
             norms: dict[str, float | None] | None = None) -> dict[str, Any]:
    """A step's row of the record: its lr, KD temperature and loss terms (None where the recipe
    has no such term), and the terms' gradient norms and shares when measured (``norms``)."""
    parts = RECIPES[config.recipe].parts
    values = torch.stack([terms.total.detach(), *(getattr(terms, p).detach() for p in PARTS)])
    values = values.tolist()
    return dict(step=step + 1, lr=lr_at(step, config),
                kd_temperature=kd_temperature_at(config, progress_at(step, config.steps)),
                loss=values[0], **{p: v if p in parts else None
                                   for p, v in zip(PARTS, values[1:], strict=True)},
                **(norms or {}))


def _global_row(row: dict[str, Any], world: int) -> dict[str, Any]:
    """Under torchrun, a step's loss terms and gradient norms for the global batch, from this
    rank's (one all-reduce; every rank calls it).

    CE and KD are means over a shard, and the global SinKD term is the same on every rank, so
    each global term is the mean over the ranks. Each rank's gradient at its logits is W times
    its rows of the global batch's gradient (the shard means divide by B / W, the global
    term's gather sums W copies), so a global norm is sqrt(mean over ranks of norm^2 / W).
    """
    terms = [k for k in ("loss", *PARTS) if row[k] is not None]
    norms = [k for k in (*NORM_KEYS.values(), TOTAL_KEY) if row.get(k) is not None]
    means = parallel.mean_over_ranks([row[k] for k in terms] + [row[k] ** 2 for k in norms])
    out = dict(zip(terms, means[:len(terms)], strict=True))
    out.update((k, (v / world) ** 0.5) for k, v in zip(norms, means[len(terms):], strict=True))
    parts = [p for p in PARTS if out.get(NORM_KEYS[p]) is not None]
    total = sum(out[NORM_KEYS[p]] for p in parts)
    out.update((SHARE_KEYS[p], out[NORM_KEYS[p]] / total if total > 0 else None) for p in parts)
    return out


def _results(metrics: list[dict[str, Any]], best: tuple | None,
             test: float | None) -> dict[str, Any]:
    """The record's results: steps done, final and best dev accuracy (and their steps), test."""
    evals = [row for row in metrics if "dev_accuracy" in row]
    return dict(steps_done=len(metrics), final_dev=evals[-1]["dev_accuracy"] if evals else None,
                final_dev_step=evals[-1]["step"] if evals else None,
                best_dev=best[0] if best else None, best_step=best[1] if best else None,
                test=test)


def _write(record: RunRecord, config: DistillConfig, t0: float) -> RunRecord:
    """Stamp the wall time and, with ``config.out``, save the record (atomically); under
    torchrun rank 0 alone writes (the others' records lack the evaluations)."""
    record.wall_time_s, record.heartbeat = round(time.time() - t0, 3), now()
    if config.out is not None and parallel.is_main():
        save_record(record, config.out)
    return record
