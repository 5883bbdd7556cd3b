"""Distill a BERT: configure recipes x seeds, train them in the background, compare the records."""

import os
import uuid
from pathlib import Path

import streamlit as st

import shell
from sinkd.distill import RECIPES, DistillConfig, sessions
from sinkd.distill import eta as distill_eta
from sinkd.distill import jobs as distill_jobs
from sinkd.distill.comparison import compare
from sinkd.distill.data import load_table
from sinkd.distill.glue import GLUE_HELP, GLUE_TASKS
from sinkd.distill.models import available_devices, default_cache_dir, select_device
from sinkd.lab import distill_figures, distill_spec, distill_tables

view = shell.page("distill", distill_spec.spec(RECIPES, GLUE_TASKS))
lim = view.spec.limits
CLASSROOM = distill_eta.load_timing()  # the classroom preset measured (bench/classroom_time.py)
PRIOR = distill_eta.Prior.from_timing(CLASSROOM)  # the ETA's fallback until steps are timed
PARTS = {name: recipe.parts for name, recipe in RECIPES.items()}  # the terms each recipe sums

WHY = """
A **teacher** (the packaged 6-layer MiniLM unless you name another, fine-tuned once on the
chosen data set, Rotten Tomatoes by default, and cached) is distilled into a **student** made of
its first layers. Each *recipe* is one loss: CE with the
labels only, KD with a divergence at temperature $T$, or SinKD, which adds $\\beta$ times the
Sinkhorn distance between the batch's student and teacher predictions (entropic weight
$\\lambda$, $T$ scalings). Every run is saved as a record, listed in the results even after a
restart.
"""
TRY = """
- Start the classroom preset and watch the loss terms fall while it trains.
- Add seeds: the comparison's error bars are one standard deviation over seeds.
- Open the last batch's transport plan to see the plan SinKD matched on the final step.
- Stop a run: its record is kept, marked stopped and left out of the means; **Resume**
  continues it from its last step, exactly as if it had not stopped.
"""


TEACHER_LABELS = {"": "MiniLM-L6 (packaged, offline)",
                  "bert-base-uncased": "BERT-base-uncased (the paper's; needs the hub)"}
# Session-state keys outside the page's "distill_" prefix (shell.values_of reads that prefix).
OWNER, START_ERROR, UPLOAD = "sinkd_owner", "sinkd_start_error", "sinkd_upload"
TRANSFER_CODE, TRANSFER_RESULT = "sinkd_transfer_code", "sinkd_transfer_result"
XSRF_COOKIE = "_streamlit_xsrf"  # Streamlit's anti-forgery cookie: a secret token per browser


def _owner() -> str:
    """This browser's id on the job board (from its XSRF cookie: every tab and reload of the
    browser shares it), or this session's where the cookie is absent; never shown or in a URL."""
    if OWNER not in st.session_state:
        st.session_state[OWNER] = (sessions.browser_owner(st.context.cookies.get(XSRF_COOKIE))
                                   or uuid.uuid4().hex)
    return st.session_state[OWNER]


def _start(configs: list[DistillConfig], resume_from: list | None = None) -> None:
    try:
        sessions.shared_board().start(_owner(), configs, threads=os.cpu_count(),
                                      resume_from=resume_from)
    except (sessions.BusyError, PermissionError) as err:  # another session won the race
        st.session_state[START_ERROR] = str(err)


def _stop() -> None:
    sessions.shared_board().stop(_owner())


def _claim() -> None:
    """Move the runs of the browser whose transfer code was typed to this browser."""
    try:
        moved = sessions.shared_board().claim(_owner(), st.session_state.get(TRANSFER_CODE, ""))
    except ValueError as err:
        st.session_state[TRANSFER_RESULT] = ("error", f"Not moved: {err}")
        return
    st.session_state[TRANSFER_RESULT] = (
        ("success", f"Moved {moved} run(s) of that browser here.") if moved else
        ("error", "No runs belong to that code (this browser's own moves nothing): check it "
                  "on the other browser's page."))


@st.cache_data(max_entries=16, show_spinner="Checking the uploaded table...")
def _check_upload(path: str) -> dict:
    """The stored upload parsed once (the path names its content's hash): rows or the error."""
    try:
        splits = load_table(path)
    except ValueError as err:
        return {"error": str(err)}
    return {"rows": sum(len(s) for s in (splits.train, splits.dev, splits.test)),
            "labels": list(splits.train.label_names)}


def _upload_path(upload) -> str | None:
    """The server's copy of the uploaded table when it parses, else None with an st.error."""
    if upload is None:
        st.info("Upload a CSV or TSV file with the columns text and label (text_b for pairs), "
                f"at most {sessions.MAX_UPLOAD_BYTES // 2**20} MB.")
        return None
    if upload.size > sessions.MAX_UPLOAD_BYTES:
        st.error(f"{upload.name} is {upload.size / 2**20:.1f} MB: the limit is "
                 f"{sessions.MAX_UPLOAD_BYTES // 2**20} MB.")
        return None
    memo = st.session_state.get(UPLOAD)
    if memo is None or memo[0] != upload.file_id:  # stored once per upload, not per rerun
        try:
            memo = (upload.file_id, str(sessions.store_upload(upload.getvalue(), upload.name)))
        except ValueError as err:
            st.error(f"Cannot use {upload.name}: {err}")
            return None
        st.session_state[UPLOAD] = memo
    check = _check_upload(memo[1])
    if "error" in check:
        name = upload.name
        message = check["error"].replace(memo[1], name).replace(Path(memo[1]).name, name)
        st.error(f"Cannot use {name}: {message}")
        return None
    st.caption(f"{upload.name}: {check['rows']:,} rows, labels {check['labels']}.")
    return memo[1]


@st.cache_resource(max_entries=32)
def _teacher_location(settings: str, _config: DistillConfig):
    """Where the teacher of these settings is cached: loads the data once per settings."""
    return distill_jobs.teacher_location(_config)


def _fmt_pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _machine(board: sessions.JobBoard) -> None:
    """What runs on this machine for other visitors, with controls for none of it."""
    rows = [{"recipe": r["recipe"], "seed": r["seed"], "status": r["status"],
             "progress": f"{r['step']} / {r['total']}"}
            for r in board.jobs(_owner()) if not r["yours"]]
    full = board.full
    if rows:
        st.markdown(f"**Running on this machine for other visitors** ({board.running()} of "
                    f"{board.max_jobs} job slot(s) in use; only the browser that started a "
                    "job can stop it)")
        st.dataframe(rows, hide_index=True, key="distill_machine")
    if st.session_state.pop("sinkd_was_full", False) and not full:
        st.rerun()  # a slot just freed: redraw the whole page so that Start is enabled
    if full:
        st.session_state["sinkd_was_full"] = True


@st.fragment(run_every=1.0)
def _progress() -> None:
    """Live progress of this session's job and the machine's, polled every second (the worker
    never draws)."""
    board = sessions.shared_board()
    _machine(board)
    job = board.job(_owner())
    if job is None:  # nothing to show: Start's help says whose a job is
        return
    runs = job.snapshot()
    current = next((r for r in runs if r["status"] == "running"), None)
    if current is not None:
        _current(current, runs, job)
    curves = distill_tables.job_curves(runs)  # finished runs of the job stay drawn
    if curves:  # first, so that it is in view at 1280 x 720
        shell.show_figure(distill_figures.runs_figure(curves), "distill_losses")
        st.caption("Each term on its own scale (the Sinkhorn term is about 1/100 of CE and KD); "
                   "the total is (1 − α) CE + α KD + β Sinkhorn.")
    st.dataframe([{k: r[k] for k in ("recipe", "seed", "status", "error")} for r in runs],
                 hide_index=True, key="distill_queue")
    if job.alive:
        st.button("Stop", key="distill_stop", on_click=_stop, disabled=job.stopping,
                  help="Stops the current run after its step; queued runs do not start.")
        st.session_state["distill_was_running"] = True
    elif st.session_state.pop("distill_was_running", False):
        st.rerun()  # the job just ended: redraw the whole page so the results list its records


def _current(current: dict, runs: list[dict], job: distill_jobs.Job) -> None:
    """The running run's progress and the whole queue's time left (``runs``: the snapshot),
    in one bar and one line, so that the curves below stay in view."""
    info = distill_jobs.progress_summary(current["steps"], current["total"])
    left = distill_eta.queue_eta(runs, teacher_cached=False, prior=PRIOR,
                                 teacher_steps=job.runs[0].config.teacher_steps,
                                 stopping=job.stopping,
                                 batch_size=job.runs[0].config.batch_size)
    name = f"{current['recipe']} seed {current['seed']}"
    eta = f"queue time left {distill_eta.format_duration(left['seconds'])}"
    if not current["steps"]:
        t = current["teacher"]
        phase = "starting" if t is None else (
            "teacher loaded from the cache" if t["phase"] == "cache" else
            "waiting for another run preparing the same teacher" if t["phase"] == "wait" else
            f"teacher {t['phase']} {t.get('split', '')} {t['done']}/{t['total']} (once: then "
            "cached for every run)")
        st.progress(0.0, text=f"{name}: {phase} · {eta}")
    else:
        rate = "—" if info["steps_per_s"] is None else f"{info['steps_per_s']:.2f}"
        st.progress(info["step"] / info["total"],
                    text=f"{name}: step {info['step']} / {info['total']} · dev accuracy "
                    f"{_fmt_pct(info['dev'])} · {rate} steps/s · {eta}")
    source = ("this machine's step times" if left["measured"] else
              f"the classroom measurement on {CLASSROOM['cores']} cores, until steps are timed")
    st.caption(f"Time left for the whole queue: **{distill_eta.format_duration(left['seconds'])}"
               f"** ({sum(s > 0 for s in left['runs_s'])} run(s) to finish"
               + (f", teacher {distill_eta.format_duration(left['teacher_s'])}"
                  if left["teacher_s"] else "") + f"; from {source}).")


preset_name = view.header("Distill a BERT")
st.markdown("Train small BERT students with several losses in the background and compare them "
            "over seeds.")
# Start, the live curves and the results come first (the main figure in view at 1280 x 720):
# drawn into this container further down, once the settings below are read
top = st.container()
view.preset_notice(preset_name)
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
    upload = None
    if view["data_source"] == distill_spec.FILE:
        upload = st.file_uploader("CSV/TSV file (columns text, label)", type=["csv", "tsv"],
                                  key="sinkd_upload_file",
                                  max_upload_size=sessions.MAX_UPLOAD_BYTES // 2**20)
    st.selectbox("Teacher", lim["teacher"], key=view.key("teacher"),
                 format_func=TEACHER_LABELS.get)
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
stored = _upload_path(upload) if values["data_source"] == distill_spec.FILE else None
recipes = [r for r in RECIPES if values[f"use_{r}"]]
seeds = list(range(values["first_seed"], values["first_seed"] + values["n_seeds"]))
# RuntimeError: a GLUE task where the hub is out of reach
with shell.guard(ValueError, RuntimeError):
    base = DistillConfig.from_overrides(distill_spec.config_overrides(values, stored),
                                        base=DistillConfig())
    configs = distill_jobs.make_configs(base, recipes, seeds)
    teacher_dir, cached = distill_jobs.teacher_status(base, _teacher_location(repr(
        [default_cache_dir(), *(getattr(base, f) for f in distill_jobs.TEACHER_FIELDS)]), base))
device = select_device("auto")
st.markdown(
    f"**{len(configs)} run(s)** ({', '.join(recipes)} × seeds {seeds}) on device **{device}** "
    f"(available: {', '.join(available_devices())}). The teacher is fine-tuned once for "
    f"{base.teacher_steps} steps and cached in `{teacher_dir}` — "
    + ("**already cached**: runs start at once." if cached else
       "**not cached yet**: the first run fine-tunes it.")
    + f" Records are saved in `{distill_jobs.runs_dir()}`.")
plan = distill_eta.plan_eta([c.steps for c in configs], teacher_cached=cached,
                            teacher_steps=base.teacher_steps, prior=PRIOR,
                            batch_size=base.batch_size)
st.caption(f"Estimated time: about {distill_eta.format_duration(plan['seconds'])}"
           + (f", of which {distill_eta.format_duration(plan['teacher_s'])} for the teacher "
              "(once: later runs with the same data and teacher settings read it from the "
              "cache)" if plan["teacher_s"] else "")
           + ", at the time per example of the classroom preset measured on "
           + distill_tables.machine_text(CLASSROOM) + " (scaled to the batch size; other "
           "lengths, layer counts and machines differ). While it trains, the time left is "
           "re-estimated from this machine's own step times.")

with top:
    board = sessions.shared_board()
    job = board.job(_owner())
    mine = job is not None and job.alive
    busy = mine or board.full
    if board.full and not mine:
        st.warning(f"The machine is busy: {board.running()} of its {board.max_jobs} job slot(s) "
                   "are in use by other visitors (listed below). Start is enabled again when one "
                   "ends.")
    if START_ERROR in st.session_state:
        st.error(f"Not started: {st.session_state.pop(START_ERROR)}")
    records = distill_jobs.list_records(distill_jobs.runs_dir())
    # only this session's stopped runs: another session cannot resume (or stop) them
    stopped = [p for p in distill_jobs.resumable_records(records) if board.owns(_owner(), p)]
    # one row: the buttons and what Start would run (the results' figure stays in view)
    start_col, *resume_col, plan_col = st.columns([1, 2, 5] if stopped else [1, 7],
                                                  vertical_alignment="center")
    start_col.button("Start", key="distill_start", type="primary", disabled=busy,
                     on_click=_start, args=(configs,),
                     help=("Your job is running: stop it or wait." if mine else
                           "The machine is busy: wait until a job ends." if busy else
                           "Queue these runs and train. Nothing runs before. The job belongs "
                           "to this browser: its other tabs and a reload can stop it, other "
                           "browsers cannot."))
    if stopped:
        with shell.guard():
            resumed = distill_jobs.resume_configs(stopped)
        resume_col[0].button(f"Resume {len(stopped)} stopped run(s)", key="distill_resume",
                             disabled=busy, on_click=_start, args=(resumed, stopped),
                             help="Continue each stopped run from its last finished step, with "
                             "its own settings (not the page's): "
                             + ", ".join(p.name for p in stopped))
    plan_col.caption(
        f"{len(configs)} run(s): {', '.join(recipes)} × seeds {seeds} on {device}; about "
        f"{distill_eta.format_duration(plan['seconds'])}"
        + (f", {distill_eta.format_duration(plan['teacher_s'])} of it the teacher (once, then "
           "cached)" if plan["teacher_s"] else "")
        + ". Nothing runs before Start. Settings and details below the results.")
    _progress()

    st.subheader("Results")
    if not records:
        st.info(f"No saved runs yet in `{distill_jobs.runs_dir()}`.")
    else:
        table = compare([r for _, r in records])
        with shell.guard():
            fig = distill_figures.compare_figure(table, view["metric"], PARTS)
        shell.show_figure(fig, "distill_compare")
        st.selectbox("Accuracy to plot", lim["metric"], key=view.key("metric"))
        st.markdown("Mean ± standard deviation over seeds per experiment (recipe, steps and the "
                    "settings in which experiments differ: each row names only those its recipe "
                    "reads), beside the teacher on the same dev and test sets; accuracies in %; "
                    "stopped runs are counted apart, not averaged. Hover a bar for its settings.")
        st.dataframe(distill_tables.comparison_table(table, PARTS), hide_index=True,
                     key="distill_compare_table")
        shell.download_numbers(table, "distill_comparison", key="distill_download")
        st.markdown("**Loss curves of saved runs**: every finished (or stopped) run keeps its "
                    "curves in its record; pick the runs to draw.")
        choices = distill_tables.run_choices(records)
        picked = st.multiselect("Runs to draw", list(choices), default=list(choices)[:2],
                                key="sinkd_curves_pick")
        saved = distill_figures.runs_figure(
            distill_tables.run_curves([records[choices[name]][1] for name in picked], PARTS))
        if saved.data:
            shell.show_figure(saved, "distill_saved_curves")
            st.caption("Each term on its own scale. The KD recipes' term is a divergence (0 when "
                       "the student matches the teacher); SinKD's is the cross-entropy with the "
                       "teacher (the teacher's entropy when matched), so their totals sit apart by "
                       "about that entropy, not by how well they learn.")
        else:
            st.caption("No step to draw: pick a run above (a run stopped before its first step "
                       "has none).")
        st.markdown("**Which term trains the student?** On every evaluation step each term's "
                    "share of the gradient at the student's logits: the norm of its weighted "
                    "gradient over the sum of the terms' norms (columns *grad share* of the "
                    "table, mean over evaluations and seeds). A SinKD share near 0 means β "
                    "leaves the student as KD alone would.")
        shares = distill_figures.grad_shares_figure(
            [(f"{r.recipe} seed {r.config.get('seed')}", r.metrics) for _, r in records])
        if shares.data:
            shell.show_figure(shares, "distill_grad_shares")
        else:
            st.caption("No saved run measured gradient shares (records written before they were).")
        with st.expander(f"All {len(records)} saved runs"):
            st.dataframe(distill_tables.runs_display(distill_jobs.runs_table(records)),
                         hide_index=True, key="distill_runs")
        with st.expander("Your runs from another browser", key="open_distill_transfer"):
            st.markdown(f"This browser's transfer code: **{board.transfer_code(_owner())}**. Typed "
                        "in another browser (cookies cleared, another machine), it moves this "
                        "browser's runs there: its stopped runs can be resumed and its running job "
                        "stopped there, and no longer here. Keep it to yourself: whoever types it "
                        "takes your runs.")
            code_col, claim_col = st.columns([2, 1], vertical_alignment="bottom")
            code_col.text_input("Transfer code of your other browser", key=TRANSFER_CODE,
                                max_chars=16, placeholder="ABCD-EFGH")
            claim_col.button("Move its runs here", key="distill_claim", on_click=_claim)
            if TRANSFER_RESULT in st.session_state:
                kind, text = st.session_state.pop(TRANSFER_RESULT)
                (st.success if kind == "success" else st.error)(text)
        latest = distill_jobs.latest_batch(records)
        if latest is not None:
            batch, path, record = latest
            st.session_state["latest_batch"] = batch
            st.page_link("pages/transport.py", icon="🧮", query_params={"batch": "latest"},
                         label=f"Open the last batch's transport plan ({record.recipe} seed "
                         f"{record.config.get('seed')}, {len(batch['teacher_logits'])} snippets)")
        st.caption(f"Default cache: `{default_cache_dir()}` (set SINKD_CACHE to move it).")
