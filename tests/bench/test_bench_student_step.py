"""bench.student_step: the SinKD-vs-CE step comparison runs on the real model and data."""

import json

from transformers import AutoConfig, AutoModelForSequenceClassification

from bench import student_step
from sinkd.distill.models import packaged_model_path


def test_student_step_bench_reports_every_recipe_against_ce(tmp_path, capsys):
    """A tiny run (64 snippets, batch 8, 3 rounds) times ce, kd and sinkd steps of the real
    2-layer MiniLM student; CE's ratio to itself is exactly 1, losses finite, JSON saved."""
    out = tmp_path / "step.json"
    assert student_step.main(["--rows", "64", "--batch-size", "8", "--max-length", "16",
                              "--repeats", "3", "--threads", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    saved = json.loads(out.read_text())["result"]
    assert set(saved["times"]) == set(student_step.RECIPES) and saved["finite"]
    assert saved["ratio_to_ce"]["ce"] == 1.0
    for t in saved["times"].values():
        assert 0 < t["min_s"] <= t["median_s"] and t["repeats"] == 3
    assert "sinkd step / ce step" in text and "target <= 1.1x" in text
    # the student is MiniLM cut to 2 layers: count a model built that way by transformers alone
    config = AutoConfig.from_pretrained(packaged_model_path(), num_hidden_layers=2, num_labels=2)
    expected = sum(p.numel() for p in AutoModelForSequenceClassification.from_config(
        config).parameters())
    assert saved["student_parameters"] == expected
