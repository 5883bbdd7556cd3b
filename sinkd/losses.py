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

:class:`SinKDLoss` is the training path: its options are checked once, at construction, and its
forward and backward never read a value back from the device (no host synchronisation), so a
GPU step never waits for the host (with ``batch="local"``, the default; ``batch="global"``, the
term of a data-parallel run's whole global batch, checks the shard sizes of every rank).
:func:`sinkd_loss` checks that the logits are finite on every call (``checks=False`` switches
that off).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sinkd.distributed import gather_rows, world_size
from sinkd.sinkhorn import GRADS, METHODS, kernel_is_safe, sinkhorn
from sinkd.validation import (
    check_bool,
    check_choice,
    check_finite,
    check_int,
    check_logits,
    check_number,
)

COSTS = ("l1", "l2", "sq_l2")
MARGINALS = ("unit", "uniform")
LEVELS = ("batch", "class")
BATCHES = ("local", "global")
# the largest distance between two probability vectors: it decides "auto" without reading D
COST_BOUNDS = {"l1": 2.0, "l2": math.sqrt(2.0), "sq_l2": 2.0}


def pairwise_cost(p: Tensor, q: Tensor, cost: str = "l1") -> Tensor:
    """Cost between every row of ``p`` (N, C) and every row of ``q`` (M, C): shape (N, M).

    "l1" is sum_c |p_ic - q_jc| (SinKD), "l2" the Euclidean distance, "sq_l2" its square.
    Computed without the matmul shortcut, so it is exact to round-off.
    """
    check_choice("cost", cost, COSTS)
    if cost == "l1":
        return torch.cdist(p, q, p=1.0)
    dist = torch.cdist(p, q, p=2.0, compute_mode="donot_use_mm_for_euclid_dist")
    return dist if cost == "l2" else dist.square()


@dataclass(frozen=True)
class _Options:
    """The loss's options, checked (pure Python: nothing is read from a device)."""

    reg: float
    n_iters: int
    temperature: float
    scale: float
    marginals: str
    cost: str
    method: str
    grad: str
    level: str
    debiased: bool
    batch: str


def _options(reg, n_iters, temperature, scale, marginals, cost, method, grad, level, debiased,
             class_cost, batch) -> _Options:
    options = _Options(
        reg=check_number("reg", reg, low=0, low_open=True),
        n_iters=check_int("n_iters", n_iters, low=1),
        temperature=check_number("temperature", temperature, low=0, low_open=True),
        scale=check_number("scale", scale, low=0),
        marginals=check_choice("marginals", marginals, MARGINALS),
        cost=check_choice("cost", cost, COSTS),
        method=check_choice("method", method, METHODS),
        grad=check_choice("grad", grad, GRADS),
        level=check_choice("level", level, LEVELS),
        debiased=check_bool("debiased", debiased),
        batch=check_choice("batch", batch, BATCHES),
    )
    if options.level == "class" and options.grad == "envelope":
        raise ValueError("grad='envelope' is not available with level='class': there the "
                         "student enters through the masses, not the cost; use grad='unrolled'")
    if class_cost is not None:
        if options.level != "class":
            raise ValueError(f"class_cost is only used with level='class', got level "
                             f"{options.level!r}")
        if not isinstance(class_cost, Tensor) or class_cost.dim() != 2 or (
                class_cost.shape[0] != class_cost.shape[1]) or class_cost.shape[0] == 0:
            raise ValueError(f"class_cost must be a tensor of shape (C, C), got "
                             f"{tuple(getattr(class_cost, 'shape', ())) or class_cost!r}")
    return options


def _check_pair(student_logits: Tensor, teacher_logits: Tensor,
                class_cost: Tensor | None) -> None:
    """Shapes and dtypes, in Python."""
    check_logits("student_logits", student_logits)
    check_logits("teacher_logits", teacher_logits)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student_logits {tuple(student_logits.shape)} and teacher_logits "
                         f"{tuple(teacher_logits.shape)} must have the same shape (N, C)")
    n_classes = student_logits.shape[1]
    if class_cost is not None and class_cost.shape[0] != n_classes:
        raise ValueError(f"class_cost must have shape (C, C) = ({n_classes}, {n_classes}) to "
                         f"match the logits, got {tuple(class_cost.shape)}")


def _gather_pair(student_logits: Tensor, teacher_logits: Tensor) -> tuple[Tensor, Tensor]:
    """The logits of every rank for batch="global": the student's differentiable (the gradient
    of every rank's copy is summed back to its owner), the teacher's detached.

    One gather for both (side by side; ``torch.cat`` promotes to the wider dtype, exact, and
    each half is cast back), so a shape error names the (N, 2C) shapes of that pair. Outside a
    process group they are returned as they are.
    """
    if world_size() == 1:  # no collective: "global" is "local"
        return student_logits, teacher_logits
    n_classes = student_logits.shape[1]
    both = gather_rows(torch.cat([student_logits, teacher_logits.detach()], dim=1),
                       differentiable=True, name="batch='global'")  # (W*N, 2C)
    return (both[:, :n_classes].to(student_logits.dtype),
            both[:, n_classes:].to(teacher_logits.dtype))


def _method(o: _Options, bound: float | None, dtype: torch.dtype) -> str:
    """The method "auto" stands for, decided from a known bound of the cost (None: unknown)."""
    if o.method != "auto":
        return o.method
    return "kernel" if bound is not None and kernel_is_safe(bound, o.reg, dtype) else "log"


def _transport_cost(p_s: Tensor, p_t: Tensor, o: _Options, class_cost: Tensor | None,
                    class_bound: float | None, checks: bool) -> Tensor:
    """<P, D> for one pair of probability batches (N, C), reduced to a scalar."""
    n, n_classes = p_s.shape
    solve = dict(n_iters=o.n_iters, tol=0, grad=o.grad, checks=checks)
    if o.level == "batch":
        D = pairwise_cost(p_s, p_t, o.cost)  # (N, N)
        mass = torch.full((n,), 1.0 if o.marginals == "unit" else 1.0 / n,
                          dtype=p_s.dtype, device=p_s.device)
        method = _method(o, COST_BOUNDS[o.cost], p_s.dtype)
        return sinkhorn(mass, mass, D, o.reg, method=method, **solve).cost
    # class level (as in WKD): one OT problem per sample between its two class distributions
    if class_cost is None:  # 0/1 cost between classes: exact OT is the total variation
        class_cost, class_bound = 1.0 - torch.eye(n_classes, dtype=p_s.dtype,
                                                  device=p_s.device), 1.0
    M = class_cost.to(p_s).expand(n, n_classes, n_classes)  # (N, C, C)
    method = _method(o, class_bound, p_s.dtype)
    per_sample = sinkhorn(p_s, p_t, M, o.reg, method=method, **solve).cost  # (N,)
    return per_sample.sum() if o.marginals == "unit" else per_sample.mean()


def _term(student_logits: Tensor, teacher_logits: Tensor, o: _Options,
          class_cost: Tensor | None, class_bound: float | None, checks: bool) -> Tensor:
    out_dtype = student_logits.dtype
    compute = torch.float32 if out_dtype in (torch.float16, torch.bfloat16) else out_dtype
    p_s = F.softmax(student_logits.to(compute) / o.temperature, dim=-1)  # (N, C)
    p_t = F.softmax(teacher_logits.detach().to(compute) / o.temperature, dim=-1)  # (N, C)
    args = (o, class_cost, class_bound, checks)
    value = _transport_cost(p_s, p_t, *args)
    if o.debiased:
        value = (value - 0.5 * _transport_cost(p_s, p_s, *args)
                 - 0.5 * _transport_cost(p_t, p_t, *args).detach())
    return (o.scale * value).to(out_dtype)


def _class_cost_bound(class_cost: Tensor | None) -> float | None:
    """max |class_cost| (a read-back), after checking that it is finite."""
    if class_cost is None:
        return None
    check_finite("class_cost", class_cost)
    return float(class_cost.detach().abs().max())


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
    checks: bool = True,
    batch: str = "local",
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
        Student logits (floating point); gradients flow to them.
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
    method : {"auto", "kernel", "log"}
        As in :func:`sinkd.sinkhorn`; "auto" is decided from the known bound of the cost
        (``COST_BOUNDS``: l1 and sq_l2 <= 2, l2 <= sqrt 2; 1 for the default class cost), not
        from D's values, so it never reads D back.
    grad : {"unrolled", "envelope"}
        As in :func:`sinkd.sinkhorn`.
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
    checks : bool
        Check that the logits (and ``class_cost``) are finite, a clear error for NaN logits,
        which reads one number back from the device. ``checks=False`` reads nothing back (no
        host synchronisation): "log" then runs plain log-sum-exp iterations (the same values),
        and "auto" with a user ``class_cost`` runs "log". :class:`SinKDLoss` runs this way.
        With ``batch="global"`` the check runs on the gathered batch, so every rank raises.
    batch : {"local", "global"}
        Under data parallelism (an initialised ``torch.distributed`` process group of W ranks,
        each with N rows of the global batch): "local" (default) computes the term of this
        rank's N rows. "global" all-gathers both logits of every rank (in rank order; equal N on
        every rank, else ValueError) and computes on every rank the term of the whole global
        batch (W*N rows): its value is the single-process term of the concatenated batch, and
        the gradient reaching rank r's student logits is W times rows r of the single-process
        gradient (every rank computes the same full term, and the gather's backward sums the W
        copies' gradients), so DDP's averaging of parameter gradients gives exactly the
        single-device gradient of the same global batch. Level "class" is per sample, so
        "global" just sums (or averages) over the global batch. "global" costs the gather, one
        small all-gather of the shapes and one read-back per call (a host synchronisation).
        Outside a process group "global" is "local", with no collective.

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
    >>> bool(sinkd_loss(z_s, z_t, batch="global") == sinkd_loss(z_s, z_t))  # one process
    True

    References
    ----------
    .. [1] X. Cui et al., "Sinkhorn Distance Minimization for Knowledge Distillation",
       LREC-COLING 2024, Section 3 (batch-wise reformulation).
    .. [2] M. Cuturi, "Sinkhorn Distances", NeurIPS 2013.
    .. [3] J. Lv et al., "Wasserstein Distance Rivals Kullback-Leibler Divergence for Knowledge
       Distillation" (WKD), NeurIPS 2024 (class-level transport).
    """
    o = _options(reg, n_iters, temperature, scale, marginals, cost, method, grad, level,
                 debiased, class_cost, batch)
    checks = check_bool("checks", checks)
    _check_pair(student_logits, teacher_logits, class_cost)
    if o.batch == "global":  # before the checks: every rank then sees the same batch
        student_logits, teacher_logits = _gather_pair(student_logits, teacher_logits)
    bound = None
    if checks:
        check_finite("student_logits", student_logits)
        check_finite("teacher_logits", teacher_logits)
        bound = _class_cost_bound(class_cost)
    return _term(student_logits, teacher_logits, o, class_cost, bound, checks)


class SinKDLoss(nn.Module):
    """:func:`sinkd_loss` as a module: options checked once, at construction; ``forward(z_s, z_t)``
    makes no host synchronisation (forward and backward).

    ``class_cost`` is a buffer: ``.to(device)`` moves it with the module. Its finiteness and its
    bound (for "auto") are read once, here. The logits are not checked for NaN or Inf per call
    (that would read a value back); call :func:`sinkd_loss` for that.

    ``batch="global"`` computes the term of the global batch of a data-parallel run on every
    rank (see :func:`sinkd_loss`): the gradient reaching rank r's student logits is W times its
    rows of the single-process gradient, so DDP's averaging gives the single-device gradient.
    It checks the shard sizes, which reads one value back per call; "local" (the default)
    makes no host synchronisation.

    Examples
    --------
    >>> loss = SinKDLoss(reg=0.1, n_iters=20)
    >>> loss(torch.zeros(4, 3), torch.zeros(4, 3)).shape
    torch.Size([])
    """

    class_cost: Tensor | None

    def __init__(
        self, *, reg: float = 0.1, n_iters: int = 20, temperature: float = 2.0,
        scale: float = 1e-3, marginals: str = "unit", cost: str = "l1", method: str = "auto",
        grad: str = "unrolled", level: str = "batch", class_cost: Tensor | None = None,
        debiased: bool = False, batch: str = "local",
    ) -> None:
        super().__init__()
        self.options = _options(reg, n_iters, temperature, scale, marginals, cost, method, grad,
                                level, debiased, class_cost, batch)
        self.register_buffer("class_cost", class_cost)
        self.class_bound = _class_cost_bound(class_cost)

    def forward(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        _check_pair(student_logits, teacher_logits, self.class_cost)
        if self.options.batch == "global":
            student_logits, teacher_logits = _gather_pair(student_logits, teacher_logits)
        return _term(student_logits, teacher_logits, self.options, self.class_cost,
                     self.class_bound, checks=False)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in vars(self.options).items())
