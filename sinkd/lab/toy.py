r"""The divergence lab's toy problem: a 1-D Gaussian-mixture teacher on a grid, three student
families, and one fit per divergence, all from the same start.

The grid's bins act as ordered classes. A distribution is discretised by evaluating its
log-density at the bin centres and normalising,

.. math::
    \log p_i = \log \frac{\rho(x_i)}{\sum_j \rho(x_j)}
             = \mathrm{log\_softmax}(\log \rho)_i, \qquad
    \rho(x) = \sum_k w_k \, \mathcal{N}(x; \mu_k, \sigma_k^2),

so every divergence of :func:`sinkd.divergence` applies to these log-probabilities exactly as to
class logits, and Sinkhorn (:func:`sinkd.sinkhorn`) transports the student's bin masses onto the
teacher's with ground cost :math:`C_{ij} = |x_i - x_j|`.

All divergences are fitted in ONE stacked optimisation: every student parameter gets a leading
axis with one row per divergence, the summed loss is backpropagated once, and Adam, which is
elementwise, moves each row exactly as if it were fitted alone (same start, same steps).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sinkd.lab.toy_losses import solver_method, stacked_losses
from sinkd.sinkhorn import sinkhorn
from sinkd.validation import check_choice, check_int, check_number

FIT_DIVERGENCES = ("kl", "rkl", "js", "tvd", "skew_kl", "skew_rkl", "sinkhorn",
                   "sinkhorn_debiased", "w1")
OT_DIVERGENCES = ("sinkhorn", "sinkhorn_debiased", "w1")  # measured by moving mass along x
STUDENTS = ("gaussian", "mixture", "free")
MAX_COMPONENTS = 4  # teacher components
MAX_K = 5  # components of a mixture student
REG_RANGE = (1e-3, 1e2)  # entropic weight lambda, in units of x
JITTER = 0.05  # seed-drawn shift of the starting means (x units): breaks exact symmetry
LOG_WIDTH_RANGE = (math.log(1e-4), math.log(1e2))  # student widths are clamped here (no inf)
DTYPE = torch.float64  # JS within 1e-3 of log 2 and gradients of 1e-80 need float64

@dataclass(frozen=True)
class Mixture:
    """A 1-D Gaussian mixture with positive weights summing to 1 (zero-weight parts dropped)."""

    means: tuple[float, ...]
    widths: tuple[float, ...]
    weights: tuple[float, ...]


def mixture(means: Sequence[float], widths: Sequence[float], weights: Sequence[float]) -> Mixture:
    """Validate and normalise a mixture: 1 to 4 components, widths > 0, weights >= 0 not all 0.

    Components with zero weight are dropped; components may overlap or coincide.

    Parameters
    ----------
    means, widths, weights : sequences of float, shape (K,), 1 <= K <= 4
        Component means, standard deviations (> 0) and weights (>= 0, normalised here).

    Returns
    -------
    Mixture
        Raises ValueError naming ``means``, ``widths`` or ``weights`` when one is bad.

    Examples
    --------
    >>> mixture([-1.0, 1.0, 3.0], [0.5, 0.5, 1.0], [1.0, 3.0, 0.0]).weights
    (0.25, 0.75)
    """
    m, s, w = (np.asarray(v, dtype=float).ravel() for v in (means, widths, weights))
    if not (len(m) == len(s) == len(w) and 1 <= len(m) <= MAX_COMPONENTS):
        raise ValueError(f"means, widths and weights must have the same length, 1 to "
                         f"{MAX_COMPONENTS} components; got {len(m)}, {len(s)}, {len(w)}")
    for name, v in (("means", m), ("widths", s), ("weights", w)):
        if not np.isfinite(v).all():
            raise ValueError(f"{name} must be finite numbers, got {v.tolist()}")
    if (s <= 0).any():
        raise ValueError(f"widths must be > 0, got {s.tolist()}")
    if (w < 0).any():
        raise ValueError(f"weights must be >= 0, got {w.tolist()}")
    if w.sum() <= 0:
        raise ValueError("weights must not all be zero: give at least one component a weight > 0")
    keep = w > 0
    w = w[keep] / w[keep].sum()
    return Mixture(tuple(m[keep].tolist()), tuple(s[keep].tolist()), tuple(w.tolist()))


def grid(n_bins: int, lo: float = -6.0, hi: float = 6.0) -> np.ndarray:
    """Centres of ``n_bins`` equal bins on [lo, hi], shape (n_bins,).

    Examples
    --------
    >>> grid(4, 0.0, 1.0).tolist()
    [0.125, 0.375, 0.625, 0.875]
    """
    check_int("n_bins", n_bins, low=2)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"lo and hi must be finite with lo < hi, got {lo}, {hi}")
    dx = (hi - lo) / n_bins
    return lo + dx * (np.arange(n_bins) + 0.5)


def log_density(x: torch.Tensor, means: torch.Tensor, log_widths: torch.Tensor,
                log_weights: torch.Tensor) -> torch.Tensor:
    r"""Mixture log-density :math:`\log \sum_k w_k \mathcal{N}(x; \mu_k, \sigma_k^2)`.

    ``x`` has shape (n,); ``means``, ``log_widths``, ``log_weights`` shape (..., k); returns
    (..., n). Zero weights (log weight -inf) are allowed if one weight is positive.
    """
    z = (x - means[..., :, None]) / log_widths.exp()[..., :, None]  # (..., k, n)
    comp = -0.5 * z.square() - log_widths[..., :, None] - 0.5 * math.log(2 * math.pi)
    return torch.logsumexp(log_weights[..., :, None] + comp, dim=-2)


def teacher_log_probs(teacher: Mixture, x: np.ndarray) -> torch.Tensor:
    """Discretised teacher: log_softmax of its bin log-densities, shape (n,), float64."""
    t = [torch.tensor(v, dtype=DTYPE) for v in (teacher.means, teacher.widths, teacher.weights)]
    return torch.log_softmax(log_density(torch.as_tensor(x, dtype=DTYPE), t[0], t[1].log(),
                                         t[2].log()), -1)


def discretise(teacher: Mixture, x: np.ndarray) -> np.ndarray:
    r"""Bin masses of the mixture on the grid: :math:`p_i = \rho(x_i) / \sum_j \rho(x_j)`.

    Parameters
    ----------
    teacher : Mixture
    x : array, shape (n,)
        Bin centres, from :func:`grid`.

    Returns
    -------
    p : array, shape (n,)
        Nonnegative, summing to 1.

    Examples
    --------
    >>> p = discretise(mixture([0.0], [1.0], [1.0]), grid(60))
    >>> round(float(p.sum()), 12), int(p.argmax()) in (29, 30)
    (1.0, True)
    """
    return teacher_log_probs(teacher, x).exp().numpy()


def init_params(student: str, x: np.ndarray, *, k: int = 2, init_mean: float = 0.0,
                init_width: float = 1.0, seed: int = 0) -> dict[str, torch.Tensor]:
    """The starting parameters of a student (no divergence axis), deterministic given ``seed``.

    Gaussian: one mean (``init_mean`` + jitter) and log-width ``log(init_width)``. Mixture: ``k``
    means spread over ``init_mean`` +- ``init_width`` / 2 (+ jitter each), those widths, equal
    weights (weight logits 0). Free: the bin log-densities of that same starting Gaussian.
    The jitter is ``JITTER`` times a standard normal draw from ``seed``.

    Parameters
    ----------
    student : {"gaussian", "mixture", "free"}
    x : array, shape (n,)
        Bin centres.
    k, init_mean, init_width, seed : int, float, float, int
        Mixture components (1 to 5), the starting Gaussian, the jitter's seed.

    Returns
    -------
    dict of str to tensor
        ``means`` (m,), ``log_widths`` (m,) [, ``weight_logits`` (k,)], or ``logits`` (n,).

    Examples
    --------
    >>> sorted(init_params("mixture", grid(10), k=3))
    ['log_widths', 'means', 'weight_logits']
    """
    check_choice("student", student, STUDENTS)
    check_int("k", k, low=1, high=MAX_K)
    check_number("init_mean", init_mean)
    check_number("init_width", init_width, low=0, low_open=True)
    rng = np.random.default_rng(seed)
    n_means = k if student == "mixture" else 1
    spread = 0.5 * init_width * np.linspace(-1.0, 1.0, n_means) if n_means > 1 else np.zeros(1)
    means = torch.tensor(init_mean + spread + JITTER * rng.standard_normal(n_means), dtype=DTYPE)
    log_widths = torch.full((n_means,), math.log(init_width), dtype=DTYPE)
    if student == "gaussian":
        return {"means": means, "log_widths": log_widths}
    if student == "mixture":
        return {"means": means, "log_widths": log_widths,
                "weight_logits": torch.zeros(k, dtype=DTYPE)}
    xt = torch.as_tensor(x, dtype=DTYPE)
    return {"logits": log_density(xt, means, log_widths, torch.zeros(1, dtype=DTYPE))}


def student_log_probs(params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Bin log-probabilities (..., n) of a student from its parameters (any leading axes)."""
    if "logits" in params:
        return torch.log_softmax(params["logits"], -1)
    log_widths = params["log_widths"].clamp(*LOG_WIDTH_RANGE)
    weights = params.get("weight_logits")
    log_weights = torch.zeros_like(log_widths) if weights is None else weights.log_softmax(-1)
    return torch.log_softmax(log_density(x, params["means"], log_widths, log_weights), -1)


@dataclass(frozen=True, eq=False)
class ToyFit:
    """Everything one fit computed (numpy arrays; D divergences, n bins, S snapshots)."""

    x: np.ndarray  # (n,) bin centres
    teacher: Mixture
    teacher_log_probs: np.ndarray  # (n,)
    student: str
    names: tuple[str, ...]  # (D,) the divergences fitted, one row each below
    log_probs: np.ndarray  # (D, n) fitted students
    snapshots: np.ndarray  # (S, D, n) student bin masses every few steps, first and last included
    snapshot_steps: tuple[int, ...]  # (S,)
    losses: np.ndarray  # (steps + 1, D) each divergence's own loss after 0 .. steps updates
    grad_norms: np.ndarray  # (steps + 1, D) Euclidean norm of d loss / d parameters
    init_params: dict[str, np.ndarray]  # name -> (D, ...) starting parameters of every row
    settings: dict[str, Any]  # steps, lr, reg, n_iters, seed, k, init_mean, init_width, ...
    seconds: float  # wall time of the optimisation

    @property
    def dx(self) -> float:
        return float(self.x[1] - self.x[0])

    @property
    def teacher_probs(self) -> np.ndarray:
        return np.exp(self.teacher_log_probs)

    @property
    def probs(self) -> np.ndarray:
        return np.exp(self.log_probs)


def _check_fit_args(divergences: Sequence[str], steps: int, lr: float, reg: float,
                    n_iters: int, n_frames: int) -> tuple[str, ...]:
    names = tuple(divergences)
    if not names or any(d not in FIT_DIVERGENCES for d in names) or len(set(names)) < len(names):
        raise ValueError(f"divergences must be distinct names from {FIT_DIVERGENCES} (at least "
                         f"one), got {names}")
    for name, value in (("steps", steps), ("n_iters", n_iters), ("n_frames", n_frames)):
        check_int(name, value, low=1)
    check_number("lr", lr, low=0, high=10, low_open=True)
    check_number("reg", reg, low=REG_RANGE[0], high=REG_RANGE[1])  # lambda, in units of x
    return names


def _optimise(params, names, xt, lt, b, C, reg, n_iters, opt, steps, every, losses, grads,
              snaps, snap_steps) -> torch.Tensor:
    dx = float(xt[1] - xt[0])
    self_b = (sinkhorn(b, b, C, reg, n_iters=n_iters, tol=0, method=solver_method(C, reg),
                       checks=False).cost if "sinkhorn_debiased" in names else None)
    """Adam on the stacked rows; fills the histories in place; returns the final (D, n)."""
    for step in range(steps + 1):  # the last pass only measures: loss and gradient at the end
        ls = student_log_probs(params, xt)  # (D, n)
        loss = stacked_losses(names, ls, lt, b, C, reg, n_iters, dx, self_b)  # (D,)
        opt.zero_grad()
        loss.sum().backward()  # rows are independent: each row gets its own gradient
        losses[step] = loss.detach().numpy()
        grads[step] = torch.stack([p.grad.square().flatten(1).sum(1)
                                   for p in params.values()]).sum(0).sqrt().numpy()
        if step % every == 0 or step == steps:
            snaps.append(ls.detach().exp().numpy())
            snap_steps.append(step)
        if step < steps:
            opt.step()
    return ls.detach()


def fit(teacher: Mixture, student: str = "gaussian", *,
        divergences: Sequence[str] = FIT_DIVERGENCES, k: int = 2, n_bins: int = 80,
        lo: float = -6.0, hi: float = 6.0, steps: int = 120, lr: float = 0.08, reg: float = 0.1,
        n_iters: int = 20, seed: int = 0, init_mean: float = 0.0, init_width: float = 1.0,
        n_frames: int = 40) -> ToyFit:
    r"""Fit one student per divergence to the discretised teacher, all from the same start.

    .. math::
        \theta_d^{(s+1)} = \mathrm{Adam}\big(\theta_d^{(s)}, \nabla_\theta
        \mathcal{D}_d(p_t, p_{\theta_d})\big), \quad \theta_d^{(0)} = \theta^{(0)} \ \forall d

    where :math:`\mathcal{D}_d` is ``kl`` (KL(t||s)), ``rkl`` (KL(s||t)), ``js``, ``tvd``,
    ``skew_kl``, ``skew_rkl`` (skew 0.1, :func:`sinkd.divergence` on the bin log-probabilities) or
    ``sinkhorn``: :math:`\langle P_T, C \rangle` for ``a`` = student masses, ``b`` = teacher
    masses, :math:`C_{ij} = |x_i - x_j|`, ``T = n_iters`` scalings with weight ``reg``, gradient
    unrolled through the iterations (SinKD's choice); ``sinkhorn_debiased``: the same cost less
    half the two self-transport costs (:func:`debiased_sinkhorn`); ``w1``: exact optimal
    transport, the limit lambda -> 0 (:func:`w1_loss`).

    Parameters
    ----------
    teacher : Mixture
        From :func:`mixture`.
    student : {"gaussian", "mixture", "free"}
        Single Gaussian (mean, log-width), mixture of ``k`` Gaussians (means, log-widths, weight
        logits) or free logits over the bins.
    divergences : sequence of str
        Names from :data:`FIT_DIVERGENCES`, one fit each.
    k : int
        Components of the mixture student, 1 to 5.
    n_bins, lo, hi : int, float, float
        The grid: ``n_bins`` bins on [lo, hi].
    steps, lr : int, float
        Adam steps (default betas, eps 1e-8) and learning rate, the same for every divergence.
    reg, n_iters : float, int
        Sinkhorn's entropic weight lambda in [1e-3, 1e2] (units of x) and iterations T.
    seed : int
        Draws the jitter of the starting means (see :func:`init_params`): one run per divergence,
        deterministic given the seed.
    init_mean, init_width : float
        The starting Gaussian of every student.
    n_frames : int
        About how many snapshots to keep for the animation (plus the first and the last).

    Returns
    -------
    ToyFit

    Examples
    --------
    >>> t = mixture([-2.0, 2.0], [0.5, 0.5], [1.0, 1.0])
    >>> f = fit(t, divergences=("kl", "sinkhorn"), steps=5, n_bins=30)
    >>> f.losses.shape, f.snapshots.shape
    ((6, 2), (6, 2, 30))
    """
    if not isinstance(teacher, Mixture):
        raise ValueError("teacher must be a Mixture made by sinkd.lab.toy.mixture(...)")
    names = _check_fit_args(divergences, steps, lr, reg, n_iters, n_frames)
    x = grid(n_bins, lo, hi)
    xt = torch.as_tensor(x, dtype=DTYPE)
    lt = teacher_log_probs(teacher, x)  # (n,)
    b = lt.exp()
    C = (xt[:, None] - xt[None, :]).abs()  # (n, n) ground cost between bins
    start = init_params(student, x, k=k, init_mean=init_mean, init_width=init_width, seed=seed)
    D = len(names)
    params = {p: v.expand(D, *v.shape).clone().requires_grad_() for p, v in start.items()}
    init = {p: v.detach().numpy().copy() for p, v in params.items()}
    opt = torch.optim.Adam(list(params.values()), lr=lr)
    every = max(1, math.ceil(steps / n_frames))

    losses, grads = np.empty((steps + 1, D)), np.empty((steps + 1, D))
    snaps, snap_steps = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors of ~100 numbers: more threads only add synchronisation
    t0 = time.perf_counter()
    try:
        ls = _optimise(params, names, xt, lt, b, C, float(reg), n_iters, opt, steps, every,
                       losses, grads, snaps, snap_steps)
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - t0
    if not (np.isfinite(losses).all() and bool(torch.isfinite(ls).all())):
        raise ValueError(f"the fit diverged (non-finite loss) with lr = {lr}: lower lr")
    settings = dict(steps=steps, lr=float(lr), reg=float(reg), n_iters=n_iters, seed=seed, k=k,
                    init_mean=float(init_mean), init_width=float(init_width), n_bins=n_bins,
                    lo=float(lo), hi=float(hi))
    return ToyFit(x, teacher, lt.numpy(), student, names, ls.numpy(), np.stack(snaps),
                  tuple(snap_steps), losses, grads, init, settings, seconds)


def fit_view(values: Mapping[str, Any]) -> ToyFit:
    """Run :func:`fit` from the divergence lab's flat values (the keys of its page spec,
    :data:`sinkd.lab.divergence_lab_spec.SPEC`): ``n_components``, ``mean1`` .. ``weight4``,
    ``use_<divergence>`` and :func:`fit`'s own options.

    Examples
    --------
    >>> from sinkd.lab.divergence_lab_spec import SPEC
    >>> fit_view(dict(SPEC.defaults, steps=3, use_js=False)).names
    ('kl', 'rkl', 'tvd', 'skew_kl', 'skew_rkl', 'sinkhorn', 'sinkhorn_debiased', 'w1')
    """
    try:
        n = check_int("n_components", values["n_components"], low=1, high=MAX_COMPONENTS)
        parts = [[float(values[f"{p}{i}"]) for i in range(1, n + 1)]
                 for p in ("mean", "width", "weight")]
        names = tuple(d for d in FIT_DIVERGENCES if values[f"use_{d}"])
        options = {name: values[name] for name in ("k", "n_bins", "steps", "lr", "reg", "n_iters",
                                                   "seed", "init_mean", "init_width")}
        student = values["student"]
    except KeyError as err:
        raise ValueError(f"values is missing {err.args[0]!r}") from None
    if not names:
        raise ValueError("divergences: tick at least one divergence to fit")
    return fit(mixture(*parts), student, divergences=names, **options)
