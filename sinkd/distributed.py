"""Rows of every process: the gather behind SinKD's global-batch term (``batch="global"``).

Under data parallelism (``torchrun``, DDP) each process holds its shard of the global batch.
:func:`gather_rows` concatenates the shards of all ranks, in rank order, so that each process can
compute a batch-wise term of the whole global batch. Outside an initialised
``torch.distributed`` process group there is one process: :func:`world_size` is 1,
:func:`rank` 0, and :func:`gather_rows` returns its input unchanged, with no collective.

Cost: besides the gather itself, every call all-gathers the shard shapes and reads them back to
check that they are equal (one small collective and one host synchronisation per call).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def _initialised() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """The number of processes of the default process group; 1 outside one.

    >>> world_size()
    1
    """
    return dist.get_world_size() if _initialised() else 1


def rank() -> int:
    """This process's rank in the default process group; 0 outside one.

    >>> rank()
    0
    """
    return dist.get_rank() if _initialised() else 0


class _GatherRows(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums the gradients of every rank's copy.

    Rank r's rows appear in the output of each of the W ranks, so the gradient reaching rank r's
    input is the sum over ranks of their output gradient at rows r: an all-reduce (sum) of the
    output gradient, then rows r. ``torch.distributed.nn.functional.all_gather`` has this same
    backward (reduce-scatter on NCCL, all-to-all then sum elsewhere; read in torch 2.13), but
    it is deprecated there, with a FutureWarning on every call and a private module as its
    replacement; these lines use only the stable collectives, on every torch >= 2.4.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        return _all_gather(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()  # all_reduce works in place; autograd owns grad
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        n = grad.shape[0] // dist.get_world_size()
        return grad[dist.get_rank() * n:(dist.get_rank() + 1) * n]


def _all_gather(x: Tensor) -> Tensor:
    """(n, ...) of every rank -> (W*n, ...), rank order; no gradient."""
    x = x.detach().contiguous()
    # the list form: all_gather_into_tensor warns as deprecated in recent torch, and its
    # successor (all_gather_single) is missing from older ones
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x)
    return torch.cat(parts)


def _check_shapes(x: Tensor, name: str) -> None:
    """Every rank's shape of ``x`` equal, or the same ValueError on every rank (no hang)."""
    shape = torch.tensor([x.dim(), *x.shape], dtype=torch.int64, device=x.device)
    # a fixed length, so that ranks whose tensors differ in dimension still meet in the gather
    fixed = torch.full((9,), -1, dtype=torch.int64, device=x.device)
    fixed[:min(9, shape.numel())] = shape[:9]
    shapes = _all_gather(fixed[None]).tolist()  # the one read-back of a call
    if len({tuple(s) for s in shapes}) == 1:
        return
    if len({(s[0], *s[2:]) for s in shapes}) == 1:
        raise ValueError(f"{name} needs equal shard sizes on every rank, got "
                         f"{[s[1] for s in shapes]}")
    raise ValueError(f"{name} needs the same shape on every rank, got "
                     f"{[tuple(s[1:1 + s[0]]) for s in shapes]}")


def gather_rows(x: Tensor, *, differentiable: bool, name: str = "gather_rows") -> Tensor:
    r"""Concatenate the rows of every rank, in rank order: (n, ...) on each of W ranks ->
    (W*n, ...) on every rank.

    Every rank must pass a tensor of the same shape (equal shard sizes); this is checked with
    one small all-gather of the shapes and one read-back per call (a host synchronisation), and
    a mismatch raises the same ``ValueError`` on every rank, so none is left waiting.

    Parameters
    ----------
    x : tensor, shape (n, ...)
        This rank's shard; the same shape on every rank.
    differentiable : bool
        True: gradients flow back to ``x``; the gradient reaching rank r's ``x`` is the sum over
        the W ranks of the gradient of their gathered copy at rows r (r*n to (r+1)*n). False: the
        result is detached (for inputs that take no gradient, such as teacher logits).
    name : str
        How the error message names the caller, e.g. ``"batch='global'"``.

    Returns
    -------
    tensor, shape (W*n, ...)
        Rows r*n to (r+1)*n are rank r's ``x``. Outside a process group (W = 1), ``x`` itself
        (detached if not ``differentiable``), with no collective.

    Examples
    --------
    >>> x = torch.arange(6.0).reshape(3, 2)
    >>> gather_rows(x, differentiable=False).shape  # one process: the shard is the batch
    torch.Size([3, 2])
    """
    if not _initialised() or dist.get_world_size() == 1:
        return x if differentiable else x.detach()
    _check_shapes(x, name)
    return _GatherRows.apply(x) if differentiable else _all_gather(x)
