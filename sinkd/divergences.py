"""Classical (non-optimal-transport) divergences between softened class distributions.

All divergences are computed from ``log_softmax`` values only, so they are finite, with finite
gradients, for any finite logits (the scaled, max-shifted logits are clamped from below at
``-finfo.max / 4``, which only touches classes whose probability already underflows to 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from sinkd.validation import (
    check_bool,
    check_choice,
    check_finite,
    check_logits,
    check_number,
)

__all__ = ["DIVERGENCES", "divergence"]

_LOG2 = math.log(2.0)


def _kl(lp: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) summed over the last axis, from log-probabilities (all finite)."""
    return (lp.exp() * (lp - lq)).sum(-1)


def _log_mix(la: torch.Tensor, lb: torch.Tensor, w: float) -> torch.Tensor:
    """log(w * a + (1 - w) * b) from log a, log b, with exact endpoints w in {0, 1}."""
    if w == 0.0:
        return lb
    if w == 1.0:
        return la
    return torch.logaddexp(la + math.log(w), lb + math.log1p(-w))


def _fkl(ls: torch.Tensor, lt: torch.Tensor, skew: float, beta: float) -> torch.Tensor:
    return _kl(lt, ls)


def _rkl(ls: torch.Tensor, lt: torch.Tensor, skew: float, beta: float) -> torch.Tensor:
    return _kl(ls, lt)


def _js(ls: torch.Tensor, lt: torch.Tensor, skew: float, beta: float) -> torch.Tensor:
    lm = torch.logaddexp(ls, lt) - _LOG2
    return 0.5 * _kl(lt, lm) + 0.5 * _kl(ls, lm)


def _tvd(ls: torch.Tensor, lt: torch.Tensor, skew: float, beta: float) -> torch.Tensor:
    return 0.5 * (lt.exp() - ls.exp()).abs().sum(-1)


def _skew_kl(ls: torch.Tensor, lt: torch.Tensor, skew: float, beta: float) -> torch.Tensor:
    return _kl(lt, _log_mix(lt, ls, skew))


def _skew_rkl(ls: torch.Tensor, lt: torch.Tensor, skew: float, beta: float) -> torch.Tensor:
    return _kl(ls, _log_mix(ls, lt, skew))


def _gjsd(ls: torch.Tensor, lt: torch.Tensor, skew: float, beta: float) -> torch.Tensor:
    if beta == 0.0:  # limit beta -> 0 of the normalised generalised JSD
        return _kl(lt, ls)
    if beta == 1.0:  # limit beta -> 1
        return _kl(ls, lt)
    lm = _log_mix(lt, ls, beta)
    return (beta * _kl(lt, lm) + (1.0 - beta) * _kl(ls, lm)) / (beta * (1.0 - beta))


_Div = Callable[[torch.Tensor, torch.Tensor, float, float], torch.Tensor]
_FUNCS: dict[str, _Div] = {
    "kl": _fkl,
    "rkl": _rkl,
    "js": _js,
    "tvd": _tvd,
    "skew_kl": _skew_kl,
    "skew_rkl": _skew_rkl,
    "gjsd": _gjsd,
}
DIVERGENCES: tuple[str, ...] = tuple(_FUNCS)

_REDUCTIONS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "batchmean": lambda d, C: d.mean(),
    "mean": lambda d, C: d.mean() / C,
    "sum": lambda d, C: d.sum(),
    "none": lambda d, C: d,
}


def _log_probs(logits: torch.Tensor, temperature: float, dtype: torch.dtype) -> torch.Tensor:
    """Stable log_softmax(logits / temperature) in ``dtype``, finite for finite logits."""
    z = logits.to(dtype) / temperature
    big = torch.finfo(dtype).max
    z = torch.nan_to_num(z, nan=math.nan, posinf=big, neginf=-big)  # logits / T overflowed
    z = z - z.amax(-1, keepdim=True).detach()  # shift invariant; may reach -inf ...
    return torch.log_softmax(z.clamp_min(-big / 4), -1)  # ... so clamp, where p == 0 anyway


def divergence(
    name: str,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    reduction: str = "batchmean",
    skew: float = 0.1,
    beta: float = 0.5,
    checks: bool = True,
) -> torch.Tensor:
    r"""Divergence between the tempered softmax distributions of teacher and student logits.

    .. math::
        \mathrm{KL}(p \,\|\, q) = \sum_{c=1}^{C} p_c (\log p_c - \log q_c), \quad
        \begin{array}{ll}
        \texttt{kl}: \mathrm{KL}(p_t \| p_s), &
        \texttt{rkl}: \mathrm{KL}(p_s \| p_t), \\
        \texttt{js}: \tfrac12 \mathrm{KL}(p_t \| m) + \tfrac12 \mathrm{KL}(p_s \| m), &
        \texttt{tvd}: \tfrac12 \sum_c |p_{t,c} - p_{s,c}|, \\
        \texttt{skew\_kl}: \mathrm{KL}(p_t \| \alpha p_t + (1-\alpha) p_s), &
        \texttt{skew\_rkl}: \mathrm{KL}(p_s \| \alpha p_s + (1-\alpha) p_t), \\
        \texttt{gjsd}: \dfrac{\beta \mathrm{KL}(p_t \| m_\beta)
            + (1-\beta) \mathrm{KL}(p_s \| m_\beta)}{\beta (1-\beta)} & \\
        \end{array}

    where:

    - :math:`p_s = \mathrm{softmax}(z_s / T)`, :math:`p_t = \mathrm{softmax}(z_t / T)`, shape
      (N, C), from the student and teacher logits :math:`z_s, z_t` and temperature :math:`T`
    - :math:`m = (p_s + p_t) / 2` and :math:`m_\beta = \beta p_t + (1-\beta) p_s`, shape (N, C)
    - :math:`\alpha` is ``skew`` and :math:`\beta` is ``beta`` (scalars in [0, 1])

    Natural logarithms throughout (``js`` lies in :math:`[0, \log 2]`, ``tvd`` in [0, 1]).
    ``gjsd`` is the generalised JSD of GKD [4] divided by :math:`\beta(1-\beta)`. Unnormalised,
    it vanishes at both ends of [0, 1]; since its derivative at :math:`\beta = 0` is
    :math:`\mathrm{KL}(p_t \| p_s)` (and at 1, :math:`-\mathrm{KL}(p_s \| p_t)`), the normalised
    form is continuous on the closed interval with ``gjsd(0) = kl``, ``gjsd(1) = rkl`` (set
    exactly at the endpoints) and ``gjsd(0.5) = 4 * js``. Implementations that switch to KL only
    at the endpoints are discontinuous there. Within :math:`\sim 10^{-8}` of an endpoint (float64)
    the ratio of small quantities loses accuracy (absolute error about :math:`\epsilon / \beta`).

    Parameters
    ----------
    name : str
        One of :data:`DIVERGENCES`: ``"kl"``, ``"rkl"``, ``"js"``, ``"tvd"``, ``"skew_kl"``,
        ``"skew_rkl"``, ``"gjsd"``.
    student_logits : torch.Tensor, shape (N, C)
        Student logits, or (..., C): the class axis is the last. Finite values only.
    teacher_logits : torch.Tensor, shape (N, C)
        Teacher logits, same shape as ``student_logits``. Not detached here: gradients flow to
        the teacher unless the caller passes ``teacher_logits.detach()``.
    temperature : float, default 1.0
        Softmax temperature :math:`T > 0`, finite. The loss is not multiplied by :math:`T^2`.
    reduction : str, default "batchmean"
        ``"batchmean"`` (sum over classes, mean over leading dims), ``"mean"`` (``batchmean / C``),
        ``"sum"``, or ``"none"`` (per-sample values, shape (...,)).
    skew : float, default 0.1
        Skew :math:`\alpha \in [0, 1]` for ``skew_kl`` / ``skew_rkl`` (0 gives ``kl`` / ``rkl``).
    beta : float, default 0.5
        Weight :math:`\beta \in [0, 1]` for ``gjsd``.
    checks : bool, default True
        Check that the logits are finite (reads one number back from their device);
        ``checks=False`` makes no host synchronisation.

    Returns
    -------
    loss : torch.Tensor, shape () or (...,)
        The reduced divergence, in the promoted input dtype. float16 / bfloat16 inputs are
        computed in float32 and cast back (values above 65504 become inf in float16).

    Examples
    --------
    >>> import torch
    >>> s, t = torch.tensor([[50.0, -50.0]]), torch.tensor([[-50.0, 50.0]])
    >>> round(divergence("js", s, t).item(), 4), divergence("tvd", s, t).item()
    (0.6931, 1.0)
    >>> divergence("kl", s, s).item()
    0.0

    References
    ----------
    .. [1] Hinton, Vinyals, Dean (2015). Distilling the knowledge in a neural network.
    .. [2] Lin (1991). Divergence measures based on the Shannon entropy. IEEE Trans. Inf. Theory.
    .. [3] Ko, Kim, Chen, Yun (2024). DistiLLM: Towards streamlined distillation for large
       language models. ICML.
    .. [4] Agarwal et al. (2024). On-policy distillation of language models: learning from
       self-generated mistakes (GKD). ICLR.
    .. [5] Wen, Li, Du, Mou (2023). f-Divergence minimization for sequence-level knowledge
       distillation. ACL.
    """
    name = check_choice("name", name, DIVERGENCES)
    reduction = check_choice("reduction", reduction, tuple(_REDUCTIONS))
    temperature = check_number("temperature", temperature, low=0, low_open=True)
    skew = check_number("skew", skew, low=0, high=1)
    beta = check_number("beta", beta, low=0, high=1)
    check_logits("student_logits", student_logits, ndim=None)
    check_logits("teacher_logits", teacher_logits, ndim=None)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student_logits and teacher_logits must have the same shape, got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    if check_bool("checks", checks):
        check_finite("student_logits", student_logits)
        check_finite("teacher_logits", teacher_logits)
    out_dtype = torch.promote_types(student_logits.dtype, teacher_logits.dtype)
    dtype = torch.float32 if torch.finfo(out_dtype).bits < 32 else out_dtype
    ls = _log_probs(student_logits, temperature, dtype)
    lt = _log_probs(teacher_logits, temperature, dtype)
    per_sample = _FUNCS[name](ls, lt, skew, beta)
    return _REDUCTIONS[reduction](per_sample, ls.shape[-1]).to(out_dtype)
