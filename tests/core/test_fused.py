"""Tests for the fused Sinkhorn loop of the numpy path (sinkd/_fused.py, compiled by numba).

The fused loop reorders the arithmetic of an iteration (one pass over K, sums vectorised), so it
must give what BLAS's two matrix-vector products give to round-off, and what POT gives. References:
POT (ot.sinkhorn on the transposed problem), the BLAS loop of the same solver (the fused loop
switched off) and plain numpy formulas for the plan and its cost.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from _checks import pot_plan, problem
from numpy.testing import assert_allclose

from sinkd import _fused, sinkhorn
from sinkd._numpy_iterations import NUMPY

FIELDS = ("plan", "cost", "entropic_cost", "f", "g", "marginal_error")


def _solve(a, b, C, reg, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from either loop
        return sinkhorn(a, b, C, reg, **kw)


def _batch(seed: int, B: int, n: int, m: int, zeros: bool = False):
    """B problems (B, n, m), masses of equal totals per problem; some zero masses if asked."""
    rng = np.random.default_rng(seed)
    C = rng.random((B, n, m))
    a, b = rng.random((B, n)) + 0.1, rng.random((B, m)) + 0.1
    if zeros:
        a[:, 0] = 0.0
        b[:, -1] = 0.0
    total = rng.random(B)[:, None] + 0.5
    return a * total / a.sum(-1, keepdims=True), b * total / b.sum(-1, keepdims=True), C


def test_fused_loop_is_compiled_here():
    """numba is a requirement: the fused loop is available (else every test below checks BLAS
    against BLAS)."""
    assert _fused.available()


@pytest.mark.parametrize("T", [1, 20, 200])
@pytest.mark.parametrize("n,m", [(1, 1), (1, 6), (6, 1), (7, 5), (8, 8), (33, 64), (256, 256)])
def test_fused_loop_equals_pot(n, m, T):
    """Odd and even row counts, one row, one column: the fused loop's plan equals POT's to 1e-12
    after T iterations (float64), and its fused cost equals <P_POT, C> to 1e-12 relative."""
    a, b, C = problem(n * m + T, n, m)
    assert _fused.applies(np.empty((n, m)))
    res = _solve(a, b, C, 0.1, n_iters=T, tol=0, method="kernel")
    ref = pot_plan(a, b, C, 0.1, T)
    assert np.abs(res.plan - ref).max() <= 1e-12
    assert float(res.cost) == pytest.approx(float((ref * C).sum()), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("zeros", [False, True])
@pytest.mark.parametrize("method", ["kernel", "log", "auto"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 7, 5), (4, 9, 6), (3, 40, 33)])
def test_fused_and_blas_loops_agree(shape, dtype, method, zeros, monkeypatch):
    """Every result field of the fused loop equals the BLAS loop's (fused loop switched off) to
    round-off: rtol 1e-13 in float64, 1e-5 in float32; zero masses (the guarded loop) included."""
    a, b, C = _batch(7, *shape, zeros=zeros)
    if shape[0] == 1:
        a, b, C = a[0], b[0], C[0]
    a, b, C = (x.astype(dtype) for x in (a, b, C))
    kw = dict(n_iters=60, tol=0, method=method)
    fused = _solve(a, b, C, 0.15, **kw)
    monkeypatch.setattr(_fused, "FUSED_UP_TO", 0)
    blas = _solve(a, b, C, 0.15, **kw)
    rtol = 1e-13 if dtype == np.float64 else 1e-5
    assert fused.method == blas.method
    for name in FIELDS:
        mine, theirs = getattr(fused, name), getattr(blas, name)
        assert mine.dtype == theirs.dtype == dtype and mine.shape == theirs.shape, name
        scale = np.abs(theirs[np.isfinite(theirs)]).max(initial=0.0)  # f = -inf at zero mass
        atol = rtol * (scale if name != "marginal_error" else float(a.sum(-1).max()))
        assert_allclose(mine, theirs, rtol=rtol, atol=atol, err_msg=name)
    if zeros:
        assert (fused.plan[..., 0, :] == 0).all() and (fused.plan[..., :, -1] == 0).all()


@pytest.mark.parametrize("reg,scale,log_blocks", [(0.02, 30.0, 0), (0.003, 1.0, 0),
                                                  (1e-4, 10.0, 2)])
def test_fused_and_blas_loops_take_the_same_decisions(reg, scale, log_blocks, monkeypatch):
    """Through absorptions (alpha != 0) and rollbacks to the log domain, the fused blocks take the
    BLAS loop's decisions: same number of log blocks, same iterations, and potentials
    f = alpha + reg log u, g alike, equal to 1e-13 of their size (float64, 200 iterations)."""
    a, b, C = problem(11, 6, 7, "unit", scale=scale)

    def loop():
        with NUMPY.quiet():
            out = NUMPY.iterate(C, a, b, reg, 200, 0.0, True, False, False)
        return out, out.alpha + reg * np.log(out.u), out.beta + reg * np.log(out.v)

    fused, f, g = loop()
    monkeypatch.setattr(_fused, "FUSED_UP_TO", 0)
    blas, f_blas, g_blas = loop()
    assert fused.n_iters == blas.n_iters == 200
    assert fused.n_log_blocks == blas.n_log_blocks == log_blocks
    assert np.abs(fused.alpha).max() > 0  # absorbed at least once
    for mine, theirs in ((f, f_blas), (g, g_blas)):
        assert np.abs(mine - theirs).max() <= 1e-13 * np.abs(theirs).max()


def test_applies_where_supported_and_faster():
    """C-contiguous float32 / float64 kernels up to FUSED_UP_TO entries per problem take the
    fused loop; Fortran order, other dtypes and larger problems stay on BLAS."""
    assert _fused.applies(np.empty((256, 256)))
    assert _fused.applies(np.empty((500, 16, 16), np.float32))  # a batch: the size per problem
    assert _fused.applies(np.empty((1, _fused.FUSED_UP_TO), np.float32))
    assert not _fused.applies(np.empty((2, _fused.FUSED_UP_TO // 2 + 1), np.float32))
    assert not _fused.applies(np.asfortranarray(np.empty((8, 9))))
    assert not _fused.applies(np.empty((8, 9), np.float16))
    assert not _fused.applies(np.empty((0, 3)))


def test_threshold_follows_the_cores():
    """Two cores (where it was measured) run the fused loop up to 2048 x 2048 per problem; more
    cores keep BLAS's threads from 724 x 724 (2^19 entries)."""
    assert _fused._fused_up_to(1) == _fused._fused_up_to(2) == 2048 * 2048
    assert _fused._fused_up_to(16) == 2**19 < 1024 * 1024


def test_problem_above_the_threshold_runs_blas_and_equals_pot(monkeypatch):
    """A problem above FUSED_UP_TO entries runs the BLAS loop (the fused one would fail here);
    its plan equals POT's to 1e-12."""
    a, b, C = problem(2, 80, 70, "unit")
    monkeypatch.setattr(_fused, "FUSED_UP_TO", 80 * 70 - 1)
    for name in ("scaling_blocks", "plan_and_cost"):  # not called: BLAS takes the problem
        monkeypatch.setattr(_fused, name, None)
    res = _solve(a, b, C, 0.1, n_iters=3, tol=0, method="kernel")
    assert np.abs(res.plan - pot_plan(a, b, C, 0.1, 3)).max() <= 1e-12


def test_large_fused_problem_equals_pot(monkeypatch):
    """1100 x 1000 (2^20 entries: fused on two cores) runs the fused loop; its plan equals POT's
    to 1e-12 (float64, 20 iterations)."""
    monkeypatch.setattr(_fused, "FUSED_UP_TO", 2**22)
    calls = []
    fused_blocks = _fused.scaling_blocks
    monkeypatch.setattr(_fused, "scaling_blocks", lambda *args: calls.append(1) or fused_blocks(
        *args))
    a, b, C = problem(5, 1100, 1000, "unit")
    res = _solve(a, b, C, 0.1, n_iters=20, tol=0, method="kernel")
    assert calls == [1]  # one native call ran the 20 iterations
    assert np.abs(res.plan - pot_plan(a, b, C, 0.1, 20)).max() <= 1e-12


def test_fortran_ordered_cost_equals_pot():
    """A Fortran-ordered cost (BLAS loop) and its C-ordered copy (fused loop) both equal POT."""
    a, b, C = problem(3, 30, 20)
    for cost in (np.asfortranarray(C), np.ascontiguousarray(C)):
        res = _solve(a, b, cost, 0.1, n_iters=20, tol=0, method="kernel")
        assert np.abs(res.plan - pot_plan(a, b, C, 0.1, 20)).max() <= 1e-12


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plan_and_cost_equal_numpy_formulas(dtype):
    """plan_and_cost writes u_i K_ij v_j over K and returns sum_ij P_ij C_ij per problem: equal to
    numpy's products and einsum to round-off (4 eps relative)."""
    rng = np.random.default_rng(0)
    K, C = rng.random((3, 11, 6)).astype(dtype), rng.random((3, 11, 6)).astype(dtype)
    u, v = rng.random((3, 11)).astype(dtype), rng.random((3, 6)).astype(dtype)
    expected = u[:, :, None] * K * v[:, None, :]
    P, cost = _fused.plan_and_cost(K.copy(), u, v, C)
    eps = np.finfo(dtype).eps
    assert_allclose(P, expected, rtol=4 * eps, atol=0)
    assert cost.shape == (3,) and cost.dtype == dtype
    assert_allclose(cost, np.einsum("kij,kij->k", expected, C), rtol=16 * eps, atol=0)
    one_P, one_cost = _fused.plan_and_cost(K[0].copy(), u[0], v[0], C[0])
    assert one_cost.shape == () and one_P.shape == (11, 6)


def test_scaling_blocks_leave_their_inputs_alone():
    """The loop writes new scalings: K, a, b and the starting u, v are unchanged (the solver keeps
    the old scalings to roll a block back)."""
    a, b, C = problem(4, 9, 7)
    K = np.exp(-C / 0.3)
    u, v = np.ones(9), np.ones(7)
    copies = [x.copy() for x in (K, a, b, u, v)]
    u0, v0, u1, v1, before = _fused.scaling_blocks(K, a, b, u, v, 25, 10, None, None)
    assert before == 20 and u1.shape == (9,) and v1.shape == (7,)
    for x, y in zip((K, a, b, u, v), copies, strict=True):
        assert np.array_equal(x, y)


def test_scaling_blocks_stop_after_the_first_block_out_of_bounds():
    """With bounds, the blocks stop after the first one whose scalings of positive mass leave
    them: (u0, v0) are the scalings one block earlier, equal to running that many iterations
    (the BLAS recurrence written out in numpy); zero-mass scalings are not checked."""
    a, b, C = problem(5, 6, 6)
    a[2] = 0.0
    a, b = a / a.sum(), b / b.sum()
    K = np.exp(-C / 0.01)  # scalings grow from 3e16 to 1e17 over the first 10 iterations

    def numpy_iterations(t):
        u, v = np.ones(6), np.ones(6)
        for _ in range(t):
            u = a / np.maximum(K @ v, 1e-300)
            v = b / np.maximum(K.T @ u, 1e-300)
        return u, v

    hi, block = 6.5e16, 2
    t = block  # the end of the first block whose largest scaling of positive mass passes hi
    while max(numpy_iterations(t)[0][a > 0].max(), numpy_iterations(t)[1].max()) <= hi:
        t += block
    u0, v0, u1, v1, before = _fused.scaling_blocks(K, a, b, np.ones(6), np.ones(6), 300, block,
                                                    1e-300, (1e-300, hi))
    assert t >= 3 * block and before == t - block  # (zero-mass u = 0 checked: stop at once)
    assert_allclose(u1, numpy_iterations(t)[0], rtol=1e-12)
    assert_allclose(u0, numpy_iterations(t - block)[0], rtol=1e-12)
    assert_allclose(v0, numpy_iterations(t - block)[1], rtol=1e-12)


def test_first_use_from_several_threads_compiles_once():
    """App sessions are threads: in a fresh process, eight threads whose first numpy solves
    start together all get POT's plan (the first compiles or loads the loops, the others wait)."""
    script = (
        "import threading\n"
        "import numpy as np, ot\n"
        "from sinkd import sinkhorn\n"
        "rng = np.random.default_rng(0)\n"
        "C = rng.random((9, 7)); a = np.full(9, 1 / 9); b = np.full(7, 1 / 7)\n"
        "ref = ot.sinkhorn(b, a, C.T, 0.2, numItermax=15, stopThr=0, warn=False).T\n"
        "gaps, start = [], threading.Barrier(8)\n"
        "def solve():\n"
        "    start.wait()\n"
        "    try:\n"
        "        gaps.append(float(np.abs(sinkhorn(a, b, C, 0.2, n_iters=15, tol=0).plan - ref)"
        ".max()))\n"
        "    except Exception as e:\n"
        "        gaps.append(repr(e))\n"
        "threads = [threading.Thread(target=solve) for _ in range(8)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(gaps)\n"
        "assert len(gaps) == 8 and all(isinstance(g, float) and g <= 1e-12 for g in gaps), gaps\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extremes_are_numpys_min_and_max_of_both_scalings(dtype):
    """The compiled range of (u, v) together is numpy's min and max of their concatenation, for
    single problems and batches; a NaN in either gives (NaN, NaN); infinities are reported."""
    rng = np.random.default_rng(1)
    for shape_u, shape_v in (((5,), (3,)), ((4, 6), (4, 2)), ((1,), (1,))):
        u = rng.lognormal(0.0, 5.0, shape_u).astype(dtype)
        v = rng.lognormal(0.0, 5.0, shape_v).astype(dtype)
        both = np.concatenate((u, v), -1)
        assert _fused.extremes(u, v) == (float(both.min()), float(both.max()))
        assert NUMPY.extremes(u, v, None, None) == (float(both.min()), float(both.max()))
        for target in (u, v):
            bad = target.copy()
            bad.reshape(-1)[-1] = np.nan
            pair = (bad, v) if target is u else (u, bad)
            assert all(np.isnan(x) for x in _fused.extremes(*pair))
        inf_v = v.copy()
        inf_v.reshape(-1)[0] = np.inf
        assert _fused.extremes(u, inf_v)[1] == np.inf


def test_small_kernels_are_plain_arrays_and_large_ones_cache_line_aligned():
    """Kernels from 64 KiB start on a 64-byte line (the fused loop's vector loads); smaller ones
    are plain numpy arrays; both are C-contiguous, of the cost's shape and dtype, and within 4
    ulp of numpy's exp(-C / reg) entry by entry (each within ~1-2.4 ulp of the exact value)."""
    for n, dtype in ((16, np.float32), (90, np.float64), (128, np.float32), (256, np.float64)):
        C = np.random.default_rng(n).random((n, n)).astype(dtype)
        K = NUMPY.kernel(C, 0.3)
        assert K.shape == C.shape and K.dtype == dtype and K.flags.c_contiguous
        if K.nbytes >= 2**16:
            assert K.ctypes.data % 64 == 0
        expected = np.exp(np.divide(C, -0.3))
        assert (np.abs(K - expected) <= 4 * np.spacing(expected)).all()
