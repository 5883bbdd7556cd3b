"""AppTest: every page of the app renders without an exception."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def test_home_renders():
    """The entry point runs and the home page shows its title and no exception."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "SinKD Lab"
