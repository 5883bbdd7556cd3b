r"""One comparison with a reference and its verdict: the unit every verification check is made of.

A :class:`Check` records what was compared, on which problem, how far apart the two numbers were
and the tolerance they had to meet; :func:`check` makes one from a measured error (NaN fails),
:func:`summary_line` says in one line how a list of them went.

Errors are **relative to the reference's magnitude** (:func:`relative_error`), so one scale of
tolerances serves plans, costs and gradients of any size. The bars follow the precision the
dtype allows on the problem (:func:`tolerances`), and none exceeds :data:`MAX_TOLERANCE`: where
float32 cannot be checked that sharply, the comparison runs our solver in float64 and says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sinkd.validation import check_choice, check_number

DTYPES = ("float64", "float32")
TOLERANCE = {"float64": 1e-12, "float32": 1e-4}  # floor of the relative precision asked for
EPS = {name: float(np.finfo(name).eps) for name in DTYPES}
PLAN_FACTOR = 4  # plan and cost: 4 eps kappa
# the gradient's entries are differences of terms kappa times larger than the plan's (d/dC of
# exp(-C / reg) brings C / reg); its rounding error measured over the suite and the page's
# batches reaches 14 eps kappa (float64, T = 200): 32 leaves a factor 2 above that
GRADIENT_FACTOR = 32
MAX_TOLERANCE = 1e-2  # no check may accept a relative error above 1 %


@dataclass(frozen=True)
class Check:
    """One comparison: what, on which problem, how far apart, and the bar it had to clear.

    ``error`` is relative to the reference's magnitude; it must lie in ``[lower, tolerance]``
    (``lower`` is None for a one-sided check of a nonnegative error).
    """

    name: str
    problem: str
    error: float
    tolerance: float
    passed: bool
    ours_ms: float | None = None
    pot_ms: float | None = None
    lower: float | None = None

    @property
    def ratio(self) -> float:
        """error / tolerance: at most 1 for a check that passes (NaN for a NaN error)."""
        return self.error / self.tolerance if self.tolerance > 0 else math.inf


def check(name: str, problem: str, error: float, tolerance: float,
          ours_ms: float | None = None, pot_ms: float | None = None,
          lower: float | None = None) -> Check:
    """A check that passes when ``error`` is finite, at most ``tolerance`` and at least ``lower``.

    Examples
    --------
    >>> check("x", "p", 1e-3, 1e-12).passed, check("x", "p", float("nan"), 1.0).passed
    (False, False)
    >>> check("gap", "p", -0.5, 1.0, lower=-0.1).passed
    False
    """
    error = float(error)
    passed = bool(math.isfinite(error) and error <= tolerance
                  and (lower is None or error >= lower))
    return Check(name, problem, error, float(tolerance), passed, ours_ms, pot_ms,
                 None if lower is None else float(lower))


def relative_error(ours, reference) -> float:
    """max |ours - reference| / max |reference| (absolute where the reference is all 0).

    Examples
    --------
    >>> relative_error([1.0, 2.0], [1.0, 2.5]), relative_error([1e-3], [0.0])
    (0.2, 0.001)
    """
    ours, reference = (np.asarray(x, dtype=np.float64) for x in (ours, reference))
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    diff = float(np.abs(ours - reference).max()) if reference.size else 0.0
    return diff / scale if scale > 0 else diff


def tolerances(cost, reg: float, dtype: str) -> dict:
    r"""The relative bars the comparisons with POT must clear on one problem.

    .. math::
        \kappa = \max|C| / \mathrm{reg}, \qquad
        \rho = \max(\rho_0, 4\,\varepsilon\,\kappa), \qquad
        \rho_\nabla = \max(\rho_0, 32\,\varepsilon\,\kappa)

    Rounding ``C`` to the dtype changes ``exp(-C / reg)`` relatively by :math:`\varepsilon
    \kappa` (float32 has :math:`\varepsilon = 1.2 \times 10^{-7}`, float64 :math:`2.2 \times
    10^{-16}`); :math:`\rho_0` is ``TOLERANCE[dtype]``. :math:`\rho` bounds the plan's error
    (relative to its largest entry) and the cost's (relative to the cost); :math:`\rho_\nabla`
    the gradient's (relative to its largest entry): its entries are differences of terms
    :math:`\kappa` times larger than the plan's. A comparison whose bar in ``dtype`` would exceed
    :data:`MAX_TOLERANCE` runs in float64 instead (``plan_dtype``, ``gradient_dtype``).

    Parameters
    ----------
    cost : array, shape (n, m)
    reg : float
    dtype : {"float64", "float32"}

    Returns
    -------
    dict
        ``kappa``, ``plan``, ``cost``, ``gradient`` (relative bars), ``plan_dtype``,
        ``gradient_dtype`` (the dtype each comparison runs ours in).

    Examples
    --------
    >>> tol = tolerances([[0.0, 2.0], [2.0, 0.0]], 0.001, "float32")
    >>> f"{tol['plan']:.1e} {tol['gradient']:.1e}", tol["gradient_dtype"]
    ('9.5e-04 7.6e-03', 'float32')
    """
    check_choice("dtype", dtype, DTYPES)
    reg = check_number("reg", reg, low=0, low_open=True)
    kappa = float(np.abs(np.asarray(cost, dtype=np.float64)).max()) / reg

    def bar(factor: float, name: str) -> tuple[float, str]:
        for used in (name, "float64"):
            value = max(TOLERANCE[used], factor * EPS[used] * kappa)
            if value <= MAX_TOLERANCE:
                return value, used
        most = MAX_TOLERANCE / (factor * EPS["float64"])
        raise ValueError(f"reg must keep max|cost| / reg <= {most:.3g} for a check within "
                         f"{MAX_TOLERANCE:g}, got {kappa:.3g}")

    plan, plan_dtype = bar(PLAN_FACTOR, dtype)
    gradient, gradient_dtype = bar(GRADIENT_FACTOR, plan_dtype)
    return dict(kappa=kappa, plan=plan, cost=plan, gradient=gradient, plan_dtype=plan_dtype,
                gradient_dtype=gradient_dtype)


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
