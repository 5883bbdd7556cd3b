"""Tests for sinkd.divergences: references in numpy/scipy, closed forms, laws, stability."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import softmax
from scipy.stats import entropy

import sinkd.divergences as divmod_
from sinkd.divergences import DIVERGENCES, divergence

SKEW, BETA = 0.1, 0.3
DELTAS = (1e-2, 1e-4, 1e-6, 1e-8)  # distances to the gjsd endpoints


def _reference(name: str, ps: np.ndarray, pt: np.ndarray) -> np.ndarray:
    """Per-sample divergence computed independently with scipy (rows are samples)."""
    if name == "kl":
        return entropy(pt, ps, axis=-1)
    if name == "rkl":
        return entropy(ps, pt, axis=-1)
    if name == "js":
        return jensenshannon(ps, pt, axis=-1) ** 2
    if name == "tvd":
        return 0.5 * np.abs(pt - ps).sum(-1)
    if name == "skew_kl":
        return entropy(pt, SKEW * pt + (1 - SKEW) * ps, axis=-1)
    if name == "skew_rkl":
        return entropy(ps, SKEW * ps + (1 - SKEW) * pt, axis=-1)
    m = BETA * pt + (1 - BETA) * ps  # gjsd
    return (BETA * entropy(pt, m, axis=-1) + (1 - BETA) * entropy(ps, m, axis=-1)) / (
        BETA * (1 - BETA)
    )


def _div(name, s, t, **kw):
    kw.setdefault("skew", SKEW)
    kw.setdefault("beta", BETA)
    return divergence(name, s, t, **kw)


def _logits(seed: int, *shape: int, scale: float = 3.0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)


def test_names_tuple():
    """DIVERGENCES lists the allowed names in the documented order."""
    assert DIVERGENCES == ("kl", "rkl", "js", "tvd", "skew_kl", "skew_rkl", "gjsd")


@pytest.mark.parametrize("name", DIVERGENCES)
@pytest.mark.parametrize("N", [1, 7])
@pytest.mark.parametrize("C", [1, 2, 10])
@pytest.mark.parametrize("T", [0.5, 1.0, 4.0])
def test_matches_scipy_reference(name, N, C, T):
    """Per-sample values equal the scipy reference on softmax(logits / T) to 1e-12."""
    for seed in range(3):
        zs, zt = _logits(seed, N, C), _logits(100 + seed, N, C)
        ps = softmax(zs.numpy() / T, axis=-1)
        pt = softmax(zt.numpy() / T, axis=-1)
        got = _div(name, zs, zt, temperature=T, reduction="none").numpy()
        np.testing.assert_allclose(got, _reference(name, ps, pt), rtol=1e-12, atol=1e-12)


def test_two_class_kl_closed_form():
    """For C = 2, KL(p_t||p_s) = a log(a/b) + (1-a) log((1-a)/(1-b)), a, b = sigmoid(logit)."""
    x, y = 1.3, -0.4
    a, b = 1 / (1 + math.exp(-y)), 1 / (1 + math.exp(-x))
    want = a * math.log(a / b) + (1 - a) * math.log((1 - a) / (1 - b))
    s = torch.tensor([[x, 0.0]], dtype=torch.float64)
    t = torch.tensor([[y, 0.0]], dtype=torch.float64)
    assert abs(divergence("kl", s, t).item() - want) < 1e-14
    want_r = b * math.log(b / a) + (1 - b) * math.log((1 - b) / (1 - a))
    assert abs(divergence("rkl", s, t).item() - want_r) < 1e-14


def test_disjoint_support_limits_and_js_gradient():
    """Near-disjoint supports: JS -> log 2, TVD -> 1, JS gradient vanishes, KL gradient does not."""
    s = torch.tensor([[50.0, -50.0]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[-50.0, 50.0]], dtype=torch.float64)
    js = divergence("js", s, t)
    assert abs(js.item() - math.log(2)) < 1e-10
    assert abs(divergence("tvd", s, t).item() - 1.0) < 1e-10
    (g_js,) = torch.autograd.grad(js, s)
    assert g_js.norm() < 1e-10
    (g_kl,) = torch.autograd.grad(divergence("kl", s, t), s)
    assert g_kl.norm() > 1.0


@pytest.mark.parametrize("name", DIVERGENCES)
def test_zero_and_zero_gradient_at_equality(name):
    """D(p, p) = 0 and its gradient w.r.t. both logits is 0 when student == teacher."""
    z = _logits(0, 5, 6)
    s, t = z.clone().requires_grad_(), z.clone().requires_grad_()
    for T in (0.5, 1.0, 4.0):
        d = _div(name, s, t, temperature=T)
        assert abs(d.item()) < 1e-12
        gs, gt = torch.autograd.grad(d, (s, t))
        assert gs.abs().max() < 1e-12 and gt.abs().max() < 1e-12


@pytest.mark.parametrize("name", DIVERGENCES)
def test_nonnegative(name):
    """Every divergence is >= 0 on random inputs (several skews / betas / temperatures)."""
    for seed in range(5):
        s, t = _logits(seed, 8, 5), _logits(50 + seed, 8, 5)
        for w in (0.0, 0.25, 0.5, 0.9, 1.0):
            d = _div(name, s, t, temperature=0.7, reduction="none", skew=w, beta=w)
            assert (d >= 0).all()


@pytest.mark.parametrize("name", ["js", "tvd"])
def test_symmetric(name):
    """JS and TVD are symmetric: D(s, t) == D(t, s)."""
    s, t = _logits(1, 6, 7), _logits(2, 6, 7)
    torch.testing.assert_close(
        divergence(name, s, t, reduction="none"),
        divergence(name, t, s, reduction="none"),
        rtol=0,
        atol=1e-14,
    )


def test_swap_laws():
    """skew_kl(s, t) == skew_rkl(t, s) and gjsd_beta(s, t) == gjsd_{1-beta}(t, s)."""
    s, t = _logits(3, 4, 5), _logits(4, 4, 5)
    kw = {"reduction": "none"}
    torch.testing.assert_close(
        divergence("skew_kl", s, t, skew=0.3, **kw), divergence("skew_rkl", t, s, skew=0.3, **kw)
    )
    torch.testing.assert_close(
        divergence("gjsd", s, t, beta=0.2, **kw), divergence("gjsd", t, s, beta=0.8, **kw)
    )


def test_skew_endpoints():
    """skew = 0 gives KL / reverse KL exactly; skew = 1 gives 0."""
    s, t = _logits(5, 4, 5), _logits(6, 4, 5)
    assert torch.equal(divergence("skew_kl", s, t, skew=0.0), divergence("kl", s, t))
    assert torch.equal(divergence("skew_rkl", s, t, skew=0.0), divergence("rkl", s, t))
    assert divergence("skew_kl", s, t, skew=1.0).item() == 0.0
    assert divergence("skew_rkl", s, t, skew=1.0).item() == 0.0


def test_gjsd_endpoints_and_midpoint():
    """gjsd(0) = KL(p_t||p_s), gjsd(1) = KL(p_s||p_t), gjsd(0.5) = 4 JS; continuous at 0 and 1."""
    s, t = _logits(7, 6, 5), _logits(8, 6, 5)
    kw = {"reduction": "none", "temperature": 1.5}
    kl, rkl = divergence("kl", s, t, **kw), divergence("rkl", s, t, **kw)
    assert torch.equal(divergence("gjsd", s, t, beta=0.0, **kw), kl)
    assert torch.equal(divergence("gjsd", s, t, beta=1.0, **kw), rkl)
    torch.testing.assert_close(
        divergence("gjsd", s, t, beta=0.5, **kw),
        4 * divergence("js", s, t, **kw),
        rtol=1e-12,
        atol=1e-12,
    )
    err0 = [((divergence("gjsd", s, t, beta=d, **kw) - kl) / kl).abs().max() for d in DELTAS]
    err1 = [((divergence("gjsd", s, t, beta=1 - d, **kw) - rkl) / rkl).abs().max() for d in DELTAS]
    for err in (err0, err1):
        assert all(a > b for a, b in zip(err, err[1:], strict=False)) and err[-1] < 1e-4


@pytest.mark.parametrize("name", DIVERGENCES)
def test_reductions_consistent(name):
    """sum == batchmean * N, mean == batchmean / C, none has the leading shape (...,)."""
    N, C = 7, 5
    s, t = _logits(9, N, C), _logits(10, N, C)
    bm = _div(name, s, t)
    torch.testing.assert_close(_div(name, s, t, reduction="sum"), bm * N)
    torch.testing.assert_close(_div(name, s, t, reduction="mean"), bm / C)
    none = _div(name, s, t, reduction="none")
    assert none.shape == (N,)
    torch.testing.assert_close(none.mean(), bm)
    s3, t3 = s[:6].reshape(2, 3, C), t[:6].reshape(2, 3, C)
    assert _div(name, s3, t3, reduction="none").shape == (2, 3)
    torch.testing.assert_close(_div(name, s3, t3), none[:6].mean())


@pytest.mark.parametrize("name", DIVERGENCES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_logits_finite_values_and_gradients(name, dtype):
    """Logits of magnitude 1e4 with random signs: finite values and gradients w.r.t. both inputs."""
    shapes = [(4, 10), (1, 1), (1, 3), (3, 1)]
    for seed, shape in enumerate(shapes):
        g = torch.Generator().manual_seed(seed)
        sign = torch.randint(0, 2, (2, *shape), generator=g).to(dtype) * 2 - 1
        mag = 1e4 * torch.where(torch.rand(2, *shape, generator=g) < 0.5, 1.0, torch.rand(1))
        z = (sign * mag.to(dtype)).unbind(0)
        for T in (1e-3, 0.5, 1.0, 4.0, 1e3):
            for red in ("batchmean", "none"):
                s, t = z[0].clone().requires_grad_(), z[1].clone().requires_grad_()
                d = _div(name, s, t, temperature=T, reduction=red)
                assert d.dtype == dtype and torch.isfinite(d).all()
                gs, gt = torch.autograd.grad(d.sum(), (s, t))
                assert torch.isfinite(gs).all() and torch.isfinite(gt).all()


@pytest.mark.parametrize("name", DIVERGENCES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("scale", [3.0, 1e4])
def test_half_precision_inputs(name, dtype, scale):
    """float16 / bfloat16 inputs return the input dtype, finite, close to the float64 result."""
    s, t = (
        _logits(11, 4, 10, scale=scale, dtype=dtype),
        _logits(12, 4, 10, scale=scale, dtype=dtype),
    )
    d = _div(name, s, t)
    assert d.dtype == dtype and torch.isfinite(d)
    ref = _div(name, s.double(), t.double()).item()
    assert abs(d.item() - ref) <= 1e-2 * max(1.0, abs(ref))


@pytest.mark.parametrize("name", DIVERGENCES)
def test_gradcheck(name):
    """Autograd gradients match finite differences (float64, N=3, C=4) w.r.t. both logits."""
    s = _logits(13, 3, 4, scale=1.0).requires_grad_()
    t = _logits(14, 3, 4, scale=1.0).requires_grad_()
    if name == "tvd":  # |.| is smooth only away from p_t == p_s
        gap = (torch.softmax(s / 1.3, -1) - torch.softmax(t / 1.3, -1)).abs().min()
        assert gap > 1e-3
    assert torch.autograd.gradcheck(lambda a, b: _div(name, a, b, temperature=1.3), (s, t))


def test_teacher_not_detached():
    """Gradients reach the teacher logits (detaching is the caller's choice)."""
    s, t = _logits(15, 2, 3), _logits(16, 2, 3).requires_grad_()
    (gt,) = torch.autograd.grad(divergence("kl", s, t), t)
    assert gt.abs().max() > 0


_OK = torch.zeros(2, 3)
_BAD = [
    ({"name": "wasserstein"}, "name"),
    ({"teacher_logits": torch.zeros(2, 4)}, "teacher_logits"),
    ({"student_logits": torch.tensor(1.0)}, "student_logits"),
    ({"teacher_logits": torch.tensor(1.0)}, "teacher_logits"),
    ({"temperature": 0.0}, "temperature"),
    ({"temperature": -1.0}, "temperature"),
    ({"temperature": math.inf}, "temperature"),
    ({"temperature": math.nan}, "temperature"),
    ({"skew": -0.1}, "skew"),
    ({"skew": 1.5}, "skew"),
    ({"skew": math.nan}, "skew"),
    ({"beta": -0.1}, "beta"),
    ({"beta": 1.01}, "beta"),
    ({"beta": math.nan}, "beta"),
    ({"reduction": "avg"}, "reduction"),
    ({"student_logits": torch.tensor([[0.0, math.nan, 1.0]] * 2)}, "student_logits"),
    ({"teacher_logits": torch.tensor([[0.0, math.inf, 1.0]] * 2)}, "teacher_logits"),
    ({"student_logits": torch.tensor([[0.0, -math.inf, 1.0]] * 2)}, "student_logits"),
    ({"student_logits": torch.zeros(2, 3, dtype=torch.long)},
     r"student_logits must be a floating-point tensor .*got torch\.int64"),
    ({"student_logits": torch.zeros(0, 3), "teacher_logits": torch.zeros(0, 3)},
     r"student_logits must have shape \(\.\.\., C\) with no empty dimension, got \(0, 3\)"),
    ({"checks": "yes"}, "checks must be True or False"),
]


@pytest.mark.parametrize(("kwargs", "arg"), _BAD)
def test_bad_input_raises(kwargs, arg):
    """Invalid arguments raise ValueError naming the offending argument."""
    call = {"name": "kl", "student_logits": _OK, "teacher_logits": _OK, **kwargs}
    with pytest.raises(ValueError, match=arg):
        divergence(**call)


def test_checks_false_skips_only_the_finite_check():
    """checks=False gives the checked value on finite logits, and no error (NaN) on NaN ones."""
    s, t = _logits(20, 4, 3), _logits(21, 4, 3)
    for name in DIVERGENCES:
        assert divergence(name, s, t, checks=False).item() == divergence(name, s, t).item()
    s[0, 0] = math.nan
    assert torch.isnan(divergence("kl", s, t, checks=False))


def test_unknown_name_lists_allowed():
    """The unknown-name error lists every allowed name."""
    with pytest.raises(ValueError, match="name") as info:
        divergence("nope", _OK, _OK)
    assert all(n in str(info.value) for n in DIVERGENCES)


def test_docstring_examples():
    """The module's doctest examples run and pass."""
    assert doctest.testmod(divmod_, verbose=False).failed == 0
