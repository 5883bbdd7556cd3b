"""What SinKD matches: a batch's cloud of predictions on the simplex, one student per loss."""

import streamlit as st

import shell
from sinkd.lab import batchwise, batchwise_figures
from sinkd.lab.batchwise_spec import SPEC
from sinkd.lab.batchwise_toy import STARTS, TEACHERS
from sinkd.lab.robustness import counts_figure
from sinkd.lab.style import LABELS

view = shell.page("batchwise", SPEC)
lim = view.spec.limits
TEACHER_NAMES = dict(zip(TEACHERS, ("linear (a linear student can copy it)",
                                    "six arcs (two opposite arcs per class)"), strict=True))
START_NAMES = dict(zip(STARTS, ("near the centre (small random weights)",
                                "every label moved to the next class"), strict=True))


@st.cache_data(show_spinner="Training one student per loss…", max_entries=32)
def fit_cached(items: tuple) -> batchwise.BatchFit:
    """The fit of the page's values (a sorted tuple of items, hashable)."""
    return batchwise.fit_view(dict(items))


@st.cache_data(show_spinner=False, max_entries=8)
def robustness_cached(preset: str, _progress=None) -> dict:
    """A preset's robustness counts (the progress callback is not part of the cache key)."""
    return batchwise.robustness(preset, on_progress=_progress)


# The figure first (at 1280x720 in projector mode too): title and preset share a row, and the
# first figure is one row of panels (per-sample KL against SinKD's term alone and in the
# recipe); the other three students follow below it.
FIRST_PANELS = ("kl", "sinkd", "recipe")
OTHER_PANELS = ("rkl", "js", "class_ot")
preset_name = view.header("What SinKD matches")
preset = SPEC.presets[preset_name]
on_preset = view.matches(preset)

with shell.guard():
    fit = fit_cached(tuple(sorted(view.values().items())))
shell.show_figure(batchwise_figures.cloud_figure(fit, FIRST_PANELS), "batchwise_clouds")
st.markdown("SinKD matches the batch's **cloud** of predictions to the teacher's, not each "
            "prediction to its own input's: six linear students, one per loss (the other three "
            "below).")
if on_preset:
    st.markdown(f"**Predict first:** {preset.question}")

shell.show_figure(batchwise_figures.cloud_figure(fit, OTHER_PANELS), "batchwise_clouds_more")

reveal_key = view.key(f"revealed_{preset_name}")
if on_preset:
    if st.button("Reveal the answer", key=view.key("reveal")):
        st.session_state[reveal_key] = True
    if st.session_state.get(reveal_key):
        st.info(f"**What to notice:** {preset.notice}")
        st.markdown("\n".join(f"- {line}" for line in batchwise.reveal(fit, preset_name)))
else:
    st.caption(f"The values differ from the preset *{preset_name}*: choose it again to restore "
               "them and its question.")

# keyed: an expander keeps its open state when the preset's question above it comes or goes
with st.expander("Batch, teacher and start", key="open_batchwise_batch"):
    c1, c2 = st.columns(2)
    c1.radio("Teacher", lim["teacher"], key=view.key("teacher"), format_func=TEACHER_NAMES.get)
    c1.radio("Start of every student", lim["start"], key=view.key("start"),
             format_func=START_NAMES.get)
    c2.slider("N (batch size)", *lim["n"], key=view.key("n"))
    c2.slider("share of uncertain inputs (between two clusters)", *lim["uncertain"], step=0.05,
              key=view.key("uncertain"))
    c2.number_input("seed (batch and start)", *lim["seed"], step=1, key=view.key("seed"))
with st.expander("Training and SinKD's term", key="open_batchwise_training"):
    c1, c2 = st.columns(2)
    c1.slider("Adam steps", *lim["steps"], step=10, key=view.key("steps"))
    c1.number_input("learning rate", *lim["lr"], step=0.01, format="%.3f", key=view.key("lr"))
    c1.select_slider("β: the recipe's weight of the SinKD term (reference 0.8)",
                     options=lim["beta"], key=view.key("beta"), format_func=lambda b: f"{b:g}")
    shell.lambda_slider(view, "lam", where=c2)
    c2.slider("T (Sinkhorn iterations)", *lim["n_iters"], key=view.key("n_iters"))
    c2.slider("τ (SinKD's softmax temperature)", *lim["tau"], step=0.5, key=view.key("tau"))
view.reset_button()
view.sync_url()

s = fit.settings
st.caption(
    f"{len(fit.students)} students z = Wx + b (W 3 × 2), the same start, Adam lr {s['lr']:g}, "
    f"{s['steps']} steps; N = {s['n']}, seed {s['seed']} (draws the batch and the start). "
    f"Per-sample KL, reverse KL and JS at temperature 1; per-sample OT over cost 1 − I with "
    f"λ = {fit.options.reg:g}, T = {fit.options.n_iters} at temperature 1; SinKD's term "
    f"10⁻³⟨P_T, D⟩ with λ = {fit.options.reg:g}, T = {fit.options.n_iters}, τ = "
    f"{fit.options.tau:g}, gradients unrolled; the recipe is α = 1 (no cross-entropy, as the "
    f"reference's MRPC and QQP settings): KD soft cross-entropy at T = 1 plus β = "
    f"{fit.options.beta:g} times SinKD's term. Trained in {fit.seconds:.2f} s.")

st.subheader("What this shows about SinKD (computed from the numbers below)")
st.markdown("\n".join(f"- {line}" for line in batchwise.outcomes(fit)))

st.subheader("The numbers")
left, right = st.columns([3, 2])
with left:
    shell.show_figure(batchwise_figures.metrics_figure(fit), "batchwise_metrics")
with right:
    shell.show_figure(batchwise_figures.plan_figure(fit), "batchwise_plan")
table = batchwise.metrics_frame(fit)
# st.table: a static table draws in a fraction of an interactive grid's time on every rerun.
st.table(table.style.format("{:.3f}", subset=[c for c in table.columns if c != "student"]),
         hide_index=True)
st.caption(
    "All at temperature 1, against the same batch's teacher. **Paired L1** = mean over samples "
    "of ‖sᵢ − tᵢ‖₁ (2 × the mean total variation): sample by sample. **Cloud OT** = exact "
    "optimal transport (POT's ot.emd2) between the two N-point clouds, masses 1/N, L1 cost: "
    "the clouds, pairs ignored; the identity pairing is one plan, so cloud OT ≤ paired L1. "
    "**Accuracy**: argmax of the student = the teacher's label. **Confidence**: mean largest "
    "probability. **Own-pair mass**: the share of SinKD's plan (at the page's λ, T, τ) on the "
    "diagonal, from each student's prediction to its own input's teacher prediction.")
shell.download_numbers(table, "batchwise_metrics", key=view.key("download"))

st.subheader("Does it hold beyond this run?")
st.markdown(
    f"The claims of *{preset_name}*, tested over seeds 0–7, step budgets half, as set and 4×, "
    "and learning rates as set and 2.5× (48 runs per student, the preset's own values).")
counts_key = view.key(f"counts_{preset_name}")
if st.button("Count the runs", key=view.key("robustness")):
    bar = st.progress(0.0, text="Training 48 runs per student…")
    with shell.guard():
        st.session_state[counts_key] = robustness_cached(
            preset_name, lambda done, total: bar.progress(done / total))
    bar.empty()
counts = st.session_state.get(counts_key)
if counts is not None:
    shell.show_figure(counts_figure(counts), "batchwise_counts")
    st.markdown("\n".join(f"- **{LABELS[s]}** {c['claim']}: held in {c['held']} of "
                          f"{c['runs']} runs" for s, c in counts.items()))
else:
    st.caption("Press the button to train every student over the grid (about 10 s).")

st.subheader("How this differs from the divergence lab")
st.markdown(
    "In the divergence lab, Sinkhorn moves mass between the **ordered bins** of one "
    "distribution, with cost |xᵢ − xⱼ|: nearby bins are cheap, so it has a geometry to "
    "exploit. Here, as in SinKD, the points transported are the **samples of a batch**, with "
    "the L1 distance between their probability vectors as cost. Over one sample's *unordered* "
    "classes the only cost is 1 − I, and exact OT then equals the total variation, which "
    "saturates like it: SinKD's gain is not per-sample transport but matching the batch's "
    "cloud, which says nothing about which prediction belongs to which input.")
st.page_link("pages/divergence_lab.py", label="Open the divergence lab (1-D, ordered bins)",
             icon="⛰️")
st.markdown(
    "**What this toy does not show.** Each student here sees one fixed batch of N inputs; in "
    "training every step brings a new batch (16 or 32 samples in the reference scripts), so "
    "the cloud SinKD matches is that small sample. The students are linear and the teacher is "
    "made up, so the numbers say nothing about accuracy on a real task; and how much the SinKD "
    "term weighs against KD depends on the sizes of both terms, measured here for this toy "
    "only (the *Distill a BERT* page trains the real recipe).")
