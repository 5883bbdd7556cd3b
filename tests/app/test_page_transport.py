"""AppTest of the Transport plans page: renders everywhere, shows real numbers, notices hold,
steps half-steps, flags unconverged class-wise plans, opens the distillation page's batch."""

from __future__ import annotations

import base64
import json
import math
from urllib.parse import parse_qsl

import numpy as np
import ot
import pytest
import torch
from app_pages import open_page
from streamlit.testing.v1 import AppTest

from sinkd import sinkd_loss
from sinkd.lab import plan_figures as figs
from sinkd.lab import plans
from sinkd.lab.batches import DTYPES
from sinkd.lab.plan_numerics import dtype_hazards, underflowed
from sinkd.lab.units import sci

K = "transport_"
TERM = "SinKD term = 0.001 ⟨P_T, D⟩"
CLASS_TERM = "class-wise SinKD term = 0.001 Σᵢ⟨Pᵢ, 1 − I⟩"
SCI = 5e-3  # relative rounding of a number shown with 3 significant digits
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


def _array(x) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array {"dtype", "bdata", "shape"}."""
    if isinstance(x, dict) and "bdata" in x:
        out = np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"])
        shape = x.get("shape")
        return out.reshape([int(k) for k in str(shape).split(",")]) if shape else out
    return np.asarray(x, dtype=float)


def _step(at: AppTest) -> tuple[int, str]:
    return at.session_state[K + "t"], at.session_state[K + "half"]


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
    """Default view: no exception, the metrics are sinkd_loss on the same batch (the term, and
    the cost in the stated unit, scale 1), the plan P_T first, four figures."""
    at = _page()
    v = _values(at)
    assert next(m.value for m in at.metric if m.label == TERM) == sci(_expected_term(v))
    teacher, student = _logits(v)
    cost = sinkd_loss(torch.tensor(student), torch.tensor(teacher), reg=0.1, n_iters=20,
                      method="kernel", scale=1.0)
    assert next(m.value for m in at.metric if m.label == "⟨P_T, D⟩") == sci(float(cost))
    level = sinkd_loss(torch.tensor(student), torch.tensor(teacher), reg=0.1, n_iters=20,
                       method="kernel", level="class")
    assert next(m.value for m in at.metric if m.label == CLASS_TERM) == sci(float(level))
    assert any("before SinKD's 10⁻³ scale" in c.value for c in at.caption)  # the unit, stated
    charts = _charts(at)
    assert len(charts) == 4 and _step(at) == (20, "columns")
    np.testing.assert_array_equal(_array(charts[0]["data"][0]["z"]),
                                  _history(v).plan.astype(np.float32))
    assert list(at.table[0].value["dtype"]) == ["float64", "float32", "float16"]


# What each preset's notice claims, checked on the values the preset sets.
def _claim_reference(v):
    h = _history(v)
    assert h.col_errors[-1] < 1e-12 < 1e-4 < h.row_errors[-1]
    assert abs(h.costs[-1] - h.costs[-11]) < 0.01 * h.costs[-1]
    assert h.entropies[-1] > math.log(h.n) + 1.0
    level = plans.class_level(h)
    assert level.marginal_errors.max() > 0.1 and len(level.below_exact) > 0


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
            rel = 1e-2 if v["dtype"] == "float16" else SCI
            assert _metric(at, TERM) == pytest.approx(_expected_term(v), rel=rel), name
        else:  # NaN is the lesson: explained, and the log plan is drawn instead
            assert any(w.value.startswith(figs.failure_reason(history)) for w in at.warning)
            assert next(m.value for m in at.metric if m.label == TERM) == "nan"
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
        rel = 1e-2 if v["dtype"] == "float16" else SCI
        assert _metric(at, TERM) == pytest.approx(_expected_term(v), rel=rel)
    else:
        assert any(w.value.startswith(reason) for w in at.warning)
    charts = _charts(at)
    assert _step(at) == (v["T"], "columns")  # a new T shows its last plan
    assert len(charts) == (4 if v["c"] in (2, 3) else 3)


def test_copied_url_restores_the_view():
    """Query parameters set before the run restore every value, and the metric follows them."""
    query = dict(source="overconfident", n="24", c="4", noise="1.5", seed="7", tau="3.0",
                 lam="0.05", T="37", method="log", dtype="float32", sample="5", t="9",
                 half="rows")
    at = _page(query)
    v = _values(at)
    assert v == dict(source="overconfident", n=24, c=4, noise=1.5, seed=7, tau=3.0, lam=0.05,
                     T=37, method="log", dtype="float32")
    assert at.session_state[K + "sample"] == 5 and _step(at) == (9, "rows")
    assert not any(i.value.startswith("**What to notice") for i in at.info)  # not the preset's
    assert _metric(at, TERM) == pytest.approx(_expected_term(v), rel=SCI)
    assert all(at.query_params[name] == [value] or at.query_params[name] == value
               for name, value in query.items())


def test_latest_distillation_batch_is_an_extra_source():
    """A stored batch is offered and used; without one it is absent and a link falls back."""
    at = _page(latest=LATEST)
    assert plans.LATEST in at.selectbox(key=K + "source").options
    at.selectbox(key=K + "source").set_value(plans.LATEST).run()
    assert not at.exception
    v = _values(at)
    assert _metric(at, TERM) == pytest.approx(_expected_term(v, LATEST), rel=SCI)
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


def _marks(chart: dict) -> list[float]:
    """x of the convergence figure's "current step" markers, one per panel."""
    return [tr["x"][0] for tr in chart["data"] if tr.get("legendgroup") == "now"]


def test_step_buttons_move_t_and_half_steps():
    """The step buttons walk the half-steps: the plan drawn is the literal numpy loop's at that
    half-step (rows exact after the row scaling, columns after the column scaling), and every
    convergence panel marks it (x = t, or t - 1/2 after the row scaling)."""
    at = _page()
    v = _values(at)
    teacher, student = _logits(v)
    D = plans.batch_problem(teacher, student, temperature=v["tau"]).cost.numpy()
    P, loop = np.exp(-D / v["lam"]), {}
    for t in range(1, v["T"] + 1):  # the reference iteration, both half-steps kept
        P = P / P.sum(1, keepdims=True)
        loop[t, "rows"] = P
        P = P / P.sum(0, keepdims=True)
        loop[t, "columns"] = P
    walk = [("back_half", (20, "rows")), ("back_t", (19, "rows")), ("fwd_half", (19, "columns")),
            ("back_half", (19, "rows")), ("back_half", (18, "columns")),
            ("fwd_t", (19, "columns"))]
    for button, expected in walk:
        at.button(key=K + button).click().run()
        assert not at.exception and _step(at) == expected, button
        charts = _charts(at)
        plan = charts[0]["data"]
        t, half = expected
        np.testing.assert_allclose(_array(plan[0]["z"]), loop[expected], rtol=2e-7, atol=1e-9)
        exact, off = (_array(plan[2]["x"]), _array(plan[1]["y"])) if half == "rows" else (
            _array(plan[1]["y"]), _array(plan[2]["x"]))
        assert np.abs(exact - 1).max() < 1e-12 and np.abs(off - 1).max() > 1e-6
        assert _marks(charts[1]) == [t - 0.5 if half == "rows" else float(t)] * 3
    at.slider(key=K + "t").set_value(1).run()
    at.radio(key=K + "half").set_value("rows").run()
    assert at.button(key=K + "back_half").disabled and at.button(key=K + "back_t").disabled
    np.testing.assert_allclose(_array(_charts(at)[0]["data"][0]["z"]), loop[1, "rows"],
                               rtol=2e-7, atol=1e-9)
    at.slider(key=K + "T").set_value(37).run()  # a new T: its last plan
    assert _step(at) == (37, "columns")
    assert at.button(key=K + "fwd_half").disabled and at.button(key=K + "fwd_t").disabled
    at.selectbox(key=K + "preset").set_value("small λ: near exact OT").run()  # a new preset
    assert _step(at) == (500, "columns")
    fresh = _page({"preset": "small λ: near exact OT"})  # a fresh session opens on P_T too
    assert _step(fresh) == (500, "columns")


def test_unconverged_class_level_is_flagged():
    """The issue's case (defaults: T = 20, λ = 0.1): the class-wise plans' marginal error and
    why their cost sits below exact OT are on the page; converged settings show no flag."""
    at = _page()
    v = _values(at)
    h = _history(v)
    M = 1.0 - np.eye(v["c"])
    level = plans.class_level(h)
    rows = np.abs(level.plans.sum(2) - h.student_probs).sum(1)
    exact = [ot.emd2(h.student_probs[i], h.teacher_probs[i], M) for i in range(v["n"])]
    assert level.costs[0] < exact[0]  # 0.01528 < 0.07645: the defect the flag explains
    flags = [w.value for w in at.warning if "Not converged" in w.value]
    assert len(flags) == 1 and f"{rows.max():.2e}" in flags[0] and "not feasible" in flags[0]
    assert next(m.value for m in at.metric if m.label == "worst marginal error (L1)") == sci(
        float((rows + np.abs(level.plans.sum(1) - h.teacher_probs).sum(1)).max()))
    at.select_slider(key=K + "lam").set_value(0.5)
    at.slider(key=K + "T").set_value(200).run()
    assert not at.exception
    assert not any("Not converged" in w.value for w in at.warning)


def test_link_from_distill_opens_the_last_batch(tmp_path, monkeypatch):
    """The distillation page's link carries the query that opens the transport page on the
    stored batch, also in a session that showed a toy batch before; the query is used once."""
    from sinkd.distill import jobs as distill_jobs
    from sinkd.distill.records import RunRecord, save_record

    monkeypatch.setenv("SINKD_CACHE", str(tmp_path))
    rec = RunRecord(config={"recipe": "sinkd", "steps": 10, "seed": 0},
                    results={"test": 0.8, "best_dev": 0.8, "final_dev": 0.8, "steps_done": 10})
    rec.last_batch = LATEST
    save_record(rec, distill_jobs.runs_dir(tmp_path) / "sinkd-seed0.json")
    distill = open_page("distill", timeout=120)
    assert not distill.exception
    link = next(lk.proto for lk in distill.get("page_link") if "transport plan" in lk.proto.label)
    assert link.page == "transport"  # the page's URL path
    query = dict(parse_qsl(link.query_string))
    assert query == plans.LATEST_QUERY
    batch = distill.session_state["latest_batch"]

    at = _page(query, latest=batch)  # a fresh session following the link
    assert at.session_state[K + "source"] == plans.LATEST and "batch" not in at.query_params
    assert _metric(at, TERM) == pytest.approx(_expected_term(_values(at), LATEST), rel=SCI)

    at = _page()  # a session on the toy batch, then the link
    at.session_state["latest_batch"] = batch
    at.query_params.update(query)
    at.run()
    assert at.session_state[K + "source"] == plans.LATEST
    at.selectbox(key=K + "source").set_value("shuffled").run()  # the choice is kept after
    assert at.session_state[K + "source"] == "shuffled"
