"""AppTest: the divergence lab renders by default, for every preset and at its widgets' extremes,
with outcome text computed by the real sinkd, and bad teacher input shown as st.error."""

from __future__ import annotations

import pytest
from app_pages import open_page
from streamlit.testing.v1 import AppTest

from sinkd.lab import toy
from sinkd.lab import toy_metrics as tm
from sinkd.lab.divergence_lab_spec import SPEC


def key(name: str) -> str:
    return f"divergence_lab_{name}"


@pytest.fixture(scope="module")
def at() -> AppTest:
    """The divergence lab, rendered once with its defaults."""
    return open_page("divergence_lab", timeout=120)


def test_default_view_renders_computed_outcomes(at):
    """By default: no exception, four charts, the table, and sentences with sinkd's numbers."""
    assert not at.exception and not at.error
    assert at.title[0].value == "Divergence lab"
    assert len(at.get("plotly_chart")) == 4
    assert len(at.dataframe) == 1
    m = tm.compute_metrics(toy.fit_view(SPEC.defaults))
    text = "\n".join(md.value for md in at.markdown)
    for line in tm.outcomes(m):
        assert line in text
    assert f"KL (forward) {tm._pct(m.gap_mass[m.row('kl')])}" in text
    assert any("deterministic given seed 0" in c.value for c in at.caption)


@pytest.mark.parametrize("preset", list(SPEC.presets))
def test_every_preset_renders(at, preset):
    """Choosing each preset sets its values and renders without an exception or error."""
    at.selectbox(key=key("preset")).set_value(preset).run()
    assert not at.exception and not at.error
    values = SPEC.presets[preset].values
    assert at.session_state[key("student")] == values["student"]
    assert at.session_state[key("init_mean")] == values["init_mean"]
    assert len(at.get("plotly_chart")) == 4


def test_widget_extremes_render(at):
    """4 components with a 5-Gaussian student, max lambda and max steps; then 1 component, free
    logits, min lambda (log-domain Sinkhorn) and min steps: both render without an exception."""
    at.button(key=key("reset")).click().run()
    at.slider(key=key("n_components")).set_value(4)
    at.selectbox(key=key("student")).set_value("mixture").run()  # enables k
    at.slider(key=key("k")).set_value(toy.MAX_K)
    at.number_input(key=key("reg")).set_value(SPEC.limits["reg"].high)
    at.slider(key=key("steps")).set_value(SPEC.limits["steps"].high).run()
    assert not at.exception and not at.error
    at.slider(key=key("n_components")).set_value(1)
    at.selectbox(key=key("student")).set_value("free")
    at.number_input(key=key("reg")).set_value(SPEC.limits["reg"].low)
    at.slider(key=key("steps")).set_value(SPEC.limits["steps"].low).run()
    assert not at.exception and not at.error
    assert len(at.get("plotly_chart")) == 4


def test_zero_weights_show_an_error_and_keep_state(at):
    """All teacher weights at 0 give st.error naming 'weights', no exception, state kept."""
    at.button(key=key("reset")).click().run()
    at.number_input(key=key("weight1")).set_value(0.0)
    at.number_input(key=key("weight2")).set_value(0.0).run()
    assert not at.exception
    assert len(at.error) == 1 and "weights" in at.error[0].value
    assert at.session_state[key("weight1")] == 0.0
    at.number_input(key=key("weight2")).set_value(1.0).run()  # one zero weight is fine
    assert not at.exception and not at.error


def test_no_divergence_ticked_shows_an_error(at):
    """Unticking every divergence gives st.error, not an exception."""
    at.button(key=key("reset")).click().run()
    for name in toy.FIT_DIVERGENCES:
        at.checkbox(key=key(f"use_{name}")).uncheck()
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "divergences" in at.error[0].value
