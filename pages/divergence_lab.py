"""Divergence lab: what each divergence does to a too-simple student, on a 1-D toy."""

import streamlit as st

import shell
from sinkd.lab import apart, robustness, toy, toy_figures, toy_metrics, toy_text
from sinkd.lab.divergence_lab_spec import SPEC
from sinkd.lab.style import LABELS

view = shell.page("divergence_lab", SPEC)
lim = view.spec.limits
preset_name = view.header("Divergence lab")
preset = SPEC.presets[preset_name]
on_preset = view.matches(preset)
LINE = ("One student per divergence, same start, teacher shaded; x is an ordered class "
        "(bin).")
if on_preset and preset.question:
    st.markdown(f"{LINE} **Predict first:** {preset.question}")
else:
    st.markdown(f"{LINE} Your own setting: the values differ from *{preset_name}* (choose it "
                "again to restore it and its question).")


@st.cache_data(show_spinner="Fitting one student per divergence…", max_entries=32)
def fit_cached(items: tuple) -> toy.ToyFit:
    """The fit of the page's values (a sorted tuple of items, hashable)."""
    return apart.run_apart(toy.fit_view, dict(items))  # off the server's GIL: see apart


def results(fit: toy.ToyFit, metrics: toy_metrics.ToyMetrics) -> None:
    """The first figure, the question's reveal, what happened and what it shows about SinKD."""
    shell.show_figure(toy_figures.fit_figure(fit), "divlab_fit")
    reveal_key = view.key(f"reveal_{list(SPEC.presets).index(preset_name)}")
    if on_preset and st.toggle("Reveal the answer", key=reveal_key):
        st.success(f"**Answer:** {preset.notice}")
        held = [(claim.holds(metrics, d), claim.sentence) for d, claim in preset.claims.items()
                if d in fit.names]
        if held:
            st.markdown("**Evidence, checked on this run:**\n" + "\n".join(
                f"- {'✅ holds' if ok else '❌ does not hold'}: {sentence}"
                for ok, sentence in held))
    if not on_preset or st.session_state.get(reveal_key):
        st.markdown("**What happened** (computed from the fits)\n" + "\n".join(
            f"- {line}" for line in toy_metrics.outcomes(metrics)))
    s = fit.settings
    st.caption(
        f"{len(fit.names)} runs, one per divergence, from the same starting parameters; "
        f"deterministic given seed {s['seed']} (it draws the start's jitter). Adam, learning "
        f"rate {s['lr']:g}, {s['steps']} steps; Sinkhorn λ = {s['reg']:g}, T = {s['n_iters']}, "
        f"gradient unrolled through the T iterations; {s['n_bins']} bins on [{s['lo']:g}, "
        f"{s['hi']:g}]. Fitted in {fit.seconds:.2f} s."
    )
    with st.container(border=True):
        st.markdown("#### What this shows about SinKD")
        st.markdown("\n".join(f"- {line}" for line in toy_text.sinkd_lines(fit, metrics)))


try:  # not shell.guard: the settings below must still be drawn, to fix a bad value
    fit = fit_cached(tuple(sorted(view.values().items())))
except ValueError as err:
    fit = None
    st.error(f"Cannot compute this view: {err}")
if fit is not None:
    metrics = toy_metrics.compute_metrics(fit)
    results(fit, metrics)

st.subheader("Settings")
with st.expander("Teacher: a mixture of 1 to 4 Gaussians", key="divlab_settings_teacher"):
    st.slider("Components", *lim["n_components"], key=view.key("n_components"))
    for i, col in enumerate(st.columns(toy.MAX_COMPONENTS), 1):
        off = i > view["n_components"]
        col.number_input(f"mean {i}", *lim[f"mean{i}"], step=0.1, key=view.key(f"mean{i}"),
                         disabled=off)
        col.number_input(f"width {i}", *lim[f"width{i}"], step=0.05, key=view.key(f"width{i}"),
                         disabled=off)
        col.number_input(f"weight {i}", *lim[f"weight{i}"], step=0.05,
                         key=view.key(f"weight{i}"), disabled=off)

with st.expander("Student, start, training and Sinkhorn", key="divlab_settings_student"):
    c1, c2, c3, c4 = st.columns(4)
    c1.selectbox("Student family", lim["student"], key=view.key("student"),
                 format_func={"gaussian": "single Gaussian", "mixture": "mixture of k Gaussians",
                              "free": "free logits over the bins"}.get)
    c1.slider("k (mixture components)", *lim["k"], key=view.key("k"),
              disabled=view["student"] != "mixture")
    c2.slider("start: mean", *lim["init_mean"], step=0.1, key=view.key("init_mean"))
    c2.slider("start: width", *lim["init_width"], step=0.05, key=view.key("init_width"))
    c3.slider("Adam steps", *lim["steps"], step=10, key=view.key("steps"))
    c3.number_input("learning rate", *lim["lr"], step=0.01, format="%.3f", key=view.key("lr"))
    c3.number_input("seed", *lim["seed"], step=1, key=view.key("seed"))
    shell.lambda_slider(view, "reg", where=c4, help="Sinkhorn's entropic weight, in units of x")
    c4.slider("Sinkhorn iterations T", *lim["n_iters"], key=view.key("n_iters"))
    c4.slider("bins", *lim["n_bins"], step=4, key=view.key("n_bins"))

with st.expander("Divergences to fit (one panel each)", key="divlab_settings_divergences"):
    boxes = st.columns(3)
    for i, name in enumerate(toy.FIT_DIVERGENCES):
        boxes[i % 3].checkbox(LABELS[name], key=view.key(f"use_{name}"))

view.reset_button()
view.sync_url()
if fit is None:
    st.stop()

st.subheader("Training")
# Drawn only while open: the animation is ~10x the bytes of the other figures together.
playback = st.expander("Play the training, step by step", key="divlab_animation",
                       on_change="rerun")
if playback.open:
    with playback:
        shell.show_figure(toy_figures.training_animation(fit), "divlab_training")
        st.caption("Every student starts from the same parameters: at step 0 all panels show "
                   "the same curve.")
left, right = st.columns(2)
with left:
    shell.show_figure(toy_figures.loss_figure(fit), "divlab_losses")
with right:
    shell.show_figure(toy_figures.grad_figure(fit), "divlab_gradients")

# robustness section (see sinkd.lab.robustness)
ROBUST_SEEDS = 8
st.subheader("Robustness: does the preset's outcome survive other runs?")


runs = ROBUST_SEEDS * len(robustness.BUDGETS) * 2
# kept in the session, not st.cache_data: a cached function may not drive the progress bar
checked = st.session_state.setdefault("divlab_robustness_runs", {})
if not (on_preset and preset.claims):
    st.caption("The check runs a preset's own setting: choose a preset to check it.")
elif preset_name in checked or st.button(f"Check robustness over {runs} runs",
                                         key="divlab_robustness_button"):
    if preset_name not in checked:
        bar = st.progress(0.0, text=f"Fitting the grid of {runs} runs…")
        checked[preset_name] = robustness.preset_counts(
            preset_name, seeds=ROBUST_SEEDS, on_progress=lambda done, total: bar.progress(
                done / total, text=f"Fitting the grid of {runs} runs: step {done} of {total}"))
        bar.empty()
    counts, grid = checked[preset_name]
    shell.show_figure(robustness.counts_figure(counts), "divlab_robustness")
    st.caption(
        f"{runs} runs of the claimed divergences: seeds 0–{ROBUST_SEEDS - 1} (the start's "
        f"jitter), {', '.join(map(str, grid.budgets))} steps (half, as set, 4x) and learning "
        f"rates {' and '.join(f'{r:g}' for r in grid.lrs)} (as set, ×{robustness.LR_FACTOR:g}). "
        f"Fitted in {grid.seconds:.1f} s. `python -m sinkd toy --preset '{preset_name}' "
        "--seeds 8` prints the same counts.")
    shell.show_figure(robustness.w1_steps_figure(grid), "divlab_w1_steps")
    st.caption("Which student ends closest to the teacher depends on how long it trains: W1 "
               "at every step of the longest runs (median over the seeds, band: their range).")
else:
    st.caption(f"Fits the preset's claimed divergences {runs} times (about 10 s) and counts in "
               "how many runs each claim held.")

st.subheader("Metrics of the fitted students")
table = toy_metrics.metrics_frame(metrics)
# st.table: a static table draws in a fraction of an interactive grid's time on every rerun.
st.table(toy_metrics.summary_frame(metrics), hide_index=True)
every_metric = st.expander("Every metric (the downloadable table)", key="divlab_every_metric",
                           on_change="rerun")
if every_metric.open:
    with every_metric:
        st.dataframe(table, hide_index=True)
st.caption(
    "Mode regions: the bins closest to each teacher component's mean. Gap: bins between the "
    f"outer modes where the teacher has under {toy_metrics.GAP_FRACTION:.0%} of its peak bin "
    "mass. W1 = Σ|CDF_student − CDF_teacher|·Δx (exact in 1-D). Steps to convergence: the first "
    "step after which the loss stays within 1% of its total change (final − start)."
)
shell.download_numbers(table, "divergence_lab_metrics", key=view.key("download"))

with st.expander("The divergences, in formulas"):
    st.latex(
        r"\mathrm{KL}(t\|s)=\sum_i t_i\log\frac{t_i}{s_i},\qquad "
        r"\mathrm{KL}(s\|t)=\sum_i s_i\log\frac{s_i}{t_i},\qquad "
        r"\mathrm{JS}=\tfrac12\mathrm{KL}(t\|m)+\tfrac12\mathrm{KL}(s\|m)\le\log 2,\;"
        r"m=\tfrac{s+t}{2}"
    )
    st.latex(
        r"W_\lambda(s,t)=\langle P_T, C\rangle,\quad C_{ij}=|x_i-x_j|,\quad "
        r"P_T=T\text{ Sinkhorn scalings of }e^{-C/\lambda}\text{ to marginals } s, t"
    )
    st.latex(
        r"S_\lambda=W_\lambda(s,t)-\tfrac12 W_\lambda(s,s)-\tfrac12 W_\lambda(t,t)"
        r"\quad\text{(debiased)},\qquad "
        r"W_1(s,t)=\sum_i |F_s(x_i)-F_t(x_i)|\,\Delta x\quad(\lambda\to 0)"
    )

shell.lesson(
    why="Each divergence weighs errors differently. Forward KL punishes missing mass "
    "(t_i log t_i/s_i blows up where s_i → 0), so a too-simple student spreads over every mode "
    "and the gap between them. Reverse KL punishes mass where the teacher has none, so the "
    "student hides inside one mode. JS and TVD are bounded: once the supports barely overlap "
    "they sit at their ceiling (log 2, 1) and their gradient is numerically zero. Transport "
    "costs grow with the distance mass must travel, so their gradient points the student "
    "towards the teacher from anywhere. Sinkhorn's entropic blur λ makes its loss positive even "
    "at a perfect match (the debiased divergence subtracts that); exact OT (W1) is the λ → 0 "
    "limit. Adam rescales every gradient, so a small one (1e-5) still moves a student; one "
    "below Adam's ε = 1e-8 does not.",
    what_to_try="Switch presets and predict before you reveal. In *No overlap*, move the start "
    f"closer until JS wakes up. {toy_text.LAMBDA_NOTE} Lower T to 1–3 and see how much an "
    "unconverged plan still teaches. Give the student more components (k) and see which "
    "divergences use them.",
)
