"""Tests for sinkd.objective: the objective's parts against torch/numpy/scipy, schedule, bad input.

Float64 logits are computed in float64 (half precision in float32), so references agree to
round-off (relative 1e-12).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, softmax
from scipy.stats import entropy

from sinkd import (
    ObjectiveTerms,
    SinKDLoss,
    annealed_temperature,
    distillation_objective,
    kd_loss,
    sinkd_loss,
)

F32 = 1e-12  # relative tolerance: float64 logits are computed in float64


def _batch(n: int = 8, c: int = 5, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z_s = (3 * torch.randn(n, c, generator=g, dtype=torch.float64)).to(dtype)
    z_t = (3 * torch.randn(n, c, generator=g, dtype=torch.float64)).to(dtype)
    labels = torch.randint(0, c, (n,), generator=g)
    return z_s, z_t, labels


def _close(got: float, want: float, rtol: float = F32) -> None:
    assert abs(got - want) <= rtol * max(1.0, abs(want)), (got, want, abs(got - want))


def _soft_ce_ref(z_s, z_t, T):
    """-mean_i sum_c softmax(z_t / T) log softmax(z_s / T), in float64 with scipy."""
    p_t = softmax(np.asarray(z_t, dtype=np.float64) / T, axis=1)
    log_p_s = log_softmax(np.asarray(z_s, dtype=np.float64) / T, axis=1)
    return float(-(p_t * log_p_s).sum(1).mean())


def _kl_ref(z_s, z_t, T):
    """mean_i KL(p_t[i] || p_s[i]) with scipy.stats.entropy."""
    p_t = softmax(np.asarray(z_t, dtype=np.float64) / T, axis=1)
    p_s = softmax(np.asarray(z_s, dtype=np.float64) / T, axis=1)
    return float(entropy(p_t, p_s, axis=1).mean())


# ----------------------------------------------------------------------------------------------
# distillation_objective
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha,beta", [(0.0, 0.0), (1.0, 0.0), (0.9, 0.8), (0.3, 2.5), (0.5, 0.0)])
@pytest.mark.parametrize("kd", ["soft_ce", "kl"])
def test_total_is_weighted_sum_of_parts(alpha, beta, kd):
    """total == (1 - alpha) ce + alpha kd + beta sinkhorn, each part its independent value."""
    z_s, z_t, y = _batch(seed=1)
    T = 2.5
    terms = distillation_objective(z_s, z_t, y, alpha=alpha, beta=beta, kd_temperature=T, kd=kd)
    assert isinstance(terms, ObjectiveTerms)
    for part in (terms.total, terms.ce, terms.kd, terms.sinkhorn):
        assert part.shape == ()
    _close(terms.total.item(), ((1 - alpha) * terms.ce + alpha * terms.kd
                                + beta * terms.sinkhorn).item())
    # and with the parts computed independently
    ce = torch.nn.functional.cross_entropy(z_s, y).item()
    kd_ref = _soft_ce_ref(z_s, z_t, T) if kd == "soft_ce" else _kl_ref(z_s, z_t, T)
    sink = sinkd_loss(z_s, z_t).item() if beta > 0 else 0.0
    _close(terms.total.item(), (1 - alpha) * ce + alpha * kd_ref + beta * sink)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n,c", [(1, 2), (8, 5), (32, 10)])
def test_ce_equals_torch_and_numpy(n, c, seed):
    """ce equals cross_entropy and -mean_i log softmax(z_s)[i, y_i] computed in numpy."""
    z_s, z_t, y = _batch(n, c, seed)
    ce = distillation_objective(z_s, z_t, y, beta=0.0).ce.item()
    _close(ce, torch.nn.functional.cross_entropy(z_s, y).item())
    zs = z_s.numpy()
    shifted = zs - zs.max(1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    _close(ce, float(-log_p[np.arange(n), y.numpy()].mean()))


@pytest.mark.parametrize("T", [0.5, 1.0, 2.0, 8.0])
@pytest.mark.parametrize("n,c,seed", [(1, 2, 0), (8, 5, 1), (32, 10, 2)])
def test_kd_soft_ce_equals_scipy(n, c, seed, T):
    """kd 'soft_ce' == -mean_i sum_c softmax(z_t/T) log softmax(z_s/T) (scipy, float64)."""
    z_s, z_t, y = _batch(n, c, seed)
    want = _soft_ce_ref(z_s.numpy(), z_t.numpy(), T)
    _close(kd_loss(z_s, z_t, T).item(), want)
    terms = distillation_objective(z_s, z_t, y, kd_temperature=T, kd="soft_ce", beta=0.0)
    _close(terms.kd.item(), want)


@pytest.mark.parametrize("T", [0.5, 1.0, 2.0, 8.0])
@pytest.mark.parametrize("n,c,seed", [(1, 2, 0), (8, 5, 1), (32, 10, 2)])
def test_kd_kl_equals_scipy_entropy(n, c, seed, T):
    """kd 'kl' == mean_i scipy.stats.entropy(p_t[i], p_s[i]) at temperature T."""
    z_s, z_t, y = _batch(n, c, seed)
    want = _kl_ref(z_s.numpy(), z_t.numpy(), T)
    got = kd_loss(z_s, z_t, T, kind="kl").item()
    assert abs(got - want) <= F32 * max(1.0, abs(want))
    terms = distillation_objective(z_s, z_t, y, kd_temperature=T, kd="kl", beta=0.0)
    _close(terms.kd.item(), want)


def test_kd_kl_is_zero_for_equal_logits_and_soft_ce_is_entropy():
    """student == teacher: kl == 0 and soft_ce == the teacher's entropy (soft_ce = kl + H(p_t))."""
    _, z_t, _ = _batch(seed=3)
    T = 2.0
    assert abs(kd_loss(z_t, z_t.clone(), T, kind="kl").item()) <= 1e-12
    p_t = softmax(z_t.numpy() / T, axis=1)
    _close(kd_loss(z_t, z_t.clone(), T).item(), float(entropy(p_t, axis=1).mean()))


@pytest.mark.parametrize("kd", ["soft_ce", "kl"])
@pytest.mark.parametrize("T", [0.5, 2.0, 4.0])
def test_t_squared_multiplies_by_t_squared(kd, T):
    """t_squared=True multiplies the KD part (and its weight in total) by T^2."""
    z_s, z_t, y = _batch(seed=4)
    plain = kd_loss(z_s, z_t, T, kd).item()
    _close(kd_loss(z_s, z_t, T, kd, t_squared=True).item(), T**2 * plain)
    a = distillation_objective(z_s, z_t, y, kd_temperature=T, kd=kd, t_squared=True, beta=0.0)
    _close(a.kd.item(), T**2 * plain)
    _close(a.total.item(), (0.1 * a.ce + 0.9 * T**2 * plain).item())


def test_beta_zero_gives_zero_sinkhorn_part():
    """beta = 0: the sinkhorn part is exactly 0 and total is (1 - alpha) ce + alpha kd."""
    z_s, z_t, y = _batch(seed=5)
    terms = distillation_objective(z_s, z_t, y, alpha=0.4, beta=0.0)
    assert terms.sinkhorn.item() == 0.0
    _close(terms.total.item(), (0.6 * terms.ce + 0.4 * terms.kd).item())


def test_sinkhorn_part_is_default_term_or_given_module():
    """beta > 0: sinkhorn is sinkd_loss with defaults, or the given SinKDLoss's value."""
    z_s, z_t, y = _batch(seed=6)
    _close(distillation_objective(z_s, z_t, y).sinkhorn.item(), sinkd_loss(z_s, z_t).item())
    module = SinKDLoss(reg=0.05, temperature=1.0, scale=1.0, marginals="uniform")
    got = distillation_objective(z_s, z_t, y, sinkhorn_term=module).sinkhorn.item()
    _close(got, sinkd_loss(z_s, z_t, reg=0.05, temperature=1.0, scale=1.0,
                           marginals="uniform").item())


@pytest.mark.parametrize("kd", ["soft_ce", "kl"])
@pytest.mark.parametrize("beta", [0.0, 0.8])
def test_teacher_gets_no_gradient(kd, beta):
    """Teacher logits with requires_grad=True end with grad None; the student's is finite."""
    z_s, z_t, y = _batch(seed=7)
    z_s.requires_grad_(True)
    z_t.requires_grad_(True)
    distillation_objective(z_s, z_t, y, beta=beta, kd=kd, kd_temperature=2.0).total.backward()
    assert z_t.grad is None
    assert z_s.grad is not None and bool(torch.isfinite(z_s.grad).all())
    assert z_s.grad.abs().max().item() > 0


@pytest.mark.parametrize("T", [0.5, 1.0, 3.0])
def test_soft_ce_and_kl_have_the_same_student_gradient(T):
    """d soft_ce / d z_s == d kl / d z_s: they differ by the teacher's entropy, a constant."""
    z_s, z_t, _ = _batch(seed=8)
    grads = []
    for kind in ("soft_ce", "kl"):
        z = z_s.clone().requires_grad_(True)
        kd_loss(z, z_t, T, kind).backward()
        grads.append(z.grad)
    scale = grads[0].abs().max().item()
    assert (grads[0] - grads[1]).abs().max().item() <= F32 * scale
    # and the values differ by exactly that entropy
    p_t = softmax(z_t.numpy() / T, axis=1)
    _close(kd_loss(z_s, z_t, T).item() - kd_loss(z_s, z_t, T, "kl").item(),
           float(entropy(p_t, axis=1).mean()))


def test_kd_student_gradient_equals_closed_form():
    """d soft_ce / d z_s == (softmax(z_s/T) - softmax(z_t/T)) / (N T) (float64)."""
    z_s, z_t, _ = _batch(seed=9)
    n, T = z_s.shape[0], 2.0
    z = z_s.clone().requires_grad_(True)
    kd_loss(z, z_t, T).backward()
    want = (softmax(z_s.numpy() / T, axis=1) - softmax(z_t.numpy() / T, axis=1)) / (n * T)
    np.testing.assert_allclose(z.grad.numpy(), want, rtol=0, atol=F32 * np.abs(want).max())


# ----------------------------------------------------------------------------------------------
# annealed_temperature
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("start", [4.0, 2.0, 1.0, 0.5, 10.0, 3.7])
@pytest.mark.parametrize("n_epochs", [2, 3, 4, 7, 10])
def test_annealed_temperature_is_linear_to_one(start, n_epochs):
    """T(e) = start + (1 - start) e / (n - 1): start at epoch 0, 1 at the last, linear."""
    temps = [annealed_temperature(start, e, n_epochs) for e in range(n_epochs)]
    assert temps[0] == start
    assert temps[-1] == pytest.approx(1.0, rel=0, abs=1e-15)
    for e, t in enumerate(temps):
        assert t == pytest.approx(start + (1.0 - start) * e / (n_epochs - 1), rel=1e-15)
    steps = np.diff(temps)
    np.testing.assert_allclose(steps, (1.0 - start) / (n_epochs - 1), rtol=1e-12, atol=1e-15)


def test_annealed_temperature_docstring_values_and_single_epoch():
    """start 4 over 4 epochs is 4, 3, 2, 1; with n_epochs = 1 the only epoch gives 1."""
    assert [annealed_temperature(4.0, e, 4) for e in range(4)] == [4.0, 3.0, 2.0, 1.0]
    for start in (0.5, 1.0, 4.0):
        assert annealed_temperature(start, 0, 1) == 1.0


@pytest.mark.parametrize("start,epoch,n_epochs,name", [
    (0.0, 0, 3, "start"), (-1.0, 0, 3, "start"), (float("nan"), 0, 3, "start"),
    (float("inf"), 0, 3, "start"),
    (2.0, -1, 3, "epoch"), (2.0, 3, 3, "epoch"), (2.0, 5, 3, "epoch"), (2.0, 0, 0, "n_epochs"),
])
def test_annealed_temperature_bad_input(start, epoch, n_epochs, name):
    """start <= 0 (or not finite), epoch outside [0, n_epochs), n_epochs < 1: ValueError."""
    with pytest.raises(ValueError, match=name):
        annealed_temperature(start, epoch, n_epochs)


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("options,name", [
    ({"alpha": -0.1}, "alpha"), ({"alpha": 1.1}, "alpha"), ({"alpha": float("nan")}, "alpha"),
    ({"beta": -0.5}, "beta"), ({"beta": float("nan")}, "beta"), ({"beta": float("inf")}, "beta"),
])
def test_objective_bad_weights(options, name):
    """alpha outside [0, 1] or beta < 0 / not finite: ValueError naming the argument."""
    z_s, z_t, y = _batch(seed=10)
    with pytest.raises(ValueError, match=name):
        distillation_objective(z_s, z_t, y, **options)


@pytest.mark.parametrize("options,name", [
    ({"kind": "js"}, "kind"), ({"temperature": 0.0}, "temperature"),
    ({"temperature": -2.0}, "temperature"), ({"temperature": float("inf")}, "temperature"),
])
def test_kd_loss_bad_input(options, name):
    """kd_loss: unknown kind or temperature <= 0 / not finite -> ValueError naming it."""
    z_s, z_t, _ = _batch(seed=11)
    options = {"temperature": 1.0, **options}
    with pytest.raises(ValueError, match=name):
        kd_loss(z_s, z_t, **options)


@pytest.mark.parametrize("options,name", [
    ({"kd": "js"}, r"\bkd\b"), ({"kd_temperature": 0.0}, "kd_temperature"),
    ({"kd_temperature": -1.0}, "kd_temperature"),
])
def test_objective_bad_kd_names_the_callers_argument(options, name):
    """distillation_objective: bad kd / kd_temperature <= 0 -> ValueError naming that argument."""
    z_s, z_t, y = _batch(seed=12)
    with pytest.raises(ValueError, match=name):
        distillation_objective(z_s, z_t, y, **options)


@pytest.mark.parametrize("args,options,pattern", [
    ((), {"sinkhorn_term": lambda s, t: s.sum()}, "sinkhorn_term must be a SinKDLoss or None"),
    ((), {"t_squared": 1}, "t_squared must be True or False, got 1"),
    (("int",), {}, r"student_logits must be a floating-point tensor .*got torch\.int64"),
    (("short",), {}, r"student_logits \(8, 5\) and teacher_logits \(7, 5\) must have the same"),
])
def test_objective_bad_arguments_are_named(args, options, pattern):
    """A bad sinkhorn_term, t_squared, integer logits or mismatched shapes: ValueError naming
    the argument, what is allowed and what was given."""
    z_s, z_t, y = _batch(seed=13)
    if args == ("int",):
        z_s = z_s.long()
    if args == ("short",):
        z_t = z_t[:7]
    with pytest.raises(ValueError, match=pattern):
        distillation_objective(z_s, z_t, y, **options)
