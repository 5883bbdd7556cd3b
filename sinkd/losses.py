r"""The SinKD loss: Sinkhorn distance between the student's and the teacher's predictions.

The batch-wise term of Cui et al. (2024), for logits :math:`z^s, z^t` of shape (N, C):

.. math::
    p^s_i = \mathrm{softmax}(z^s_i / \tau), \quad p^t_j = \mathrm{softmax}(z^t_j / \tau), \quad
    D_{ij} = \lVert p^s_i - p^t_j \rVert_1 \\
    \mathcal{L}_{\mathrm{SinKD}} = \mathrm{scale} \cdot \langle P_T, D \rangle, \quad
    P_T = \text{T rows-then-columns Sinkhorn scalings of } e^{-D/\lambda}
    \text{ to unit marginals}

The points being transported are the *samples* of the batch (N student points, N teacher points,
mass 1 each), not the classes. With the defaults (tau = 2, lambda = 0.1, T = 20, scale = 1e-3,
unit marginals, L1 cost, gradients unrolled through all T iterations) this is the reference term
exactly. Unlike the reference code, the teacher never receives gradients and the temperature
argument is honoured.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sinkd.sinkhorn import GRADS, METHODS, sinkhorn

COSTS = ("l1", "l2", "sq_l2")
MARGINALS = ("unit", "uniform")
LEVELS = ("batch", "class")


def pairwise_cost(p: Tensor, q: Tensor, cost: str = "l1") -> Tensor:
    """Cost between every row of ``p`` (N, C) and every row of ``q`` (M, C): shape (N, M).

    "l1" is sum_c |p_ic - q_jc| (SinKD), "l2" the Euclidean distance, "sq_l2" its square.
    Computed without the matmul shortcut, so it is exact to round-off.
    """
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {COSTS}, got {cost!r}")
    if cost == "l1":
        return torch.cdist(p, q, p=1.0)
    dist = torch.cdist(p, q, p=2.0, compute_mode="donot_use_mm_for_euclid_dist")
    return dist if cost == "l2" else dist.square()


def _check(student_logits, teacher_logits, reg, n_iters, temperature, scale, marginals, cost,
           method, grad, level, class_cost, debiased) -> None:
    if not isinstance(debiased, bool):
        raise ValueError(f"debiased must be True or False, got {debiased!r}")
    for name, x in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[0] < 1 or x.shape[1] < 1:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a tensor of shape (N, C), N, C >= 1, got {shape}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} must be finite: it contains NaN or Inf")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student_logits {tuple(student_logits.shape)} and teacher_logits "
            f"{tuple(teacher_logits.shape)} must have the same shape (N, C)"
        )
    for name, value in (("temperature", temperature), ("reg", reg)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
        raise ValueError(f"scale must be a finite number >= 0, got {scale!r}")
    if isinstance(n_iters, bool) or not isinstance(n_iters, int) or n_iters < 1:
        raise ValueError(f"n_iters must be an integer >= 1, got {n_iters!r}")
    for name, value, allowed in (("marginals", marginals, MARGINALS), ("cost", cost, COSTS),
                                 ("method", method, METHODS), ("grad", grad, GRADS),
                                 ("level", level, LEVELS)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    if level == "class" and grad == "envelope":
        raise ValueError(
            "grad='envelope' is not available with level='class': there the student enters "
            "through the masses, not the cost; use grad='unrolled'"
        )
    _check_class_cost(class_cost, level, student_logits.shape[1])


def _check_class_cost(class_cost, level: str, n_classes: int | None) -> None:
    """class_cost is a square (C, C) tensor used with level='class' (C unknown: any square)."""
    if class_cost is None:
        return
    if level != "class":
        raise ValueError("class_cost is only used with level='class'")
    square = isinstance(class_cost, Tensor) and class_cost.dim() == 2 and (
        class_cost.shape[0] == class_cost.shape[1])
    if not square or (n_classes is not None and class_cost.shape[0] != n_classes):
        expected = f"({n_classes}, {n_classes})" if n_classes is not None else "(C, C)"
        raise ValueError(f"class_cost must be a tensor of shape (C, C) = {expected}, got "
                         f"{getattr(class_cost, 'shape', class_cost)!r}")


def _transport_cost(p_s, p_t, *, reg, n_iters, marginals, cost, method, grad, level, class_cost):
    """<P, D> for one pair of probability batches (N, C), reduced to a scalar."""
    n, n_classes = p_s.shape
    if level == "batch":
        D = pairwise_cost(p_s, p_t, cost)  # (N, N)
        mass = torch.full((n,), 1.0 if marginals == "unit" else 1.0 / n,
                          dtype=p_s.dtype, device=p_s.device)
        return sinkhorn(mass, mass, D, reg, n_iters=n_iters, tol=0, method=method,
                        grad=grad).cost
    # class level (as in WKD): one OT problem per sample between its two class distributions
    if class_cost is None:  # 0/1 cost between classes: exact OT is the total variation
        class_cost = 1.0 - torch.eye(n_classes, dtype=p_s.dtype, device=p_s.device)
    M = class_cost.to(p_s).expand(n, n_classes, n_classes)  # (N, C, C)
    per_sample = sinkhorn(p_s, p_t, M, reg, n_iters=n_iters, tol=0, method=method,
                          grad=grad).cost  # (N,)
    return per_sample.sum() if marginals == "unit" else per_sample.mean()


def sinkd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    reg: float = 0.1,
    n_iters: int = 20,
    temperature: float = 2.0,
    scale: float = 1e-3,
    marginals: str = "unit",
    cost: str = "l1",
    method: str = "auto",
    grad: str = "unrolled",
    level: str = "batch",
    class_cost: Tensor | None = None,
    debiased: bool = False,
) -> Tensor:
    r"""The SinKD term: scale * <P, D> between student and teacher predictions of a batch.

    .. math::
        \mathcal{L} = \mathrm{scale} \cdot \langle P_T(D), D \rangle

    where (see the module docstring for the batch-wise construction):

    - :math:`D` (N, N) is the ``cost`` between student sample i and teacher sample j (level
      "batch"), or per sample a (C, C) cost between classes (level "class", as in WKD);
    - :math:`P_T` is the plan after ``n_iters`` rows-then-columns Sinkhorn iterations with
      entropic weight ``reg`` (lambda), run by :func:`sinkd.sinkhorn` with ``tol=0``.

    Parameters
    ----------
    student_logits : tensor, shape (N, C)
        Student logits; gradients flow to them.
    teacher_logits : tensor, shape (N, C)
        Teacher logits; detached here, the teacher never receives gradients.
    reg : float
        Entropic weight lambda > 0 (reference 0.1).
    n_iters : int
        Sinkhorn iterations T >= 1, all run (reference 20).
    temperature : float
        Softmax temperature tau > 0 (reference 2, independent of the KD temperature).
    scale : float
        Multiplier of the transport cost (reference 1e-3; the term is a sum, so it grows with N).
    marginals : {"unit", "uniform"}
        "unit": mass 1 per sample, total N (reference, a sum); "uniform": 1/N each (a mean).
    cost : {"l1", "l2", "sq_l2"}
        Distance between probability vectors (level "batch"); reference "l1".
    method, grad : str
        Passed to :func:`sinkd.sinkhorn` ("auto"/"kernel"/"log", "unrolled"/"envelope").
    level : {"batch", "class"}
        "batch": transport between the samples of the batch (SinKD). "class": per sample,
        transport between the student's and the teacher's class distributions over
        ``class_cost``; summed over samples ("unit") or averaged ("uniform").
    class_cost : tensor, shape (C, C), optional
        Ground cost between classes for level "class"; default 1 - identity.
    debiased : bool
        Return the debiased form OT(s, t) - OT(s, s) / 2 - OT(t, t) / 2, zero when the student
        equals the teacher (the plain term is not: entropic blur). Each OT is the same transport
        cost as the plain term; unlike Feydy's Sinkhorn divergence it is not guaranteed >= 0.

    Returns
    -------
    tensor, shape ()
        The term, in the logits' dtype (float16 / bfloat16 are computed in float32).

    Examples
    --------
    >>> z_s = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    >>> z_t = torch.tensor([[1.5, 0.0], [0.0, 1.0], [0.0, 0.5]], dtype=torch.float64)
    >>> round(float(sinkd_loss(z_s, z_t, scale=1.0)), 6)  # POT's plan gives 0.520540
    0.52054
    >>> bool(torch.isclose(sinkd_loss(z_s, z_t), sinkd_loss(z_s[[2, 0, 1]], z_t)))  # no pairing
    True

    References
    ----------
    .. [1] X. Cui et al., "Sinkhorn Distance Minimization for Knowledge Distillation",
       LREC-COLING 2024, Section 3 (batch-wise reformulation).
    .. [2] M. Cuturi, "Sinkhorn Distances", NeurIPS 2013.
    .. [3] J. Lv et al., "Wasserstein Distance Rivals Kullback-Leibler Divergence for Knowledge
       Distillation" (WKD), NeurIPS 2024 (class-level transport).
    """
    _check(student_logits, teacher_logits, reg, n_iters, temperature, scale, marginals, cost,
           method, grad, level, class_cost, debiased)
    out_dtype = student_logits.dtype
    compute = torch.float32 if out_dtype in (torch.float16, torch.bfloat16) else out_dtype
    p_s = F.softmax(student_logits.to(compute) / temperature, dim=-1)  # (N, C)
    p_t = F.softmax(teacher_logits.detach().to(compute) / temperature, dim=-1)  # (N, C)
    options = dict(reg=float(reg), n_iters=n_iters, marginals=marginals, cost=cost,
                   method=method, grad=grad, level=level, class_cost=class_cost)
    value = _transport_cost(p_s, p_t, **options)
    if debiased:
        value = value - 0.5 * _transport_cost(p_s, p_s, **options) - 0.5 * _transport_cost(
            p_t, p_t, **options
        ).detach()
    return (scale * value).to(out_dtype)


class SinKDLoss(nn.Module):
    """:func:`sinkd_loss` as a module: options fixed at construction, ``forward(z_s, z_t)``.

    Examples
    --------
    >>> loss = SinKDLoss(reg=0.1, n_iters=20)
    >>> loss(torch.zeros(4, 3), torch.zeros(4, 3)).shape
    torch.Size([])
    """

    def __init__(
        self, *, reg: float = 0.1, n_iters: int = 20, temperature: float = 2.0,
        scale: float = 1e-3, marginals: str = "unit", cost: str = "l1", method: str = "auto",
        grad: str = "unrolled", level: str = "batch", class_cost: Tensor | None = None,
        debiased: bool = False,
    ) -> None:
        super().__init__()
        self.options = dict(reg=reg, n_iters=n_iters, temperature=temperature, scale=scale,
                            marginals=marginals, cost=cost, method=method, grad=grad,
                            level=level, class_cost=class_cost, debiased=debiased)
        # fail at construction, not at the first batch
        _check(torch.zeros(1, 1), torch.zeros(1, 1), reg, n_iters, temperature, scale,
               marginals, cost, method, grad, level, None, debiased)
        _check_class_cost(class_cost, level, None)

    def forward(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        return sinkd_loss(student_logits, teacher_logits, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items() if k != "class_cost")
