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

from sinkd.lab import toy, toy_text
from sinkd.lab import toy_figures as tf
from sinkd.lab import toy_metrics as tm
from sinkd.lab.divergence_lab_spec import SPEC
from sinkd.lab.style import COLORS, DASHES, LABELS, OKABE_ITO
from sinkd.lab.toy_losses import debiased_sinkhorn, w1_loss

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
    """At both ends of lambda's range the Sinkhorn fits stay finite (log-domain at 1e-3)."""
    f = toy.fit(BIMODAL, divergences=("sinkhorn", "sinkhorn_debiased"), steps=3, reg=reg)
    assert np.isfinite(f.losses).all() and np.isfinite(f.grad_norms).all()
    assert np.isfinite(f.log_probs).all()


@pytest.mark.parametrize("values", [
    dict(n_bins=20, width1=0.05, width2=0.05, lr=0.5, steps=40),
    dict(n_bins=160, student="free", lr=0.5, steps=20),
    dict(n_components=4, student="mixture", k=5, init_width=0.05, lr=0.5, steps=20),
    # lambda = 0.01 (log domain) with the student far from the teacher: the stabilised log
    # path's unrolled gradient was NaN here (step 65); the fits' plain log-sum-exp is finite
    dict(n_components=1, mean1=3.0, width1=0.3, init_mean=-3.0, init_width=0.3, reg=0.01,
         **{f"use_{d}": d in toy.OT_DIVERGENCES for d in toy.FIT_DIVERGENCES}),
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
    D = len(small_fit.names)
    np.testing.assert_array_equal(small_fit.snapshots[0], small_fit.snapshots[0][:1].repeat(D, 0))


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

    def cost_after_t(a, b):  # <P_T, C> after T rows-then-columns scalings; POT scales columns first
        plan = ot.sinkhorn(b, a, C.T, f.settings["reg"], numItermax=f.settings["n_iters"],
                           stopThr=0, warn=False).T
        return (plan * C).sum()

    ref["sinkhorn"] = cost_after_t(s[0], t)
    ref["sinkhorn_debiased"] = (cost_after_t(s[0], t) - cost_after_t(s[0], s[0]) / 2
                                - cost_after_t(t, t) / 2)
    ref["w1"] = ot.emd2(s[0], t, C)
    assert set(ref) == set(f.names)
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

def _panels_of(fig) -> dict[str, list]:
    """The traces of a figure grouped by the x axis (panel) they are drawn on."""
    panels: dict[str, list] = {}
    for trace in fig.data:
        panels.setdefault(trace.xaxis or "x", []).append(trace)
    return panels


@pytest.mark.parametrize("names", [toy.FIT_DIVERGENCES, ("sinkhorn",), ("kl", "js", "w1", "tvd")])
def test_one_panel_per_divergence_with_the_teacher_in_each(names):
    """Fit figure and animation: one panel (own axes) per fitted divergence, in fit order; in
    each the shaded teacher and that divergence's student, coloured, dashed and named by style;
    every panel's title names the divergence and its headline numbers (mass per mode, gap, W1
    recomputed here by direct sums)."""
    f = toy.fit(BIMODAL, divergences=names, steps=8, n_bins=40, init_mean=0.4)
    m = tm.compute_metrics(f)
    for fig, students in ((tf.fit_figure(f), f.probs), (tf.training_animation(f), f.snapshots[0])):
        panels = list(_panels_of(fig).values())
        assert len(panels) == len(names)
        titles = [a.text for a in fig.layout.annotations]
        assert len(titles) == len(names)
        for d, (name, traces, title) in enumerate(zip(names, panels, titles, strict=True)):
            teacher, student = traces
            assert teacher.name == LABELS["teacher"] and teacher.fill == "tozeroy"
            np.testing.assert_array_equal(teacher.y, f.teacher_probs)
            assert student.name == LABELS[name]
            assert (student.line.color, student.line.dash) == (COLORS[name], DASHES[name])
            np.testing.assert_array_equal(student.y, students[d])
            assert title.startswith(f"<b>{LABELS[name]}</b>")
            w1 = np.abs(np.cumsum(f.probs[d]) - np.cumsum(f.teacher_probs)).sum() * f.dx
            left = f.probs[d][f.x < 0].sum()
            assert f"W1 {w1:.2f}" in title and f"modes {tm.mass_pct(left)}" in title
            assert tm.headline(m, d) in title
    fig = tf.fit_figure(f)  # shared axes: every panel shows the same x and y ranges
    ranges = {(tuple(ax.range), tuple(ay.range)) for ax, ay in zip(
        [fig.layout[k] for k in fig.layout if k.startswith("xaxis")],
        [fig.layout[k] for k in fig.layout if k.startswith("yaxis")], strict=True)}
    assert len(ranges) == 1


def test_palette_is_colour_blind_safe_with_distinct_dashes():
    """Every colour is Okabe-Ito or a neutral grey (no red/green pair of the old palette); the
    lab's divergences each have their own dash; no two entries share both colour and dash."""
    for name, colour in COLORS.items():
        r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
        assert colour.upper() in OKABE_ITO or r == g == b, name
    assert not {"#d62728", "#2ca02c"} & {c.lower() for c in COLORS.values()}
    fitted = [DASHES[d] for d in toy.FIT_DIVERGENCES]
    assert len(set(fitted)) == len(fitted)
    pairs = [(COLORS[k], DASHES[k]) for k in COLORS if k != "teacher"]
    assert len(set(pairs)) == len(pairs)
    assert set(COLORS) == set(DASHES) == set(LABELS)


def test_figures_are_readable_on_a_projector(small_fit):
    """Tick labels of every toy figure are >= 14 px; the subplot titles >= 14 px."""
    for fig in (tf.fit_figure(small_fit), tf.training_animation(small_fit),
                tf.loss_figure(small_fit), tf.grad_figure(small_fit)):
        axes = [fig.layout[k] for k in fig.layout if k[:5] in ("xaxis", "yaxis")]
        assert axes and all(ax.tickfont.size >= 14 for ax in axes)
    assert all(a.font.size >= 14 for a in tf.fit_figure(small_fit).layout.annotations)


def test_loss_and_gradient_figures_use_the_style(small_fit):
    """Loss and gradient curves: one per divergence with its colour and dash."""
    f = small_fit
    for fig in (tf.loss_figure(f), tf.grad_figure(f)):
        assert [(t.line.color, t.line.dash) for t in fig.data] == [
            (COLORS[n], DASHES[n]) for n in f.names]


def test_animation_has_one_frame_per_snapshot(small_fit):
    """The animation has one frame (and slider step) per snapshot; each frame moves only the
    students (traces 1, 3, 5, ...), the teachers stay."""
    f = small_fit
    fig = tf.training_animation(f)
    assert len(fig.frames) == len(f.snapshot_steps) == f.snapshots.shape[0]
    assert f.snapshot_steps[0] == 0 and f.snapshot_steps[-1] == f.settings["steps"]
    assert len(fig.layout.sliders[0].steps) == len(fig.frames)
    last = fig.frames[-1]
    assert list(last.traces) == [2 * d + 1 for d in range(len(f.names))]
    for d, trace in enumerate(last.data):
        np.testing.assert_allclose(trace.y, f.probs[d])


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
    assert f"KL (forward) {tm.mass_pct(m.gap_mass[d])}" in line


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


# --- exact OT and the debiased Sinkhorn divergence --------------------------------------------

def _random_masses(rng: np.random.Generator, n: int) -> np.ndarray:
    p = rng.random(n) ** 3  # uneven, some tiny
    return p / p.sum()


@pytest.mark.parametrize("n, seed", [(7, 0), (40, 1), (120, 2)])
def test_w1_loss_equals_pot_exact_ot(n, seed):
    """The exact-OT loss sum |F_s - F_t| dx on the grid equals POT's network-simplex ot.emd2 with
    cost |x_i - x_j| and ot.wasserstein_1d (float64, rel 1e-12)."""
    rng = np.random.default_rng(seed)
    x = toy.grid(n)
    s, t = _random_masses(rng, n), _random_masses(rng, n)
    got = float(w1_loss(torch.tensor(s).log(), torch.tensor(t), float(x[1] - x[0])))
    C = np.abs(x[:, None] - x[None, :])
    assert got == pytest.approx(ot.emd2(s, t, C, numItermax=10**7), rel=1e-12)
    assert got == pytest.approx(ot.wasserstein_1d(x, x, s, t), rel=1e-12)


def test_w1_loss_gradient_matches_finite_differences():
    """d W1 / d logits by autograd equals a central finite difference of the numpy formula."""
    rng = np.random.default_rng(3)
    x, t = toy.grid(12), _random_masses(rng, 12)
    logits = torch.tensor(rng.normal(size=12), requires_grad=True)
    w1_loss(torch.log_softmax(logits, -1), torch.tensor(t), float(x[1] - x[0])).backward()

    def w1_np(z: np.ndarray) -> float:
        p = np.exp(z - z.max())
        return np.abs(np.cumsum(p / p.sum()) - np.cumsum(t)).sum() * (x[1] - x[0])

    z, h = logits.detach().numpy(), 1e-6
    fd = [(w1_np(z + h * e) - w1_np(z - h * e)) / (2 * h) for e in np.eye(12)]
    np.testing.assert_allclose(logits.grad.numpy(), fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("reg", [0.1, 0.5, 2.0])
def test_debiased_sinkhorn_equals_pot_at_convergence(reg):
    """At large T the debiased divergence W(s,t) - W(s,s)/2 - W(t,t)/2 equals the same built from
    POT's converged ot.sinkhorn2 (which returns <P, C>), rel 1e-9."""
    x = toy.grid(30)
    s = toy.discretise(toy.mixture([0.3, 3.0], [1.2, 0.4], [3.0, 1.0]), x)
    t = toy.discretise(BIMODAL, x)
    C = np.abs(x[:, None] - x[None, :])

    def w(a, b):
        return ot.sinkhorn2(a, b, C, reg, numItermax=200_000, stopThr=1e-15)

    ref = w(s, t) - w(s, s) / 2 - w(t, t) / 2
    got = float(debiased_sinkhorn(torch.tensor(s), torch.tensor(t), torch.tensor(C), reg, 5000))
    assert got == pytest.approx(ref, rel=1e-9)
    assert got > 0


@pytest.mark.parametrize("reg, T", [(0.01, 3), (0.1, 20), (5.0, 1)])
def test_debiased_sinkhorn_is_zero_at_the_teacher(reg, T):
    """S(t, t) = 0 for any lambda and T (the plain Sinkhorn cost W(t, t) is not: it is > 0)."""
    x = toy.grid(50)
    t = torch.tensor(toy.discretise(BIMODAL, x))
    C = torch.tensor(np.abs(x[:, None] - x[None, :]))
    assert abs(float(debiased_sinkhorn(t, t, C, reg, T))) < 1e-14
    Cn, tn = C.numpy(), t.numpy()
    plan = ot.sinkhorn(tn, tn, Cn, reg, numItermax=T, stopThr=0, warn=False,
                       method="sinkhorn_log")
    assert (plan * Cn).sum() > 0


# --- the text: what this shows about SinKD, and the lambda sentence ----------------------------

def _pot_plan(a: np.ndarray, b: np.ndarray, C: np.ndarray, reg: float, T: int) -> np.ndarray:
    """The plan after T rows-then-columns scalings, by POT (which scales columns first)."""
    return ot.sinkhorn(b, a, C.T, reg, numItermax=T, stopThr=0, warn=False,
                       method="sinkhorn_log").T


def test_sinkd_box_states_the_scope():
    """The box always says what the lab transports (ordered bins, |x_i - x_j|), what SinKD
    transports (N student onto N teacher predictions, batch-wise) and that per-sample transport
    over unordered classes is total variation."""
    f = toy.fit(BIMODAL, divergences=("kl",), steps=2)
    lines = toy_text.sinkd_lines(f, tm.compute_metrics(f))
    assert lines == [toy_text.SCOPE]
    for words in ("*ordered* bins", "|x_i − x_j|", "N student predictions", "batch-wise",
                  "1 − I", "total variation"):
        assert words in toy_text.SCOPE


def test_sinkd_box_numbers_are_independent_computations(preset_fits):
    """Per preset: Sinkhorn's averaging / underestimation / rank lines appear exactly when the
    direct sums say so; the entropic self-cost W_T(t, t) and the plan's row error after T
    scalings equal POT's (rel 1e-6); 'Unconverged plan' appears exactly when that error > 1e-3."""
    for f, m in preset_fits.values():
        text = "\n".join(toy_text.sinkd_lines(f, m))
        s = f.names.index("sinkhorn")
        x, t, p = f.x, f.teacher_probs, f.probs[s]
        centres = np.unique(f.teacher.means)
        gap = (x > centres.min()) & (x < centres.max()) & (t < 0.05 * t.max())
        averages = gap.any() and p[gap].sum() >= max(3 * t[gap].sum(), t[gap].sum() + 0.05)
        assert ("Sinkhorn **averages**" in text) == bool(averages)
        w1 = np.array([wasserstein_distance(x, x, q, t) for q in f.probs])
        loses = w1[s] > w1.min() * (1 + tm.TIE_REL)
        assert ("Sinkhorn **loses**" in text) == bool(loses)
        C = np.abs(x[:, None] - x[None, :])
        reg, T = f.settings["reg"], f.settings["n_iters"]
        self_cost = (_pot_plan(t, t, C, reg, T) * C).sum()
        err = np.abs(_pot_plan(p / p.sum(), t, C, reg, T).sum(1) - p / p.sum()).sum()
        got_err, got_self = toy_text.plan_diagnostics(f, s)
        assert got_self == pytest.approx(self_cost, rel=1e-6)
        assert got_err == pytest.approx(err, rel=1e-6, abs=1e-12)
        assert f"W_λ(t, t) = {self_cost:.3g}" in text
        assert ("**Unconverged plan**" in text) == (err > toy_text.UNCONVERGED)


def _shape(f: toy.ToyFit, name: str) -> tuple[float, float, float]:
    """Peak bin mass, standard deviation (x units) and gap mass of one student, by direct sums."""
    p, x, t = f.probs[f.names.index(name)], f.x, f.teacher_probs
    mean = (p * x).sum()
    gap = (x > -2.5) & (x < 2.5) & (t < 0.05 * t.max())
    return p.max(), math.sqrt((p * (x - mean) ** 2).sum()), p[gap].sum()


def test_lambda_sentence_holds_raising_lambda_sharpens_sinkhorn():
    """What the page says about raising lambda, measured on the page's default setting (two
    modes, single-Gaussian student) at lambda = 0.1 and 5: Sinkhorn's student gets taller (peak
    x 1.3), narrower (std x 0.8) and puts more mass in the gap (+ 10 points) -- it does not blur;
    the debiased divergence's student stays within 5% of exact OT's in std and W1."""
    assert "narrower and taller" in toy_text.LAMBDA_NOTE and "does **not** blur" in (
        toy_text.LAMBDA_NOTE)
    assert 0.1 in SPEC.limits["reg"] and 5.0 in SPEC.limits["reg"]
    names = {f"use_{d}": d in toy.OT_DIVERGENCES for d in toy.FIT_DIVERGENCES}
    small, large = (toy.fit_view({**SPEC.defaults, **BIMODAL_VALUES, **names, "reg": reg,
                                  "student": "gaussian"}) for reg in (0.1, 5.0))
    peak0, std0, gap0 = _shape(small, "sinkhorn")
    peak5, std5, gap5 = _shape(large, "sinkhorn")
    assert peak5 > 1.3 * peak0 and std5 < 0.8 * std0 and gap5 > gap0 + 0.1
    _, std_deb, _ = _shape(large, "sinkhorn_debiased")
    _, std_ot, _ = _shape(large, "w1")
    assert std_deb == pytest.approx(std_ot, rel=0.05)
    w1 = [wasserstein_distance(large.x, large.x, q, large.teacher_probs) for q in large.probs]
    names_l = list(large.names)
    assert w1[names_l.index("sinkhorn_debiased")] == pytest.approx(w1[names_l.index("w1")],
                                                                   rel=0.05)
    assert w1[names_l.index("sinkhorn")] > 1.1 * w1[names_l.index("w1")]


BIMODAL_VALUES = dict(n_components=2, mean1=-2.5, mean2=2.5, width1=0.5, width2=0.5,
                      weight1=1.0, weight2=1.0)


def test_summary_table_is_short_and_quotes_the_metrics(small_fit):
    """The table the page shows first has at most 6 columns, one row per divergence, and its
    W1 column quotes W1 recomputed here by scipy."""
    frame = tm.summary_frame(tm.compute_metrics(small_fit))
    assert len(frame.columns) <= 6 and len(frame) == len(small_fit.names)
    for d, cell in enumerate(frame["W1 start → end"]):
        ref = wasserstein_distance(small_fit.x, small_fit.x, small_fit.probs[d],
                                   small_fit.teacher_probs)
        assert cell.endswith(f"→ {ref:.3f}")
