"""Output and cache paths are checked before any data or model loads (sinkd.distill.paths).

Each bad path is a real one on this machine (a file, a FIFO, /dev/null, /proc); the law is that
``train`` raises a one-line ValueError naming the argument and the path before its teacher phase
starts (no progress event, nothing cached), and that good paths are created and left clean.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from sinkd.cli import main
from sinkd.distill.config import DistillConfig
from sinkd.distill.paths import check_output_paths, check_writable_dir
from sinkd.distill.train import train


def _config(tiny: dict, **changes) -> DistillConfig:
    base = DistillConfig(data=tiny["data"], teacher=tiny["teacher"], teacher_steps=4,
                         student_layers=1, steps=2, batch_size=8, eval_every=2, max_length=16,
                         cache_dir=str(tiny["root"] / "cache"), device="cpu")
    return dataclasses.replace(base, **changes)


def _nothing_in(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


def _bad_paths(tmp_path: Path) -> list[tuple[dict, str]]:
    """(config changes, the one-line error they must give)."""
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("x")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    cases = [
        (dict(out=str(a_file / "run.json")),
         f"out '{a_file}/run.json' is under '{a_file}', which is not a folder"),
        (dict(out=str(tmp_path)), f"out '{tmp_path}' is a folder: it must be the path of a JSON"),
        (dict(out=str(fifo)), f"out '{fifo}' is not a regular file"),
        (dict(out="/dev/null/ce-seed0.json"),
         "out '/dev/null/ce-seed0.json' is under '/dev/null', which is not a folder"),
        (dict(cache_dir=str(a_file / "cache")),
         f"cache_dir '{a_file}/cache' is under '{a_file}', which is not a folder"),
        (dict(cache_dir=str(a_file)), f"cache_dir '{a_file}' is not a folder"),
    ]
    if Path("/proc/self").is_dir():
        cases.append((dict(cache_dir="/proc/sinkd-x"),
                      "cache_dir '/proc/sinkd-x' cannot be created or written"))
    return cases


def test_check_output_paths_names_each_bad_path(tiny, tmp_path):
    """Every bad out or cache_dir is a ValueError naming the argument and the path, one line."""
    for changes, message in _bad_paths(tmp_path):
        with pytest.raises(ValueError) as err:
            check_output_paths(_config(tiny, **changes))
        assert str(err.value).startswith(message), (changes, str(err.value))
        assert "\n" not in str(err.value)


def test_bad_paths_fail_in_train_before_the_teacher_phase(tiny, tmp_path):
    """train() with a bad out or cache_dir raises ValueError before any teacher event, caching
    nothing (before the fix the cache_dir cases failed in save_pretrained after fine-tuning,
    and the out cases with a raw OSError from the record writer)."""
    for changes, message in _bad_paths(tmp_path):
        cache = tmp_path / "fresh-cache"
        changes = {"cache_dir": str(cache), **changes}
        events: list[dict] = []
        with pytest.raises(ValueError, match="^" + re.escape(message)):
            train(_config(tiny, **changes), on_progress=events.append)
        assert events == [], changes
        assert _nothing_in(cache / "teachers")


def test_good_paths_are_created_and_left_clean(tiny, tmp_path):
    """Missing folders are created (the record's folder, the cache); no probe file is left
    behind; an existing record file is accepted; a file where the cache keeps its logits
    folder is refused."""
    out, cache = tmp_path / "runs" / "deep" / "run.json", tmp_path / "c" / "d"
    check_output_paths(_config(tiny, out=str(out), cache_dir=str(cache)), tmp_path / "dir")
    assert out.parent.is_dir() and not out.exists()
    assert cache.is_dir() and list(cache.iterdir()) == []
    assert list(out.parent.iterdir()) == [] and list((tmp_path / "dir").iterdir()) == []
    out.write_text("{}")
    check_output_paths(_config(tiny, out=str(out), cache_dir=str(cache)))
    assert check_writable_dir("x", tmp_path) == tmp_path
    (cache / "logits").write_text("not a folder")
    with pytest.raises(ValueError, match=f"^cache_dir '{cache}/logits' is not a folder"):
        check_output_paths(_config(tiny, cache_dir=str(cache)))


def test_cli_out_dev_null_fails_at_once_in_one_line(tiny, capsys):
    """``distill --out /dev/null``: a nonzero exit with one line naming /dev/null, no traceback,
    and no teacher fine-tuned (before the fix: NotADirectoryError after the teacher phase)."""
    args = ["distill", "--data", tiny["data"], "--steps", "2", "--batch-size", "8", "--device",
            "cpu", "--set", f"teacher={tiny['teacher']}", "--set", "teacher_steps=4", "--set",
            "student_layers=1", "--set", "max_length=16", "--set",
            f"cache_dir={tiny['root'] / 'cache-dev-null'}", "--out", "/dev/null", "--no-progress"]
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "/dev/null" in err, (code, err)
    assert _nothing_in(tiny["root"] / "cache-dev-null" / "teachers")
