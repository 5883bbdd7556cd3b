r"""The batch-wise toy: a batch of 2-D inputs, a fixed teacher whose predictions form a cloud on
the probability simplex (C = 3), and one linear student per loss, all from the same start.

SinKD's term transports the batch's N student predictions onto its N teacher predictions over
the L1 cost between probability vectors,

.. math::
    \mathcal{L}_{\mathrm{SinKD}} = \mathrm{scale}\,\langle P_T, D\rangle, \quad
    D_{ij} = \lVert p^s_i - p^t_j \rVert_1,

so it compares the two *clouds* of predictions and is blind to which student row belongs to
which teacher row (permuting the students leaves it unchanged). A per-sample loss compares
:math:`p^s_i` with :math:`p^t_i` only. This module fits the same linear softmax student
:math:`z^s = W x + b` by each of:

- ``kl``, ``rkl``, ``js``: per-sample :func:`sinkd.divergence` at temperature 1, batch mean;
- ``class_ot``: per-sample entropic OT between the two class distributions over the cost
  :math:`1 - I` (``sinkd_loss(level="class")``); its exact value is the total variation, since
  with unordered classes every unit of mass that moves costs 1;
- ``sinkd``: SinKD's batch-wise term alone (``sinkd_loss(level="batch")``);
- ``recipe``: the reference recipe with alpha = 1 (no CE, as the reference's MRPC and QQP
  settings): soft cross-entropy KD at T = 1 plus beta times the SinKD term
  (``sinkd.distillation_objective``).

All students are one stacked optimisation: every parameter has a leading row axis, the summed
loss is backpropagated once and Adam, elementwise, moves each row as if it were fitted alone.
The two OT terms are computed for all rows at once with :func:`sinkd.sinkhorn` exactly as
:func:`sinkd.sinkd_loss` computes them (tests/lab/test_batchwise.py checks the equality).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sinkd.divergences import divergence
from sinkd.losses import pairwise_cost
from sinkd.sinkhorn import kernel_is_safe, sinkhorn
from sinkd.validation import check_choice, check_int, check_number

Progress = Callable[[int, int], None]  # on_progress(done, total), in optimisation steps
STUDENTS = ("kl", "rkl", "js", "class_ot", "sinkd", "recipe")
TEACHERS = ("linear", "six_arcs")  # a linear student can copy the first, not the second
STARTS = ("small", "rolled")
N_CLASSES = 3
SHARPNESS = 4.0  # teacher logit scale: p = 0.995 at a cluster's centre
SCALE = 1e-3  # SinKD's reference scale of <P, D>
BETA = 0.8  # the recipe's weight of the SinKD term (reference)
DTYPE = torch.float64
ANGLE_JITTER = 0.15  # radians, around a cluster's centre
BETWEEN_SPREAD = 0.25  # radians, uncertain points around the midpoint between two clusters
RADIUS_JITTER = 0.1
START_NOISE = 0.05  # standard deviation of the start's seed-drawn weights


@dataclass(frozen=True, eq=False)
class Batch:
    """A toy batch: inputs, the teacher's logits and labels (numpy, float64)."""

    x: np.ndarray  # (N, 2) inputs
    teacher_logits: np.ndarray  # (N, C)
    between: np.ndarray  # (N,) bool: an uncertain point between two clusters
    teacher: str

    @property
    def teacher_probs(self) -> np.ndarray:
        return softmax(self.teacher_logits)

    @property
    def labels(self) -> np.ndarray:
        return self.teacher_logits.argmax(1)


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Log-probabilities of logits ``z`` (..., C), over the last axis, stable (numpy)."""
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    """Probabilities of logits ``z`` (..., C), over the last axis (numpy).

    >>> softmax(np.array([0.0, np.log(3.0)])).tolist()
    [0.25, 0.75]
    """
    return np.exp(log_softmax(z))


def _unit(deg: np.ndarray) -> np.ndarray:
    rad = np.deg2rad(deg)
    return np.stack([np.cos(rad), np.sin(rad)], -1)


def peaks(teacher: str) -> tuple[np.ndarray, np.ndarray]:
    """Angles (degrees) of the teacher's confident clusters and the class of each.

    Examples
    --------
    >>> a, c = peaks("six_arcs")
    >>> a.tolist(), c.tolist()
    ([90.0, 150.0, 210.0, 270.0, 330.0, 390.0], [0, 1, 2, 0, 1, 2])
    """
    check_choice("teacher", teacher, TEACHERS)
    if teacher == "linear":
        return 90.0 + 120.0 * np.arange(3), np.arange(3)
    return 90.0 + 60.0 * np.arange(6), np.arange(6) % 3


def teacher_logits(teacher: str, x: np.ndarray) -> np.ndarray:
    r"""The fixed teacher's logits for inputs ``x`` (N, 2): shape (N, C).

    ``linear``: :math:`z_k = s \langle x, u_k\rangle`, :math:`u_k` the unit vector at
    90 + 120k degrees. ``six_arcs``: :math:`z_k = s \lVert x\rVert \cos 2(\theta - \phi_k)`,
    :math:`\phi_k` = 90 + 60k degrees: each class owns two opposite arcs, which no linear map of
    x can reproduce. Both give (s, -s/2, -s/2) at a cluster's centre (:math:`s` = SHARPNESS).

    Examples
    --------
    >>> np.round(teacher_logits("linear", np.array([[0.0, 1.0]])), 6).tolist()
    [[4.0, -2.0, -2.0]]
    """
    check_choice("teacher", teacher, TEACHERS)
    if teacher == "linear":
        return SHARPNESS * x @ _unit(90.0 + 120.0 * np.arange(3)).T
    theta = np.arctan2(x[:, 1], x[:, 0])[:, None]
    phi = np.deg2rad(90.0 + 60.0 * np.arange(3))[None, :]
    return SHARPNESS * np.linalg.norm(x, axis=1, keepdims=True) * np.cos(2 * (theta - phi))


def make_batch(teacher: str = "linear", n: int = 48, uncertain: float = 0.25,
               seed: int = 0) -> Batch:
    """A toy batch of ``n`` inputs: clusters at the teacher's peaks (equal shares, round robin)
    and a share ``uncertain`` of points between two neighbouring clusters, where the teacher
    hesitates between two classes. Deterministic given ``seed``.

    Examples
    --------
    >>> b = make_batch("linear", n=12, uncertain=0.25, seed=0)
    >>> b.x.shape, b.teacher_logits.shape, int(b.between.sum())
    ((12, 2), (12, 3), 3)
    """
    check_choice("teacher", teacher, TEACHERS)
    n = check_int("n", n, low=6, high=512)
    uncertain = check_number("uncertain", uncertain, low=0, high=0.9)
    rng = np.random.default_rng(seed)
    angles, _ = peaks(teacher)
    k = len(angles)
    n_between = int(round(uncertain * n))
    n_peak = n - n_between
    gap = 360.0 / k
    centre = angles[np.arange(n_peak) % k] + np.rad2deg(ANGLE_JITTER * rng.standard_normal(n_peak))
    mid = angles[np.arange(n_between) % k] + gap / 2 + np.rad2deg(
        BETWEEN_SPREAD * rng.uniform(-1, 1, n_between))
    theta = np.concatenate([centre, mid])
    radius = 1.0 + RADIUS_JITTER * rng.standard_normal(n)
    x = radius[:, None] * _unit(theta)
    between = np.arange(n) >= n_peak
    return Batch(x, teacher_logits(teacher, x), between, teacher)


def start_params(start: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The student's start, weights (C, 2) and bias (C,): ``small`` (seed-drawn, near uniform
    predictions) or ``rolled`` (the linear teacher's weights with its classes rolled by one:
    the teacher's cloud with every label moved to the next class; plus the same small noise).

    Examples
    --------
    >>> W, b = start_params("rolled", 0)
    >>> W.shape, b.tolist()
    ((3, 2), [0.0, 0.0, 0.0])
    """
    check_choice("start", start, STARTS)
    rng = np.random.default_rng(10_000 + seed)
    W = START_NOISE * rng.standard_normal((N_CLASSES, 2))
    if start == "rolled":
        W = W + SHARPNESS * np.roll(_unit(90.0 + 120.0 * np.arange(3)), -1, axis=0)
    return W, np.zeros(N_CLASSES)


@dataclass(frozen=True)
class Options:
    """The losses' options: Sinkhorn lambda, T and temperature, the recipe's beta."""

    reg: float = 0.1
    n_iters: int = 20
    tau: float = 2.0
    beta: float = BETA

    def __post_init__(self) -> None:
        check_number("reg", self.reg, low=1e-3, high=10.0)
        check_int("n_iters", self.n_iters, low=1, high=1000)
        check_number("tau", self.tau, low=0.1, high=20.0)
        check_number("beta", self.beta, low=0.0, high=1e6)

    def method(self) -> str:
        """The method sinkd_loss's "auto" picks for the L1 cost (bounded by 2) in float64."""
        return "kernel" if kernel_is_safe(2.0, self.reg, DTYPE) else "log"


def batch_term(zs: torch.Tensor, zt: torch.Tensor, o: Options, *, scale: float = SCALE,
               return_plan: bool = False) -> Any:
    """SinKD's batch-wise term for R runs at once: ``scale * <P_T, D>``, shape (R,).

    ``zs``, ``zt`` are logits (R, N, C); equal, run by run, to
    ``sinkd_loss(zs[r], zt[r], reg=o.reg, n_iters=o.n_iters, temperature=o.tau, scale=scale)``.
    With ``return_plan`` also the plans (R, N, N).
    """
    p_s = torch.softmax(zs / o.tau, -1)
    p_t = torch.softmax(zt.detach() / o.tau, -1)
    D = pairwise_cost(p_s, p_t, "l1")  # (R, N, N)
    mass = torch.ones(D.shape[:-1], dtype=D.dtype)
    res = sinkhorn(mass, mass, D, o.reg, n_iters=o.n_iters, tol=0, method=o.method(),
                   checks=False)
    return (scale * res.cost, res.plan) if return_plan else scale * res.cost


def class_term(zs: torch.Tensor, zt: torch.Tensor, o: Options) -> torch.Tensor:
    """Per-sample entropic OT over the class cost 1 - I at temperature 1, batch mean, (R,).

    Equal, run by run, to ``sinkd_loss(zs[r], zt[r], level="class", marginals="uniform",
    temperature=1, scale=1, reg=o.reg, n_iters=o.n_iters)``.
    """
    R, N, C = zs.shape
    p_s = torch.softmax(zs, -1).reshape(R * N, C)
    p_t = torch.softmax(zt.detach(), -1).reshape(R * N, C)
    M = (1.0 - torch.eye(C, dtype=zs.dtype)).expand(R * N, C, C)
    method = "kernel" if kernel_is_safe(1.0, o.reg, DTYPE) else "log"
    cost = sinkhorn(p_s, p_t, M, o.reg, n_iters=o.n_iters, tol=0, method=method,
                    checks=False).cost
    return cost.reshape(R, N).mean(-1)


def soft_ce(zs: torch.Tensor, zt: torch.Tensor) -> torch.Tensor:
    """The recipe's KD term at T = 1: -mean_i sum_c p^t_ic log p^s_ic, per run (R,)."""
    return -(torch.softmax(zt.detach(), -1) * torch.log_softmax(zs, -1)).sum(-1).mean(-1)


def losses(students: tuple[str, ...], zs: torch.Tensor, zt: torch.Tensor,
           o: Options) -> torch.Tensor:
    """Each row's own loss: row r of ``zs`` (R, N, C) is trained by ``students[r]``; (R,).

    The rows of the two students with SinKD's term share one solver call (fewer small ops).
    """
    kinds = np.array(students)
    out = torch.zeros(len(students), dtype=zs.dtype)

    def rows(*names: str) -> torch.Tensor:
        return torch.as_tensor(np.flatnonzero(np.isin(kinds, names)))

    for name in ("kl", "rkl", "js"):
        r = rows(name)
        if len(r):
            out = out.index_put((r,), divergence(name, zs[r], zt[r].detach(), reduction="none",
                                                 checks=False).mean(-1))
    if len(r := rows("class_ot")):
        out = out.index_put((r,), class_term(zs[r], zt[r], o))
    if len(r := rows("sinkd", "recipe")):
        term = batch_term(zs[r], zt[r], o)
        recipe = torch.as_tensor(kinds[r.numpy()] == "recipe")
        kd = soft_ce(zs[r], zt[r])
        out = out.index_put((r,), torch.where(recipe, kd + o.beta * term, term))
    return out


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside: the toy's tensors hold a few thousand numbers, and more
    threads only add synchronisation (several times slower on a shared 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train(students: tuple[str, ...], x: np.ndarray, zt: np.ndarray, W0: np.ndarray,
          b0: np.ndarray, o: Options, *, steps: int, lr: float | np.ndarray,
          record: tuple[int, ...] = (), on_progress: Progress | None = None,
          ) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Adam on R stacked linear students; row r has inputs ``x[r]`` (N, 2), teacher logits
    ``zt[r]`` (N, C), start ``W0[r]`` (C, 2), ``b0[r]`` (C,), loss ``students[r]`` and learning
    rate ``lr`` (one for all, or (R,): rows of equal rate share an Adam parameter group).

    Returns the students' logits (R, N, C) after each step in ``record`` (and after ``steps``),
    and the losses (steps + 1, R). ``on_progress(done, total)`` is called every 10 steps.
    """
    X = torch.tensor(x, dtype=DTYPE)
    Zt = torch.tensor(zt, dtype=DTYPE)
    rates = np.broadcast_to(np.asarray(lr, dtype=float), (len(students),))
    groups = [np.flatnonzero(rates == r) for r in np.unique(rates)]
    order = torch.as_tensor(np.argsort(np.concatenate(groups)))  # group order -> row order
    Ws = [torch.tensor(W0[g], dtype=DTYPE).requires_grad_() for g in groups]
    bs = [torch.tensor(b0[g], dtype=DTYPE).requires_grad_() for g in groups]
    opt = torch.optim.Adam([{"params": [W, b], "lr": float(rates[g[0]])}
                            for W, b, g in zip(Ws, bs, groups, strict=True)])
    kept: dict[int, np.ndarray] = {}
    history = np.empty((steps + 1, len(students)))
    with one_thread():
        _optimise(students, X, Zt, Ws, bs, order, opt, o, steps, set(record) | {steps}, kept,
                  history, on_progress)
    if not np.isfinite(history).all():
        raise ValueError(f"the fit diverged (non-finite loss) with lr = {lr}: lower lr")
    return kept, history


def _optimise(students, X, Zt, Ws, bs, order, opt, o, steps, wanted, kept, history,
              on_progress) -> None:
    """The Adam loop of :func:`train`; fills ``kept`` and ``history`` in place."""
    for step in range(steps + 1):
        W, b = torch.cat(Ws)[order], torch.cat(bs)[order]
        zs = X @ W.transpose(1, 2) + b[:, None, :]  # (R, N, C)
        if step in wanted:
            kept[step] = zs.detach().numpy().copy()
        loss = losses(students, zs, Zt, o)
        history[step] = loss.detach().numpy()
        if step < steps:
            opt.zero_grad()
            loss.sum().backward()  # rows are independent: each gets its own gradient
            opt.step()
        if on_progress is not None and (step % 10 == 0 or step == steps):
            on_progress(step + 1, steps + 1)
