r"""The full distillation objective of the SinKD recipe, and its temperature schedule.

.. math::
    \mathcal{L} = (1 - \alpha)\, \mathrm{CE}(z^s, y) + \alpha\, \mathrm{KD}_{T}(z^s, z^t)
        + \beta\, \mathcal{L}_{\mathrm{SinKD}}(z^s, z^t)

where :math:`\mathrm{KD}_T` is the soft cross-entropy
:math:`-\frac1N \sum_i \sum_c \mathrm{softmax}(z^t_i/T)_c \log \mathrm{softmax}(z^s_i/T)_c`
(the reference) or :math:`\mathrm{KL}(p^t_T \,\|\, p^s_T)`, optionally times :math:`T^2`
(Hinton et al. 2015), and :math:`\mathcal{L}_{\mathrm{SinKD}}` is :func:`sinkd.sinkd_loss`.
The reference scripts use beta = 0.8 and per-task alpha and T (see the README).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from sinkd.losses import SinKDLoss

KD_LOSSES = ("soft_ce", "kl")


def _compute_dtype(x: Tensor) -> torch.dtype:
    """float32 for half-precision logits (losses are summed in float32), else their own dtype."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


@dataclass(frozen=True, eq=False)
class ObjectiveTerms:
    """The objective and its parts, each a scalar tensor (parts are unweighted)."""

    total: Tensor  # (1 - alpha) * ce + alpha * kd + beta * sinkhorn
    ce: Tensor  # cross-entropy with the labels
    kd: Tensor  # soft cross-entropy or KL at the KD temperature (times T^2 if asked)
    sinkhorn: Tensor  # the SinKD term (0 when beta = 0: not computed)


def annealed_temperature(start: float, epoch: int, n_epochs: int) -> float:
    """KD temperature of ``epoch`` (0-based): linear from ``start`` at epoch 0 to 1 at the last.

    The reference recipe's annealing (MNLI, MRPC, QQP). With one epoch, that epoch is the last.

    >>> [annealed_temperature(4.0, e, 4) for e in range(4)]
    [4.0, 3.0, 2.0, 1.0]
    """
    if not math.isfinite(start) or start <= 0:
        raise ValueError(f"start must be a finite temperature > 0, got {start!r}")
    if n_epochs < 1 or not 0 <= epoch < n_epochs:
        raise ValueError(
            f"epoch must be in [0, n_epochs) with n_epochs >= 1, got {epoch}, {n_epochs}"
        )
    if n_epochs == 1:
        return 1.0
    return start + (1.0 - start) * epoch / (n_epochs - 1)


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float,
            kind: str = "soft_ce", t_squared: bool = False) -> Tensor:
    """Per-sample KD at ``temperature``, averaged over the batch; the teacher is detached."""
    if kind not in KD_LOSSES:
        raise ValueError(f"kind must be one of {KD_LOSSES}, got {kind!r}")
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    compute = _compute_dtype(student_logits)
    log_p_s = F.log_softmax(student_logits.to(compute) / temperature, dim=-1)  # (N, C)
    log_p_t = F.log_softmax(teacher_logits.detach().to(compute) / temperature, dim=-1)  # (N, C)
    if kind == "soft_ce":
        value = -(log_p_t.exp() * log_p_s).sum(-1).mean()
    else:
        value = F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean")
    return value * temperature**2 if t_squared else value


def distillation_objective(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    *,
    alpha: float = 0.9,
    beta: float = 0.8,
    kd_temperature: float = 1.0,
    kd: str = "soft_ce",
    t_squared: bool = False,
    sinkhorn_term: SinKDLoss | None = None,
) -> ObjectiveTerms:
    """(1 - alpha) CE + alpha KD_T + beta SinKD, with each part returned for logging.

    Parameters
    ----------
    student_logits, teacher_logits : tensor, shape (N, C)
    labels : tensor of int, shape (N,)
    alpha : float in [0, 1]
        Weight of KD against CE.
    beta : float >= 0
        Weight of the SinKD term (reference 0.8); 0 skips its computation.
    kd_temperature : float > 0
        KD temperature T (see :func:`annealed_temperature` for the schedule).
    kd : {"soft_ce", "kl"}
        The reference uses the soft cross-entropy (KL plus the teacher's entropy, same gradient).
    t_squared : bool
        Multiply KD by T^2 (Hinton et al.); the reference does not.
    sinkhorn_term : SinKDLoss, optional
        The SinKD term's options; default ``SinKDLoss()`` (the reference term).

    Examples
    --------
    >>> z = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    >>> terms = distillation_objective(z, z, torch.tensor([0, 1]), alpha=0.5, beta=0.0)
    >>> bool(torch.isclose(terms.total, 0.5 * terms.ce + 0.5 * terms.kd))
    True
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    if kd not in KD_LOSSES:
        raise ValueError(f"kd must be one of {KD_LOSSES}, got {kd!r}")
    if not math.isfinite(kd_temperature) or kd_temperature <= 0:
        raise ValueError(f"kd_temperature must be a finite number > 0, got {kd_temperature!r}")
    compute = _compute_dtype(student_logits)
    ce = F.cross_entropy(student_logits.to(compute), labels)
    kd_value = kd_loss(student_logits, teacher_logits, kd_temperature, kd, t_squared)
    if beta > 0:
        term = (sinkhorn_term or SinKDLoss())(student_logits, teacher_logits).to(compute)
    else:
        term = torch.zeros((), dtype=compute, device=student_logits.device)
    total = (1 - alpha) * ce + alpha * kd_value + beta * term
    return ObjectiveTerms(total=total, ce=ce, kd=kd_value, sinkhorn=term)
