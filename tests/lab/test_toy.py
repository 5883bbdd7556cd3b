"""Tests for the divergence lab's toy (sinkd.lab.toy, toy_metrics, toy_figures) against
independent references (scipy, POT, finite differences) and the phenomena each preset of the
page's spec (sinkd.lab.divergence_lab_spec) names."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy, norm, wasserstein_distance

from sinkd.lab import toy
from sinkd.lab import toy_figures as tf
from sinkd.lab import toy_metrics as tm
from sinkd.lab.divergence_lab_spec import SPEC
from sinkd.lab.style import COLORS, LABELS

BIMODAL = toy.mixture([-2.5, 2.5], [0.5, 0.5], [1.0, 1.0])


@pytest.fixture(scope="module")
def preset_fits() -> dict[str, tuple[toy.ToyFit, tm.ToyMetrics]]:
    """Every preset fitted once, as the page fits it, with its metrics."""
    fits = {name: toy.fit_view(p.values) for name, p in SPEC.presets.items()}
    return {name: (f, tm.compute_metrics(f)) for name, f in fits.items()}


@pytest.fixture(scope="module")
def small_fit() -> toy.ToyFit:
    """A short fit of every divergence, for the checks that need any fit."""
    return toy.fit(BIMODAL, "mixture", k=2, steps=30, n_bins=40, init_mean=0.3, seed=3)


# --- discretisation and input validation ---------------------------------------------------

@pytest.mark.parametrize("means, widths, weights", [
    ([0.0], [1.0], [1.0]),
    ([-2.5, 2.5], [0.5, 0.5], [1.0, 1.0]),
    ([0.0, 0.0, 0.3, 4.0], [0.3, 1.0, 0.2, 2.0], [1.0, 2.0, 0.5, 0.1]),  # overlapping modes
    ([5.0], [0.05], [3.0]),  # narrower than a bin
])
def test_discretisation_sums_to_one_and_matches_scipy(means, widths, weights):
    """Bin masses sum to 1 and equal the scipy mixture density at the centres, normalised."""
    x = toy.grid(64)
    p = toy.discretise(toy.mixture(means, widths, weights), x)
    w = np.asarray(weights) / np.sum(weights)
    dens = sum(wk * norm.pdf(x, m, s) for m, s, wk in zip(means, widths, w, strict=True))
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(p, dens / dens.sum(), rtol=1e-9, atol=1e-300)


def test_zero_weight_component_is_dropped():
    """A component of weight 0 is dropped and the others renormalised."""
    m = toy.mixture([-1.0, 1.0, 3.0], [0.5, 0.5, 1.0], [1.0, 3.0, 0.0])
    assert m.means == (-1.0, 1.0) and m.weights == (0.25, 0.75)


@pytest.mark.parametrize("args, word", [
    (([0.0, 1.0], [1.0, 1.0], [0.0, 0.0]), "weights"),
    (([0.0], [1.0], [-1.0]), "weights"),
    (([0.0], [0.0], [1.0]), "widths"),
    (([0.0], [-0.5], [1.0]), "widths"),
    (([0.0, 1.0], [1.0], [1.0, 1.0]), "same length"),
    (([0.0] * 5, [1.0] * 5, [1.0] * 5), "1 to 4"),
    (([math.nan], [1.0], [1.0]), "means"),
])
def test_bad_mixture_raises_naming_the_argument(args, word):
    """Bad teacher input raises ValueError naming the argument (zero weights, widths <= 0...)."""
    with pytest.raises(ValueError, match=word):
        toy.mixture(*args)


@pytest.mark.parametrize("reg", [0.0, -1.0, 1e-4, 1e3, math.inf, math.nan])
def test_extreme_reg_raises_with_range(reg):
    """lambda outside [1e-3, 1e2] raises ValueError naming 'reg' and the range."""
    with pytest.raises(ValueError, match=r"reg must be .*in \[0\.001, 100\]"):
        toy.fit(BIMODAL, divergences=("sinkhorn",), steps=1, reg=reg)


@pytest.mark.parametrize("kwargs, word", [
    (dict(divergences=()), "divergences"), (dict(divergences=("kl", "kl")), "divergences"),
    (dict(divergences=("nope",)), "divergences"), (dict(steps=0), "steps"),
    (dict(lr=0.0), "lr"), (dict(n_iters=0), "n_iters"), (dict(k=6), "k must"),
    (dict(init_width=0.0), "init_width"), (dict(n_bins=1), "n_bins"),
])
def test_bad_fit_arguments_raise(kwargs, word):
    """Other bad fit arguments raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=word):
        toy.fit(BIMODAL, "mixture", **{"steps": 1, **kwargs})


@pytest.mark.parametrize("reg", [1e-3, 1e2])
def test_reg_at_range_ends_stays_finite(reg):
    """At both ends of lambda's range the Sinkhorn fit stays finite (log-domain at 1e-3)."""
    f = toy.fit(BIMODAL, divergences=("sinkhorn",), steps=3, reg=reg)
    assert np.isfinite(f.losses).all() and np.isfinite(f.grad_norms).all()
    assert np.isfinite(f.log_probs).all()


@pytest.mark.parametrize("values", [
    dict(n_bins=20, width1=0.05, width2=0.05, lr=0.5, steps=40),
    dict(n_bins=160, student="free", lr=0.5, steps=20),
    dict(n_components=4, student="mixture", k=5, init_width=0.05, lr=0.5, steps=20),
])
def test_widget_extremes_give_finite_numbers(values):
    """The page's extreme values give finite losses, gradients, probabilities and metrics."""
    f = toy.fit_view({**SPEC.defaults, **values})
    m = tm.compute_metrics(f)
    frame = tm.metrics_frame(m)
    assert np.isfinite(f.losses).all() and np.isfinite(f.grad_norms).all()
    assert np.isfinite(frame.drop(columns="divergence").to_numpy(dtype=float)).all()


def test_fit_view_rejects_no_divergence():
    """Unticking every divergence raises ValueError naming the divergences."""
    values = {**SPEC.defaults, **{f"use_{d}": False for d in toy.FIT_DIVERGENCES}}
    with pytest.raises(ValueError, match="divergences"):
        toy.fit_view(values)
    with pytest.raises(ValueError, match="missing 'mean2'"):
        toy.fit_view({k: v for k, v in SPEC.defaults.items() if k != "mean2"})


# --- the fit: same start, stacking, determinism, loss wiring ---------------------------------

def test_same_initialisation_for_every_divergence(small_fit):
    """Every divergence's row starts from the same parameters, those of init_params."""
    start = toy.init_params("mixture", small_fit.x, k=2, init_mean=0.3, init_width=1.0, seed=3)
    for name, rows in small_fit.init_params.items():
        for row in rows:
            np.testing.assert_array_equal(row, start[name].numpy())
    np.testing.assert_array_equal(small_fit.snapshots[0], small_fit.snapshots[0][:1].repeat(7, 0))


def test_stacked_fit_equals_separate_fits():
    """Fitting all divergences in one stacked optimisation equals fitting each alone."""
    together = toy.fit(BIMODAL, steps=15, n_bins=40, init_mean=0.7)
    for d, name in enumerate(together.names):
        alone = toy.fit(BIMODAL, divergences=(name,), steps=15, n_bins=40, init_mean=0.7)
        np.testing.assert_allclose(together.losses[:, d], alone.losses[:, 0], rtol=1e-9,
                                   atol=1e-12)
        np.testing.assert_allclose(together.log_probs[d], alone.log_probs[0], atol=1e-9)


def test_deterministic_given_seed():
    """The same seed gives the same fit; another seed another start."""
    a, b = (toy.fit(BIMODAL, "mixture", steps=5, seed=7) for _ in range(2))
    c = toy.fit(BIMODAL, "mixture", steps=5, seed=8)
    np.testing.assert_array_equal(a.losses, b.losses)
    assert not np.array_equal(a.init_params["means"], c.init_params["means"])


def test_losses_at_start_match_scipy_and_pot(small_fit):
    """Each divergence's loss at step 0 equals scipy's (KL, JS, TVD) or POT's <P_T, C>."""
    f = small_fit
    s, t = f.snapshots[0], f.teacher_probs
    ref = {
        "kl": entropy(t, s[0]), "rkl": entropy(s[0], t), "js": jensenshannon(s[0], t) ** 2,
        "tvd": 0.5 * np.abs(s[0] - t).sum(), "skew_kl": entropy(t, 0.1 * t + 0.9 * s[0]),
        "skew_rkl": entropy(s[0], 0.1 * s[0] + 0.9 * t),
    }
    C = np.abs(f.x[:, None] - f.x[None, :])
    plan = ot.sinkhorn(t, s[0], C.T, f.settings["reg"], numItermax=f.settings["n_iters"],
                       stopThr=0, warn=False).T  # POT scales columns first: transpose
    ref["sinkhorn"] = (plan * C).sum()
    for d, name in enumerate(f.names):
        assert f.losses[0, d] == pytest.approx(ref[name], rel=1e-9), name


def test_gradient_norm_matches_finite_differences():
    """The recorded gradient norm at step 0 equals a central finite difference of KL in numpy."""
    f = toy.fit(BIMODAL, divergences=("kl",), steps=1, init_mean=0.4, init_width=1.3, seed=0)
    x, t = f.x, f.teacher_probs
    mean0 = float(f.init_params["means"][0, 0])

    def kl(mean: float, log_w: float) -> float:
        s = norm.pdf(x, mean, math.exp(log_w))
        return entropy(t, s / s.sum())

    h, lw = 1e-6, math.log(1.3)
    g = [(kl(mean0 + h, lw) - kl(mean0 - h, lw)) / (2 * h),
         (kl(mean0, lw + h) - kl(mean0, lw - h)) / (2 * h)]
    assert f.grad_norms[0, 0] == pytest.approx(math.hypot(*g), rel=1e-6)


# --- metrics against independent computations ---------------------------------------------

def test_w1_matches_scipy(small_fit):
    """W1 on the grid equals scipy.stats.wasserstein_distance with bin masses as weights."""
    m = tm.compute_metrics(small_fit)
    for d in range(len(small_fit.names)):
        ref = wasserstein_distance(small_fit.x, small_fit.x, small_fit.probs[d],
                                   small_fit.teacher_probs)
        assert m.w1[d] == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_final_divergences_match_scipy(small_fit):
    """Final KL, reverse KL and JS equal scipy.stats.entropy / jensenshannon**2."""
    m, t = tm.compute_metrics(small_fit), small_fit.teacher_probs
    for d, s in enumerate(small_fit.probs):
        assert m.kl[d] == pytest.approx(entropy(t, s), rel=1e-9)
        assert m.rkl[d] == pytest.approx(entropy(s, t), rel=1e-9)
        assert m.js[d] == pytest.approx(jensenshannon(s, t) ** 2, rel=1e-7)


def test_mode_and_gap_masses_by_direct_sums(small_fit):
    """Mode masses sum to 1 and equal sums over the midpoint regions; gap bins obey the rule."""
    f, m = small_fit, tm.compute_metrics(small_fit)
    x, t = f.x, f.teacher_probs
    left = x < 0.0  # modes at -2.5 and 2.5: the midpoint is 0
    np.testing.assert_allclose(m.teacher_mode_mass, [t[left].sum(), t[~left].sum()])
    np.testing.assert_allclose(m.mode_mass.sum(1), 1.0, rtol=1e-12)
    gap = (x > -2.5) & (x < 2.5) & (t < 0.05 * t.max())
    np.testing.assert_allclose(m.gap_mass, f.probs[:, gap].sum(1))
    assert m.teacher_gap_mass == pytest.approx(t[gap].sum())


def test_overlapping_and_single_modes():
    """Equal component means share one region; one mode has no gap."""
    centres, labels = tm.mode_regions(toy.grid(20), toy.mixture([1.0, 1.0], [1, 2], [1, 1]))
    assert centres.tolist() == [1.0] and set(labels.tolist()) == {0}
    f = toy.fit(toy.mixture([0.0, 0.2], [1.0, 1.0], [1, 1]), divergences=("kl",), steps=2)
    assert not tm.compute_metrics(f).has_gap


def test_steps_to_convergence_matches_brute_force():
    """Steps to convergence is the first step after which |L - L_final| <= 1% of the change."""
    rng = np.random.default_rng(0)
    losses = np.cumsum(rng.normal(-0.1, 0.3, size=(300, 4)), 0)
    got = tm.steps_to_convergence(losses)
    for d in range(4):
        band = 0.01 * abs(losses[0, d] - losses[-1, d])
        ok = [s for s in range(300) if all(abs(losses[u, d] - losses[-1, d]) <= band
                                           for u in range(s, 300))]
        assert got[d] == ok[0]


# --- figures --------------------------------------------------------------------------------

def test_figures_have_teacher_and_one_trace_per_divergence(small_fit):
    """Fit and animation: teacher + one trace per divergence, colours and names from style."""
    f = small_fit
    for fig in (tf.fit_figure(f), tf.training_animation(f)):
        assert len(fig.data) == 1 + len(f.names)
        assert fig.data[0].name == LABELS["teacher"]
        assert fig.data[0].line.color == COLORS["teacher"]
        for trace, name in zip(fig.data[1:], f.names, strict=True):
            assert trace.line.color == COLORS[name] and trace.name == LABELS[name]
    for fig in (tf.loss_figure(f), tf.grad_figure(f)):
        assert [t.line.color for t in fig.data] == [COLORS[n] for n in f.names]


def test_animation_has_one_frame_per_snapshot(small_fit):
    """The animation has one frame (and slider step) per snapshot, each moving the students."""
    f = small_fit
    fig = tf.training_animation(f)
    assert len(fig.frames) == len(f.snapshot_steps) == f.snapshots.shape[0]
    assert f.snapshot_steps[0] == 0 and f.snapshot_steps[-1] == f.settings["steps"]
    assert len(fig.layout.sliders[0].steps) == len(fig.frames)
    last = fig.frames[-1]
    assert list(last.traces) == list(range(1, len(f.names) + 1))
    np.testing.assert_allclose(last.data[0].y, f.probs[0])


def test_loss_figure_is_normalised_by_step_zero(small_fit):
    """Loss curves start at 1 and carry the raw loss in customdata."""
    fig = tf.loss_figure(small_fit)
    for d, trace in enumerate(fig.data):
        assert trace.y[0] == pytest.approx(1.0)
        np.testing.assert_allclose(trace.customdata, small_fit.losses[:, d])


# --- the presets: each phenomenon its notice names shows in the computed metrics -------------

def test_default_view_is_the_first_preset():
    """The page's defaults are the first preset's values (the page opens on it)."""
    assert next(iter(SPEC.presets.values())).values == SPEC.defaults


def test_mode_averaging_under_kl(preset_fits):
    """Forward KL's single Gaussian puts > 10x the teacher's gap mass (and > 20%) in the gap."""
    _, m = preset_fits["Mode averaging (forward KL)"]
    d = m.row("kl")
    assert m.gap_mass[d] > max(10 * m.teacher_gap_mass, 0.2)
    line = next(s for s in tm.outcomes(m) if s.startswith("**Mode averaging**"))
    assert f"KL (forward) {tm._pct(m.gap_mass[d])}" in line


def test_mode_collapse_under_reverse_kl(preset_fits):
    """Reverse KL puts > 95% on one mode, < 5% on the other (teacher 50/50); Sinkhorn > 40% each."""
    _, m = preset_fits["Mode collapse (reverse KL)"]
    np.testing.assert_allclose(m.teacher_mode_mass, [0.5, 0.5], atol=1e-9)
    rkl = m.mode_mass[m.row("rkl")]
    assert rkl.max() > 0.95 and rkl.min() < 0.05
    assert m.mode_mass[m.row("sinkhorn")].min() > 0.4
    assert tm.collapsed(m, m.row("rkl")) is not None
    assert any(s.startswith("**Mode collapse**") and "reverse KL" in s for s in tm.outcomes(m))


def test_mode_underestimation_under_js(preset_fits):
    """JS gives the small third mode < 10% of the teacher's mass there; forward KL > 50%."""
    _, m = preset_fits["Mode underestimation (JS)"]
    small = int(m.teacher_mode_mass.argmin())
    assert m.teacher_mode_mass[small] == pytest.approx(0.1, abs=0.01)
    assert m.mode_mass[m.row("js"), small] < 0.1 * m.teacher_mode_mass[small]
    assert m.mode_mass[m.row("kl"), small] > 0.5 * m.teacher_mode_mass[small]
    assert small in tm.underweighted(m, m.row("js"))


def test_js_saturates_without_overlap_while_sinkhorn_moves(preset_fits):
    """No overlap: JS starts within 1e-3 of log 2 with |grad| < 1e-6 and never moves; Sinkhorn's
    gradient is large and its student reaches the teacher."""
    f, m = preset_fits["No overlap: JS saturates"]
    js, sk = m.row("js"), m.row("sinkhorn")
    start = f.snapshots[0, js]
    assert jensenshannon(start, f.teacher_probs) ** 2 == pytest.approx(math.log(2), abs=1e-3)
    assert abs(m.loss_start[js] - math.log(2)) < 1e-3
    assert m.grad_start[js] < 1e-6 and np.abs(f.losses[:, js] - math.log(2)).max() < 1e-3
    assert m.grad_start[sk] > 1e-2 and m.grad_start[sk] > 1e6 * m.grad_start[js]
    assert m.w1[js] == pytest.approx(m.w1_start[js], abs=1e-6)
    assert m.w1[sk] < 0.05 * m.w1_start[sk]
    assert js in tm.saturated(m)


def test_flexible_student_sinkhorn_reaches_the_second_mode(preset_fits):
    """Mixture student started on the left mode: Sinkhorn brings > 30% to the right mode, while
    reverse KL and JS leave it under 1%."""
    _, m = preset_fits["Flexible student (2-Gaussian mixture)"]
    right = int(m.centres.argmax())
    assert m.mode_mass[m.row("sinkhorn"), right] > 0.3
    for name in ("rkl", "js"):
        assert m.mode_mass[m.row(name), right] < 0.01


def test_outcome_text_is_derived_from_metrics(preset_fits):
    """The W1 and Sinkhorn sentences quote the computed numbers and the computed ranking."""
    for _, m in preset_fits.values():
        lines = tm.outcomes(m)
        best = int(np.argmin(m.w1))
        closest = next(s for s in lines if s.startswith("**Closest"))
        assert f"{LABELS[m.names[best]]} (W1 = {m.w1[best]:.3f})" in closest
        sk = next(s for s in lines if s.startswith("**Sinkhorn**"))
        assert f"{m.w1[m.row('sinkhorn')]:.3f}" in sk
        sk_w1, best_w1 = m.w1[m.row("sinkhorn")], m.w1[best]
        assert ("not** the closest" in sk) == (sk_w1 > best_w1 * (1 + tm.TIE_REL))


def test_float64_fit_uses_one_thread_and_restores():
    """A fit runs torch single-threaded and restores the caller's thread count."""
    before = torch.get_num_threads()
    toy.fit(BIMODAL, divergences=("kl",), steps=1)
    assert torch.get_num_threads() == before
