"""AppTest: every page of the app renders without an exception."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def test_home_renders():
    """The entry point runs and the home page shows its title and no exception."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "SinKD Lab"


def test_home_shows_formula_and_download_format():
    """The home page shows the SinKD loss formula and the sidebar's plot download format radio."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert len(at.latex) == 1
    formula = at.latex[0].value
    assert r"\mathcal{L}_{\mathrm{SinKD}}" in formula and "Sinkhorn" in formula
    radios = [r for r in at.sidebar.get("radio") if r.key == "image_format"]
    assert len(radios) == 1
    assert radios[0].options == ["png", "svg"] and radios[0].value == "png"


def test_download_format_choice_is_kept():
    """Choosing SVG in the sidebar survives a rerun and is stored where show_figure reads it."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.radio(key="image_format").set_value("svg").run()
    assert not at.exception
    assert at.session_state["image_format"] == "svg"
    assert at.radio(key="image_format").value == "svg"


def test_every_page_can_be_switched_to(page_name):
    """Each page of views/ renders after switching to it, with a title and no exception."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(f"views/{page_name}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title and at.title[0].value.strip()
