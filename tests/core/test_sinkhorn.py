"""sinkd.sinkhorn against independent references: POT, a float64 log-sum-exp Sinkhorn written
from the equations (tests/_checks.py), exact OT (ot.emd2, scipy's linear_sum_assignment), and
finite differences (torch.autograd.gradcheck). Inputs, dtypes, batches and bad arguments are in
test_sinkhorn_inputs.py.

Every solver test runs on numpy arrays and on torch tensors: the two ways into the one loop.
"""

from __future__ import annotations

import itertools
import pickle
import warnings

import numpy as np
import ot
import pytest
import torch
from _checks import MASS_KINDS, entropic_bias_bound, logsumexp_sinkhorn, pot_plan, problem
from numpy.testing import assert_allclose
from scipy.optimize import linear_sum_assignment
from torch.autograd import gradcheck

from sinkd import SinkhornConvergenceWarning, SinkhornResult, sinkhorn

METHODS = ("kernel", "log")
INPUTS = ("numpy", "torch")
REGS = (0.01, 0.1, 1.0, 10.0)
CHECKPOINTS = (1, 2, 3, 5, 10, 11, 20, 50, 99, 100, 200)  # iterations compared with POT


def _given(inputs: str, *arrays, dtype=np.float64):
    """The arrays as the solver gets them: numpy arrays, or torch tensors, in ``dtype``."""
    arrays = tuple(np.asarray(x, dtype=dtype) for x in arrays)
    return arrays if inputs == "numpy" else tuple(torch.from_numpy(x) for x in arrays)


def _np(x) -> np.ndarray:
    """A result field as a float64 numpy array, whichever input type produced it."""
    x = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return x.astype(np.float64)


def _solve(*args, **kw) -> SinkhornResult:
    """sinkhorn with every warning an error (a test that expects one asks for it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return sinkhorn(*args, **kw)


def _converged(a, b, C, reg, tol=1e-12, n_iters=100_000, **kw) -> SinkhornResult:
    res = _solve(a, b, C, reg, n_iters=n_iters, tol=tol, **kw)
    assert res.converged
    return res


# 1. POT, iteration by iteration --------------------------------------------------------------


@pytest.mark.parametrize("kind", MASS_KINDS)
@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("inputs", INPUTS)
def test_plan_equals_pot_after_every_iteration(inputs, method, reg, kind):
    """After t = 1..200 iterations, plan == ot.sinkhorn(b, a, C.T, numItermax=t).T to 1e-12 and
    cost == ot.sinkhorn2 (rows then columns is POT's order on the transposed problem): for a
    fresh solve of t iterations and for plan_at(t) of one logged run."""
    a, b, C = problem(7, 7, 5, kind)
    logged = _solve(*_given(inputs, a, b, C), reg, n_iters=200, tol=0, method=method,
                    return_log=True)
    assert logged.method == method and logged.n_iters == 200
    for t in CHECKPOINTS:
        P = pot_plan(a, b, C, reg, t)
        assert np.abs(_np(logged.plan_at(t)) - P).max() <= 1e-12, t
        fresh = _solve(*_given(inputs, a, b, C), reg, n_iters=t, tol=0, method=method)
        assert np.abs(_np(fresh.plan) - P).max() <= 1e-12, t
        pot_cost = ot.sinkhorn2(b, a, C.T, reg, numItermax=t, stopThr=0, warn=False)
        assert float(fresh.cost) == pytest.approx(float(pot_cost), rel=1e-12, abs=1e-13), t
    assert np.abs(_np(logged.plan) - pot_plan(a, b, C, reg, 200)).max() <= 1e-12


@pytest.mark.parametrize("method", [*METHODS, "auto"])
@pytest.mark.parametrize("inputs", INPUTS)
def test_float32_is_pot_float64_to_float32_round_off(inputs, method):
    """float32 inputs give float32 results within 1e-5 of POT run in float64 on the same
    (float32-rounded) numbers, after 1, 20 and 100 iterations."""
    a, b, C = problem(2, 16, 12, "prob")
    a32, b32, C32 = (x.astype(np.float32) for x in (a, b, C))
    for t in (1, 20, 100):
        res = _solve(*_given(inputs, a32, b32, C32, dtype=np.float32), 0.1, n_iters=t, tol=0,
                     method=method)
        assert res.plan.dtype in (np.float32, torch.float32)
        ref = pot_plan(*(x.astype(np.float64) for x in (a32, b32, C32)), 0.1, t)
        assert np.abs(_np(res.plan) - ref).max() <= 1e-5 * ref.max(), t


# 2. the log method where the kernel underflows -------------------------------------------------


@pytest.mark.parametrize("checks", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("reg", [1e-3, 1e-4])
@pytest.mark.parametrize("inputs", INPUTS)
def test_log_equals_logsumexp_reference_where_the_kernel_underflows(inputs, reg, seed, checks):
    """C >= 1 with reg <= 1e-3: every exp(-C / reg) underflows, the kernel method gives NaN; the
    log method (stabilised, or plain log-sum-exp with checks=False) equals the float64
    log-sum-exp reference to 1e-10 after T = 1, 7, 50 and 300 iterations."""
    a, b, C = problem(seed, 9, 6, "prob", offset=1.0)
    given = _given(inputs, a, b, C)
    kernel = sinkhorn(*given, reg, n_iters=5, tol=0, method="kernel")
    assert np.isnan(_np(kernel.plan)).any()
    for T in (1, 7, 50, 300):
        res = _solve(*given, reg, n_iters=T, tol=0, method="log", checks=checks)
        assert res.method == "log"
        assert np.abs(_np(res.plan) - logsumexp_sinkhorn(a, b, C, reg, T)).max() <= 1e-10, T


@pytest.mark.parametrize("reg", [1e-3, 1e-4])
@pytest.mark.parametrize("inputs", INPUTS)
def test_log_history_equals_logsumexp_reference(inputs, reg):
    """A logged tiny-reg run: plan_at(t) equals the reference's plan after t iterations and
    errors[t - 1] its row L1 error, for every t <= 40."""
    a, b, C = problem(4, 6, 8, "unit", offset=1.0)
    res = _solve(*_given(inputs, a, b, C), reg, n_iters=40, tol=0, method="log", return_log=True)
    errors = _np(res.errors)
    for t, P in enumerate(logsumexp_sinkhorn(a, b, C, reg, 40, history=True), start=1):
        assert np.abs(_np(res.plan_at(t)) - P).max() <= 1e-10, t
        assert errors[t - 1] == pytest.approx(np.abs(P.sum(1) - a).sum(), rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("T", [1, 10, 300])
@pytest.mark.parametrize("reg", [0.01, 0.1, 3.0])
@pytest.mark.parametrize("inputs", INPUTS)
def test_kernel_and_log_agree_where_the_kernel_works(inputs, reg, T):
    """Kernel and log methods give the same plan (1e-12), potentials, cost and entropic cost."""
    a, b, C = problem(1, 8, 6, "unit")
    k = _solve(*_given(inputs, a, b, C), reg, n_iters=T, tol=0, method="kernel")
    lg = _solve(*_given(inputs, a, b, C), reg, n_iters=T, tol=0, method="log")
    assert np.abs(_np(k.plan) - _np(lg.plan)).max() <= 1e-12
    assert_allclose(_np(lg.f), _np(k.f), rtol=0, atol=1e-9 * max(1.0, np.abs(_np(k.f)).max()))
    assert float(lg.cost) == pytest.approx(float(k.cost), rel=1e-12)
    assert float(lg.entropic_cost) == pytest.approx(float(k.entropic_cost), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("method", ["kernel", "log", "auto"])
@pytest.mark.parametrize("inputs", INPUTS)
def test_disjoint_float32_case_kernel_nan_log_exact(inputs, method):
    """float32, cost 2 everywhere, reg 0.01, unit masses, N = 16 (the disjoint SinKD case): the
    kernel underflows to NaN; log and auto give the exact plan 1/16 and cost 2N = 32."""
    N = 16
    given = _given(inputs, np.ones(N), np.ones(N), np.full((N, N), 2.0), dtype=np.float32)
    res = _solve(*given, 0.01, n_iters=50, tol=0, method=method)
    if method == "kernel":
        assert np.isnan(_np(res.plan)).any()
        return
    assert res.method == "log"
    assert_allclose(_np(res.plan), np.full((N, N), 1.0 / N), rtol=1e-6, atol=0)
    assert float(res.cost) == pytest.approx(2.0 * N, rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_auto_runs_the_kernel_only_where_it_is_safe(dtype):
    """method='auto' reports "kernel" for a benign C / reg and "log" for a tiny reg or a huge
    cost; C / reg = 100 is inside float64's range and outside float32's (kernel_is_safe)."""
    a, b, C = (x.astype(dtype) for x in problem(0, 6, 5))
    assert _solve(a, b, C, 0.5, n_iters=50, tol=0).method == "kernel"
    assert _solve(a, b, C, 1e-3, n_iters=50, tol=0).method == "log"
    assert _solve(a, b, 800 * C, 1.0, n_iters=50, tol=0).method == "log"
    C = C / C.max()
    expected = "kernel" if dtype == np.float64 else "log"
    assert _solve(a, b, C, 0.01, n_iters=50, tol=0).method == expected


# 3. convergence --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", MASS_KINDS)
@pytest.mark.parametrize("reg", [0.05, 5.0])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("inputs", INPUTS)
def test_converged_plan_meets_both_marginals(inputs, method, reg, kind):
    """At convergence P 1 = a and P^T 1 = b to 1e-10, converged is True, marginal_error small."""
    a, b, C = problem(4, 7, 5, kind)
    res = _converged(*_given(inputs, a, b, C), reg, method=method)
    assert_allclose(_np(res.plan).sum(1), a, rtol=0, atol=1e-10)
    assert_allclose(_np(res.plan).sum(0), b, rtol=0, atol=1e-10)
    assert float(res.marginal_error) <= 1e-10


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("inputs", INPUTS)
def test_tol_stops_at_the_first_multiple_of_ten_below_tol(inputs, method):
    """tol > 0 stops at a multiple of 10 with the row error <= tol; ten iterations fewer it was
    still above tol (it stopped at the first test that passed)."""
    a, b, C = problem(2, 7, 5)
    given = _given(inputs, a, b, C)
    for tol in (1e-3, 1e-9):
        res = _solve(*given, 0.1, n_iters=5000, tol=tol, method=method)
        assert res.converged and res.n_iters < 5000 and res.n_iters % 10 == 0
        assert np.abs(_np(res.plan).sum(1) - a).sum() <= tol
        shorter = _solve(*given, 0.1, n_iters=res.n_iters - 10, tol=0, method=method)
        assert np.abs(_np(shorter.plan).sum(1) - a).sum() > tol


@pytest.mark.parametrize("inputs", INPUTS)
def test_unreached_tol_warns_and_runs_to_n_iters(inputs):
    """tol not reached: SinkhornConvergenceWarning, converged False, exactly n_iters run (23:
    not a multiple of 10)."""
    a, b, C = problem(0, 7, 5)
    with pytest.warns(SinkhornConvergenceWarning, match="did not converge"):
        res = sinkhorn(*_given(inputs, a, b, C), 0.01, n_iters=23, tol=1e-14)
    assert not res.converged and res.n_iters == 23


@pytest.mark.parametrize("n_iters", [1, 7, 10, 23])
def test_tol_zero_runs_exactly_n_iters_without_warning(n_iters):
    """tol = 0 runs exactly n_iters iterations, never warns, and reports converged False."""
    a, b, C = problem(2, 7, 5)
    res = _solve(a, b, C, 0.1, n_iters=n_iters, tol=0, return_log=True)
    assert res.n_iters == n_iters and res.errors.shape == (n_iters,) and res.converged is False


# 4. the limit reg -> 0 -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["prob", "unit"])
def test_cost_tends_to_emd2_as_reg_goes_to_zero(kind):
    """0 <= <P_reg, C> - emd2 <= reg * mass * min(H(a), H(b)), decreasing in reg, and below 1% of
    OT at reg = 1e-3."""
    a, b, C = problem(5, 8, 6, kind)
    exact = ot.emd2(a, b, C)
    gaps = []
    for reg in (1.0, 0.1, 0.01, 0.001):
        gap = float(_converged(a, b, C, reg, tol=1e-11, method="log").cost) - exact
        # a plan within 1e-11 of the marginals can undercut OT by at most ~ 1e-11 * max C
        assert -1e-9 <= gap <= entropic_bias_bound(a, b, reg) + 1e-9, reg
        gaps.append(gap)
    assert all(g1 < g0 for g0, g1 in itertools.pairwise(gaps)), gaps
    assert gaps[-1] < 1e-2 * exact


@pytest.mark.parametrize("seed", [0, 1])
def test_small_reg_plan_rounds_to_the_optimal_assignment(seed):
    """Unit masses, random 6 x 6 cost, reg = 1e-3: the plan rounds to scipy's optimal
    assignment, and its cost is within the entropic bound of the assignment's cost."""
    n, reg = 6, 1e-3
    C = np.random.default_rng(100 + seed).random((n, n))
    rows, cols = linear_sum_assignment(C)
    perm = np.zeros((n, n))
    perm[rows, cols] = 1.0
    ones = np.ones(n)
    res = _solve(ones, ones, C, reg, n_iters=3000, tol=0, method="log")
    assert np.array_equal(np.round(res.plan), perm)
    # P is the exact entropic plan for its own marginals (r, 1): within reg * n * H of OT(r, 1),
    # itself within range(C) * |r - 1|_1 of OT(1, 1)
    r = res.plan.sum(1)
    slack = entropic_bias_bound(r, ones, reg) + np.ptp(C) * np.abs(r - ones).sum() + 1e-12
    assert abs(float(res.cost) - C[rows, cols].sum()) <= slack < 0.05 * C[rows, cols].sum()


# 5. invariances --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_invariances_of_the_converged_plan(method):
    """At convergence: the transposed problem gives the transposed plan; adding a constant to C
    leaves the plan unchanged; scaling C and reg together leaves it unchanged (1e-9)."""
    a, b, C = problem(3, 7, 4, "other")
    P = _converged(a, b, C, 0.1, method=method).plan
    assert np.abs(_converged(b, a, C.T, 0.1, method=method).plan - P.T).max() <= 1e-9
    for shift in (-3.0, 25.0):
        assert np.abs(_converged(a, b, C + shift, 0.1, method=method).plan - P).max() <= 1e-9
    for factor in (1e-2, 300.0):
        Q = _converged(a, b, factor * C, factor * 0.1, method=method).plan
        assert np.abs(Q - P).max() <= 1e-9


# 6. gradients ----------------------------------------------------------------------------------


def _grad_problem(seed=0, n=5, m=4, offset=0.0):
    a, b, C = problem(seed, n, m, "prob", offset=offset)
    x = np.random.default_rng(seed + 1).standard_normal(max(n, m))
    return (torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(C),
            torch.from_numpy(x))


@pytest.mark.parametrize("checks", [True, False])
@pytest.mark.parametrize("method", METHODS)
def test_unrolled_gradient_equals_finite_differences(method, checks):
    """grad='unrolled' is the exact derivative of the T-iteration cost with respect to the cost
    and to both masses (a = softmax(x) keeps the totals equal): gradcheck in float64."""
    a, b, C, x = _grad_problem()
    n, m = C.shape
    kw = dict(reg=0.1, n_iters=12, tol=0, method=method, checks=checks)
    assert gradcheck(lambda C_: sinkhorn(a, b, C_, **kw).cost, (C.clone().requires_grad_(),))
    assert gradcheck(lambda x_: sinkhorn(torch.softmax(x_, 0), b, C, **kw).cost,
                     (x[:n].clone().requires_grad_(),))
    assert gradcheck(lambda x_: sinkhorn(a, torch.softmax(x_, 0), C, **kw).cost,
                     (x[:m].clone().requires_grad_(),))


def test_unrolled_gradient_through_the_log_domain_redo():
    """gradcheck holds where the kernel underflows (C >= 8, reg 0.01): through the exact
    log-domain iterations, with respect to the cost and to a mass."""
    a, b, C, x = _grad_problem(offset=8.0)
    kw = dict(reg=0.01, n_iters=15, tol=0, method="log")
    assert gradcheck(lambda C_: sinkhorn(a, b, C_, **kw).cost, (C.clone().requires_grad_(),))
    assert gradcheck(lambda x_: sinkhorn(torch.softmax(x_, 0), b, C, **kw).cost,
                     (x[: len(a)].clone().requires_grad_(),))


def _far_student(n: int, mean: float, width: float, dtype=torch.float64):
    """A teacher of two modes (at -2 and 2.5) on n bins of [-6, 6], the L1 cost, and the
    (mean, log width) of a Gaussian student whose bin masses (a softmax) have tails far below
    1e-100 (float64) or subnormal (float32)."""
    x = torch.linspace(-6.0, 6.0, n, dtype=torch.float64)
    b = torch.exp(-0.5 * ((x + 2.0) / 0.3) ** 2) + torch.exp(-0.5 * ((x - 2.5) / 0.5) ** 2)
    C = (x[:, None] - x[None, :]).abs()
    theta = torch.tensor([mean, np.log(width)], dtype=dtype)
    return x.to(dtype), (b / b.sum()).to(dtype), C.to(dtype), theta


def _student_cost(theta, x, b, C, reg, n_iters):
    a = torch.softmax(-0.5 * ((x - theta[0]) / theta[1].exp()) ** 2, 0)
    return sinkhorn(a, b, C, reg, n_iters=n_iters, tol=0, method="log").cost


@pytest.mark.parametrize("n, reg, mean, width, n_iters", [
    (40, 0.005, -3.0, 0.3, 20), (40, 0.001, -3.0, 0.05, 100), (80, 0.002, 4.0, 0.05, 20)])
def test_log_gradient_is_exact_where_the_kernel_underflows_on_tiny_masses(
        n, reg, mean, width, n_iters):
    """The divergence lab's hard case, through the default (checked) "log" method: a student
    far from a two-mode teacher, masses down to 1e-190, reg 0.001 to 0.005 (the kernel
    underflows). The unrolled gradient with respect to the student's mean and log width is
    finite and equals finite differences (gradcheck, float64). The stabilised kernel steps'
    backward gave NaN here (inf from a / (K v) times a zero of K)."""
    x, b, C, theta = _far_student(n, mean, width)
    assert gradcheck(lambda t: _student_cost(t, x, b, C, reg, n_iters),
                     (theta.requires_grad_(),))


def test_subnormal_float32_masses_count_as_zero_with_a_finite_gradient():
    """float32 masses with subnormal entries (a float32 softmax's tails): the cost and its
    gradient with respect to the masses are finite (1 / x of a subnormal overflows: inf, and
    NaN once multiplied by a zero) and equal, to float32 precision, the float64 solution of
    the same problem with those entries set to 0 (the solver counts them as zero mass)."""
    x, b, C, theta = _far_student(80, 0.0, 0.3, torch.float32)
    a = torch.softmax(-0.5 * ((x - theta[0]) / theta[1].exp()) ** 2, 0)
    subnormal = (a > 0) & (a < torch.finfo(torch.float32).tiny)
    assert int(subnormal.sum()) >= 2
    kw = dict(reg=0.005, n_iters=5, tol=0, method="log")
    a32 = a.clone().requires_grad_()
    cost32 = sinkhorn(a32, b, C, **kw).cost
    (grad32,) = torch.autograd.grad(cost32, a32)
    a64, b64 = torch.where(subnormal, 0.0, a).double(), b.double()
    a64 = (a64 / a64.sum()).requires_grad_()  # the float32 totals differ by round-off
    cost64 = sinkhorn(a64, b64 / b64.sum(), C.double(), **kw).cost
    (grad64,) = torch.autograd.grad(cost64, a64)
    assert torch.isfinite(grad32).all()
    assert float(cost32.detach()) == pytest.approx(float(cost64.detach()), rel=1e-5)
    bulk = a > 1e-6
    assert_allclose(grad32[bulk].double(), grad64[bulk], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_envelope_gradients_are_the_plan(method):
    """grad='envelope': d cost / dC == P exactly (the plan held constant), and at convergence
    d entropic_cost / dC == P (envelope theorem; also by gradcheck)."""
    a, b, C, _ = _grad_problem(seed=2, n=4, m=5)
    kw = dict(n_iters=100_000, tol=1e-13, method=method, grad="envelope")
    Cr = C.clone().requires_grad_()
    res = _solve(a, b, Cr, 0.2, **kw)
    res.cost.backward(retain_graph=True)  # (entropic_cost shares the graph of cost)
    assert torch.equal(Cr.grad, res.plan.detach())
    Cr.grad = None
    res.entropic_cost.backward()
    torch.testing.assert_close(Cr.grad, res.plan.detach(), rtol=0, atol=1e-15)
    assert gradcheck(lambda C_: _solve(a, b, C_, 0.2, **kw).entropic_cost,
                     (C.clone().requires_grad_(),))


# 7. the result's fields and history ------------------------------------------------------------


@pytest.mark.parametrize("zero_mass", [False, True])
@pytest.mark.parametrize("method,reg", [("kernel", 0.3), ("log", 0.3), ("log", 2e-3)])
@pytest.mark.parametrize("inputs", INPUTS)
def test_result_fields_match_their_definitions(inputs, method, reg, zero_mass):
    """cost = <P, C>; entropic_cost = <P, C> + reg sum P log P; P = exp((f + g - C) / reg);
    marginal_error = |P 1 - a|_1 + |P^T 1 - b|_1 (after 1, 13 and 400 iterations)."""
    a, b, C = problem(5, 6, 7, "other")
    if zero_mass:
        a[2], b[0] = 0.0, 0.0
        a, b = a * (3.7 / a.sum()), b * (3.7 / b.sum())
    for T in (1, 13, 400):
        res = _solve(*_given(inputs, a, b, C), reg, n_iters=T, tol=0, method=method)
        P, f, g = _np(res.plan), _np(res.f), _np(res.g)
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(P > 0, P * np.log(P), 0.0).sum()
            Q = np.exp((f[:, None] + g[None, :] - C) / reg)
        assert float(res.cost) == pytest.approx(np.sum(P * C), rel=1e-13)
        assert float(res.entropic_cost) == pytest.approx(np.sum(P * C) + reg * plogp,
                                                         rel=1e-9, abs=1e-12)
        assert np.abs(Q - P).max() <= 1e-12
        errors = np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum()
        assert float(res.marginal_error) == pytest.approx(errors, rel=1e-9, abs=1e-15)
        assert res.reg == reg and res.method == method and res.n_iters == T


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("inputs", INPUTS)
def test_history_fields(inputs, method):
    """errors (T,), f_history (T, n), g_history (T, m); errors[t - 1] is the row error of
    plan_at(t), whose columns are exact; the last entries are f and g; t outside [1, T] and a
    run without return_log raise ValueError."""
    a, b, C = problem(1, 7, 5, "unit")
    T = 30
    res = _solve(*_given(inputs, a, b, C), 0.2, n_iters=T, tol=0, method=method, return_log=True)
    assert res.errors.shape == (T,) and res.f_history.shape == (T, 7)
    assert res.g_history.shape == (T, 5)
    for t in range(1, T + 1):
        P = _np(res.plan_at(t))
        assert float(res.errors[t - 1]) == pytest.approx(np.abs(P.sum(1) - a).sum(), rel=1e-9,
                                                         abs=1e-14)
        assert_allclose(P.sum(0), b, rtol=0, atol=1e-13)
    assert np.array_equal(_np(res.f_history[-1]), _np(res.f))
    assert np.array_equal(_np(res.g_history[-1]), _np(res.g))
    for bad in (0, T + 1):
        with pytest.raises(ValueError, match=rf"^t must be an integer in \[1, {T}\], got {bad}"):
            res.plan_at(bad)
    plain = _solve(*_given(inputs, a, b, C), 0.2, n_iters=T, tol=0, method=method)
    assert plain.errors is None and plain.f_history is None
    with pytest.raises(ValueError, match="return_log"):
        plain.plan_at(1)


def test_result_pickles_with_its_derived_fields():
    """A result survives pickling (st.cache_data stores results): fields and history equal."""
    C = torch.rand(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    res = sinkhorn(None, None, C, 0.2, n_iters=30, tol=0, return_log=True)
    back = pickle.loads(pickle.dumps(res))
    assert torch.equal(back.plan, res.plan) and torch.equal(back.plan_at(7), res.plan_at(7))
    assert torch.equal(back.f, res.f) and torch.equal(back.entropic_cost, res.entropic_cost)
    assert torch.equal(back.marginal_error, res.marginal_error)
