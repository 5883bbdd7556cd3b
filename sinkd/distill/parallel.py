"""Data-parallel distillation on ``torch.distributed``, launched by torchrun.

``torchrun --nproc_per_node K -m sinkd distill ...`` starts K processes; :func:`process_group`
joins them into one group (NCCL on CUDA, gloo on the CPU; each process on the GPU of its
``LOCAL_RANK``). :func:`sinkd.distill.train.train` then runs the same loop on every rank:

- the global batch of step k is :func:`~sinkd.distill.steps.get_batch`'s batch of size B, as on
  one process; rank r trains on rows ``r B / W .. (r + 1) B / W`` of it (:func:`shard`), W the
  world size, so B must be a multiple of W (:func:`check_batch_size`);
- the student is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`, which averages
  the parameters' gradients over the ranks. The recipes' CE and KD are means over the rows of a
  shard, so that average is the gradient of their mean over the global batch; the SinKD term
  with ``sinkhorn_batch="global"`` computes the plan of the whole global batch on every rank
  and sends W times rank r's rows of its gradient back to rank r (:class:`sinkd.SinKDLoss`), so
  the update is the one-process update of the same global batch;
- rank 0 fine-tunes and caches the teacher while the others wait (:func:`main_first`), evaluates,
  and writes the record and the checkpoints; a stop asked on any rank stops every rank at the
  same step (:func:`any_rank`).

Outside torchrun (no process group) every function here is the one-process case: world size 1,
rank 0, no collective.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from sinkd.distill import models
from sinkd.distributed import gather_rows, rank, world_size

T = TypeVar("T")
LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")  # torchrun's

__all__ = ["any_rank", "barrier", "check_batch_size", "device_of_rank", "gather_objects",
           "gather_rows", "is_main", "launched", "main_first", "mean_over_ranks", "process_group",
           "rank", "shard", "world_size", "wrap"]


def launched() -> bool:
    """True in a process started by torchrun (its environment variables are all set)."""
    return all(name in os.environ for name in LAUNCH_VARIABLES)


def is_main() -> bool:
    """True on rank 0, the rank that evaluates and writes (always, outside a process group)."""
    return rank() == 0


def device_of_rank(device: torch.device) -> torch.device:
    """This process's device: CUDA device ``LOCAL_RANK`` under torchrun, else ``device``."""
    if device.type == "cuda" and launched():
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


@contextlib.contextmanager
def process_group(device: str) -> Iterator[None]:
    """Under torchrun, the default process group for the duration of the block (NCCL when
    ``device`` resolves to CUDA, else gloo), destroyed at the end; elsewhere, or when a group
    exists already, nothing.

    Raises ValueError for ``device`` "mps" under torchrun (no backend for it).
    """
    if not launched() or dist.is_initialized():
        yield
        return
    chosen = device_of_rank(models.select_device(device))
    if chosen.type == "mps":
        raise ValueError("device 'mps' cannot run under torchrun (no process-group backend); "
                         "use --device cpu or cuda")
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
        dist.init_process_group("nccl", device_id=chosen)
    else:
        dist.init_process_group("gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def check_batch_size(batch_size: int, world: int) -> None:
    """ValueError unless the global batch splits into ``world`` equal shards.

    >>> check_batch_size(32, 4)
    >>> check_batch_size(30, 4)
    Traceback (most recent call last):
    ...
    ValueError: batch_size must be a multiple of the world size 4 (equal shards), got 30
    """
    if batch_size % world:
        raise ValueError(f"batch_size must be a multiple of the world size {world} (equal "
                         f"shards), got {batch_size}")


def shard(batch: dict[str, Tensor], rank_: int, world: int) -> dict[str, Tensor]:
    """Rows ``rank_ B / W .. (rank_ + 1) B / W`` of every tensor of a global batch of B rows
    (padding is left as the global batch trimmed it, so a shard holds the exact rows).

    >>> shard({"x": torch.arange(6)}, 1, 3)["x"].tolist()
    [2, 3]
    """
    size = len(next(iter(batch.values())))
    if size % world:  # batch_size is checked first: this is a train split below batch_size
        raise ValueError(f"a batch of {size} rows does not split into {world} equal shards "
                         "(the train split has fewer rows than batch_size)")
    rows = slice(rank_ * size // world, (rank_ + 1) * size // world)
    return {key: value[rows] for key, value in batch.items()}


def wrap(student: nn.Module, device: torch.device) -> nn.Module:
    """``student`` in DistributedDataParallel inside a process group (rank 0's weights are
    broadcast to every rank); the student itself outside one."""
    if not dist.is_initialized():
        return student
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(student, device_ids=ids)


def barrier() -> None:
    """Wait until every rank gets here (nothing outside a process group)."""
    if dist.is_initialized():
        dist.barrier()


def _collective_device() -> torch.device:
    """Where a collective's tensor must live: this rank's GPU for NCCL, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on some rank (an all-reduce MAX); ``flag``
    outside a process group. Every rank must call it at the same point."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor([float(flag)], device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def mean_over_ranks(values: list[float]) -> list[float]:
    """Each value averaged over the ranks (float64 all-reduce); ``values`` outside a group."""
    if not dist.is_initialized():
        return values
    total = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(total)
    return (total / dist.get_world_size()).tolist()


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` outside one."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def main_first(work: Callable[[], T], *, shared: tuple[type[Exception], ...] = ()) -> T:
    """``work()`` on rank 0 first, then on the other ranks (rank 0 fills a cache, the others
    read it); just ``work()`` outside a process group.

    When rank 0 raises, the others raise too rather than wait forever: the same type for the
    types in ``shared`` (which take one message argument), else RuntimeError.
    """
    if not dist.is_initialized():
        return work()
    failed: BaseException | None = None
    result = None
    if is_main():
        try:
            result = work()
        except BaseException as exc:  # noqa: BLE001 - told to the other ranks, then re-raised
            failed = exc
    # the other ranks wait here for rank 0 and learn whether it failed
    told = gather_objects(None if failed is None else (type(failed).__name__, str(failed)))[0]
    if failed is not None:
        raise failed
    if told is not None:
        name, message = told
        kind = next((k for k in shared if k.__name__ == name), None)
        if kind is not None:
            raise kind(f"on rank 0: {message}")
        raise RuntimeError(f"rank 0 failed ({name}: {message}); see its error above")
    return result if is_main() else work()
