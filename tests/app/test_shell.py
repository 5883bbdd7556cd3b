"""AppTest: the classroom conventions of shell.py (View, guard, lesson, figures, downloads),
each through a small script that uses them as a page does."""

import json

import pytest
from app_pages import ROOT
from streamlit.runtime.memory_media_file_storage import _calculate_file_id
from streamlit.testing.v1 import AppTest

DEFAULTS = {"n": 5, "reg": 0.1, "method": "log", "show": True}
LIMITS = {"n": (2, 64), "reg": (0.01, 1.0), "method": ("log", "kernel")}
PRESETS = {"Small": ({"n": 4, "reg": 0.5}, "Few points, a blurred plan."),
           "Large": ({"n": 40, "reg": 0.05}, "Many points, a sharp plan.")}


def lab_page(root, defaults, limits, presets):
    """A page written the way the shell asks: View of a spec, presets, keyed widgets, reset,
    sync_url. (An AppTest script runs its function's source alone: it imports what it needs.)"""
    import sys

    if root not in sys.path:
        sys.path.insert(0, root)
    import streamlit as st

    from shell import View
    from sinkd.lab.spec import PageSpec, Preset, Range

    ranges = {"n": Range(*limits["n"]), "reg": Range(*limits["reg"]), "method": limits["method"]}
    spec = PageSpec(defaults, ranges, {name: Preset(values, notice)
                                       for name, (values, notice) in (presets or {}).items()})
    view = View("lab", spec)
    if presets:
        view.presets()
    st.slider("N", 2, 64, key=view.key("n"))
    st.slider("Regularisation", 0.01, 1.0, key=view.key("reg"))
    st.selectbox("Method", ["log", "kernel"], key=view.key("method"))
    st.checkbox("Show the plan", key=view.key("show"))
    view.reset_button()
    view.sync_url()


def lab(query=None, presets=None) -> AppTest:
    """Run lab_page once, with the given URL query."""
    at = AppTest.from_function(lab_page, args=(str(ROOT), DEFAULTS, LIMITS, presets),
                               default_timeout=30)
    at.query_params.update(query or {})
    return at.run()


def values(at: AppTest) -> dict:
    return {name: at.session_state[f"lab_{name}"] for name in DEFAULTS}


def test_defaults_land_in_session_state():
    """Without a link, every value starts at its default, and the widgets show it."""
    at = lab()
    assert not at.exception and not at.warning
    assert values(at) == DEFAULTS
    assert at.slider(key="lab_n").value == 5 and at.selectbox(key="lab_method").value == "log"
    assert at.checkbox(key="lab_show").value is True


@pytest.mark.parametrize("name, raw, expected", [
    ("n", "7", 7), ("n", "7.0", 7), ("n", "1000", 64), ("n", "-3", 2),
    ("reg", "0.5", 0.5), ("reg", "5", 1.0), ("reg", "0", 0.01),
    ("method", "kernel", "kernel"), ("show", "false", False), ("show", "True", True),
])
def test_url_value_is_coerced_and_clamped(name, raw, expected):
    """A link's value takes the default's type and is clamped into the value's limits."""
    at = lab({name: raw})
    assert not at.exception and not at.warning
    got = at.session_state[f"lab_{name}"]
    assert got == expected and type(got) is type(DEFAULTS[name])
    assert {k: v for k, v in values(at).items() if k != name} == {
        k: v for k, v in DEFAULTS.items() if k != name}


@pytest.mark.parametrize("name, raw", [
    ("n", "abc"), ("n", "nan"), ("n", "inf"), ("reg", "nan"), ("reg", "-inf"), ("reg", "x"),
    ("method", "sinkhorn"), ("show", "yes"),
])
def test_invalid_url_value_falls_back_with_warning(name, raw):
    """A link's invalid value is replaced by the default, with a warning naming it, no traceback."""
    other, other_raw, other_value = ("reg", "0.5", 0.5) if name == "n" else ("n", "9", 9)
    at = lab({name: raw, other: other_raw})
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state[f"lab_{name}"] == DEFAULTS[name]
    assert len(at.warning) == 1 and name in at.warning[0].value
    assert at.session_state[f"lab_{other}"] == other_value  # the link's valid values are kept


def test_preset_sets_values_and_shows_what_to_notice():
    """Choosing a preset sets its values in the widgets and shows its "What to notice"."""
    at = lab(presets=PRESETS)
    assert "What to notice" in at.info[0].value and PRESETS["Small"][1] in at.info[0].value
    at.selectbox(key="lab_preset").set_value("Large").run()
    assert not at.exception
    assert values(at) == {**DEFAULTS, "n": 40, "reg": 0.05}
    assert at.slider(key="lab_n").value == 40 and at.slider(key="lab_reg").value == 0.05
    assert len(at.info) == 1 and PRESETS["Large"][1] in at.info[0].value
    assert at.query_params["preset"] == "Large" and at.query_params["n"] == "40"


def test_preset_from_link_and_unknown_preset():
    """A link names the preset shown; an unknown preset name falls back to the first one."""
    at = lab({"preset": "Large"}, presets=PRESETS)
    assert at.selectbox(key="lab_preset").value == "Large"
    assert PRESETS["Large"][1] in at.info[0].value
    at = lab({"preset": "Huge"}, presets=PRESETS)
    assert not at.exception and at.selectbox(key="lab_preset").value == "Small"


def test_reset_button_restores_defaults():
    """After moving widgets, "Reset to defaults" puts every value back to its default."""
    at = lab()
    at.slider(key="lab_n").set_value(30)
    at.selectbox(key="lab_method").set_value("kernel")
    at.checkbox(key="lab_show").uncheck().run()
    assert values(at) == {**DEFAULTS, "n": 30, "method": "kernel", "show": False}
    at.button(key="lab_reset").click().run()
    assert not at.exception
    assert values(at) == DEFAULTS
    assert at.slider(key="lab_n").value == 5 and at.selectbox(key="lab_method").value == "log"
    assert at.checkbox(key="lab_show").value is True


def test_sync_url_writes_values_and_a_copied_link_restores_them():
    """sync_url puts every value in the URL; opening that URL gives back the same values."""
    at = lab()
    at.slider(key="lab_n").set_value(9)
    at.slider(key="lab_reg").set_value(0.25).run()
    assert dict(at.query_params) == {"n": "9", "reg": "0.25", "method": "log", "show": "True"}
    copied = lab(dict(at.query_params))
    assert values(copied) == {**DEFAULTS, "n": 9, "reg": 0.25}
    assert not copied.warning


def guarded_page(root):
    """A page whose library call rejects its input, wrapped in guard()."""
    import sys

    if root not in sys.path:
        sys.path.insert(0, root)
    import streamlit as st
    import torch

    from shell import View, guard
    from sinkd import sinkhorn
    from sinkd.lab.spec import PageSpec

    view = View("bad", PageSpec({"reg": -1.0}))
    with guard():
        sinkhorn(None, None, torch.rand(3, 3), reg=view["reg"])
    st.write("figure drawn")


def test_guard_turns_value_error_into_st_error():
    """A library ValueError becomes st.error with its message; no traceback, state kept."""
    at = AppTest.from_function(guarded_page, args=(str(ROOT),), default_timeout=30).run()
    assert not at.exception
    assert len(at.error) == 1 and "reg must be a finite number > 0" in at.error[0].value
    assert not at.markdown, "the run must stop at the error"
    assert at.session_state["bad_reg"] == -1.0


def shell_widgets_page(root):
    """The shared sidebar, a lesson, a figure and the numbers' downloads."""
    import sys

    if root not in sys.path:
        sys.path.insert(0, root)
    import pandas as pd
    import plotly.graph_objects as go

    from shell import download_numbers, lesson, show_figure, sidebar_controls

    sidebar_controls()
    lesson("Entropy blurs the plan.", "Lower the regularisation.")
    show_figure(go.Figure(go.Scatter(y=[1.0, 0.5, 0.25])), "errors")
    download_numbers(pd.DataFrame({"iteration": [1, 2], "error": [0.5, 0.25]}), "errors", "csv")
    download_numbers({"loss": 0.5, "n": 3}, "loss", "json")


def _media_id(text: str, mimetype: str, filename: str) -> str:
    """The id under which Streamlit serves these exact bytes (the file name in a button's url)."""
    return _calculate_file_id(text.encode(), mimetype, filename)


def test_download_numbers_serves_csv_and_json():
    """download_numbers gives a CSV button for a table and a JSON button for a mapping."""
    at = AppTest.from_function(shell_widgets_page, args=(str(ROOT),), default_timeout=30).run()
    assert not at.exception
    csv_button, json_button = at.get("download_button")
    assert csv_button.label == "Download errors.csv" and json_button.label == "Download loss.json"
    csv = "iteration,error\n1,0.5\n2,0.25\n"
    assert csv_button.proto.url.endswith(f"/{_media_id(csv, 'text/csv', 'errors.csv')}.csv")
    loaded = '{\n "loss": 0.5,\n "n": 3\n}'
    assert json.loads(loaded) == {"loss": 0.5, "n": 3}
    assert json_button.proto.url.endswith(
        f"/{_media_id(loaded, 'application/json', 'loss.json')}.json")


def test_sidebar_format_reaches_figure_toolbar_and_lesson_shows():
    """The sidebar's download format is the plot toolbar's image format; lesson shows both texts."""
    at = AppTest.from_function(shell_widgets_page, args=(str(ROOT),), default_timeout=30).run()
    assert at.sidebar.radio[0].value == "png"
    config = json.loads(at.get("plotly_chart")[0].proto.config)
    assert config["toImageButtonOptions"]["format"] == "png"
    assert config["toImageButtonOptions"]["filename"] == "errors"
    at.sidebar.radio[0].set_value("svg").run()
    config = json.loads(at.get("plotly_chart")[0].proto.config)
    assert config["toImageButtonOptions"]["format"] == "svg" and not at.exception
    assert [e.label for e in at.expander] == ["Why", "What to try"]
    texts = [m.value for m in at.markdown]
    assert "Entropy blurs the plan." in texts and "Lower the regularisation." in texts


def test_page_values_survive_visiting_another_page(tmp_path):
    """A page's values are kept in the session while the user visits another page and returns
    (pages-directory mode, as the app: Streamlit drops the widgets of a page not shown)."""
    (tmp_path / "pages").mkdir()
    (tmp_path / "home.py").write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport streamlit as st\n"
        "st.title('Home')\n")
    (tmp_path / "pages" / "lab.py").write_text(
        "import streamlit as st\nfrom shell import View\n"
        "from sinkd.lab.spec import PageSpec, Range\n"
        "view = View('lab', PageSpec({'n': 5}, {'n': Range(2, 64)}))\n"
        "st.slider('N', 2, 64, key=view.key('n'))\nview.sync_url()\n")
    (tmp_path / "pages" / "other.py").write_text("import streamlit as st\nst.title('Other')\n")
    at = AppTest.from_file(str(tmp_path / "home.py"), default_timeout=30).run()
    at.switch_page("pages/lab.py").run()
    at.slider(key="lab_n").set_value(9).run()
    assert at.slider(key="lab_n").value == 9
    at.switch_page("pages/other.py").run()
    at.query_params.clear()  # the menu link to a page carries no query string
    at.switch_page("pages/lab.py").run()
    assert not at.exception
    assert at.slider(key="lab_n").value == 9


def test_fresh_view_and_reset_show_the_first_preset_and_its_note():
    """A fresh visit applies the first preset; after edits, reset returns to it and its note."""
    at = lab(presets=PRESETS)
    assert values(at) == {**DEFAULTS, "n": 4, "reg": 0.5}
    at.slider(key="lab_n").set_value(30).run()
    assert not at.info and "differ from the preset" in at.caption[0].value  # note withdrawn
    at.button(key="lab_reset").click().run()
    assert values(at) == {**DEFAULTS, "n": 4, "reg": 0.5}
    assert PRESETS["Small"][1] in at.info[0].value


def test_link_values_take_precedence_over_the_preset():
    """A link with explicit values keeps them rather than the preset's."""
    at = lab({"preset": "Large", "n": "9"}, presets=PRESETS)
    assert at.session_state["lab_n"] == 9 and at.session_state["lab_reg"] == DEFAULTS["reg"]


def projector_page(root):
    """The shared sidebar and one figure with a title, axis titles and a 3 px line."""
    import sys

    if root not in sys.path:
        sys.path.insert(0, root)
    import plotly.graph_objects as go

    from shell import show_figure, sidebar_controls

    sidebar_controls()
    show_figure(go.Figure(go.Scatter(y=[1.0, 0.5, 0.25], line=dict(width=3)),
                          layout=dict(title="errors", xaxis_title="t", yaxis_title="error")),
                "errors")


def _chart(at: AppTest) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def test_projector_toggle_restyles_figures_and_lives_in_the_url():
    """The sidebar's projector toggle starts off; on, it writes projector=1 into the URL and the
    figure reaches the browser restyled (ticks >= 18 px, titles >= 22 px, the 3 px line 4.5 px);
    a copied link with projector=1 opens in projector mode; off again, the URL drops it and the
    figure is the library's own."""
    from sinkd.lab.style import PROJECTOR_FONT, PROJECTOR_TITLE

    at = AppTest.from_function(projector_page, args=(str(ROOT),), default_timeout=30).run()
    assert at.sidebar.toggle(key="projector_toggle").value is False
    assert "projector" not in at.query_params
    plain = _chart(at)
    assert plain["data"][0]["line"]["width"] == 3 and "tickfont" not in plain["layout"]["xaxis"]
    at.sidebar.toggle(key="projector_toggle").set_value(True).run()
    assert not at.exception and at.query_params["projector"] == "1"
    spec = _chart(at)
    lay = spec["layout"]
    assert lay["font"]["size"] >= PROJECTOR_FONT and spec["data"][0]["line"]["width"] == 4.5
    for axis in ("xaxis", "yaxis"):
        assert lay[axis]["tickfont"]["size"] >= PROJECTOR_FONT
        assert lay[axis]["title"]["font"]["size"] >= PROJECTOR_TITLE
    assert lay["title"]["font"]["size"] >= PROJECTOR_TITLE

    copied = AppTest.from_function(projector_page, args=(str(ROOT),), default_timeout=30)
    copied.query_params["projector"] = "1"
    copied.run()
    assert copied.sidebar.toggle(key="projector_toggle").value is True
    assert _chart(copied)["data"][0]["line"]["width"] == 4.5
    copied.sidebar.toggle(key="projector_toggle").set_value(False).run()
    assert "projector" not in copied.query_params
    assert _chart(copied)["data"][0]["line"]["width"] == 3


def test_sync_url_keeps_the_shell_values_beside_the_page_values():
    """The lesson step and projector mode, values of the shell and not of the page, stay in the
    URL when the page writes its own values into it."""
    at = lab({"lesson": "3", "projector": "1", "n": "9"})
    assert not at.exception and not at.warning
    assert dict(at.query_params) == {"n": "9", "reg": "0.1", "method": "log", "show": "True",
                                     "lesson": "3", "projector": "1"}


def test_no_page_value_is_named_like_a_shell_value():
    """No page's spec has a value named like a value the shell keeps in the URL (the lesson
    step, projector mode) or the preset: a link's parameters cannot be ambiguous."""
    import shell
    from sinkd.distill import RECIPES
    from sinkd.distill.glue import GLUE_TASKS
    from sinkd.lab import (
        batchwise_spec,
        distill_spec,
        divergence_lab_spec,
        transport_spec,
        verify_spec,
    )

    specs = [batchwise_spec.SPEC, divergence_lab_spec.SPEC, transport_spec.SPEC,
             verify_spec.SPEC, distill_spec.spec(RECIPES, GLUE_TASKS)]
    for spec in specs:
        assert not set(spec.defaults) & {*shell.SHELL_PARAMS, "preset"}
