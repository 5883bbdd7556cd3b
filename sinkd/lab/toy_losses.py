r"""The losses of the divergence lab's fits: every divergence on its own row of the stacked student
(:func:`stacked_losses`), and the optimal-transport ones beyond SinKD's own <P_T, C>: exact OT
(the limit lambda -> 0) and the debiased Sinkhorn divergence, on the lab's 1-D grid.

Both act on the bin masses of a student (torch, differentiable) and a teacher; the ground cost is
:math:`C_{ij} = |x_i - x_j|` between bin centres, as for the lab's Sinkhorn loss.
"""

from __future__ import annotations

import torch

from sinkd.divergences import divergence
from sinkd.sinkhorn import kernel_is_safe, sinkhorn


def solver_method(cost: torch.Tensor, reg: float) -> str:
    """The Sinkhorn method the lab's fits use: the kernel where it is safe, else "log".

    The fits call :func:`sinkd.sinkhorn` with ``checks=False`` (their inputs are known good:
    no value checks read back at every step); their "log" is then plain log-sum-exp
    iterations, which is also what the checked "log" runs for an unrolled gradient where the
    kernel underflows (the stabilised steps' backward was NaN in some fits: lambda = 0.002 to
    0.01, far-apart student and teacher).

    Examples
    --------
    >>> C = torch.tensor([[0.0, 12.0], [12.0, 0.0]], dtype=torch.float64)
    >>> solver_method(C, 0.1), solver_method(C, 0.01)
    ('kernel', 'log')
    """
    return "kernel" if kernel_is_safe(float(cost.max()), reg, cost.dtype) else "log"


def w1_loss(log_probs: torch.Tensor, b: torch.Tensor, dx: float) -> torch.Tensor:
    r"""Exact optimal transport on the grid (lambda -> 0): the 1-D Wasserstein-1 distance.

    .. math::
        W_1(s, t) = \min_{P \in U(s, t)} \langle P, C \rangle
                  = \sum_i |F_s(x_i) - F_t(x_i)| \, \Delta x, \qquad C_{ij} = |x_i - x_j|

    where :math:`F` are the cumulative sums of the bin masses (exact in 1-D for a uniform grid of
    spacing :math:`\Delta x`). Differentiable almost everywhere (through :math:`|\cdot|`).

    Parameters
    ----------
    log_probs : tensor, shape (..., n)
        Student bin log-probabilities.
    b : tensor, shape (n,)
        Teacher bin masses.
    dx : float
        Bin width.

    Returns
    -------
    tensor, shape (...)

    Examples
    --------
    >>> s = torch.tensor([1.0, 0.0, 0.0]).log()
    >>> float(w1_loss(s, torch.tensor([0.0, 0.0, 1.0]), 0.5))
    1.0
    """
    return (log_probs.exp().cumsum(-1) - b.cumsum(-1)).abs().sum(-1) * dx


def debiased_sinkhorn(a: torch.Tensor, b: torch.Tensor, cost: torch.Tensor, reg: float,
                      n_iters: int, self_b: torch.Tensor | None = None) -> torch.Tensor:
    r"""Debiased Sinkhorn divergence of the transport costs after T scalings.

    .. math::
        S_\lambda(a, b) = W_\lambda(a, b) - \tfrac12 W_\lambda(a, a) - \tfrac12 W_\lambda(b, b),
        \qquad W_\lambda(a, b) = \langle P_T(a, b), C \rangle

    with :math:`P_T` the plan after ``n_iters`` Sinkhorn scalings of :math:`e^{-C/\lambda}`
    (the lab's Sinkhorn loss; Genevay et al., 2018). Removing the self-transport terms removes
    the entropic bias: :math:`S_\lambda(a, a) = 0` for every lambda, and the minimiser of
    :math:`W_\lambda(\cdot, b)`, which is sharper than b, is no longer favoured.

    Parameters
    ----------
    a : tensor, shape (n,)
        Student masses (gradients flow through every term, unrolled through the T scalings).
    b : tensor, shape (n,)
        Teacher masses.
    cost : tensor, shape (n, n)
    reg, n_iters : float, int
        Entropic weight lambda and scalings T.
    self_b : tensor, shape (), optional
        :math:`W_\lambda(b, b)` if already known (it does not depend on the student).

    Returns
    -------
    tensor, shape ()

    Examples
    --------
    >>> x = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
    >>> C = (x[:, None] - x[None, :]).abs()
    >>> p = torch.full((5,), 0.2, dtype=torch.float64)
    >>> abs(float(debiased_sinkhorn(p, p, C, 0.1, 50))) < 1e-12
    True
    """
    method = solver_method(cost, reg)
    pair = sinkhorn(torch.stack([a, a]), torch.stack([b, a]), cost, reg, n_iters=n_iters,
                    tol=0, method=method, checks=False).cost  # (2,): W(a, b), W(a, a) at once
    if self_b is None:
        self_b = sinkhorn(b, b, cost, reg, n_iters=n_iters, tol=0, method=method,
                          checks=False).cost
    return pair[0] - 0.5 * pair[1] - 0.5 * self_b


def stacked_losses(names: tuple[str, ...], ls: torch.Tensor, lt: torch.Tensor, b: torch.Tensor,
                   C: torch.Tensor, reg: float, n_iters: int, dx: float,
                   self_b: torch.Tensor | None) -> torch.Tensor:
    """Each divergence's own loss on its own row of the stacked students, shape (..., D).

    ``ls`` (..., D, n) are the students' bin log-probabilities (row d fitted by ``names[d]``;
    leading axes, such as the robustness grid's learning rates and seeds, are independent fits),
    ``lt`` (n,) and ``b`` (n,) the teacher's log-probabilities and masses, ``C`` (n, n) the ground
    cost, ``dx`` the bin width and ``self_b`` the teacher's self-transport cost W(t, t) (needed
    when ``sinkhorn_debiased`` is fitted).

    The Sinkhorn solves of all rows (W(s, t) for ``sinkhorn``; W(s, t) and W(s, s) for
    ``sinkhorn_debiased``, see :func:`debiased_sinkhorn`) run as ONE
    batched solve: T scalings of a (..., B, n, n) stack instead of B loops of T scalings.
    """
    ot_rows = [d for d, name in enumerate(names) if name in ("sinkhorn", "sinkhorn_debiased")]
    self_rows = [d for d in ot_rows if names[d] == "sinkhorn_debiased"]
    to_t: dict[int, torch.Tensor] = {}
    to_self: dict[int, torch.Tensor] = {}
    if ot_rows:  # <P_T, C>, gradients unrolled through the T scalings (SinKD)
        s = ls[..., ot_rows + self_rows, :].exp()  # (..., B, n): W(s, t) per OT row, W(s, s)
        targets = torch.cat([b.expand(*s.shape[:-2], len(ot_rows), b.shape[-1]),
                             s[..., len(ot_rows):, :]], dim=-2)
        costs = sinkhorn(s, targets, C, reg, n_iters=n_iters, tol=0,
                         method=solver_method(C, reg), checks=False).cost  # (..., B)
        to_t = {d: costs[..., i] for i, d in enumerate(ot_rows)}
        to_self = {d: costs[..., len(ot_rows) + i] for i, d in enumerate(self_rows)}
    out = []
    for d, name in enumerate(names):
        row = ls[..., d, :]
        if name == "sinkhorn":
            out.append(to_t[d])
        elif name == "sinkhorn_debiased":
            out.append(to_t[d] - 0.5 * to_self[d] - 0.5 * self_b)
        elif name == "w1":
            out.append(w1_loss(row, b, dx))
        else:
            out.append(divergence(name, row, lt.expand_as(row), reduction="none"))
    return torch.stack(out, -1)
