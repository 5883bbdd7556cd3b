"""Shared test helpers: one case per page found in views/, and a tiny distillation setup."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PAGE = "home"  # app.py registers views/home.py with default=True: it is served at "/"


def app_pages() -> list[str]:
    """The stems of views/*.py not starting with "_" (default page first), so new pages join."""
    stems = [p.stem for p in (ROOT / "views").glob("*.py") if not p.name.startswith("_")]
    return sorted(stems, key=lambda stem: (stem != DEFAULT_PAGE, stem))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Give every test that asks for `page_name` one case per page of the app."""
    if "page_name" in metafunc.fixturenames:
        metafunc.parametrize("page_name", app_pages())


WORDS = {1: ["great", "moving", "funny", "brilliant"], 0: ["dull", "boring", "awful", "flat"]}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict:
    """A tiny random BERT teacher folder and a 96-row two-class CSV (distillation tests)."""
    import pandas as pd

    from sinkd.distill import models

    root = tmp_path_factory.mktemp("tiny")
    teacher = root / "teacher"
    models.tiny_classifier(seed=0).save_pretrained(teacher)
    models.load_tokenizer(models.packaged_model_path()).save_pretrained(teacher)
    rows = [{"text": f"a {WORDS[y][i % 4]} film number {i}", "label": y}
            for i in range(48) for y in (0, 1)]
    pd.DataFrame(rows).to_csv(root / "reviews.csv", index=False)
    return {"root": root, "teacher": str(teacher), "data": str(root / "reviews.csv")}
