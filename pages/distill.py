"""Distill a BERT: configure recipes x seeds, train them in the background, compare the records."""

import os

import streamlit as st

import shell
from sinkd.distill import RECIPES, DistillConfig
from sinkd.distill import jobs as distill_jobs
from sinkd.distill.glue import GLUE_HELP, GLUE_TASKS
from sinkd.distill.models import available_devices, default_cache_dir, select_device
from sinkd.distill.records import compare
from sinkd.lab import distill_figures, distill_spec

view = shell.page("distill", distill_spec.spec(RECIPES, GLUE_TASKS))
lim = view.spec.limits

WHY = """
A **teacher** (the packaged 6-layer MiniLM unless you name another, fine-tuned once on the
chosen data set, Rotten Tomatoes by default, and cached) is distilled into a **student** made of
its first layers. Each *recipe* is one loss: CE with the
labels only, KD with a divergence at temperature $T$, or SinKD, which adds $\\beta$ times the
Sinkhorn distance between the batch's student and teacher predictions (entropic weight
$\\lambda$, $T$ scalings). Every run is saved as a record, listed below even after a restart.
"""
TRY = """
- Start the classroom preset and watch the loss terms fall while it trains.
- Add seeds: the comparison's error bars are one standard deviation over seeds.
- Open the last batch's transport plan to see the plan SinKD matched on the final step.
- Stop a run: its record is kept, marked stopped and left out of the means; **Resume**
  continues it from its last step, exactly as if it had not stopped.
"""


@st.cache_resource
def _holder() -> dict:
    """The one job of this app process: survives reruns and page switches."""
    return {"job": None}


def _start(configs: list[DistillConfig], resume_from: list | None = None) -> None:
    _holder()["job"] = distill_jobs.Job(configs, threads=os.cpu_count(),
                                        resume_from=resume_from).start()


def _stop() -> None:
    job = _holder()["job"]
    if job is not None:
        job.stop()


def _fmt_pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


@st.fragment(run_every=1.0)
def _progress() -> None:
    """Live progress of the background job, polled every second (the worker never draws)."""
    job = _holder()["job"]
    if job is None:
        st.caption("No job started in this app process yet.")
        return
    runs = job.snapshot()
    st.dataframe([{k: r[k] for k in ("recipe", "seed", "status", "error")} for r in runs],
                 hide_index=True, key="distill_queue")
    current = next((r for r in runs if r["status"] == "running"), None)
    if job.alive:
        st.button("Stop", key="distill_stop", on_click=_stop, disabled=job.stopping,
                  help="Stops the current run after its step; queued runs do not start.")
        st.session_state["distill_was_running"] = True
    elif st.session_state.pop("distill_was_running", False):
        st.rerun()  # the job just ended: redraw the whole page so the results list its records
    if current is None:
        return
    st.markdown(f"**Running:** {current['recipe']} seed {current['seed']}")
    info = distill_jobs.progress_summary(current["steps"], current["total"])
    if not current["steps"]:
        t = current["teacher"]
        phase = "starting" if t is None else (
            "teacher loaded from the cache" if t["phase"] == "cache" else
            f"teacher {t['phase']} {t.get('split', '')} {t['done']}/{t['total']}")
        st.progress(0.0, text=phase)
        return
    st.progress(info["step"] / info["total"], text=f"step {info['step']} / {info['total']}")
    cols = st.columns(3 + len(info["latest"]))
    cols[0].metric("dev accuracy", _fmt_pct(info["dev"]))
    cols[1].metric("steps/s", "—" if info["steps_per_s"] is None else f"{info['steps_per_s']:.2f}")
    cols[2].metric("time left", "—" if info["eta_s"] is None else f"{info['eta_s']:.0f} s")
    for col, (name, value) in zip(cols[3:], info["latest"].items(), strict=True):
        col.metric(name, f"{value:.4f}")
    shell.show_figure(distill_figures.loss_curves_figure(current["steps"]), "distill_losses")


st.title("Distill a BERT")
st.markdown("Train small BERT students with several distillation losses, in the background, "
            "then compare their accuracies over seeds. Nothing runs until you press **Start**.")
view.presets()
shell.lesson(WHY, TRY)

st.subheader("Configure")
st.markdown("**Recipes** (every recipe runs with every seed, in this order)")
rec_cols = st.columns(4)
for i, (name, recipe) in enumerate(RECIPES.items()):
    rec_cols[i % 4].checkbox(name, key=view.key(f"use_{name}"), help=recipe.description)
c1, c2, c3 = st.columns(3)
with c1:
    st.number_input("Seeds (how many)", *lim["n_seeds"], step=1, key=view.key("n_seeds"))
    st.number_input("First seed", *lim["first_seed"], step=1, key=view.key("first_seed"))
    st.number_input("Steps", *lim["steps"], step=10, key=view.key("steps"))
    st.number_input("Batch size", *lim["batch_size"], step=2, key=view.key("batch_size"))
    st.number_input("Peak learning rate", *lim["lr"], step=1e-5, format="%.1e",
                    key=view.key("lr"))
with c2:
    st.slider("α (KD weight against CE)", *lim["alpha"], step=0.05, key=view.key("alpha"))
    st.slider("β (Sinkhorn weight)", *lim["beta"], step=0.1, key=view.key("beta"))
    st.slider("KD temperature", *lim["kd_temperature"], step=0.5, key=view.key("kd_temperature"))
    st.checkbox("Anneal the KD temperature to 1", key=view.key("anneal_temperature"))
    shell.lambda_slider(view, "reg", help="Sinkhorn's entropic weight (SinKD's reference: 0.1)")
    st.slider("T (Sinkhorn iterations)", *lim["n_iters"], key=view.key("n_iters"))
    st.slider("τ (Sinkhorn softmax temperature)", *lim["sinkhorn_temperature"], step=0.5,
              key=view.key("sinkhorn_temperature"))
with c3:
    st.selectbox("Data set", lim["data_source"], key=view.key("data_source"),
                 help="Rotten Tomatoes ships with the app (offline). GLUE tasks: " + GLUE_HELP
                 + ". file: your CSV/TSV with columns text, label (and text_b for pairs).")
    if view["data_source"] == distill_spec.FILE:
        st.text_input("CSV/TSV file (path)", key=view.key("data_file"),
                      placeholder="/path/to/reviews.csv")
    st.text_input("Teacher (local folder or hub id; empty: the packaged MiniLM-L6)",
                  key=view.key("teacher"), placeholder="bert-base-uncased")
    st.slider("Max length (tokens)", *lim["max_length"], step=8, key=view.key("max_length"))
    st.slider("Student layers (of 6)", *lim["student_layers"], key=view.key("student_layers"))
    st.number_input("Training snippets", *lim["train_limit"], step=100,
                    key=view.key("train_limit"))
    st.number_input("Dev and test snippets (each)", *lim["eval_limit"], step=50,
                    key=view.key("eval_limit"))
    st.number_input("Teacher fine-tuning steps", *lim["teacher_steps"], step=50,
                    key=view.key("teacher_steps"))
    st.number_input("Teacher learning rate", *lim["teacher_lr"], step=1e-5, format="%.1e",
                    key=view.key("teacher_lr"))
view.reset_button()
view.sync_url()

values = view.values()
recipes = [r for r in RECIPES if values[f"use_{r}"]]
seeds = list(range(values["first_seed"], values["first_seed"] + values["n_seeds"]))
# RuntimeError: a GLUE task where the hub is out of reach
with shell.guard(ValueError, RuntimeError):
    base = DistillConfig.from_overrides(distill_spec.config_overrides(values),
                                        base=DistillConfig())
    configs = distill_jobs.make_configs(base, recipes, seeds)
    teacher_dir, cached = distill_jobs.teacher_status(base)
device = select_device("auto")
st.markdown(
    f"**{len(configs)} run(s)** ({', '.join(recipes)} × seeds {seeds}) on device **{device}** "
    f"(available: {', '.join(available_devices())}). The teacher is fine-tuned once for "
    f"{base.teacher_steps} steps and cached in `{teacher_dir}` — "
    + ("**already cached**: runs start at once." if cached else
       "**not cached yet**: the first run fine-tunes it.")
    + f" Records are saved in `{distill_jobs.runs_dir()}`.")

st.subheader("Run")
job = _holder()["job"]
busy = job is not None and job.alive
records = distill_jobs.list_records(distill_jobs.runs_dir())
stopped = distill_jobs.resumable_records(records)
start_col, resume_col = st.columns(2)
start_col.button("Start", key="distill_start", type="primary", disabled=busy,
                 on_click=_start, args=(configs,),
                 help="A job is running: stop it or wait." if busy else
                 "Queue these runs and train.")
if stopped:
    with shell.guard():
        resumed = distill_jobs.resume_configs(stopped)
    resume_col.button(f"Resume {len(stopped)} stopped run(s)", key="distill_resume",
                      disabled=busy, on_click=_start, args=(resumed, stopped),
                      help="Continue each stopped run from its last finished step, with its "
                      "own settings (not the ones above): " + ", ".join(p.name for p in stopped))
_progress()

st.subheader("Results")
if not records:
    st.info(f"No saved runs yet in `{distill_jobs.runs_dir()}`.")
else:
    table = compare([r for _, r in records])
    st.markdown("Mean and standard deviation over seeds per experiment (recipe, steps and the "
                "settings in which experiments differ), beside the teacher on the same dev and "
                "test sets; accuracies as fractions; stopped runs are counted apart, not averaged.")
    st.dataframe(table, hide_index=True, key="distill_compare_table")
    shell.download_numbers(table, "distill_comparison", key="distill_download")
    st.selectbox("Accuracy to plot", lim["metric"], key=view.key("metric"))
    with shell.guard():
        fig = distill_figures.compare_figure(table, view["metric"])
    shell.show_figure(fig, "distill_compare")
    st.markdown("**Which term trains the student?** On every evaluation step each term's share "
                "of the gradient at the student's logits: the norm of its weighted gradient "
                "over the sum of the terms' norms (columns *grad share* of the table, mean over "
                "evaluations and seeds). A SinKD share near 0 means β leaves the student as KD "
                "alone would.")
    shares = distill_figures.grad_shares_figure(
        [(f"{r.recipe} seed {r.config.get('seed')}", r.metrics) for _, r in records])
    if shares.data:
        shell.show_figure(shares, "distill_grad_shares")
    else:
        st.caption("No saved run measured gradient shares (records written before they were).")
    with st.expander(f"All {len(records)} saved runs"):
        st.dataframe(distill_jobs.runs_table(records), hide_index=True, key="distill_runs")
    latest = distill_jobs.latest_batch(records)
    if latest is not None:
        batch, path, record = latest
        st.session_state["latest_batch"] = batch
        st.page_link("pages/transport.py", icon="🧮",
                     label=f"Open the last batch's transport plan ({record.recipe} seed "
                     f"{record.config.get('seed')}, {len(batch['teacher_logits'])} snippets)")
    st.caption(f"Default cache: `{default_cache_dir()}` (set SINKD_CACHE to move it).")
