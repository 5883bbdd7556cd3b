"""Every setting of a distillation run: :class:`DistillConfig`, nanoGPT's defaults block made
importable.

Each field carries its default and the reason for it. ``key=value`` overrides
(:meth:`DistillConfig.from_overrides`) are converted to the field's type, like nanoGPT's
``configurator.py`` without ``exec``; :meth:`DistillConfig.validate` checks every field with
:mod:`sinkd.validation`, so a bad value is reported as everywhere in the library: the field, what
it allows and the value (``steps must be an integer in [1, 10000000], got 0``). The whole config is
stored in every run record.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sinkd.distill.models import DEVICES, packaged_model_path
from sinkd.distill.recipes import RECIPES
from sinkd.validation import check_bool, check_choice, check_int, check_number

DTYPES = ("float32", "float64")  # the student's dtype (DistillConfig.dtype)
SINKHORN_BATCHES = ("global", "local")  # the SinKD term's batch (sinkd.SinKDLoss's ``batch``)


@dataclass
class DistillConfig:
    """Every setting of a distillation run; defaults follow the SinKD reference (SST-2 row)."""

    # data
    data: str = "rotten_tomatoes"  # ships offline, split by movie; or a GLUE task, a .csv/.tsv
    train_limit: int | None = None  # None = whole train split; else a fixed random subset (fast)
    eval_limit: int | None = None  # None = whole dev and test; else fixed random subsets of each
    max_length: int = 64  # tokens per text: 99.95% of Rotten Tomatoes snippets fit in 64
    data_dir: str | None = None  # GLUE's own TSV folder (offline GLUE); None: the hub, for GLUE
    epochs: float | None = None  # None: `steps` as given; else the CLI sets steps =
    # ceil(epochs * train rows / batch_size) once the data is loaded (the reference counts epochs)
    # teacher
    teacher: str | None = None  # None = the packaged MiniLM-L6 (resolved lazily); a path or hub id
    teacher_steps: int = 300  # fine-tuning steps of the teacher (0: use it as is): ~80% on RT
    teacher_lr: float = 5e-5  # the teacher's fine-tuning peak learning rate (BERT's usual)
    cache_dir: str | None = None  # None = models.default_cache_dir(): teacher + logits
    # student
    student_layers: int = 2  # the teacher's first layers, kept: 2 of 6 gives 15.6M parameters
    student_from_scratch: bool = False  # True: same shape, random weights (no teacher init)
    dtype: str = "float32"  # the student's weights; "float64" for exactness tests (a torchrun
    # run against one process, to 1e-6), on the CPU: 2-4x slower and no bfloat16 autocast
    dropout: bool = True  # False zeroes every dropout probability of the student: under torchrun
    # each process draws its own masks, so only a dropout-free run equals one process exactly
    # objective
    recipe: str = "sinkd"  # a key of RECIPES; "sinkd" is the reference objective
    alpha: float = 0.9  # KD weight against CE (reference: 0.9 on SST-2, CoLA, RTE)
    beta: float = 0.8  # weight of the Sinkhorn term (reference: 0.8 on every task)
    kd_temperature: float = 2.0  # KD softmax temperature T (reference SST-2: 2)
    anneal_temperature: bool = False  # T linear from kd_temperature to 1 (reference MNLI, QQP)
    reg: float = 0.1  # Sinkhorn entropic weight lambda (reference 0.1)
    n_iters: int = 20  # Sinkhorn iterations T, all unrolled (reference 20)
    sinkhorn_temperature: float = 2.0  # softmax temperature tau of the Sinkhorn term (ref. 2)
    sinkhorn_batch: str = "global"  # global: the plan of the whole global batch under torchrun,
    # as on one device; equals local on one process ("local": each process's shard alone)
    # optimiser (AdamW, linear warmup then linear decay)
    steps: int = 300  # student updates: about 1 epoch of RT at batch 32
    batch_size: int = 32  # reference SST-2: 32 (the Sinkhorn term's size grows with it)
    lr: float = 5e-5  # peak learning rate (reference: 2e-5 to 5e-5)
    weight_decay: float = 0.01  # on matrices only (biases and LayerNorm are not decayed)
    warmup_fraction: float = 0.1  # share of the steps spent warming up (BERT's usual 10%)
    # evaluation and run
    eval_every: int = 50  # dev accuracy every this many steps, and at the last step
    checkpoint_every: int | None = 100  # resume state every this many steps (with `out`), so a
    # killed run resumes from the last (~4x the student's size, written atomically); None: only
    # when stopped
    seed: int = 0  # student init (from scratch), batch order, dropout
    device: str = "auto"  # "auto" (CUDA, then MPS, then CPU), "cpu", "cuda" or "mps"
    out: str | None = None  # None = no record file; else the run record's JSON path

    def validate(self) -> DistillConfig:
        """Check every field; return self.

        Raises ValueError naming the first bad field, what it allows and the value given. Numbers
        are stored as their field's type (an int given for a float field becomes a float), so
        the config is the same whichever way it was written.
        """
        for name, check in _CHECKS.items():
            value = getattr(self, name)
            if value is not None or name not in _OPTIONAL:
                setattr(self, name, check(name, value))
        return self

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any] | list[str] | tuple[str, ...],
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
        return self.teacher or str(packaged_model_path())


def _text(name: str, value: Any) -> str:
    """``value`` if it is a string with more than white space."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _ints(low: int, high: int) -> Callable[[str, Any], int]:
    return functools.partial(check_int, low=low, high=high)


def _reals(low: float, high: float, *, low_open: bool = False) -> Callable[[str, Any], float]:
    return functools.partial(check_number, low=low, high=high, low_open=low_open)


# what each field allows; the fields whose default is None also allow None
_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "data": _text, "train_limit": _ints(2, 10**8), "eval_limit": _ints(1, 10**8),
    "data_dir": _text, "epochs": _reals(0, 10_000, low_open=True),
    "max_length": _ints(8, 512),  # BERT's position embeddings stop at 512
    "teacher": _text, "teacher_steps": _ints(0, 10**7), "teacher_lr": _reals(0, 1, low_open=True),
    "cache_dir": _text, "student_layers": _ints(1, 48), "student_from_scratch": check_bool,
    "dtype": functools.partial(check_choice, allowed=DTYPES), "dropout": check_bool,
    "recipe": functools.partial(check_choice, allowed=tuple(RECIPES)),
    "alpha": _reals(0, 1), "beta": _reals(0, 1000), "kd_temperature": _reals(0, 100, low_open=True),
    "anneal_temperature": check_bool, "reg": _reals(0, 100, low_open=True),
    "n_iters": _ints(1, 10_000), "sinkhorn_temperature": _reals(0, 100, low_open=True),
    "sinkhorn_batch": functools.partial(check_choice, allowed=SINKHORN_BATCHES),
    "steps": _ints(1, 10**7), "batch_size": _ints(1, 4096), "lr": _reals(0, 1, low_open=True),
    "weight_decay": _reals(0, 1), "warmup_fraction": _reals(0, 1), "eval_every": _ints(1, 10**7),
    "checkpoint_every": _ints(1, 10**7),
    "seed": _ints(0, 2**31 - 1), "device": functools.partial(check_choice, allowed=DEVICES),
    "out": _text,
}
_HINTS = typing.get_type_hints(DistillConfig)
_OPTIONAL = frozenset(name for name, hint in _HINTS.items() if type(None) in typing.get_args(hint))
# the type of each field, None aside: what a "key=value" text is converted to
_TYPES = {name: next(a for a in typing.get_args(hint) or (hint,) if a is not type(None))
          for name, hint in _HINTS.items()}


def _parse(key: str, text: str) -> tuple[str, Any]:
    """``key=value`` text converted to the field's type; text that does not convert is kept as
    it is, for :meth:`DistillConfig.validate` to report with the field's allowed values."""
    key, text = key.strip(), text.strip()
    if key not in _TYPES:
        raise ValueError(f"unknown config key {key!r}; valid keys: {sorted(_TYPES)}")
    kind = _TYPES[key]
    if key in _OPTIONAL and text.lower() in ("none", "null"):
        return key, None
    if kind is bool:
        return key, {"true": True, "false": False}.get(text.lower(), text)
    try:
        return key, kind(text)
    except ValueError:
        return key, text
