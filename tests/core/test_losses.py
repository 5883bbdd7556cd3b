"""Tests for sinkd.losses: independent numpy/POT/scipy references, laws, stability, bad input.

The reference term (Cui et al. 2024) is re-implemented here in plain numpy, literally: softmax at
tau, the L1 cost between every student and every teacher sample, K = exp(-D / lam), then T times
"divide every row by its row sum, then every column by its column sum", and scale * sum(P * D).
"""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch
from scipy.spatial.distance import cdist
from scipy.special import softmax

from sinkd import SinKDLoss, kd_loss, pairwise_cost, sinkd_loss

TAU, LAM, T, SCALE = 2.0, 0.1, 20, 1e-3
SEEDS = (0, 1, 2)


# ----------------------------------------------------------------------------------------------
# independent references
# ----------------------------------------------------------------------------------------------
def _distance(p: np.ndarray, q: np.ndarray, cost: str = "l1") -> np.ndarray:
    """(N, M) distance between the rows of p and q, by broadcasting (no scipy, no torch)."""
    diff = p[:, None, :] - q[None, :, :]
    if cost == "l1":
        return np.abs(diff).sum(-1)
    sq = (diff**2).sum(-1)
    return np.sqrt(sq) if cost == "l2" else sq


def _plain_plan(D: np.ndarray, lam: float = LAM, n_iters: int = T, mass: float = 1.0):
    """Steps 3-4 literally: P = exp(-D/lam), then rows then columns normalised to ``mass``."""
    P = np.exp(-D / lam)
    for _ in range(n_iters):
        P = P / P.sum(axis=1, keepdims=True) * mass
        P = P / P.sum(axis=0, keepdims=True) * mass
    return P


def _plain(z_s, z_t, *, tau=TAU, lam=LAM, n_iters=T, scale=SCALE, cost="l1", uniform=False):
    """Steps 1-5 of the SinKD reference term in plain numpy; returns (term, P, D)."""
    z_s, z_t = np.asarray(z_s, dtype=np.float64), np.asarray(z_t, dtype=np.float64)
    p_s = softmax(z_s / tau, axis=1)
    p_t = softmax(z_t / tau, axis=1)
    D = _distance(p_s, p_t, cost)
    mass = 1.0 / len(z_s) if uniform else 1.0
    P = _plain_plan(D, lam, n_iters, mass)
    return scale * float((P * D).sum()), P, D


def _logits(n: int, c: int, seed: int, magnitude: float = 3.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (magnitude * torch.randn(n, c, generator=g, dtype=torch.float64)).to(dtype)


def _pair(n: int, c: int, seed: int, magnitude: float = 3.0, dtype=torch.float64):
    return _logits(n, c, seed, magnitude, dtype), _logits(n, c, seed + 1000, magnitude, dtype)


def _disjoint(n: int, dtype=torch.float64):
    """Student sure of class 0, teacher sure of class 1 (softmax is exactly one-hot)."""
    z_s = torch.zeros(n, 2, dtype=dtype)
    z_t = torch.zeros(n, 2, dtype=dtype)
    z_s[:, 0] = 1000.0
    z_t[:, 1] = 1000.0
    return z_s, z_t


def _close(got: float, want: float, tol: float = 1e-12) -> None:
    assert abs(got - want) <= tol * max(1.0, abs(want)), (got, want, abs(got - want))


def _student_grad(z_s: torch.Tensor, z_t: torch.Tensor, **options) -> torch.Tensor:
    z = z_s.clone().requires_grad_(True)
    sinkd_loss(z, z_t, **options).backward()
    return z.grad


# ----------------------------------------------------------------------------------------------
# equality with the plain reference
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("c", [1, 2, 3, 10])
@pytest.mark.parametrize("n", [1, 2, 5, 16, 64])
def test_default_equals_plain_numpy(n, c, seed):
    """Default sinkd_loss equals the plain numpy steps 1-5 to 1e-12 (unscaled and scaled)."""
    z_s, z_t = _pair(n, c, seed)
    want_unit, _, _ = _plain(z_s.numpy(), z_t.numpy(), scale=1.0)
    _close(sinkd_loss(z_s, z_t, scale=1.0).item(), want_unit)
    _close(sinkd_loss(z_s, z_t).item(), SCALE * want_unit)


@pytest.mark.parametrize("method", ["kernel", "log"])
@pytest.mark.parametrize("n,c", [(5, 3), (16, 10)])
def test_every_method_equals_plain_numpy(method, n, c):
    """The kernel and log methods both give the plain numpy value to 1e-12 at the defaults."""
    z_s, z_t = _pair(n, c, 7)
    want, _, _ = _plain(z_s.numpy(), z_t.numpy(), scale=1.0)
    _close(sinkd_loss(z_s, z_t, scale=1.0, method=method).item(), want)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("n,c,seed", [(1, 2, 0), (2, 3, 1), (4, 3, 2), (5, 4, 3)])
def test_gradient_equals_finite_differences_of_plain(n, c, seed, debiased):
    """d term / d z_s (unrolled through all T iterations) equals central FD of plain numpy."""
    z_s, z_t = _pair(n, c, seed)
    zs, zt = z_s.numpy(), z_t.numpy()

    def f(x):
        if not debiased:
            return _plain(x, zt, scale=1.0)[0]
        return (_plain(x, zt, scale=1.0)[0] - 0.5 * _plain(x, x, scale=1.0)[0]
                - 0.5 * _plain(zt, zt, scale=1.0)[0])

    h = 1e-6
    fd = np.zeros_like(zs)
    for idx in np.ndindex(*zs.shape):
        up, down = zs.copy(), zs.copy()
        up[idx] += h
        down[idx] -= h
        fd[idx] = (f(up) - f(down)) / (2 * h)
    got = _student_grad(z_s, z_t, scale=1.0, debiased=debiased).numpy()
    # FD round-off is ~ eps * |f| / h ~ 1e-10 * N: atol covers components that are near zero
    np.testing.assert_allclose(got, fd, rtol=1e-5, atol=1e-8 * max(1.0, np.abs(fd).max()))


@pytest.mark.parametrize("options", [
    {}, {"scale": 1.0}, {"scale": 1.0, "marginals": "uniform"}, {"scale": 1.0, "cost": "l2"},
    {"scale": 1.0, "method": "log"}, {"scale": 1.0, "level": "class"},
    {"scale": 1.0, "debiased": True},
])
def test_gradcheck_student(options):
    """torch.autograd.gradcheck passes for sinkd_loss w.r.t. the student logits in float64."""
    z_s, z_t = _pair(4, 3, 11)
    z_s.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: sinkd_loss(z, z_t, **options), (z_s,))


# ----------------------------------------------------------------------------------------------
# options against independent references
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,c,seed", [(1, 3, 0), (5, 3, 1), (16, 10, 2), (64, 2, 3)])
def test_uniform_marginals_is_unit_over_n(n, c, seed):
    """marginals='uniform' equals the unit value / N and the plain loop with masses 1/N."""
    z_s, z_t = _pair(n, c, seed)
    uniform = sinkd_loss(z_s, z_t, marginals="uniform", scale=1.0).item()
    _close(uniform, sinkd_loss(z_s, z_t, scale=1.0).item() / n)
    _close(uniform, _plain(z_s.numpy(), z_t.numpy(), scale=1.0, uniform=True)[0])


@pytest.mark.parametrize("cost", ["l1", "l2", "sq_l2"])
@pytest.mark.parametrize("n,c,seed", [(1, 2, 0), (5, 3, 1), (16, 10, 2)])
def test_cost_option_equals_plain(cost, n, c, seed):
    """cost='l1'/'l2'/'sq_l2' equals the plain loop run on the matching distance."""
    z_s, z_t = _pair(n, c, seed)
    want = _plain(z_s.numpy(), z_t.numpy(), scale=1.0, cost=cost)[0]
    _close(sinkd_loss(z_s, z_t, cost=cost, scale=1.0).item(), want)


@pytest.mark.parametrize("n,c,seed", [(1, 3, 0), (5, 3, 1), (16, 10, 2), (64, 4, 3)])
def test_plan_equals_pot(n, c, seed):
    """The plan is POT's ot.sinkhorn(1, 1, D.T, lam, T iterations).T: term == 1e-3 <P_pot, D>."""
    z_s, z_t = _pair(n, c, seed)
    _, P_plain, D = _plain(z_s.numpy(), z_t.numpy())
    ones = np.ones(n)
    P_pot = ot.sinkhorn(ones, ones, D.T, LAM, numItermax=T, stopThr=0, warn=False).T
    np.testing.assert_allclose(P_plain, P_pot, rtol=1e-12, atol=1e-15)
    _close(sinkd_loss(z_s, z_t, scale=1.0).item(), float((P_pot * D).sum()))
    _close(sinkd_loss(z_s, z_t).item(), 0.001 * float((P_pot * D).sum()))


@pytest.mark.parametrize("tau", [0.5, 1.0, 4.0, 10.0])
def test_temperature_is_honoured(tau):
    """temperature=tau gives the plain value at tau (and differs from the value at tau = 2)."""
    z_s, z_t = _pair(8, 5, 3)
    got = sinkd_loss(z_s, z_t, temperature=tau, scale=1.0).item()
    _close(got, _plain(z_s.numpy(), z_t.numpy(), tau=tau, scale=1.0)[0])
    assert abs(got - sinkd_loss(z_s, z_t, scale=1.0).item()) > 1e-6


@pytest.mark.parametrize("n,c,seed", [(1, 3, 0), (5, 3, 1), (16, 10, 2)])
def test_reg_and_n_iters_are_honoured(n, c, seed):
    """reg, n_iters and scale given explicitly give the plain value with those parameters."""
    z_s, z_t = _pair(n, c, seed)
    for lam, n_iters, scale in ((0.05, 7, 0.5), (1.0, 1, 2.0), (0.3, 50, 1.0)):
        want = _plain(z_s.numpy(), z_t.numpy(), lam=lam, n_iters=n_iters, scale=scale)[0]
        got = sinkd_loss(z_s, z_t, reg=lam, n_iters=n_iters, scale=scale).item()
        _close(got, want)


@pytest.mark.parametrize("n,c,seed", [(1, 3, 0), (5, 3, 1), (16, 10, 2)])
def test_envelope_gradient_treats_plan_as_constant(n, c, seed):
    """grad='envelope': same value, gradient == d/dz_s of sum(P * D(z_s)) with P held fixed."""
    z_s, z_t = _pair(n, c, seed)
    _close(sinkd_loss(z_s, z_t, grad="envelope", scale=1.0).item(),
           sinkd_loss(z_s, z_t, scale=1.0).item())
    # P from a solve without gradients (the plain loop), then autograd through the cost only
    _, P, _ = _plain(z_s.numpy(), z_t.numpy())
    z = z_s.clone().requires_grad_(True)
    p_s = torch.softmax(z / TAU, dim=1)
    p_t = torch.softmax(z_t / TAU, dim=1)
    D = (p_s[:, None, :] - p_t[None, :, :]).abs().sum(-1)
    (SCALE * (torch.from_numpy(P) * D).sum()).backward()
    got = _student_grad(z_s, z_t, grad="envelope")
    scale_g = max(1e-300, z.grad.abs().max().item())
    assert (got - z.grad).abs().max().item() <= 1e-12 * scale_g
    if n > 1:  # the unrolled gradient differs: the plan depends on the student too
        unrolled = _student_grad(z_s, z_t)
        assert (unrolled - got).abs().max().item() > 1e-9 * scale_g


def _pot_class_level(z_s, z_t, M, marginals="unit", lam=LAM, n_iters=T):
    p_s = softmax(np.asarray(z_s) / TAU, axis=1)
    p_t = softmax(np.asarray(z_t) / TAU, axis=1)
    per_sample = []
    for i in range(len(p_s)):
        P = ot.sinkhorn(p_t[i], p_s[i], M.T, lam, numItermax=n_iters, stopThr=0, warn=False).T
        per_sample.append(float((P * M).sum()))
    return float(np.sum(per_sample) if marginals == "unit" else np.mean(per_sample))


@pytest.mark.parametrize("marginals", ["unit", "uniform"])
@pytest.mark.parametrize("custom", [False, True])
@pytest.mark.parametrize("n,c,seed", [(1, 2, 0), (5, 3, 1), (16, 10, 2)])
def test_class_level_equals_pot_per_sample(n, c, seed, custom, marginals):
    """level='class' is per-sample POT sinkhorn(p_t[i], p_s[i], M.T).T summed / averaged."""
    z_s, z_t = _pair(n, c, seed)
    idx = np.arange(c, dtype=np.float64)
    M = np.abs(idx[:, None] - idx[None, :]) if custom else 1.0 - np.eye(c)
    class_cost = torch.from_numpy(M) if custom else None
    got = sinkd_loss(z_s, z_t, level="class", class_cost=class_cost, marginals=marginals,
                     scale=1.0).item()
    _close(got, _pot_class_level(z_s.numpy(), z_t.numpy(), M, marginals))


@pytest.mark.parametrize("n,c,seed", [(1, 3, 0), (2, 2, 1), (5, 3, 1), (16, 10, 2)])
def test_debiased_is_three_plain_calls(n, c, seed):
    """debiased=True equals OT(s,t) - OT(s,s)/2 - OT(t,t)/2, each a plain-numpy call."""
    z_s, z_t = _pair(n, c, seed)
    zs, zt = z_s.numpy(), z_t.numpy()
    want = (_plain(zs, zt, scale=1.0)[0] - 0.5 * _plain(zs, zs, scale=1.0)[0]
            - 0.5 * _plain(zt, zt, scale=1.0)[0])
    _close(sinkd_loss(z_s, z_t, debiased=True, scale=1.0).item(), want)


@pytest.mark.parametrize("options", [{}, {"level": "class"}, {"marginals": "uniform"},
                                     {"cost": "sq_l2"}, {"method": "log"}])
@pytest.mark.parametrize("n,c", [(1, 1), (1, 3), (5, 3), (16, 10)])
def test_debiased_is_exactly_zero_when_student_is_teacher(n, c, options):
    """debiased=True is exactly 0 (not merely small) when the student equals the teacher."""
    z = _logits(n, c, 5)
    assert sinkd_loss(z, z.clone(), debiased=True, **options).item() == 0.0


# ----------------------------------------------------------------------------------------------
# laws
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,c,seed", [(2, 2, 0), (5, 3, 1), (16, 10, 2), (64, 4, 3)])
def test_permutation_of_student_rows_leaves_term_unchanged(n, c, seed):
    """Permuting the student rows leaves the term unchanged; the per-sample KD term changes."""
    z_s, z_t = _pair(n, c, seed)
    perm = torch.roll(torch.arange(n), 1)  # a derangement: every row moves
    _close(sinkd_loss(z_s[perm], z_t, scale=1.0).item(), sinkd_loss(z_s, z_t, scale=1.0).item())
    kd, kd_perm = kd_loss(z_s, z_t, 2.0).item(), kd_loss(z_s[perm], z_t, 2.0).item()
    assert abs(kd - kd_perm) > 1e-3 * abs(kd)


@pytest.mark.parametrize("n,c,seed", [(1, 3, 0), (5, 3, 1), (16, 10, 2)])
def test_replicated_batch_scales_exactly_by_k(n, c, seed):
    """Replicating the batch k times multiplies the unit term by k and keeps the uniform term.

    Derivation: for the k-fold copy, D' = D (x) J_k (J_k the k x k all-ones), hence
    K' = K (x) J_k. If P' = P (x) J_k / k before a row step, each row of P' sums to the matching
    row sum of P, so the row step gives P_rows (x) J_k / k; each column then sums to the matching
    column sum of P_rows, so the column step gives P_cols (x) J_k / k. By induction after T
    iterations P'_T = P_T (x) J_k / k at every finite T (it holds for K' = K (x) J_k since the
    first row step removes any constant factor), so <P'_T, D'> = k^2 / k <P_T, D> = k <P_T, D>.
    With masses 1/(kN) instead of 1/N the same argument gives <P', D'> = <P, D>.
    """
    z_s, z_t = _pair(n, c, seed)
    unit1 = sinkd_loss(z_s, z_t, scale=1.0).item()
    uniform1 = sinkd_loss(z_s, z_t, scale=1.0, marginals="uniform").item()
    for k in (1, 2, 4):
        zs_k, zt_k = z_s.repeat(k, 1), z_t.repeat(k, 1)
        _close(sinkd_loss(zs_k, zt_k, scale=1.0).item(), k * unit1)
        _close(sinkd_loss(zs_k, zt_k, scale=1.0, marginals="uniform").item(), uniform1)
        # the plain reference agrees with the relation too
        _close(_plain(zs_k.numpy(), zt_k.numpy(), scale=1.0)[0], k * unit1)
        # replicating teacher rows in a different order (interleaved) gives the same value
        _close(sinkd_loss(zs_k, z_t.repeat_interleave(k, 0), scale=1.0).item(), k * unit1)


@pytest.mark.parametrize("n,c,seed", [(2, 2, 0), (5, 3, 1), (16, 10, 2), (64, 3, 3)])
def test_student_equal_teacher_is_strictly_positive(n, c, seed):
    """Student == teacher with distinct rows and C >= 2: term > 0 (entropic blur), as plain."""
    z = _logits(n, c, seed)
    got = sinkd_loss(z, z.clone()).item()
    assert got > 0.0
    _close(got, _plain(z.numpy(), z.numpy())[0])


@pytest.mark.parametrize("n", [1, 2, 5, 16])
def test_one_class_gives_exactly_zero(n):
    """With C = 1 the softmax is constant 1, D = 0 and the term is exactly 0 (unequal logits)."""
    z_s, z_t = _pair(n, 1, 3)
    assert sinkd_loss(z_s, z_t).item() == 0.0
    assert sinkd_loss(z_s, z_s.clone()).item() == 0.0


@pytest.mark.parametrize("n", [1, 16])
def test_disjoint_predictions_give_2n_scale(n):
    """Disjoint one-hot predictions: D = 2 everywhere, term == 2 * N * 0.001 to 1e-12."""
    z_s, z_t = _disjoint(n)
    _close(sinkd_loss(z_s, z_t).item(), 2 * n * 0.001)
    _close(sinkd_loss(z_s, z_t, scale=1.0).item(), 2.0 * n)
    if n == 16:
        _close(sinkd_loss(z_s, z_t).item(), 0.032)


@pytest.mark.parametrize("options", [
    {}, {"grad": "envelope"}, {"level": "class"}, {"debiased": True}, {"method": "log"},
    {"marginals": "uniform", "cost": "l2"},
])
def test_teacher_gets_no_gradient(options):
    """Teacher logits with requires_grad=True end with grad None; the student's is finite, != 0."""
    z_s, z_t = _pair(6, 4, 9)
    z_s.requires_grad_(True)
    z_t.requires_grad_(True)
    sinkd_loss(z_s, z_t, **options).backward()
    assert z_t.grad is None
    assert z_s.grad is not None
    assert bool(torch.isfinite(z_s.grad).all())
    assert z_s.grad.abs().max().item() > 0


# ----------------------------------------------------------------------------------------------
# stability
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["auto", "log"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("magnitude", [1.0, 1e2, 1e4])
@pytest.mark.parametrize("reg", [1e-4, 1e-3, 1e-2])
def test_finite_value_and_gradient(reg, magnitude, dtype, method):
    """Small reg, logits up to 1e4, low precision: finite value in [0, 2N scale], finite grad."""
    n = 8
    z_s, z_t = _pair(n, 5, 21, magnitude=magnitude, dtype=dtype)
    z_s.requires_grad_(True)
    value = sinkd_loss(z_s, z_t, reg=reg, method=method)
    assert value.dtype == dtype
    assert bool(torch.isfinite(value))
    # D is in [0, 2] and the plan's total mass is N: 0 <= term <= 2 N scale (up to round-off)
    slack = 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-5
    assert -slack * SCALE <= value.item() <= (2 * n + slack) * SCALE
    value.backward()
    assert z_s.grad.dtype == dtype
    assert bool(torch.isfinite(z_s.grad).all())


@pytest.mark.parametrize("method", ["auto", "log"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n,c", [(1, 1), (1, 4), (5, 1)])
def test_degenerate_shapes_are_finite(n, c, dtype, method):
    """N = 1 and/or C = 1: finite value (exactly 0 when C = 1) and finite gradient."""
    z_s, z_t = _pair(n, c, 4, dtype=dtype)
    z_s.requires_grad_(True)
    value = sinkd_loss(z_s, z_t, method=method)
    assert value.dtype == dtype
    assert bool(torch.isfinite(value))
    if c == 1:
        assert value.item() == 0.0  # one class: p = 1, D = 0
    value.backward()
    assert bool(torch.isfinite(z_s.grad).all())


def test_single_sample_is_scale_times_distance():
    """N = 1: the plan is the single entry 1, so the term is scale * ||p_s - p_t||_1."""
    z_s, z_t = _pair(1, 4, 4)
    want = SCALE * _distance(softmax(z_s.numpy() / TAU, axis=1),
                             softmax(z_t.numpy() / TAU, axis=1))[0, 0]
    _close(sinkd_loss(z_s, z_t).item() / SCALE, want / SCALE)


def test_kernel_float32_fails_where_auto_does_not():
    """Disjoint case at lam = 0.01: kernel float32 underflows to NaN; "auto"/"log" give 0.032."""
    z_s, z_t = _disjoint(16, torch.float32)
    assert torch.isnan(sinkd_loss(z_s, z_t, reg=0.01, method="kernel"))
    for method in ("auto", "log"):
        value = sinkd_loss(z_s, z_t, reg=0.01, method=method)
        assert value.dtype == torch.float32
        assert abs(value.item() - 0.032) <= 1e-6


# ----------------------------------------------------------------------------------------------
# the module
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    {}, {"reg": 0.05, "n_iters": 7, "temperature": 3.0, "scale": 0.5},
    {"marginals": "uniform", "cost": "sq_l2", "method": "log", "grad": "envelope"},
    {"level": "class", "class_cost": torch.abs(torch.arange(4.0)[:, None] - torch.arange(4.0))},
    {"debiased": True},
])
def test_module_equals_function(options):
    """SinKDLoss(**options)(z_s, z_t) equals sinkd_loss(z_s, z_t, **options), value and grad."""
    z_s, z_t = _pair(6, 4, 13)
    module = SinKDLoss(**options)
    a = z_s.clone().requires_grad_(True)
    b = z_s.clone().requires_grad_(True)
    got, want = module(a, z_t), sinkd_loss(b, z_t, **options)
    _close(got.item(), want.item())
    got.backward()
    want.backward()
    assert torch.allclose(a.grad, b.grad, rtol=1e-12, atol=1e-18)


@pytest.mark.parametrize("options,name", [
    ({"reg": 0.0}, "reg"), ({"reg": -1.0}, "reg"), ({"reg": float("nan")}, "reg"),
    ({"n_iters": 0}, "n_iters"), ({"n_iters": 2.5}, "n_iters"),
    ({"temperature": 0.0}, "temperature"), ({"temperature": -2.0}, "temperature"),
    ({"scale": float("inf")}, "scale"),
    ({"marginals": "sum"}, "marginals"), ({"cost": "kl"}, "cost"), ({"method": "fast"}, "method"),
    ({"grad": "implicit"}, "grad"), ({"level": "token"}, "level"),
    ({"grad": "envelope", "level": "class"}, "grad"),
    ({"class_cost": torch.ones(3, 3)}, "class_cost"),  # class_cost needs level='class'
    ({"level": "class", "class_cost": torch.ones(3)}, "class_cost"),  # not square
    ({"scale": -1.0}, "scale"), ({"debiased": "no"}, "debiased"),
])
def test_module_bad_options_raise_at_construction(options, name):
    """A bad option raises ValueError naming the argument when the module is constructed."""
    with pytest.raises(ValueError, match=name):
        SinKDLoss(**options)


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------
def _bad_inputs():
    z = _logits(4, 3, 0)
    nan_s = z.clone()
    nan_s[1, 2] = float("nan")
    inf_t = z.clone()
    inf_t[0, 0] = float("inf")
    return [
        ((z[0], z[0]), {}, "student_logits"),  # 1-D
        ((z, z[None]), {}, "teacher_logits"),  # 3-D
        ((z, z[:3]), {}, "student_logits"),  # shape mismatch (N)
        ((z, _logits(4, 2, 1)), {}, "student_logits"),  # shape mismatch (C)
        ((torch.zeros(0, 3, dtype=torch.float64),) * 2, {}, "student_logits"),  # N = 0
        ((nan_s, z), {}, "student_logits"),
        ((z, inf_t), {}, "teacher_logits"),
        ((z, z), {"temperature": 0.0}, "temperature"),
        ((z, z), {"temperature": -1.0}, "temperature"),
        ((z, z), {"reg": 0.0}, "reg"),
        ((z, z), {"reg": -0.1}, "reg"),
        ((z, z), {"n_iters": 0}, "n_iters"),
        ((z, z), {"marginals": "sum"}, "marginals"),
        ((z, z), {"cost": "kl"}, "cost"),
        ((z, z), {"method": "fast"}, "method"),
        ((z, z), {"grad": "implicit"}, "grad"),
        ((z, z), {"level": "token"}, "level"),
        ((z, z), {"level": "class", "class_cost": torch.ones(2, 2)}, "class_cost"),
        ((z, z), {"level": "class", "class_cost": torch.ones(3)}, "class_cost"),
        ((z, z), {"class_cost": torch.ones(3, 3)}, "class_cost"),  # level='batch'
        ((z, z), {"grad": "envelope", "level": "class"}, "grad"),
        ((z, z), {"scale": -1e-3}, "scale"),
        ((z, z), {"debiased": 1}, "debiased"),
        ((z, z), {"checks": 1}, "checks"),
        ((z.long(), z), {}, r"student_logits must be a floating-point tensor .*got torch\.int64"),
        ((z, z > 0), {}, r"teacher_logits must be a floating-point tensor .*got torch\.bool"),
        ((z.to(torch.complex128), z), {}, "student_logits must be a floating-point tensor"),
        ((z.numpy(), z), {}, "student_logits must be a torch tensor, got ndarray"),
        ((z, z), {"level": "class", "class_cost": torch.full((3, 3), float("nan"))},
         "class_cost must be finite"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_inputs())))
def test_bad_input_raises_naming_the_argument(case):
    """Each bad input raises ValueError whose message names the offending argument (integer,
    bool and complex logits are refused, not promoted)."""
    args, options, name = _bad_inputs()[case]
    with pytest.raises(ValueError, match=name):
        sinkd_loss(*args, **options)


# ----------------------------------------------------------------------------------------------
# pairwise_cost
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cost,metric", [("l1", "cityblock"), ("l2", "euclidean"),
                                         ("sq_l2", "sqeuclidean")])
@pytest.mark.parametrize("n,m,c", [(1, 1, 1), (5, 7, 3), (64, 33, 10)])
def test_pairwise_cost_equals_scipy_cdist(cost, metric, n, m, c):
    """pairwise_cost(p, q, cost) equals scipy.spatial.distance.cdist with the matching metric."""
    rng = np.random.default_rng(n + m + c)
    p = softmax(3 * rng.standard_normal((n, c)), axis=1)
    q = softmax(3 * rng.standard_normal((m, c)), axis=1)
    got = pairwise_cost(torch.from_numpy(p), torch.from_numpy(q), cost).numpy()
    assert got.shape == (n, m)
    np.testing.assert_allclose(got, cdist(p, q, metric), rtol=1e-12, atol=1e-15)
    # exact zero on the diagonal of a self-cost (no matmul cancellation)
    assert np.all(np.diag(pairwise_cost(torch.from_numpy(p), torch.from_numpy(p), cost)) == 0)


def test_pairwise_cost_rejects_unknown_cost():
    """pairwise_cost with an unknown cost raises ValueError naming 'cost'."""
    with pytest.raises(ValueError, match="cost"):
        pairwise_cost(torch.zeros(2, 3), torch.zeros(2, 3), "cosine")


# ----------------------------------------------------------------------------------------------
# checks, and the module's training path
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    {}, {"method": "log"}, {"reg": 0.01, "scale": 1.0}, {"level": "class"}, {"debiased": True},
    {"level": "class", "class_cost": torch.abs(torch.arange(4.0)[:, None] - torch.arange(4.0))},
])
def test_checks_false_and_the_module_give_the_checked_value(options):
    """sinkd_loss(checks=False) and SinKDLoss (no read-back: plain log-sum-exp where "log" runs)
    give the value and gradient of the checked call, to 1e-12."""
    z_s, z_t = _pair(6, 4, 17)
    grads, values = [], []
    for call in (lambda z: sinkd_loss(z, z_t, **options),
                 lambda z: sinkd_loss(z, z_t, checks=False, **options),
                 lambda z: SinKDLoss(**options)(z, z_t)):
        z = z_s.clone().requires_grad_(True)
        value = call(z)
        value.backward()
        values.append(value.item())
        grads.append(z.grad)
    for value, grad in zip(values[1:], grads[1:], strict=True):
        _close(value, values[0])
        assert torch.allclose(grad, grads[0], rtol=1e-10, atol=1e-15)


def test_nan_logits_are_an_error_when_checked_and_nan_otherwise():
    """NaN logits: sinkd_loss raises naming the argument; with checks=False, and in SinKDLoss,
    the value is NaN (nothing was read back to notice)."""
    z_s, z_t = _pair(4, 3, 2)
    z_s[1, 1] = float("nan")
    with pytest.raises(ValueError, match="^student_logits must be finite"):
        sinkd_loss(z_s, z_t)
    assert torch.isnan(sinkd_loss(z_s, z_t, checks=False))
    assert torch.isnan(SinKDLoss()(z_s, z_t))


def test_module_class_cost_is_a_buffer_that_moves_with_the_module():
    """SinKDLoss's class_cost is in its state_dict and follows .to(dtype); the moved module
    gives the value of the functional call on the moved logits."""
    M = torch.abs(torch.arange(3.0)[:, None] - torch.arange(3.0))
    module = SinKDLoss(level="class", class_cost=M, scale=1.0)
    assert "class_cost" in module.state_dict()
    module = module.to(torch.float64)
    assert module.class_cost.dtype == torch.float64
    z_s, z_t = _pair(5, 3, 8)
    _close(module(z_s, z_t).item(), sinkd_loss(z_s, z_t, level="class", class_cost=M.double(),
                                               scale=1.0).item())


@pytest.mark.parametrize("cost", ["l1", "l2", "sq_l2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_auto_is_the_kernel_up_to_the_dtypes_range_else_log(cost, dtype):
    """method="auto" (decided from the cost's bound between probability vectors) gives the
    kernel's value where the kernel is finite, and the log method's value (finite) at a reg where
    the kernel underflows."""
    z_s, z_t = _pair(8, 3, 5, dtype=dtype)
    for reg in (0.1, 1e-3):
        auto = sinkd_loss(z_s, z_t, reg=reg, cost=cost, scale=1.0)
        kernel = sinkd_loss(z_s, z_t, reg=reg, cost=cost, scale=1.0, method="kernel")
        log = sinkd_loss(z_s, z_t, reg=reg, cost=cost, scale=1.0, method="log")
        assert bool(torch.isfinite(auto))
        want = kernel if bool(torch.isfinite(kernel)) else log
        assert abs(auto.item() - want.item()) <= 1e-12 * max(1.0, abs(want.item()))
