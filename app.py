"""SinKD Lab: the Streamlit entry point. Run with `make run` (or `streamlit run app.py`)."""

import streamlit as st

st.set_page_config(page_title="SinKD Lab", page_icon="🚚", layout="wide")

pages = {
    "Learn": [st.Page("pages/home.py", title="Home", icon="🏠", default=True)],
}
st.navigation(pages).run()
