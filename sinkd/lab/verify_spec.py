"""The Verify against POT page's values: the problem compared with POT, and the random suite.

The problem's defaults follow the Transport plans page when it has been visited
(:func:`after_transport`): the batch and the solver options shown there are verified here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sinkd.lab.batches import BATCH_KINDS
from sinkd.lab.spec import (
    CLASSES_RANGE,
    LAMBDA_VALUES,
    N_RANGE,
    NOISE_RANGE,
    SEED_RANGE,
    PageSpec,
    Preset,
    Range,
)
from sinkd.lab.verify import DTYPES

SUITES = ("quick", "full")
PRESETS = {
    # empty: a fresh visit keeps the defaults (the reference setting, or the problem last shown
    # on the Transport plans page)
    "Your problem": Preset(
        {}, "Every check's error is far below its tolerance: the plans agree to round-off after "
        "every iteration, not only at the end."),
    "float32 at λ = 0.001: where the kernel underflows": Preset(
        dict(kind="disjoint", n=16, reg=0.001, n_iters=20, dtype="float32", t=20),
        "max C/λ is about 1,900: exp(-C/λ) underflows in float32, so our solver runs the log "
        "domain, POT's log solver is the reference, and the bars are looser (ε of float32, "
        "times max C/λ), yet all below 1e-2."),
    "One iteration (T = 1)": Preset(
        dict(kind="shuffled", n=16, reg=0.1, n_iters=1, dtype="float64", t=1),
        "After a single row-then-column scaling the plan is far from converged, and still ours "
        "and POT's agree to about 1e-16: the comparison is of the algorithm, not of its limit."),
    "Long run (T = 200, λ = 0.01)": Preset(
        dict(kind="aligned", n=32, reg=0.01, n_iters=200, dtype="float64", t=200),
        "Round-off does not pile up over 200 iterations: the error curve stays near 1e-15, and the "
        "gradient is checked through all 200 unrolled iterations."),
}
SPEC = PageSpec(
    defaults=dict(kind="aligned", n=16, n_classes=3, noise=0.5, seed=0, reg=0.1, n_iters=20,
                  dtype="float64", t=20, suite="quick", suite_seed=0),
    limits=dict(kind=tuple(BATCH_KINDS), n=N_RANGE, n_classes=CLASSES_RANGE, noise=NOISE_RANGE,
                seed=SEED_RANGE, reg=LAMBDA_VALUES, n_iters=Range(1, 200), dtype=DTYPES,
                t=Range(1, 200), suite=SUITES, suite_seed=SEED_RANGE),
    presets=PRESETS,
)
# this page's name of a value -> the Transport plans page's name of the same value
FROM_TRANSPORT = dict(kind="source", n="n", n_classes="c", noise="noise", seed="seed", reg="lam",
                      n_iters="T")


def from_transport(values: Mapping[str, Any]) -> dict[str, Any]:
    """The problem values the Transport plans page's ``values`` give, clamped to this page's
    ranges; values it lacks, or cannot give (its latest distillation batch), are left out.

    Examples
    --------
    >>> from_transport({"source": "disjoint", "n": 500, "lam": 0.05, "T": 7, "c": True})
    {'kind': 'disjoint', 'n': 64, 'reg': 0.05, 'n_iters': 7}
    """
    out = {}
    for name, theirs in FROM_TRANSPORT.items():
        value = values.get(theirs)
        if value is None or isinstance(value, bool):
            continue
        try:
            out[name] = SPEC.parse(name, str(value))
        except ValueError:
            continue
    return out


def after_transport(values: Mapping[str, Any]) -> PageSpec:
    """:data:`SPEC` whose problem defaults are those of :func:`from_transport`."""
    return SPEC.with_defaults(**from_transport(values))
