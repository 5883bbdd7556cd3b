"""The verification module: its numbers are real, and it detects disagreement too."""

import json
import math

import numpy as np
import ot
import pytest
import torch
from _checks import pot_plan
from scipy.optimize import linear_sum_assignment

from sinkd.lab import verify, verify_figures
from sinkd.lab.batches import sinkd_problem, toy_batch
from sinkd.lab.verify_checks import check, summary_line
from sinkd.lab.verify_limits import EmdLimit, emd_limit, emd_limit_checks
from sinkd.lab.verify_spec import SPEC, from_transport
from sinkd.sinkhorn import sinkhorn


def _by_name(checks):
    return {c.name.split(" (")[0]: c for c in checks}


def test_check_fails_when_error_exceeds_tolerance():
    """A check whose error is above its tolerance, or NaN, is marked failed."""
    assert not check("x", "p", 1e-3, 1e-12).passed
    assert not check("x", "p", float("nan"), 1.0).passed
    assert check("x", "p", 0.0, 0.0).passed


def test_check_problem_detects_a_wrong_solver(monkeypatch):
    """If our solver's cost were off by a little, the POT comparison would fail."""
    real = verify.sinkhorn

    def perturbed(*args, **kwargs):
        res = real(*args, **kwargs)
        object.__setattr__(res, "cost", res.cost * (1 + 1e-6))
        return res

    monkeypatch.setattr(verify, "sinkhorn", perturbed)
    rng = np.random.default_rng(0)
    checks = verify.check_problem(np.ones(4), np.ones(4), rng.random((4, 4)), 0.1, 5)
    by_name = {c.name: c for c in checks}
    assert not by_name["transport cost vs ot.sinkhorn2"].passed


def test_wrong_plan_is_detected(monkeypatch):
    """A plan off by 1e-9 relative fails the plan checks; the cost and gradient checks pass."""
    real = verify.sinkhorn

    def perturbed(*args, **kwargs):
        res = real(*args, **kwargs)
        if kwargs.get("return_log"):  # the run whose plans are compared with POT's
            object.__setattr__(res, "plan", res.plan * (1 + 1e-9))
        return res

    monkeypatch.setattr(verify, "sinkhorn", perturbed)
    a, b, cost = sinkd_problem("aligned", 8, 3)
    checks = _by_name(verify.check_problem(a, b, cost, 0.1, 5))
    assert not checks["plan after every iteration vs ot.sinkhorn"].passed
    assert checks["plan after every iteration vs ot.sinkhorn"].error > 1e-10
    assert not checks["kernel method vs log method"].passed
    assert checks["transport cost vs ot.sinkhorn2"].passed and checks["gradient of the cost"].passed


def test_wrong_gradient_is_detected(monkeypatch):
    """A gradient off by 1e-7 per entry (same cost value) fails the gradient check only."""
    real = verify.sinkhorn

    def perturbed(a, b, cost, *args, **kwargs):
        res = real(a, b, cost, *args, **kwargs)
        if isinstance(cost, torch.Tensor) and cost.requires_grad:
            object.__setattr__(res, "cost", res.cost + 1e-7 * (cost - cost.detach()).sum())
        return res

    monkeypatch.setattr(verify, "sinkhorn", perturbed)
    a, b, cost = sinkd_problem("disjoint", 8, 3)
    checks = _by_name(verify.check_problem(a, b, cost, 0.1, 10))
    gradient = checks["gradient of the cost"]
    assert not gradient.passed and gradient.error == pytest.approx(1e-7, rel=1e-6)
    assert all(c.passed for name, c in checks.items() if name != "gradient of the cost")


def test_plan_and_cost_gaps_are_recomputed_independently():
    """Every per-iteration gap equals max|P_ours(t) - P_POT(t)| recomputed from separate runs."""
    a, b, cost = sinkd_problem("shuffled", 12, 4, noise=1.0, seed=3)
    T = 9
    res = verify.compare_problem(a, b, cost, 0.05, T, every_iteration=True)
    assert res.iterations == list(range(1, T + 1))
    for t in res.iterations:
        ours = sinkhorn(a, b, cost, 0.05, n_iters=t, tol=0)  # a fresh run of t iterations
        ref = pot_plan(a, b, cost, 0.05, t)
        assert abs(np.abs(ours.plan - ref).max() - res.plan_gaps[t - 1]) <= 1e-15
    worst = _by_name(res.checks)["plan after every iteration vs ot.sinkhorn"].error
    assert worst == max(res.plan_gaps)
    pot_cost = ot.sinkhorn2(b, a, cost.T, 0.05, numItermax=T, stopThr=0, warn=False)
    cost_error = abs(float(sinkhorn(a, b, cost, 0.05, n_iters=T, tol=0).cost) - pot_cost)
    assert abs(_by_name(res.checks)["transport cost vs ot.sinkhorn2"].error - cost_error) <= 1e-14


def test_gradient_error_is_recomputed_independently():
    """The gradient check's error is max|dcost/dC ours - POT torch's|, recomputed here."""
    a, b, cost = sinkd_problem("overconfident", 6, 3, seed=1)
    check = _by_name(verify.check_problem(a, b, cost, 0.2, 7))["gradient of the cost"]
    C = torch.tensor(cost, requires_grad=True)
    (ours,) = torch.autograd.grad(sinkhorn(torch.tensor(a), torch.tensor(b), C, 0.2,
                                           n_iters=7, tol=0).cost, C)
    CT = torch.tensor(cost.T.copy(), requires_grad=True)
    (theirs,) = torch.autograd.grad(ot.sinkhorn2(torch.tensor(b), torch.tensor(a), CT, 0.2,
                                                 numItermax=7, stopThr=0, warn=False), CT)
    assert abs(check.error - float((ours - theirs.T).abs().max())) <= 1e-15
    assert check.passed and check.tolerance > check.error


def test_float32_at_small_reg_uses_pot_log_and_reports_the_kernel():
    """At λ = 1e-3 in float32 POT's log solver is the reference and the kernel is only noted."""
    a, b, cost = sinkd_problem("disjoint", 16, 3)
    res = verify.compare_problem(a, b, cost, 1e-3, 20, "float32")
    assert res.pot_method == "sinkhorn_log"
    assert all(c.passed for c in res.checks), [c for c in res.checks if not c.passed]
    assert "kernel method vs log method" not in _by_name(res.checks)
    assert any("kernel" in note for note in res.notes)
    # the float32 bar is looser than float64's, and looser still at smaller reg
    tol32 = verify.tolerances(a, b, cost, 1e-3, "float32")
    assert tol32["plan"] > verify.tolerances(a, b, cost, 1e-3, "float64")["plan"]
    assert tol32["plan"] > verify.tolerances(a, b, cost, 0.1, "float32")["plan"]
    assert tol32["relative"] == pytest.approx(4 * np.finfo(np.float32).eps * cost.max() / 1e-3)


def test_compare_problem_rejects_bad_input():
    """A bad dtype or reg raises ValueError naming the argument."""
    with pytest.raises(ValueError, match="dtype"):
        verify.compare_problem([1.0], [1.0], [[0.0]], 0.1, 3, "float16")
    with pytest.raises(ValueError, match="reg"):
        verify.compare_problem([1.0], [1.0], [[0.0]], -1.0, 3)


def test_sinkd_problem_matches_a_numpy_construction():
    """The SinKD cost is the L1 distance of softmax(z / 2) rows, student by teacher, unit masses."""
    teacher, student = toy_batch("underconfident", 10, 5, 0.7, 4)

    def softmax(z):
        e = np.exp(z / 2.0 - (z / 2.0).max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    expected = np.abs(softmax(student)[:, None, :] - softmax(teacher)[None, :, :]).sum(-1)
    a, b, cost = sinkd_problem("underconfident", 10, 5, 0.7, 4)
    np.testing.assert_allclose(cost, expected, rtol=0, atol=1e-15)
    assert np.array_equal(a, np.ones(10)) and np.array_equal(b, np.ones(10))
    with pytest.raises(ValueError, match="temperature"):
        sinkd_problem("aligned", 4, 3, temperature=0.0)


def test_transport_values_become_the_problem_defaults():
    """The transport page's values are taken under this page's names, clamped into range; a
    lambda that is not one of the shared values, invalid ones, and its latest distillation
    batch keep the defaults."""
    values = {"source": "disjoint", "n": 500, "lam": 0.02, "T": 7, "noise": "x", "c": True}
    assert from_transport(values) == dict(kind="disjoint", n=64, reg=0.02, n_iters=7)
    assert "reg" not in from_transport({**values, "lam": 0.0})
    assert from_transport({"source": "latest distillation batch", "T": 500}) == {"n_iters": 200}
    assert from_transport({}) == {} and SPEC.defaults["n"] == 16


def test_emd_limit_against_an_assignment():
    """Exact OT is scipy's assignment cost / n; converged costs lie in [OT, OT + reg log n^2]."""
    rng = np.random.default_rng(2)
    cost = rng.random((7, 7))
    rows, cols = linear_sum_assignment(cost)
    limit = emd_limit(np.ones(7), np.ones(7), cost)
    assert limit.exact == pytest.approx(cost[rows, cols].sum() / 7, abs=1e-14)
    assert all(limit.converged[:3])
    for c, bound, ok in zip(limit.costs, limit.bounds, limit.converged, strict=True):
        assert not ok or limit.exact - 1e-9 <= c <= limit.exact + bound
    checks = emd_limit_checks(limit=limit, label="p")
    assert len(checks) == sum(limit.converged) and all(c.passed for c in checks)


def test_emd_limit_checks_detect_a_violation():
    """A cost below exact OT, or above the entropic bound, fails; an unconverged one is skipped."""
    limit = EmdLimit(regs=[1.0, 0.1, 0.01], costs=[0.9, 0.5, 0.1], exact=0.5,
                            bounds=[0.2, 0.02, 0.002], converged=[True, True, False],
                            marginal_errors=[0.0, 0.0, 1.0], n_iters=[10, 10, 10], max_cost=1.0)
    first, second = emd_limit_checks(limit=limit)
    assert not first.passed and first.error == pytest.approx(0.2, abs=1e-11)
    assert second.passed
    limit.costs[1] = 0.4
    assert not emd_limit_checks(limit=limit)[1].passed


def test_run_suite_reports_progress_and_problems():
    """The quick suite passes, reports progress to its total and writes strict JSON with curves."""
    calls = []
    report = verify.run_suite(quick=True, seed=1, on_check=lambda d, t: calls.append((d, t)))
    total = calls[-1][1]
    assert [d for d, _ in calls] == list(range(1, total + 1))
    assert len(report.problems) == total - 1 and report.passed
    assert {p.dtype for p in report.problems} == {"float64", "float32"}
    data = json.loads(report.to_json(), parse_constant=lambda c: pytest.fail(c))
    assert data["summary"] == f"{len(report.checks)} checks, all agree within tolerance"
    assert data["problems"][0]["plan_gaps"] == report.problems[0].plan_gaps


def test_summary_and_json_of_failures():
    """A failing check is counted in the summary and non-finite numbers become null in JSON."""
    report = verify.Report(checks=[check("x", "p", 0.0, 1.0),
                                   check("y", "p", math.inf, 1.0)])
    assert summary_line(report.checks) == "1 of 2 checks disagree beyond tolerance"
    data = json.loads(report.to_json())
    assert data["passed"] is False and data["checks"][1]["error"] is None
    assert "disagree" in verify.format_report(report).splitlines()[-1]


def _small_result(dtype="float64"):
    a, b, cost = sinkd_problem("aligned", 5, 3, seed=2)
    return verify.compare_problem(a, b, cost, 0.1, 6, dtype, every_iteration=True)


def test_gap_curve_figure_plots_the_gaps_and_tolerances():
    """The curve's y are the gaps (zeros at FLOOR) on a log axis, with the tolerance lines."""
    res = _small_result()
    fig = verify_figures.gap_curve_figure(res)
    plan, cost, plan_tol, cost_tol = fig.data
    assert list(plan.x) == list(range(1, 7)) and fig.layout.yaxis.type == "log"
    np.testing.assert_array_equal(plan.y, np.maximum(res.plan_gaps, verify_figures.FLOOR))
    np.testing.assert_array_equal(plan.customdata, res.plan_gaps)
    np.testing.assert_array_equal(cost.y, np.maximum(res.cost_gaps, verify_figures.FLOOR))
    assert set(plan_tol.y) == {res.tolerances["plan"]} and set(cost_tol.y) == {
        res.tolerances["cost"]}


def test_timing_and_suite_figures_show_the_measured_numbers():
    """Timing bars and points are the measured times; suite curves are gap / tolerance."""
    results = [_small_result(), _small_result("float32")]
    bars = verify_figures.timing_figure(results)
    assert list(bars.data[0].x) == [r.ours_ms for r in results]
    assert list(bars.data[1].x) == [r.pot_ms for r in results]
    scatter = verify_figures.timing_scatter_figure(results)
    assert [tr.name for tr in scatter.data] == ["float64", "float32", "equal time"]
    assert list(scatter.data[1].y) == [results[1].ours_ms]
    fig = verify_figures.suite_gaps_figure(verify.Report(problems=results))
    assert len(fig.data) == 3 and list(fig.data[-1].y) == [1.0, 1.0]
    ratio = np.asarray(results[1].plan_gaps) / results[1].tolerances["plan"]
    np.testing.assert_allclose(fig.data[1].customdata, ratio, rtol=1e-15)


def test_emd_limit_figure_shows_costs_exact_and_bound():
    """The figure's points are the entropic costs minus ot.emd2, under the line reg log(nm)."""
    cost = np.random.default_rng(0).random((4, 4))
    limit = emd_limit(np.ones(4), np.ones(4), cost, regs=(1.0, 0.1))
    bound, ours = verify_figures.emd_limit_figure(limit).data
    exact = ot.emd2(np.full(4, 0.25), np.full(4, 0.25), cost)
    np.testing.assert_allclose(ours.customdata[:, 0], np.array(limit.costs) - exact, atol=1e-15)
    np.testing.assert_allclose(bound.y, [1.0 * np.log(16), 0.1 * np.log(16)], rtol=1e-15)
    assert ours.marker.symbol == ("circle", "circle") and ours.y.min() > 0
