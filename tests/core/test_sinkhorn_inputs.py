"""sinkd.sinkhorn's inputs and outputs: numpy in numpy out, tensors, dtypes, devices, batches,
zero masses, extreme problems, checks=False, and every bad argument's message.

References are POT (ot.sinkhorn on the transposed problem), the float64 log-sum-exp Sinkhorn of
tests/_checks.py, and single solves compared with batched ones.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
from _checks import logsumexp_sinkhorn, pot_plan, problem
from numpy.testing import assert_allclose

from sinkd import sinkhorn

FIELDS = ("plan", "cost", "entropic_cost", "f", "g", "marginal_error")
HISTORY = ("errors", "f_history", "g_history", "cost_matrix")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


def _t(x, dtype=torch.float64, device="cpu") -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def _np(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _solve(*args, **kw):
    """sinkhorn with every warning an error: numpy's RuntimeWarnings must not leak either."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return sinkhorn(*args, **kw)


def _batch(seed: int, B: int, n: int, m: int):
    """B problems: costs (B, n, m) in [0, 1), masses (B, n), (B, m) of equal totals per problem."""
    rng = np.random.default_rng(seed)
    C = rng.random((B, n, m))
    a, b = rng.random((B, n)) + 0.1, rng.random((B, m)) + 0.1
    total = rng.random(B)[:, None] + 0.5
    return a * total / a.sum(-1, keepdims=True), b * total / b.sum(-1, keepdims=True), C


# 1. numpy and torch, dtypes and devices --------------------------------------------------------


@pytest.mark.parametrize("a,b,cost", [
    (np.full(3, 1 / 3), np.full(2, 0.5), np.ones((3, 2))),
    (None, None, [[0.0, 1.0], [1.0, 0.0]]),
    ([1, 1], [1, 1], np.array([[0, 1], [1, 0]])),
])
def test_numpy_like_inputs_give_numpy_float64(a, b, cost):
    """Arrays, lists and integer arrays give numpy float64 results (history too), equal to
    POT's plan on the same numbers."""
    res = _solve(a, b, cost, 0.5, n_iters=5, tol=0, return_log=True)
    for name in (*FIELDS, *HISTORY):
        x = getattr(res, name)
        assert isinstance(x, np.ndarray) and x.dtype == np.float64, name
    assert isinstance(res.plan_at(2), np.ndarray)
    n, m = np.shape(cost)
    a = np.full(n, 1 / n) if a is None else np.asarray(a, dtype=float)
    b = np.full(m, 1 / m) if b is None else np.asarray(b, dtype=float)
    assert np.abs(res.plan - pot_plan(a, b, np.asarray(cost, dtype=float), 0.5, 5)).max() < 1e-14


def test_numpy_float32_in_float32_out_and_float16_computed_in_float32():
    """float32 arrays give float32 results and history; float16 arrays are computed and
    returned in float32 (numpy has no fast float16 products)."""
    a, b, C = problem(2, 8, 4)
    res = _solve(a.astype(np.float32), b.astype(np.float32), C.astype(np.float32), 0.1,
                 n_iters=30, tol=0, return_log=True)
    for name in (*FIELDS, *HISTORY):
        assert getattr(res, name).dtype == np.float32, name
    C16 = C.astype(np.float16)
    res = _solve(None, None, C16, 0.1, n_iters=40, tol=0)
    assert res.plan.dtype == np.float32 and res.cost.dtype == np.float32
    ref = pot_plan(np.full(8, 1 / 8), np.full(4, 1 / 4), C16.astype(np.float64), 0.1, 40)
    assert np.abs(res.plan - ref).max() <= 1e-6


def test_a_tensor_mass_runs_torch_and_the_result_follows_the_cost():
    """One tensor among the inputs runs the torch path; the results are arrays when the cost is
    an array and tensors when it is a tensor, with the same values."""
    a, b, C = problem(0, 4, 3)
    res = _solve(torch.as_tensor(a), b, C, 0.5, n_iters=5, tol=0)
    assert isinstance(res.plan, np.ndarray) and isinstance(res.f, np.ndarray)
    assert_allclose(res.plan, pot_plan(a, b, C, 0.5, 5), rtol=0, atol=1e-14)
    res = _solve(a, b, torch.as_tensor(C), 0.5, n_iters=5, tol=0)
    assert isinstance(res.plan, torch.Tensor)


@pytest.mark.parametrize("method", ["kernel", "log", "auto"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tensor_dtype_and_device_are_preserved(device, dtype, method):
    """Tensors in: every field (history too) in the input's dtype and on its device; float32
    within 1e-5 of the converged float64 plan."""
    a, b, C = problem(1, 8, 4)
    ref = sinkhorn(a, b, C, 0.1, n_iters=100_000, tol=1e-12).plan
    res = _solve(_t(a, dtype, device), _t(b, dtype, device), _t(C, dtype, device), 0.1,
                 n_iters=2000, tol=1e-6 if dtype == torch.float32 else 1e-12, method=method,
                 return_log=True)
    for name in (*FIELDS, *HISTORY):
        x = getattr(res, name)
        assert x.dtype == dtype and x.device.type == device.type, name
    assert res.plan_at(1).dtype == dtype
    assert np.abs(_np(res.plan) - ref).max() <= (1e-5 if dtype == torch.float32 else 1e-11)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32_and_returned_in_its_dtype(device, dtype):
    """float16 / bfloat16 in: same dtype and device out, finite, within 1e-2 of float64."""
    n, m = 8, 4  # 1/8 and 1/4 are exact in every dtype, so the masses stay equal
    C = _t(problem(2, n, m)[2], dtype, device)
    a, b = torch.full((n,), 1 / n, dtype=dtype), torch.full((m,), 1 / m, dtype=dtype)
    res = _solve(a.to(device), b.to(device), C, 0.1, n_iters=2000, tol=1e-5)
    for name in FIELDS:
        x = getattr(res, name)
        assert x.dtype == dtype and x.device.type == device.type, name
        assert bool(torch.isfinite(x).all()), name
    ref = sinkhorn(None, None, C.double().cpu().numpy(), 0.1, n_iters=100_000, tol=1e-12).plan
    assert np.abs(_np(res.plan) - ref).max() <= 1e-2


def test_integer_tensor_cost_is_computed_in_the_default_dtype():
    """An integer tensor cost runs in torch's default floating dtype, as if given in it."""
    C = torch.tensor([[0, 1, 2], [2, 0, 1]])
    res = _solve(None, None, C, 1.0, n_iters=20, tol=0)
    ref = _solve(None, None, C.to(torch.get_default_dtype()), 1.0, n_iters=20, tol=0)
    assert res.plan.dtype == torch.get_default_dtype()
    assert torch.equal(res.plan, ref.plan)


def test_numpy_and_torch_inputs_give_the_same_numbers():
    """The same float64 problem as arrays and as tensors: every field and the history agree to
    1e-13 relative (the two libraries sum products in different orders)."""
    a, b, C = _batch(3, 3, 7, 5)
    kw = dict(n_iters=37, tol=0, method="log", return_log=True)
    res = _solve(a, b, C, 0.2, **kw)
    ref = _solve(_t(a), _t(b), _t(C), 0.2, **kw)
    for name in (*FIELDS, "errors", "f_history", "g_history"):
        assert_allclose(getattr(res, name), _np(getattr(ref, name)), rtol=1e-13, atol=1e-15,
                        err_msg=name)


def test_inputs_are_not_modified():
    """The solver computes in its own buffers: the caller's arrays are left unchanged."""
    a, b, C = problem(5, 6, 6, "unit")
    copies = [x.copy() for x in (a, b, C)]
    for method in ("kernel", "log"):
        _solve(a, b, C, 0.1, n_iters=30, tol=0, method=method, return_log=True).plan_at(3)
    for x, y in zip((a, b, C), copies, strict=True):
        assert np.array_equal(x, y)


# 2. batches ------------------------------------------------------------------------------------


@pytest.mark.parametrize("masses", ["shared", "per_problem"])
@pytest.mark.parametrize("method", ["kernel", "log"])
@pytest.mark.parametrize("inputs", ["numpy", "torch"])
def test_batch_equals_pot_on_each_problem(inputs, method, masses):
    """A (B, n, m) batch, masses shared (n,) or per problem (B, n): every problem's plan equals
    POT's on that problem (1e-12), and its cost and marginal error its own single solve's."""
    B, n, m, reg, T = 5, 6, 4, 0.05, 80
    a, b, C = _batch(7, B, n, m)
    if masses == "shared":
        a, b = a[0] / a[0].sum(), b[0] / b[0].sum()
    given = (a, b, C) if inputs == "numpy" else (_t(a), _t(b), _t(C))
    res = _solve(*given, reg, n_iters=T, tol=0, method=method)
    assert res.plan.shape == (B, n, m) and res.cost.shape == (B,) and res.f.shape == (B, n)
    for i in range(B):
        a_i, b_i = (a, b) if masses == "shared" else (a[i], b[i])
        assert np.abs(_np(res.plan[i]) - pot_plan(a_i, b_i, C[i], reg, T)).max() <= 1e-12, i
        one = _solve(a_i, b_i, C[i], reg, n_iters=T, tol=0, method=method)
        assert float(res.cost[i]) == pytest.approx(float(one.cost), rel=1e-13)
        assert float(res.marginal_error[i]) == pytest.approx(float(one.marginal_error), abs=1e-13)


@pytest.mark.parametrize("inputs", ["numpy", "torch"])
def test_leading_dimensions_and_a_shared_cost_broadcast(inputs):
    """Cost (n, m) with masses (2, 3, n) and (2, 3, m): six problems on one cost, each equal to
    POT's; history shapes (T, 2, 3) and (T, 2, 3, n)."""
    a, b, C = _batch(8, 6, 5, 3)
    a, b, C = a.reshape(2, 3, 5), b.reshape(2, 3, 3), C[0]
    given = (a, b, C) if inputs == "numpy" else (_t(a), _t(b), _t(C))
    res = _solve(*given, 0.3, n_iters=40, tol=0, return_log=True)
    assert res.plan.shape == (2, 3, 5, 3) and res.marginal_error.shape == (2, 3)
    assert res.errors.shape == (40, 2, 3) and res.f_history.shape == (40, 2, 3, 5)
    for i, j in itertools.product(range(2), range(3)):
        P = pot_plan(a[i, j], b[i, j], C, 0.3, 40)
        assert np.abs(_np(res.plan[i, j]) - P).max() <= 1e-12
        assert np.abs(_np(res.plan_at(40)[i, j]) - P).max() <= 1e-12


@pytest.mark.parametrize("method", ["kernel", "log"])
def test_a_shared_cost_gives_each_problem_its_own_value_and_gradient(method):
    """One cost (n, m) for masses (2, 1, n): each problem's cost and the gradients of their sum
    with respect to the masses and the shared cost equal those of the six separate solves
    (float64, 1e-12), a size-1 batch dimension included."""
    a, b, C = _batch(8, 2, 5, 3)
    a, b, C = _t(a.reshape(2, 1, 5)), _t(b.reshape(2, 1, 3)), _t(C[0])
    leaves = [x.clone().requires_grad_() for x in (a, b, C)]
    res = sinkhorn(*leaves, 0.2, n_iters=30, tol=0, method=method)
    grads = torch.autograd.grad(res.cost.sum(), leaves)
    ones = [x.clone().requires_grad_() for x in (a, b, C)]
    costs = [sinkhorn(ones[0][i, 0], ones[1][i, 0], ones[2], 0.2, n_iters=30, tol=0,
                      method=method).cost for i in range(2)]
    expected = torch.autograd.grad(sum(costs), ones)
    assert torch.allclose(res.cost[:, 0], torch.stack(costs), rtol=1e-12, atol=0)
    for got, want in zip(grads, expected, strict=True):
        assert (got - want).abs().max() <= 1e-12 * want.abs().max()


# 3. zero masses and extreme problems -----------------------------------------------------------


@pytest.mark.parametrize("method,reg", [("kernel", 0.1), ("log", 0.1), ("auto", 0.1),
                                        ("log", 1e-3), ("log", 1e-4), ("auto", 1e-4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("inputs", ["numpy", "torch"])
def test_zero_masses_give_zero_rows_and_columns(inputs, dtype, method, reg):
    """a_i = 0 -> row i of P is 0, b_j = 0 -> column j is 0; no NaN anywhere; in float64 the plan
    equals the log-sum-exp reference to 1e-10."""
    a, b, C = problem(6, 7, 6)
    a[[1, 4]] = 0.0
    b[2] = 0.0
    a, b = a / a.sum(), b / b.sum()
    given = tuple(x.astype(dtype) for x in (a, b, C))
    if inputs == "torch":
        given = tuple(torch.from_numpy(x) for x in given)
    res = _solve(*given, reg, n_iters=300, tol=0, method=method)
    P = _np(res.plan)
    assert np.isfinite(P).all() and (P[[1, 4]] == 0).all() and (P[:, 2] == 0).all()
    for name in ("cost", "entropic_cost", "marginal_error"):
        assert np.isfinite(_np(getattr(res, name))).all(), name
    assert not np.isnan(_np(res.f)).any() and not np.isnan(_np(res.g)).any()
    if dtype == np.float64:
        assert np.abs(P - logsumexp_sinkhorn(a, b, C, reg, 300)).max() <= 1e-10


@pytest.mark.parametrize("field", ["cost", "entropic_cost"])
@pytest.mark.parametrize("method,reg", [("kernel", 0.1), ("log", 0.1), ("log", 1e-3)])
def test_zero_masses_give_finite_gradients(method, reg, field):
    """With a_i = 0, unrolled gradients with respect to the cost and to mass parameters are
    finite."""
    a, b, C = problem(6, 5, 4)
    a[1] = 0.0
    a /= a.sum()
    Cr = _t(C).requires_grad_()
    x = _t(np.random.default_rng(0).standard_normal(5)).requires_grad_()
    masked = torch.softmax(x, 0) * _t(a > 0)
    kw = dict(n_iters=30, tol=0, method=method)
    getattr(_solve(_t(a), _t(b), Cr, reg, **kw), field).backward()
    getattr(_solve(masked / masked.sum(), _t(b), _t(C), reg, **kw), field).backward()
    assert bool(torch.isfinite(Cr.grad).all()) and bool(torch.isfinite(x.grad).all())


@pytest.mark.parametrize("scale", [1.0, 10.0, 1e3])
@pytest.mark.parametrize("reg", [1e-4, 1e-3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("inputs", ["numpy", "torch"])
def test_extreme_reg_and_cost_stay_finite(inputs, dtype, reg, scale):
    """reg 1e-4..1e-3, cost up to 1e3: "auto" runs "log"; every field finite, the plan >= 0 with
    columns exact to 100 eps of the dtype; float64 equals the log-sum-exp reference (1e-8)."""
    a, b, C = problem(11, 6, 7, "unit", scale=scale)
    given = tuple(x.astype(dtype) for x in (a, b, C))
    if inputs == "torch":
        given = tuple(torch.from_numpy(x) for x in given)
    res = _solve(*given, reg, n_iters=200, tol=0)
    assert res.method == "log"
    for name in FIELDS:
        assert np.isfinite(_np(getattr(res, name))).all(), name
    P = _np(res.plan)
    assert (P >= 0).all()
    assert np.abs(P.sum(0) / b - 1).max() <= 100 * np.finfo(dtype).eps
    if dtype == np.float64:
        assert np.abs(P - logsumexp_sinkhorn(a, b, C, reg, 200)).max() <= 1e-8


@pytest.mark.parametrize("method", ["log", "auto"])
@pytest.mark.parametrize("inputs", ["numpy", "torch"])
def test_float32_costs_near_the_dtype_limit_give_the_scaled_problems_plan(inputs, method):
    """The plan depends on C / reg only: a float32 cost s * M with s = 1e38 (C / reg overflows
    float32) at reg = s * 0.1 gives POT's float64 plan of M at reg 0.1 (to float32 rounding,
    1e-6), returned in float32; a constant float32 cost of 1e38 at reg 0.1 gives the closed
    form a b^T / sum(a)."""
    a, b, M = problem(3, 5, 6, "unit")
    s = 1e38
    C = (s * M).astype(np.float32)
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.float32(C.max()) / np.float32(0.1))  # overflows in float32
    given = (a.astype(np.float32), b.astype(np.float32), C)
    if inputs == "torch":
        given = tuple(torch.from_numpy(x) for x in given)
    res = _solve(*given, s * 0.1, method=method, n_iters=500, tol=0)
    assert res.plan.dtype in (np.float32, torch.float32)
    assert np.abs(_np(res.plan) - pot_plan(a, b, C.astype(np.float64) / s, 0.1, 500)).max() <= 1e-6
    flat = np.full_like(C, 1e38)  # a constant cost: the plan is a b^T / sum(a) at any reg
    given = (*given[:2], torch.from_numpy(flat) if inputs == "torch" else flat)
    P = _np(_solve(*given, 0.1, method=method, n_iters=20, tol=0).plan)
    assert np.abs(P - np.outer(a, b) / a.sum()).max() <= 1e-6


def test_a_cost_beyond_float64s_log_range_is_refused_with_the_range():
    """A float64 cost of 1e308 at reg 0.1 cannot be iterated in any dtype: ValueError giving
    the largest |cost| allowed for that reg."""
    with pytest.raises(ValueError, match=r"^cost must have max \|cost\| <= 5\.99e\+306 for "
                                         r"reg = 0\.1 .* got max \|cost\| = 1e\+308"):
        sinkhorn(None, None, np.full((2, 2), 1e308), 0.1, method="log")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_problems_that_converge_meet_their_marginals(dtype):
    """max C / reg = 1e4 (about 5000 iterations) and a diagonal-dominant cost of 1e3 at reg
    1e-3: converged, both marginals met (1e-5 in float32, 1e-10 in float64), nothing NaN."""
    n = 8
    D = 1e3 * (0.5 + 0.5 * np.random.default_rng(12).random((n, n)))
    np.fill_diagonal(D, 0.0)
    cases = [(*problem(0, 6, 5, "prob")[:2], 10 * problem(0, 6, 5, "prob")[2], 1e-3),
             (np.ones(n), np.ones(n), D, 1e-3)]
    f32 = dtype == np.float32
    for a, b, C, reg in cases:
        res = _solve(*(_t(x, torch.float32 if f32 else torch.float64) for x in (a, b, C)), reg,
                     n_iters=20_000, tol=1e-6 if f32 else 1e-10)
        assert res.converged and res.method == "log"
        P = _np(res.plan)
        assert_allclose(P.sum(1), a, rtol=0, atol=1e-5 if f32 else 1e-10)
        assert_allclose(P.sum(0), b, rtol=0, atol=1e-5 if f32 else 1e-10)


# 4. checks=False -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["kernel", "log", "auto"])
def test_checks_false_computes_the_same_plan(method):
    """checks=False gives the plan of checks=True (1e-12 in float64); its "auto" runs "log"
    (it does not read the cost), which agrees with the kernel here."""
    a, b, C = (_t(x) for x in problem(3, 9, 7, "unit"))
    on = _solve(a, b, C, 0.1, n_iters=60, tol=0, method=method)
    off = _solve(a, b, C, 0.1, n_iters=60, tol=0, method=method, checks=False)
    assert off.method == ("log" if method == "auto" else method)
    assert (on.plan - off.plan).abs().max().item() <= 1e-12


def test_checks_false_does_not_check_values():
    """checks=False: a NaN cost raises nothing and gives a NaN cost; unequal masses run too."""
    a, b, C = (_t(x) for x in problem(0, 4, 3))
    C[1, 1] = torch.nan
    res = sinkhorn(a, b, C, 0.1, n_iters=10, tol=0, method="kernel", checks=False)
    assert torch.isnan(res.cost)
    res = sinkhorn(2 * a, b, C.nan_to_num(), 0.1, n_iters=10, tol=0, checks=False)
    assert bool(torch.isfinite(res.plan).all())


# 5. bad arguments ------------------------------------------------------------------------------

_A, _B, _C = problem(0, 4, 3)


def _with(**kw):
    return {"a": _A, "b": _B, "cost": _C, "reg": 0.1, **kw}


def _nan_at(x, idx=0):
    x = np.array(x, dtype=np.float64)
    x.flat[idx] = np.nan
    return x


BAD = {
    "a shape": (_with(a=np.full(5, 0.2)), r"^a must have shape \(\.\.\., 4\) to match the 4 rows "
                                          r"of cost \(4, 3\), got \(5,\)"),
    "b shape": (_with(b=np.full(4, 0.25)), r"^b must have shape \(\.\.\., 3\)"),
    "a scalar": (_with(a=1.0), r"^a must have shape"),
    "cost None": (_with(cost=None),
                  r"^cost must be a tensor or an array of shape \(\.\.\., n, m\), got None"),
    "cost 1-D": (_with(a=None, b=None, cost=np.ones(3)),
                 r"^cost must have shape \(\.\.\., n, m\) with n, m >= 1, got \(3,\)"),
    "cost empty": (_with(a=None, b=None, cost=np.ones((0, 3))), r"^cost must have shape"),
    "empty batch": (_with(a=None, b=None, cost=np.ones((0, 3, 3))),
                    r"^the batch must not be empty, got batch shape \(0,\)"),
    "complex cost": (_with(cost=_C.astype(complex)),
                     r"^cost must be real, got (torch\.)?complex128"),
    "complex a": (_with(a=_A.astype(complex)), r"^a must be real"),
    "string a": (_with(a=["x", "y", "z", "w"]), r"^a must be an array of real numbers"),
    "a negative": (_with(a=np.array([0.5, -0.1, 0.3, 0.3])),
                   r"^a must be nonnegative \(masses are in \[0, inf\)\), got a minimum of -0.1"),
    "b negative": (_with(b=np.array([1.2, -0.1, -0.1])), r"^b must be nonnegative"),
    "masses unequal": (_with(a=_A * 1.01), r"^a and b must have equal total masses \(relative "
                                           r"tolerance 1\.5e-08\), got sum\(a\) = 1\.01 and "
                                           r"sum\(b\) = 1"),
    "batch masses unequal": (_with(a=np.full((2, 4), 0.25), b=np.stack([_B, 1.1 * _B])),
                             r"^a and b must have equal total masses .* got sum\(a\) = 1 and "
                             r"sum\(b\) = 1\.1$"),
    "mass zero": (_with(a=np.zeros(4), b=np.zeros(3)),
                  r"^a must have a positive total mass, got sum\(a\) = 0"),
    "cost nan": (_with(cost=_nan_at(_C, 4)), r"^cost must be finite: it contains NaN or Inf"),
    "cost inf": (_with(cost=np.where(_C > 0.5, np.inf, _C)), r"^cost must be finite"),
    "cost -inf": (_with(cost=np.where(_C > 0.5, -np.inf, _C)), r"^cost must be finite"),
    "a nan": (_with(a=_nan_at(_A)), r"^a must be finite"),
    "b nan": (_with(b=_nan_at(_B, 2)), r"^b must be finite"),
    "a inf": (_with(a=np.array([np.inf, 0.1, 0.1, 0.1])), r"^a must be finite"),
    "reg zero": (_with(reg=0.0), r"^reg must be a finite number > 0, got 0\.0"),
    "reg nan": (_with(reg=float("nan")), r"^reg must be a finite number > 0, got nan"),
    "reg str": (_with(reg="0.1"), r"^reg must be a finite number > 0, got '0\.1'"),
    "n_iters 0": (_with(n_iters=0), r"^n_iters must be an integer >= 1, got 0"),
    "n_iters 1.5": (_with(n_iters=1.5), r"^n_iters must be an integer >= 1, got 1\.5"),
    "n_iters True": (_with(n_iters=True), r"^n_iters must be an integer >= 1, got True"),
    "tol negative": (_with(tol=-1e-9), r"^tol must be a finite number >= 0, got -1e-09"),
    "method": (_with(method="sinkhorn_log"),
               r"^method must be one of \('auto', 'kernel', 'log'\), got 'sinkhorn_log'"),
    "grad": (_with(grad="implicit"), r"^grad must be one of \('unrolled', 'envelope'\)"),
    "return_log": (_with(return_log=1), r"^return_log must be True or False, got 1"),
    "checks": (_with(checks="no"), r"^checks must be True or False, got 'no'"),
    "batch": (_with(a=np.full((2, 4), 0.25), b=np.full((3, 3), 1 / 3)),
              r"^batch shapes do not broadcast: a \(2, 4\), b \(3, 3\), cost \(4, 3\)"),
}


@pytest.mark.parametrize("inputs", ["numpy", "torch"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_argument_raises_a_message_naming_it(case, inputs):
    """Each bad argument raises ValueError naming it, what is allowed and what was given, for
    numpy arrays and for tensors alike."""
    kwargs, pattern = BAD[case]
    if inputs == "torch":
        kwargs = {k: torch.as_tensor(x) if isinstance(x, np.ndarray) else x
                  for k, x in kwargs.items()}
    with pytest.raises(ValueError, match=pattern):
        sinkhorn(**kwargs)


@pytest.mark.parametrize("which", ["a", "b"])
def test_envelope_rejects_masses_that_require_grad(which):
    """grad='envelope' differentiates with respect to the cost only: a mass requiring grad
    raises ValueError."""
    a, b, C = (_t(x) for x in problem(0, 5, 4))
    a, b = a.requires_grad_(which == "a"), b.requires_grad_(which == "b")
    with pytest.raises(ValueError, match=r"envelope.*a and b must not require grad"):
        sinkhorn(a, b, C, 0.1, grad="envelope")


@pytest.mark.parametrize("inputs", ["numpy", "torch"])
def test_masses_are_compared_at_the_precision_they_were_given_in(inputs):
    """float32 masses normalised in float32, with a float64 cost: accepted (their totals differ
    by float32 round-off, far above float64's tolerance) and equal to the float64 solve on the
    same rounded numbers; a 1e-3 mismatch is still refused."""
    rng = np.random.default_rng(4)
    a, b = rng.random(1000).astype(np.float32), rng.random(700).astype(np.float32)
    a, b = a / a.sum(), b / b.sum()
    C = rng.random((1000, 700))
    assert abs(a.astype(np.float64).sum() - b.astype(np.float64).sum()) > 1e-8
    given = (a, b, C) if inputs == "numpy" else (torch.from_numpy(a), torch.from_numpy(b),
                                                  torch.from_numpy(C))
    res = _solve(*given, 0.5, n_iters=5, tol=0)
    assert res.plan.dtype in (np.float64, torch.float64)
    with pytest.raises(ValueError, match="equal total masses"):
        sinkhorn(given[0] * 1.001, given[1], given[2], 0.5, n_iters=5, tol=0)
