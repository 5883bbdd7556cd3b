"""Transport plans: the SinKD plan half-step by half-step, its marginals, its cost, its numerics."""

import pandas as pd
import streamlit as st

import shell
from sinkd.lab import plan_figures as figs
from sinkd.lab import plans
from sinkd.lab.batches import BATCH_KINDS
from sinkd.lab.plan_numerics import dtype_hazards
from sinkd.lab.transport_spec import SPEC
from sinkd.lab.units import COST_UNIT

view = shell.page("transport", SPEC)
lim = view.spec.limits
SEEN = "_transport_step_seen"  # (T, preset) of the last run: a change moves t to the new T

WHY = """
**λ trades blur for sharpness.** Large λ spreads every student's unit of mass over many
teachers (λ → ∞: the independent coupling, every entry 1/N); small λ concentrates it on the
nearest teachers (λ → 0: exact optimal transport, a permutation here).
**T trades speed for accuracy.** Each iteration scales the rows to mass 1, then the columns;
after T of them the columns are exact and the rows only approximate, the less so the smaller λ.
A plan whose marginals are off is not feasible: its cost may even sit below exact OT.
**Small λ trades stability for fidelity to exact OT.** The kernel solver forms
K = exp(−D/λ), which underflows once D/λ passes the dtype's range; the stabilised log-domain
solver keeps its kernel relative to absorbed potentials and redoes any overflowing step with
log-sum-exp, so it stays finite, at some cost in speed.
"""
TRY = """
- Step with **½ ›** beside the plan: after the row scaling the row-sum bars all reach the line
  at 1 and the column sums are off; after the column scaling the reverse.
- Lower λ step by step with the kernel method, in float32 then float16: where does it break?
- Switch the source to *shuffled*: the term does not move, the plan does.
- In the class-wise view, raise T until the "not converged" warning goes: what happens to the
  cost relative to exact OT?
- Compute the λ sweep below with T = 20, then with T = 500.
"""


@st.cache_data(show_spinner=False, max_entries=32)
def _history(source, n, c, noise, seed, tau, lam, T, method, dtype, latest):
    teacher, student = plans.batch_for(source, n, c, noise, seed, latest)
    return plans.plan_history(teacher, student, reg=lam, n_iters=T, method=method, dtype=dtype,
                              temperature=tau)


@st.cache_data(show_spinner=False, max_entries=32)
def _hazards(source, n, c, noise, seed, tau, lam, T, latest):
    teacher, student = plans.batch_for(source, n, c, noise, seed, latest)
    return dtype_hazards(teacher, student, reg=lam, n_iters=T, temperature=tau)


@st.cache_data(show_spinner=False, max_entries=32)
def _class_level(source, n, c, noise, seed, tau, lam, T, method, dtype, latest):
    return plans.class_level(_history(source, n, c, noise, seed, tau, lam, T, method, dtype,
                                      latest))


def _move(delta: int) -> None:
    """Step buttons: move the shown half-step by ``delta`` half-steps."""
    T = view["T"]
    t, half = plans.step(min(view["t"], T), view["half"], delta, T)
    st.session_state[view.key("t")], st.session_state[view.key("half")] = t, half


preset_name = view.header("Transport plans")
latest = st.session_state.get("latest_batch")
if all(st.query_params.get(k) == v for k, v in plans.LATEST_QUERY.items()):
    for k in plans.LATEST_QUERY:  # the distillation page's link: open its batch, once
        del st.query_params[k]
    if latest is not None:
        st.session_state[view.key("source")] = plans.LATEST
if view["source"] == plans.LATEST and latest is None:
    st.session_state[view.key("source")] = view.spec.defaults["source"]
    st.warning("No distillation batch in this session yet: showing the default toy batch.")
seen = (view["T"], preset_name)
first = st.session_state.get(SEEN) is None and "t" not in st.query_params
if first or st.session_state.get(SEEN) not in (None, seen):  # a new T: show its last plan
    st.session_state[view.key("t")], st.session_state[view.key("half")] = view["T"], "columns"
st.session_state[SEEN] = seen
st.session_state[view.key("t")] = min(view["t"], view["T"])

toy = view["source"] != plans.LATEST
latest_arg = latest if not toy else None
with shell.guard():
    n_rows = view["n"] if toy else len(plans.batch_for(plans.LATEST, 1, 1, 0.0, 0, latest)[0])
st.session_state[view.key("sample")] = min(view["sample"], n_rows - 1)
v = view.values()
args = (v["source"], v["n"], v["c"], v["noise"], v["seed"], v["tau"], v["lam"], v["T"])
with shell.guard():
    history = _history(*args, v["method"], v["dtype"], latest_arg)
    hazards = {h.dtype: h for h in _hazards(*args, latest_arg)}
hazard = hazards[v["dtype"]]
shown = history
if not history.finite:
    with shell.guard():
        shown = _history(*args, "log", v["dtype"], latest_arg)

# the main figure first, the step controls beside it
fig_col, step_col = st.columns([5, 2])
with fig_col:
    shell.show_figure(figs.plan_figure(shown, v["t"], v["half"], badge=figs.hazard_badge(hazard)),
                      "transport_plan")
with step_col:
    pos, T = 2 * v["t"] - (v["half"] == "rows"), v["T"]  # the half-step's number, 1 .. 2T
    back, fwd = st.columns(2)
    back.button("« t − 1", key=view.key("back_t"), on_click=_move, args=(-2,), disabled=pos <= 2,
                width="stretch")
    fwd.button("t + 1 »", key=view.key("fwd_t"), on_click=_move, args=(2,),
               disabled=pos > 2 * T - 2, width="stretch")
    back.button("‹ ½", key=view.key("back_half"), on_click=_move, args=(-1,), disabled=pos <= 1,
                help="Half a step back: the row or the column scaling", width="stretch")
    fwd.button("½ ›", key=view.key("fwd_half"), on_click=_move, args=(1,), disabled=pos >= 2 * T,
               help="Half a step on: the row or the column scaling", width="stretch")
    if T > 1:
        st.slider("t (iteration shown)", 1, T, key=view.key("t"))
    st.radio("Plan after the", lim["half"], key=view.key("half"), horizontal=True,
             format_func={"rows": "row scaling", "columns": "column scaling"}.get)
    st.caption(figs.step_caption(shown, v["t"], v["half"]))
if not history.finite:
    st.warning(figs.failure_reason(history) + " Shown: the log method's plan on the same batch, "
               "for comparison.")
if v["dtype"] == "float16":
    st.info(figs.float16_note(hazard))

with st.expander("Settings: batch, λ, T, method, dtype", key="open_transport_settings"):
    sources = list(BATCH_KINDS) + ([plans.LATEST] if latest is not None else [])
    batch_col, solver_col, view_col = st.columns(3)
    with batch_col:
        st.selectbox("Batch source", sources, key=view.key("source"),
                     help="; ".join(f"{k}: {v}" for k, v in BATCH_KINDS.items()))
        st.slider("N (batch size)", *lim["n"], key=view.key("n"), disabled=not toy)
        st.slider("C (classes)", *lim["c"], key=view.key("c"), disabled=not toy)
        st.slider("Student noise", *lim["noise"], step=0.1, key=view.key("noise"),
                  disabled=not toy)
        st.number_input("Seed", *lim["seed"], step=1, key=view.key("seed"), disabled=not toy)
    with solver_col:
        shell.lambda_slider(view, "lam")
        st.slider("T (iterations)", *lim["T"], key=view.key("T"))
        st.slider("τ (softmax temperature)", *lim["tau"], step=0.5, key=view.key("tau"))
    with view_col:
        st.radio("Method", lim["method"], key=view.key("method"), horizontal=True)
        st.radio("dtype", lim["dtype"], key=view.key("dtype"), horizontal=True)
        view.reset_button()
view.sync_url()

view.preset_notice(preset_name)

for col, (label, value, help_text) in zip(st.columns(6), figs.cost_metrics(history),
                                          strict=True):
    col.metric(label, value, help=help_text)
st.caption(COST_UNIT)
shell.show_figure(figs.convergence_figure(shown, v["t"], v["half"]), "transport_convergence")
shell.download_numbers(figs.curves_table(shown), "transport_curves", key="transport_curves_csv")
st.markdown(
    "SinKD transports the batch's **N student predictions** onto its **N teacher predictions** "
    "(mass 1 each) over the L1 cost $D_{ij} = \\lVert p^s_i - p^t_j \\rVert_1$, with $T$ "
    "Sinkhorn iterations on $e^{-D/\\lambda}$, each a row scaling then a column scaling."
)
shell.lesson(WHY, TRY)

st.subheader("The predictions and the plan")
if shown.n_classes in (2, 3):
    shell.show_figure(figs.simplex_figure(shown), "transport_simplex")
else:
    st.caption(f"The simplex view needs C = 2 or 3 classes (here C = {shown.n_classes}).")

st.subheader("Class-wise view: one C × C plan per sample")
with shell.guard():
    level = _class_level(*args, shown.method, v["dtype"], latest_arg)
for col, (label, value, help_text) in zip(st.columns(4), figs.class_metrics(level), strict=True):
    col.metric(label, value, help=help_text)
note = figs.class_level_note(level, v["lam"])
if note is not None:
    st.warning(note)
if n_rows > 1:
    st.slider("Sample i", 0, n_rows - 1, key=view.key("sample"))
shell.show_figure(figs.class_plan_figure(level, view["sample"]), "transport_class_plan")

st.subheader("Numerics per dtype")
table = pd.DataFrame(figs.hazard_rows(hazards.values()))
st.table(table, hide_index=True)  # static: an interactive grid redraws slowly on every rerun
shell.download_numbers(table, "transport_hazards", key="transport_hazards_csv")

st.subheader("λ sweep")
sweep_key = view.key("sweep")
params = (args, v["method"], v["dtype"], str(latest_arg))
if st.button("Compute the λ sweep", key=view.key("sweep_button")):
    with st.status(f"Solving for {len(plans.LAMBDAS)} values of λ …", expanded=True) as status:
        bar = st.progress(0.0)
        with shell.guard():
            teacher, student = plans.batch_for(*args[:5], latest_arg)
            sweep = plans.lambda_sweep(teacher, student, n_iters=v["T"], method=v["method"],
                                       dtype=v["dtype"], temperature=v["tau"],
                                       progress=bar.progress)
        st.session_state[sweep_key] = (params, sweep)
        status.update(label="λ sweep done", state="complete", expanded=False)
stored = st.session_state.get(sweep_key)
if stored is not None and stored[0] == params:
    shell.show_figure(figs.sweep_figure(stored[1]), "transport_sweep")
else:
    st.caption("Press the button to solve the current batch for every λ of the grid.")
