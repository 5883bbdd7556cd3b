r"""Does a divergence lab preset's phenomenon survive other seeds, step budgets and learning
rates? Its claims counted over a grid of runs, and W1 against the step budget.

The grid of a preset whose values set ``steps`` = :math:`s` and ``lr`` = :math:`\eta`: seeds
0 .. ``seeds`` - 1 (each draws another jitter of the start), budgets :math:`s/2, s, 4s`
(:data:`BUDGETS`) and learning rates :math:`\eta, 2.5\,\eta` (:data:`LR_FACTOR`: 0.08 -> 0.2,
where the issue that asked for these counts saw JS flip in "Mode collapse"). Each claim of the
preset (:attr:`sinkd.lab.spec.Preset.claims`: per divergence a sentence and a predicate on
:class:`~sinkd.lab.toy_metrics.ToyMetrics`) is tested on every run.

All runs are ONE stacked optimisation, as :func:`sinkd.lab.toy.fit` stacks the divergences:
the parameters get leading axes (learning rate, seed, divergence), one Adam parameter group per
learning rate, and since Adam is elementwise each row moves exactly as in its own fit. Adam's
update does not depend on the number of steps still to come, so the runs with budgets
:math:`s/2` and :math:`s` are the :math:`4s` runs' states after :math:`s/2` and :math:`s`
updates, exactly; every run is returned as the :class:`~sinkd.lab.toy.ToyFit` that ``fit``
would have made (tests/lab/test_robustness.py checks both equalities).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

from sinkd.lab import toy
from sinkd.lab.divergence_lab_spec import SPEC
from sinkd.lab.spec import Claim
from sinkd.lab.style import COLORS, LABELS
from sinkd.lab.toy_losses import stacked_losses
from sinkd.lab.toy_metrics import compute_metrics, w1
from sinkd.sinkhorn import sinkhorn
from sinkd.validation import check_int, check_number

BUDGETS = (0.5, 1.0, 4.0)  # step budgets, as multiples of the preset's steps
LR_FACTOR = 2.5  # the second learning rate is the preset's times this
CURVE_POINTS = 80  # about this many steps at which W1 is recorded for the budget figure

Progress = Callable[[int, int], None]  # on_progress(done, total), in optimisation steps


@dataclass(frozen=True, eq=False)
class GridFit:
    """Every run of a grid: ``fits[(seed, lr, steps)]`` is that run's :class:`ToyFit`.

    ``curve_w1`` (L, S, K, D) is W1 to the teacher of learning rate l, seed s, divergence d
    after ``curve_steps[k]`` updates (K steps from 0 to the largest budget).
    """

    names: tuple[str, ...]  # (D,)
    seeds: tuple[int, ...]  # (S,)
    lrs: tuple[float, ...]  # (L,)
    budgets: tuple[int, ...]
    fits: dict[tuple[int, float, int], toy.ToyFit]
    curve_steps: np.ndarray  # (K,)
    curve_w1: np.ndarray  # (L, S, K, D)
    seconds: float


def grid_budgets(steps: int) -> tuple[int, ...]:
    """The step budgets of a preset with ``steps`` steps: half, as set, four times.

    >>> grid_budgets(120)
    (60, 120, 480)
    """
    check_int("steps", steps, low=2)
    return tuple(max(1, round(f * steps)) for f in BUDGETS)


def fit_grid(values: Mapping[str, Any], *, seeds: int = 8, lr_factor: float = LR_FACTOR,
             on_progress: Progress | None = None) -> GridFit:
    r"""Fit a divergence lab view (its flat values, as :func:`sinkd.lab.toy.fit_view` takes)
    for every seed 0 .. ``seeds`` - 1, learning rates ``lr`` and ``lr_factor * lr``, and the
    budgets of :func:`grid_budgets`, in one stacked optimisation.

    Parameters
    ----------
    values : mapping
        The page's values (``SPEC.defaults`` with a preset's changes).
    seeds : int
        Number of seeds, 1 to 64.
    lr_factor : float
        The second learning rate is ``lr_factor`` times the first, in (0, 10].
    on_progress : callable (done, total) or None
        Called every few optimisation steps (total: the largest budget + 1).

    Returns
    -------
    GridFit
        ``seeds x 2 x 3`` fits, and W1 against steps for every run.

    Examples
    --------
    >>> from sinkd.lab.divergence_lab_spec import SPEC
    >>> g = fit_grid(dict(SPEC.defaults, steps=4, use_js=False), seeds=2)
    >>> len(g.fits), g.budgets, g.curve_w1.shape[:2]
    (12, (2, 4, 16), (2, 2))
    """
    check_int("seeds", seeds, low=1, high=64)
    check_number("lr_factor", lr_factor, low=0, high=10, low_open=True)
    try:
        n = int(values["n_components"])
        parts = [[float(values[f"{p}{i}"]) for i in range(1, n + 1)]
                 for p in ("mean", "width", "weight")]
        names = tuple(d for d in toy.FIT_DIVERGENCES if values[f"use_{d}"])
        steps, lr, student = values["steps"], float(values["lr"]), values["student"]
        opts = {k: values[k] for k in ("k", "n_bins", "reg", "n_iters", "init_mean",
                                       "init_width")}
    except KeyError as err:
        raise ValueError(f"values is missing {err.args[0]!r}") from None
    teacher = toy.mixture(*parts)
    budgets = grid_budgets(steps)
    lrs = (lr, lr * lr_factor)
    check_number("lr", lrs[-1], low=0, high=10, low_open=True)
    # the fit itself checks names, reg and n_iters: run a one-step fit to raise its errors here
    toy.fit(teacher, student, divergences=names, steps=1, lr=lr, **opts)
    x = toy.grid(opts["n_bins"])
    xt = torch.as_tensor(x, dtype=toy.DTYPE)
    lt = toy.teacher_log_probs(teacher, x)
    b = lt.exp()
    C = (xt[:, None] - xt[None, :]).abs()
    S, D, T = seeds, len(names), budgets[-1]
    reg, dx = float(opts["reg"]), float(x[1] - x[0])
    self_b = sinkhorn(b, b, C, reg, n_iters=opts["n_iters"], tol=0).cost  # W(t, t): debiasing
    starts = [toy.init_params(student, x, k=opts["k"], init_mean=opts["init_mean"],
                              init_width=opts["init_width"], seed=s) for s in range(S)]
    start = {p: torch.stack([st[p] for st in starts])[:, None].expand(S, D, *starts[0][p].shape)
             for p in starts[0]}  # (S, D, ...)
    groups = [{p: v.clone().requires_grad_() for p, v in start.items()} for _ in lrs]
    opt = torch.optim.Adam([{"params": list(g.values()), "lr": r}
                            for g, r in zip(groups, lrs, strict=True)])
    stride = max(1, T // CURVE_POINTS)
    keep = {0, *budgets}
    losses, grads = np.empty((T + 1, len(lrs), S, D)), np.empty((T + 1, len(lrs), S, D))
    kept, curve_steps, curve = {}, [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as toy.fit: small tensors, threads only add synchronisation
    t0 = time.perf_counter()
    try:
        for step in range(T + 1):
            ls = toy.student_log_probs({p: torch.stack([g[p] for g in groups])
                                        for p in start}, xt)  # (L, S, D, n)
            loss = stacked_losses(names, ls, lt, b, C, reg, opts["n_iters"], dx, self_b)
            opt.zero_grad()
            loss.sum().backward()  # rows are independent: each row gets its own gradient
            losses[step] = loss.detach().numpy()
            grads[step] = torch.stack([
                sum(v.grad.square().flatten(2).sum(2) for v in g.values()) for g in groups
            ]).sqrt().numpy()
            lp = ls.detach().numpy()
            if step in keep:
                kept[step] = lp
            if step % stride == 0 or step in keep:
                curve_steps.append(step)
                curve.append(w1(np.exp(lp), b.numpy(), dx))  # (L, S, D)
            if step < T:
                opt.step()
            if on_progress is not None and (step % 10 == 0 or step == T):
                on_progress(step + 1, T + 1)
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - t0
    if not np.isfinite(losses).all():
        raise ValueError(f"a fit of the grid diverged (non-finite loss) with lr up to "
                         f"{lrs[-1]:g}: lower lr")
    init = {p: v.numpy() for p, v in start.items()}
    fits = {}
    for li, r in enumerate(lrs):
        for s in range(S):
            for steps_b in budgets:
                settings = dict(steps=steps_b, lr=r, reg=float(opts["reg"]),
                                n_iters=opts["n_iters"], seed=s, k=opts["k"],
                                init_mean=float(opts["init_mean"]),
                                init_width=float(opts["init_width"]), n_bins=opts["n_bins"],
                                lo=float(x[0] - (x[1] - x[0]) / 2),
                                hi=float(x[-1] + (x[1] - x[0]) / 2))
                fits[(s, r, steps_b)] = toy.ToyFit(
                    x, teacher, lt.numpy(), student, names, kept[steps_b][li, s],
                    np.exp(np.stack([kept[0][li, s], kept[steps_b][li, s]])), (0, steps_b),
                    losses[:steps_b + 1, li, s], grads[:steps_b + 1, li, s],
                    {p: v[s] for p, v in init.items()}, settings, seconds)
    return GridFit(names, tuple(range(S)), lrs, budgets, fits, np.array(curve_steps),
                   np.stack(curve, 2), seconds)


def claim_runs(grid: GridFit, claims: Mapping[str, Claim]) -> list[dict[str, Any]]:
    """One row per run of ``grid``: its seed, learning rate and steps, and per claimed
    divergence whether its claim held (``claims``: divergence name -> :class:`Claim`; each
    must be a divergence the grid fitted).

    >>> from sinkd.lab.divergence_lab_spec import SPEC
    >>> from sinkd.lab.spec import Claim
    >>> g = fit_grid(dict(SPEC.defaults, steps=2), seeds=1)
    >>> claim_runs(g, {"kl": Claim("always", lambda m, d: True)})[0]
    {'seed': 0, 'lr': 0.08, 'steps': 1, 'kl': True}
    """
    missing = [d for d in claims if d not in grid.names]
    if missing:
        raise ValueError(f"claims name divergences the grid did not fit: {missing}; fitted: "
                         f"{list(grid.names)}")
    rows = []
    for (seed, lr, steps), fit in sorted(grid.fits.items(), key=lambda kv: (kv[0][1], kv[0][2],
                                                                            kv[0][0])):
        m = compute_metrics(fit)
        rows.append({"seed": seed, "lr": lr, "steps": steps,
                     **{d: bool(c.holds(m, d)) for d, c in claims.items()}})
    return rows


def count_claims(rows: Sequence[Mapping[str, Any]],
                 claims: Mapping[str, Claim]) -> dict[str, dict[str, Any]]:
    """Per claimed divergence: ``{"claim": sentence, "runs": n, "held": k}`` over ``rows`` of
    :func:`claim_runs` (the JSON shape of ``python -m sinkd toy --json``).

    >>> from sinkd.lab.spec import Claim
    >>> count_claims([{"kl": True}, {"kl": False}], {"kl": Claim("s", lambda m, d: True)})
    {'kl': {'claim': 's', 'runs': 2, 'held': 1}}
    """
    return {d: {"claim": c.sentence, "runs": len(rows), "held": sum(bool(r[d]) for r in rows)}
            for d, c in claims.items()}


def preset_grid(preset_name: str, *, seeds: int = 8,
                on_progress: Progress | None = None) -> GridFit:
    """The robustness grid of a divergence lab preset, fitting only the divergences it makes
    claims about (the rows of a stacked fit are independent, so the others change nothing).

    Raises ValueError naming the presets for an unknown ``preset_name``.
    """
    if preset_name not in SPEC.presets:
        raise ValueError(f"preset must be one of {list(SPEC.presets)}, got {preset_name!r}")
    preset = SPEC.presets[preset_name]
    values = {**preset.values, **{f"use_{d}": d in preset.claims for d in toy.FIT_DIVERGENCES}}
    return fit_grid(values, seeds=seeds, on_progress=on_progress)


def preset_counts(preset_name: str, *, seeds: int = 8, on_progress: Progress | None = None
                  ) -> tuple[dict[str, dict[str, Any]], GridFit]:
    """:func:`robustness`'s counts and the grid they come from (for :func:`w1_steps_figure`)."""
    grid = preset_grid(preset_name, seeds=seeds, on_progress=on_progress)
    claims = SPEC.presets[preset_name].claims
    return count_claims(claim_runs(grid, claims), claims), grid


def robustness(preset_name: str, *, seeds: int = 8,
               on_progress: Progress | None = None) -> dict[str, dict[str, Any]]:
    """In how many runs of its grid each claim of a divergence lab preset held.

    Parameters
    ----------
    preset_name : str
        A key of ``sinkd.lab.divergence_lab_spec.SPEC.presets``.
    seeds : int
        Seeds 0 .. seeds - 1; the grid has ``seeds x 3 budgets x 2 learning rates`` runs.
    on_progress : callable (done, total) or None
        Progress of the stacked optimisation, in steps.

    Returns
    -------
    dict
        divergence name -> ``{"claim": str, "runs": int, "held": int}``.

    Examples
    --------
    >>> counts = robustness("Mode averaging (forward KL)", seeds=1)
    >>> counts["kl"]["runs"], counts["kl"]["held"] <= counts["kl"]["runs"]
    (6, True)
    """
    return preset_counts(preset_name, seeds=seeds, on_progress=on_progress)[0]


def counts_figure(counts: Mapping[str, Mapping[str, Any]]) -> go.Figure:
    """Bars of ``held / runs`` per divergence (the output of :func:`robustness`, or of any
    toy's robustness with the same shape), labelled "held of runs" and with the claim.

    >>> fig = counts_figure({"kl": {"claim": "averages", "runs": 4, "held": 3}})
    >>> fig.data[0].x[0], fig.data[0].text[0]
    (0.75, '3 of 4')
    """
    names = list(counts)
    share = [counts[d]["held"] / counts[d]["runs"] if counts[d]["runs"] else 0.0 for d in names]
    fig = go.Figure(go.Bar(
        y=[LABELS.get(d, d) for d in names], x=share, orientation="h",
        marker_color=[COLORS.get(d, "#7f7f7f") for d in names],
        text=[f"{counts[d]['held']} of {counts[d]['runs']}" for d in names],
        textposition="auto", customdata=[counts[d]["claim"] for d in names],
        hovertemplate="%{customdata}<br>held in %{text} runs<extra></extra>"))
    fig.add_vline(x=0.5, line_dash="dot", line_color="#555555")
    fig.update_layout(title="In how many runs each claim held", height=90 + 40 * len(names),
                      xaxis=dict(title="share of runs (dotted: half)", range=[0, 1]),
                      yaxis=dict(autorange="reversed"), margin=dict(t=50, b=40, l=10, r=10))
    return fig


def w1_steps_figure(grid: GridFit, lr_index: int = 0) -> go.Figure:
    """W1 to the teacher against the number of Adam steps, per divergence: the median over the
    grid's seeds (line) and their range (band), at one of its learning rates; the grid's
    budgets are marked. Shows how a ranking of the students depends on the step budget.

    Traces: per divergence a band (no legend entry) and then its median line.

    >>> from sinkd.lab.divergence_lab_spec import SPEC
    >>> g = fit_grid(dict(SPEC.defaults, steps=4, use_js=False, use_tvd=False), seeds=2)
    >>> [t.name for t in w1_steps_figure(g).data][:2]
    ['KL (forward) range', 'KL (forward)']
    """
    check_int("lr_index", lr_index, low=0, high=len(grid.lrs) - 1)
    steps, fig = grid.curve_steps, go.Figure()
    w = grid.curve_w1[lr_index]  # (S, K, D)
    for d, name in enumerate(grid.names):
        label, colour = LABELS.get(name, name), COLORS.get(name, "#7f7f7f")
        lo, hi = w[:, :, d].min(0), w[:, :, d].max(0)
        fig.add_trace(go.Scatter(
            x=np.concatenate([steps, steps[::-1]]), y=np.concatenate([hi, lo[::-1]]),
            fill="toself", fillcolor=colour, opacity=0.15, line=dict(width=0),
            name=f"{label} range", legendgroup=name, showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=steps, y=np.median(w[:, :, d], 0), name=label,
                                 legendgroup=name, mode="lines", line=dict(color=colour, width=2)))
    for b, word in zip(grid.budgets, ("half", "as set", "4x"), strict=True):
        fig.add_vline(x=b, line_dash="dot", line_color="#555555", annotation_text=word)
    fig.update_layout(
        title=f"W1 to the teacher against steps (lr {grid.lrs[lr_index]:g}; median and range "
              f"over {len(grid.seeds)} seeds)",
        xaxis_title="Adam steps", yaxis_title="W1 to the teacher", height=420,
        legend=dict(orientation="h", y=-0.2), margin=dict(t=60, b=40))
    return fig
