"""Verify against POT: our Sinkhorn solver against POT, live, on your problem and a suite."""

import streamlit as st

import shell
from sinkd.lab import verify, verify_figures, verify_spec
from sinkd.lab.batches import BATCH_KINDS, sinkd_problem
from sinkd.lab.verify_checks import Check, summary_line
from sinkd.lab.verify_limits import EmdLimit, emd_ladder, emd_limit, emd_limit_checks

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

**Why float32 is looser.** A comparison can only be as sharp as the dtype allows: rounding $C$
to float32 ($\\varepsilon \\approx 1.2\\cdot10^{-7}$, against $2.2\\cdot10^{-16}$ in float64)
changes $e^{-C/\\lambda}$ relatively by $\\varepsilon \\max C/\\lambda$. The relative bar is
$\\max(\\rho_0, 4\\varepsilon\\max C/\\lambda)$ with floors $\\rho_0 = 10^{-12}$ (float64) and
$10^{-4}$ (float32); gradients, whose conditioning grows like $(\\max C/\\lambda)^2$, get one more
factor $\\max C/\\lambda$.

**Why the cost approaches `ot.emd2`.** The entropic plan minimises
$\\langle P, C\\rangle - \\lambda H(P)$ and its entropy is at most $\\log(nm)$, so its transport
cost exceeds exact OT by at most $\\lambda \\log(nm)$ (probability masses), and never undercuts it.
"""
TRY = """
- Set λ = 0.001 and float32: compare the tolerance lines with those at λ = 0.1, and read the
  note on the kernel method.
- Set T = 1: the comparison is made after one iteration too.
- Choose the *disjoint* batch: costs near 2, far from the diagonal.
- Run the **full** suite, then change its seed and run it again: everything is recomputed.
"""


@st.cache_data(show_spinner="Comparing with POT after every iteration...")
def _compare(kind, n, n_classes, noise, seed, reg, n_iters, dtype) -> verify.ProblemResult:
    a, b, cost = sinkd_problem(kind, n, n_classes, noise, seed)
    return verify.compare_problem(a, b, cost, reg, n_iters, dtype, label="your problem",
                                  every_iteration=True)


@st.cache_data(show_spinner="Solving to convergence for a ladder of λ...")
def _emd_limit(kind, n, n_classes, noise, seed, reg) -> EmdLimit:
    a, b, cost = sinkd_problem(kind, n, n_classes, noise, seed)
    return emd_limit(a, b, cost, regs=emd_ladder(reg))


def _show_checks(checks: list[Check]) -> None:
    """A green or red badge per check, with its error and the tolerance it had to meet."""
    st.markdown(f"**{summary_line(checks)}**")
    for c in checks:
        badge = ":green-badge[agrees]" if c.passed else ":red-badge[disagrees]"
        name = c.name.replace("*", "\\*")
        st.markdown(f"{badge} {name}: error **{c.error:.2e}**, tolerance {c.tolerance:.1e}")


st.title("Verify against POT")
st.markdown("Our solver and POT run side by side on the problem below and on a random suite; "
            "each check shows its error and the tolerance it must meet.")
shell.lesson(WHY, TRY)

st.subheader("Your problem")
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

with shell.guard():
    result = _compare(view["kind"], view["n"], view["n_classes"], view["noise"], view["seed"],
                      view["reg"], view["n_iters"], view["dtype"])
    limit = _emd_limit(view["kind"], view["n"], view["n_classes"], view["noise"], view["seed"],
                       view["reg"])
_show_checks(result.checks)
for note in result.notes:
    st.info(note)
left, right = st.columns([3, 2])
with left:
    shell.show_figure(verify_figures.gap_curve_figure(result), "verify_gaps")
with right:
    shell.show_figure(verify_figures.timing_figure([result]), "verify_time")
    st.markdown(f"T = {result.n_iters} iterations: ours **{result.ours_ms:.3f} ms**, "
                f"POT **{result.pot_ms:.3f} ms** (best of up to 3 runs; POT in float64 numpy, "
                f"ours in {result.dtype} torch).")
shell.download_numbers(result.to_dict(checks=True), "verify_your_problem", view.key("download"))

st.subheader("Towards exact OT as λ shrinks")
shell.show_figure(verify_figures.emd_limit_figure(limit), "verify_emd")
_show_checks(emd_limit_checks(limit=limit, label="your problem"))
for reg, ok, its, err in zip(limit.regs, limit.converged, limit.n_iters, limit.marginal_errors,
                             strict=True):
    if not ok:
        st.caption(f"λ = {reg:g} had not converged after {its} iterations (marginal error "
                   f"{err:.1e}): no claim is made for it.")
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
    with st.expander("Every check"):
        st.dataframe(report.rows(), hide_index=True)
    st.download_button("Download the report (JSON)", report.to_json(), "verify_report.json",
                       "application/json", key=view.key("download_suite"))
