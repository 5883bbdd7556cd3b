"""Distil a fine-tuned BERT teacher into a small BERT student (needs the ``distill`` extra).

The modules, from the bottom up (each imports only those above it):

- :mod:`~sinkd.distill.glue`: GLUE's tasks, from the hub or from GLUE's own TSV files;
- :mod:`~sinkd.distill.data`: labelled texts (Rotten Tomatoes, GLUE, a CSV/TSV) and their splits;
- :mod:`~sinkd.distill.models`: devices, loading BERTs, students, teacher logits, the cache folder;
- :mod:`~sinkd.distill.recipes`: the losses, one per recipe (:data:`RECIPES`);
- :mod:`~sinkd.distill.config`: :class:`DistillConfig`, every setting with its default;
- :mod:`~sinkd.distill.parallel`: data parallelism under torchrun (shards, DDP, rank 0 writes);
- :mod:`~sinkd.distill.gradients`: each loss term's gradient norm at the student's logits;
- :mod:`~sinkd.distill.steps`: batches, schedule, optimiser, forward pass and update;
- :mod:`~sinkd.distill.records`: run records (JSON) and the comparison table;
- :mod:`~sinkd.distill.checkpoints`: the state a stopped run leaves, to resume it;
- :mod:`~sinkd.distill.teacher`: the teacher, fine-tuned once, and its cached logits;
- :mod:`~sinkd.distill.train`: the distillation loop, :func:`train`;
- :mod:`~sinkd.distill.tasks`: the reference's GLUE recipes (``--task``), resolved into a config;
- :mod:`~sinkd.distill.jobs`: runs queued in a background thread (the app's page);
- :mod:`~sinkd.distill.cli`: ``python -m sinkd distill`` and ``python -m sinkd compare``.

``import sinkd.distill`` does not import transformers: :mod:`~sinkd.distill.models` imports it
when a model is first loaded.

>>> from sinkd.distill import DistillConfig, RECIPES
>>> DistillConfig(recipe="kd").validate().recipe in RECIPES
True
"""

from sinkd.distill.comparison import compare, format_compare
from sinkd.distill.config import DistillConfig
from sinkd.distill.jobs import Job
from sinkd.distill.recipes import RECIPES, Recipe
from sinkd.distill.records import RunRecord, load_record, save_record
from sinkd.distill.steps import get_batch, lr_at
from sinkd.distill.teacher import PreparedTeacher, prepare_teacher
from sinkd.distill.train import evaluate, load_data, student_step, train

__all__ = [
    "RECIPES",
    "DistillConfig",
    "Job",
    "PreparedTeacher",
    "Recipe",
    "RunRecord",
    "compare",
    "evaluate",
    "format_compare",
    "get_batch",
    "load_data",
    "load_record",
    "lr_at",
    "prepare_teacher",
    "save_record",
    "student_step",
    "train",
]
