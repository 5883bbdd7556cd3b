"""AppTest: the divergence lab renders by default, for every preset (question, then the answer
and its evidence on a click) and at its widgets' extremes, with text computed by the real
sinkd, one panel per divergence in its first figure, one λ control, and bad teacher input shown
as st.error with the settings still there to fix it."""

from __future__ import annotations

import json

import pytest
from app_pages import open_page
from streamlit.testing.v1 import AppTest

import shell
from sinkd.lab import toy, toy_text
from sinkd.lab import toy_metrics as tm
from sinkd.lab.batchwise_spec import SPEC as BATCHWISE
from sinkd.lab.distill_spec import spec as distill_spec
from sinkd.lab.divergence_lab_spec import SPEC
from sinkd.lab.spec import LAMBDA_VALUES
from sinkd.lab.style import LABELS
from sinkd.lab.transport_spec import SPEC as TRANSPORT
from sinkd.lab.verify_spec import SPEC as VERIFY

FIRST = next(iter(SPEC.presets))


def key(name: str) -> str:
    return f"divergence_lab_{name}"


def reveal_key(preset: str) -> str:
    return key(f"reveal_{list(SPEC.presets).index(preset)}")


def first_figure(at: AppTest) -> dict:
    """The figure the page draws first, as Plotly JSON."""
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def text_of(at: AppTest) -> str:
    return "\n".join(md.value for md in at.markdown)


@pytest.fixture(scope="module")
def at() -> AppTest:
    """The divergence lab, rendered once with its defaults."""
    return open_page("divergence_lab", timeout=180)


def test_default_view_asks_first_then_reveals_computed_evidence(at):
    """By default: no exception; the first preset's question; the first figure has one panel
    per divergence; the answer and the outcome sentences appear only after the reveal click;
    the SinKD box lines are sinkd's."""
    assert not at.exception and not at.error
    assert at.title[0].value == "Divergence lab"
    preset = SPEC.presets[FIRST]
    assert preset.question and preset.question in text_of(at)
    fig = first_figure(at)
    names = [n for n in toy.FIT_DIVERGENCES if SPEC.defaults[f"use_{n}"]]
    titles = [a["text"] for a in fig["layout"]["annotations"]]
    assert [t.split("</b>")[0].removeprefix("<b>") for t in titles] == [LABELS[n] for n in names]
    assert len({t.get("xaxis", "x") for t in fig["data"]}) == len(names)
    fit = toy.fit_view(SPEC.defaults)
    m = tm.compute_metrics(fit)
    assert not any(s.value.startswith("**Answer:**") for s in at.success)
    assert tm.outcomes(m)[0] not in text_of(at)
    for line in toy_text.sinkd_lines(fit, m):
        assert line in text_of(at)
    at.toggle(key=reveal_key(FIRST)).set_value(True).run()
    assert not at.exception
    assert at.success[0].value == f"**Answer:** {preset.notice}"
    text = text_of(at)
    for line in tm.outcomes(m):
        assert line in text
    for d, claim in preset.claims.items():
        mark = "✅ holds" if claim.holds(m, d) else "❌ does not hold"
        assert f"{mark}: {claim.sentence}" in text
    assert any("deterministic given seed 0" in c.value for c in at.caption)


@pytest.mark.parametrize("preset", list(SPEC.presets))
def test_every_preset_renders_with_its_question(at, preset):
    """Choosing each preset sets its values, asks its question and renders without an exception
    or error; its reveal shows its answer."""
    at.selectbox(key=key("preset")).set_value(preset).run()
    assert not at.exception and not at.error
    values = SPEC.presets[preset].values
    assert at.session_state[key("student")] == values["student"]
    assert at.session_state[key("init_mean")] == values["init_mean"]
    assert SPEC.presets[preset].question in text_of(at)
    at.toggle(key=reveal_key(preset)).set_value(True).run()
    assert not at.exception
    assert at.success[0].value == f"**Answer:** {SPEC.presets[preset].notice}"
    assert [c.key for c in at.get("plotly_chart")] == [
        "divlab_fit", "divlab_losses", "divlab_gradients"]


def test_animation_and_full_table_are_drawn_only_while_their_expanders_are_open(at):
    """The training animation and the table of every metric cost every rerun most of the
    page's drawing: closed (the default) they are not sent at all; opened (the expander's
    state, as a click sets it) they are, the animation with one frame per snapshot."""
    assert "divlab_training" not in [c.key for c in at.get("plotly_chart")]
    assert not at.dataframe and len(at.table) == 1
    at.session_state["divlab_animation"] = True
    at.session_state["divlab_every_metric"] = True
    at.run()
    assert not at.exception
    charts = {c.key: c for c in at.get("plotly_chart")}
    assert list(charts) == ["divlab_fit", "divlab_training", "divlab_losses", "divlab_gradients"]
    fit = toy.fit_view(SPEC.defaults)
    spec = json.loads(charts["divlab_training"].proto.spec)
    assert [f["name"] for f in spec["frames"]] == [str(s) for s in fit.snapshot_steps]
    assert len(at.dataframe) == 1
    assert list(at.dataframe[0].value["divergence"]) == list(at.table[0].value["divergence"])


EXTREMES = [
    # every maximum (steps and T at their maximum in two runs: together they take minutes)
    dict(n_components=4, student="mixture", k=5, init_mean=5.0, init_width=3.0, steps=500,
         n_iters=1, n_bins=160, reg=LAMBDA_VALUES[-1], lr=0.5),
    dict(n_components=4, student="mixture", k=5, steps=10, n_iters=200, reg=LAMBDA_VALUES[-1]),
    # every minimum, free logits, the smallest λ (log-domain Sinkhorn)
    dict(n_components=1, student="free", init_mean=-5.0, init_width=0.05, steps=10, n_iters=1,
         n_bins=20, reg=LAMBDA_VALUES[0], lr=0.001),
    dict(n_components=2, student="mixture", k=1, steps=10, n_iters=200, reg=LAMBDA_VALUES[0]),
]


@pytest.mark.parametrize("values", EXTREMES)
def test_widget_extremes_render(at, values):
    """At the extremes of every slider, number input and the λ control, and with each student
    family, the page renders without an exception or error, its λ the one asked for."""
    at.button(key=key("reset")).click().run()
    if "student" in values:
        at.selectbox(key=key("student")).set_value(values["student"]).run()  # enables k
    widgets = {"n_components": at.slider, "k": at.slider, "init_mean": at.slider,
               "init_width": at.slider, "steps": at.slider, "n_iters": at.slider,
               "n_bins": at.slider, "reg": at.select_slider, "lr": at.number_input}
    for name, value in values.items():
        if name != "student":
            widgets[name](key=key(name)).set_value(value)
    at.run(timeout=300)
    assert not at.exception and not at.error
    assert at.session_state[key("reg")] == values["reg"]
    ticked = [n for n in toy.FIT_DIVERGENCES if at.session_state[key(f"use_{n}")]]
    assert len(first_figure(at)["layout"]["annotations"]) == len(ticked)


@pytest.mark.parametrize("only", toy.FIT_DIVERGENCES)
def test_one_divergence_alone_renders_one_panel(at, only):
    """All divergences off but one: the page renders one panel, titled by that divergence."""
    at.button(key=key("reset")).click().run()
    at.slider(key=key("steps")).set_value(10)
    for name in toy.FIT_DIVERGENCES:
        at.checkbox(key=key(f"use_{name}")).set_value(name == only)
    at.run()
    assert not at.exception and not at.error
    titles = [a["text"] for a in first_figure(at)["layout"]["annotations"]]
    assert len(titles) == 1 and titles[0].startswith(f"<b>{LABELS[only]}</b>")


def test_zero_weights_show_an_error_and_keep_state(at):
    """All teacher weights at 0 give st.error naming 'weights', no exception, state kept, and
    the settings stay on the page so the weights can be fixed."""
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


def test_one_lambda_control_on_every_page():
    """Every page's λ takes its values from LAMBDA_VALUES (1-2-5 steps from 0.001 to 10 with
    the reference 0.1), every preset's λ is one of them, and each value survives a copied link
    (str, then the spec's parse) unchanged."""
    assert LAMBDA_VALUES[0] == 0.001 and LAMBDA_VALUES[-1] == 10.0 and 0.1 in LAMBDA_VALUES
    ratios = [b / a for a, b in zip(LAMBDA_VALUES, LAMBDA_VALUES[1:], strict=False)]
    assert all(r == pytest.approx(2.0) or r == pytest.approx(2.5) for r in ratios)
    distill = distill_spec(["ce", "sinkd"], ["sst2"])
    for spec, name in ((SPEC, "reg"), (TRANSPORT, "lam"), (VERIFY, "reg"), (distill, "reg"),
                       (BATCHWISE, "lam")):
        assert spec.limits[name] == LAMBDA_VALUES
        assert all(p.values.get(name, spec.defaults[name]) in LAMBDA_VALUES
                   for p in spec.presets.values())
        for value in LAMBDA_VALUES:
            assert spec.parse(name, str(value)) == value


@pytest.mark.parametrize("lam", [LAMBDA_VALUES[0], 0.02, LAMBDA_VALUES[-1]])
def test_lambda_in_a_copied_link_restores_the_slider(lam):
    """A link with reg=<λ> opens the lab with the λ control at that value, and the URL the page
    writes back carries the same text."""
    at = open_page("divergence_lab", query={"reg": str(lam), "steps": "10"}, timeout=180)
    assert not at.exception
    slider = at.select_slider(key=key("reg"))
    assert slider.value == lam and slider.label == shell.LAMBDA_LABEL
    assert at.query_params["reg"] == [str(lam)] or at.query_params["reg"] == str(lam)
