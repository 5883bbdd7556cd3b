"""Distill a BERT: configure recipes x seeds, train them in the background, compare the records."""

import os

import streamlit as st

from sinkd.lab import distill_figures
from sinkd.distill.train import jobs as distill_jobs
from sinkd.distill.train.train import RECIPES, DistillConfig
from sinkd.distill.train.data import GLUE_HELP, GLUE_TASKS
from sinkd.distill.train.models import available_devices, default_cache_dir, select_device
from sinkd.distill.train.records import compare
from views._shell import Preset, View, download_numbers, guard, lesson, show_figure

HYPER = {"steps": 150, "batch_size": 16, "lr": 3e-4, "alpha": 0.9, "beta": 0.8,
         "kd_temperature": 2.0, "anneal_temperature": False, "reg": 0.1, "n_iters": 20,
         "sinkhorn_temperature": 2.0, "max_length": 32, "student_layers": 2,
         "train_limit": 2000, "eval_limit": 300, "teacher_steps": 60, "teacher_lr": 2e-4}
USE = {f"use_{r}": r in ("ce", "sinkd") for r in RECIPES}
DATA_SOURCES = ("rotten_tomatoes", *GLUE_TASKS, "file")  # "file": the path in data_file
SOURCES = {"data_source": "rotten_tomatoes", "data_file": "", "teacher": ""}
DEFAULTS = {**HYPER, **USE, **SOURCES, "n_seeds": 1, "first_seed": 0, "metric": "test"}
LIMITS = {"steps": (1, 3000), "batch_size": (2, 128), "lr": (1e-6, 1e-3), "alpha": (0.0, 1.0),
          "beta": (0.0, 10.0), "kd_temperature": (0.5, 10.0), "reg": (0.01, 10.0),
          "n_iters": (1, 200), "sinkhorn_temperature": (0.5, 10.0), "max_length": (8, 128),
          "student_layers": (1, 6), "train_limit": (100, 8000), "eval_limit": (50, 1000),
          "teacher_steps": (0, 1000), "teacher_lr": (1e-6, 1e-3), "n_seeds": (1, 5),
          "first_seed": (0, 9999),
          "metric": ("test", "best_dev", "final_dev"), "data_source": DATA_SOURCES}


def _only(*recipes: str) -> dict:
    return {f"use_{r}": r in recipes for r in RECIPES}


# measured once: `python -m sinkd distill --recipe ce sinkd --steps 150 --batch-size 16
# --train-limit 2000 --set eval_limit=300 --set max_length=32 --set teacher_steps=60
# --set teacher_lr=2e-4 --set lr=3e-4` on an idle 2-core CPU (torch 2 threads): 196 s wall
# (teacher fine-tune and logits ~95 s, each student run ~47 s with its evaluations); teacher
# 71.7% test, CE 71.3%, SinKD 70.3% (seed 0, 300 test snippets). max_length 48: 243 s, alike.
CLASSROOM_TIME = ("about 3 minutes (196 s) the first time, teacher fine-tuning included, "
                  "measured on an idle 2-core CPU; once the teacher is cached, under a minute "
                  "per run")
PRESETS = {
    "Classroom: CE vs SinKD, 150 steps on 2,000 training snippets": Preset(
        {**HYPER, **_only("ce", "sinkd"), "n_seeds": 1},
        f"The student alone (CE) against the reference objective (SinKD), one seed each, after "
        f"a 60-step teacher fine-tune: {CLASSROOM_TIME}. Compare both students with the teacher "
        "row of the comparison table. With one seed and 300 test snippets a gap of a few points "
        "is noise: the binomial standard error of an accuracy near 70% on 300 snippets is 2.6 "
        "points, before any seed-to-seed spread (the Seeds preset measures that)."),
    "Divergences: KD, reverse KL, JS and SinKD": Preset(
        {**HYPER, **_only("kd", "rkl", "js", "sinkd"), "n_seeds": 1},
        "Four objectives that differ only in how the student is pulled to the teacher: watch "
        "the KD and Sinkhorn terms in the loss chart; about twice the classroom time."),
    "Seeds: KD vs SinKD, 3 seeds each": Preset(
        {**HYPER, **_only("kd", "sinkd"), "n_seeds": 3},
        "Six runs: the error bars (one standard deviation over seeds) show how much of a "
        "difference between recipes the seed alone can make; about three times the classroom."),
    "Annealed KD temperature: SinKD, T from 4 down to 1": Preset(
        {**HYPER, **_only("sinkd"), "kd_temperature": 4.0, "anneal_temperature": True},
        "The KD temperature falls linearly from 4 to 1 over the steps, as the reference does on "
        "MNLI and QQP: the KD term's scale changes along the run."),
}

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


def _base_config(v: dict) -> DistillConfig:
    """The shared settings of every run, from the page's values (validated)."""
    data = v["data_file"].strip() if v["data_source"] == "file" else v["data_source"]
    if not data:
        raise ValueError("data_file must be the path of a .csv or .tsv file when the data set "
                         "is 'file', got an empty path")
    sources = {"data": data, "teacher": v["teacher"].strip() or None}
    return DistillConfig.from_overrides({**{k: v[k] for k in HYPER}, **sources},
                                        base=DistillConfig())


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
    show_figure(distill_figures.loss_curves_figure(current["steps"]), "distill_losses")


st.title("Distill a BERT")
st.markdown("Train small BERT students with several distillation losses, in the background, "
            "then compare their accuracies over seeds. Nothing runs until you press **Start**.")
view = View("distill", DEFAULTS, LIMITS)
view.presets(PRESETS, label="Preset")
lesson(WHY, TRY)

st.subheader("Configure")
st.markdown("**Recipes** (every recipe runs with every seed, in this order)")
rec_cols = st.columns(4)
for i, (name, recipe) in enumerate(RECIPES.items()):
    rec_cols[i % 4].checkbox(name, key=view.key(f"use_{name}"), help=recipe.description)
c1, c2, c3 = st.columns(3)
with c1:
    st.number_input("Seeds (how many)", 1, 5, step=1, key=view.key("n_seeds"))
    st.number_input("First seed", 0, 9999, step=1, key=view.key("first_seed"))
    st.number_input("Steps", 1, 3000, step=10, key=view.key("steps"))
    st.number_input("Batch size", 2, 128, step=2, key=view.key("batch_size"))
    st.number_input("Peak learning rate", 1e-6, 1e-3, step=1e-5, format="%.1e",
                    key=view.key("lr"))
with c2:
    st.slider("α (KD weight against CE)", 0.0, 1.0, step=0.05, key=view.key("alpha"))
    st.slider("β (Sinkhorn weight)", 0.0, 10.0, step=0.1, key=view.key("beta"))
    st.slider("KD temperature", 0.5, 10.0, step=0.5, key=view.key("kd_temperature"))
    st.checkbox("Anneal the KD temperature to 1", key=view.key("anneal_temperature"))
    st.slider("λ (Sinkhorn entropic weight)", 0.01, 10.0, step=0.01, key=view.key("reg"))
    st.slider("T (Sinkhorn iterations)", 1, 200, key=view.key("n_iters"))
    st.slider("τ (Sinkhorn softmax temperature)", 0.5, 10.0, step=0.5,
              key=view.key("sinkhorn_temperature"))
with c3:
    st.selectbox("Data set", DATA_SOURCES, key=view.key("data_source"),
                 help="Rotten Tomatoes ships with the app (offline). GLUE tasks: " + GLUE_HELP
                 + ". file: your CSV/TSV with columns text, label (and text_b for pairs).")
    if view["data_source"] == "file":
        st.text_input("CSV/TSV file (path)", key=view.key("data_file"),
                      placeholder="/path/to/reviews.csv")
    st.text_input("Teacher (local folder or hub id; empty: the packaged MiniLM-L6)",
                  key=view.key("teacher"), placeholder="bert-base-uncased")
    st.slider("Max length (tokens)", 8, 128, step=8, key=view.key("max_length"))
    st.slider("Student layers (of 6)", 1, 6, key=view.key("student_layers"))
    st.number_input("Training snippets", 100, 8000, step=100, key=view.key("train_limit"))
    st.number_input("Dev and test snippets (each)", 50, 1000, step=50,
                    key=view.key("eval_limit"))
    st.number_input("Teacher fine-tuning steps", 0, 1000, step=50, key=view.key("teacher_steps"))
    st.number_input("Teacher learning rate", 1e-6, 1e-3, step=1e-5, format="%.1e",
                    key=view.key("teacher_lr"))
view.reset_button()
view.sync_url()

values = view.values()
recipes = [r for r in RECIPES if values[f"use_{r}"]]
seeds = list(range(values["first_seed"], values["first_seed"] + values["n_seeds"]))
with guard(ValueError, RuntimeError):  # RuntimeError: a GLUE task where the hub is out of reach
    base = _base_config(values)
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
    with guard():
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
    download_numbers(table, "distill_comparison", key="distill_download")
    st.selectbox("Accuracy to plot", list(LIMITS["metric"]), key=view.key("metric"))
    with guard():
        fig = distill_figures.compare_figure(table, view["metric"])
    show_figure(fig, "distill_compare")
    with st.expander(f"All {len(records)} saved runs"):
        st.dataframe(distill_jobs.runs_table(records), hide_index=True, key="distill_runs")
    latest = distill_jobs.latest_batch(records)
    if latest is not None:
        batch, path, record = latest
        st.session_state["latest_batch"] = batch
        st.page_link("views/transport.py", icon="🧮",
                     label=f"Open the last batch's transport plan ({record.recipe} seed "
                     f"{record.config.get('seed')}, {len(batch['teacher_logits'])} snippets)")
    st.caption(f"Default cache: `{default_cache_dir()}` (set SINKD_CACHE to move it).")
