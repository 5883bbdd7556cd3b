"""Page specs (sinkd.lab.spec and the four <page>_spec modules): a spec rejects what a page
could not show, a link's text comes back as the value it was written from, and the ranges the
pages share are one definition."""

from __future__ import annotations

import pytest

from sinkd.distill import RECIPES
from sinkd.distill.glue import GLUE_TASKS
from sinkd.lab import distill_spec
from sinkd.lab.divergence_lab_spec import SPEC as DIVERGENCE_LAB
from sinkd.lab.spec import (
    CLASSES_RANGE,
    N_RANGE,
    NOISE_RANGE,
    SEED_RANGE,
    PageSpec,
    Preset,
    Range,
)
from sinkd.lab.transport_spec import SPEC as TRANSPORT
from sinkd.lab.verify_spec import SPEC as VERIFY

SPECS = {"transport": TRANSPORT, "divergence_lab": DIVERGENCE_LAB, "verify": VERIFY,
         "distill": distill_spec.spec(RECIPES, GLUE_TASKS)}
DEFAULTS = {"n": 5, "reg": 0.1, "method": "log", "show": True, "lam": 0.1}
LIMITS = {"n": Range(2, 64), "reg": Range(0.01, 1.0), "method": ("log", "kernel"),
          "lam": (0.01, 0.1, 1.0)}


@pytest.mark.parametrize("name, raw, expected", [
    ("n", "7", 7), ("n", "7.0", 7), ("n", "1000", 64), ("n", "-3", 2), ("reg", "5", 1.0),
    ("reg", "0", 0.01), ("method", "kernel", "kernel"), ("show", "false", False),
    ("show", "True", True), ("lam", "1", 1.0), ("lam", "0.01", 0.01),
])
def test_parse_gives_the_default_type_clamped_into_range(name, raw, expected):
    """A link's text becomes a value of the default's type; a number is clamped to its Range."""
    got = PageSpec(DEFAULTS, LIMITS).parse(name, raw)
    assert got == expected and type(got) is type(DEFAULTS[name])


@pytest.mark.parametrize("name, raw", [
    ("n", "abc"), ("n", "nan"), ("n", "inf"), ("reg", "-inf"), ("method", "sinkhorn"),
    ("show", "yes"), ("lam", "0.5"),
])
def test_parse_rejects_text_that_is_no_value(name, raw):
    """Text that is no finite number, or a choice not offered, is a ValueError naming the value."""
    with pytest.raises(ValueError, match=name):
        PageSpec(DEFAULTS, LIMITS).parse(name, raw)


@pytest.mark.parametrize("spec, word", [
    (lambda: PageSpec(DEFAULTS, LIMITS, {"x": Preset({"nope": 1}, "n")}), "nope"),
    (lambda: PageSpec(DEFAULTS, LIMITS, {"x": Preset({"n": 2.0}, "n")}), "int"),
    (lambda: PageSpec(DEFAULTS, LIMITS, {"x": Preset({"n": 65}, "n")}), r"\[2, 64\]"),
    (lambda: PageSpec(DEFAULTS, LIMITS, {"x": Preset({"method": "exact"}, "n")}), "method"),
    (lambda: PageSpec({"n": 1}, {"n": Range(2, 64)}), r"defaults: n"),
    (lambda: PageSpec({"n": 1}, {"m": Range(2, 64)}), r"\['m'\]"),
    (lambda: PageSpec({"s": "a"}, {"s": Range(0, 1)}), "must bound a number"),
    (lambda: PageSpec({"b": True}, {"b": (True,)}), "bool"),
    (lambda: PageSpec(DEFAULTS, LIMITS).with_defaults(reg=2.0), "reg"),
])
def test_a_spec_rejects_what_a_page_could_not_show(spec, word):
    """A preset naming an unknown value, a value of another type or out of its limit, a default
    out of its range and a limit on nothing or on the wrong kind all raise ValueError."""
    with pytest.raises(ValueError, match=word):
        spec()


@pytest.mark.parametrize("page", list(SPECS))
def test_a_link_restores_every_value_of_every_page(page):
    """Every default and preset value, written into a URL as sync_url writes it (str), parses
    back to itself: a copied link restores the exact view."""
    spec = SPECS[page]
    for values in [spec.defaults, *(p.values for p in spec.presets.values())]:
        for name, value in values.items():
            back = spec.parse(name, str(value))
            assert back == value and type(back) is type(value), (page, name, value)


def test_shared_ranges_are_one_definition():
    """Seeds, batch size, classes and noise have the same range on every page offering them."""
    distill = SPECS["distill"]
    assert (TRANSPORT.limits["seed"] == VERIFY.limits["seed"] == VERIFY.limits["suite_seed"]
            == DIVERGENCE_LAB.limits["seed"] == distill.limits["first_seed"] == SEED_RANGE)
    assert TRANSPORT.limits["n"] == VERIFY.limits["n"] == N_RANGE
    assert TRANSPORT.limits["c"] == VERIFY.limits["n_classes"] == CLASSES_RANGE
    assert TRANSPORT.limits["noise"] == VERIFY.limits["noise"] == NOISE_RANGE
    assert TRANSPORT.limits["sample"] == Range(0, N_RANGE.high - 1)


def test_distill_spec_offers_every_recipe_and_checks_its_overrides():
    """A checkbox value per recipe, CE and SinKD ticked; "file" needs an uploaded file (the
    server path of its stored copy comes from the app, never from a value a link can set)."""
    spec = SPECS["distill"]
    assert [k for k in spec.defaults if k.startswith("use_")] == [f"use_{r}" for r in RECIPES]
    values = dict(spec.defaults, data_source="file")
    with pytest.raises(ValueError, match="no usable file is uploaded"):
        distill_spec.config_overrides(values)
    assert distill_spec.config_overrides(values, "/c/uploads/ab.csv")["data"] == "/c/uploads/ab.csv"
    assert "data_file" not in spec.defaults
    assert distill_spec.config_overrides(spec.defaults)["data"] == "rotten_tomatoes"


def test_spec_is_read_only():
    """A spec's mappings cannot be changed by a page (its defaults would drift in-process)."""
    with pytest.raises(TypeError):
        TRANSPORT.defaults["n"] = 3  # type: ignore[index]
    with pytest.raises(TypeError):
        TRANSPORT.presets["large λ: all blur"].values["lam"] = 0.1  # type: ignore[index]
