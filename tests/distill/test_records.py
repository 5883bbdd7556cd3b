"""Run records (sinkd.distill.records): JSON round trip, atomic writes, errors, snapshot."""

import json
import math
from datetime import datetime

import numpy as np
import ot
import pytest
import torch
from scipy.spatial.distance import cdist
from scipy.special import softmax

from sinkd.distill.records import (
    RunRecord,
    load_record,
    now,
    save_record,
    transport_snapshot,
    versions,
)


def _record(recipe: str, seed: int, test: float | None, best: float | None = None,
            final: float | None = None, steps: int = 100, stopped: bool = False) -> RunRecord:
    """A hand-made record with the given results."""
    return RunRecord(config={"recipe": recipe, "seed": seed, "steps": steps},
                     results={"test": test, "best_dev": best, "final_dev": final},
                     stopped=stopped)


def test_round_trip_equals(tmp_path):
    """save_record then load_record gives back an equal record (to_dict and fields)."""
    record = RunRecord(
        config={"recipe": "sinkd", "seed": 2, "steps": 3, "lr": 5e-5, "teacher": None},
        metrics=[{"step": 1, "loss": 0.7, "kd": None}, {"step": 2, "loss": 0.6,
                                                       "dev_accuracy": 0.5}],
        results={"test": 0.75, "best_step": 2}, data={"name": "x", "train": 10},
        teacher={"from_cache": True}, device="cpu", versions={"torch": "2"},
        started="2026-01-01T00:00:00+00:00", ended=None, wall_time_s=1.5, stopped=True,
        last_batch={"plan": [[1.0, 0.0], [0.0, 1.0]]})
    path = save_record(record, tmp_path / "sub" / "run.json")
    loaded = load_record(path)
    assert loaded == record and loaded.to_dict() == record.to_dict()
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]  # no temporary file left


def test_non_finite_values_are_stored_as_null(tmp_path):
    """NaN and infinities become JSON null, so the file is strict JSON."""
    record = RunRecord(config={"recipe": "kd"}, metrics=[{"step": 1, "loss": math.nan}],
                       results={"test": math.inf})
    path = save_record(record, tmp_path / "r.json")
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(c))
    assert data["metrics"][0]["loss"] is None and data["results"]["test"] is None


def test_save_replaces_the_previous_file_whole(tmp_path):
    """A second save replaces the first file completely."""
    path = tmp_path / "r.json"
    save_record(RunRecord(config={"recipe": "ce"}, metrics=[{"step": 1}] * 50), path)
    save_record(RunRecord(config={"recipe": "kd"}), path)
    assert load_record(path).recipe == "kd" and load_record(path).metrics == []


@pytest.mark.parametrize("content, reason", [
    ("{not json", "not a valid run record"),
    ("[1, 2]", "JSON object"),
    ('{"metrics": []}', "no 'config'"),
    ('{"config": {}, "stopped": "no"}', "'stopped'"),
    ('{"config": {}, "surprise": 1}', "surprise"),
    ('{"config": {}, "metrics": [{"loss": 1}]}', "'step'"),
])
def test_load_record_rejects_invalid_files_naming_them(tmp_path, content, reason):
    """An invalid record raises ValueError naming the file and what is wrong."""
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="bad.json") as info:
        load_record(path)
    assert reason in str(info.value)
    with pytest.raises(ValueError, match="missing.json"):
        load_record(tmp_path / "missing.json")


def test_transport_snapshot_plan_equals_pot():
    """The snapshot's plan equals POT's on the transposed problem with unit masses (float64)."""
    rng = np.random.default_rng(0)
    z_s, z_t = rng.normal(0, 2, (6, 3)), rng.normal(0, 2, (6, 3))
    snap = transport_snapshot(torch.tensor(z_s), torch.tensor(z_t), torch.arange(6), reg=0.1,
                              n_iters=20, temperature=2.0)
    D = cdist(softmax(z_s / 2, 1), softmax(z_t / 2, 1), "cityblock")  # (N, N) L1
    expected = ot.sinkhorn(np.ones(6), np.ones(6), D.T, 0.1, numItermax=20, stopThr=0,
                           warn=False).T
    np.testing.assert_allclose(np.array(snap["plan"]), expected, rtol=1e-10, atol=1e-14)
    assert np.array(snap["student_logits"]) == pytest.approx(z_s)
    assert snap["labels"] == list(range(6)) and snap["n_iters"] == 20


def test_versions_and_time_stamp():
    """versions() names torch, transformers and sinkd; now() is an ISO time in UTC."""
    v = versions()
    assert v["torch"] == torch.__version__ and v["transformers"] and v["sinkd"]
    assert datetime.fromisoformat(now()).utcoffset().total_seconds() == 0
