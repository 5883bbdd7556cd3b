"""Tests for the numpy path of sinkd.sinkhorn (numpy in, numpy out, no torch in the loop).

tests/test_sinkhorn.py runs its POT, logsumexp and law checks on numpy and torch inputs alike;
this file covers what only the numpy path has: that it is taken, its dtypes, batches, large
problems (another exp), zero masses and the fallback to the log domain, and its agreement with
the torch path. References: POT (ot.sinkhorn on the transposed problem), the float64 logsumexp
iteration of tests/_checks.py and closed forms.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from _checks import logsumexp_sinkhorn, pot_plan, problem
from numpy.testing import assert_allclose

from sinkd import SinkhornConvergenceWarning, sinkhorn
from sinkd._numpy_iterations import NUMPY

FIELDS = ("plan", "cost", "entropic_cost", "f", "g", "marginal_error")


def _solve(a, b, C, reg, **kw):
    """Solve with every warning an error: the numpy path must not leak numpy RuntimeWarnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return sinkhorn(a, b, C, reg, **kw)


def _batch(seed: int, B: int, n: int, m: int):
    """B problems: costs (B, n, m) in [0, 1), masses (B, n), (B, m) of equal totals per problem."""
    rng = np.random.default_rng(seed)
    C = rng.random((B, n, m))
    a, b = rng.random((B, n)) + 0.1, rng.random((B, m)) + 0.1
    total = rng.random(B)[:, None] + 0.5
    return a * total / a.sum(-1, keepdims=True), b * total / b.sum(-1, keepdims=True), C


@pytest.mark.parametrize(
    "a,b,cost",
    [(np.full(3, 1 / 3), np.full(2, 0.5), np.ones((3, 2))),
     (None, None, [[0.0, 1.0], [1.0, 0.0]]),
     ([1, 1], [1, 1], np.array([[0, 1], [1, 0]]))],
)
def test_numpy_like_inputs_take_the_numpy_path(a, b, cost):
    """Arrays, lists and integer arrays run the numpy steps and give numpy float64 results."""
    res = _solve(a, b, cost, 0.5, n_iters=5, tol=0)
    assert res._state["steps"] is NUMPY
    for name in FIELDS:
        x = getattr(res, name)
        assert isinstance(x, np.ndarray) and x.dtype == np.float64, name


def test_any_tensor_input_takes_the_torch_path():
    """A tensor among the inputs runs the torch path; the result type follows the cost."""
    a, b, C = problem(0, 4, 3)
    res = _solve(torch.as_tensor(a), b, C, 0.5, n_iters=5, tol=0)
    assert res._state["steps"] is not NUMPY and isinstance(res.plan, np.ndarray)
    assert_allclose(res.plan, pot_plan(a, b, C, 0.5, 5), rtol=0, atol=1e-12)


@pytest.fixture(params=[1, 2])
def torch_threads(request):
    """torch's intra-op threads set to 1 or 2 (the numpy path's large exp runs in torch)."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("T", [1, 2, 5, 20, 200])
@pytest.mark.parametrize("method", ["kernel", "log"])
@pytest.mark.parametrize("n,m", [(48, 64), (70, 40)])  # >= 2048 entries: torch's exp
def test_large_problem_equals_pot(n, m, method, T, torch_threads):
    """A problem large enough for torch's exp equals POT to 1e-12 after T iterations, with 1
    or 2 torch threads."""
    a, b, C = problem(1, n, m, "unit")
    res = _solve(a, b, C, 0.1, n_iters=T, tol=0, method=method)
    assert np.abs(res.plan - pot_plan(a, b, C, 0.1, T)).max() <= 1e-12


@pytest.mark.parametrize("method", ["kernel", "log", "auto"])
@pytest.mark.parametrize("shape", [(6, 5), (64, 48)])
def test_float32_in_float32_out_close_to_pot_float64(shape, method):
    """float32 arrays give float32 results (history too) within 1e-5 of POT run in float64."""
    a, b, C = problem(2, *shape, "prob")
    T = 50
    res = _solve(a.astype(np.float32), b.astype(np.float32), C.astype(np.float32), 0.1,
                 n_iters=T, tol=0, method=method, return_log=True)
    for name in (*FIELDS, "errors", "f_history", "g_history", "cost_matrix"):
        assert getattr(res, name).dtype == np.float32, name
    assert res.plan_at(T).dtype == np.float32
    ref = pot_plan(a, b, C.astype(np.float32).astype(np.float64), 0.1, T)
    assert np.abs(res.plan - ref).max() <= 1e-5


def test_float16_cost_is_computed_and_returned_in_float32():
    """A float16 cost runs in float32 (numpy has no fast float16 BLAS) and returns float32."""
    n, m = 8, 4  # 1/8 and 1/4 are exact, so the masses are equal in every dtype
    C = problem(2, n, m)[2].astype(np.float16)
    res = _solve(None, None, C, 0.1, n_iters=40, tol=0)
    assert res.plan.dtype == np.float32 and res.cost.dtype == np.float32
    ref = pot_plan(np.full(n, 1 / n), np.full(m, 1 / m), C.astype(np.float64), 0.1, 40)
    assert np.abs(res.plan - ref).max() <= 1e-6


@pytest.mark.parametrize("method", ["kernel", "log"])
@pytest.mark.parametrize("masses", ["per_problem", "shared"])
def test_batch_equals_pot_per_problem(masses, method):
    """A (B, n, m) batch: every problem's plan equals POT's on that problem to 1e-12."""
    B, n, m, reg, T = 5, 6, 4, 0.05, 80
    a, b, C = _batch(7, B, n, m)
    if masses == "shared":
        a, b = a[0] / a[0].sum(), b[0] / b[0].sum()
    res = _solve(a, b, C, reg, n_iters=T, tol=0, method=method)
    assert res.plan.shape == (B, n, m) and res.cost.shape == (B,) and res.f.shape == (B, n)
    for i in range(B):
        a_i, b_i = (a, b) if masses == "shared" else (a[i], b[i])
        P = pot_plan(a_i, b_i, C[i], reg, T)
        assert np.abs(res.plan[i] - P).max() <= 1e-12, i
        assert res.cost[i] == pytest.approx(np.sum(P * C[i]), rel=1e-12)


def test_shared_cost_and_leading_dimensions_broadcast():
    """Cost (n, m) with masses (2, 3, n), (2, 3, m): six problems on one cost, each as POT's."""
    a, b, C = _batch(8, 6, 5, 3)
    a, b, C = a.reshape(2, 3, 5), b.reshape(2, 3, 3), C[0]
    res = _solve(a, b, C, 0.3, n_iters=40, tol=0, return_log=True)
    assert res.plan.shape == (2, 3, 5, 3) and res.marginal_error.shape == (2, 3)
    assert res.errors.shape == (40, 2, 3) and res.f_history.shape == (40, 2, 3, 5)
    for i in range(2):
        for j in range(3):
            P = pot_plan(a[i, j], b[i, j], C, 0.3, 40)
            assert np.abs(res.plan[i, j] - P).max() <= 1e-12
            assert np.abs(res.plan_at(40)[i, j] - P).max() <= 1e-12


@pytest.mark.parametrize("method", ["kernel", "log", "auto"])
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_path_equals_torch_path(dtype, batched, method):
    """numpy and torch inputs give the same results and history, to round-off of the dtype."""
    a, b, C = _batch(3, 3, 7, 5) if batched else problem(3, 7, 5, "other")
    a, b, C = (x.astype(dtype) for x in (a, b, C))
    kw = dict(n_iters=37, tol=0, method=method, return_log=True)
    res = _solve(a, b, C, 0.2, **kw)
    ref = _solve(*(torch.as_tensor(x) for x in (a, b, C)), 0.2, **kw)
    rtol = 1e-12 if dtype == np.float64 else 1e-4
    # marginal errors are sums of n + m differences, each known to round-off of the total mass
    error_atol = 10 * (7 + 5) * np.finfo(dtype).eps * float(a.sum(-1).max())
    assert res.method == ref.method and res.n_iters == ref.n_iters
    for name in (*FIELDS, "errors", "f_history", "g_history"):
        mine, theirs = getattr(res, name), getattr(ref, name).numpy()
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape, name
        atol = error_atol if name in ("errors", "marginal_error") else 0.0
        assert_allclose(mine, theirs, rtol=rtol, atol=atol + rtol * np.abs(theirs).max(),
                        err_msg=name)
    assert_allclose(res.plan_at(11), ref.plan_at(11).numpy(), rtol=rtol, atol=0)


@pytest.mark.parametrize("method,reg", [("kernel", 0.1), ("log", 0.1), ("auto", 0.1),
                                        ("log", 1e-3), ("log", 1e-4), ("auto", 1e-4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_masses_give_zero_rows_and_columns(dtype, method, reg):
    """a_i = 0 -> row i of P is 0, b_j = 0 -> column j is 0; no NaN; f64 == logsumexp reference."""
    a, b, C = problem(6, 7, 6)
    a[[1, 4]] = 0.0
    b[2] = 0.0
    a, b = a / a.sum(), b / b.sum()
    res = _solve(a.astype(dtype), b.astype(dtype), C.astype(dtype), reg, n_iters=300, tol=0,
                 method=method)
    P = res.plan
    assert np.isfinite(P).all() and (P[[1, 4]] == 0).all() and (P[:, 2] == 0).all()
    for name in ("cost", "entropic_cost", "marginal_error"):
        assert np.isfinite(getattr(res, name)).all(), name
    assert not np.isnan(res.f).any() and not np.isnan(res.g).any()
    if dtype == np.float64:
        assert np.abs(P - logsumexp_sinkhorn(a, b, C, reg, 300)).max() <= 1e-10


@pytest.mark.parametrize("scale", [1.0, 10.0, 1e3])
@pytest.mark.parametrize("reg", [1e-4, 1e-3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_cost_and_reg_run_the_log_domain(dtype, reg, scale):
    """reg 1e-4..1e-3, cost up to 1e3: auto picks "log", all finite, f64 == logsumexp reference."""
    a, b, C = problem(11, 6, 7, "unit", scale=scale)
    T = 200
    res = _solve(a.astype(dtype), b.astype(dtype), C.astype(dtype), reg, n_iters=T, tol=0)
    assert res.method == "log"
    for name in FIELDS:
        assert np.isfinite(getattr(res, name)).all(), name
    assert (res.plan >= 0).all()
    if dtype == np.float64:
        assert_allclose(res.plan.sum(0), b, rtol=0, atol=1e-12)  # columns exact
        assert np.abs(res.plan - logsumexp_sinkhorn(a, b, C, reg, T)).max() <= 1e-8


@pytest.mark.parametrize("method", ["kernel", "log", "auto"])
def test_kernel_underflow_gives_nan_log_gives_exact(method):
    """float32, cost 2, reg 0.01, unit masses, N=16: kernel NaN; log/auto give P = 1/16, cost 32."""
    N = 16
    C = np.full((N, N), 2.0, dtype=np.float32)
    ones = np.ones(N, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SinkhornConvergenceWarning)
        warnings.simplefilter("error", RuntimeWarning)  # NaN is the kernel's result, not a warning
        res = sinkhorn(ones, ones, C, 0.01, n_iters=50, tol=0, method=method)
    if method == "kernel":
        assert np.isnan(res.plan).any()
        return
    assert res.method == "log" and np.isfinite(res.plan).all()
    assert_allclose(res.plan, np.full((N, N), 1.0 / N), rtol=1e-6, atol=0)
    assert float(res.cost) == pytest.approx(2.0 * N, rel=1e-6)


@pytest.mark.parametrize("method", ["kernel", "log"])
def test_tol_stops_with_the_row_marginal_met(method):
    """tol > 0 stops at a multiple of 10 with the row L1 error <= tol; marginals met at 1e-10."""
    a, b, C = problem(4, 9, 6, "other")
    res = _solve(a, b, C, 0.2, n_iters=100_000, tol=1e-11, method=method)
    assert res.converged and res.n_iters % 10 == 0
    assert np.abs(res.plan.sum(1) - a).sum() <= 1e-11
    assert_allclose(res.plan.sum(0), b, rtol=0, atol=1e-12)
    assert float(res.marginal_error) <= 1e-10


def test_unconverged_numpy_solve_warns():
    """tol not reached within n_iters: SinkhornConvergenceWarning, converged False."""
    a, b, C = problem(0, 7, 5)
    with pytest.warns(SinkhornConvergenceWarning, match="did not converge"):
        res = sinkhorn(a, b, C, 0.01, n_iters=3, tol=1e-12)
    assert not res.converged and res.n_iters == 3


@pytest.mark.parametrize("T", [1, 9, 60])
@pytest.mark.parametrize("method", ["kernel", "log"])
def test_history_matches_pot_every_iteration(method, T):
    """errors[t-1] is the row L1 error of POT's plan after t iterations, plan_at(t) that plan."""
    a, b, C = problem(1, 7, 5, "unit")
    res = _solve(a, b, C, 0.2, n_iters=T, tol=0, method=method, return_log=True)
    assert res.errors.shape == (T,) and res.f_history.shape == (T, 7)
    for t in range(1, T + 1):
        P = pot_plan(a, b, C, 0.2, t)
        assert np.abs(res.plan_at(t) - P).max() <= 1e-12, t
        assert res.errors[t - 1] == pytest.approx(np.abs(P.sum(1) - a).sum(), rel=1e-9,
                                                  abs=1e-14)


def test_inputs_are_not_modified():
    """The numpy path computes in its own buffers: the caller's arrays are left unchanged."""
    a, b, C = problem(5, 6, 6, "unit")
    copies = [x.copy() for x in (a, b, C)]
    for method in ("kernel", "log"):
        _solve(a, b, C, 0.1, n_iters=30, tol=0, method=method, return_log=True).plan_at(3)
    for x, y in zip((a, b, C), copies, strict=True):
        assert np.array_equal(x, y)
