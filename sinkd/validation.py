"""The one validator of SinKD Lab: every public entry point checks its arguments here.

A bad value gets the same kind of message everywhere: the argument's name, what is allowed and
the value given (``reg must be a finite number > 0, got -1``), as a ``ValueError``. The checks
on options are pure Python (no tensor is read back from a device); :func:`check_finite` is the
only one that reads a tensor, and callers that must not synchronise with the host skip it.

>>> check_number("reg", 0.1, low=0, low_open=True)
0.1
>>> check_choice("method", "log", ("auto", "kernel", "log"))
'log'
>>> check_int("n_iters", 0, low=1)
Traceback (most recent call last):
...
ValueError: n_iters must be an integer >= 1, got 0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection
from typing import Any, TypeVar

import torch
from torch import Tensor

T = TypeVar("T")


def _bound(x: float) -> str:
    """A bound as text: integers exactly (2147483647, not 2.14748e+09), other numbers short."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 2**63 else f"{x:g}"


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    """The allowed range as text: '> 0', '>= 1', 'in [0, 1]', 'in (0, 100]'."""
    if low is not None and high is not None:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        return f"in {left}{_bound(low)}, {_bound(high)}{right}"
    if low is not None:
        return f"{'>' if low_open else '>='} {_bound(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {_bound(high)}"
    return ""


def _inside(x: float, low, high, low_open: bool, high_open: bool) -> bool:
    if low is not None and (x <= low if low_open else x < low):
        return False
    return not (high is not None and (x >= high if high_open else x > high))


def check_number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float inside the interval, or ValueError naming ``name``.

    Python and numpy reals are accepted (bools are not); a one-element tensor is read back,
    so code that must not synchronise passes floats.
    """
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value) and _inside(float(value), low, high, low_open, high_open))
    if not ok:
        allowed = _interval(low, high, low_open, high_open)
        raise ValueError(f"{name} must be a finite number{' ' + allowed if allowed else ''}, "
                         f"got {value!r}")
    return float(value)


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int inside [low, high] (bools are not integers here)."""
    ok = (isinstance(value, numbers.Integral) and not isinstance(value, bool)
          and _inside(int(value), low, high, False, False))
    if not ok:
        allowed = _interval(low, high, False, False)
        raise ValueError(f"{name} must be an integer{' ' + allowed if allowed else ''}, "
                         f"got {value!r}")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is True or False (not 0/1 or a string)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def check_choice(name: str, value: T, allowed: Collection[T]) -> T:
    """``value`` if it is one of ``allowed``."""
    try:
        ok = value in allowed
    except TypeError:  # unhashable value against a set
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")
    return value


def check_logits(name: str, x: Any, *, ndim: int | None = 2) -> Tensor:
    """``x`` if it is a real floating tensor of ``ndim`` dimensions (None: any number >= 1, the
    classes last), none of them empty. Shapes and dtypes only: nothing is read back.

    Integer and bool logits are rejected rather than silently promoted: a loss of integer
    logits would be computed in a dtype the caller did not choose.
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch tensor, got {type(x).__name__}")
    shape = {None: "(..., C)", 2: "(N, C)"}.get(ndim, f"{ndim} dimensions")
    if (x.dim() < 1 if ndim is None else x.dim() != ndim) or 0 in x.shape:
        raise ValueError(f"{name} must have shape {shape} with no empty dimension, "
                         f"got {tuple(x.shape)}")
    if not x.is_floating_point():  # (complex tensors are not floating point either)
        raise ValueError(f"{name} must be a floating-point tensor (float16/bfloat16/float32/"
                         f"float64), got {x.dtype}")
    return x


def check_finite(name: str, x: Tensor) -> None:
    """ValueError if ``x`` has a NaN or an infinity. Reads one bool back from x's device."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite: it contains NaN or Inf")
