"""Robustness counts of the divergence lab's presets (sinkd.lab.robustness): the stacked grid
equals separate fits, every preset's claims hold in most runs of its grid (computed here, fresh),
the predicates agree with independent computations (numpy, POT) and can fail."""

from __future__ import annotations

import json

import numpy as np
import ot
import pytest
from scipy.stats import norm

from sinkd.lab import robustness as rb
from sinkd.lab import toy
from sinkd.lab.divergence_lab_spec import SPEC
from sinkd.lab.spec import Claim
from sinkd.lab.style import COLORS, LABELS

SEEDS = 8  # the page's and the command line's default


@pytest.fixture(scope="module")
def preset_runs() -> dict[str, tuple[rb.GridFit, list[dict]]]:
    """Every preset's full robustness grid (8 seeds x 3 budgets x 2 learning rates), fitted
    once here, and whether each claim held in each run."""
    out = {}
    for name, preset in SPEC.presets.items():
        grid = rb.preset_grid(name, seeds=SEEDS)
        out[name] = (grid, rb.claim_runs(grid, preset.claims))
    return out


def test_grid_runs_equal_separate_fits():
    """Every run of the stacked grid (two learning rates, seeds, budgets read off the longest
    run) equals sinkd.lab.toy.fit run alone with that seed, learning rate and step count: the
    same log-probabilities, losses and gradient norms, for every divergence the lab fits."""
    values = dict(SPEC.defaults, student="mixture", k=2, init_mean=-0.5, steps=6, n_bins=40)
    grid = rb.fit_grid(values, seeds=2)
    assert grid.names == toy.FIT_DIVERGENCES and grid.budgets == (3, 6, 24)
    assert len(grid.fits) == 2 * 2 * 3
    for (seed, lr, steps), got in grid.fits.items():
        ref = toy.fit(toy.mixture([-2.5, 2.5], [0.5, 0.5], [1.0, 1.0]), "mixture", k=2,
                      n_bins=40, steps=steps, lr=lr, seed=seed, init_mean=-0.5)
        np.testing.assert_allclose(got.log_probs, ref.log_probs, rtol=0, atol=1e-9)
        np.testing.assert_allclose(got.losses, ref.losses, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got.grad_norms, ref.grad_norms, rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(got.snapshots[0], ref.snapshots[0], rtol=1e-12, atol=0)
        assert got.settings["steps"] == steps and got.settings["lr"] == lr


def test_second_learning_rate_and_budgets_are_as_documented():
    """The grid's learning rates are the preset's and 2.5 times it; its budgets half, as set
    and four times the preset's steps."""
    grid = rb.fit_grid(dict(SPEC.defaults, steps=4, lr=0.04), seeds=1)
    assert grid.lrs == pytest.approx((0.04, 0.1)) and grid.budgets == (2, 4, 16)


@pytest.mark.parametrize("name", list(SPEC.presets))
def test_every_claim_holds_in_most_runs(preset_runs, name):
    """Each claimed divergence of each preset shows its phenomenon in more than half of the
    preset's 48 robustness runs, and the counts are consistent (held <= runs = 8 x 3 x 2)."""
    grid, rows = preset_runs[name]
    claims = SPEC.presets[name].claims
    counts = rb.count_claims(rows, claims)
    assert set(counts) == set(claims) and len(claims) >= 3
    for d, c in counts.items():
        assert c["runs"] == SEEDS * 3 * 2 == len(rows)
        assert 0 <= c["held"] <= c["runs"]
        assert c["held"] > c["runs"] / 2, (name, d, c)
        assert c["claim"] == claims[d].sentence
    assert {(r["seed"], r["lr"], r["steps"]) for r in rows} == set(grid.fits)


def test_robustness_returns_json_counts(preset_runs):
    """robustness() gives {divergence: {claim, runs, held}} as JSON, with the claim's sentence;
    with one seed it counts exactly the seed-0 runs of the full grid (a run does not depend on
    how many seeds are fitted beside it)."""
    name = "No overlap: JS saturates"
    got = rb.robustness(name, seeds=1)
    claims = SPEC.presets[name].claims
    _, rows = preset_runs[name]
    assert got == rb.count_claims([r for r in rows if r["seed"] == 0], claims)
    assert json.loads(json.dumps(got)) == got
    assert all(set(c) == {"claim", "runs", "held"} and c["runs"] == 6 for c in got.values())


def _teacher_bins(x, means, widths, weights):
    dens = sum(w * norm.pdf(x, m, s) for m, s, w in zip(means, widths, weights, strict=True))
    return dens / dens.sum()


def test_gap_and_collapse_predicates_match_numpy(preset_runs):
    """For one run of "Mode averaging", the claims' verdicts equal those recomputed with numpy
    and scipy from the fitted bin masses: gap mass (bins between the modes with teacher mass
    < 5% of its peak) and the mass on each side of 0; W1 of the same run equals POT's."""
    name = "Mode averaging (forward KL)"
    grid, rows = preset_runs[name]
    fit = grid.fits[(3, grid.lrs[1], grid.budgets[0])]
    row = next(r for r in rows if (r["seed"], r["lr"], r["steps"]) == (3, grid.lrs[1],
                                                                        grid.budgets[0]))
    x = fit.x
    t = _teacher_bins(x, [-2.5, 2.5], [0.5, 0.5], [0.5, 0.5])
    gap = (x > -2.5) & (x < 2.5) & (t < 0.05 * t.max())
    for d, name_d in enumerate(fit.names):
        p = fit.probs[d]
        left, right = p[x < 0].sum(), p[x > 0].sum()
        expected = {"kl": p[gap].sum() >= 0.3, "js": p[gap].sum() >= 0.3,
                    "sinkhorn": p[gap].sum() >= 0.3, "w1": p[gap].sum() >= 0.3,
                    "rkl": max(left, right) >= 0.9 and min(left, right) < 0.25}[name_d]
        assert row[name_d] == bool(expected), name_d
        w_pot = ot.wasserstein_1d(x, x, p, t, p=1)
        assert grid.curve_w1[1, 3, list(grid.curve_steps).index(grid.budgets[0]), d] == \
            pytest.approx(w_pot, rel=1e-7)


def test_saturation_predicate_matches_log2(preset_runs):
    """The "No overlap" JS claim holds exactly when JS at step 0 (recomputed with numpy from
    the starting bin masses) is within 1e-3 of log 2 and W1 moved by under 1%."""
    grid, rows = preset_runs["No overlap: JS saturates"]
    for row, fit in zip(rows, (grid.fits[(r["seed"], r["lr"], r["steps"])] for r in rows),
                        strict=True):
        d = fit.names.index("js")
        s, t = fit.snapshots[0, d], fit.teacher_probs
        m = 0.5 * (s + t)
        with np.errstate(divide="ignore", invalid="ignore"):
            js0 = 0.5 * np.nansum(s * np.log(s / m)) + 0.5 * np.nansum(t * np.log(t / m))
        w_start = ot.wasserstein_1d(fit.x, fit.x, s, t)
        w_end = ot.wasserstein_1d(fit.x, fit.x, fit.probs[d], t)
        expected = np.log(2) - js0 <= 1e-3 and abs(w_end - w_start) < 0.01 * w_start
        assert row["js"] == bool(expected)


def test_a_predicate_fails_where_the_phenomenon_is_absent(preset_runs):
    """Claims tested where their phenomenon is absent count (almost) nothing: "No overlap"'s
    saturation claim on the "Mode averaging" runs (their supports overlap) holds in 0 runs,
    and "Flexible student"'s collapse claim on forward KL in 0."""
    grid, _ = preset_runs["Mode averaging (forward KL)"]
    claims = {"js": SPEC.presets["No overlap: JS saturates"].claims["js"],
              "kl": SPEC.presets["Flexible student (2-Gaussian mixture)"].claims["rkl"]}
    counts = rb.count_claims(rb.claim_runs(grid, claims), claims)
    assert counts["js"]["held"] == 0 and counts["kl"]["held"] == 0
    assert counts["js"]["runs"] == 48


def test_claims_on_unfitted_divergences_and_unknown_presets_raise():
    """A claim about a divergence the grid did not fit, or an unknown preset, is a ValueError
    naming what is allowed."""
    grid = rb.fit_grid(dict(SPEC.defaults, steps=2, use_tvd=False), seeds=1)
    with pytest.raises(ValueError, match="did not fit"):
        rb.claim_runs(grid, {"tvd": Claim("x", lambda m, d: True)})
    with pytest.raises(ValueError, match="Mode averaging"):
        rb.robustness("Mode nothing")
    with pytest.raises(ValueError, match="seeds"):
        rb.fit_grid(SPEC.defaults, seeds=0)


def test_every_preset_asks_a_question_and_claims_fitted_divergences():
    """Every preset has a question for the class and claims only about divergences the lab
    fits, each with a sentence."""
    for preset in SPEC.presets.values():
        assert preset.question.endswith("?")
        assert set(preset.claims) <= set(toy.FIT_DIVERGENCES)
        assert all(c.sentence for c in preset.claims.values())


def test_counts_figure_bars_are_held_over_runs():
    """The counts figure has one bar per divergence, at held / runs, coloured and labelled by
    the style, with "held of runs" as text."""
    counts = {"kl": {"claim": "a", "runs": 48, "held": 36},
              "sinkhorn": {"claim": "b", "runs": 48, "held": 0}}
    bar = rb.counts_figure(counts).data[0]
    assert list(bar.x) == [0.75, 0.0] and list(bar.text) == ["36 of 48", "0 of 48"]
    assert list(bar.y) == [LABELS["kl"], LABELS["sinkhorn"]]
    assert list(bar.marker.color) == [COLORS["kl"], COLORS["sinkhorn"]]


def test_w1_steps_figure_draws_the_median_over_seeds(preset_runs):
    """W1 against steps: per divergence a band and a line; the line is the median over seeds
    of W1 recomputed with POT from the run at each budget."""
    grid, _ = preset_runs["Flexible student (2-Gaussian mixture)"]
    fig = rb.w1_steps_figure(grid)
    assert [t.name for t in fig.data[1::2]] == [LABELS[d] for d in grid.names]
    for d, name in enumerate(grid.names):
        line = fig.data[2 * d + 1]
        assert line.line.color == COLORS[name]
        for steps in grid.budgets:
            k = list(line.x).index(steps)
            pot = [ot.wasserstein_1d(f.x, f.x, f.probs[d], f.teacher_probs)
                   for (s, lr, b), f in grid.fits.items() if lr == grid.lrs[0] and b == steps]
            assert line.y[k] == pytest.approx(np.median(pot), rel=1e-7)
