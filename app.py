"""SinKD Lab's home page and the app's entry point: `make run` (or `streamlit run app.py`).

Streamlit's pages-directory mode: this file is the home page, served at "/", and each file of
pages/ is a page of its own; every one of them starts with the shared shell (shell.py).
"""

import streamlit as st

import shell
from sinkd.lab import lesson

shell.page("home")
st.title("SinKD Lab")
st.markdown(
    "Learn, explore and verify **Sinkhorn knowledge distillation** (SinKD, Cui et al., "
    "LREC-COLING 2024): a student matched to its teacher by optimal transport, computed live "
    "by the `sinkd` library."
)
st.page_link("pages/lesson.py", label=f"Start the guided lesson: SinKD in {len(lesson.STEPS)} "
             "steps", icon="🧭")

# One card per page: a short link (never cut off at 1280 px) and what the page does below it.
CARDS = {
    "divergence_lab": "Fit a student to a multimodal teacher under KL, reverse KL, JS, TVD, "
                      "skew KL, Sinkhorn, debiased Sinkhorn and exact OT: mode averaging, "
                      "collapse and underestimation, over seeds and budgets.",
    "batchwise": "A batch of predictions on the 3-class simplex: per-sample KL, reverse KL, JS "
                 "and OT against SinKD's batch-wise term, which matches the cloud, not the "
                 "pairs.",
    "transport": "Change λ and T and watch the N × N plan of a batch converge; see where the "
                 "plain kernel solver underflows and the log-domain solver does not.",
    "verify": "Our Sinkhorn solver against POT after every iteration, on your problem and a "
              "random suite: every check with its error and its tolerance.",
    "distill": "Train small BERT students with CE, KD and SinKD in the background and compare "
               "their accuracies over seeds.",
    "lesson": "The paper's story step by step, each step a preset of a page: predict, reveal, "
              "move on.",
}
for row in (tuple(CARDS)[:3], tuple(CARDS)[3:]):
    for column, name in zip(st.columns(3), row, strict=True):
        link = shell.PAGES[name]
        with column.container(border=True):
            st.page_link(link.path, label=f"**{link.title}**", icon=link.icon)
            st.caption(CARDS[name])

# The pages with presets, named from their specs by tests/app/test_app.py's check of this line.
PRESET_PAGES = ("Divergence lab", "What SinKD matches", "Transport plans", "Verify against POT",
                "Distill a BERT")
st.markdown(
    f"""
**Start in one click:** the lesson, or the divergence lab, whose first preset is the classic
picture of mode averaging. {", ".join(PRESET_PAGES[:-1])} and {PRESET_PAGES[-1]} have presets,
each with a *what to notice* line. Every page with settings has a reset button, and its URL
keeps the settings, so a shared link opens the same view. *Projector mode* in the sidebar
enlarges every figure's text and lines for a class. The camera button of each plot downloads it
(PNG or SVG: choose in the sidebar).
"""
)

st.subheader("What SinKD computes")
st.markdown(
    """
Knowledge distillation trains a small **student** to reproduce the softened class distribution
of a large **teacher**. The usual divergences fail where the two distributions overlap little:
forward KL **averages modes**, reverse KL **collapses** onto one mode, and Jensen–Shannon
**underestimates** low-probability regions and saturates at $\\log 2$ when the supports are
disjoint, so its gradient vanishes.

**SinKD** replaces them with the **Sinkhorn distance**, optimal transport regularised by entropy,
which keeps giving useful gradients without overlap. It also matches predictions **batch-wise**:
the $N$ student predictions and $N$ teacher predictions of a batch are two point clouds, and the
loss is the cost of transporting one onto the other.
"""
)
st.latex(
    r"D_{ij} = \lVert p^s_i - p^t_j \rVert_1, \qquad "
    r"\mathcal{L}_{\mathrm{SinKD}} = 10^{-3}\,\langle P_T, D\rangle, \qquad "
    r"P_T = \text{$T$ Sinkhorn scalings of } e^{-D/\lambda}"
)
st.markdown(
    """
Everything this app shows is computed live by the `sinkd` library, whose solver is verified
against [POT](https://pythonot.github.io/) to round-off (`python -m sinkd verify`). The library
is usable on its own (see the README); in a checkout, `python -m bench` measures it.
"""
)
