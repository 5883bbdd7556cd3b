"""Home: what SinKD is, in our own words, and where to go next."""

import streamlit as st

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

st.subheader("What is here")
st.markdown(
    """
- **The library** `sinkd`: a batched, differentiable Sinkhorn solver in PyTorch (kernel and
  stabilised log-domain methods, CPU and GPU), the SinKD loss with the reference defaults, and
  the usual KD divergences (KL, reverse KL, JS, TVD, skew KL, generalised JSD).
- **Verification**: `python -m sinkd verify` compares the solver with POT after every
  iteration, and exits non-zero on any disagreement.
- **Benchmarks**: `python -m sinkd bench` prints speed ratios against POT.

More pages (the divergence lab, transport plans, live verification, distilling a BERT) are on
their way; each will appear in the menu on the left.
"""
)
