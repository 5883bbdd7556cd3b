"""AppTest of the Transport plans page: renders everywhere, shows real numbers, notices hold."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from app_pages import open_page
from streamlit.testing.v1 import AppTest

from sinkd import sinkd_loss
from sinkd.lab import plan_figures as figs
from sinkd.lab import plans
from sinkd.lab.batches import DTYPES
from sinkd.lab.plan_numerics import dtype_hazards, underflowed

K = "transport_"
TERM = "SinKD term 10⁻³⟨P_T, D⟩"
LATEST = {"teacher_logits": [[2.0, 0.0, -1.0], [0.0, 1.0, 0.5], [1.0, 1.0, 3.0], [-2.0, 0.0, 0.0]],
          "student_logits": [[1.0, 0.5, 0.0], [0.5, 0.5, 0.5], [0.0, 2.0, 1.0], [0.0, 0.0, 1.0]]}


def _page(query: dict | None = None, latest: dict | None = None) -> AppTest:
    at = open_page("transport", query=query,
                   state=None if latest is None else {"latest_batch": latest})
    assert not at.exception, [e.value for e in at.exception]
    return at


def _values(at: AppTest) -> dict:
    return {name: at.session_state[K + name] for name in
            ("source", "n", "c", "noise", "seed", "tau", "lam", "T", "method", "dtype")}


def _logits(v: dict, latest: dict | None = None):
    return plans.batch_for(v["source"], v["n"], v["c"], v["noise"], v["seed"], latest)


def _metric(at: AppTest, label: str) -> float:
    return float(next(m.value for m in at.metric if m.label == label))


def _expected_term(v: dict, latest: dict | None = None) -> float:
    """sinkd_loss on the same batch and options, computed here."""
    teacher, student = _logits(v, latest)
    dt = DTYPES[v["dtype"]]
    return float(sinkd_loss(torch.tensor(student).to(dt), torch.tensor(teacher).to(dt),
                            reg=v["lam"], n_iters=v["T"], temperature=v["tau"],
                            method=v["method"]))


def _history(v: dict, **change) -> plans.PlanHistory:
    v = {**v, **change}
    teacher, student = _logits(v)
    return plans.plan_history(teacher, student, reg=v["lam"], n_iters=v["T"],
                              method=v["method"], dtype=v["dtype"], temperature=v["tau"])


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_default_view_shows_the_sinkd_term():
    """Default view: no exception, the metric is sinkd_loss on the same batch, four figures."""
    at = _page()
    v = _values(at)
    assert _metric(at, TERM) == pytest.approx(_expected_term(v), rel=1e-5)
    teacher, student = _logits(v)
    level = sinkd_loss(torch.tensor(student), torch.tensor(teacher), reg=0.1, n_iters=20,
                       method="kernel", level="class")
    assert _metric(at, "class-level term 10⁻³ Σᵢ⟨Pᵢ, 1 − I⟩") == pytest.approx(float(level),
                                                                               rel=1e-5)
    charts = _charts(at)
    assert len(charts) == 4 and len(charts[0]["frames"]) == v["T"]
    assert list(at.dataframe[0].value["dtype"]) == ["float64", "float32", "float16"]


# What each preset's notice claims, checked on the values the preset sets.
def _claim_reference(v):
    h = _history(v)
    assert h.col_errors[-1] < 1e-12 < 1e-4 < h.row_errors[-1]
    assert abs(h.costs[-1] - h.costs[-11]) < 0.01 * h.costs[-1]
    assert h.entropies[-1] > math.log(h.n) + 1.0


def _claim_shuffled(v):
    aligned = {**v, "source": "aligned"}
    assert _expected_term(v) == pytest.approx(_expected_term(aligned), rel=1e-9)
    t_s, s_s = _logits(v)
    t_a, s_a = _logits(aligned)
    assert np.array_equal(t_s, t_a) and sorted(map(tuple, s_s)) == sorted(map(tuple, s_a))
    assert np.trace(_history(v).plan) < np.trace(_history(aligned).plan)


def _claim_sharper_or_flatter(v, sharper: bool):
    aligned = {**v, "source": "aligned"}
    assert _expected_term(v) > _expected_term(aligned)
    h, a = _history(v), _history(aligned)
    peak_s, peak_t = h.student_probs.max(1).mean(), h.teacher_probs.max(1).mean()
    assert (peak_s > peak_t) if sharper else (peak_s < peak_t)
    if not sharper:
        assert h.exact_cost > a.exact_cost


def _claim_small_lambda(v):
    h = _history(v)
    assert abs(h.costs[-1] - h.exact_cost) < 0.01 * h.exact_cost
    assert h.entropies[-1] - math.log(h.n) < 0.2


def _claim_large_lambda(v):
    h = _history(v)
    assert abs(h.costs[-1] - h.independent_cost) < 0.02 * h.independent_cost
    assert 2 * math.log(h.n) - h.entropies[-1] < 0.01


def _claim_float16(v):
    assert _history(v).finite
    teacher, student = _logits(v)
    hazards = dtype_hazards(teacher, student, reg=v["lam"], n_iters=v["T"],
                                  temperature=v["tau"])
    assert hazards[2].dtype == "float16" and hazards[2].naive_nan
    assert not any(h.log_nan for h in hazards)
    assert "naive float16 kernel: NaN" in figs.hazard_badge(hazards[2])


def _claim_float32(v):
    h = _history(v)
    assert not h.finite and _history(v, method="log").finite
    assert len(underflowed(h.cost_matrix, v["lam"], "float32")[1]) > 0  # zero columns


CLAIMS = {
    "SinKD reference (aligned)": _claim_reference,
    "shuffled: the pairing is lost": _claim_shuffled,
    "overconfident student": lambda v: _claim_sharper_or_flatter(v, True),
    "underconfident student": lambda v: _claim_sharper_or_flatter(v, False),
    "small λ: near exact OT": _claim_small_lambda,
    "large λ: all blur": _claim_large_lambda,
    "disjoint in float16": _claim_float16,
    "disjoint in float32, λ = 0.01": _claim_float32,
}


def test_every_preset_renders_and_its_notice_holds():
    """Each preset renders, and what its notice claims is true of the values it sets."""
    at = _page()
    names = at.selectbox(key=K + "preset").options
    assert sorted(names) == sorted(CLAIMS)
    for name in names:
        at.selectbox(key=K + "preset").set_value(name).run()
        assert not at.exception, (name, [e.value for e in at.exception])
        v = _values(at)
        assert any(i.value.startswith("**What to notice:**") for i in at.info)  # preset's values
        CLAIMS[name](v)
        history = _history(v)
        if history.finite:
            rel = 5e-3 if v["dtype"] == "float16" else 1e-5
            assert _metric(at, TERM) == pytest.approx(_expected_term(v), rel=rel), name
        else:  # NaN is the lesson: explained, and the log plan is drawn instead
            assert any(w.value.startswith(figs.failure_reason(history)) for w in at.warning)
            assert next(m.value for m in at.metric if m.label == TERM) == "NaN"
        if name == "disjoint in float16":
            assert "naive float16 kernel: NaN" in json.dumps(_charts(at)[0]["layout"])


@pytest.mark.parametrize("widgets", [
    dict(lam=0.001, dtype="float16", method="kernel", T=500, n=64, c=10),
    dict(lam=0.001, dtype="float64", method="kernel", source="disjoint", n=64, c=3, T=100),
    dict(T=1, n=1, c=1, lam=10.0, method="log", noise=0.0, tau=0.5, seed=10_000),
    dict(c=2, n=64, T=100, lam=0.01, dtype="float32", method="log", noise=3.0, tau=10.0),
])
def test_extreme_widgets_explain_never_crash(widgets):
    """Widgets at their extremes: no exception; a NaN is explained and the log plan is shown."""
    at = _page()
    for name, value in widgets.items():
        key = K + name
        if name in ("lam",):
            at.select_slider(key=key).set_value(value)
        elif name in ("method", "dtype"):
            at.radio(key=key).set_value(value)
        elif name == "source":
            at.selectbox(key=key).set_value(value)
        elif name == "seed":
            at.number_input(key=key).set_value(value)
        else:
            at.slider(key=key).set_value(value)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    v = _values(at)
    assert all(v[k] == widgets[k] for k in widgets)
    history = _history(v)
    reason = figs.failure_reason(history)
    if reason is None:
        rel = 5e-3 if v["dtype"] == "float16" else 1e-5
        assert _metric(at, TERM) == pytest.approx(_expected_term(v), rel=rel)
    else:
        assert any(w.value.startswith(reason) for w in at.warning)
    charts = _charts(at)
    assert len(charts[0]["frames"]) == len(figs.frame_steps(v["T"]))
    assert len(charts) == (4 if v["c"] in (2, 3) else 3)


def test_copied_url_restores_the_view():
    """Query parameters set before the run restore every value, and the metric follows them."""
    query = dict(source="overconfident", n="24", c="4", noise="1.5", seed="7", tau="3.0",
                 lam="0.05", T="37", method="log", dtype="float32", sample="5")
    at = _page(query)
    v = _values(at)
    assert v == dict(source="overconfident", n=24, c=4, noise=1.5, seed=7, tau=3.0, lam=0.05,
                     T=37, method="log", dtype="float32")
    assert at.session_state[K + "sample"] == 5
    assert not any(i.value.startswith("**What to notice") for i in at.info)  # not the preset's
    assert _metric(at, TERM) == pytest.approx(_expected_term(v), rel=1e-5)
    assert all(at.query_params[name] == [value] or at.query_params[name] == value
               for name, value in query.items())


def test_latest_distillation_batch_is_an_extra_source():
    """A stored batch is offered and used; without one it is absent and a link falls back."""
    at = _page(latest=LATEST)
    assert plans.LATEST in at.selectbox(key=K + "source").options
    at.selectbox(key=K + "source").set_value(plans.LATEST).run()
    assert not at.exception
    v = _values(at)
    assert _metric(at, TERM) == pytest.approx(_expected_term(v, LATEST), rel=1e-5)
    assert at.slider(key=K + "n").disabled

    at = _page({"source": plans.LATEST})
    assert plans.LATEST not in at.selectbox(key=K + "source").options
    assert at.session_state[K + "source"] == "aligned"
    assert any("No distillation batch" in w.value for w in at.warning)


def test_lambda_sweep_on_demand():
    """The sweep button computes the sweep and adds its figure; the costs are the library's."""
    at = _page()
    assert len(at.get("plotly_chart")) == 4
    at.button(key=K + "sweep_button").click().run()
    assert not at.exception
    charts = _charts(at)
    assert len(charts) == 5
    v = _values(at)
    teacher, student = _logits(v)
    ref = [float(sinkd_loss(torch.tensor(student), torch.tensor(teacher), reg=lam, n_iters=20,
                            method="kernel", scale=1.0)) for lam in plans.LAMBDAS]
    sweep = at.session_state[K + "sweep"][1]
    np.testing.assert_allclose(sweep.costs, ref, rtol=1e-12)
