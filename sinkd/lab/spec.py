"""What a page of the app may show: every value's default, its range or choices, and presets.

Each page of SinKD Lab has one :class:`PageSpec`, defined in ``sinkd/lab/<page>_spec.py``
(``transport_spec``, ``divergence_lab_spec``, ``verify_spec``, ``distill_spec``); the app's
shell (``shell.py``) turns it into widgets' state, a copied link's values and the preset
selector. A spec checks itself when it is made, so a preset that names an unknown value or
leaves a range fails at import, not on the page.

A limit is a :class:`Range` (a number between two bounds) or a tuple of the allowed choices (a
number or a string); a value without a limit takes any value of its type, and a bool needs none.

>>> spec = PageSpec({"n": 16, "method": "log"}, {"n": N_RANGE, "method": ("log", "kernel")})
>>> spec.parse("n", "500"), spec.parse("method", "kernel")
(64, 'kernel')
>>> spec.parse("method", "sinkhorn")
Traceback (most recent call last):
...
ValueError: method must be one of ('log', 'kernel'), got 'sinkhorn'
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from sinkd.validation import check_choice


class Range(NamedTuple):
    """The closed interval [low, high] a number may take (``*r`` gives a widget's min and max)."""

    low: float
    high: float


# Ranges that several pages offer, defined once so that they cannot drift apart.
SEED_RANGE = Range(0, 10_000)  # seeds of the toy batches and fits, the random suite and runs
N_RANGE = Range(1, 64)  # batch size N of the toy batches (transport and verification pages)
CLASSES_RANGE = Range(1, 10)  # classes C of the toy batches
NOISE_RANGE = Range(0.0, 3.0)  # standard deviation of the student's logit noise
# The entropic weight lambda of every page: ONE log-scale list (1-2-5 steps from 1e-3 to 10, the
# reference 0.1 included), offered by one select slider (shell.lambda_slider) on every page.
LAMBDA_VALUES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


@dataclass(frozen=True)
class Claim:
    """What a preset shows for one divergence: a sentence a class can read, and the predicate
    that decides whether one run showed it (``holds(measurements, divergence_name)``; the
    measurements are the page's own, e.g. :class:`sinkd.lab.toy_metrics.ToyMetrics`)."""

    sentence: str
    holds: Callable[[Any, str], bool]


@dataclass(frozen=True)
class Preset:
    """A named setting of some of a page's values, with the one thing to notice in it, the
    question a class answers before the reveal, and per divergence the claim its robustness
    counts test (:mod:`sinkd.lab.robustness`)."""

    values: Mapping[str, Any]
    notice: str
    question: str = ""
    claims: Mapping[str, Claim] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))
        object.__setattr__(self, "claims", MappingProxyType(dict(self.claims)))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_value(name: str, value: Any, default: Any, limit: Any, where: str) -> None:
    """ValueError unless ``value`` has the default's exact type and lies within ``limit``."""
    if type(value) is not type(default):
        raise ValueError(f"{where}: {name} must be a {type(default).__name__} like its "
                         f"default {default!r}, got {value!r}")
    if isinstance(limit, Range):
        if not limit.low <= value <= limit.high:
            raise ValueError(f"{where}: {name} must be in [{limit.low}, {limit.high}], "
                             f"got {value!r}")
    elif limit is not None and value not in limit:
        raise ValueError(f"{where}: {name} must be one of {limit}, got {value!r}")


@dataclass(frozen=True)
class PageSpec:
    """A page's values: their defaults, their limits and the page's presets (first: the view
    a fresh visit shows).

    Parameters
    ----------
    defaults : mapping of str to bool, int, float or str
        Every value of the page and its default; a value keeps its default's type.
    limits : mapping of str to Range or tuple
        A :class:`Range` for a number, or the tuple of allowed choices; values without a limit
        take any value of their type.
    presets : mapping of str to Preset
        Named settings of some values; each value must be valid as above.
    """

    defaults: Mapping[str, Any]
    limits: Mapping[str, Any] = field(default_factory=dict)
    presets: Mapping[str, Preset] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for attr in ("defaults", "limits", "presets"):
            object.__setattr__(self, attr, MappingProxyType(dict(getattr(self, attr))))
        unknown = set(self.limits) - set(self.defaults)
        if unknown:
            raise ValueError(f"limits name values without a default: {sorted(unknown)}")
        for name, limit in self.limits.items():
            default = self.defaults[name]
            if isinstance(default, bool):
                raise ValueError(f"{name} is a bool: it takes no limit, got {limit!r}")
            if isinstance(limit, Range) and not (_is_number(default) and limit.low <= limit.high):
                raise ValueError(f"the range of {name} must bound a number, got {limit!r}")
            if not isinstance(limit, (Range, tuple)):
                raise ValueError(f"the limit of {name} must be a Range or a tuple of choices, "
                                 f"got {limit!r}")
        for name, default in self.defaults.items():
            _check_value(name, default, default, self.limits.get(name), "defaults")
        for label, preset in self.presets.items():
            unknown = set(preset.values) - set(self.defaults)
            if unknown:
                raise ValueError(f"preset {label!r} sets unknown values {sorted(unknown)}")
            for name, value in preset.values.items():
                _check_value(name, value, self.defaults[name], self.limits.get(name),
                             f"preset {label!r}")

    def parse(self, name: str, raw: str) -> Any:
        """A value of this page from the text of a link: the default's type, clamped to range.

        A number outside its range is clamped into it; text that is not a value of the right
        type (``"abc"``, ``"nan"``, ``"inf"``, a choice not offered) is a ValueError.

        >>> PageSpec({"reg": 0.1, "show": True}, {"reg": Range(0.01, 1.0)}).parse("reg", "0")
        0.01
        """
        default, limit = self.defaults[name], self.limits.get(name)
        if isinstance(default, bool):
            if raw.lower() not in ("true", "false"):
                raise ValueError(f"{name} must be true or false, got {raw!r}")
            return raw.lower() == "true"
        if isinstance(default, str):
            value: Any = raw
        else:
            number = float(raw)  # ValueError for text that is no number
            if not math.isfinite(number):
                raise ValueError(f"{name} must be a finite number, got {raw!r}")
            value = int(number) if isinstance(default, int) else number
        if isinstance(limit, Range):
            return min(max(value, limit.low), limit.high)
        return value if limit is None else check_choice(name, value, limit)

    def with_defaults(self, **changes: Any) -> PageSpec:
        """The same spec with some defaults changed (checked like the others)."""
        return dataclasses.replace(self, defaults={**self.defaults, **changes})
