"""SinKD Lab's home page and the app's entry point: `make run` (or `streamlit run app.py`).

Streamlit's pages-directory mode: this file is the home page, served at "/", and each file of
pages/ is a page of its own; every one of them starts with the shared shell (shell.py).
"""

import streamlit as st

import shell

shell.page("home")
st.title("SinKD Lab")
st.markdown(
    """
Knowledge distillation trains a small **student** to reproduce the softened class distribution
of a large **teacher**. The usual divergences fail where the two distributions overlap little:
forward KL **averages modes**, reverse KL **collapses** onto one mode, and Jensen–Shannon
**underestimates** low-probability regions and saturates at $\\log 2$ when the supports are
disjoint, so its gradient vanishes.

**SinKD** (Cui et al., LREC-COLING 2024) replaces them with the **Sinkhorn distance**, optimal
transport regularised by entropy, which keeps giving useful gradients without overlap. It also
matches predictions **batch-wise**: the $N$ student predictions and $N$ teacher predictions of a
batch are two point clouds, and the loss is the cost of transporting one onto the other.
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
against [POT](https://pythonot.github.io/) to round-off (`python -m sinkd verify`).
"""
)

st.subheader("Where to go")
st.page_link("pages/divergence_lab.py", label="**Divergence lab**: fit a student to a bimodal "
             "teacher under KL, reverse KL, JS, TVD, skew KL, Sinkhorn, debiased Sinkhorn and "
             "exact OT, and measure mode averaging, mode collapse and mode underestimation over "
             "seeds and budgets.", icon="⛰️")
st.page_link("pages/batchwise.py", label="**What SinKD matches**: a batch of predictions on the "
             "3-class simplex; per-sample KL, reverse KL, JS and OT against SinKD's batch-wise "
             "term, which matches the cloud but not the pairs.", icon="🎯")
st.page_link("pages/transport.py", label="**Transport plans**: change λ and T and watch the "
             "N × N plan of a batch converge; see where the plain kernel solver underflows.",
             icon="🧮")
st.page_link("pages/verify.py", label="**Verify against POT**: our solver and POT side by side, "
             "iteration by iteration, with the tolerance of every check.", icon="✅")
st.page_link("pages/distill.py", label="**Distill a BERT**: train small students with CE, KD "
             "and SinKD in the background and compare their accuracies over seeds.", icon="🎓")
st.markdown(
    """
**Start in one click:** open the divergence lab; its first preset is the classic picture of mode
averaging. Every page has presets with a *what to notice* line, a reset button, and a URL that
restores exactly what is on screen when you share it. The camera button of each plot downloads
it (PNG or SVG: choose in the sidebar); tables download as CSV.

The library behind the pages, `sinkd`, is usable on its own (see the README):
`python -m sinkd verify` checks the solver against POT; in a checkout, `python -m bench`
measures it.
"""
)
