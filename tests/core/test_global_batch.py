"""SinKD's global-batch term (``batch="global"``) on real gloo process groups of 2 and 3 CPU
processes, spawned here, against the single-process term of the concatenated batch.

The laws: with W ranks of N rows each, every rank's value is the single-process term of the W*N
rows in rank order; the gradient reaching rank r's student logits is W times rows r of the
single-process gradient; so DDP's averaging of parameter gradients gives the single-device
gradient. Each W is spawned once: the workers run every check, save what they computed to a
file, and the parent (no process group) computes the references and asserts.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from _spawn import spawn
from torch import nn

from sinkd import SinKDLoss, sinkd_loss
from sinkd.distributed import gather_rows, rank, world_size

N, C, D_IN = 4, 5, 6  # rows per rank, classes, input features of the DDP model
CASES = {  # name -> options of the term; "module" cases run SinKDLoss, the others sinkd_loss
    "default": {},
    "class": {"level": "class"},
    "module": {},
    "module_debiased_uniform": {"debiased": True, "marginals": "uniform", "cost": "l2"},
}
JOIN_TIMEOUT_S = 120


def _batch(world: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch (world*N, C) of student and teacher logits, float64."""
    g = torch.Generator().manual_seed(seed)
    z_s = 3 * torch.randn(world * N, C, generator=g, dtype=torch.float64)
    return z_s, 3 * torch.randn(world * N, C, generator=g, dtype=torch.float64)


def _ddp_data(world: int) -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Linear(D_IN, C, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(world * N, D_IN, generator=g, dtype=torch.float64)
    return model, x, 3 * torch.randn(world * N, C, generator=g, dtype=torch.float64)


def _term(name: str, z_s, z_t, batch: str) -> torch.Tensor:
    options = CASES[name]
    if name.startswith("module"):
        return SinKDLoss(batch=batch, **options)(z_s, z_t)
    return sinkd_loss(z_s, z_t, batch=batch, **options)


def _worker(r: int, world: int, init: str, out: str) -> None:
    """One rank: every check, results saved to ``out``/rank{r}.pt."""
    dist.init_process_group("gloo", init_method=init, rank=r, world_size=world,
                            timeout=timedelta(seconds=60))
    res: dict = {"world_size": world_size(), "rank": rank()}
    rows = slice(r * N, (r + 1) * N)
    z_s_all, z_t_all = _batch(world)
    for name in CASES:  # (a), (b), (c)
        z_s = z_s_all[rows].clone().requires_grad_()
        value = _term(name, z_s, z_t_all[rows], "global")
        value.backward()
        res[name] = (value.detach(), z_s.grad)
    res["gathered"] = gather_rows(z_s_all[rows] + 0, differentiable=False)
    # (d) unequal shard sizes: the last rank has one row fewer; then a different class count
    n = N - 1 if r == world - 1 else N
    for key, (z_s, z_t) in {"unequal": (z_s_all[:n], z_t_all[:n]),
                            "shape": (torch.zeros(N, C + (r == 0)),) * 2}.items():
        try:
            sinkd_loss(z_s, z_t, batch="global")
            res[key] = None
        except ValueError as error:
            res[key] = str(error)
    if world == 2:  # (f) DDP: the gradient of the global term, for "global" and for "local"
        model, x, z_t = _ddp_data(world)
        ddp = nn.parallel.DistributedDataParallel(model)
        for batch in ("global", "local"):
            ddp.zero_grad()
            SinKDLoss(batch=batch, scale=1.0)(ddp(x[rows]), z_t[rows]).backward()
            res[f"ddp_{batch}"] = [p.grad.clone() for p in model.parameters()]
    torch.save(res, Path(out) / f"rank{r}.pt")
    dist.destroy_process_group()


def _spawn(world: int, out: Path) -> list[dict]:
    """Run _worker on ``world`` spawned processes; join with a deadline (never hang)."""
    init = (out / "store").as_uri()  # a file store: no network, no port to pick
    context = spawn(_worker, (world, init, str(out)), world)
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {world} workers did not finish in {JOIN_TIMEOUT_S} s")
    return [torch.load(out / f"rank{r}.pt") for r in range(world)]


@pytest.fixture(scope="module", params=[2, 3])
def ranks(request, tmp_path_factory) -> tuple[int, list[dict]]:
    world = request.param
    return world, _spawn(world, tmp_path_factory.mktemp(f"world{world}"))


def _reference(name: str, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The single-process term of the concatenated batch and its student gradient."""
    z_s, z_t = _batch(world)
    z_s.requires_grad_()
    value = _term(name, z_s, z_t, "local")
    value.backward()
    return value.detach(), z_s.grad


def test_ranks_see_the_group(ranks):
    """world_size() and rank() report the group; gather_rows stacks the shards in rank order."""
    world, results = ranks
    assert [(res["world_size"], res["rank"]) for res in results] == [(world, r)
                                                                      for r in range(world)]
    for res in results:
        assert torch.equal(res["gathered"], _batch(world)[0])


@pytest.mark.parametrize("name", list(CASES))
def test_global_value_is_the_single_process_term_of_the_global_batch(ranks, name):
    """(a, c) On every rank, the value equals sinkd_loss of the concatenated batch (1e-12),
    for the function and the module, level "batch" and "class", debiased and uniform."""
    world, results = ranks
    want, _ = _reference(name, world)
    for res in results:
        got = res[name][0]
        assert abs(float(got - want)) <= 1e-12 * max(1.0, abs(float(want))), (got, want)


@pytest.mark.parametrize("name", list(CASES))
def test_global_gradient_is_w_times_the_rows_of_the_single_process_gradient(ranks, name):
    """(b, c) The gradient reaching rank r's student logits is W * rows r of the gradient of the
    single-process term of the concatenated batch (1e-10)."""
    world, results = ranks
    _, grad = _reference(name, world)
    assert float(grad.abs().max()) > 1e-6  # a zero gradient would make the check empty
    for r, res in enumerate(results):
        want = world * grad[r * N:(r + 1) * N]
        torch.testing.assert_close(res[name][1], want, rtol=0, atol=1e-10)


def test_unequal_shards_raise_a_clear_error_on_every_rank(ranks):
    """(d) Unequal shard sizes: every rank raises ValueError naming batch='global' and the sizes
    seen on each rank (none hangs); a different class count names the shapes."""
    world, results = ranks
    sizes = [N] * (world - 1) + [N - 1]
    for res in results:
        assert res["unequal"] == (f"batch='global' needs equal shard sizes on every rank, "
                                  f"got {sizes}")
        shapes = [(N, 2 * (C + 1))] + [(N, 2 * C)] * (world - 1)  # both logits side by side
        assert res["shape"] == f"batch='global' needs the same shape on every rank, got {shapes}"


def test_ddp_with_the_global_term_gives_the_single_device_gradient(ranks):
    """(f) nn.Linear in DistributedDataParallel on 2 gloo ranks, SinKDLoss(batch="global"):
    after backward every rank holds the parameter gradient of one process on the full batch
    (1e-10); with batch="local" it does not (the check can tell)."""
    world, results = ranks
    if world != 2:
        return
    model, x, z_t = _ddp_data(world)
    SinKDLoss(scale=1.0)(model(x), z_t).backward()
    want = [p.grad for p in model.parameters()]
    for res in results:
        for got, ref in zip(res["ddp_global"], want, strict=True):
            torch.testing.assert_close(got, ref, rtol=0, atol=1e-10)
        gap = max(float((got - ref).abs().max())
                  for got, ref in zip(res["ddp_local"], want, strict=True))
        assert gap > 1e-4


@pytest.mark.parametrize("options", [{}, {"level": "class"}, {"debiased": True, "method": "log"}])
def test_outside_a_process_group_global_is_local_exactly(options):
    """(e) No process group: batch="global" gives the very values and gradients of "local",
    for sinkd_loss and SinKDLoss."""
    assert not dist.is_initialized() and world_size() == 1 and rank() == 0
    z_s, z_t = _batch(1)
    results = []
    for batch in ("local", "global"):
        for term in (lambda a, b, batch=batch: sinkd_loss(a, b, batch=batch, **options),
                     SinKDLoss(batch=batch, **options)):
            z = z_s.clone().requires_grad_()
            value = term(z, z_t)
            value.backward()
            results.append((value.detach(), z.grad))
    for (v_local, g_local), (v_global, g_global) in zip(results[:2], results[2:], strict=True):
        assert torch.equal(v_local, v_global) and torch.equal(g_local, g_global)


def test_batch_must_be_local_or_global():
    """A bad batch is a ValueError naming the argument, in the function and the module."""
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="batch"):
        sinkd_loss(z, z, batch="all")
    with pytest.raises(ValueError, match="batch"):
        SinKDLoss(batch="Global")
