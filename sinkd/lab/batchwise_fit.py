"""A batch-wise fit: every student trained on one toy batch from the same start, and what each
did, measured (per-sample agreement, the distance between the clouds by exact OT, accuracy);
also the same over a grid of seeds, step budgets and learning rates (robustness).

The toy (batch, teachers, students' losses, stacked training) is :mod:`sinkd.lab.batchwise_toy`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import ot
import torch

from sinkd.lab.batchwise_toy import (
    DTYPE,
    N_CLASSES,
    STUDENTS,
    Batch,
    Options,
    Progress,
    batch_term,
    log_softmax,
    make_batch,
    one_thread,
    soft_ce,
    softmax,
    start_params,
    train,
)
from sinkd.validation import check_choice, check_int, check_number


@dataclass(frozen=True)
class Metrics:
    """What one student did, at temperature 1, against the teacher of the same batch."""

    paired_l1: float  # mean_i ||s_i - t_i||_1 (= 2 x mean TVD): the identity pairing's cost
    kl: float  # mean_i KL(t_i || s_i)
    accuracy: float  # share of samples with argmax s_i == the teacher's label
    cloud_ot: float  # exact OT (ot.emd2), uniform masses, L1 cost: the clouds, unpaired
    confidence: float  # mean_i max_c s_ic
    own_mass: float  # share of the mass SinKD's plan keeps on the own pair (trace / N)


def cloud_distance(p_s: np.ndarray, p_t: np.ndarray) -> float:
    """Exact OT between two N-point clouds on the simplex, masses 1/N, L1 cost (ot.emd2).

    Examples
    --------
    >>> p = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> cloud_distance(p, p[::-1])  # the same cloud in another order
    0.0
    """
    n = len(p_s)
    M = np.abs(p_s[:, None, :] - p_t[None, :, :]).sum(-1)
    return float(ot.emd2(np.full(n, 1.0 / n), np.full(n, 1.0 / n), M))


def measure(zs: np.ndarray, batch_logits: np.ndarray, o: Options) -> Metrics:
    """The :class:`Metrics` of student logits ``zs`` (N, C) against teacher logits (N, C)."""
    log_s, log_t = log_softmax(zs), log_softmax(batch_logits)
    s, t = np.exp(log_s), np.exp(log_t)
    with one_thread():
        _, plan = batch_term(torch.as_tensor(zs)[None], torch.as_tensor(batch_logits)[None], o,
                             return_plan=True)
    return Metrics(
        paired_l1=float(np.abs(s - t).sum(1).mean()),
        kl=float((t * (log_t - log_s)).sum(1).mean()),
        accuracy=float((zs.argmax(1) == batch_logits.argmax(1)).mean()),
        cloud_ot=cloud_distance(s, t),
        confidence=float(s.max(1).mean()),
        own_mass=float(torch.diagonal(plan[0]).sum() / len(zs)),
    )


@dataclass(frozen=True, eq=False)
class BatchFit:
    """One fit of every student on one batch (numpy; S students, F frames, N samples)."""

    batch: Batch
    students: tuple[str, ...]  # (S,)
    frames: np.ndarray  # (F, S, N, C) student probabilities at the frame steps
    frame_steps: tuple[int, ...]  # (F,)
    logits: np.ndarray  # (S, N, C) at the end
    losses: np.ndarray  # (steps + 1, S)
    metrics: dict[str, Metrics]  # student -> at the end
    start_metrics: Metrics  # of the common start
    teacher_metrics: Metrics  # the teacher against itself (its confidence, SinKD's own mass)
    recipe_share: float  # |beta grad SinKD| / |grad KD| for the recipe, at the start
    plan: np.ndarray  # (N, N) SinKD's plan between the sinkd student and the teacher, at the end
    options: Options
    settings: dict[str, Any]
    seconds: float


def fit(teacher: str = "linear", *, n: int = 48, uncertain: float = 0.25, start: str = "small",
        steps: int = 300, lr: float = 0.05, seed: int = 0, options: Options | None = None,
        students: tuple[str, ...] = STUDENTS, n_frames: int = 30) -> BatchFit:
    r"""Fit one linear student per loss on one toy batch, all from the same start.

    .. math::
        (W_k, b_k) \leftarrow \mathrm{Adam}\big(\nabla \mathcal{L}_k(W_k x + b, z^t)\big),
        \quad (W_k, b_k)^{(0)} = (W_0, b_0) \ \forall k

    Parameters
    ----------
    teacher : {"linear", "six_arcs"}
        See :func:`teacher_logits`.
    n, uncertain, seed : int, float, int
        The batch (:func:`make_batch`); ``seed`` also draws the start's noise.
    start : {"small", "rolled"}
        See :func:`start_params`.
    steps, lr : int, float
        Adam steps and learning rate, the same for every student.
    options : Options
        Sinkhorn lambda, T, temperature and the recipe's beta (default: the reference).
    students : tuple of str
        Names from :data:`STUDENTS`.
    n_frames : int
        About how many frames to keep for the animation.

    Returns
    -------
    BatchFit

    Examples
    --------
    >>> f = fit(steps=4, n=12, students=("kl", "sinkd"))
    >>> f.frames.shape[1:], sorted(f.metrics)
    ((2, 12, 3), ['kl', 'sinkd'])
    """
    o = options if options is not None else Options()
    students = tuple(check_choice("students", s, STUDENTS) for s in students)
    if not students or len(set(students)) < len(students):
        raise ValueError(f"students must be distinct names from {STUDENTS}, got {students}")
    steps = check_int("steps", steps, low=1, high=10_000)
    lr = check_number("lr", lr, low=0, high=1.0, low_open=True)
    check_int("n_frames", n_frames, low=1)
    batch = make_batch(teacher, n, uncertain, seed)
    W0, b0 = start_params(start, seed)
    S = len(students)
    every = max(1, math.ceil(steps / n_frames))
    record = tuple(range(0, steps + 1, every))
    t0 = time.perf_counter()
    kept, history = train(students, np.broadcast_to(batch.x, (S, n, 2)),
                          np.broadcast_to(batch.teacher_logits, (S, n, N_CLASSES)),
                          np.broadcast_to(W0, (S, N_CLASSES, 2)), np.broadcast_to(b0, (S, 3)),
                          o, steps=steps, lr=lr, record=record)
    seconds = time.perf_counter() - t0
    frame_steps = tuple(sorted(kept))
    frames = np.stack([softmax(kept[s]) for s in frame_steps])
    logits = kept[steps]
    metrics = {name: measure(logits[i], batch.teacher_logits, o)
               for i, name in enumerate(students)}
    plan_of = students.index("sinkd") if "sinkd" in students else 0
    _, plan = batch_term(torch.as_tensor(logits[plan_of])[None],
                         torch.as_tensor(batch.teacher_logits)[None], o, return_plan=True)
    settings = dict(teacher=teacher, n=n, uncertain=uncertain, start=start, steps=steps, lr=lr,
                    seed=seed)
    return BatchFit(batch, students, frames, frame_steps, logits, history, metrics,
                    measure(kept[0][0], batch.teacher_logits, o),
                    measure(batch.teacher_logits, batch.teacher_logits, o),
                    recipe_share(batch, W0, b0, o), plan[0].numpy(), o, settings, seconds)


def recipe_share(batch: Batch, W0: np.ndarray, b0: np.ndarray, o: Options) -> float:
    """How much the SinKD term weighs in the recipe's first step: the norm of the gradient
    of ``beta * SinKD`` over that of KD, with respect to the student's (W, b) at the start.

    >>> W, b = start_params("small", 0)
    >>> recipe_share(make_batch(), W, b, Options(beta=0.0))
    0.0
    """
    X = torch.tensor(batch.x, dtype=DTYPE)[None]
    zt = torch.tensor(batch.teacher_logits, dtype=DTYPE)[None]
    with one_thread():
        norms = [_grad_norm(part, X, W0, b0) for part in (
            lambda z: soft_ce(z, zt), lambda z: o.beta * batch_term(z, zt, o))]
    return norms[1] / norms[0] if norms[0] > 0 else math.inf


def _grad_norm(part, X: torch.Tensor, W0: np.ndarray, b0: np.ndarray) -> float:
    W = torch.tensor(W0, dtype=DTYPE).requires_grad_()
    b = torch.tensor(b0, dtype=DTYPE).requires_grad_()
    part(X @ W.T + b).sum().backward()
    return float(torch.cat([W.grad.flatten(), b.grad]).norm())


BUDGETS = (0.5, 1.0, 4.0)  # step budgets of a robustness grid, as multiples of the steps
LR_FACTOR = 2.5  # its second learning rate is the first times this (as the 1-D lab's grid)


def grid_budgets(steps: int) -> tuple[int, ...]:
    """Half, as set and four times ``steps``.

    >>> grid_budgets(100)
    (50, 100, 400)
    """
    check_int("steps", steps, low=2)
    return tuple(max(1, round(f * steps)) for f in BUDGETS)


def fit_grid(teacher: str = "linear", *, n: int = 48, uncertain: float = 0.25,
             start: str = "small", steps: int = 300, lr: float = 0.05,
             options: Options | None = None, seeds: int = 8, lr_factor: float = LR_FACTOR,
             on_progress: Progress | None = None,
             ) -> dict[tuple[int, float, int], dict[str, Metrics]]:
    """Every student over seeds 0 .. ``seeds`` - 1, learning rates ``lr`` and
    ``lr_factor * lr`` and the budgets of :func:`grid_budgets`, in ONE stacked optimisation.

    Adam's update does not depend on the steps still to come, so the runs with budgets
    steps / 2 and steps are the 4 x steps runs' states after that many updates, exactly.

    Returns
    -------
    dict
        ``(seed, lr, budget)`` -> student name -> :class:`Metrics`, plus ``"teacher"`` (the
        teacher against itself, for claims that compare with it).

    Examples
    --------
    >>> g = fit_grid(n=12, steps=4, seeds=1)
    >>> sorted(g)[0], sorted(g[(0, 0.05, 2)])[:2]
    ((0, 0.05, 2), ['class_ot', 'js'])
    """
    o = options if options is not None else Options()
    seeds = check_int("seeds", seeds, low=1, high=64)
    lr = check_number("lr", lr, low=0, high=1.0, low_open=True)
    check_number("lr_factor", lr_factor, low=0, high=10, low_open=True)
    budgets = grid_budgets(steps)
    lrs = (lr, lr * lr_factor)
    S = len(STUDENTS)
    batches = [make_batch(teacher, n, uncertain, s) for s in range(seeds)]
    starts = [start_params(start, s) for s in range(seeds)]
    rows = [(r, s) for r in lrs for s in range(seeds)]  # one block of S students each
    kept, _ = train(
        STUDENTS * len(rows),
        np.concatenate([np.broadcast_to(batches[s].x, (S, n, 2)) for _, s in rows]),
        np.concatenate([np.broadcast_to(batches[s].teacher_logits, (S, n, N_CLASSES))
                        for _, s in rows]),
        np.concatenate([np.broadcast_to(starts[s][0], (S, N_CLASSES, 2)) for _, s in rows]),
        np.concatenate([np.broadcast_to(starts[s][1], (S, N_CLASSES)) for _, s in rows]),
        o, steps=budgets[-1], lr=np.repeat([r for r, _ in rows], S), record=budgets,
        on_progress=on_progress)
    teachers = [measure(b.teacher_logits, b.teacher_logits, o) for b in batches]
    out = {}
    for k, (r, s) in enumerate(rows):
        for budget in budgets:
            out[(s, r, budget)] = {
                **{name: measure(kept[budget][k * S + i], batches[s].teacher_logits, o)
                   for i, name in enumerate(STUDENTS)},
                "teacher": teachers[s]}
    return out
