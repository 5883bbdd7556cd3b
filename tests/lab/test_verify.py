"""The verification module: its numbers are real, and it detects disagreement too."""

import json
import math

import numpy as np
import ot
import pytest
import torch
from _checks import pot_plan
from scipy.optimize import linear_sum_assignment

from sinkd import iterations
from sinkd.lab import verify, verify_figures
from sinkd.lab.batches import sinkd_problem, toy_batch
from sinkd.lab.verify_checks import MAX_TOLERANCE, check, relative_error, summary_line
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
    """If our solver's cost were off by 1e-6 relative, the POT comparison would fail."""
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
    """A plan off by 1e-9 relative fails the plan checks (the log method, compared with POT on
    its own, still agrees); the cost and gradient checks pass."""
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
    assert checks["plan after every iteration vs ot.sinkhorn"].error == pytest.approx(1e-9,
                                                                                      rel=1e-3)
    assert checks["log method's plan at T vs ot.sinkhorn"].passed
    assert checks["transport cost vs ot.sinkhorn2"].passed and checks["gradient of the cost"].passed


def test_wrong_gradient_is_detected(monkeypatch):
    """A gradient off by 1e-7 per entry (same cost value) fails the gradient check only; its
    error is 1e-7 relative to the largest entry of POT's gradient."""
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
    C = torch.tensor(cost.T.copy(), requires_grad=True)
    (theirs,) = torch.autograd.grad(ot.sinkhorn2(torch.tensor(b), torch.tensor(a), C, 0.1,
                                                 numItermax=10, stopThr=0, warn=False), C)
    expected = 1e-7 / float(theirs.abs().max())
    assert not gradient.passed and gradient.error == pytest.approx(expected, rel=1e-6)
    assert all(c.passed for name, c in checks.items() if name != "gradient of the cost")


def test_plan_and_cost_gaps_are_recomputed_independently():
    """Every per-iteration error equals max|P_ours(t) - P_POT(t)| / max P_POT(t) recomputed
    from separate runs, and the cost's error |cost - POT's| / POT's."""
    a, b, cost = sinkd_problem("shuffled", 12, 4, noise=1.0, seed=3)
    T = 9
    res = verify.compare_problem(a, b, cost, 0.05, T, every_iteration=True)
    assert res.iterations == list(range(1, T + 1))
    for t in res.iterations:
        ours = sinkhorn(a, b, cost, 0.05, n_iters=t, tol=0)  # a fresh run of t iterations
        ref = pot_plan(a, b, cost, 0.05, t)
        expected = np.abs(ours.plan - ref).max() / ref.max()
        assert abs(expected - res.plan_errors[t - 1]) <= 1e-15
    worst = _by_name(res.checks)["plan after every iteration vs ot.sinkhorn"].error
    assert worst == max(res.plan_errors)
    pot_cost = ot.sinkhorn2(b, a, cost.T, 0.05, numItermax=T, stopThr=0, warn=False)
    cost_error = abs(float(sinkhorn(a, b, cost, 0.05, n_iters=T, tol=0).cost) - pot_cost)
    assert abs(_by_name(res.checks)["transport cost vs ot.sinkhorn2"].error
               - cost_error / pot_cost) <= 1e-14


def test_gradient_error_is_recomputed_independently():
    """The gradient check's error is max|dcost/dC ours - POT torch's| / max|POT torch's|,
    recomputed here, through all T iterations."""
    a, b, cost = sinkd_problem("overconfident", 6, 3, seed=1)
    check = _by_name(verify.check_problem(a, b, cost, 0.2, 30))["gradient of the cost"]
    C = torch.tensor(cost, requires_grad=True)
    (ours,) = torch.autograd.grad(sinkhorn(torch.tensor(a), torch.tensor(b), C, 0.2,
                                           n_iters=30, tol=0).cost, C)
    CT = torch.tensor(cost.T.copy(), requires_grad=True)
    (theirs,) = torch.autograd.grad(ot.sinkhorn2(torch.tensor(b), torch.tensor(a), CT, 0.2,
                                                 numItermax=30, stopThr=0, warn=False), CT)
    expected = float((ours - theirs.T).abs().max() / theirs.abs().max())
    assert abs(check.error - expected) <= 1e-15 and "T=30" in check.name
    assert check.passed and check.tolerance > check.error


def test_float32_at_small_reg_uses_pot_log_and_reports_the_kernel():
    """At λ = 1e-3 in float32 POT's log solver is the reference, the kernel is only noted, and
    every bar is below 1e-2 yet looser than float64's and than at λ = 0.1."""
    a, b, cost = sinkd_problem("disjoint", 16, 3)
    res = verify.compare_problem(a, b, cost, 1e-3, 20, "float32")
    assert res.pot_method == "sinkhorn_log"
    assert all(c.passed for c in res.checks), [c for c in res.checks if not c.passed]
    assert not any("method's plan" in c.name for c in res.checks)
    assert any("kernel" in note for note in res.notes)
    assert all(0 < c.tolerance <= MAX_TOLERANCE for c in res.checks)
    # the float32 bar is looser than float64's, and looser still at smaller reg
    tol32 = verify.tolerances(cost, 1e-3, "float32")
    assert tol32["plan"] > verify.tolerances(cost, 1e-3, "float64")["plan"]
    assert tol32["plan"] > verify.tolerances(cost, 0.1, "float32")["plan"]
    eps = np.finfo(np.float32).eps
    assert tol32["plan"] == pytest.approx(4 * eps * cost.max() / 1e-3)
    assert tol32["gradient"] == pytest.approx(32 * eps * cost.max() / 1e-3)
    assert tol32["gradient_dtype"] == "float32"


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
    """Exact OT of unit masses is scipy's assignment cost (masses' units: total 7); converged
    costs lie in [OT, OT + reg (H(P_reg) - H(P*)) * 7] and that bound under reg log(n^2) * 7."""
    rng = np.random.default_rng(2)
    cost = rng.random((7, 7))
    rows, cols = linear_sum_assignment(cost)
    limit = emd_limit(np.ones(7), np.ones(7), cost)
    assert limit.exact == pytest.approx(cost[rows, cols].sum(), abs=1e-13)
    assert all(limit.converged[:3])
    for c, sharp, loose, ok in zip(limit.costs, limit.entropy_bounds, limit.bounds,
                                   limit.converged, strict=True):
        assert not ok or limit.exact - 1e-9 <= c <= limit.exact + sharp + 1e-9
        assert sharp <= loose
    checks = emd_limit_checks(limit=limit, label="p")
    assert len(checks) == sum(e <= 1e-4 for e in limit.marginal_errors)
    assert all(c.passed and c.tolerance > 0 and c.lower < 0 for c in checks)
    # the error is the gap relative to OT, recomputed here
    first = checks[0]
    assert first.error == pytest.approx((limit.costs[0] - limit.exact) / limit.exact, rel=1e-12)


def test_emd_limit_checks_detect_a_violation():
    """A cost below exact OT, or above the entropic bound, fails; an unconverged run is
    skipped on the page and fails in the suite."""
    limit = EmdLimit(regs=[1.0, 0.1, 0.01], costs=[0.9, 0.5, 0.1], exact=0.5,
                     bounds=[0.2, 0.02, 0.002], entropy_bounds=[0.2, 0.02, 0.002],
                     converged=[True, True, False], marginal_errors=[0.0, 0.0, 1.0],
                     n_iters=[10, 10, 10], max_cost=1.0)
    first, second = emd_limit_checks(limit=limit)
    assert not first.passed and first.error == pytest.approx(0.8, abs=1e-11)
    assert first.tolerance == pytest.approx(0.4, rel=1e-9)
    assert second.passed and second.error == 0.0
    limit.costs[1] = 0.4  # 20 % below exact OT
    assert not emd_limit_checks(limit=limit)[1].passed
    third = emd_limit_checks(limit=limit, require_convergence=True)[2]
    assert not third.passed and "marginals not reached" in third.name


def test_suite_emd_checks_have_small_nonzero_bars():
    """The suite's exact-OT checks: relative gaps inside nonzero bars below 1e-2."""
    checks = emd_limit_checks(seed=3)
    assert len(checks) == 2
    assert all(c.passed and 0 < c.tolerance <= MAX_TOLERANCE and c.error > 0 for c in checks)


def test_run_suite_reports_progress_and_problems():
    """The quick suite passes, reports progress to its total and writes strict JSON with curves;
    no check accepts more than 1e-2 relative, and every tolerance is nonzero."""
    calls = []
    report = verify.run_suite(quick=True, seed=1, on_check=lambda d, t: calls.append((d, t)))
    total = calls[-1][1]
    assert [d for d, _ in calls] == list(range(1, total + 1))
    assert len(report.problems) == total - 1 and report.passed
    assert {p.dtype for p in report.problems} == {"float64", "float32"}
    data = json.loads(report.to_json(), parse_constant=lambda c: pytest.fail(c))
    assert data["summary"] == f"{len(report.checks)} checks, all agree within tolerance"
    assert data["problems"][0]["plan_errors"] == report.problems[0].plan_errors
    assert all(0 < c["tolerance"] <= MAX_TOLERANCE for c in data["checks"])
    assert all(c["ratio"] == c["error"] / c["tolerance"] for c in data["checks"])


def _perturb_every_step(monkeypatch, factor: float) -> None:
    """Our solver, slightly wrong: every iteration step returns its row scaling times
    ``factor`` (all methods run through sinkd.iterations.iterate). POT is untouched."""
    real = iterations.iterate

    def wrong_step(step):
        def stepped(p, s, n):
            out = step(p, s, n)
            return iterations.State(out.alpha, out.beta, out.u * factor, out.v, out.K)
        return stepped

    monkeypatch.setattr(iterations, "iterate",
                        lambda p, step, *args, **kw: real(p, wrong_step(step), *args, **kw))


def test_every_check_fails_when_each_step_is_two_percent_off(monkeypatch):
    """With every iteration step's row scaling 2 % too large (twice the largest bar, 1e-2),
    every check of the quick suite fails: plans, costs, both methods, gradients in float64
    and float32, and the exact-OT limit (its plans never reach their marginals)."""
    _perturb_every_step(monkeypatch, 1.02)
    report = verify.run_suite(quick=True, seed=0)
    assert len(report.checks) > 50
    kinds = {c.name.split(" (")[0].split(":")[0] for c in report.checks}
    assert {"plan after every iteration vs ot.sinkhorn", "transport cost vs ot.sinkhorn2",
            "gradient of the cost", "log method's plan at T vs ot.sinkhorn",
            "transport cost of the converged plan vs ot.emd2, relative"} <= kinds
    passed = [(c.name, c.problem, c.error, c.tolerance) for c in report.checks if c.passed]
    assert passed == []


def test_every_float64_check_fails_at_one_part_in_a_million(monkeypatch):
    """float64 bars are sharp: a row scaling off by 1e-6 fails every float64 check of a
    problem, including at lambda = 0.001 where POT's log solver is the reference."""
    _perturb_every_step(monkeypatch, 1 + 1e-6)
    for reg in (0.001, 0.1):
        a, b, cost = sinkd_problem("shuffled", 12, 4, seed=1)
        checks = verify.check_problem(a, b, cost, reg, 20)
        assert len(checks) >= 3 and not any(c.passed for c in checks), checks


def test_summary_and_json_of_failures():
    """A failing check is counted in the summary and non-finite numbers become null in JSON."""
    report = verify.Report(checks=[check("x", "p", 0.0, 1.0),
                                   check("y", "p", math.inf, 1.0)])
    assert summary_line(report.checks) == "1 of 2 checks disagree beyond tolerance"
    data = json.loads(report.to_json())
    assert data["passed"] is False and data["checks"][1]["error"] is None
    assert "disagree" in verify.format_report(report).splitlines()[-1]


def test_relative_error_and_tolerances():
    """Errors are max|ours - ref| / max|ref| (absolute for a zero reference); the bars are
    max(floor, 4 eps kappa) and max(floor, 32 eps kappa), and a float32 gradient bar that would
    exceed 1e-2 runs in float64 instead."""
    assert relative_error([2.0, 4.0], [2.0, 5.0]) == pytest.approx(0.2, rel=1e-15)
    assert relative_error([1e-3, 0.0], [0.0, 0.0]) == 1e-3
    tol = verify.tolerances([[0.0, 1.0]], 0.1, "float64")
    assert tol["plan"] == tol["cost"] == 1e-12 and tol["gradient"] == 1e-12
    far = verify.tolerances([[0.0, 30.0]], 0.001, "float32")  # kappa = 3e4
    assert far["gradient_dtype"] == "float64" and far["plan_dtype"] == "float64"
    assert far["gradient"] == pytest.approx(32 * np.finfo(np.float64).eps * 3e4)
    near = verify.tolerances([[0.0, 5.0]], 0.001, "float32")  # kappa = 5e3
    assert near["plan_dtype"] == "float32" and near["gradient_dtype"] == "float64"
    with pytest.raises(ValueError, match="dtype"):
        verify.tolerances([[1.0]], 0.1, "float16")


def _small_result(dtype="float64"):
    a, b, cost = sinkd_problem("aligned", 5, 3, seed=2)
    return verify.compare_problem(a, b, cost, 0.1, 6, dtype, every_iteration=True)


def test_gap_curve_figure_plots_the_errors_and_tolerances():
    """The curve's y are the relative errors (zeros at FLOOR) on a log axis, with the
    tolerance lines."""
    res = _small_result()
    fig = verify_figures.gap_curve_figure(res)
    plan, cost, plan_tol, cost_tol = fig.data
    assert list(plan.x) == list(range(1, 7)) and fig.layout.yaxis.type == "log"
    np.testing.assert_array_equal(plan.y, np.maximum(res.plan_errors, verify_figures.FLOOR))
    np.testing.assert_array_equal(plan.customdata, res.plan_errors)
    np.testing.assert_array_equal(cost.y, np.maximum(res.cost_errors, verify_figures.FLOOR))
    assert set(plan_tol.y) == {res.tolerances["plan"]} and set(cost_tol.y) == {
        res.tolerances["cost"]}


def test_timing_and_suite_figures_show_the_measured_numbers():
    """Timing bars are the measured times on an axis from zero, each labelled; suite curves
    are error / tolerance."""
    results = [_small_result(), _small_result("float32")]
    bars = verify_figures.timing_figure(results)
    assert list(bars.data[0].y) == [r.ours_ms for r in results]
    assert list(bars.data[1].y) == [r.pot_ms for r in results]
    assert bars.layout.yaxis.type != "log" and bars.layout.yaxis.range[0] == 0
    assert bars.layout.yaxis.range[1] >= max(r.pot_ms for r in results)
    assert list(bars.data[0].text) == [f"{r.ours_ms:.1e} ms" for r in results]
    scatter = verify_figures.timing_scatter_figure(results)
    assert [tr.name for tr in scatter.data] == ["float64", "float32", "equal time"]
    assert list(scatter.data[1].y) == [results[1].ours_ms]
    fig = verify_figures.suite_gaps_figure(verify.Report(problems=results))
    assert len(fig.data) == 3 and list(fig.data[-1].y) == [1.0, 1.0]
    ratio = np.asarray(results[1].plan_errors) / results[1].tolerances["plan"]
    np.testing.assert_allclose(fig.data[1].customdata, ratio, rtol=1e-15)


def test_emd_limit_figure_shows_costs_exact_and_bounds():
    """The figure's points are the entropic costs minus ot.emd2 (masses' units), under the
    lines reg (H(P) - H(P*)) and reg log(nm)."""
    cost = np.random.default_rng(0).random((4, 4))
    limit = emd_limit(np.ones(4), np.ones(4), cost, regs=(1.0, 0.1))
    loose, sharp, ours = verify_figures.emd_limit_figure(limit).data
    exact = 4 * ot.emd2(np.full(4, 0.25), np.full(4, 0.25), cost)
    np.testing.assert_allclose(ours.customdata[:, 0], np.array(limit.costs) - exact, atol=1e-14)
    np.testing.assert_allclose(loose.y, [4 * np.log(16), 0.4 * np.log(16)], rtol=1e-15)
    assert ours.marker.symbol == ("circle", "circle") and ours.y.min() > 0
    assert all(s <= b for s, b in zip(sharp.y, loose.y, strict=True))


def test_plan_comparison_figure_shows_both_plans_and_their_difference():
    """The three heatmaps are our plan at t, POT's plan at t (recomputed here from POT on the
    transposed problem) and their difference, plans on one colour scale."""
    a, b, cost = sinkd_problem("shuffled", 6, 3, seed=4)
    pair = verify.plans_at(a, b, cost, 0.05, 4, "float32")
    ours, theirs, diff = verify_figures.plan_comparison_figure(pair).data
    ref = pot_plan(a, b, cost, 0.05, 4)
    np.testing.assert_allclose(theirs.z, ref, rtol=0, atol=1e-15)
    np.testing.assert_allclose(ours.z, sinkhorn(a, b, cost, 0.05, n_iters=4, tol=0).plan,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(diff.z, np.asarray(ours.z) - np.asarray(theirs.z))
    assert ours.zmax == theirs.zmax and diff.zmid == 0 and pair.t == 4
    assert 0 < np.abs(diff.z).max() <= 1e-4 * ref.max()  # float32 round-off, not zero
