"""SinKD Lab: the Streamlit entry point. Run with `make run` (or `streamlit run app.py`)."""

import streamlit as st
import torch

from views._shell import sidebar_controls

# The pages solve many small problems: one thread is several times faster there than two
# (measured in bench/plans_speed.py), and it leaves a core to the browser and the server.
torch.set_num_threads(1)

st.set_page_config(page_title="SinKD Lab", page_icon="🚚", layout="wide")

pages = {
    "Learn": [
        st.Page("views/home.py", title="Home", icon="🏠", default=True),
        st.Page("views/divergence_lab.py", title="Divergence lab", icon="⛰️"),
    ],
    "Explore": [st.Page("views/transport.py", title="Transport plans", icon="🧮")],
    "Verify": [st.Page("views/verify.py", title="Verify against POT", icon="✅")],
    "Distill": [st.Page("views/distill.py", title="Distill a BERT", icon="🎓")],
}
sidebar_controls()
st.navigation(pages).run()
