"""The verification module detects disagreement, not only agreement."""

import numpy as np

from sinkd import verify


def test_check_fails_when_error_exceeds_tolerance():
    """A check whose error is above its tolerance, or NaN, is marked failed."""
    assert not verify._check("x", "p", 1e-3, 1e-12).passed
    assert not verify._check("x", "p", float("nan"), 1.0).passed
    assert verify._check("x", "p", 0.0, 0.0).passed


def test_check_problem_detects_a_wrong_solver(monkeypatch):
    """If our solver's plan were off by a little, the POT comparison would fail."""
    real = verify.sinkhorn

    def perturbed(*args, **kwargs):
        res = real(*args, **kwargs)
        object.__setattr__(res, "cost", res.cost * (1 + 1e-6))
        return res

    monkeypatch.setattr(verify, "sinkhorn", perturbed)
    rng = np.random.default_rng(0)
    checks = verify.check_problem(np.ones(4), np.ones(4), rng.random((4, 4)), 0.1, 5)
    by_name = {c.name: c for c in checks}
    assert not by_name["transport cost vs ot.sinkhorn2"].passed
