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

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from sinkd.losses import SinKDLoss
from sinkd.validation import check_bool, check_choice, check_int, check_logits, check_number

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
    start = check_number("start", start, low=0, low_open=True)
    n_epochs = check_int("n_epochs", n_epochs, low=1)
    epoch = check_int("epoch", epoch, low=0, high=n_epochs - 1)
    if n_epochs == 1:
        return 1.0
    return start + (1.0 - start) * epoch / (n_epochs - 1)


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float,
            kind: str = "soft_ce", t_squared: bool = False) -> Tensor:
    r"""Knowledge-distillation loss at ``temperature``, averaged over the batch.

    .. math::
        \mathrm{soft\_ce} = -\frac1N \sum_i \sum_c p^t_{ic} \log p^s_{ic}, \qquad
        \mathrm{kl} = \frac1N \sum_i \mathrm{KL}(p^t_i \,\|\, p^s_i), \qquad
        p = \mathrm{softmax}(z / T)

    times :math:`T^2` when ``t_squared``. The two kinds have the same student gradient (they
    differ by the teacher's entropy); the teacher is detached.

    Parameters
    ----------
    student_logits, teacher_logits : tensor, shape (N, C)
        Floating-point logits (float16 / bfloat16 are computed in float32).
    temperature : float
        KD temperature T > 0.
    kind : {"soft_ce", "kl"}
        The reference uses the soft cross-entropy.
    t_squared : bool
        Multiply by T^2 (Hinton et al.); the reference does not.

    Returns
    -------
    tensor, shape ()

    Examples
    --------
    >>> z = torch.tensor([[1.0, 0.0]])
    >>> float(kd_loss(z, z, 1.0, "kl"))
    0.0

    References
    ----------
    .. [1] G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural Network",
       NIPS Deep Learning Workshop 2015.
    """
    kind = check_choice("kind", kind, KD_LOSSES)
    temperature = check_number("temperature", temperature, low=0, low_open=True)
    t_squared = check_bool("t_squared", t_squared)
    check_logits("student_logits", student_logits)
    check_logits("teacher_logits", teacher_logits)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student_logits {tuple(student_logits.shape)} and teacher_logits "
                         f"{tuple(teacher_logits.shape)} must have the same shape (N, C)")
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
    r"""The SinKD recipe's loss, with each part returned for logging.

    .. math::
        \mathcal{L} = (1 - \alpha)\, \mathrm{CE}(z^s, y) + \alpha\, \mathrm{KD}_{T}(z^s, z^t)
            + \beta\, \mathcal{L}_{\mathrm{SinKD}}(z^s, z^t)

    with :math:`\mathrm{KD}_T` from :func:`kd_loss` and :math:`\mathcal{L}_{\mathrm{SinKD}}`
    from ``sinkhorn_term`` (:class:`sinkd.SinKDLoss`).

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

    No step reads a value back from the device (no host synchronisation): the options are
    checked in Python and the SinKD term is a :class:`SinKDLoss`, which does not check the
    logits for NaN per call.

    Returns
    -------
    ObjectiveTerms
        ``total``, ``ce``, ``kd`` and ``sinkhorn``, scalar tensors in float32 for half-precision
        logits, else in the logits' dtype.

    Examples
    --------
    >>> z = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    >>> terms = distillation_objective(z, z, torch.tensor([0, 1]), alpha=0.5, beta=0.0)
    >>> bool(torch.isclose(terms.total, 0.5 * terms.ce + 0.5 * terms.kd))
    True

    References
    ----------
    .. [1] X. Cui et al., "Sinkhorn Distance Minimization for Knowledge Distillation",
       LREC-COLING 2024 (the objective and its weights).
    .. [2] G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural Network", 2015.
    """
    alpha = check_number("alpha", alpha, low=0, high=1)
    beta = check_number("beta", beta, low=0)
    kd = check_choice("kd", kd, KD_LOSSES)
    kd_temperature = check_number("kd_temperature", kd_temperature, low=0, low_open=True)
    if sinkhorn_term is not None and not isinstance(sinkhorn_term, SinKDLoss):
        raise ValueError(f"sinkhorn_term must be a SinKDLoss or None, got "
                         f"{type(sinkhorn_term).__name__}")
    compute = _compute_dtype(student_logits)
    kd_value = kd_loss(student_logits, teacher_logits, kd_temperature, kd, t_squared)
    ce = F.cross_entropy(student_logits.to(compute), labels)
    if beta > 0:
        term = (sinkhorn_term if sinkhorn_term is not None else SinKDLoss())(
            student_logits, teacher_logits).to(compute)
    else:
        term = torch.zeros((), dtype=compute, device=student_logits.device)
    total = (1 - alpha) * ce + alpha * kd_value + beta * term
    return ObjectiveTerms(total=total, ce=ce, kd=kd_value, sinkhorn=term)
