"""App test helpers: one case per page of the app (the home page first)."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PAGE = "home"  # app.py registers views/home.py with default=True: it is served at "/"


def app_pages() -> list[str]:
    """The stems of views/*.py not starting with "_" (default page first), so new pages join."""
    stems = [p.stem for p in (ROOT / "views").glob("*.py") if not p.name.startswith("_")]
    return sorted(stems, key=lambda stem: (stem != DEFAULT_PAGE, stem))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Give every test that asks for `page_name` one case per page of the app."""
    if "page_name" in metafunc.fixturenames:
        metafunc.parametrize("page_name", app_pages())
