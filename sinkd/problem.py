"""From the caller's ``a``, ``b`` and ``cost`` to arrays the solver can use, with their checks.

:func:`as_arrays` converts (lists, numpy arrays, tensors), chooses where and in which dtype the
solver computes, checks shapes and broadcasts the batch: all in Python, nothing is read from a
device. :func:`check_values` checks the values (finite, nonnegative masses, equal totals) with
one read-back. Messages name the argument, what is allowed and what was given, as every check of
:mod:`sinkd.validation` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray | Sequence[Any]


@dataclass(frozen=True)
class Output:
    """How a computed tensor is returned: as numpy (the cost was not a tensor) or in a dtype."""

    to_numpy: bool = False
    dtype: torch.dtype | None = None  # float16 / bfloat16 inputs, computed in float32

    def __call__(self, x: Tensor | np.ndarray | np.generic,
                 keep_dtype: bool = False) -> Tensor | np.ndarray:
        if not isinstance(x, Tensor):
            return np.asarray(x)  # (numpy reductions give scalars: arrays, as for a batch)
        if self.to_numpy:
            return x.detach().cpu().numpy()
        return x if keep_dtype or self.dtype is None else x.to(self.dtype)


@dataclass(frozen=True)
class Arrays:
    """The problem's arrays in the compute dtype, broadcast to one batch shape."""

    C: Tensor | np.ndarray  # (..., n, m)
    a: Tensor | np.ndarray  # (..., n)
    b: Tensor | np.ndarray  # (..., m)
    output: Output  # how results go back to the caller
    rtol: float  # relative tolerance on equal total masses


@dataclass(frozen=True)
class Values:
    """What :func:`check_values` learnt while checking."""

    max_abs_cost: float
    zero_mass: bool  # some mass is exactly 0


def _as_array(x: ArrayLike, name: str, torch_path: bool) -> Tensor | np.ndarray:
    """``x`` as a real tensor (torch path) or a real numpy array, or ValueError naming it."""
    if not isinstance(x, Tensor):
        try:
            x = np.asarray(x)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be a tensor or an array of numbers: {err}") from None
        if x.dtype.kind not in "biufc":
            raise ValueError(f"{name} must be an array of real numbers, got dtype {x.dtype}")
        if torch_path and x.dtype.kind != "c":  # (integers: torch lacks some unsigned types)
            x = torch.as_tensor(x.astype(np.float64) if x.dtype.kind in "biu" else x)
    if x.is_complex() if isinstance(x, Tensor) else x.dtype.kind == "c":
        raise ValueError(f"{name} must be real, got {x.dtype}")
    return x


def _compute_dtype(x: Tensor | np.ndarray, given_tensor: bool):
    """The dtype the solver computes in: floats as given (half precision in float32), integers
    and bools in torch's default dtype (a tensor) or float64 (an array)."""
    if isinstance(x, Tensor):
        if not x.is_floating_point():
            return torch.get_default_dtype() if given_tensor else torch.float64
        return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    if x.dtype.kind != "f":
        return np.float64
    return np.float32 if x.dtype == np.float16 else x.dtype


def _mass_rtol(*given: Any) -> float:
    """Relative tolerance on equal totals, at the precision the inputs were given in: sqrt(eps)
    of the least precise float32/float64 input, 2 eps for float16/bfloat16 (whose roundings of
    masses such as 1/3 are of that size)."""
    finfos = [torch.finfo(x.dtype) if isinstance(x, Tensor) else np.finfo(x.dtype)
              for x in given if isinstance(x, Tensor | np.ndarray) and (
                  x.dtype.is_floating_point if isinstance(x, Tensor) else x.dtype.kind == "f")]
    least = max(finfos, key=lambda fi: fi.eps, default=np.finfo(np.float64))
    return math.sqrt(least.eps) if least.bits >= 32 else 2 * float(least.eps)


def as_arrays(a: ArrayLike | None, b: ArrayLike | None, cost: ArrayLike,
              torch_path: bool) -> Arrays:
    """The arrays of a problem (shapes checked, batch broadcast), on the torch path (tensors on
    the cost's device; results as tensors when the cost is one) or the numpy path."""
    if cost is None:  # a and b may be None (uniform masses); the cost may not
        raise ValueError("cost must be a tensor or an array of shape (..., n, m), got None")
    given = [None if x is None else _as_array(x, name, torch_path)
             for x, name in ((a, "a"), (b, "b"), (cost, "cost"))]
    C = given[2]
    if C.ndim < 2 or C.shape[-1] == 0 or C.shape[-2] == 0:
        raise ValueError(f"cost must have shape (..., n, m) with n, m >= 1, got {tuple(C.shape)}")
    dtype = _compute_dtype(C, isinstance(cost, Tensor))
    C = C.to(dtype) if torch_path else C.astype(dtype, copy=False)
    n, m = C.shape[-2:]
    masses = []
    for x, name, size, what in ((given[0], "a", n, "rows"), (given[1], "b", m, "columns")):
        if x is None:
            x = torch.full((size,), 1.0 / size, dtype=dtype, device=C.device) if torch_path \
                else np.full(size, 1.0 / size, dtype=dtype)
        elif x.ndim < 1 or x.shape[-1] != size:
            raise ValueError(f"{name} must have shape (..., {size}) to match the {size} {what} of "
                             f"cost {tuple(C.shape)}, got {tuple(x.shape)}")
        masses.append(x.to(device=C.device, dtype=dtype) if torch_path
                      else x.astype(dtype, copy=False))
    a, b = masses
    if a.ndim > 1 or b.ndim > 1 or C.ndim > 2:
        try:  # numpy's rule is torch's (and costs no import)
            batch = np.broadcast_shapes(a.shape[:-1], b.shape[:-1], C.shape[:-2])
        except ValueError:
            raise ValueError(f"batch shapes do not broadcast: a {tuple(a.shape)}, b "
                             f"{tuple(b.shape)}, cost {tuple(C.shape)}") from None
        if 0 in batch:
            raise ValueError(f"the batch must not be empty, got batch shape {batch} from a "
                             f"{tuple(a.shape)}, b {tuple(b.shape)}, cost {tuple(C.shape)}")
        expand = (lambda x, s: x.expand(s)) if torch_path else np.broadcast_to
        a, b = expand(a, (*batch, n)), expand(b, (*batch, m))
        C = C if tuple(C.shape) == (*batch, n, m) else expand(C, (*batch, n, m))
    out_dtype = cost.dtype if isinstance(cost, Tensor) and cost.dtype != dtype and (
        cost.is_floating_point()) else None
    output = Output(to_numpy=torch_path and not isinstance(cost, Tensor), dtype=out_dtype)
    return Arrays(C, a, b, output, _mass_rtol(*given))


def shared_cost(C: Any) -> Any:
    """The one (n, m) cost of a batch that broadcast it, as a view, so that the iterations
    multiply every problem by one kernel (a matrix product instead of a batch of them);
    otherwise ``C`` itself.

    >>> C = np.broadcast_to(np.eye(2), (3, 2, 2))
    >>> shared_cost(C).shape, shared_cost(np.ones((3, 2, 2))).shape
    ((2, 2), (3, 2, 2))
    >>> shared_cost(torch.eye(2).expand(4, 1, 2, 2)).shape
    torch.Size([2, 2])
    """
    strides = C.stride() if isinstance(C, Tensor) else C.strides
    # a broadcast dimension has stride 0; one of size 1 may keep any stride
    if C.ndim > 2 and not any(st for st, size in zip(strides[:-2], C.shape, strict=False)
                              if size != 1):
        return C[(0,) * (C.ndim - 2)]
    return C


def read(*xs: Any) -> list[float]:
    """Numbers read back from the arrays' device, all in one transfer."""
    if isinstance(xs[0], Tensor):
        return torch.stack(xs).tolist()
    return [float(x) for x in xs]


def check_values(arrays: Arrays) -> Values:
    """Check that C, a, b are finite, the masses nonnegative, their totals positive and equal
    (one read-back), or raise ValueError naming the argument.

    Nonnegative masses are finite exactly when their total is, so a mass costs two reductions.
    """
    C, a, b, rtol = arrays.C, arrays.a, arrays.b, arrays.rtol
    if isinstance(C, Tensor):
        C, a, b = C.detach(), a.detach(), b.detach()
    c_lo, c_hi = torch.aminmax(C) if isinstance(C, Tensor) else (C.min(), C.max())
    sa, sb = a.sum(-1), b.sum(-1)  # (...,)
    if sa.ndim == 0:  # one problem: the totals are compared in Python
        c_lo, c_hi, a_lo, b_lo, sa, sb = read(c_lo, c_hi, a.min(), b.min(), sa, sb)
        total_a, total_b, smallest, gap = sa, sb, sa, abs(sa - sb) - rtol * abs(sb)
    else:
        gaps = abs(sa - sb) - rtol * abs(sb)  # > 0 where the totals differ (isclose, atol 0)
        c_lo, c_hi, a_lo, b_lo, total_a, total_b, smallest, gap = read(
            c_lo, c_hi, a.min(), b.min(), sa.sum(), sb.sum(), sa.min(), gaps.max())
    if not (math.isfinite(c_lo) and math.isfinite(c_hi)):
        raise ValueError("cost must be finite: it contains NaN or Inf")
    for name, lo, total in (("a", a_lo, total_a), ("b", b_lo, total_b)):
        if not math.isfinite(total) or math.isnan(lo):
            raise ValueError(f"{name} must be finite: it contains NaN or Inf")
        if lo < 0:
            raise ValueError(f"{name} must be nonnegative (masses are in [0, inf)), got a "
                             f"minimum of {lo:.6g}")
    if smallest <= 0:
        raise ValueError(f"a must have a positive total mass, got sum(a) = {smallest:.6g}")
    if gap > 0:
        if not isinstance(sa, float):  # a batch: the first problem whose totals differ
            first = gaps.reshape(-1).argmax()
            sa, sb = read(sa.reshape(-1)[first], sb.reshape(-1)[first])
        raise ValueError(f"a and b must have equal total masses (relative tolerance {rtol:.1e}), "
                         f"got sum(a) = {sa:.6g} and sum(b) = {sb:.6g}")
    return Values(max(-c_lo, c_hi), a_lo == 0 or b_lo == 0)


