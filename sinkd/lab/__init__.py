"""What SinKD Lab's pages compute and draw: toy experiments, transport plans, verification
against POT and their Plotly figures (needs the ``lab`` extra; never imports Streamlit)."""
