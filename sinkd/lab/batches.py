"""Toy batches of teacher and student predictions, for the transport and verification pages.

Each kind makes a batch of N teacher logits over C classes and a student batch that relates to it
in one recognisable way; the pages turn them into probabilities and the SinKD cost.
"""

from __future__ import annotations

import numpy as np

BATCH_KINDS = {
    "aligned": "the student is the teacher plus noise, row by row",
    "shuffled": "an aligned student whose rows are shuffled: same cloud, pairing lost",
    "overconfident": "the student is a sharpened teacher (logits x3)",
    "underconfident": "the student is a flattened teacher (logits / 3)",
    "disjoint": "the student is sure of a class the teacher gives little mass",
}


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
    if kind not in BATCH_KINDS:
        raise ValueError(f"kind must be one of {tuple(BATCH_KINDS)}, got {kind!r}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes must be an integer >= 1, got {n_classes!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
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
