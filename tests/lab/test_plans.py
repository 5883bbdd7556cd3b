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
@pytest.mark.parametrize("n_iters", [1, 60, 61, 500])
def test_frame_steps(n_iters):
    """At most 60 frames, increasing, always t = 1 and t = T; every t when T <= 60."""
    steps = figs.frame_steps(n_iters)
    assert steps[0] == 1 and steps[-1] == n_iters and len(steps) <= 60
    assert all(a < b for a, b in zip(steps, steps[1:], strict=False))
    if n_iters <= 60:
        assert steps == list(range(1, n_iters + 1))


def test_plan_figure_frames_are_plan_at(history):
    """One frame per chosen t; heatmap z = plan_at(t) (float32), bars = its sums; starts at T."""
    fig = figs.plan_figure(history, max_frames=12, badge="⚠ test")
    steps = figs.frame_steps(history.n_iters, 12)
    assert [f.name for f in fig.frames] == [str(t) for t in steps]
    assert len(fig.layout.sliders[0].steps) == len(steps)
    for frame, t in zip(fig.frames, steps, strict=True):
        P = history.plan_at(t)
        np.testing.assert_array_equal(frame.data[0].z, P.astype(np.float32))
        np.testing.assert_allclose(frame.data[1].y, P.sum(0), rtol=1e-14)
        np.testing.assert_allclose(frame.data[2].x, P.sum(1), rtol=1e-14)
    last = history.plan_at(history.n_iters).astype(np.float32)
    np.testing.assert_array_equal(fig.data[0].z, last)
    assert fig.layout.annotations[0].text == "⚠ test"


def test_convergence_figure_curves(history):
    """The convergence panels plot the history's curves and the two reference values."""
    fig = figs.convergence_figure(history)
    by_name = {tr.name: tr for tr in fig.data}
    np.testing.assert_array_equal(by_name["⟨P_t, D⟩"].y, history.costs)
    np.testing.assert_array_equal(by_name["entropy"].y, history.entropies)
    assert set(by_name["exact OT (emd2)"].y) == {history.exact_cost}
    assert set(by_name["independent coupling (λ → ∞)"].y) == {history.independent_cost}
    assert fig.layout.yaxis.type == "log"


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
