r"""Distil a fine-tuned BERT teacher into a small BERT student, nanoGPT style.

Read top to bottom: :class:`DistillConfig` (every setting, its default and why),
:func:`get_batch`, :func:`evaluate`, :func:`lr_at`, then :func:`train`, the loop. The
:data:`RECIPES` (one loss each) live in :mod:`sinkd.recipes`, the data and the teacher
(:func:`load_data`, :func:`prepare_teacher`: fine-tune once, cache the logits) in
:mod:`sinkd.distill_teacher`; both are re-exported here. The teacher's fine-tuning is a
separate supervised phase; distillation uses only its cached logits, so the
teacher never runs there (the reference code ran a wasted teacher backward every step). The
``sinkd`` recipe is the reference objective of :func:`sinkd.distillation_objective`:

.. math::
    \mathcal{L} = (1 - \alpha)\, \mathrm{CE}(z^s, y) + \alpha\, \mathrm{KD}_{T}(z^s, z^t)
        + \beta\, \mathcal{L}_{\mathrm{SinKD}}(z^s, z^t)
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from sinkd.distill import checkpoints
from sinkd.distill import data as distill_data
from sinkd.distill import models as distill_models
from sinkd.distill.teacher import (  # re-exported: the data and teacher part of this API
    SPLITS,
    SUBSET_SEED,
    TEACHER_RECIPE,
    TEACHER_SEED,
    RunStoppedError,
    encode_split,
    load_data,
    prepare_teacher,
    teacher_cache,
)
from sinkd.objective import ObjectiveTerms
from sinkd.distill.recipes import (  # re-exported: the recipes part of this API
    RECIPES,
    Recipe,
    kd_temperature_at,
    progress_at,
)
from sinkd.distill.records import RunRecord, now, save_record, transport_snapshot, versions

__all__ = ["MAX_GRAD_NORM", "RECIPES", "SPLITS", "SUBSET_SEED", "TEACHER_RECIPE", "TEACHER_SEED",
           "DistillConfig", "Recipe", "RunStoppedError", "encode_split", "evaluate", "get_batch",
           "kd_temperature_at", "load_data", "lr_at", "prepare_teacher", "progress_at",
           "make_optimizer", "student_step", "teacher_cache", "train"]

MAX_GRAD_NORM = 1.0  # gradient clipping, as Hugging Face's Trainer does by default


@dataclass
class DistillConfig:
    """Every setting of a distillation run; defaults follow the SinKD reference (SST-2 row)."""

    # data
    data: str = "rotten_tomatoes"  # ships offline, split by movie; or a GLUE task, a .csv/.tsv
    train_limit: int | None = None  # None = whole train split; else a fixed random subset (fast)
    eval_limit: int | None = None  # None = whole dev and test; else fixed random subsets of each
    max_length: int = 64  # tokens per text: 99.95% of Rotten Tomatoes snippets fit in 64
    # teacher
    teacher: str | None = None  # None = the packaged MiniLM-L6 (resolved lazily); a path or hub id
    teacher_steps: int = 300  # fine-tuning steps of the teacher (0: use it as is): ~80% on RT
    teacher_lr: float = 5e-5  # the teacher's fine-tuning peak learning rate (BERT's usual)
    cache_dir: str | None = None  # None = distill_models.default_cache_dir(): teacher + logits
    # student
    student_layers: int = 2  # the teacher's first layers, kept: 2 of 6 gives 15.6M parameters
    student_from_scratch: bool = False  # True: same shape, random weights (no teacher init)
    # objective
    recipe: str = "sinkd"  # a key of RECIPES; "sinkd" is the reference objective
    alpha: float = 0.9  # KD weight against CE (reference: 0.9 on SST-2, CoLA, RTE)
    beta: float = 0.8  # weight of the Sinkhorn term (reference: 0.8 on every task)
    kd_temperature: float = 2.0  # KD softmax temperature T (reference SST-2: 2)
    anneal_temperature: bool = False  # T linear from kd_temperature to 1 (reference MNLI, QQP)
    reg: float = 0.1  # Sinkhorn entropic weight lambda (reference 0.1)
    n_iters: int = 20  # Sinkhorn iterations T, all unrolled (reference 20)
    sinkhorn_temperature: float = 2.0  # softmax temperature tau of the Sinkhorn term (ref. 2)
    # optimiser (AdamW, linear warmup then linear decay)
    steps: int = 300  # student updates: about 1 epoch of RT at batch 32, ~2 min on 2 CPU cores
    batch_size: int = 32  # reference SST-2: 32 (the Sinkhorn term's size grows with it)
    lr: float = 5e-5  # peak learning rate (reference: 2e-5 to 5e-5)
    weight_decay: float = 0.01  # on matrices only (biases and LayerNorm are not decayed)
    warmup_fraction: float = 0.1  # share of the steps spent warming up (BERT's usual 10%)
    # evaluation and run
    eval_every: int = 50  # dev accuracy every this many steps, and at the last step
    seed: int = 0  # student init (from scratch), batch order, dropout
    device: str = "auto"  # "auto" (CUDA, then MPS, then CPU), "cpu", "cuda" or "mps"
    out: str | None = None  # None = no record file; else the run record's JSON path

    def validate(self) -> DistillConfig:
        """Raise ValueError naming the first bad field and its allowed values; return self."""
        for name, (kind, optional) in _TYPES.items():
            value = getattr(self, name)
            if value is None and optional:
                continue
            ok = type(value) is kind or (kind is float and type(value) is int)
            if ok and name in _RANGES:
                lo, hi, *open_lo = _RANGES[name]
                ok = math.isfinite(value) and (lo < value if open_lo else lo <= value) and (
                    value <= hi)
            ok = ok and (name not in _CHOICES or value in _CHOICES[name])
            if not ok or (kind is str and not value.strip()):
                raise ValueError(f"{name} must be {_describe(name)}, got {value!r}")
        return self

    @classmethod
    def from_overrides(cls, overrides: dict | list[str] | tuple[str, ...],
                       base: DistillConfig | None = None) -> DistillConfig:
        """``base`` (default: the defaults) with fields overridden, then validated.

        Like nanoGPT's configurator, without ``exec``: ``"key=value"`` strings are converted to
        the field's type (``None`` for optional fields, ``true``/``false`` for booleans); a
        dict's values must have the field's type already (an int is accepted for a float).

        >>> DistillConfig.from_overrides(["steps=10", "lr=1e-4", "train_limit=None"]).steps
        10
        """
        if not isinstance(overrides, dict):
            bad = [item for item in overrides if not isinstance(item, str) or "=" not in item]
            if bad:
                raise ValueError(f"overrides must be 'key=value' strings, got {bad[0]!r}")
            overrides = dict(_parse(*item.split("=", 1)) for item in overrides)
        unknown = sorted(set(overrides) - set(_TYPES))
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; valid keys: {sorted(_TYPES)}")
        return dataclasses.replace(base or cls(), **overrides).validate()

    def teacher_path(self) -> str:
        """The teacher to fine-tune: ``teacher``, else the packaged MiniLM's folder."""
        return self.teacher or str(distill_models.packaged_model_path())


# (type, None allowed) of each field, from its annotation
_TYPES = {name: (next(a for a in typing.get_args(hint) or (hint,) if a is not type(None)),
                 type(None) in typing.get_args(hint))
          for name, hint in typing.get_type_hints(DistillConfig).items()}
# closed ranges [lo, hi]; a third item "open" makes it (lo, hi]
_RANGES = {"train_limit": (2, 10**8), "eval_limit": (1, 10**8), "max_length": (8, 512),
           "teacher_steps": (0, 10**7), "teacher_lr": (0, 1, "open"), "student_layers": (1, 48),
           "alpha": (0, 1),
           "beta": (0, 1000), "kd_temperature": (0, 100, "open"), "reg": (0, 100, "open"),
           "n_iters": (1, 10_000), "sinkhorn_temperature": (0, 100, "open"),
           "steps": (1, 10**7), "batch_size": (1, 4096), "lr": (0, 1, "open"),
           "weight_decay": (0, 1), "warmup_fraction": (0, 1), "eval_every": (1, 10**7),
           "seed": (0, 2**31 - 1)}
_CHOICES = {"device": distill_models.DEVICES, "recipe": RECIPES}


def _describe(name: str) -> str:
    """The allowed values of field ``name``, for error messages."""
    kind, optional = _TYPES[name]
    text = {str: "a non-empty string", bool: "True or False"}.get(kind, f"a {kind.__name__}")
    if name in _RANGES:
        lo, hi, *open_lo = _RANGES[name]
        text += f" in {'(' if open_lo else '['}{lo}, {hi}]"
    if name in _CHOICES:
        text = f"one of {sorted(_CHOICES[name])}"
    return text + (" or None" if optional else "")


def _parse(key: str, text: str) -> tuple[str, object]:
    """``key=value`` text converted to the field's type; validate() reports what fails."""
    key, text = key.strip(), text.strip()
    if key not in _TYPES:
        raise ValueError(f"unknown config key {key!r}; valid keys: {sorted(_TYPES)}")
    kind, optional = _TYPES[key]
    if optional and text.lower() in ("none", "null"):
        return key, None
    if kind is bool:
        return key, {"true": True, "false": False}.get(text.lower(), text)
    try:
        return key, kind(text)
    except ValueError:
        raise ValueError(f"{key} must be {_describe(key)}, got {text!r}") from None


# ----------------------------------------------------------------------------- training parts
def get_batch(split: dict[str, Tensor], logits: Tensor | None, step: int, config: DistillConfig,
              generator: torch.Generator) -> dict[str, Tensor]:
    """Rows of batch ``step``: epochs of seeded random permutations, padding trimmed.

    Batch k of epoch e is rows ``k B .. (k + 1) B`` of a permutation drawn with seed
    (seed, e), so a batch depends only on (step, seed): no state, a run can resume anywhere.
    Returns the split's tensors at those rows plus ``teacher_logits`` (B, C) when given.
    """
    n = len(split["labels"])
    per_epoch = max(1, n // config.batch_size)  # the last partial batch of an epoch is dropped
    epoch, k = divmod(step, per_epoch)
    generator.manual_seed(config.seed * 1_000_003 + epoch)
    rows = torch.randperm(n, generator=generator)[k * config.batch_size:(k + 1) * config.batch_size]
    length = int(split["attention_mask"][rows].sum(1).max())  # right padding: trim to the longest
    batch = {key: v[rows, :length] if v.dim() == 2 else v[rows] for key, v in split.items()}
    if logits is not None:
        batch["teacher_logits"] = logits[rows]  # (B, C)
    return batch


def _autocast(device: torch.device):
    """bfloat16 autocast on CUDA (no loss scaling needed, unlike float16); off elsewhere."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def _inputs(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v for k, v in batch.items() if k not in ("labels", "teacher_logits")}


@torch.no_grad()
def evaluate(model: torch.nn.Module, encodings: dict[str, Tensor], labels: Tensor,
             config: DistillConfig) -> float:
    """Accuracy of ``model`` on tokenized rows (argmax of its logits), in no-grad batches."""
    device, was_training = next(model.parameters()).device, model.training
    model.eval()
    correct, size = 0, 4 * config.batch_size
    for start in range(0, len(labels), size):
        rows = slice(start, start + size)
        length = int(encodings["attention_mask"][rows].sum(1).max())
        inputs = {k: v[rows, :length].to(device) for k, v in _inputs(encodings).items()}
        with _autocast(device):
            z = model(**inputs).logits  # (b, C)
        correct += int((z.argmax(-1).cpu() == labels[rows]).sum())
    model.train(was_training)
    return correct / len(labels)


def lr_at(step: int, config: DistillConfig) -> float:
    """Learning rate of 0-based ``step``: linear warmup to ``lr``, then linear decay.

    With W = round(warmup_fraction * steps): lr (s + 1) / W for s < W, else
    lr (steps - s) / (steps - W); never 0, so no step is wasted.

    >>> [lr_at(s, DistillConfig(steps=4, lr=1.0, warmup_fraction=0.5)) for s in range(4)]
    [0.5, 1.0, 1.0, 0.5]
    """
    warmup = round(config.warmup_fraction * config.steps)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    return config.lr * (config.steps - step) / (config.steps - warmup)


def make_optimizer(model: torch.nn.Module, config: DistillConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not biases, not LayerNorm), as for BERT."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr)


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, loss: Tensor, lr: float) -> None:
    """One AdamW update at ``lr``, gradients clipped to norm MAX_GRAD_NORM."""
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
    opt.step()


def student_step(student: torch.nn.Module, opt: torch.optim.Optimizer, batch: dict[str, Tensor],
                 config: DistillConfig, step: int) -> tuple[ObjectiveTerms, Tensor]:
    """One update of the student on ``batch`` (with ``teacher_logits``): forward, the recipe's
    loss, AdamW at ``lr_at(step)``. Returns (loss terms, student logits (B, C) in float32)."""
    device = next(student.parameters()).device
    with _autocast(device):
        z_s = student(**_inputs(batch)).logits.float()  # (B, C); bfloat16 on CUDA, cast up
    # the loss outside autocast: every term, the Sinkhorn one included, in float32
    terms = RECIPES[config.recipe].loss(z_s, batch["teacher_logits"], batch["labels"], config,
                                        progress_at(step, config))
    _step(student, opt, terms.total, lr_at(step, config))
    return terms, z_s


def _write(record: RunRecord, config: DistillConfig, t0: float) -> RunRecord:
    record.wall_time_s = round(time.time() - t0, 3)
    if config.out is not None:
        save_record(record, config.out)
    return record


def _accuracy(logits: Tensor, data: distill_data.TextData) -> float:
    return float((logits.argmax(-1) == torch.tensor(data.labels)).float().mean())


def _student(config: DistillConfig, splits: distill_data.Splits, teacher, logits):
    """(student, tokenizer, teacher summary): the student starts from the fine-tuned teacher."""
    cache, key = teacher_cache(config, splits)
    teacher_dir = cache.teacher_dir(key)
    base = teacher or distill_models.load_classifier(teacher_dir, splits.train.num_labels)
    torch.manual_seed(config.seed)
    student = (distill_models.make_small_student(base.config, config.student_layers,
                                                 base.config.hidden_size, seed=config.seed)
               if config.student_from_scratch else
               distill_models.make_student(base, config.student_layers))
    summary = dict(path=config.teacher_path(), steps=config.teacher_steps, cache=str(teacher_dir),
                   from_cache=teacher is None, parameters=distill_models.count_parameters(base),
                   student_parameters=distill_models.count_parameters(student),
                   **{f"{s}_accuracy": _accuracy(logits[s], getattr(splits, s)) for s in SPLITS})
    return student.train(), distill_models.load_tokenizer(teacher_dir), summary


# ----------------------------------------------------------------------------- the loop
def train(config: DistillConfig, on_step: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None, *,
          on_progress: Callable[[dict], None] | None = None,
          prepared: tuple[torch.nn.Module | None, dict[str, Tensor]] | None = None,
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
        Events of the teacher phase (see :func:`prepare_teacher`).
    prepared : tuple, optional
        :func:`prepare_teacher`'s result for this config and data, to skip that call.
    resume_from : path-like, optional
        The record of a stopped run with the same config (``device`` and ``out`` may differ):
        continue it from its last finished step, exactly as if it had not stopped (see
        :mod:`sinkd.checkpoints`). A stopped run with ``config.out`` leaves that state.

    Returns
    -------
    RunRecord
        Test accuracy is measured once, on the best-dev checkpoint (``results["test"]``), beside
        the final and best dev accuracies. With ``config.out`` the record is also written, at
        the start, after every evaluation and at the end (atomically).
    """
    config.validate()
    t0, record = time.time(), RunRecord(config=dataclasses.asdict(config), started=now())
    state = None  # the stopped run's state when resuming
    if resume_from is not None:
        record, state = checkpoints.resumable(resume_from, record.config)
        record.config, record.stopped, record.ended = dataclasses.asdict(config), False, None
        record.resumed_at, t0 = [*record.resumed_at, len(record.metrics)], t0 - record.wall_time_s
    # device: bfloat16 autocast on CUDA; the losses, Sinkhorn term included, in float32
    device = distill_models.select_device(config.device)
    record.device, record.versions = str(device), versions()
    # data: fixed subsets of each split
    splits = load_data(config)
    record.data = dict(name=splits.name, source=splits.source, labels=list(
        splits.train.label_names), **{s: len(getattr(splits, s)) for s in SPLITS})
    # teacher logits: computed once, then cached; the teacher never runs in the loop
    try:
        teacher, logits = prepared or prepare_teacher(config, splits, on_progress, should_stop)
    except RunStoppedError as stop:
        record.stopped, record.ended, record.teacher = True, now(), {"stopped": str(stop)}
        return _write(record, config, t0)
    # student: the fine-tuned teacher's first layers, or that shape with random weights
    student, tokenizer, record.teacher = _student(config, splits, teacher, logits)
    student.to(device)
    enc = {s: encode_split(tokenizer, getattr(splits, s), config.max_length) for s in SPLITS}
    # optimizer
    recipe, opt, gen = RECIPES[config.recipe], make_optimizer(student, config), torch.Generator()
    best, last, start = None, None, 0  # best: (dev accuracy, step, state on the CPU)
    if state is not None:  # resume: weights, AdamW moments, best so far, dropout's generator
        student.load_state_dict(state["student"])
        opt.load_state_dict(state["optimizer"])
        best, start = state["best"], state["step"]
        checkpoints.restore_random_state(state)
    _write(record, config, t0)
    # loop: one AdamW step per batch; dev accuracy every eval_every steps and at the end
    for step in range(start, config.steps):
        if should_stop is not None and should_stop():
            record.stopped = True
            if config.out is not None and step > 0:  # resume_from needs it (before best loads)
                record.checkpoint = str(checkpoints.save_checkpoint(
                    checkpoints.checkpoint_path(config.out), student=student, optimizer=opt,
                    best=best, step=step))
            break
        tic, progress, lr = time.perf_counter(), progress_at(step, config), lr_at(step, config)
        batch = {k: v.to(device) for k, v in get_batch(
            enc["train"], logits["train"], step, config, gen).items()}
        terms, z_s = student_step(student, opt, batch, config, step)
        row = dict(step=step + 1, lr=lr, kd_temperature=kd_temperature_at(config, progress),
                   loss=terms.total.item(), **{p: getattr(terms, p).item() if p in recipe.parts
                                              else None for p in ("ce", "kd", "sinkhorn")})
        row["examples_per_s"] = len(batch["labels"]) / (time.perf_counter() - tic)
        if step + 1 == config.steps or (step + 1) % config.eval_every == 0:
            row["dev_accuracy"] = evaluate(student, enc["dev"], enc["dev"]["labels"], config)
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
    evals = [row for row in record.metrics if "dev_accuracy" in row]
    if best is not None:
        student.load_state_dict(best[2])
    record.results = dict(
        steps_done=len(record.metrics), final_dev=evals[-1]["dev_accuracy"] if evals else None,
        final_dev_step=evals[-1]["step"] if evals else None,
        best_dev=best[0] if best else None, best_step=best[1] if best else None,
        test=evaluate(student, enc["test"], enc["test"]["labels"], config) if best else None)
    if last is not None:
        record.last_batch = transport_snapshot(*last, reg=config.reg, n_iters=config.n_iters,
                                               temperature=config.sinkhorn_temperature)
    record.ended = now()
    if resume_from is not None and not record.stopped:  # finished: its resume state is spent
        record.checkpoint = None
        _write(record, config, t0)
        checkpoints.checkpoint_path(resume_from).unlink(missing_ok=True)
    return _write(record, config, t0)
