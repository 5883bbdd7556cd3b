r"""How much each term of a recipe pulls on the student: per-term gradient norms at the logits.

For a recipe with weights :math:`w_i` (:meth:`sinkd.distill.recipes.Recipe.weights`) and terms
:math:`L_i` (CE, KD, SinKD), the loss is :math:`L = \sum_i w_i L_i` and its gradient with
respect to the batch's student logits :math:`z^s` (B, C) is the sum of the weighted terms'
gradients :math:`g_i = w_i \nabla_{z^s} L_i`. Raw loss values say little about which term
trains the student (SinKD's value is scaled by 1e-3, KD's gradient shrinks as 1/T); the norms of
the :math:`g_i` say how hard each term pulls. We record

.. math::
    \mathrm{norm}_i = \|g_i\|_2, \qquad \mathrm{share}_i = \frac{\|g_i\|_2}{\sum_j \|g_j\|_2},
    \qquad \mathrm{total} = \Big\|\sum_i g_i\Big\|_2 \le \sum_j \|g_j\|_2

(Frobenius norms over the whole (B, C) batch). The shares sum to 1; they compare magnitudes,
not directions: terms that pull against each other cancel in ``total`` but not in the shares.
Measured at the logits (not the weights), the norms cost a few backward passes through the
losses only, never through the model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from sinkd.objective import ObjectiveTerms

PARTS = ("ce", "kd", "sinkhorn")  # the terms of ObjectiveTerms, in the order they are recorded
NORM_KEYS = {p: f"grad_norm_{p}" for p in PARTS}  # metrics-row key of each term's norm
SHARE_KEYS = {p: f"grad_share_{p}" for p in PARTS}  # metrics-row key of each term's share
TOTAL_KEY = "grad_norm_total"  # metrics-row key of the norm of the whole gradient
KEYS = (*NORM_KEYS.values(), TOTAL_KEY, *SHARE_KEYS.values())


def term_gradient_norms(terms: ObjectiveTerms, logits: Tensor,
                        weights: Mapping[str, float]) -> dict[str, float | None]:
    r"""Norm of each weighted term's gradient with respect to ``logits``, and its share.

    For each term :math:`L_i` named in ``weights`` (a subset of ``"ce"``, ``"kd"``,
    ``"sinkhorn"``), :math:`g_i = w_i \nabla_{z} L_i`; returns :math:`\|g_i\|_2`, the share
    :math:`\|g_i\|_2 / \sum_j \|g_j\|_2` and :math:`\|\sum_i g_i\|_2` (see the module
    docstring). Call it after the loss and before its ``backward()``: the graph is kept
    (``retain_graph=True``) and no gradient is accumulated anywhere (``torch.autograd.grad``).

    Under data parallelism with ``SinKDLoss(batch="global")``, the SinKD term's backward runs a
    collective (the all-gather's backward), so every process must call this on the same steps,
    with the same weights (the training loop does: on evaluation steps, which every process
    shares). The norms are then those of the process's own rows of the logits.

    Parameters
    ----------
    terms : ObjectiveTerms
        A recipe's terms, computed from ``logits`` (unweighted parts, as the recipes return).
    logits : tensor, shape (B, C)
        The student's logits the terms were computed from (part of their graph).
    weights : mapping of str to float
        The recipe's weight of each term it has (:meth:`Recipe.weights`); a term absent from it
        is not the recipe's: its norm and share are None.

    Returns
    -------
    dict
        ``grad_norm_<term>``, ``grad_share_<term>`` for ce, kd, sinkhorn (None where absent) and
        ``grad_norm_total``, as floats (read back from the device once). A term of weight 0 (or
        one not depending on the logits) has norm 0; shares are None when every norm is 0.

    Examples
    --------
    >>> z = torch.tensor([[1.0, -1.0], [0.0, 2.0]], requires_grad=True)
    >>> ce = torch.nn.functional.cross_entropy(z, torch.tensor([0, 0]))
    >>> zero = torch.zeros(())
    >>> out = term_gradient_norms(ObjectiveTerms(0.5 * ce, ce, zero, zero), z, {"ce": 0.5})
    >>> out["grad_share_ce"], out["grad_norm_kd"], out["grad_norm_ce"] == out["grad_norm_total"]
    (1.0, None, True)
    """
    unknown = sorted(set(weights) - set(PARTS))
    if unknown:
        raise ValueError(f"weights must name terms among {list(PARTS)}, got {unknown}")
    present = [p for p in PARTS if p in weights]
    grads = []
    for part in present:  # the same order on every process (a collective may run in each)
        term, weight = getattr(terms, part), float(weights[part])
        if weight == 0 or not term.requires_grad:  # weight 0 or a constant: no pull at all
            grads.append(torch.zeros_like(logits))
        else:
            grads.append(torch.autograd.grad(weight * term, logits, retain_graph=True)[0])
    if not grads:
        return dict.fromkeys(KEYS)
    # the total's gradient is the sum of the parts' (linearity): no further backward pass
    norms = torch.stack([*(g.norm() for g in grads), torch.stack(grads).sum(0).norm()]).tolist()
    total, norms = norms[-1], dict(zip(present, norms[:-1], strict=True))
    whole = sum(norms.values())
    shares = ({p: n / whole for p, n in norms.items()} if whole > 0 and math.isfinite(whole)
              else {})
    return {**{NORM_KEYS[p]: norms.get(p) for p in PARTS}, TOTAL_KEY: total,
            **{SHARE_KEYS[p]: shares.get(p) for p in PARTS}}
