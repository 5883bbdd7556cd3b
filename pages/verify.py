"""Verify against POT: our Sinkhorn solver against POT, live, on your problem and a suite."""

import streamlit as st

import shell
from sinkd.lab import verify, verify_figures, verify_spec
from sinkd.lab.batches import BATCH_KINDS, sinkd_problem
from sinkd.lab.units import COST_UNIT, sci
from sinkd.lab.verify_checks import Check, summary_line
from sinkd.lab.verify_limits import (
    MARGINAL_LIMIT,
    EmdLimit,
    emd_ladder,
    emd_limit,
    emd_limit_checks,
)

# the problem's defaults follow the Transport plans page when it was visited in this session
view = shell.page("verify", verify_spec.after_transport(shell.values_of("transport")))
lim = view.spec.limits
SUITE_KEY = "verify_suite_report"  # the last suite's Report, kept across reruns

WHY = """
Every number in this app comes from our own Sinkhorn solver. [POT](https://pythonot.github.io/)
is an independent, widely used implementation: if both give the same plan **after every single
iteration**, to round-off, our loop is the algorithm it claims to be.

**The transposition identity.** We scale rows, then columns (SinKD's order); POT scales columns,
then rows. Solving the transposed problem swaps the two, so after every $t$:
$P_\\text{ours}(a, b, C, t) = $ `ot.sinkhorn(b, a, C.T, reg, numItermax=t, stopThr=0).T`.

**Relative errors, and why float32 is looser.** Each error is divided by the reference's
magnitude (the largest entry of POT's plan or gradient, POT's cost). A comparison can only be
as sharp as the dtype allows: rounding $C$ to float32 ($\\varepsilon \\approx 1.2\\cdot10^{-7}$,
against $2.2\\cdot10^{-16}$ in float64) changes $e^{-C/\\lambda}$ relatively by
$\\varepsilon \\max C/\\lambda$. The bar is $\\max(\\rho_0, 4\\varepsilon\\max C/\\lambda)$ for
plans and costs, $\\max(\\rho_0, 32\\varepsilon\\max C/\\lambda)$ for gradients (whose entries
are differences of terms $\\max C/\\lambda$ times larger), with floors $\\rho_0 = 10^{-12}$
(float64) and $10^{-4}$ (float32). No bar exceeds $10^{-2}$: where float32 would need more, the
comparison runs ours in float64 and a note says so.

**Why the cost approaches `ot.emd2`.** The entropic plan minimises
$\\langle P, C\\rangle - \\lambda H(P)$; comparing it with the exact plan $P^\\star$ gives
$0 \\le \\langle P_\\lambda, C\\rangle - \\mathrm{OT} \\le \\lambda (H(P_\\lambda) - H(P^\\star))
\\le \\lambda \\log(nm)$ (probability masses). This holds for the **converged** plan only: a plan
whose marginals are still off (few iterations, small λ) can cost less than exact OT.
"""
TRY = """
- Choose the float32 preset: compare the tolerances with those at λ = 0.1, and read the note
  on the kernel method.
- Set T = 1 and move t: the comparison is made after one iteration too.
- Choose the *disjoint* batch: costs near 2, far from the diagonal.
- Run the **full** suite, then change its seed and run it again: everything is recomputed.
"""


@st.cache_data(show_spinner="Comparing with POT after every iteration...", max_entries=16)
def _compare(kind, n, n_classes, noise, seed, reg, n_iters, dtype) -> verify.ProblemResult:
    a, b, cost = sinkd_problem(kind, n, n_classes, noise, seed)
    return verify.compare_problem(a, b, cost, reg, n_iters, dtype, label="your problem",
                                  every_iteration=True)


@st.cache_data(show_spinner=False, max_entries=32)
def _plans(kind, n, n_classes, noise, seed, reg, t, dtype) -> verify.PlanPair:
    return verify.plans_at(*sinkd_problem(kind, n, n_classes, noise, seed), reg, t, dtype)


@st.cache_data(show_spinner="Solving to convergence for a ladder of λ...", max_entries=16)
def _emd_limit(kind, n, n_classes, noise, seed, reg) -> EmdLimit:
    a, b, cost = sinkd_problem(kind, n, n_classes, noise, seed)
    return emd_limit(a, b, cost, regs=emd_ladder(reg))


def _show_checks(checks: list[Check]) -> None:
    """A green or red badge per check, with its relative error, tolerance and their ratio."""
    st.markdown(f"**{summary_line(checks)}**")
    lines = []
    for c in checks:
        badge = ":green-badge[agrees]" if c.passed else ":red-badge[disagrees]"
        bar = (f"tolerance {sci(c.tolerance, 2)}" if c.lower is None
               else f"allowed [{sci(c.lower, 2)}, {sci(c.tolerance, 2)}]")
        name = c.name.replace("*", "\\*")
        lines.append(f"- {badge} {name}: relative error "
                     f"**{sci(c.error, 2)}**, {bar}, error / tolerance **{sci(c.ratio, 2)}**")
    st.markdown("\n".join(lines))


preset_name = view.header("Verify against POT")
st.markdown("Our plan and POT's after iteration *t* of the same problem, and their difference; "
            "the checks below compare them after every iteration.")
if view["t"] > view["n_iters"]:  # t is an iteration of the run: at most T
    st.session_state[view.key("t")] = view["n_iters"]
problem = (view["kind"], view["n"], view["n_classes"], view["noise"], view["seed"])
with shell.guard():
    pair = _plans(*problem, view["reg"], view["t"], view["dtype"])
    result = _compare(*problem, view["reg"], view["n_iters"], view["dtype"])
shell.show_figure(verify_figures.plan_comparison_figure(pair), "verify_plans")
if view["n_iters"] > 1:
    st.slider("t (iteration shown)", 1, view["n_iters"], key=view.key("t"))
else:
    st.caption("T = 1: the plans after the one iteration.")

_show_checks(result.checks)
for note in result.notes:
    st.info(note)
st.caption(f"The gradient check differentiates ⟨P_T, C⟩ through all T = {result.n_iters} "
           "iterations, ours with torch autograd, POT's through its torch backend's own loop. "
           f"Ours: ⟨P_T, D⟩ = {sci(result.ours_cost)}, POT: {sci(result.pot_cost)}. {COST_UNIT}")
view.preset_notice(preset_name)

with st.expander("Problem and solver: batch, N, C, noise, seed, λ, T, dtype",
                  key="open_verify_settings"):
    taken = list(verify_spec.from_transport(shell.values_of("transport")))
    if taken:
        st.caption(f"Defaults taken from the Transport plans page ({', '.join(taken)}); "
                   "Reset takes them again.")
    cols = st.columns(4)
    cols[0].selectbox("Batch", lim["kind"], key=view.key("kind"),
                      help="; ".join(f"{k}: {v}" for k, v in BATCH_KINDS.items()))
    cols[1].slider("N (batch size)", *lim["n"], key=view.key("n"))
    cols[2].slider("C (classes)", *lim["n_classes"], key=view.key("n_classes"))
    cols[3].slider("Student noise", *lim["noise"], step=0.1, key=view.key("noise"))
    cols = st.columns(4)
    cols[0].number_input("Seed", *lim["seed"], step=1, key=view.key("seed"))
    shell.lambda_slider(view, "reg", where=cols[1])
    cols[2].slider("T (iterations)", *lim["n_iters"], key=view.key("n_iters"))
    cols[3].radio("dtype (ours)", lim["dtype"], key=view.key("dtype"), horizontal=True)
    view.reset_button()

left, right = st.columns([3, 2])
with left:
    shell.show_figure(verify_figures.gap_curve_figure(result), "verify_gaps")
with right:
    shell.show_figure(verify_figures.timing_figure([result]), "verify_time")
    st.caption(f"T = {result.n_iters} iterations: ours {sci(result.ours_ms, 2)} ms, POT "
               f"{sci(result.pot_ms, 2)} ms (best of up to 3 runs; POT in float64 numpy, ours "
               f"in {result.dtype} torch).")
shell.download_numbers(result.to_dict(checks=True), "verify_your_problem", view.key("download"))

st.subheader("Towards exact OT as λ shrinks")
with shell.guard():
    limit = _emd_limit(*problem, view["reg"])
shell.show_figure(verify_figures.emd_limit_figure(limit), "verify_emd")
_show_checks(emd_limit_checks(limit=limit, label="your problem"))
for reg, its, err in zip(limit.regs, limit.n_iters, limit.marginal_errors, strict=True):
    if err > MARGINAL_LIMIT:
        st.caption(f"λ = {reg:g}: marginals still off by {sci(err, 2)} after {its} iterations; "
                   "an unconverged plan can even cost less than exact OT, so no claim is made.")
st.caption(COST_UNIT)
shell.download_numbers(vars(limit), "verify_emd_limit", view.key("download_emd"))

st.subheader("Random suite")
cols = st.columns([2, 2, 1])
cols[0].radio("Suite", lim["suite"], key=view.key("suite"), horizontal=True,
              help="Sizes, λ, T, unit and probability masses, float64 and float32.")
cols[1].number_input("Suite seed", *lim["suite_seed"], step=1, key=view.key("suite_seed"))
view.sync_url()
if cols[2].button("Run the suite", key=view.key("run_suite"), type="primary"):
    with st.status(f"Running the {view['suite']} suite, seed {view['suite_seed']}...",
                   expanded=True) as status:
        bar = st.progress(0.0)
        report = verify.run_suite(
            quick=view["suite"] == "quick", seed=int(view["suite_seed"]),
            on_check=lambda done, total: bar.progress(done / total, f"{done} of {total} problems"))
        status.update(label=summary_line(report.checks), expanded=False,
                      state="complete" if report.passed else "error")
    st.session_state[SUITE_KEY] = report

report = st.session_state.get(SUITE_KEY)
if report is None:
    st.caption("Not run yet in this session: press the button (the quick suite takes seconds).")
else:
    kind = "quick" if report.meta["quick"] else "full"
    badge = ":green-badge[agrees]" if report.passed else ":red-badge[disagrees]"
    st.markdown(f"{badge} **{summary_line(report.checks)}** ({kind} suite, seed "
                f"{report.meta['seed']}, {len(report.problems)} problems; POT "
                f"{report.meta['pot']}, torch {report.meta['torch']})")
    failed = [row for row in report.rows() if not row["passed"]]
    if failed:
        st.error("Checks that disagree:")
        st.dataframe(failed, hide_index=True)
    left, right = st.columns(2)
    with left:
        shell.show_figure(verify_figures.suite_gaps_figure(report), "verify_suite_gaps")
    with right:
        shell.show_figure(verify_figures.timing_scatter_figure(report.problems),
                          "verify_suite_time")
    with st.expander("Every check (errors relative to the reference)"):
        st.dataframe(report.rows(), hide_index=True,
                     column_config={k: st.column_config.NumberColumn(format="%.2e")
                                    for k in ("error", "tolerance", "ratio", "lower")})
    st.download_button("Download the report (JSON)", report.to_json(), "verify_report.json",
                       "application/json", key=view.key("download_suite"))

shell.lesson(WHY, TRY)
