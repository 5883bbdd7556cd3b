"""Transport plans: the SinKD plan iteration by iteration, its marginals, its cost, its numerics."""

import math

import pandas as pd
import streamlit as st

import shell
from sinkd.lab import plan_figures as figs
from sinkd.lab import plans
from sinkd.lab.batches import BATCH_KINDS
from sinkd.lab.plan_numerics import dtype_hazards
from sinkd.lab.transport_spec import SPEC

view = shell.page("transport", SPEC)
lim = view.spec.limits

WHY = """
**λ trades blur for sharpness.** Large λ spreads every student's unit of mass over many
teachers (λ → ∞: the independent coupling, every entry 1/N); small λ concentrates it on the
nearest teachers (λ → 0: exact optimal transport, a permutation here).
**T trades speed for accuracy.** Each iteration costs two matrix-vector products; after T of
them the columns are exact and the rows only approximate, the less so the smaller λ.
**Small λ trades stability for fidelity to exact OT.** The kernel solver forms
K = exp(−D/λ), which underflows once D/λ passes the dtype's range; the stabilised log-domain
solver keeps its kernel relative to absorbed potentials and redoes any overflowing step with
log-sum-exp, so it stays finite, at some cost in speed.
"""
TRY = """
- Press ▶ under the plan: watch rows and columns alternate towards mass 1.
- Lower λ step by step with the kernel method, in float32 then float16: where does it break?
- Switch the source to *shuffled*: the term does not move, the plan does.
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


def _number(x: float, digits: int = 6) -> str:
    """A metric's text: NaN is shown as such (a warning explains it)."""
    return f"{x:.{digits}g}" if math.isfinite(x) else "NaN"


st.title("Transport plans")
st.markdown(
    "SinKD transports the batch's **N student predictions** onto its **N teacher predictions** "
    "(mass 1 each) over the L1 cost $D_{ij} = \\lVert p^s_i - p^t_j \\rVert_1$, with $T$ "
    "Sinkhorn scalings of $e^{-D/\\lambda}$. Here is that plan, iteration by iteration."
)
latest = st.session_state.get("latest_batch")
if view["source"] == plans.LATEST and latest is None:
    st.session_state[view.key("source")] = view.spec.defaults["source"]
    st.warning("No distillation batch in this session yet: showing the default toy batch.")
view.presets()
shell.lesson(WHY, TRY)

sources = list(BATCH_KINDS) + ([plans.LATEST] if latest is not None else [])
batch_col, solver_col, view_col = st.columns(3)
with batch_col:
    st.selectbox("Batch source", sources, key=view.key("source"),
                 help="; ".join(f"{k}: {v}" for k, v in BATCH_KINDS.items()))
    toy = view["source"] != plans.LATEST
    st.slider("N (batch size)", *lim["n"], key=view.key("n"), disabled=not toy)
    st.slider("C (classes)", *lim["c"], key=view.key("c"), disabled=not toy)
    st.slider("Student noise", *lim["noise"], step=0.1, key=view.key("noise"), disabled=not toy)
    st.number_input("Seed", *lim["seed"], step=1, key=view.key("seed"), disabled=not toy)
with solver_col:
    shell.lambda_slider(view, "lam")
    st.slider("T (iterations)", *lim["T"], key=view.key("T"))
    st.slider("τ (softmax temperature)", *lim["tau"], step=0.5, key=view.key("tau"))
with view_col:
    st.radio("Method", lim["method"], key=view.key("method"), horizontal=True)
    st.radio("dtype", lim["dtype"], key=view.key("dtype"), horizontal=True)
    view.reset_button()

with shell.guard():
    n_rows = view["n"] if toy else len(plans.batch_for(plans.LATEST, 1, 1, 0.0, 0, latest)[0])
st.session_state[view.key("sample")] = min(view["sample"], n_rows - 1)
view.sync_url()

v = view.values()
args = (v["source"], v["n"], v["c"], v["noise"], v["seed"], v["tau"], v["lam"], v["T"])
latest_arg = latest if not toy else None
with shell.guard():
    history = _history(*args, v["method"], v["dtype"], latest_arg)
    hazards = {h.dtype: h for h in _hazards(*args, latest_arg)}
hazard = hazards[v["dtype"]]

m1, m2, m3, m4 = st.columns([1.3, 1, 1, 1])
m1.metric("SinKD term 10⁻³⟨P_T, D⟩", _number(history.sinkd_value),
          help=f"{v['method']} method, {v['dtype']}")
m2.metric("exact OT (emd2)", _number(history.exact_cost))
m3.metric("independent coupling", _number(history.independent_cost))
m4.metric("marginal error of P_T (L1)", _number(float(history.result.marginal_error), 3))

shown = history
if not history.finite:
    st.warning(figs.failure_reason(history) + " Below: the log method's plan on the same batch, "
               "for comparison.")
    with shell.guard():
        shown = _history(*args, "log", v["dtype"], latest_arg)
if v["dtype"] == "float16":
    st.info(figs.float16_note(hazard))

shell.show_figure(figs.plan_figure(shown, badge=figs.hazard_badge(hazard)), "transport_plan")
shell.show_figure(figs.convergence_figure(shown), "transport_convergence")
shell.download_numbers(figs.curves_table(shown), "transport_curves", key="transport_curves_csv")

st.subheader("The predictions and the plan")
if shown.n_classes in (2, 3):
    shell.show_figure(figs.simplex_figure(shown), "transport_simplex")
else:
    st.caption(f"The simplex view needs C = 2 or 3 classes (here C = {shown.n_classes}).")

st.subheader("Class-wise view: one C × C plan per sample")
with shell.guard():
    level = _class_level(*args, shown.method, v["dtype"], latest_arg)
st.metric("class-level term 10⁻³ Σᵢ⟨Pᵢ, 1 − I⟩", _number(level.term),
          help=f"{shown.method} method, {v['dtype']}")
if n_rows > 1:
    st.slider("Sample i", 0, n_rows - 1, key=view.key("sample"))
shell.show_figure(figs.class_plan_figure(level, view["sample"]), "transport_class_plan")

st.subheader("Numerics per dtype")
table = pd.DataFrame(figs.hazard_rows(hazards.values()))
st.dataframe(table, hide_index=True)
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
