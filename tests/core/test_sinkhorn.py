"""Tests for sinkd.sinkhorn: POT identity, independent log-domain reference, OT laws, gradients."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import ot
import pytest
import torch
from _checks import (
    MASS_KINDS,
    entropic_bias_bound,
    logsumexp_sinkhorn,
    pot_plan,
    problem,
)
from numpy.testing import assert_allclose
from scipy.optimize import linear_sum_assignment
from torch.autograd import gradcheck

from sinkd import SinkhornConvergenceWarning, SinkhornResult, sinkhorn

METHODS = ("kernel", "log")
REGS = tuple(float(r) for r in np.logspace(-2, 1, 4))  # 0.01, 0.1, 1, 10
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


def _t(x, dtype=torch.float64, device="cpu") -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


INPUTS = ("numpy", "torch")  # numpy inputs run the numpy path, tensors the torch path


def _given(inputs: str, *arrays):
    """The arrays as the solver gets them: numpy as they are, or float64 torch tensors."""
    return arrays if inputs == "numpy" else tuple(_t(x) for x in arrays)


def _np(x) -> np.ndarray:
    """A result field as a numpy array, whichever path produced it."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _solve(a, b, C, reg, **kw) -> SinkhornResult:
    """Solve with warnings turned into errors (a test that expects one asks for it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", SinkhornConvergenceWarning)
        return sinkhorn(a, b, C, reg, **kw)


def _converged(a, b, C, reg, tol=1e-12, n_iters=100_000, **kw) -> SinkhornResult:
    res = _solve(a, b, C, reg, n_iters=n_iters, tol=tol, **kw)
    assert res.converged
    return res


# 1. POT identity ---------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1, 2, 5, 20, 200])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", MASS_KINDS)
@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("inputs", INPUTS)
def test_plan_equals_pot_after_t_iterations(inputs, method, reg, kind, seed, T):
    """sinkhorn(a, b, C).plan == ot.sinkhorn(b, a, C.T).T after T iterations; cost == sinkhorn2."""
    a, b, C = problem(seed, 7, 5, kind)
    res = _solve(*_given(inputs, a, b, C), reg, n_iters=T, tol=0, method=method)
    P = pot_plan(a, b, C, reg, T)
    assert res.method == method and res.n_iters == T
    assert np.abs(_np(res.plan) - P).max() <= 1e-12
    assert float(res.cost) == pytest.approx(np.sum(P * C), rel=1e-12, abs=1e-12)
    cost2 = ot.sinkhorn2(b, a, C.T, reg, numItermax=T, stopThr=0, warn=False)
    assert float(res.cost) == pytest.approx(float(cost2), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("kind", ["prob", "unit"])
@pytest.mark.parametrize("reg", [0.01, 1.0, 10.0])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("inputs", INPUTS)
def test_plan_at_every_iteration_equals_pot(inputs, method, reg, kind):
    """plan_at(t) of one logged run == POT with numItermax=t for every t <= T."""
    T = 60
    a, b, C = problem(3, 6, 9, kind)
    res = _solve(*_given(inputs, a, b, C), reg, n_iters=T, tol=0, method=method, return_log=True)
    for t in range(1, T + 1):
        assert np.abs(_np(res.plan_at(t)) - pot_plan(a, b, C, reg, t)).max() <= 1e-12, t
    # exp(f + g - C) vs u K v round-off
    assert np.abs(_np(res.plan_at(T)) - _np(res.plan)).max() <= 1e-13


# 2. kernel vs log, auto --------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1, 10, 300])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("reg", [0.01, 0.1, 3.0])
def test_kernel_and_log_agree(reg, seed, T):
    """Where the kernel is representable, kernel and log methods give the same iterates."""
    a, b, C = problem(seed, 8, 6, "unit")
    k = _solve(a, b, C, reg, n_iters=T, tol=0, method="kernel")
    lg = _solve(a, b, C, reg, n_iters=T, tol=0, method="log")
    assert np.abs(k.plan - lg.plan).max() <= 1e-12
    assert_allclose(lg.f, k.f, rtol=0, atol=1e-9 * max(1.0, np.abs(k.f).max()))
    assert lg.cost == pytest.approx(k.cost, rel=1e-12)
    assert lg.entropic_cost == pytest.approx(k.entropic_cost, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_auto_picks_kernel_for_benign_and_log_for_tiny_reg(dtype):
    """method='auto' runs the kernel when max|C|/reg is small and log when it is large."""
    a, b, C = (_t(x, dtype) for x in problem(0, 6, 5))
    assert _solve(a, b, C, 0.5, n_iters=50, tol=0).method == "kernel"
    assert _solve(a, b, C, 1e-3, n_iters=50, tol=0).method == "log"
    assert _solve(a, b, 800.0 * C, 1.0, n_iters=50, tol=0).method == "log"
    expected = "kernel" if dtype == torch.float64 else "log"  # C / reg = 100: fine in f64, not f32
    assert _solve(a, b, C, 0.01, n_iters=50, tol=0).method == expected


@pytest.mark.parametrize("method", ["kernel", "log", "auto"])
def test_kernel_underflow_gives_nan_log_gives_exact(method):
    """float32, cost 2, reg 0.01, unit masses, N=16: kernel NaN; log/auto give P = 1/16, cost 32."""
    N = 16
    C = torch.full((N, N), 2.0, dtype=torch.float32)
    ones = torch.ones(N, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sinkhorn(ones, ones, C, 0.01, n_iters=50, tol=0, method=method)
    if method == "kernel":
        assert bool(torch.isnan(res.plan).any())
        return
    assert res.method == "log"
    assert bool(torch.isfinite(res.plan).all())
    torch.testing.assert_close(res.plan, torch.full((N, N), 1.0 / N), rtol=1e-6, atol=0)
    assert res.cost.item() == pytest.approx(2.0 * N, rel=1e-6)


# 3. log method vs an independent logsumexp implementation ----------------------------------------


@pytest.mark.parametrize("T", [1, 7, 50, 300])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("reg", [1e-3, 1e-4])
@pytest.mark.parametrize("inputs", INPUTS)
def test_log_matches_plain_logsumexp_for_tiny_reg(inputs, reg, seed, T):
    """Log method == plain float64 logsumexp Sinkhorn (rows then columns) where the kernel fails."""
    a, b, C = problem(seed, 9, 6, "prob", offset=1.0)  # C >= 1: every exp(-C / reg) underflows
    given = _given(inputs, a, b, C)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(_np(sinkhorn(*given, reg, n_iters=T, tol=0, method="kernel").plan)).any()
    res = _solve(*given, reg, n_iters=T, tol=0, method="log")
    assert np.abs(_np(res.plan) - logsumexp_sinkhorn(a, b, C, reg, T)).max() <= 1e-10


@pytest.mark.parametrize("reg", [1e-3, 1e-4])
@pytest.mark.parametrize("inputs", INPUTS)
def test_log_plan_at_matches_plain_logsumexp_every_iteration(inputs, reg):
    """plan_at(t) and errors[t-1] of a logged tiny-reg run match the reference for every t."""
    T = 40
    a, b, C = problem(4, 6, 8, "unit", offset=1.0)
    res = _solve(*_given(inputs, a, b, C), reg, n_iters=T, tol=0, method="log", return_log=True)
    errors = _np(res.errors)
    for t, P in enumerate(logsumexp_sinkhorn(a, b, C, reg, T, history=True), start=1):
        assert np.abs(_np(res.plan_at(t)) - P).max() <= 1e-10, t
        assert errors[t - 1] == pytest.approx(np.abs(P.sum(1) - a).sum(), rel=1e-8, abs=1e-12)


# 4. convergence ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", MASS_KINDS)
@pytest.mark.parametrize("reg", [0.05, 0.5, 5.0])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("inputs", INPUTS)
def test_converged_plan_meets_both_marginals(inputs, method, reg, kind):
    """At convergence P 1 = a and P^T 1 = b, converged is True and marginal_error <= 1e-10."""
    a, b, C = problem(4, 7, 5, kind)
    res = _converged(*_given(inputs, a, b, C), reg, method=method)
    assert_allclose(_np(res.plan).sum(1), a, rtol=0, atol=1e-10)
    assert_allclose(_np(res.plan).sum(0), b, rtol=0, atol=1e-10)
    assert float(res.marginal_error) <= 1e-10
    assert res.n_iters < 100_000


def test_warns_when_n_iters_too_small_for_tol():
    """tol > 0 not reached within n_iters -> SinkhornConvergenceWarning and converged False."""
    a, b, C = problem(0, 7, 5)
    with pytest.warns(SinkhornConvergenceWarning, match="did not converge"):
        res = sinkhorn(a, b, C, 0.01, n_iters=3, tol=1e-12)
    assert not res.converged and res.n_iters == 3


def test_no_warning_and_not_converged_with_tol_zero():
    """tol = 0 runs blind: never warns, converged is False."""
    a, b, C = problem(0, 7, 5)
    res = _solve(a, b, C, 1.0, n_iters=500, tol=0)  # would raise on a warning
    assert res.converged is False


# 5. the limit reg -> 0 ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["prob", "unit"])
@pytest.mark.parametrize("seed", [0, 5])
def test_cost_tends_to_emd2_as_reg_goes_to_zero(seed, kind):
    """0 <= <P_reg, C> - emd2 <= reg * mass * min(H(a), H(b)), decreasing in reg, -> 0."""
    a, b, C = problem(seed, 8, 6, kind)
    exact = ot.emd2(a, b, C)
    gaps = []
    for reg in (1.0, 0.1, 0.01, 0.001):
        res = _converged(a, b, C, reg, tol=1e-11, method="log")
        gap = float(res.cost) - exact
        # a plan within 1e-11 of the marginals can undercut OT by at most ~ 1e-11 * max C
        assert -1e-9 <= gap <= entropic_bias_bound(a, b, reg) + 1e-9, reg
        gaps.append(gap)
    assert all(g1 < g0 for g0, g1 in itertools.pairwise(gaps)), gaps
    # The bound alone gives ~1% at reg = 1e-3 (reg log 6 = 1.8e-3 vs OT / mass ~ 0.2); the gap is
    # in fact exponentially small once reg is well below the gap between optimal vertices.
    assert gaps[-1] < 1e-2 * exact


def _permutation_margin(C: np.ndarray) -> float:
    """Second-best minus best assignment cost, by brute force (small n)."""
    n = C.shape[0]
    costs = sorted(C[np.arange(n), list(p)].sum() for p in itertools.permutations(range(n)))
    return costs[1] - costs[0]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_small_reg_plan_rounds_to_optimal_permutation(seed):
    """n=6 random cost, unit masses, reg=1e-3: the plan rounds to the assignment optimum."""
    n, reg, T = 6, 1e-3, 3000
    C = np.random.default_rng(100 + seed).random((n, n))
    assert _permutation_margin(C) > 20 * reg  # unique optimum, well separated
    rows, cols = linear_sum_assignment(C)
    perm = np.zeros((n, n))
    perm[rows, cols] = 1.0
    ones = np.ones(n)
    # Plain Sinkhorn converges slowly here (row error ~ 1e-3 after 3000 iterations, ~ 1/T).
    res = _solve(ones, ones, C, reg, n_iters=T, tol=0, method="log")
    assert np.array_equal(np.round(res.plan), perm)
    # P = diag(u) K diag(v) is the exact entropic plan for its own marginals (r, b): its cost is
    # within reg * mass * min(H(r), H(b)) of OT(r, b), itself within range(C) * |r - a|_1 of
    # OT(a, b).
    r = res.plan.sum(1)
    slack = entropic_bias_bound(r, ones, reg) + np.ptp(C) * np.abs(r - ones).sum() + 1e-12
    assert abs(res.cost - C[rows, cols].sum()) <= slack
    assert slack < 0.05 * C[rows, cols].sum()


# 6. invariances ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("method", METHODS)
def test_transposed_problem_gives_transposed_plan(method, seed):
    """sinkhorn(b, a, C^T).plan == sinkhorn(a, b, C).plan^T at convergence."""
    a, b, C = problem(seed, 7, 4, "other")
    P = _converged(a, b, C, 0.1, method=method).plan
    Pt = _converged(b, a, C.T, 0.1, method=method).plan
    assert np.abs(Pt - P.T).max() <= 1e-9


@pytest.mark.parametrize("shift", [-3.0, 0.7, 25.0])
@pytest.mark.parametrize("method", METHODS)
def test_constant_shift_of_cost_leaves_plan_unchanged(method, shift):
    """P(C + c) == P(C): a constant only changes the total by c * mass."""
    a, b, C = problem(2, 6, 5, "unit")
    P = _converged(a, b, C, 0.2, method=method).plan
    Q = _converged(a, b, C + shift, 0.2, method=method).plan
    assert np.abs(P - Q).max() <= 1e-10


@pytest.mark.parametrize("factor", [1e-2, 7.0, 300.0])
@pytest.mark.parametrize("method", ["log", "auto"])
def test_scaling_cost_and_reg_together_leaves_plan_unchanged(method, factor):
    """P(s C, s reg) == P(C, reg): only C / reg matters."""
    a, b, C = problem(3, 6, 8)
    P = _converged(a, b, C, 0.1, method=method).plan
    Q = _converged(a, b, factor * C, factor * 0.1, method=method).plan
    assert np.abs(P - Q).max() <= 1e-10


# 7. gradients ------------------------------------------------------------------------------------


def _grad_problem(seed=0, n=5, m=4, offset=0.0):
    a, b, C = problem(seed, n, m, "prob", offset=offset)
    x = np.random.default_rng(seed + 1).standard_normal(max(n, m))
    return _t(a), _t(b), _t(C), _t(x)


@pytest.mark.parametrize("wrt", ["cost", "a", "b"])
@pytest.mark.parametrize("T", [5, 30])
@pytest.mark.parametrize("method", METHODS)
def test_unrolled_gradient_gradcheck(method, T, wrt):
    """grad='unrolled' gives the exact derivative of the T-iteration cost (cost, a, b)."""
    a, b, C, x = _grad_problem()
    n, m = C.shape
    kw = dict(reg=0.1, n_iters=T, tol=0, method=method)
    if wrt == "cost":
        fn, inp = (lambda C_: sinkhorn(a, b, C_, **kw).cost), C
    elif wrt == "a":  # a = softmax(x) keeps the total mass equal to b's
        fn, inp = (lambda x_: sinkhorn(torch.softmax(x_, 0), b, C, **kw).cost), x[:n]
    else:
        fn, inp = (lambda x_: sinkhorn(a, torch.softmax(x_, 0), C, **kw).cost), x[:m]
    assert gradcheck(fn, (inp.clone().requires_grad_(),))


@pytest.mark.parametrize("T", [5, 30])
def test_unrolled_gradient_through_log_domain_fallback(T):
    """gradcheck holds through the log-domain fallback (kernel underflows: C >= 8, reg 0.01)."""
    a, b, C, x = _grad_problem(offset=8.0)
    kw = dict(reg=0.01, n_iters=T, tol=0, method="log")
    assert gradcheck(lambda C_: sinkhorn(a, b, C_, **kw).cost, (C.clone().requires_grad_(),))
    assert gradcheck(
        lambda x_: sinkhorn(torch.softmax(x_, 0), b, C, **kw).cost,
        (x[: len(a)].clone().requires_grad_(),),
    )


@pytest.mark.parametrize("reg", [0.05, 0.5])
@pytest.mark.parametrize("method", METHODS)
def test_envelope_gradient_of_entropic_cost_is_plan(method, reg):
    """grad='envelope' at convergence: d entropic_cost / dC == P (gradcheck and directly)."""
    a, b, C, _ = _grad_problem(seed=2, n=4, m=5)
    kw = dict(reg=reg, n_iters=100_000, tol=1e-13, method=method, grad="envelope")
    assert gradcheck(lambda C_: _solve(a, b, C_, **kw).entropic_cost, (C.clone().requires_grad_(),))
    Cr = C.clone().requires_grad_()
    res = _solve(a, b, Cr, **kw)
    assert res.converged
    res.entropic_cost.backward()
    torch.testing.assert_close(Cr.grad, res.plan.detach(), rtol=0, atol=1e-15)


@pytest.mark.parametrize("method", METHODS)
def test_envelope_gradient_of_cost_is_plan(method):
    """grad='envelope': d cost / dC == P exactly (the plan is held constant)."""
    a, b, C, _ = _grad_problem(seed=3)
    Cr = C.clone().requires_grad_()
    res = _solve(a, b, Cr, 0.2, n_iters=1000, tol=1e-12, method=method, grad="envelope")
    res.cost.backward()
    assert torch.equal(Cr.grad, res.plan.detach())


@pytest.mark.parametrize("which", ["a", "b"])
def test_envelope_rejects_masses_requiring_grad(which):
    """grad='envelope' differentiates w.r.t. cost only: a or b requiring grad -> ValueError."""
    a, b, C, _ = _grad_problem()
    a = a.clone().requires_grad_(which == "a")
    b = b.clone().requires_grad_(which == "b")
    with pytest.raises(ValueError, match=r"envelope.*a and b must not require grad"):
        sinkhorn(a, b, C, 0.1, grad="envelope")


# 8. batching -------------------------------------------------------------------------------------


def _batch(seed, B, n, m):
    rng = np.random.default_rng(seed)
    C = rng.random((B, n, m))
    a = rng.random((B, n)) + 0.1
    b = rng.random((B, m)) + 0.1
    total = rng.random(B)[:, None] + 0.5
    return a * total / a.sum(-1, keepdims=True), b * total / b.sum(-1, keepdims=True), C


@pytest.mark.parametrize("masses", ["shared", "per_problem"])
@pytest.mark.parametrize("method", METHODS)
def test_batch_equals_loop_of_single_solves(method, masses):
    """A (B, n, m) batch == B independent solves (a, b broadcast from (n,) or given per problem)."""
    B, n, m, reg, T = 5, 6, 4, 0.05, 80
    a, b, C = _batch(7, B, n, m)
    if masses == "shared":
        a, b = a[0] / a[0].sum(), b[0] / b[0].sum()
        a_i, b_i = [a] * B, [b] * B
    else:
        a_i, b_i = list(a), list(b)
    res = _solve(_t(a), _t(b), _t(C), reg, n_iters=T, tol=0, method=method)
    assert res.plan.shape == (B, n, m) and res.cost.shape == (B,) and res.f.shape == (B, n)
    for i in range(B):
        one = _solve(_t(a_i[i]), _t(b_i[i]), _t(C[i]), reg, n_iters=T, tol=0, method=method)
        assert (res.plan[i] - one.plan).abs().max().item() <= 1e-13
        assert res.cost[i].item() == pytest.approx(one.cost.item(), rel=1e-13, abs=1e-15)
        assert res.marginal_error[i].item() == pytest.approx(one.marginal_error.item(), abs=1e-13)


def test_extra_leading_dimensions():
    """Batch shape (2, 3): every problem equals its own single solve."""
    a, b, C = _batch(8, 6, 5, 3)
    a, b, C = a.reshape(2, 3, 5), b.reshape(2, 3, 3), C.reshape(2, 3, 5, 3)
    res = _solve(_t(a), _t(b), _t(C), 0.3, n_iters=40, tol=0)
    assert res.plan.shape == (2, 3, 5, 3) and res.cost.shape == (2, 3)
    assert res.marginal_error.shape == (2, 3) and res.g.shape == (2, 3, 3)
    for i, j in itertools.product(range(2), range(3)):
        one = _solve(_t(a[i, j]), _t(b[i, j]), _t(C[i, j]), 0.3, n_iters=40, tol=0)
        assert (res.plan[i, j] - one.plan).abs().max().item() <= 1e-13


def test_batch_broadcasts_cost_against_masses():
    """One cost (n, m) with masses (B, n), (B, m) solves B problems on the same cost."""
    a, b, C = _batch(9, 4, 5, 6)
    res = _solve(_t(a), _t(b), _t(C[0]), 0.3, n_iters=40, tol=0)
    assert res.plan.shape == (4, 5, 6)
    for i in range(4):
        one = _solve(_t(a[i]), _t(b[i]), _t(C[0]), 0.3, n_iters=40, tol=0)
        assert (res.plan[i] - one.plan).abs().max().item() <= 1e-13


# 9. dtype, device, numpy, lists, defaults --------------------------------------------------------

TENSOR_FIELDS = ("plan", "cost", "entropic_cost", "f", "g", "marginal_error")


@pytest.mark.parametrize("method", ["kernel", "log", "auto"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_are_preserved(device, dtype, method):
    """Output dtype/device == input's; float32 plan within 1e-5 of the float64 one."""
    a, b, C = problem(1, 8, 4)
    ref = _converged(a, b, C, 0.1, tol=1e-12).plan
    res = _solve(
        _t(a, dtype, device), _t(b, dtype, device), _t(C, dtype, device), 0.1, n_iters=2000,
        tol=1e-6 if dtype == torch.float32 else 1e-12, method=method, return_log=True,
    )
    for name in (*TENSOR_FIELDS, "errors", "f_history", "g_history", "cost_matrix"):
        x = getattr(res, name)
        assert x.dtype == dtype and x.device.type == device.type, name
    assert res.plan_at(1).dtype == dtype
    atol = 1e-5 if dtype == torch.float32 else 1e-11
    assert np.abs(res.plan.cpu().double().numpy() - ref).max() <= atol


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_returns_input_dtype(device, dtype):
    """float16/bfloat16 in: same dtype out, finite, within 1e-2 of float64 on the same cost."""
    n, m = 8, 4  # 1/8 and 1/4 are exact in every dtype, so the masses stay equal
    C = _t(problem(2, n, m)[2], dtype, device)
    a, b = torch.full((n,), 1 / n, dtype=dtype), torch.full((m,), 1 / m, dtype=dtype)
    res = _solve(a.to(device), b.to(device), C, 0.1, n_iters=2000, tol=1e-5)
    for name in TENSOR_FIELDS:
        x = getattr(res, name)
        assert x.dtype == dtype and x.device.type == device.type, name
        assert bool(torch.isfinite(x).all()), name
    ref = _converged(np.full(n, 1 / n), np.full(m, 1 / m), C.double().cpu().numpy(), 0.1).plan
    assert np.abs(res.plan.double().cpu().numpy() - ref).max() <= 1e-2


def test_numpy_in_numpy_out():
    """numpy inputs give numpy float64 outputs equal to the torch results to round-off.

    The numpy path's BLAS sums the products in another order than torch's: the plans agree to a
    few units in the last place (relative 1e-13 after 100 iterations), not bit for bit.
    """
    a, b, C = problem(0, 6, 5)
    res = _solve(a, b, C, 0.1, n_iters=100, tol=0, return_log=True)
    for name in (*TENSOR_FIELDS, "errors", "f_history", "g_history"):
        x = getattr(res, name)
        assert isinstance(x, np.ndarray) and x.dtype == np.float64, name
    assert isinstance(res.plan_at(3), np.ndarray)
    tres = _solve(_t(a), _t(b), _t(C), 0.1, n_iters=100, tol=0)
    assert_allclose(res.plan, tres.plan.numpy(), rtol=1e-13, atol=0)


def test_integer_tensor_cost_gives_floating_plan():
    """An integer tensor cost is computed in floating point and returns a floating plan."""
    C = torch.tensor([[0, 1, 2], [2, 0, 1]])
    res = _solve(None, None, C, 1.0, n_iters=20, tol=0)
    ref = _solve(None, None, C.to(torch.get_default_dtype()), 1.0, n_iters=20, tol=0)
    assert res.plan.is_floating_point() and res.cost.is_floating_point()
    torch.testing.assert_close(res.plan, ref.plan)


def test_list_inputs_are_accepted():
    """Lists are accepted for a, b and cost and give the same plan as arrays."""
    a, b, C = problem(0, 4, 5)
    ref = _solve(a, b, C, 0.3, n_iters=50, tol=0).plan
    P = _solve(a.tolist(), b.tolist(), C.tolist(), 0.3, n_iters=50, tol=0).plan
    assert isinstance(P, np.ndarray) and P.dtype == np.float64
    assert np.array_equal(P, ref)


@pytest.mark.parametrize(
    "which,shape,as_tensor",
    [("both", (4, 8), False), ("both", (1, 3), False), ("a", (3, 4), False),
     ("b", (4, 5), False), ("both", (4, 5), True)],
)
def test_none_masses_mean_exact_uniform(which, shape, as_tensor):
    """a=None / b=None mean uniform 1/n, 1/m in the cost's dtype (float64 here): same plan."""
    n, m = shape
    C = problem(0, n, m)[2]
    a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    ref = _solve(a, b, C, 0.3, n_iters=50, tol=0).plan
    aa = None if which in ("a", "both") else a
    bb = None if which in ("b", "both") else b
    res = _solve(aa, bb, torch.as_tensor(C) if as_tensor else C, 0.3, n_iters=50, tol=0)
    P = res.plan.numpy() if as_tensor else res.plan
    assert P.dtype == np.float64
    assert np.abs(P - ref).max() <= 1e-15
    assert_allclose(P.sum(0), b, rtol=1e-15, atol=0)  # columns exact: b is exactly 1/m


# 10. zero masses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,reg", [("kernel", 0.1), ("log", 0.1), ("auto", 0.1), ("log", 1e-3), ("log", 1e-4)]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_masses_give_zero_rows_and_columns(device, dtype, method, reg):
    """a_i = 0 -> row i of P is 0, b_j = 0 -> column j is 0; nothing is NaN."""
    a, b, C = problem(6, 7, 6)
    a[[1, 4]] = 0.0
    b[2] = 0.0
    a, b = a / a.sum(), b / b.sum()
    res = _solve(
        _t(a, dtype, device), _t(b, dtype, device), _t(C, dtype, device), reg, n_iters=300, tol=0,
        method=method,
    )
    P = res.plan.cpu()
    assert bool(torch.isfinite(P).all())
    assert bool((P[[1, 4]] == 0).all()) and bool((P[:, 2] == 0).all())
    for name in ("cost", "entropic_cost", "marginal_error"):
        assert bool(torch.isfinite(getattr(res, name)).all()), name
    assert not bool(torch.isnan(res.f).any()) and not bool(torch.isnan(res.g).any())
    if dtype == torch.float64:
        ref = logsumexp_sinkhorn(a, b, C, reg, 300)
        assert np.abs(P.numpy() - ref).max() <= 1e-10


@pytest.mark.parametrize("field", ["cost", "entropic_cost"])
@pytest.mark.parametrize("method,reg", [("kernel", 0.1), ("log", 0.1), ("log", 1e-3)])
def test_zero_masses_give_finite_unrolled_gradients(method, reg, field):
    """With a_i = 0, unrolled gradients w.r.t. cost and w.r.t. free mass parameters are finite."""
    a, b, C = problem(6, 5, 4)
    a[1] = 0.0
    a /= a.sum()
    keep = _t(a > 0)
    Cr = _t(C).requires_grad_()
    x = _t(np.random.default_rng(0).standard_normal(5)).requires_grad_()
    aa = torch.softmax(x, 0) * keep
    aa = aa / aa.sum()
    kw = dict(n_iters=30, tol=0, method=method)
    getattr(_solve(_t(a), _t(b), Cr, reg, **kw), field).backward()
    getattr(_solve(aa, _t(b), _t(C), reg, **kw), field).backward()
    assert bool(torch.isfinite(Cr.grad).all()), Cr.grad
    assert bool(torch.isfinite(x.grad).all()), x.grad


# 11. return_log ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_errors_history_and_plan_at(method):
    """errors[t-1] == row L1 error of plan_at(t); shapes (T,), (T, n), (T, m); monotone errors."""
    a, b, C = problem(1, 7, 5, "unit")
    T = 60
    res = _solve(a, b, C, 0.2, n_iters=T, tol=0, method=method, return_log=True)
    assert res.errors.shape == (T,)
    assert res.f_history.shape == (T, 7) and res.g_history.shape == (T, 5)
    for t in range(1, T + 1):
        P = res.plan_at(t)
        assert res.errors[t - 1] == pytest.approx(np.abs(P.sum(1) - a).sum(), rel=1e-9, abs=1e-14)
        assert_allclose(P.sum(0), b, rtol=0, atol=1e-13)  # columns exact after each iteration
    e = res.errors[3:]
    assert np.all(e[1:] <= e[:-1] * (1 + 1e-12) + 1e-15)
    assert np.array_equal(res.f_history[-1], res.f) and np.array_equal(res.g_history[-1], res.g)
    for bad in (0, T + 1, -1):
        with pytest.raises(ValueError, match=r"t must be in"):
            res.plan_at(bad)


def test_plan_at_needs_return_log():
    """Without return_log there is no history: plan_at raises ValueError, fields are None."""
    a, b, C = problem(1, 7, 5)
    res = _solve(a, b, C, 0.2, n_iters=10, tol=0)
    assert res.errors is None and res.f_history is None
    with pytest.raises(ValueError, match="return_log"):
        res.plan_at(1)


def test_errors_history_batched_shape():
    """Batched: errors (T, B), f_history (T, B, n)."""
    a, b, C = _batch(3, 4, 5, 6)
    res = _solve(_t(a), _t(b), _t(C), 0.3, n_iters=12, tol=0, return_log=True)
    assert res.errors.shape == (12, 4) and res.f_history.shape == (12, 4, 5)
    assert res.plan_at(12).shape == (4, 5, 6)


# 12. tol stopping --------------------------------------------------------------------------------


@pytest.mark.parametrize("return_log", [False, True])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-9])
@pytest.mark.parametrize("inputs", INPUTS)
def test_tol_stops_early_on_multiples_of_ten(inputs, tol, method, return_log):
    """tol > 0 stops at a multiple of 10 before n_iters, with the row error <= tol."""
    a, b, C = problem(2, 7, 5)
    given = _given(inputs, a, b, C)
    res = _solve(*given, 0.1, n_iters=5000, tol=tol, method=method, return_log=return_log)
    assert res.converged and res.n_iters < 5000 and res.n_iters % 10 == 0
    assert np.abs(_np(res.plan).sum(1) - a).sum() <= tol
    longer = _solve(*given, 0.1, n_iters=res.n_iters - 10, tol=0, method=method)
    # it stopped at the first check below tol
    assert np.abs(_np(longer.plan).sum(1) - a).sum() > tol
    if return_log:
        assert res.errors.shape == (res.n_iters,)


@pytest.mark.parametrize("n_iters", [1, 7, 10, 23, 100])
def test_tol_zero_runs_exactly_n_iters(n_iters):
    """tol = 0 runs exactly n_iters iterations."""
    a, b, C = problem(2, 7, 5)
    res = _solve(a, b, C, 0.1, n_iters=n_iters, tol=0, return_log=True)
    assert res.n_iters == n_iters and res.errors.shape == (n_iters,)


def test_unreached_tol_runs_to_the_maximum():
    """A tol not reached stops at n_iters even when it is not a multiple of 10."""
    a, b, C = problem(2, 7, 5)
    with pytest.warns(SinkhornConvergenceWarning):
        res = sinkhorn(a, b, C, 0.01, n_iters=23, tol=1e-14)
    assert res.n_iters == 23


# 13. bad input -----------------------------------------------------------------------------------

_A, _B, _C = problem(0, 4, 3)


def _with(**kw):
    args = dict(a=_A, b=_B, cost=_C, reg=0.1)
    args.update(kw)
    return args


def _nan_at(x, idx=0):
    x = np.array(x, dtype=np.float64)
    x.flat[idx] = np.nan
    return x


BAD_INPUTS = {
    "a shape": (_with(a=np.full(5, 0.2)), r"^a must have shape"),
    "b shape": (_with(b=np.full(4, 0.25)), r"^b must have shape"),
    "a scalar": (_with(a=1.0), r"^a must have shape"),
    "cost 1-D": (_with(a=None, b=None, cost=np.ones(3)), r"^cost must have shape"),
    "cost 0-D": (_with(a=None, b=None, cost=np.float64(1.0)), r"^cost must have shape"),
    "cost empty rows": (_with(a=None, b=None, cost=np.ones((0, 3))), r"^cost must have shape"),
    "cost empty cols": (_with(a=None, b=None, cost=np.ones((3, 0))), r"^cost must have shape"),
    "a negative": (_with(a=np.array([0.5, -0.1, 0.3, 0.3])), r"^a must be nonnegative"),
    "b negative": (_with(b=np.array([1.2, -0.1, -0.1])), r"^b must be nonnegative"),
    "masses unequal": (_with(a=_A * 1.01), r"^a and b must have equal total masses"),
    "mass zero": (_with(a=np.zeros(4), b=np.zeros(3)), r"^a must have a positive total mass"),
    "reg zero": (_with(reg=0.0), r"^reg must"),
    "reg negative": (_with(reg=-1.0), r"^reg must"),
    "reg nan": (_with(reg=float("nan")), r"^reg must"),
    "reg inf": (_with(reg=float("inf")), r"^reg must"),
    "reg str": (_with(reg="0.1"), r"^reg must"),
    "n_iters 0": (_with(n_iters=0), r"^n_iters must"),
    "n_iters 1.5": (_with(n_iters=1.5), r"^n_iters must"),
    "n_iters True": (_with(n_iters=True), r"^n_iters must"),
    "n_iters negative": (_with(n_iters=-3), r"^n_iters must"),
    "tol negative": (_with(tol=-1e-9), r"^tol must"),
    "tol nan": (_with(tol=float("nan")), r"^tol must"),
    "cost nan": (_with(cost=_nan_at(_C, 4)), r"^cost must be finite"),
    "cost inf": (_with(cost=np.where(_C > 0.5, np.inf, _C)), r"^cost must be finite"),
    "cost -inf": (_with(cost=np.where(_C > 0.5, -np.inf, _C)), r"^cost must be finite"),
    "a nan": (_with(a=_nan_at(_A)), r"^a must be finite"),
    "b nan": (_with(b=_nan_at(_B, 2)), r"^b must be finite"),
    "a inf": (_with(a=np.array([np.inf, 0.1, 0.1, 0.1])), r"^a must be finite"),
    "a not numbers": (_with(a=["x", "y", "z", "w"]), r"^a must be"),
    "method": (_with(method="sinkhorn_log"), r"^method must be one of"),
    "grad": (_with(grad="implicit"), r"^grad must be one of"),
    "return_log 1": (_with(return_log=1), r"^return_log must be True or False"),
    "return_log str": (_with(return_log="yes"), r"^return_log must be True or False"),
    "batch": (
        _with(a=np.full((2, 4), 0.25), b=np.full((3, 3), 1 / 3)),
        r"^batch shapes do not broadcast: a \(2, 4\), b \(3, 3\), cost \(4, 3\)",
    ),
}


@pytest.mark.parametrize("inputs", INPUTS)
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_value_error_naming_the_argument(case, inputs):
    """Each invalid argument raises ValueError whose message starts with its name (numpy arrays
    and torch tensors alike: arrays of numbers become tensors for the torch path)."""
    kwargs, pattern = BAD_INPUTS[case]
    if inputs == "torch":
        kwargs = {k: torch.as_tensor(x) if isinstance(x, np.ndarray) else x
                  for k, x in kwargs.items()}
    with pytest.raises(ValueError, match=pattern):
        sinkhorn(**kwargs)


def test_bad_tensor_inputs_raise_too():
    """Tensor inputs are validated like arrays (NaN cost, negative b, shape mismatch)."""
    a, b, C = (_t(x) for x in (_A, _B, _C))
    with pytest.raises(ValueError, match=r"^cost must be finite"):
        sinkhorn(a, b, C.where(C < 0.5, torch.nan), 0.1)
    with pytest.raises(ValueError, match=r"^b must be nonnegative"):
        sinkhorn(a, -b, C, 0.1)
    with pytest.raises(ValueError, match=r"^a must have shape"):
        sinkhorn(a[:3], b, C, 0.1)


# 14. extremes a UI allows ------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1.0, 10.0, 1e3])
@pytest.mark.parametrize("reg", [1e-4, 1e-3])
@pytest.mark.parametrize("method", ["auto", "log"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_reg_and_cost_stay_finite(dtype, method, reg, scale):
    """reg 1e-4..1e-3, cost up to 1e3: plan, cost, potentials finite; f64 == logsumexp reference."""
    a, b, C = problem(11, 6, 7, "unit", scale=scale)
    T = 200
    res = _solve(_t(a, dtype), _t(b, dtype), _t(C, dtype), reg, n_iters=T, tol=0, method=method)
    assert res.method == "log"
    for name in ("plan", "cost", "entropic_cost", "f", "g", "marginal_error"):
        assert bool(torch.isfinite(getattr(res, name)).all()), name
    assert bool((res.plan >= 0).all())
    if dtype == torch.float64:
        assert_allclose(res.plan.sum(0).numpy(), b, rtol=0, atol=1e-12)
        assert np.abs(res.plan.numpy() - logsumexp_sinkhorn(a, b, C, reg, T)).max() <= 1e-8


@pytest.mark.parametrize("reg,scale", [(1e-3, 10.0), (1e-4, 1e3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_columns_exact_after_last_iteration_at_extremes(dtype, reg, scale):
    """Each iteration ends with the column step, so P^T 1 = b to the dtype's round-off."""
    a, b, C = problem(11, 6, 7, "unit", scale=scale)
    res = _solve(_t(a, dtype), _t(b, dtype), _t(C, dtype), reg, n_iters=200, tol=0, method="log")
    rel = ((res.plan.sum(0).double() - _t(b)) / _t(b)).abs().max().item()
    assert rel <= 100 * torch.finfo(dtype).eps  # about 1e-5 in float32


@pytest.mark.parametrize(
    "reg,scale",
    [(1e-3, 10.0), (1e-4, 1e3), (1e-3, 1e3)],  # (1e-4, 1.0) is (1e-3, 10.0) scaled
)
@pytest.mark.parametrize("method", ["auto", "log"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_reg_and_cost_meet_marginals_after_convergence(dtype, method, reg, scale):
    """Extreme problems that converge do: marginals met, converged True, no NaN."""
    if scale >= 1e3:  # diagonal-dominant: the optimum is the identity, reached quickly
        n = 8
        C = scale * (0.5 + 0.5 * np.random.default_rng(12).random((n, n)))
        np.fill_diagonal(C, 0.0)
        a = b = np.ones(n)
    else:  # max C / reg = 1e4: about 5000 plain Sinkhorn iterations
        a, b, C = problem(0, 6, 5, "prob", scale=scale)
    f32 = dtype == torch.float32
    tol = 1e-6 if f32 else 1e-10
    res = _solve(_t(a, dtype), _t(b, dtype), _t(C, dtype), reg, n_iters=20_000, tol=tol,
                 method=method)
    assert res.converged and res.method == "log"
    P = res.plan.double().numpy()
    assert np.isfinite(P).all()
    atol = 1e-5 if f32 else 1e-10
    assert_allclose(P.sum(1), a, rtol=0, atol=atol)
    assert_allclose(P.sum(0), b, rtol=0, atol=atol)


# 15. the result's fields --------------------------------------------------------------------------


@pytest.mark.parametrize("zero_mass", [False, True])
@pytest.mark.parametrize("T", [1, 13, 400])
@pytest.mark.parametrize("method,reg", [("kernel", 0.3), ("log", 0.3), ("log", 2e-3)])
@pytest.mark.parametrize("inputs", INPUTS)
def test_result_fields_match_their_definitions(inputs, method, reg, T, zero_mass):
    """entropic_cost = <P,C> + reg sum P log P; P = exp((f + g - C)/reg); marginal_error = L1s."""
    a, b, C = problem(5, 6, 7, "other")
    if zero_mass:
        a[2], b[0] = 0.0, 0.0
        a, b = a * (3.7 / a.sum()), b * (3.7 / b.sum())
    res = _solve(*_given(inputs, a, b, C), reg, n_iters=T, tol=0, method=method)
    P, f, g = _np(res.plan), _np(res.f), _np(res.g)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(P > 0, P * np.log(P), 0.0).sum()
    assert float(res.cost) == pytest.approx(np.sum(P * C), rel=1e-13)
    assert float(res.entropic_cost) == pytest.approx(np.sum(P * C) + reg * plogp, rel=1e-9,
                                                     abs=1e-12)
    with np.errstate(invalid="ignore"):
        Q = np.exp((f[:, None] + g[None, :] - C) / reg)
    assert np.abs(Q - P).max() <= 1e-12
    errs = np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum()
    assert float(res.marginal_error) == pytest.approx(errs, rel=1e-9, abs=1e-15)
    assert res.reg == reg and res.method == method and res.n_iters == T


def test_result_pickles_with_its_derived_fields():
    """A result survives pickling (st.cache_data stores results): fields and history unchanged."""
    import pickle

    C = torch.rand(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    res = sinkhorn(None, None, C, 0.2, n_iters=30, tol=0, return_log=True)
    back = pickle.loads(pickle.dumps(res))
    assert torch.equal(back.plan, res.plan) and torch.equal(back.plan_at(7), res.plan_at(7))
    assert torch.equal(back.f, res.f) and torch.equal(back.entropic_cost, res.entropic_cost)
    assert torch.equal(back.marginal_error, res.marginal_error)
