r"""The problem the Verify against POT page checks: a toy batch's SinKD transport problem.

:func:`sinkd_problem` builds the SinKD cost of a toy batch with unit masses;
``PROBLEM_DEFAULTS`` and ``PROBLEM_LIMITS`` are the page's problem controls (the transport page's
defaults) and their ranges, and :func:`problem_defaults` reads them from a page's state, clamped.
:mod:`sinkd.verify` re-exports every name here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from sinkd.lab.batches import BATCH_KINDS, toy_batch
from sinkd.losses import pairwise_cost

# The verify page's own problem controls: defaults (those of the transport page) and ranges.
PROBLEM_DEFAULTS: dict[str, Any] = dict(kind="aligned", n=16, n_classes=3, noise=0.5, seed=0,
                                        reg=0.1, n_iters=20)
PROBLEM_LIMITS: dict[str, Any] = dict(kind=tuple(BATCH_KINDS), n=(1, 64), n_classes=(1, 10),
                                      noise=(0.0, 3.0), seed=(0, 10_000), reg=(1e-3, 10.0),
                                      n_iters=(1, 200))


def sinkd_problem(kind: str, n: int, n_classes: int, noise: float = 0.5, seed: int = 0,
                  temperature: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The SinKD transport problem of a toy batch: unit masses and the L1 cost.

    .. math::
        D_{ij} = \lVert \mathrm{softmax}(z^s_i / \tau) - \mathrm{softmax}(z^t_j / \tau)
        \rVert_1, \qquad a = b = \mathbf{1}_N

    Parameters
    ----------
    kind, n, n_classes, noise, seed
        The batch, as :func:`sinkd.batches.toy_batch` makes it (rows of the cost are student
        samples, columns teacher samples).
    temperature : float
        Softmax temperature tau > 0 (SinKD's 2).

    Returns
    -------
    a, b, cost : arrays, shapes (N,), (N,), (N, N), float64; costs in [0, 2]

    Examples
    --------
    >>> a, b, D = sinkd_problem("aligned", 4, 3, noise=0.0)
    >>> a.sum(), bool(np.allclose(np.diag(D), 0.0))
    (np.float64(4.0), True)
    """
    if not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    teacher, student = toy_batch(kind, n, n_classes, noise, seed)
    p_s = torch.softmax(torch.tensor(student) / temperature, dim=-1)  # (N, C)
    p_t = torch.softmax(torch.tensor(teacher) / temperature, dim=-1)  # (N, C)
    return np.ones(n), np.ones(n), pairwise_cost(p_s, p_t, "l1").numpy()


def problem_defaults(state: Mapping[str, Any], prefix: str = "transport_") -> dict[str, Any]:
    """PROBLEM_DEFAULTS, overridden by valid ``state[prefix + name]`` values clamped to range.

    Examples
    --------
    >>> problem_defaults({"transport_n": 500, "transport_kind": "nonsense"})["n"]
    64
    """
    out = dict(PROBLEM_DEFAULTS)
    for name, default in PROBLEM_DEFAULTS.items():
        value, limit = state.get(prefix + name), PROBLEM_LIMITS[name]
        if value is None or isinstance(value, bool):
            continue
        if isinstance(default, str):
            out[name] = value if value in limit else default
            continue
        try:
            value = type(default)(value)
        except (TypeError, ValueError, OverflowError):
            continue
        if math.isfinite(value):
            out[name] = min(max(value, limit[0]), limit[1])
    return out
