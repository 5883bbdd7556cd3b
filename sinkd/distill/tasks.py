"""The reference's GLUE recipes: ``python -m sinkd distill --task rte`` trains as its scripts do.

Per task, the settings of the SinKD reference scripts (:data:`TASKS`): the GLUE task, batch size,
epochs, peak learning rate, alpha, the KD temperature and whether it is annealed, beta = 0.8 and
128 tokens. :func:`task_settings` layers them: the defaults, then the task's recipe, then
``--set``, then the flags, remembering where each value came from (what ``--dry-run`` prints,
:func:`dry_run`). The reference counts epochs, our loop steps: :func:`resolve_epochs` turns
``epochs`` into ``steps`` once the train split's size is known; a run record keeps both.

Two differences stay and are said in the dry run: the reference fine-tunes BERT-base-uncased as
the teacher (ours defaults to the packaged MiniLM-L6, ``--set teacher=...`` changes it) and
anneals T_kd once per epoch (ours lowers it at every step, on the same line from T_kd to 1).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sinkd.distill.config import DistillConfig
from sinkd.distill.glue import GLUE_TASKS
from sinkd.distill.train import load_data

REFERENCE_TEACHER = "BERT-base-uncased (12 layers, 768 hidden)"
REFERENCE_STUDENT = "a 6-layer, 768-hidden BERT"
# the fields a run's list of recipes, seeds and output folder sets (one run per recipe x seed)
RUN_FLAGS = {"recipe": "--recipe", "seed": "--seed", "out": "--out"}


@dataclass(frozen=True)
class TaskRecipe:
    """One GLUE task's settings in the reference scripts; the fields are DistillConfig's."""

    data: str  # the GLUE task, a key of GLUE_TASKS
    batch_size: int
    epochs: float
    lr: float  # peak learning rate
    alpha: float  # KD weight against CE: (1 - alpha) CE + alpha KD + beta SinKD
    kd_temperature: float
    anneal_temperature: bool  # T_kd from kd_temperature down to 1 ("annealed" in the table)
    beta: float = 0.8  # the Sinkhorn term's weight, the same on every task
    max_length: int = 128  # tokens per text (pair)


# source: the SinKD reference scripts (2018cx/SinKD), their per-task settings
TASKS = {
    "cola": TaskRecipe("cola", 16, 20, 5e-5, 0.9, 1.0, False),
    "mnli": TaskRecipe("mnli", 16, 10, 4e-5, 0.8, 3.0, True),
    "mrpc": TaskRecipe("mrpc", 16, 3, 3e-5, 1.0, 4.0, True),
    "qnli": TaskRecipe("qnli", 16, 6, 3e-5, 0.8, 3.0, False),
    "qqp": TaskRecipe("qqp", 32, 8, 4e-5, 1.0, 4.0, True),
    "rte": TaskRecipe("rte", 16, 5, 2e-5, 0.9, 3.5, False),
    "sst2": TaskRecipe("sst2", 32, 2, 4e-5, 0.9, 2.0, False),
}


def task_recipe(task: str) -> TaskRecipe:
    """The recipe of ``task``, ignoring case, '-' and '_' (ValueError naming the tasks).

    >>> task_recipe("SST-2").batch_size
    32
    """
    key = re.sub(r"[-_\s]", "", str(task).lower())
    if key not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    return TASKS[key]


def steps_for_epochs(epochs: float, train_rows: int, batch_size: int) -> int:
    """Student steps of ``epochs`` passes over ``train_rows`` in batches of ``batch_size``:
    ``ceil(epochs * train_rows / batch_size)`` (a last partial batch counts as a step), at least 1.

    >>> steps_for_epochs(5, 2241, 16)  # RTE: 5 epochs of 2,241 training pairs at batch 16
    701
    """
    return max(1, math.ceil(epochs * train_rows / batch_size))


def task_settings(task: str | None, sets: Sequence[str] = (), flags: dict[str, Any] | None = None
                  ) -> tuple[DistillConfig, dict[str, str]]:
    """The config of the defaults, then ``task``'s recipe, then ``--set`` items, then the flags
    (None values are not given), and where each field's value came from.

    Steps given (by ``--set`` or a flag) win over the task's epochs: ``epochs`` becomes None.
    Raises ValueError naming a bad task, key or value, or when both steps and epochs are given.

    >>> config, source = task_settings("rte", ["lr=1e-5"], {"steps": 10})
    >>> config.batch_size, source["batch_size"], config.lr, source["lr"], config.epochs
    (16, 'task recipe (RTE)', 1e-05, '--set', None)
    """
    config, sources = DistillConfig().validate(), {}
    if task is not None:
        recipe = task_recipe(task)
        config = DistillConfig.from_overrides(dataclasses.asdict(recipe), base=config)
        label = f"task recipe ({GLUE_TASKS[recipe.data][0]})"
        sources.update(dict.fromkeys(dataclasses.asdict(recipe), label))
    config = DistillConfig.from_overrides(list(sets), base=config)  # checks the items' form
    explicit = {item.split("=", 1)[0].strip(): "--set" for item in sets}
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    config = DistillConfig.from_overrides(given, base=config)
    explicit.update({k: f"--{k.replace('_', '-')}" for k in given})
    sources.update(explicit)
    if "steps" in explicit and "epochs" in explicit and config.epochs is not None:
        raise ValueError(f"give steps ({explicit['steps']}) or epochs ({explicit['epochs']}), "
                         f"not both")
    if "steps" in explicit and config.epochs is not None:  # explicit steps beat the task's epochs
        config = dataclasses.replace(config, epochs=None)
        sources["epochs"] = f"None: steps given by {explicit['steps']}"
    return config, {f.name: sources.get(f.name, "default") for f in dataclasses.fields(config)}


def resolve_epochs(config: DistillConfig) -> DistillConfig:
    """``config`` with ``steps`` from its ``epochs`` and the loaded train split's size (see
    :func:`steps_for_epochs`; the split after ``train_limit``); unchanged when epochs is None.

    Raises ValueError or RuntimeError when the data cannot be loaded.
    """
    if config.epochs is None:
        return config
    rows = len(load_data(config).train)
    steps = steps_for_epochs(config.epochs, rows, config.batch_size)
    return DistillConfig.from_overrides({"steps": steps}, base=config)


def dry_run(runs: Sequence[DistillConfig], sources: dict[str, str]) -> str:
    """What ``distill --dry-run`` prints: each field, its value and where it came from, then the
    steps' origin and the teacher and student beside the reference's. Loads no model; loads the
    data only to count epochs in steps, and never from the hub."""
    first = runs[0]
    steps_value, steps_source = None, None  # None: as the runs and sources say
    if first.epochs is not None:
        counted = f"ceil(epochs {first.epochs:g} x train rows / batch {first.batch_size})"
        steps_value, steps_source = "?", f"computed once the data loads: {counted}"
        if first.data_dir is None and re.sub(r"[-_\s]", "", first.data.lower()) in GLUE_TASKS:
            steps_source += (" (GLUE from the hub is not loaded by a dry run; --data-dir DIR "
                             "reads GLUE's TSV files)")
        else:
            try:
                rows = len(load_data(first).train)
            except (ValueError, RuntimeError) as e:
                steps_source += f" (the data did not load: {e})"
            else:
                steps = steps_for_epochs(first.epochs, rows, first.batch_size)
                steps_value = str(steps)
                steps_source = (f"from epochs: ceil({first.epochs:g} x {rows:,} train rows / "
                                f"{first.batch_size})")
    width = max(len(f.name) for f in dataclasses.fields(first))
    lines = [f"{'field':<{width}}  {'value':<24}  from"]
    for field in dataclasses.fields(first):
        name = field.name
        values = list(dict.fromkeys(str(getattr(c, name)) for c in runs))
        source = sources[name]
        if name in RUN_FLAGS:
            source = RUN_FLAGS[name] if values != [str(field.default)] else "default"
        if name == "steps" and steps_value is not None:
            values, source = [steps_value], steps_source
        lines.append(f"{name:<{width}}  {','.join(values):<24}  {source}")
    lines.append(f"runs: {len(runs)} (each recipe x each seed)")
    lines.append(f"teacher: {first.teacher or 'the packaged MiniLM-L6 (6 layers, 384 hidden)'}, "
                 f"fine-tuned here for {first.teacher_steps} steps; the reference teacher is "
                 f"{REFERENCE_TEACHER} (--set teacher=bert-base-uncased to use it)")
    lines.append(f"student: the teacher's first {first.student_layers} layers; the reference "
                 f"student is {REFERENCE_STUDENT}")
    if first.anneal_temperature:
        lines.append(f"kd_temperature: lowered from {first.kd_temperature:g} to 1 at every step "
                     f"(the reference lowers it once per epoch, on the same line)")
    lines.append("dry run: no model loaded, nothing trained")
    return "\n".join(lines)
