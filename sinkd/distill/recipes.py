"""The distillation recipes: one loss each, keyed by ``DistillConfig.recipe``.

Each :class:`Recipe` maps ``(z_s, z_t, labels, *, config, progress)`` to
:class:`sinkd.objective.ObjectiveTerms`; :func:`progress_at` and :func:`kd_temperature_at` give
the training progress and the (optionally annealed) KD temperature it is evaluated at, and
:meth:`Recipe.weights` the weight of each term in the total (the one place the weights are
written: the losses below sum their terms with them). The teacher's logits are always detached:
no gradient reaches the teacher.

A recipe reads only the loss settings of :class:`LossSettings`, which
:class:`sinkd.distill.config.DistillConfig` has; typing against them (rather than importing the
config) lets the config check ``recipe`` against :data:`RECIPES` without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from sinkd.divergences import divergence
from sinkd.losses import SinKDLoss
from sinkd.objective import ObjectiveTerms, distillation_objective


class LossSettings(Protocol):
    """The settings a recipe reads (see :class:`sinkd.distill.config.DistillConfig`)."""

    alpha: float  # KD weight against CE
    beta: float  # weight of the Sinkhorn term
    kd_temperature: float  # KD softmax temperature T
    anneal_temperature: bool  # T linear from kd_temperature to 1 over the run
    reg: float  # Sinkhorn entropic weight
    n_iters: int  # Sinkhorn iterations, all unrolled
    sinkhorn_temperature: float  # softmax temperature of the Sinkhorn term
    sinkhorn_batch: str  # "global": the plan of the whole global batch under torchrun


def progress_at(step: int, steps: int) -> float:
    """Fraction of training done at 0-based ``step`` of ``steps``: 0 at the first, 1 at the last.

    >>> [progress_at(s, 3) for s in range(3)]
    [0.0, 0.5, 1.0]
    """
    return step / (steps - 1) if steps > 1 else 1.0


def kd_temperature_at(config: LossSettings, progress: float) -> float:
    """KD temperature at ``progress``: linear from kd_temperature to 1 when annealing.

    At step s of S this is ``sinkd.annealed_temperature(kd_temperature, s, S)`` (steps as epochs).

    >>> from sinkd.distill.config import DistillConfig
    >>> kd_temperature_at(DistillConfig(kd_temperature=3.0, anneal_temperature=True), 0.5)
    2.0
    """
    if not config.anneal_temperature:
        return config.kd_temperature
    return config.kd_temperature + (1.0 - config.kd_temperature) * progress


def _sinkhorn_term(config: LossSettings) -> SinKDLoss:
    # under torchrun, "global" makes every process's update the one-process update of the same
    # global batch (DDP averages W shards' gradients; see sinkd.distill.parallel)
    return SinKDLoss(reg=config.reg, n_iters=config.n_iters,
                     temperature=config.sinkhorn_temperature, batch=config.sinkhorn_batch)


# ----------------------------------------------------------------------------- term weights
def _one(config: LossSettings) -> float:
    return 1.0


def _ce_weight(config: LossSettings) -> float:
    return 1.0 - config.alpha


def _kd_weight(config: LossSettings) -> float:
    return config.alpha


def _sinkhorn_weight(config: LossSettings) -> float:
    return config.beta


Weighting = Mapping[str, Callable[[LossSettings], float]]  # term -> its weight under a config
_CE_ONLY: Weighting = {"ce": _one}
_CE_KD: Weighting = {"ce": _ce_weight, "kd": _kd_weight}
# sinkd.distillation_objective sums its terms with these same weights: (1 - alpha), alpha, beta
_CE_KD_SINKHORN: Weighting = {"ce": _ce_weight, "kd": _kd_weight, "sinkhorn": _sinkhorn_weight}
_CE_SINKHORN: Weighting = {"ce": _ce_weight, "sinkhorn": _sinkhorn_weight}


def _weighted_sum(weighting: Weighting, config: LossSettings, **terms: Tensor) -> Tensor:
    return sum(weighting[name](config) * value for name, value in terms.items())


# ----------------------------------------------------------------------------- losses
def _ce_loss(z_s: Tensor, z_t: Tensor, labels: Tensor, *, config: LossSettings,
             progress: float) -> ObjectiveTerms:
    ce = F.cross_entropy(z_s, labels)
    return ObjectiveTerms(total=_weighted_sum(_CE_ONLY, config, ce=ce), ce=ce,
                          kd=torch.zeros_like(ce), sinkhorn=torch.zeros_like(ce))


def _divergence_loss(name: str) -> Callable[..., ObjectiveTerms]:
    def loss(z_s: Tensor, z_t: Tensor, labels: Tensor, *, config: LossSettings,
             progress: float) -> ObjectiveTerms:
        ce = F.cross_entropy(z_s, labels)
        kd = divergence(name, z_s, z_t.detach(), temperature=kd_temperature_at(config, progress))
        return ObjectiveTerms(total=_weighted_sum(_CE_KD, config, ce=ce, kd=kd), ce=ce, kd=kd,
                              sinkhorn=torch.zeros_like(ce))
    return loss


def _sinkd_loss(z_s: Tensor, z_t: Tensor, labels: Tensor, *, config: LossSettings,
                progress: float) -> ObjectiveTerms:
    return distillation_objective(z_s, z_t.detach(), labels, alpha=config.alpha, beta=config.beta,
                                  kd_temperature=kd_temperature_at(config, progress),
                                  kd="soft_ce", sinkhorn_term=_sinkhorn_term(config))


def _sinkhorn_only_loss(z_s: Tensor, z_t: Tensor, labels: Tensor, *, config: LossSettings,
                        progress: float) -> ObjectiveTerms:
    ce = F.cross_entropy(z_s, labels)
    term = _sinkhorn_term(config)(z_s, z_t.detach())
    return ObjectiveTerms(total=_weighted_sum(_CE_SINKHORN, config, ce=ce, sinkhorn=term), ce=ce,
                          kd=torch.zeros_like(ce), sinkhorn=term)


@dataclass(frozen=True)
class Recipe:
    """A distillation loss: ``loss(z_s, z_t, labels, *, config, progress) -> ObjectiveTerms``.

    ``z_s`` and ``z_t`` are the student's and the teacher's logits (B, C), ``labels`` (B,);
    ``progress`` is :func:`progress_at` of the step (it anneals the KD temperature).
    """

    description: str
    loss: Callable[..., ObjectiveTerms]
    weighting: Weighting  # the terms it sums, each to its weight (the others are 0, not logged)

    @property
    def parts(self) -> tuple[str, ...]:
        """The terms of :class:`~sinkd.objective.ObjectiveTerms` this recipe sums ("ce" first)."""
        return tuple(self.weighting)

    def weights(self, config: LossSettings) -> dict[str, float]:
        """The weight of each of :attr:`parts` in the loss's ``total`` under ``config``:
        ``total = sum(weights[p] * terms.<p>)``.

        >>> from sinkd.distill.config import DistillConfig
        >>> RECIPES["sinkd"].weights(DistillConfig(alpha=0.75, beta=0.8))
        {'ce': 0.25, 'kd': 0.75, 'sinkhorn': 0.8}
        >>> RECIPES["ce"].weights(DistillConfig(alpha=0.75))
        {'ce': 1.0}
        """
        return {part: float(weight(config)) for part, weight in self.weighting.items()}


_KD = "(1 - alpha) CE + alpha {} at the KD temperature (sinkd.divergence, no T^2 factor)"
RECIPES: dict[str, Recipe] = {
    "ce": Recipe("CE with the labels only: the student alone, no teacher", _ce_loss, _CE_ONLY),
    "kd": Recipe(_KD.format("KL(teacher || student)"), _divergence_loss("kl"), _CE_KD),
    "rkl": Recipe(_KD.format("KL(student || teacher)"), _divergence_loss("rkl"), _CE_KD),
    "js": Recipe(_KD.format("Jensen-Shannon"), _divergence_loss("js"), _CE_KD),
    "tvd": Recipe(_KD.format("total variation"), _divergence_loss("tvd"), _CE_KD),
    "skew_kl": Recipe(_KD.format("skew KL (skew 0.1)"), _divergence_loss("skew_kl"),
                      _CE_KD),
    "sinkd": Recipe("the reference: (1 - alpha) CE + alpha soft-CE KD_T + beta SinKD "
                    "(sinkd.distillation_objective)", _sinkd_loss, _CE_KD_SINKHORN),
    "sinkhorn": Recipe("(1 - alpha) CE + beta SinKD: the Sinkhorn term without KD",
                       _sinkhorn_only_loss, _CE_SINKHORN),
}
