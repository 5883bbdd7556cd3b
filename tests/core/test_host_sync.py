"""The training path makes no host synchronisation: SinKDLoss and distillation_objective, forward
and backward, never read a value back from the device.

A host synchronisation is any call that needs a tensor's *value* in Python: ``.item()``,
``bool(t)`` (an ``if`` on a tensor), ``float(t)``, ``.tolist()``, ``.cpu()``, ``.numpy()`` ...
On a GPU each one stalls the step until the device catches up. ``SyncCounter`` (a
``torch.overrides.TorchFunctionMode``) records every such call made from Python while it is
active; the first tests show that it does count them, so a zero below means something.
"""

from __future__ import annotations

import operator

import pytest
import torch
from torch.overrides import TorchFunctionMode

from sinkd import SinKDLoss, distillation_objective, sinkd_loss, sinkhorn

Tensor = torch.Tensor
# Python-level calls that read a tensor's value (or shape from its values) back to the host
READ_BACKS = {
    Tensor.item, Tensor.tolist, Tensor.__bool__, Tensor.__float__, Tensor.__int__,
    Tensor.__index__, Tensor.__complex__, Tensor.__format__, Tensor.__repr__, Tensor.__array__,
    Tensor.cpu, Tensor.numpy, Tensor.is_nonzero, Tensor.nonzero, torch.nonzero,
    Tensor.equal, torch.equal, Tensor.allclose, torch.allclose, Tensor.masked_select,
    torch.masked_select, Tensor.unique, torch.unique, Tensor.any, Tensor.all,
}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class SyncCounter(TorchFunctionMode):
    """Records the name of every read-back call made while active (``calls``)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in READ_BACKS:
            self.calls.append(getattr(func, "__name__", repr(func)))
        return func(*args, **(kwargs or {}))


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


def _logits(device, n=16, c=5, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    z_s = (3 * torch.randn(n, c, generator=g)).to(device=device, dtype=dtype).requires_grad_()
    z_t = (3 * torch.randn(n, c, generator=g)).to(device=device, dtype=dtype)
    labels = torch.randint(0, c, (n,), generator=g).to(device)
    return z_s, z_t, labels


def test_the_counter_counts_every_kind_of_read_back():
    """Each read-back kind made on purpose is recorded, by name, once."""
    t = torch.tensor([1.5, 2.0])
    with SyncCounter() as counter:
        t[0].item()
        bool(t[0] > 0)
        float(t[0])
        int(t[1])
        operator.index(torch.tensor(3))
        t.tolist()
        t.cpu()
        t.numpy()
        if t.sum() > 0:  # an `if` on a tensor is a __bool__
            pass
    assert counter.calls == ["item", "__bool__", "__float__", "__int__", "__index__", "tolist",
                             "cpu", "numpy", "__bool__"]


def test_the_checked_functional_calls_do_synchronise(device):
    """sinkd_loss and sinkhorn with their default checks read values back (finite logits, the
    cost's range): the counter sees them, so the zeros below are not blindness."""
    z_s, z_t, _ = _logits(device)
    with SyncCounter() as counter:
        sinkd_loss(z_s, z_t)
    assert counter.calls, "sinkd_loss checks the logits: at least one read-back"
    with SyncCounter() as counter:
        sinkhorn(None, None, torch.rand(4, 4, device=device), 0.1, tol=0)
    assert counter.calls


MODULE_OPTIONS = [
    {}, {"method": "log"}, {"reg": 0.01}, {"method": "kernel", "grad": "envelope"},
    {"marginals": "uniform", "cost": "l2"}, {"debiased": True}, {"level": "class"},
    {"level": "class", "class_cost": torch.abs(torch.arange(5.0)[:, None] - torch.arange(5.0))},
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("options", MODULE_OPTIONS)
def test_sinkd_loss_module_forward_and_backward_make_no_host_sync(device, options, dtype):
    """SinKDLoss(z_s, z_t) and its backward make 0 read-backs, whatever the options (reg = 0.01
    in float32 resolves "auto" to the log method: plain log-sum-exp, still no read-back); the
    gradient is finite."""
    module = SinKDLoss(**options).to(device)
    z_s, z_t, _ = _logits(device, dtype=dtype)
    with SyncCounter() as counter:
        module(z_s, z_t).backward()
    assert counter.calls == []
    assert bool(torch.isfinite(z_s.grad).all())


def test_building_the_default_module_makes_no_host_sync():
    """SinKDLoss() checks its options in Python: constructing one reads nothing back (the
    objective builds one per call when given none)."""
    with SyncCounter() as counter:
        SinKDLoss(reg=0.05, n_iters=7, level="class", method="log")
    assert counter.calls == []


@pytest.mark.parametrize("options", [
    {}, {"kd": "kl", "t_squared": True, "kd_temperature": 3.0}, {"alpha": 0.5, "beta": 0.0},
    {"sinkhorn_term": SinKDLoss(reg=0.01, debiased=True)},
])
def test_distillation_objective_forward_and_backward_make_no_host_sync(device, options):
    """distillation_objective (beta > 0 runs the default SinKDLoss) and the backward of its
    total make 0 read-backs; every part is a finite scalar."""
    options = dict(options)
    if "sinkhorn_term" in options:
        options["sinkhorn_term"] = options["sinkhorn_term"].to(device)
    z_s, z_t, labels = _logits(device)
    with SyncCounter() as counter:
        terms = distillation_objective(z_s, z_t, labels, **options)
        terms.total.backward()
    assert counter.calls == []
    parts = torch.stack([terms.total, terms.ce, terms.kd, terms.sinkhorn])
    assert bool(torch.isfinite(parts).all()) and bool(torch.isfinite(z_s.grad).all())


@pytest.mark.parametrize("method", ["auto", "kernel", "log"])
def test_unchecked_functional_calls_make_no_host_sync(device, method):
    """sinkd_loss(checks=False) and sinkhorn(checks=False, tol=0), forward and backward, make 0
    read-backs for every method."""
    z_s, z_t, _ = _logits(device)
    C = torch.rand(6, 6, device=device, requires_grad=True)
    with SyncCounter() as counter:
        sinkd_loss(z_s, z_t, method=method, checks=False).backward()
        res = sinkhorn(None, None, C, 0.01, n_iters=30, tol=0, method=method, checks=False)
        res.cost.backward()
    assert counter.calls == []
