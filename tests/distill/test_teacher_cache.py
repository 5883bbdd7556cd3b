"""The verified teacher cache (sinkd.distill.cache, teacher.prepare_teacher).

Real files are tampered with on disk, as a user, a full disk or a crash would: logits replaced by
random values of the same shape, NaN written into logits, a truncated weights file, a truncated
logits file, a manifest edited or broken. The law: each is detected, named (the file's path) in a
CacheWarning, and the entry recomputed to the very logits a clean cache gave; the distillation
run on the repaired cache equals the run on the clean one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import time
import warnings
from pathlib import Path

import pytest
import torch

from sinkd.distill import jobs as distill_jobs
from sinkd.distill import models
from sinkd.distill.cache import CacheDir, CacheError
from sinkd.distill.config import DistillConfig
from sinkd.distill.teacher import CacheWarning, prepare_teacher, teacher_cache
from sinkd.distill.train import load_data, train

SPLITS = ("train", "dev", "test")


def _config(tiny: dict, cache: Path, **changes) -> DistillConfig:
    base = DistillConfig(data=tiny["data"], teacher=tiny["teacher"], teacher_steps=4,
                         student_layers=1, steps=4, batch_size=8, eval_every=2, max_length=16,
                         cache_dir=str(cache), device="cpu", recipe="sinkd")
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def clean(tiny, tmp_path_factory):
    """A clean cache entry: its config, splits, logits and the path of each file."""
    cfg = _config(tiny, tmp_path_factory.mktemp("clean-cache"))
    splits = load_data(cfg)
    teacher, logits = prepare_teacher(cfg, splits)
    assert teacher is not None
    return cfg, splits, {s: v.clone() for s, v in logits.items()}


def _copy(clean, tmp_path):
    """The clean entry copied into a fresh cache folder: (config, splits, cache, key)."""
    cfg, splits, _ = clean
    shutil.copytree(cfg.cache_dir, tmp_path / "cache")
    cfg = dataclasses.replace(cfg, cache_dir=str(tmp_path / "cache"))
    cache, key = teacher_cache(cfg, splits)
    return cfg, splits, cache, key


def _recomputed(cfg, splits, file: Path, logits: dict) -> None:
    """prepare_teacher names ``file`` in a CacheWarning, fine-tunes again and returns the clean
    logits; the next call finds the repaired entry valid (no warning, not run)."""
    with pytest.warns(CacheWarning, match=str(file)) as caught:
        teacher, got = prepare_teacher(cfg, splits)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert teacher is not None  # recomputed, not read
    for s in SPLITS:
        torch.testing.assert_close(got[s], logits[s], rtol=0, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        again, got2 = prepare_teacher(cfg, splits)
    assert again is None and all(torch.equal(got2[s], got[s]) for s in SPLITS)


def test_teacher_status_counts_an_entry_as_cached_only_with_its_manifest(clean, tmp_path):
    """The distill page's "already cached" (jobs.teacher_status): true for a complete entry;
    false once its manifest is gone (the teacher's folder and every logits file still there,
    as a run killed before writing the manifest leaves them), and the next preparation then
    fine-tunes again and writes it."""
    cfg, splits, cache, key = _copy(clean, tmp_path)
    folder, cached = distill_jobs.teacher_status(cfg, (cache, key))
    assert cached and folder == cache.teacher_dir(key)
    cache.manifest_file(key).unlink()
    assert folder.is_dir() and all(cache.logits_file(key, s).is_file() for s in SPLITS)
    assert distill_jobs.teacher_status(cfg, (cache, key)) == (folder, False)
    prepare_teacher(cfg, splits)
    assert distill_jobs.teacher_status(cfg, (cache, key)) == (folder, True)


def test_manifest_records_each_files_sha256_and_the_settings(clean):
    """The manifest lists every teacher file and each split's logits with the sha256 and size
    hashlib gives for the bytes on disk, and the settings (data fingerprint, shapes)."""
    cfg, splits, _ = clean
    cache, key = teacher_cache(cfg, splits)
    entry = json.loads(cache.manifest_file(key).read_text())
    on_disk = [p for p in cache.teacher_dir(key).rglob("*") if p.name != "manifest.json"]
    on_disk += [cache.logits_file(key, s) for s in SPLITS]
    assert sorted(entry["files"]) == sorted(p.relative_to(cache.root).as_posix() for p in on_disk)
    assert any(p.name == "model.safetensors" for p in on_disk)
    for p in on_disk:
        meta = entry["files"][p.relative_to(cache.root).as_posix()]
        assert meta == {"bytes": p.stat().st_size,
                        "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
    settings = entry["settings"]
    assert settings["fingerprint"] == splits.fingerprint() and settings["teacher_steps"] == 4
    assert settings["shapes"] == {s: [len(getattr(splits, s)), 2] for s in SPLITS}


def test_random_logits_of_the_same_shape_are_detected_and_recomputed(clean, tmp_path):
    """Train logits replaced by random values of the same shape (used silently before)."""
    cfg, splits, cache, key = _copy(clean, tmp_path)
    file = cache.logits_file(key, "train")
    torch.save(torch.randn(len(splits.train), 2), file)
    _recomputed(cfg, splits, file, clean[2])


def test_nan_logits_are_detected_and_recomputed(clean, tmp_path):
    """NaN written into the dev logits (before: a failure at the first KD step, or none)."""
    cfg, splits, cache, key = _copy(clean, tmp_path)
    file = cache.logits_file(key, "dev")
    z = torch.load(file, weights_only=True)
    z[3, 1] = math.nan
    torch.save(z, file)
    _recomputed(cfg, splits, file, clean[2])


@pytest.mark.parametrize("which", ["weights", "logits"])
def test_truncated_files_are_named_and_recomputed(clean, tmp_path, which):
    """A weights or logits file cut to half its bytes (before: a raw torch/safetensors error
    that never named the file)."""
    cfg, splits, cache, key = _copy(clean, tmp_path)
    file = (cache.teacher_dir(key) / "model.safetensors" if which == "weights"
            else cache.logits_file(key, "test"))
    data = file.read_bytes()
    file.write_bytes(data[:len(data) // 2])
    _recomputed(cfg, splits, file, clean[2])


def test_edited_or_broken_manifest_is_named_and_recomputed(clean, tmp_path):
    """A manifest made with other settings, then one that is not JSON: each named."""
    cfg, splits, cache, key = _copy(clean, tmp_path)
    manifest = cache.manifest_file(key)
    entry = json.loads(manifest.read_text())
    entry["settings"]["max_length"] = 99
    manifest.write_text(json.dumps(entry))
    with pytest.warns(CacheWarning, match=rf"{manifest} was made with other settings "
                                          r"\['max_length'\]"):
        prepare_teacher(cfg, splits)
    manifest.write_text("{not json")
    _recomputed(cfg, splits, manifest, clean[2])


def test_distillation_on_a_repaired_cache_equals_the_clean_run(clean, tmp_path):
    """A sinkd run whose cached train logits were replaced by random values gives, loss for loss,
    the run on the clean cache (before: a KD loss 1e5 times larger, silently)."""
    cfg, splits, cache, key = _copy(clean, tmp_path)
    reference = train(cfg)
    torch.save(torch.randn(len(splits.train), 2) * 5, cache.logits_file(key, "train"))
    with pytest.warns(CacheWarning, match="changed or truncated"):
        repaired = train(cfg)
    for a, b in zip(reference.metrics, repaired.metrics, strict=True):
        for k in ("loss", "ce", "kd", "sinkhorn"):
            assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-9), k


def test_unreadable_logits_file_is_a_cache_error_naming_it(tmp_path):
    """CacheDir.load_logits on garbage bytes raises CacheError (a ValueError) with the path."""
    cache = CacheDir(tmp_path)
    file = cache.logits_file("k", "train")
    file.parent.mkdir(parents=True)
    file.write_bytes(b"garbage, not a torch file")
    with pytest.raises(CacheError, match=f"teacher logits {file} cannot be read"):
        cache.load_logits("k", "train")
    assert isinstance(CacheError("x"), ValueError)


def test_a_teacher_giving_nan_logits_is_refused_and_not_cached(tiny, tmp_path):
    """A teacher folder whose classifier weights hold NaN (teacher_steps=0, used as is) gives
    NaN logits: a ValueError saying so, and no cache entry left behind."""
    model = models.tiny_classifier(seed=0)
    with torch.no_grad():
        model.classifier.weight[0, 0] = math.nan
    folder = tmp_path / "nan-teacher"
    model.save_pretrained(folder)
    models.load_tokenizer(tiny["teacher"]).save_pretrained(folder)
    cfg = _config(tiny, tmp_path / "cache", teacher=str(folder), teacher_steps=0)
    splits = load_data(cfg)
    with pytest.raises(ValueError, match="NaN or inf logits on the train split.*teacher_lr"):
        prepare_teacher(cfg, splits)
    cache, key = teacher_cache(cfg, splits)
    assert not cache.has_entry(key) and not cache.teacher_dir(key).exists()
    assert not any(cache.logits_file(key, s).exists() for s in SPLITS)


# One process preparing a teacher: it waits for the file "go" (so that both start at once),
# then writes what it saw: the progress phases, whether it fine-tuned, its logits.
PREPARE_WORKER = """
import dataclasses, json, sys, time, warnings
from pathlib import Path
import torch
from sinkd.distill.config import DistillConfig
from sinkd.distill.teacher import CacheWarning, prepare_teacher
from sinkd.distill.train import load_data

config = DistillConfig(**json.loads(sys.argv[1]))
folder, me = Path(sys.argv[2]), sys.argv[3]
splits = load_data(config)
(folder / f"ready-{me}").touch()
while not (folder / "go").exists():
    time.sleep(0.01)
phases = []
with warnings.catch_warnings():
    warnings.simplefilter("error", CacheWarning)  # a half-written entry seen fails the worker
    model, logits = prepare_teacher(config, splits, on_progress=lambda e: phases.append(e["phase"]))
torch.save(logits, folder / f"logits-{me}.pt")
(folder / f"seen-{me}.json").write_text(json.dumps({"built": model is not None,
                                                    "phases": sorted(set(phases))}))
"""


def test_two_processes_preparing_one_teacher_at_once_fine_tune_it_once(tiny, tmp_path):
    """Two processes released at the same instant on one empty cache entry (a teacher long
    enough to fine-tune that both find the entry missing): one fine-tunes and writes the entry,
    the other waits for it (phase "wait") and reads it from the cache; both get the same logits,
    neither sees a half-written entry, and the entry verifies afterwards."""
    import subprocess
    import sys

    cfg = _config(tiny, tmp_path / "cache", teacher_steps=150)
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    workers = [subprocess.Popen([sys.executable, "-c", PREPARE_WORKER, json.dumps(fields),
                                 str(tmp_path), str(i)]) for i in range(2)]
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready-{i}").exists() for i in range(2)):
            assert time.monotonic() < deadline and all(w.poll() is None for w in workers)
            time.sleep(0.05)
        (tmp_path / "go").touch()
        assert [w.wait(timeout=300) for w in workers] == [0, 0]
    finally:
        for w in workers:
            w.kill()
    seen = [json.loads((tmp_path / f"seen-{i}.json").read_text()) for i in range(2)]
    builder, reader = sorted(seen, key=lambda s: not s["built"])
    assert builder == {"built": True, "phases": ["fine-tune", "logits"]}, seen
    assert reader == {"built": False, "phases": ["cache", "wait"]}, seen
    logits = [torch.load(tmp_path / f"logits-{i}.pt") for i in range(2)]
    assert all(torch.equal(logits[0][s], logits[1][s]) for s in SPLITS)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        entry = prepare_teacher(cfg, load_data(cfg))
    assert entry.model is None and all(torch.equal(entry.logits[s], logits[0][s]) for s in SPLITS)


def test_a_run_waiting_for_another_process_teacher_can_be_stopped(clean, tmp_path):
    """While another process holds the entry's lock (here: the test, through the lock file),
    prepare_teacher reports "wait", asks should_stop, and stops with RunStoppedError, caching
    nothing; once the lock is free it builds the entry."""
    import filelock

    from sinkd.distill.teacher import RunStoppedError

    cfg, splits = dataclasses.replace(clean[0], cache_dir=str(tmp_path / "cache")), clean[1]
    cache, key = teacher_cache(cfg, splits)
    cache.lock_file(key).parent.mkdir(parents=True)
    phases, asked = [], []
    with filelock.FileLock(cache.lock_file(key)):
        with pytest.raises(RunStoppedError, match="another process"):
            prepare_teacher(cfg, splits, on_progress=lambda e: phases.append(e["phase"]),
                            should_stop=lambda: asked.append(1) or len(asked) >= 2)
    assert phases == ["wait"] and len(asked) == 2 and not cache.has_entry(key)
    model, logits = prepare_teacher(cfg, splits)
    assert model is not None and all(torch.equal(logits[s], clean[2][s]) for s in SPLITS)
