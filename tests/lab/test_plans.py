"""Tests for sinkd.lab.plans, plan_numerics and plan_figures against independent references.

References: POT (ot.sinkhorn on the transposed problem, ot.emd2), scipy (softmax, cdist,
linear_sum_assignment, stats.entropy), closed forms, and the SinKD iteration written out in
numpy ("divide every row by its sum, then every column by its sum").
"""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from scipy.special import softmax
from scipy.stats import entropy

from sinkd import sinkd_loss, sinkhorn
from sinkd.lab import plan_figures as figs
from sinkd.lab import plans
from sinkd.lab.batches import DTYPES
from sinkd.lab.plan_numerics import dtype_hazards, naive_kernel_plan, smallest_positive, underflowed

TAU = 2.0
# the page's "disjoint in float16" preset: toy disjoint batch, N = 16, C = 10, tau = 1, seed 1
DISJOINT16 = dict(kind="disjoint", n=16, n_classes=10, noise=0.5, seed=1, tau=1.0)


def _batch(kind="aligned", n=12, n_classes=3, noise=0.5, seed=0):
    return plans.batch_for(kind, n, n_classes, noise, seed)


def _cost(teacher, student, tau=TAU) -> np.ndarray:
    """D_ij = |p_s_i - p_t_j|_1 by scipy, float64."""
    return cdist(softmax(student / tau, axis=1), softmax(teacher / tau, axis=1), "cityblock")


def _numpy_plan(D: np.ndarray, reg: float, n_iters: int) -> np.ndarray:
    """The reference iteration literally, in float64 numpy, unit masses."""
    P = np.exp(-D / reg)
    for _ in range(n_iters):
        P = P / P.sum(1, keepdims=True)
        P = P / P.sum(0, keepdims=True)
    return P


def _pot_plan(D: np.ndarray, reg: float, t: int) -> np.ndarray:
    ones = np.ones(len(D))
    return ot.sinkhorn(ones, ones, D.T, reg, numItermax=t, stopThr=0, warn=False).T


@pytest.fixture(scope="module")
def history():
    teacher, student = _batch()
    return plans.plan_history(teacher, student, reg=0.1, n_iters=40, method="kernel")


# ----------------------------------------------------------------------------------------------
# the history
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["kernel", "log"])
def test_plan_at_matches_pot_every_iteration(method):
    """plan_at(t) equals POT's plan on the transposed problem after t iterations (float64)."""
    teacher, student = _batch()
    h = plans.plan_history(teacher, student, reg=0.1, n_iters=40, method=method)
    D = _cost(teacher, student)
    np.testing.assert_allclose(h.cost_matrix, D, rtol=0, atol=1e-14)
    for t in (1, 2, 7, 20, 40):
        np.testing.assert_allclose(h.plan_at(t), _pot_plan(D, 0.1, t), rtol=0, atol=1e-12)
    steps = [1, 5, 40]
    np.testing.assert_allclose(h.plans_at(steps), np.stack([h.plan_at(t) for t in steps]),
                               rtol=1e-15, atol=0)


def test_cost_curve_and_term_match_numpy_reference(history):
    """<P_t, D> at every t, and the SinKD term, equal the literal numpy iteration's."""
    teacher, student = _batch()
    D = _cost(teacher, student)
    for t in (1, 10, 40):
        assert history.costs[t - 1] == pytest.approx(float((_numpy_plan(D, 0.1, t) * D).sum()),
                                                     rel=1e-12)
    assert history.sinkd_value == pytest.approx(1e-3 * (_numpy_plan(D, 0.1, 40) * D).sum(),
                                                rel=1e-12)


def test_term_equals_sinkd_loss_in_each_dtype():
    """The history's SinKD value is sinkd_loss on the same logits and options."""
    teacher, student = _batch(n=10)
    for dtype, rel in (("float64", 1e-12), ("float32", 1e-5), ("float16", 5e-3)):
        h = plans.plan_history(teacher, student, reg=0.1, n_iters=20, dtype=dtype)
        dt = DTYPES[dtype]
        ref = sinkd_loss(torch.tensor(student).to(dt), torch.tensor(teacher).to(dt), reg=0.1,
                         n_iters=20, method="kernel")
        assert h.sinkd_value == pytest.approx(float(ref), rel=rel), dtype
        assert h.result.plan.dtype == dt


def test_exact_ot_is_the_assignment_cost(history):
    """With unit masses on N x N, exact OT (emd2) equals the optimal assignment's cost."""
    D = _cost(*_batch())
    rows, cols = linear_sum_assignment(D)
    assert history.exact_cost == pytest.approx(D[rows, cols].sum(), rel=1e-12)
    assert history.exact_cost <= history.costs[-1]


def test_independent_coupling_closed_form(history):
    """The lambda -> infinity plan 1 1^T / N costs N * mean(D)."""
    D = _cost(*_batch())
    assert history.independent_cost == pytest.approx(D.mean() * len(D), rel=1e-13)


def test_entropy_is_scipy_entropy_of_the_normalised_plan(history):
    """H_t = scipy.stats.entropy(P_t.ravel()) (P_t / sum P_t over the N^2 pairs, nats)."""
    for t in (1, 13, 40):
        assert history.entropies[t - 1] == pytest.approx(entropy(history.plan_at(t).ravel()),
                                                         rel=1e-12)
    n = history.n
    assert math.log(n) - 1e-9 <= history.entropies.min()
    assert history.entropies.max() <= 2 * math.log(n)


def test_marginal_errors_recomputed_from_pot(history):
    """Row and column L1 errors at t equal those of POT's plan after t iterations."""
    D = _cost(*_batch())
    for t in (1, 4, 40):
        P = _pot_plan(D, 0.1, t)
        assert history.row_errors[t - 1] == pytest.approx(np.abs(P.sum(1) - 1).sum(), abs=1e-11)
        assert history.col_errors[t - 1] == pytest.approx(np.abs(P.sum(0) - 1).sum(), abs=1e-11)
    assert history.col_errors.max() < 1e-12  # the column step comes last: columns are exact
    assert float(history.result.errors[-1]) == pytest.approx(history.row_errors[-1], abs=1e-12)


def test_bad_options_raise_value_errors_naming_them():
    """Invalid reg, n_iters, method, dtype, temperature or logits raise ValueError naming them."""
    teacher, student = _batch(n=4)
    for kwargs, name in ((dict(reg=0.0), "reg"), (dict(n_iters=0), "n_iters"),
                         (dict(method="auto"), "method"), (dict(dtype="bfloat16"), "dtype"),
                         (dict(temperature=-1.0), "temperature")):
        with pytest.raises(ValueError, match=name):
            plans.plan_history(teacher, student, **kwargs)
    with pytest.raises(ValueError, match="student_logits"):
        plans.plan_history(teacher, student[:3])


def test_latest_batch_source():
    """The distillation page's lists become the batch; a missing or ragged one is a ValueError."""
    latest = {"teacher_logits": [[1.0, 0.0], [0.0, 2.0]], "student_logits": [[0.5, 0.5], [0, 1]]}
    teacher, student = plans.batch_for(plans.LATEST, 1, 1, 0.0, 0, latest)
    np.testing.assert_array_equal(teacher, np.array(latest["teacher_logits"]))
    np.testing.assert_array_equal(student, np.array(latest["student_logits"], dtype=float))
    with pytest.raises(ValueError, match="latest"):
        plans.batch_for(plans.LATEST, 4, 3, 0.5, 0, None)
    with pytest.raises(ValueError, match="teacher_logits"):
        plans.batch_for(plans.LATEST, 4, 3, 0.5, 0, {"teacher_logits": [[1.0], [1.0, 2.0]],
                                                     "student_logits": [[1.0, 2.0]]})


# ----------------------------------------------------------------------------------------------
# numerics: the naive kernel, the hazards table, the explanation
# ----------------------------------------------------------------------------------------------
def test_naive_kernel_matches_sinkhorn_kernel_in_float64():
    """The literal float64 iteration equals sinkd.sinkhorn(method="kernel") to 1e-12."""
    D = _cost(*_batch())
    ones = torch.ones(len(D), dtype=torch.float64)
    for reg, t in ((0.1, 20), (0.05, 60), (1.0, 3)):
        ref = sinkhorn(ones, ones, torch.tensor(D), reg, n_iters=t, tol=0, method="kernel").plan
        np.testing.assert_allclose(naive_kernel_plan(D, reg, t, "float64"), ref.numpy(),
                                   rtol=0, atol=1e-12)


def test_naive_float16_kernel_fails_where_log_does_not():
    """Disjoint preset, lambda = 0.1: the float16 naive kernel is NaN, the log solver finite."""
    b = DISJOINT16
    teacher, student = plans.batch_for(b["kind"], b["n"], b["n_classes"], b["noise"], b["seed"])
    D = _cost(teacher, student, b["tau"])
    assert np.isnan(naive_kernel_plan(D, 0.1, 20, "float16")).any()
    assert np.isfinite(naive_kernel_plan(D, 0.1, 20, "float64")).all()
    D16 = torch.tensor(D).half()
    ones = torch.ones(len(D), dtype=torch.float16)
    log = sinkhorn(ones, ones, D16, 0.1, n_iters=20, tol=0, method="log").plan
    assert log.dtype == torch.float16 and bool(torch.isfinite(log).all())
    # why: a column of K = exp(-D/lambda) is entirely 0 in float16 (numpy's float16 agrees)
    K16 = np.exp(-D.astype(np.float16) / np.float16(0.1))
    rows, cols = underflowed(D, 0.1, "float16")
    assert list(cols) == list(np.flatnonzero((K16 == 0).all(0)))
    assert list(rows) == list(np.flatnonzero((K16 == 0).all(1)))
    assert len(rows) + len(cols) > 0


def test_hazard_table_per_dtype():
    """Each hazard row restates what each solver does in that dtype, recomputed here."""
    teacher, student = _batch("disjoint", n=16)
    hazards = dtype_hazards(teacher, student, reg=0.01, n_iters=20, temperature=TAU)
    assert [h.dtype for h in hazards] == ["float64", "float32", "float16"]
    D = _cost(teacher, student)
    for h in hazards:
        dt = DTYPES[h.dtype]
        ones = torch.ones(len(D), dtype=dt)
        for method, flag in (("kernel", h.kernel_nan), ("log", h.log_nan)):
            P = sinkhorn(ones, ones, torch.tensor(D).to(dt), 0.01, n_iters=20, tol=0,
                         method=method).plan
            assert flag == (not bool(torch.isfinite(P).all())), (h.dtype, method)
        naive = naive_kernel_plan(torch.tensor(D).to(dt).double().numpy(), 0.01, 20, h.dtype)
        assert h.naive_nan == bool(np.isnan(naive).any())
        assert h.limit == pytest.approx(-math.log(smallest_positive(h.dtype)))
        hardest = max(D.min(1).max(), D.min(0).max()) / 0.01
        assert h.min_exponent == pytest.approx(hardest, rel=1e-2 if h.dtype == "float16" else 1e-6)
    by = {h.dtype: h for h in hazards}
    assert not by["float64"].kernel_nan and by["float32"].kernel_nan  # sinkd-method.md's limits
    assert not any(h.log_nan for h in hazards)
    rows = figs.hazard_rows(hazards)
    assert [r["kernel: NaN"] for r in rows] == [h.kernel_nan for h in hazards]
    assert "float32" not in (figs.hazard_badge(by["float64"]) or "")
    assert "sinkd kernel: NaN" in figs.hazard_badge(by["float32"])


def test_failure_reason_states_the_computed_numbers():
    """The explanation names the zero lines of K and the dtype's smallest positive number."""
    teacher, student = _batch("disjoint", n=16)
    h = plans.plan_history(teacher, student, reg=0.01, n_iters=20, dtype="float32")
    assert not h.finite
    text = figs.failure_reason(h)
    K = np.exp(-h.cost_matrix.astype(np.float32) / np.float32(0.01))
    zero_cols = np.flatnonzero((K == 0).all(0))
    assert f"{len(zero_cols)} columns" in text
    assert f"{np.finfo(np.float32).smallest_subnormal:.2e}" in text
    ok = plans.plan_history(teacher, student, reg=0.01, n_iters=20, method="log", dtype="float32")
    assert ok.finite and figs.failure_reason(ok) is None


# ----------------------------------------------------------------------------------------------
# class level and lambda sweep
# ----------------------------------------------------------------------------------------------
def test_class_level_matches_pot_and_sinkd_loss(history):
    """Per-sample class plans equal POT's; the total is sinkd_loss(level="class"); exact = TV."""
    level = plans.class_level(history)
    M = 1.0 - np.eye(3)
    for i in (0, 5):
        a, b = history.student_probs[i], history.teacher_probs[i]
        ref = ot.sinkhorn(b, a, M.T, 0.1, numItermax=40, stopThr=0, warn=False).T
        np.testing.assert_allclose(level.plans[i], ref, rtol=0, atol=1e-12)
        assert level.exact[i] == pytest.approx(ot.emd2(a, b, M), abs=1e-12)
    teacher, student = _batch()
    ref = sinkd_loss(torch.tensor(student), torch.tensor(teacher), reg=0.1, n_iters=40,
                     method="kernel", level="class")
    assert 1e-3 * level.total == pytest.approx(float(ref), rel=1e-12)


def test_lambda_sweep_cost_decreases_towards_exact_ot():
    """Converged: cost nondecreasing in lambda, >= exact OT, the smallest lambda's near it."""
    teacher, student = _batch(n=8)
    sweep = plans.lambda_sweep(teacher, student, n_iters=1000, method="log", repeats=1)
    n = 8
    assert list(sweep.lambdas) == list(plans.LAMBDAS)
    assert np.all(sweep.costs >= sweep.exact_cost - 1e-9)
    assert np.all(np.diff(sweep.costs) >= -1e-9)
    reg = sweep.lambdas[0]
    assert sweep.costs[0] - sweep.exact_cost <= reg * math.log(n * n) * n
    assert sweep.costs[-1] <= sweep.independent_cost + 1e-9
    assert np.all(sweep.seconds_per_iter > 0)
    D = _cost(teacher, student)
    rows, cols = linear_sum_assignment(D)
    assert sweep.exact_cost == pytest.approx(D[rows, cols].sum(), rel=1e-12)
    fig = figs.sweep_figure(sweep)
    np.testing.assert_array_equal(fig.data[0].y, sweep.costs)
    np.testing.assert_array_equal(fig.data[3].y, sweep.marginal_errors)


# ----------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------
def _numpy_half_steps(D: np.ndarray, reg: float, n_iters: int) -> tuple[list, list]:
    """The reference iteration literally, keeping the plan after each row scaling and after
    each column scaling (float64 numpy, unit masses)."""
    P, rows, cols = np.exp(-D / reg), [], []
    for _ in range(n_iters):
        P = P / P.sum(1, keepdims=True)
        rows.append(P)
        P = P / P.sum(0, keepdims=True)
        cols.append(P)
    return rows, cols


def _pot_rows_plan(D: np.ndarray, reg: float, t: int) -> np.ndarray:
    """POT's column-first Sinkhorn (columns, then rows, per iteration) started from one row
    scaling of K = exp(-D/reg): after t - 1 of its iterations its plan is our plan after the
    row scaling of iteration t (its last update is a row scaling)."""
    ones = np.ones(len(D))
    u0 = ones / np.exp(-D / reg).sum(1)  # the first row scaling, v = 1
    return ot.sinkhorn(ones, ones, D, reg, numItermax=t - 1, stopThr=0, warn=False,
                       warmstart=(np.log(u0), np.zeros(len(D))))


@pytest.mark.parametrize("method", ["kernel", "log"])
@pytest.mark.parametrize("reg", [0.1, 0.02])
def test_half_steps_rows_then_columns_exact(method, reg):
    """After the row scaling of every t the rows sum to 1 to 1e-12 (float64), after the column
    scaling the columns do; the half-step curves restate the same sums."""
    teacher, student = _batch()
    h = plans.plan_history(teacher, student, reg=reg, n_iters=30, method=method)
    steps = range(1, 31)
    rows, cols = h.plans_at(steps, "rows"), h.plans_at(steps, "columns")
    assert np.abs(rows.sum(2) - 1).max() < 1e-12
    assert np.abs(cols.sum(1) - 1).max() < 1e-12
    assert np.abs(rows.sum(1) - 1).max() > 1e-3  # the other sums do move: not a trivial law
    np.testing.assert_allclose(h.after_rows.col_errors, np.abs(rows.sum(1) - 1).sum(1),
                               rtol=1e-12, atol=0)
    assert h.after_rows.row_errors.max() < 1e-12 and h.col_errors.max() < 1e-12


@pytest.mark.parametrize("method", ["kernel", "log"])
def test_half_step_plans_equal_numpy_loop_and_pot(method):
    """The plan after each row scaling and after each column scaling equals the literal numpy
    loop's at the same step, and POT's (column-first from one row scaling; transposed)."""
    teacher, student = _batch()
    D = _cost(teacher, student)
    h = plans.plan_history(teacher, student, reg=0.1, n_iters=25, method=method)
    rows, cols = _numpy_half_steps(D, 0.1, 25)
    for t in (1, 2, 3, 10, 25):
        np.testing.assert_allclose(h.plan_at(t, "rows"), rows[t - 1], rtol=0, atol=1e-12)
        np.testing.assert_allclose(h.plan_at(t, "columns"), cols[t - 1], rtol=0, atol=1e-12)
        np.testing.assert_allclose(h.plan_at(t, "rows"), _pot_rows_plan(D, 0.1, t), rtol=0,
                                   atol=1e-12)
        np.testing.assert_allclose(h.plan_at(t, "columns"), _pot_plan(D, 0.1, t), rtol=0,
                                   atol=1e-12)
        assert h.after_rows.costs[t - 1] == pytest.approx((rows[t - 1] * D).sum(), rel=1e-12)
        assert h.after_rows.entropies[t - 1] == pytest.approx(entropy(rows[t - 1].ravel()),
                                                              rel=1e-12)


def test_gap_to_exact_ot_nonnegative_once_converged():
    """A converged plan is feasible, so <P, D> - ot.emd2 >= 0; gaps() is <P_t, D> - emd2."""
    teacher, student = _batch(n=10)
    D = _cost(teacher, student)
    exact = ot.emd2(np.ones(10), np.ones(10), D)
    for reg in (0.1, 0.2, 1.0):
        h = plans.plan_history(teacher, student, reg=reg, n_iters=2000, method="log")
        assert float(h.result.marginal_error) < 1e-9
        np.testing.assert_allclose(h.gaps(), h.costs - exact, rtol=0, atol=1e-12)
        assert h.gaps()[-1] >= 0
        assert h.gaps("rows")[-1] >= -1e-12


def test_step_walks_half_steps_in_order():
    """+1 visits (1, rows), (1, columns), (2, rows), ... (T, columns); +-2 a whole iteration;
    the ends clip."""
    walk, here = [], (1, "rows")
    for _ in range(7):
        walk.append(here)
        here = plans.step(*here, 1, 3)
    assert walk == [(1, "rows"), (1, "columns"), (2, "rows"), (2, "columns"), (3, "rows"),
                    (3, "columns"), (3, "columns")]
    assert plans.step(2, "rows", -2, 3) == (1, "rows")
    assert plans.step(2, "columns", 2, 3) == (3, "columns")
    assert plans.step(1, "columns", -5, 3) == (1, "rows")
    with pytest.raises(ValueError, match="half"):
        plans.step(1, "diagonal", 1, 3)
    with pytest.raises(ValueError, match="t must be"):
        plans.step(4, "rows", 1, 3)


# the issue's case: the page's defaults (aligned, N = 16, C = 3, lambda = 0.1, T = 20)
def _issue_level():
    teacher, student = _batch(n=16)
    h = plans.plan_history(teacher, student, reg=0.1, n_iters=20)
    return h, plans.class_level(h)


def test_unconverged_class_level_is_flagged_with_its_error_and_reason():
    """After T = 20 the class plans miss their masses (rows off by ~0.12 in L1, recomputed
    from the plans), cost below exact OT (TV, by ot.emd2), and the note says so; converged
    settings give no note and costs >= exact OT."""
    h, level = _issue_level()
    M = 1.0 - np.eye(3)
    rows = np.abs(level.plans.sum(2) - h.student_probs).sum(1)
    np.testing.assert_allclose(level.row_errors, rows, rtol=1e-12, atol=1e-15)
    assert 0.1 < rows.max() < 0.15 and not level.converged
    emd = np.array([ot.emd2(h.student_probs[i], h.teacher_probs[i], M) for i in range(16)])
    assert list(level.below_exact) == list(np.flatnonzero(level.costs < emd - 1e-12))
    assert level.costs[0] == pytest.approx(0.01528, abs=1e-5) and emd[0] == pytest.approx(
        0.07645, abs=1e-5)
    note = figs.class_level_note(level, 0.1)
    assert f"{rows.max():.2e}" in note and "not feasible" in note
    assert f"{len(level.below_exact)} of 16 samples cost less than their exact OT" in note
    assert "not converged" in figs.class_plan_figure(level, 0).layout.title.text
    teacher, student = _batch(n=16)
    ok = plans.class_level(plans.plan_history(teacher, student, reg=0.5, n_iters=200))
    assert ok.converged and figs.class_level_note(ok, 0.5) is None
    assert np.all(ok.costs >= emd - 1e-12)  # same batch and tau: the same exact OT
    assert "not converged" not in figs.class_plan_figure(ok, 0).layout.title.text


@pytest.mark.parametrize("half", ["rows", "columns"])
def test_plan_figure_is_the_half_step_plan(history, half):
    """Heatmap z = plan_at(t, half) (float32), bars = its sums; both bar axes cover the
    largest sum and 1; the title names the half-step."""
    fig = figs.plan_figure(history, 1, half, badge="⚠ test")
    P = history.plan_at(1, half)
    np.testing.assert_array_equal(fig.data[0].z, P.astype(np.float32))
    np.testing.assert_allclose(fig.data[1].y, P.sum(0), rtol=1e-14)
    np.testing.assert_allclose(fig.data[2].x, P.sum(1), rtol=1e-14)
    assert fig.layout.yaxis.range[0] == 0 and fig.layout.yaxis.range[1] >= max(P.sum(0).max(), 1)
    assert fig.layout.xaxis3.range[0] == 0 and fig.layout.xaxis3.range[1] >= max(P.sum(1).max(),
                                                                                 1)
    assert max(P.sum(1).max(), P.sum(0).max()) > 1.05  # t = 1: the issue's clipped bars
    assert figs.HALF_TEXT[half] in fig.layout.title.text
    assert fig.layout.annotations[0].text == "⚠ test"
    default = figs.plan_figure(history)  # t = T, after the column scaling
    np.testing.assert_array_equal(default.data[0].z, history.plan.astype(np.float32))


@pytest.mark.parametrize("n", [1, 2, 5, 64])
def test_plan_figure_sample_ticks_are_integers(n):
    """The sample axes tick at integers only (N = 2 gave 0.5 steps), at most 16 of them."""
    h = plans.plan_history(*_batch(n=n), reg=0.1, n_iters=3)
    fig = figs.plan_figure(h)
    for axis in (fig.layout.xaxis2, fig.layout.yaxis2):
        assert axis.tickmode == "array" and 1 <= len(axis.tickvals) <= 16
        assert all(isinstance(v, int) and 0 <= v < n for v in axis.tickvals)
    ticks = list(fig.layout.xaxis2.tickvals)
    assert ticks[0] == 0 and len(set(np.diff(ticks))) <= 1  # evenly spaced from 0
    if n <= 16:
        assert ticks == list(range(n))  # every sample labelled


@pytest.mark.parametrize(("t", "half", "x"), [(7, "columns", 7.0), (7, "rows", 6.5),
                                              (1, "rows", 0.5), (None, "columns", 40.0)])
def test_convergence_figure_marks_the_step_on_every_panel(history, t, half, x):
    """Each panel has a marker at the half-step (x = t, or t - 1/2 after the row scaling) with
    that plan's value, and a vertical line there; errors and gap on log axes."""
    fig = figs.convergence_figure(history, t, half)
    marks = {tr.xaxis: tr for tr in fig.data if tr.legendgroup == "now"}
    assert set(marks) == {"x", "x2", "x3"} and all(tr.x == (x,) for tr in marks.values())
    tt = history.n_iters if t is None else t
    P = history.plan_at(tt, half)
    D = history.cost_matrix
    sums = P.sum(1) if half == "columns" else P.sum(0)  # the sums not exact at that half-step
    assert marks["x"].y[0] == pytest.approx(np.abs(sums - 1).sum(), rel=1e-9)
    assert marks["x2"].y[0] == pytest.approx(abs((P * D).sum() - history.exact_cost), rel=1e-9)
    assert marks["x3"].y[0] == pytest.approx(entropy(P.ravel()), rel=1e-12)
    assert sorted(s.x0 for s in fig.layout.shapes) == [x, x, x]
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis2.type == "log"


def test_convergence_figure_gap_and_fitted_entropy_axis(history):
    """Panel 2 is |<P, D> - emd2| at every half-step (above: line, below: markers); panel 3's
    axis spans the entropy curve, not the independent coupling's 2 log N."""
    fig = figs.convergence_figure(history)
    by = {tr.name: tr for tr in fig.data}
    D = _cost(*_batch())
    exact = ot.emd2(np.ones(len(D)), np.ones(len(D)), D)
    rows, cols = _numpy_half_steps(D, 0.1, history.n_iters)
    gaps = np.array([[(P * D).sum() - exact for P in pair] for pair in zip(rows, cols,
                                                                           strict=True)]).ravel()
    above, below = by["⟨P, D⟩ − exact OT"], next(tr for tr in fig.data
                                                  if tr.name.startswith("exact OT − ⟨P, D⟩"))
    np.testing.assert_allclose(np.nan_to_num(np.asarray(above.y, float)),
                               np.where(gaps > 0, gaps, 0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.nan_to_num(np.asarray(below.y, float)),
                               np.where(gaps < 0, -gaps, 0), rtol=1e-9, atol=1e-12)
    ent = np.concatenate([history.after_rows.entropies, history.entropies])
    lo, hi = fig.layout.yaxis3.range
    assert lo <= ent.min() and ent.max() <= hi
    assert hi < 2 * math.log(history.n)  # the flat-line defect: not stretched to 2 log N
    assert hi - lo < 1.5 * (ent.max() - ent.min()) + 2e-3


def test_cost_metrics_share_one_unit(history):
    """Every cost of the metric row is <P, D> before the 1e-3 scale (numpy loop, emd2), in
    sci() notation; the SinKD term is labelled as 1e-3 times it."""
    from sinkd.lab.units import SINKD_SCALE, sci

    D = _cost(*_batch())
    P = _numpy_plan(D, 0.1, history.n_iters)
    exact = ot.emd2(np.ones(len(D)), np.ones(len(D)), D)
    shown = {label: value for label, value, _ in figs.cost_metrics(history)}
    assert shown["⟨P_T, D⟩"] == sci((P * D).sum())
    assert shown["exact OT (emd2)"] == sci(exact)
    assert shown["gap to exact OT"] == sci((P * D).sum() - exact)
    assert shown[f"SinKD term = {SINKD_SCALE:g} ⟨P_T, D⟩"] == sci(SINKD_SCALE * (P * D).sum())


def _check_lines(fig, history, coords):
    lines = [tr for tr in fig.data if tr.mode == "lines"]
    assert sum(len(tr.meta["entries"]) for tr in lines) == min(3 * history.n, history.n**2)
    P = history.plan
    for tr in lines:
        for k, (i, j, mass) in enumerate(tr.meta["entries"]):
            assert mass == pytest.approx(P[i, j], rel=1e-15)
            assert coords(tr)[3 * k: 3 * k + 2] == pytest.approx(
                [history.student_probs[i, 1], history.teacher_probs[j, 1]])
    lines.sort(key=lambda tr: tr.line.width)
    for narrow, wide in zip(lines, lines[1:], strict=False):
        assert narrow.line.width < wide.line.width
        heaviest = max(m for *_, m in narrow.meta["entries"])
        assert heaviest <= min(m for *_, m in wide.meta["entries"])
    drawn = sorted((m for tr in lines for *_, m in tr.meta["entries"]), reverse=True)
    np.testing.assert_allclose(drawn, np.sort(P.ravel())[::-1][: len(drawn)], rtol=1e-15)


def test_simplex_figure_ternary(history):
    """C = 3: markers at the probabilities; heaviest 3N entries as lines, wider for more mass."""
    fig = figs.simplex_figure(history)
    student, teacher = fig.data[-2], fig.data[-1]
    assert student.type == "scatterternary"
    for tr, p in ((student, history.student_probs), (teacher, history.teacher_probs)):
        np.testing.assert_array_equal(np.stack([tr.a, tr.b, tr.c], 1), p)
    _check_lines(fig, history, lambda tr: list(tr.b))


def test_simplex_figure_two_classes():
    """C = 2: the student at y = 0, the teacher at y = 1, x = p(class 1)."""
    teacher, student = _batch(n_classes=2)
    h = plans.plan_history(teacher, student, reg=0.1, n_iters=20)
    fig = figs.simplex_figure(h)
    np.testing.assert_array_equal(fig.data[-2].x, h.student_probs[:, 1])
    assert set(fig.data[-2].y) == {0} and set(fig.data[-1].y) == {1}
    _check_lines(fig, h, lambda tr: list(tr.x))
    with pytest.raises(ValueError, match="n_classes"):
        figs.simplex_figure(plans.plan_history(*_batch(n_classes=4), reg=0.1, n_iters=2))


def test_class_plan_figure(history):
    """The class-level heatmap shows sample i's C x C plan."""
    level = plans.class_level(history)
    fig = figs.class_plan_figure(level, 3)
    np.testing.assert_array_equal(fig.data[0].z, level.plans[3])
    with pytest.raises(ValueError, match="i must be"):
        figs.class_plan_figure(level, history.n)


def test_sweep_figure_flags_nan_lambdas():
    """Where the kernel solver is NaN in the sweep, the figure names those lambdas."""
    teacher, student = _batch("disjoint", n=16)
    sweep = plans.lambda_sweep(teacher, student, lambdas=(0.005, 0.05, 0.5), method="kernel",
                               dtype="float32", repeats=1)
    z_s, z_t = torch.tensor(student).float(), torch.tensor(teacher).float()
    nan = [not torch.isfinite(sinkd_loss(z_s, z_t, reg=lam, method="kernel")).item()
           for lam in sweep.lambdas]
    assert nan == list(np.isnan(sweep.costs)) and any(nan) and not all(nan)
    texts = [a.text for a in figs.sweep_figure(sweep).layout.annotations]
    failed = ", ".join(f"{x:g}" for x, bad in zip(sweep.lambdas, nan, strict=True) if bad)
    assert f"NaN at λ = {failed}" in texts
