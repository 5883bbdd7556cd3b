"""SinKD Lab's library: Sinkhorn solver, SinKD loss and KD divergences (see README).

``import sinkd`` loads torch, numpy and scipy only. The subpackages ``sinkd.distill`` (BERT
distillation) and ``sinkd.lab`` (what the app's pages compute and draw) need the extras of the
same names.
"""

import importlib.metadata

from sinkd.divergences import DIVERGENCES, divergence
from sinkd.losses import SinKDLoss, pairwise_cost, sinkd_loss
from sinkd.objective import (
    ObjectiveTerms,
    annealed_temperature,
    distillation_objective,
    kd_loss,
)
from sinkd.sinkhorn import SinkhornConvergenceWarning, SinkhornResult, sinkhorn

try:
    __version__ = importlib.metadata.version("sinkd-lab")
except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "unknown"

__all__ = [
    "DIVERGENCES",
    "ObjectiveTerms",
    "SinKDLoss",
    "SinkhornConvergenceWarning",
    "SinkhornResult",
    "annealed_temperature",
    "distillation_objective",
    "divergence",
    "kd_loss",
    "pairwise_cost",
    "sinkd_loss",
    "sinkhorn",
]
