"""Shared test fixtures: a tiny distillation setup (used by the distill and app tests)."""

import pytest

WORDS = {1: ["great", "moving", "funny", "brilliant"], 0: ["dull", "boring", "awful", "flat"]}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict:
    """A tiny random BERT teacher folder and a 96-row two-class CSV (distillation tests)."""
    # imported here: conftest loads for every test, and the core's tests need no distill extra
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
