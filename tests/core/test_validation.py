"""sinkd.validation, the one validator: each check returns the value it accepts and refuses the
rest with a ValueError naming the argument, what is allowed and the value given."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sinkd.validation import (
    check_bool,
    check_choice,
    check_finite,
    check_int,
    check_logits,
    check_number,
)


@pytest.mark.parametrize("kw,value,message", [
    ({"low": 0, "low_open": True}, 0.0, "x must be a finite number > 0, got 0.0"),
    ({"low": 0}, -1, "x must be a finite number >= 0, got -1"),
    ({"low": 0, "high": 1}, 1.5, "x must be a finite number in [0, 1], got 1.5"),
    ({"low": 0, "high": 1, "low_open": True, "high_open": True}, 1,
     "x must be a finite number in (0, 1), got 1"),
    ({"high": 2, "high_open": True}, 2.0, "x must be a finite number < 2, got 2.0"),
    ({}, math.nan, "x must be a finite number, got nan"),
    ({}, math.inf, "x must be a finite number, got inf"),
    ({}, True, "x must be a finite number, got True"),
    ({}, "1", "x must be a finite number, got '1'"),
    ({}, 1j, "x must be a finite number, got 1j"),
])
def test_check_number_refuses_with_the_range_and_value(kw, value, message):
    """A number outside its interval, not finite, a bool, a string or complex is refused with
    the allowed interval written out."""
    with pytest.raises(ValueError) as info:
        check_number("x", value, **kw)
    assert str(info.value) == message


def test_check_number_accepts_python_numpy_and_one_element_tensors():
    """ints, floats, numpy reals and one-element tensors come back as Python floats."""
    for value in (3, 0.5, np.float32(0.25), np.int64(2), torch.tensor(0.75)):
        out = check_number("x", value, low=0)
        assert type(out) is float and out == float(value)


def test_check_int_bool_choice():
    """check_int refuses floats and bools (and names the range), check_bool anything but True or
    False, check_choice a value outside the allowed tuple (listing it)."""
    assert check_int("n", np.int32(4), low=1) == 4
    for bad, message in ((2.0, "n must be an integer in [1, 3], got 2.0"),
                         (True, "n must be an integer in [1, 3], got True"),
                         (4, "n must be an integer in [1, 3], got 4")):
        with pytest.raises(ValueError) as info:
            check_int("n", bad, low=1, high=3)
        assert str(info.value) == message
    assert check_bool("flag", False) is False
    with pytest.raises(ValueError, match=r"^flag must be True or False, got 0$"):
        check_bool("flag", 0)
    assert check_choice("kind", "kl", ("kl", "js")) == "kl"
    with pytest.raises(ValueError, match=r"^kind must be one of \('kl', 'js'\), got 'tv'$"):
        check_choice("kind", "tv", ("kl", "js"))
    with pytest.raises(ValueError, match=r"^kind must be one of"):
        check_choice("kind", ["unhashable"], {"kl", "js"})


@pytest.mark.parametrize("x,ndim,message", [
    (np.zeros((2, 3)), 2, "z must be a torch tensor, got ndarray"),
    (torch.zeros(3), 2, "z must have shape (N, C) with no empty dimension, got (3,)"),
    (torch.zeros(0, 3), 2, "z must have shape (N, C) with no empty dimension, got (0, 3)"),
    (torch.zeros(()), None, "z must have shape (..., C) with no empty dimension, got ()"),
    (torch.zeros(2, 3, dtype=torch.int64), 2,
     "z must be a floating-point tensor (float16/bfloat16/float32/float64), got torch.int64"),
    (torch.zeros(2, 3, dtype=torch.bool), None,
     "z must be a floating-point tensor (float16/bfloat16/float32/float64), got torch.bool"),
    (torch.zeros(2, 3, dtype=torch.complex64), 2,
     "z must be a floating-point tensor (float16/bfloat16/float32/float64), got torch.complex64"),
])
def test_check_logits_refuses_shapes_and_dtypes(x, ndim, message):
    """Logits must be floating tensors of the right number of dimensions, none empty: integer,
    bool and complex logits are refused, not promoted."""
    with pytest.raises(ValueError) as info:
        check_logits("z", x, ndim=ndim)
    assert str(info.value) == message


def test_check_logits_and_check_finite_accept_good_tensors():
    """check_logits returns its (N, C) or (..., C) tensor; check_finite passes finite values and
    refuses NaN and infinities by name."""
    z = torch.randn(2, 3, 4)
    assert check_logits("z", z, ndim=None) is z and check_logits("z", z[0]) is not None
    check_finite("z", z)
    for bad in (math.nan, math.inf, -math.inf):
        z[1, 1, 1] = bad
        with pytest.raises(ValueError, match=r"^z must be finite: it contains NaN or Inf$"):
            check_finite("z", z)
