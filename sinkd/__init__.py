"""SinKD Lab's library: Sinkhorn solver, SinKD loss and KD divergences (see README)."""

from sinkd.divergences import DIVERGENCES, divergence
from sinkd.losses import SinKDLoss, pairwise_cost, sinkd_loss
from sinkd.objective import (
    ObjectiveTerms,
    annealed_temperature,
    distillation_objective,
    kd_loss,
)
from sinkd.sinkhorn import SinkhornConvergenceWarning, SinkhornResult, sinkhorn

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
