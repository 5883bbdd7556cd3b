"""The app's pages as the app tests see them, and a way to open one in AppTest.

A plain module, imported by name (``from app_pages import ...``): pytest's default ``prepend``
import mode puts each test file's folder first on ``sys.path`` (tests/app is no package), as it
does for conftest.py. It is not reachable through the ``pythonpath`` of pyproject.toml: there,
``app`` is app.py, so ``app.app_pages`` cannot name this file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
HOME = "home"  # app.py: the home page, served at "/"


def app_pages() -> list[str]:
    """The app's pages: the home page, then the stem of every file of pages/ (so new pages join)."""
    return [HOME, *sorted(p.stem for p in (ROOT / "pages").glob("*.py"))]


def script(page: str) -> str:
    """The page's script, relative to app.py."""
    return "app.py" if page == HOME else f"pages/{page}.py"


def url_path(page: str) -> str:
    """The page's URL path: its file stem (Streamlit's pages-directory rule), "" for home."""
    return "" if page == HOME else page


def open_page(page: str, *, query: Mapping[str, str] | None = None,
              state: Mapping[str, Any] | None = None, timeout: float = 60) -> AppTest:
    """Run one page of the app as a fresh session would: the link's ``query`` and the
    session's ``state`` set first, then the page's script alone (in the pages-directory mode
    a page runs without app.py, as when a copied link is opened)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    at.query_params.update(query or {})
    for key, value in (state or {}).items():
        at.session_state[key] = value
    if page != HOME:
        at.switch_page(script(page))
    return at.run()
