"""App tests: one case per page of the app (the home page first) for tests that ask for it."""

import pytest
from app_pages import app_pages


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Give every test that asks for `page_name` one case per page of the app."""
    if "page_name" in metafunc.fixturenames:
        metafunc.parametrize("page_name", app_pages())
