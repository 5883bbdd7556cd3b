"""The parts of an optimisation step, shared by the teacher's fine-tuning and the distillation.

:func:`get_batch` (the rows of step k), :func:`lr_at` (warmup, then linear decay),
:func:`make_optimizer` (AdamW as for BERT), :func:`batch_logits` (a forward pass, bfloat16
autocast on CUDA) and :func:`optimizer_step` (backward, clipping, AdamW update). The teacher
(:mod:`sinkd.distill.teacher`) and the student (:mod:`sinkd.distill.train`) are trained by the
same code, with their own settings.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sinkd.distill.config import DistillConfig

MAX_GRAD_NORM = 1.0  # gradient clipping, as Hugging Face's Trainer does by default
NOT_INPUTS = ("labels", "teacher_logits")  # batch entries the model is not called with


def get_batch(split: dict[str, Tensor], step: int, config: DistillConfig, *,
              logits: Tensor | None = None,
              generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Rows of batch ``step``: epochs of seeded random permutations, padding trimmed.

    Batch k of epoch e is rows ``k B .. (k + 1) B`` of a permutation drawn with seed
    (seed, e), so a batch depends only on (step, seed): no state, a run can resume anywhere.
    Returns the split's tensors at those rows plus ``teacher_logits`` (B, C) when ``logits``
    (N, C) are given. ``generator`` is only reused storage (it is reseeded every call).
    """
    n = len(split["labels"])
    per_epoch = max(1, n // config.batch_size)  # the last partial batch of an epoch is dropped
    epoch, k = divmod(step, per_epoch)
    generator = generator if generator is not None else torch.Generator()
    generator.manual_seed(config.seed * 1_000_003 + epoch)
    rows = torch.randperm(n, generator=generator)[k * config.batch_size:(k + 1) * config.batch_size]
    length = int(split["attention_mask"][rows].sum(1).max())  # right padding: trim to the longest
    batch = {key: v[rows, :length] if v.dim() == 2 else v[rows] for key, v in split.items()}
    if logits is not None:
        batch["teacher_logits"] = logits[rows]  # (B, C)
    return batch


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


def make_optimizer(model: nn.Module, config: DistillConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not biases, not LayerNorm), as for BERT."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr)


def batch_logits(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """The model's logits (B, C) on a tokenized batch, in float32 (float64 for float64 weights).

    On CUDA the forward pass of float32 weights runs under bfloat16 autocast (no loss scaling
    needed, unlike float16) and the logits are cast up, so every loss is computed in float32;
    elsewhere, and for float64 weights (exactness tests), it runs in the weights' dtype. Entries
    of ``NOT_INPUTS`` in ``batch`` are not passed to the model.
    """
    param = next(model.parameters())
    inputs = {k: v for k, v in batch.items() if k not in NOT_INPUTS}
    wide = param.dtype == torch.float64
    with torch.autocast(param.device.type, dtype=torch.bfloat16,
                        enabled=param.device.type == "cuda" and not wide):
        logits = model(**inputs).logits  # (B, C)
    return logits if wide else logits.float()


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss: Tensor, *,
                   lr: float) -> None:
    """One AdamW update of ``model`` at ``lr`` from ``loss``, gradients clipped to norm
    :data:`MAX_GRAD_NORM`."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
    optimizer.step()
