r"""Toy batches of teacher and student predictions, and the SinKD transport problem of a batch.

Each kind of :data:`BATCH_KINDS` makes N teacher logits over C classes and a student batch that
relates to them in one recognisable way (:func:`toy_batch`). :func:`batch_problem` turns any
batch into the transport problem SinKD solves,

.. math::
    p^s_i = \mathrm{softmax}(z^s_i / \tau), \quad p^t_j = \mathrm{softmax}(z^t_j / \tau), \quad
    D_{ij} = \lVert p^s_i - p^t_j \rVert_1, \quad a = b = \mathbf{1}_N,

in one of the :data:`DTYPES` the transport page offers; :func:`sinkd_problem` is that problem of a
toy batch in float64 numpy, the form POT takes (verification page).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sinkd.losses import pairwise_cost
from sinkd.validation import check_choice, check_int, check_number

BATCH_KINDS = {
    "aligned": "the student is the teacher plus noise, row by row",
    "shuffled": "an aligned student whose rows are shuffled: same cloud, pairing lost",
    "overconfident": "the student is a sharpened teacher (logits x3)",
    "underconfident": "the student is a flattened teacher (logits / 3)",
    "disjoint": "the student is sure of a class the teacher gives little mass",
}
DTYPES = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16}


def toy_batch(kind: str, n: int, n_classes: int, noise: float = 0.5,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Teacher and student logits, each (N, C), float64.

    Parameters
    ----------
    kind : str
        One of ``BATCH_KINDS``.
    n : int
        Batch size N >= 1.
    n_classes : int
        Number of classes C >= 1.
    noise : float
        Standard deviation (>= 0) of the student's logit noise.
    seed : int
        Seed of numpy's generator; the same arguments give the same batch.

    Examples
    --------
    >>> t, s = toy_batch("aligned", 4, 3, noise=0.0)
    >>> bool(np.allclose(t, s))
    True
    """
    check_choice("kind", kind, tuple(BATCH_KINDS))
    check_int("n", n, low=1)
    check_int("n_classes", n_classes, low=1)
    check_number("noise", noise, low=0)
    rng = np.random.default_rng(seed)
    teacher = 2.0 * rng.standard_normal((n, n_classes))  # (N, C)
    student = teacher + noise * rng.standard_normal((n, n_classes))  # (N, C)
    if kind == "shuffled":
        student = student[rng.permutation(n)]
    elif kind == "overconfident":
        student = 3.0 * student
    elif kind == "underconfident":
        student = student / 3.0
    elif kind == "disjoint":
        # the student's peak sits on the teacher's least likely class, 8 logits above the rest
        target = teacher.argmin(axis=1)
        student = noise * rng.standard_normal((n, n_classes))
        student[np.arange(n), target] += 8.0
    return teacher, student


def logits_pair(teacher_logits: Any, student_logits: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both logits as float64 (N, C) arrays of the same shape, or ValueError naming the bad one.

    Examples
    --------
    >>> logits_pair([[1, 0]], [[0.5, 0.5]])[0].dtype
    dtype('float64')
    """
    out = []
    for x, name in ((teacher_logits, "teacher_logits"), (student_logits, "student_logits")):
        try:
            arr = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be an (N, C) array of numbers") from None
        if arr.ndim != 2 or min(arr.shape) < 1 or not np.isfinite(arr).all():
            raise ValueError(f"{name} must be finite with shape (N, C), N, C >= 1, got {arr.shape}")
        out.append(arr)
    if out[0].shape != out[1].shape:
        raise ValueError(f"teacher_logits {out[0].shape} and student_logits {out[1].shape} must "
                         "have the same shape (N, C)")
    return out[0], out[1]


def compute_dtype(dtype: str) -> torch.dtype:
    """The dtype sinkd computes in: float16 runs in float32 (see :func:`sinkd.sinkhorn`)."""
    check_choice("dtype", dtype, tuple(DTYPES))
    return torch.float32 if dtype == "float16" else DTYPES[dtype]


@dataclass(frozen=True, eq=False)
class BatchProblem:
    """The SinKD transport problem of one batch (tensors; N samples, C classes)."""

    student_probs: Tensor  # (N, C) softmax(z_s / tau) in the compute dtype (as sinkd_loss)
    teacher_probs: Tensor  # (N, C)
    cost: Tensor  # (N, N) D_ij = |p_s_i - p_t_j|_1, rounded to the problem's dtype
    mass: Tensor  # (N,) unit masses in that dtype: the plan moves total mass N


def batch_problem(teacher_logits: Any, student_logits: Any, *, temperature: float = 2.0,
                  dtype: str = "float64") -> BatchProblem:
    """The SinKD transport problem of a batch (see the module docstring).

    Parameters
    ----------
    teacher_logits, student_logits : array, shape (N, C)
    temperature : float
        Softmax temperature tau > 0.
    dtype : {"float64", "float32", "float16"}
        Dtype of the cost; the probabilities are computed in :func:`compute_dtype`.

    Returns
    -------
    BatchProblem

    Examples
    --------
    >>> p = batch_problem([[2.0, 0.0], [0.0, 2.0]], [[2.0, 0.0], [0.0, 2.0]], dtype="float32")
    >>> p.cost.dtype, p.cost.diagonal().tolist(), p.mass.tolist()
    (torch.float32, [0.0, 0.0], [1.0, 1.0])
    """
    check_number("temperature", temperature, low=0, low_open=True)
    compute = compute_dtype(dtype)
    z_t, z_s = (torch.as_tensor(z).to(compute) for z in logits_pair(teacher_logits,
                                                                     student_logits))
    p_t, p_s = torch.softmax(z_t / temperature, dim=-1), torch.softmax(z_s / temperature, dim=-1)
    cost = pairwise_cost(p_s, p_t).to(DTYPES[dtype])  # (N, N)
    return BatchProblem(p_s, p_t, cost, torch.ones(cost.shape[0], dtype=cost.dtype))


def sinkd_problem(kind: str, n: int, n_classes: int, noise: float = 0.5, seed: int = 0,
                  temperature: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The SinKD transport problem of a toy batch, float64 numpy: masses a, b and the cost.

    Rows of the cost are student samples, columns teacher samples (as :func:`toy_batch`
    makes them).

    Returns
    -------
    a, b, cost : arrays, shapes (N,), (N,), (N, N), float64; costs in [0, 2]

    Examples
    --------
    >>> a, b, D = sinkd_problem("aligned", 4, 3, noise=0.0)
    >>> a.sum(), bool(np.allclose(np.diag(D), 0.0))
    (np.float64(4.0), True)
    """
    problem = batch_problem(*toy_batch(kind, n, n_classes, noise, seed), temperature=temperature)
    return np.ones(n), np.ones(n), problem.cost.numpy()
