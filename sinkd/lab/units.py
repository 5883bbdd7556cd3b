"""One unit convention and one number format for every page that shows transport costs.

The transport page's metric row, the verify page's checks and their figures all state costs in
the same unit, :data:`COST_UNIT`, and print numbers with :func:`sci`, so a number read on one
page can be compared with a number read on another.

>>> sci(0.0034215)
'3.42e-03'
>>> sci(None)
'—'
"""

from __future__ import annotations

import math

# The unit of every cost shown in the app: the plan's transport cost before SinKD's 1e-3 scale,
# with SinKD's marginals (mass 1 per sample, total N), which is N times POT's cost with uniform
# masses of total 1. The SinKD term is SINKD_SCALE times it.
COST_UNIT = ("Costs are ⟨P, D⟩, the plan's transport cost with SinKD's marginals (mass 1 per "
             "sample, total N; N × POT's cost with masses summing to 1), before SinKD's 10⁻³ "
             "scale: the SinKD term is 10⁻³ × ⟨P, D⟩.")
SINKD_SCALE = 1e-3


def sci(x: float | None, digits: int = 3) -> str:
    """``x`` in scientific notation with ``digits`` significant digits (2 or 3 on screen);
    None is shown as a dash, NaN and infinities as such."""
    if x is None:
        return "—"
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    return f"{x:.{max(digits, 1) - 1}e}"
