"""Tests for the compiled exponential and range pass of the numpy path (sinkd/_fused_exp.py).

numba calls libm's scalar ``exp`` where Intel's SVML is absent, so the numpy path computes the
kernel ``exp(-C / reg)`` with its own vectorised exponential, in the pass that finds the cost's
min and max. References: ``exp`` in extended precision (``np.longdouble``, 64-bit significand on
x86) for accuracy, numpy's division, ``exp``, ``min`` and ``max``, and POT for whole solves.
"""

from __future__ import annotations

import numpy as np
import pytest
from _checks import pot_plan, problem

from sinkd import _fused_exp, sinkhorn
from sinkd._numpy_iterations import NUMPY

# exp's whole domain per dtype: from below the smallest subnormal result to past the overflow
DOMAIN = {np.float64: (-750.0, 712.0), np.float32: (-106.0, 90.0)}


def _arguments(dtype) -> np.ndarray:
    lo, hi = DOMAIN[dtype]
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(lo, hi, 400_001), rng.normal(0.0, 20.0, 50_000),
                        [0.0, -0.0, 1e-30, -1e-30, 0.5, -0.5]])
    return x.astype(dtype)


def _exact(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", under="ignore"):
        return np.exp(x.astype(np.longdouble))


def _ulps(got: np.ndarray, x: np.ndarray) -> np.ndarray:
    """|got - exp(x)| in units of the last place of exp(x) rounded to got's dtype (normal
    results only)."""
    exact = _exact(x)
    with np.errstate(over="ignore"):
        rounded = exact.astype(got.dtype)
    normal = np.isfinite(rounded) & (rounded >= np.finfo(got.dtype).tiny)
    spacing = np.spacing(rounded[normal]).astype(np.longdouble)
    return np.abs(got[normal].astype(np.longdouble) - exact[normal]) / spacing


@pytest.mark.parametrize("dtype,bound", [(np.float64, 2.0), (np.float32, 1.0)])
def test_exp_is_within_a_few_ulps_of_the_exact_exponential(dtype, bound):
    """Over exp's whole domain, the compiled exp is within 2 ulp (float64) / 1 ulp (float32) of
    exp computed in extended precision (numpy's own float32 exp measured 2.4 ulp here)."""
    x = _arguments(dtype)
    got = _fused_exp.exp_inplace(x.copy())
    assert got.dtype == dtype
    assert _ulps(got, x).max() <= bound


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_underflows_and_overflows_as_numpy(dtype):
    """Subnormal results are within one smallest subnormal of the exact value, results below
    half of it are 0 where numpy's are, overflow gives inf exactly where numpy's does, and
    exp(0) = 1 exactly."""
    x = _arguments(dtype)
    got = _fused_exp.exp_inplace(x.copy())
    with np.errstate(over="ignore", under="ignore"):
        expected = np.exp(x)
    assert np.array_equal(np.isinf(got), np.isinf(expected))
    tiny = np.finfo(dtype).tiny
    small = np.isfinite(expected) & (expected < tiny)
    smallest_subnormal = np.nextafter(dtype(0), dtype(1))
    assert small.sum() > 1000
    assert np.abs(got[small].astype(np.longdouble) - _exact(x[small])).max() <= smallest_subnormal
    assert (got[expected == 0] == 0).all() and (got >= 0).all()
    assert got[x == 0].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (7, 33, 17), (256, 256)])
def test_kernel_and_range_is_numpys_division_exp_min_and_max(dtype, shape):
    """One pass gives exp(C / -reg) (numpy's division, then exp within the ulp bound) and C's
    exact min and max, for any shape (batches included) and signed costs."""
    rng = np.random.default_rng(sum(shape))
    C = (rng.normal(0.0, 3.0, shape)).astype(dtype)
    K = np.empty_like(C)
    low, high = _fused_exp.kernel_and_range(C, 0.07, K)
    assert (low, high) == (float(C.min()), float(C.max()))
    x = np.divide(C, -0.07)
    assert x.dtype == dtype
    assert _ulps(K.reshape(-1), x.reshape(-1)).max() <= (2.0 if dtype == np.float64 else 1.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bad,expected", [(np.nan, "nan"), (-np.nan, "nan"), (np.inf, "inf"),
                                          (-np.inf, "-inf")])
def test_range_reports_nan_and_infinities(dtype, bad, expected):
    """A NaN (either sign bit) anywhere gives (NaN, NaN); +-inf shows up as the max / min."""
    for where in (0, 5, -1):
        C = np.linspace(-2.0, 3.0, 12, dtype=dtype).reshape(3, 4)
        C.reshape(-1)[where] = bad
        low, high = _fused_exp.kernel_and_range(C, 1.0, np.empty_like(C))
        if expected == "nan":
            assert np.isnan(low) and np.isnan(high)
        else:
            assert (low, high) == (float(C.min()), float(C.max()))
            assert float(expected) in (low, high)


def test_negative_zero_and_denormal_costs_order_correctly():
    """-0.0 < 0.0 < smallest subnormal in the range pass, as the floats compare."""
    tiny = np.nextafter(0.0, 1.0)
    C = np.array([[0.0, tiny], [-0.0, 2 * tiny]])
    assert _fused_exp.kernel_and_range(C, 1.0, np.empty_like(C)) == (0.0, 2 * tiny)
    C = np.array([[-tiny, 0.0]])
    assert _fused_exp.kernel_and_range(C, 1.0, np.empty_like(C)) == (-tiny, 0.0)


def test_validation_reuses_the_kernel_of_its_range_pass():
    """The numpy steps' range pass returns the kernel (C-contiguous costs), the torch steps' does
    not; a broadcast cost is expanded and its kernel left to the loop; the solve equals POT."""
    C = np.random.default_rng(3).random((6, 5))
    low, high, K = NUMPY.range_and_kernel(C, 0.2)
    assert (low, high) == (C.min(), C.max()) and K.flags.c_contiguous
    assert np.abs(K - np.exp(C / -0.2)).max() <= 1e-15
    assert NUMPY.range_and_kernel(np.asfortranarray(C), 0.2)[2] is None
    a, b, C2 = problem(4, 6, 5, "unit")
    batch_a = np.stack([a, a, a])
    res = sinkhorn(batch_a, b, C2, 0.2, n_iters=30, tol=0)  # C2 broadcast over 3 problems
    assert np.abs(res.plan - pot_plan(a, b, C2, 0.2, 30)).max() <= 1e-12


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernel_method_underflow_matches_pot(dtype):
    """Where exp(-C / reg) reaches the subnormals (C / reg up to 740 in float64, 103 in float32),
    the kernel method's plan equals POT's (which uses numpy's exp) to 1e-12 / 1e-5 of its mass."""
    rng = np.random.default_rng(9)
    n, m = 12, 9
    top = 740.0 if dtype == np.float64 else 103.0
    C = rng.uniform(0.0, top, (n, m)).astype(dtype)
    C[:, 0] = rng.uniform(0.0, 5.0, n)  # every row keeps a normal entry: no 0 / 0
    C[0, :] = rng.uniform(0.0, 5.0, m)  # and every column
    a, b = np.full(n, 1.0 / n, dtype), np.full(m, 1.0 / m, dtype)
    res = sinkhorn(a, b, C, 1.0, n_iters=5, tol=0, method="kernel")
    tol = 1e-12 if dtype == np.float64 else 1e-5
    expected = pot_plan(a.astype(np.float64), b.astype(np.float64), C.astype(np.float64), 1.0, 5)
    assert np.abs(res.plan - expected).max() <= tol


@pytest.mark.parametrize("n,method", [(12, "kernel"), (60, "kernel"), (60, "log")])
def test_without_numba_the_numpy_path_still_equals_pot(n, method, monkeypatch):
    """Where numba is missing (``available()`` False), the kernel comes from numpy's or torch's
    exp (from 2048 entries), the loop from BLAS and the range from numpy: the plan equals POT's
    to 1e-12 and bad costs are still refused."""
    from sinkd import _fused

    monkeypatch.setattr(_fused, "available", lambda: False)
    a, b, C = problem(n, n, n - 1, "unit")
    assert NUMPY.range_and_kernel(C, 0.1)[2] is None
    res = sinkhorn(a, b, C, 0.1, n_iters=25, tol=0, method=method)
    assert np.abs(res.plan - pot_plan(a, b, C, 0.1, 25)).max() <= 1e-12
    C[1, 2] = np.nan
    with pytest.raises(ValueError, match="cost must be finite"):
        sinkhorn(a, b, C, 0.1)
