"""AppTest of "What SinKD matches" (pages/batchwise.py): renders by default and for every preset
(question first, answer and evidence on a click), at every control's extremes, with numbers and
text computed by sinkd.lab.batchwise; bad state is an st.error; robustness counts on a click."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from app_pages import open_page
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from streamlit.testing.v1 import AppTest

from sinkd.lab import batchwise
from sinkd.lab.batchwise_spec import SPEC
from sinkd.lab.batchwise_toy import STUDENTS
from sinkd.lab.spec import LAMBDA_VALUES, Range
from sinkd.lab.style import LABELS

FIRST = next(iter(SPEC.presets))


def key(name: str) -> str:
    return f"batchwise_{name}"


def text_of(at: AppTest) -> str:
    return "\n".join(md.value for md in at.markdown)


def ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.fixture(scope="module")
def at() -> AppTest:
    """The page, rendered once with its defaults (the first preset)."""
    return open_page("batchwise", timeout=120)


def test_default_view_shows_the_clouds_first_and_measured_numbers(at):
    """Default view: no exception; the first preset's question; the first two figures have one
    ternary panel per student between them (KL, SinKD alone and the recipe first); the table
    is the fit's own metrics, its cloud OT equal to an optimal assignment computed here; the
    outcome sentences are the fit's."""
    ok(at)
    assert at.title[0].value == "What SinKD matches"
    assert SPEC.presets[FIRST].question in text_of(at)
    first, more = (json.loads(at.get("plotly_chart")[i].proto.spec) for i in (0, 1))
    assert [t["type"] for t in first["data"] + more["data"]] == (
        ["scatterternary"] * (2 * len(STUDENTS)))
    titles = [a["text"] for a in first["layout"]["annotations"] + more["layout"]["annotations"]]
    assert [re.sub("<[^>]+>", "", t).split("cloud OT")[0] for t in titles] == [
        LABELS[s] for s in ("kl", "sinkd", "recipe", "rkl", "js", "class_ot")]
    assert sorted(("kl", "sinkd", "recipe", "rkl", "js", "class_ot")) == sorted(STUDENTS)
    fit = batchwise.fit_view(SPEC.defaults)
    table = at.table[0].value
    assert list(table["student"])[1:-1] == [LABELS[s] for s in STUDENTS]
    for i in range(len(STUDENTS)):
        p = np.exp(fit.logits[i]) / np.exp(fit.logits[i]).sum(1, keepdims=True)
        D = cdist(p, fit.batch.teacher_probs, "cityblock")
        r, c = linear_sum_assignment(D)
        assert table["cloud OT"].iloc[i + 1] == pytest.approx(D[r, c].mean(), rel=1e-9)
    text = text_of(at)
    for line in batchwise.outcomes(fit):
        assert line in text
    links = [link.proto.label for link in at.get("page_link")]
    assert "Open the divergence lab (1-D, ordered bins)" in links


def test_lambda_is_the_apps_one_control(at):
    """The SinKD term's λ is the shared log-scale select slider over LAMBDA_VALUES."""
    lam = at.select_slider(key=key("lam"))
    assert lam.options == [f"{v:g}" for v in LAMBDA_VALUES]
    assert at.session_state[key("lam")] == SPEC.defaults["lam"]


@pytest.mark.parametrize("name", list(SPEC.presets))
def test_every_preset_asks_then_reveals_the_claims_it_computed(name):
    """Each preset: no exception, its question; a click reveals per student its claim, marked
    held exactly when the claim's predicate holds on a fit computed here."""
    at = open_page("batchwise", timeout=120)
    at.selectbox(key=key("preset")).set_value(name).run()
    ok(at)
    preset = SPEC.presets[name]
    assert preset.question in text_of(at)
    assert not any("✅" in md.value or "❌" in md.value for md in at.markdown)
    at.button(key=key("reveal")).click().run()
    ok(at)
    fit = batchwise.fit_view(preset.values)
    m = batchwise.measurements(fit)
    text = text_of(at)
    assert preset.notice in "\n".join(i.value for i in at.info)
    for s, claim in preset.claims.items():
        mark = "✅" if claim.holds(m, s) else "❌"
        assert f"{mark} **{LABELS[s]}** {claim.sentence}" in text


def _extremes() -> list[tuple[str, object]]:
    out = []
    for name, limit in SPEC.limits.items():
        if isinstance(limit, Range):
            out += [(name, limit.low), (name, limit.high)]
        else:
            out += [(name, limit[0]), (name, limit[-1])]
    return out


@pytest.mark.parametrize("name, value", _extremes())
def test_every_control_extreme_renders(name, value):
    """Every control at either end of its range (others at their defaults, 10 Adam steps
    unless the steps themselves are tested): the page renders with no exception or error."""
    query = {name: str(value)}
    if name != "steps":
        query["steps"] = "10"
    at = open_page("batchwise", query=query, timeout=180)
    ok(at)
    assert at.session_state[key(name)] == value
    assert len(at.get("plotly_chart")) == 4  # two cloud figures, metrics, plan


def test_bad_state_is_an_error_not_a_traceback():
    """A batch size the toy cannot build (injected state, below the slider's range) shows
    st.error naming it, never an exception."""
    at = open_page("batchwise", state={key("n"): 5, key("preset"): FIRST}, timeout=120)
    assert not at.exception
    assert at.error and "n must be" in at.error[0].value


def test_robustness_counts_on_a_click():
    """The button trains the preset's grid and lists, per student, its claim and in how many
    of the 48 runs it held (more than half for every claim)."""
    name = "Batch-wise: every label moved at the start"
    at = open_page("batchwise", timeout=120)
    at.selectbox(key=key("preset")).set_value(name).run()
    at.button(key=key("robustness")).click().run(timeout=180)
    ok(at)
    text = text_of(at)
    for s, claim in SPEC.presets[name].claims.items():
        found = re.search(re.escape(f"**{LABELS[s]}** {claim.sentence}: held in ") +
                          r"(\d+) of (\d+) runs", text)
        assert found and int(found[2]) == 48 and int(found[1]) > 24, s
    assert len(at.get("plotly_chart")) == 5  # and the counts
