r"""Distil a fine-tuned BERT teacher into a small BERT student, nanoGPT style.

Read top to bottom: :class:`DistillConfig` (every setting, its default and why), the
:data:`RECIPES` (one loss each), :func:`prepare_teacher` (fine-tune once, cache the logits),
:func:`get_batch`, :func:`evaluate`, :func:`lr_at`, then :func:`train`, the loop. The teacher's
fine-tuning is a separate supervised phase; distillation uses only its cached logits, so the
teacher never runs there (the reference code ran a wasted teacher backward every step). The
``sinkd`` recipe is the reference objective of :func:`sinkd.distillation_objective`:

.. math::
    \mathcal{L} = (1 - \alpha)\, \mathrm{CE}(z^s, y) + \alpha\, \mathrm{KD}_{T}(z^s, z^t)
        + \beta\, \mathcal{L}_{\mathrm{SinKD}}(z^s, z^t)
"""

from __future__ import annotations

import dataclasses
import math
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from sinkd import distill_data, distill_models
from sinkd.divergences import divergence
from sinkd.losses import SinKDLoss
from sinkd.objective import ObjectiveTerms, distillation_objective
from sinkd.records import RunRecord, now, save_record, transport_snapshot, versions

TEACHER_SEED = 0  # the teacher is fine-tuned with one seed: every student seed distils the same one
SUBSET_SEED = 0  # train_limit / eval_limit draw the same rows for every run (and the cache key)
MAX_GRAD_NORM = 1.0  # gradient clipping, as Hugging Face's Trainer does by default
# the teacher's own fine-tuning recipe, fixed so that every student setting shares one teacher
# (MiniLM-L6 on Rotten Tomatoes with it: 72% after 50 steps, 79% after 100, 80% after 150)
TEACHER_RECIPE = dict(batch_size=32, lr=5e-5, weight_decay=0.01, warmup_fraction=0.1)


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
           "teacher_steps": (0, 10**7), "student_layers": (1, 48), "alpha": (0, 1),
           "beta": (0, 1000), "kd_temperature": (0, 100, "open"), "reg": (0, 100, "open"),
           "n_iters": (1, 10_000), "sinkhorn_temperature": (0, 100, "open"),
           "steps": (1, 10**7), "batch_size": (1, 4096), "lr": (0, 1, "open"),
           "weight_decay": (0, 1), "warmup_fraction": (0, 1), "eval_every": (1, 10**7),
           "seed": (0, 2**31 - 1)}
_CHOICES = {"device": distill_models.DEVICES}  # and "recipe": RECIPES, added below them


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


# ----------------------------------------------------------------------------- recipes
def progress_at(step: int, config: DistillConfig) -> float:
    """Fraction of training done at 0-based ``step``: 0 at the first step, 1 at the last.

    >>> [progress_at(s, DistillConfig(steps=3)) for s in range(3)]
    [0.0, 0.5, 1.0]
    """
    return step / (config.steps - 1) if config.steps > 1 else 1.0


def kd_temperature_at(config: DistillConfig, progress: float) -> float:
    """KD temperature at ``progress``: linear from kd_temperature to 1 when annealing.

    At step s of S this is ``sinkd.annealed_temperature(kd_temperature, s, S)`` (steps as epochs).

    >>> kd_temperature_at(DistillConfig(kd_temperature=3.0, anneal_temperature=True), 0.5)
    2.0
    """
    if not config.anneal_temperature:
        return config.kd_temperature
    return config.kd_temperature + (1.0 - config.kd_temperature) * progress


def _sinkhorn_term(config: DistillConfig) -> SinKDLoss:
    return SinKDLoss(reg=config.reg, n_iters=config.n_iters,
                     temperature=config.sinkhorn_temperature)


def _ce_loss(z_s, z_t, labels, config, progress) -> ObjectiveTerms:
    ce = F.cross_entropy(z_s, labels)
    return ObjectiveTerms(total=ce, ce=ce, kd=torch.zeros_like(ce), sinkhorn=torch.zeros_like(ce))


def _divergence_loss(name: str) -> Callable[..., ObjectiveTerms]:
    def loss(z_s, z_t, labels, config, progress) -> ObjectiveTerms:
        ce = F.cross_entropy(z_s, labels)
        kd = divergence(name, z_s, z_t.detach(), temperature=kd_temperature_at(config, progress))
        return ObjectiveTerms(total=(1 - config.alpha) * ce + config.alpha * kd, ce=ce, kd=kd,
                              sinkhorn=torch.zeros_like(ce))
    return loss


def _sinkd_loss(z_s, z_t, labels, config, progress) -> ObjectiveTerms:
    return distillation_objective(z_s, z_t.detach(), labels, alpha=config.alpha, beta=config.beta,
                                  kd_temperature=kd_temperature_at(config, progress),
                                  kd="soft_ce", sinkhorn_term=_sinkhorn_term(config))


def _sinkhorn_only_loss(z_s, z_t, labels, config, progress) -> ObjectiveTerms:
    ce = F.cross_entropy(z_s, labels)
    term = _sinkhorn_term(config)(z_s, z_t.detach())
    return ObjectiveTerms(total=(1 - config.alpha) * ce + config.beta * term, ce=ce,
                          kd=torch.zeros_like(ce), sinkhorn=term)


@dataclass(frozen=True)
class Recipe:
    """A distillation loss: ``loss(z_s, z_t, labels, config, progress) -> ObjectiveTerms``."""

    description: str
    loss: Callable[[Tensor, Tensor, Tensor, DistillConfig, float], ObjectiveTerms]
    parts: tuple[str, ...]  # the terms it weights (the others are 0, not computed, not logged)


_KD = "(1 - alpha) CE + alpha {} at the KD temperature (sinkd.divergence, no T^2 factor)"
RECIPES: dict[str, Recipe] = {
    "ce": Recipe("CE with the labels only: the student alone, no teacher", _ce_loss, ("ce",)),
    "kd": Recipe(_KD.format("KL(teacher || student)"), _divergence_loss("kl"), ("ce", "kd")),
    "rkl": Recipe(_KD.format("KL(student || teacher)"), _divergence_loss("rkl"), ("ce", "kd")),
    "js": Recipe(_KD.format("Jensen-Shannon"), _divergence_loss("js"), ("ce", "kd")),
    "tvd": Recipe(_KD.format("total variation"), _divergence_loss("tvd"), ("ce", "kd")),
    "skew_kl": Recipe(_KD.format("skew KL (skew 0.1)"), _divergence_loss("skew_kl"),
                      ("ce", "kd")),
    "sinkd": Recipe("the reference: (1 - alpha) CE + alpha soft-CE KD_T + beta SinKD "
                    "(sinkd.distillation_objective)", _sinkd_loss, ("ce", "kd", "sinkhorn")),
    "sinkhorn": Recipe("(1 - alpha) CE + beta SinKD: the Sinkhorn term without KD",
                       _sinkhorn_only_loss, ("ce", "sinkhorn")),
}
_CHOICES["recipe"] = RECIPES


# ----------------------------------------------------------------------------- data and teacher
SPLITS = ("train", "dev", "test")


class RunStoppedError(Exception):
    """should_stop() returned True while the teacher was being fine-tuned (nothing cached)."""


def load_data(config: DistillConfig) -> distill_data.Splits:
    """The splits of ``config.data``, each cut to its limit by a fixed random subset."""
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
    data = f"{splits.name}-{splits.fingerprint()}-{sorted(TEACHER_RECIPE.items())}"
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
                                 **TEACHER_RECIPE)
        torch.manual_seed(TEACHER_SEED)
        enc = encode_split(tokenizer, splits.train, tc.max_length)
        opt, gen = _adamw(model, tc), torch.Generator()
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


def _adamw(model: torch.nn.Module, config: DistillConfig) -> torch.optim.AdamW:
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
          prepared: tuple[torch.nn.Module | None, dict[str, Tensor]] | None = None) -> RunRecord:
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

    Returns
    -------
    RunRecord
        Test accuracy is measured once, on the best-dev checkpoint (``results["test"]``), beside
        the final and best dev accuracies. With ``config.out`` the record is also written, at
        the start, after every evaluation and at the end (atomically).
    """
    config.validate()
    t0, record = time.time(), RunRecord(config=dataclasses.asdict(config), started=now())
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
    recipe, opt, gen = RECIPES[config.recipe], _adamw(student, config), torch.Generator()
    best, last = None, None  # best: (dev accuracy, step, state on the CPU)
    _write(record, config, t0)
    # loop: one AdamW step per batch; dev accuracy every eval_every steps and at the end
    for step in range(config.steps):
        if should_stop is not None and should_stop():
            record.stopped = True
            break
        tic, progress, lr = time.perf_counter(), progress_at(step, config), lr_at(step, config)
        batch = {k: v.to(device) for k, v in get_batch(
            enc["train"], logits["train"], step, config, gen).items()}
        with _autocast(device):
            z_s = student(**_inputs(batch)).logits.float()  # (B, C); bfloat16 on CUDA, cast up
        # the loss outside autocast: every term, the Sinkhorn one included, in float32
        terms = recipe.loss(z_s, batch["teacher_logits"], batch["labels"], config, progress)
        _step(student, opt, terms.total, lr)
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
    return _write(record, config, t0)
