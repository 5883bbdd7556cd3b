"""One comparison with POT and its verdict: the unit every verification check is made of.

A :class:`Check` records what was compared, on which problem, how far apart the two numbers were
and the tolerance they had to meet; :func:`check` makes one from a measured error (NaN fails),
:func:`summary_line` says in one line how a list of them went.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One comparison: what, on which problem, how far apart, and the bar it had to clear."""

    name: str
    problem: str
    error: float
    tolerance: float
    passed: bool
    ours_ms: float | None = None
    pot_ms: float | None = None


def check(name: str, problem: str, error: float, tolerance: float,
          ours_ms: float | None = None, pot_ms: float | None = None) -> Check:
    """A check that passes when ``error`` is finite and at most ``tolerance``.

    Examples
    --------
    >>> check("x", "p", 1e-3, 1e-12).passed, check("x", "p", float("nan"), 1.0).passed
    (False, False)
    """
    error = float(error)
    passed = bool(math.isfinite(error) and error <= tolerance)
    return Check(name, problem, error, float(tolerance), passed, ours_ms, pot_ms)


def summary_line(checks: Sequence[Check]) -> str:
    """One line on a list of checks, derived from their outcomes.

    Examples
    --------
    >>> summary_line([check("x", "p", 0.0, 1.0), check("y", "p", 2.0, 1.0)])
    '1 of 2 checks disagree beyond tolerance'
    """
    failed = sum(not c.passed for c in checks)
    if not checks:
        return "no checks were run"
    if failed == 0:
        return f"{len(checks)} checks, all agree within tolerance"
    return f"{failed} of {len(checks)} checks disagree beyond tolerance"
