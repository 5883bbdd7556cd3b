"""The teacher cache: fine-tuned teachers and their logits, stored with checksums and settings.

One entry per key (:func:`teacher_cache_key`): ``teachers/<key>/`` holds the saved teacher and
its tokenizer, ``logits/<key>-<split>.pt`` its logits, and ``teachers/<key>/manifest.json``,
written last, the settings that made the entry and the size and sha256 of every file.
:meth:`CacheDir.load_entry` trusts nothing else: a file changed, truncated or missing, logits
of the wrong shape or not finite, or a manifest made with other settings is a
:class:`CacheError` naming the file, and :func:`sinkd.distill.teacher.prepare_teacher`
recomputes the entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

CACHE_VERSION = 1  # bump when what the cache stores changes: old keys stop matching
MANIFEST = "manifest.json"  # in the teacher's folder; its presence marks a complete entry
MANIFEST_VERSION = 1


class CacheError(ValueError):
    """A cache entry that exists but cannot be trusted; the message names the file."""


def default_cache_dir() -> Path:
    """Where fine-tuned teachers and their logits are cached: $SINKD_CACHE or ~/.cache/sinkd."""
    env = os.environ.get("SINKD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sinkd"


def teacher_cache_key(model_id: str | Path, data_name: str, *, max_length: int, steps: int,
                      seed: int) -> str:
    """A short hash naming one fine-tuned teacher: equal arguments, equal key.

    >>> len(teacher_cache_key("minilm", "rotten_tomatoes", max_length=64, steps=150, seed=0))
    16
    """
    payload = json.dumps([CACHE_VERSION, str(model_id), data_name, max_length, steps, seed])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class CacheDir:
    """A cache folder: ``teachers/<key>/`` holds a saved teacher, ``logits/<key>.pt`` logits."""

    root: Path = field(default_factory=default_cache_dir)

    def teacher_dir(self, key: str) -> Path:
        """The folder for the fine-tuned teacher of ``key`` (``save_pretrained`` target)."""
        return Path(self.root) / "teachers" / key

    def logits_file(self, key: str, split: str) -> Path:
        """The file for the teacher's logits of ``key`` on ``split``."""
        return Path(self.root) / "logits" / f"{key}-{split}.pt"

    def lock_file(self, key: str) -> Path:
        """The file whose lock one process holds while it builds ``key``'s entry (beside the
        teacher's folder, which a rebuild removes)."""
        return Path(self.root) / "teachers" / f"{key}.lock"

    def manifest_file(self, key: str) -> Path:
        """The entry's manifest: settings, and size and sha256 of each file."""
        return self.teacher_dir(key) / MANIFEST

    def save_logits(self, key: str, split: str, logits: Tensor) -> Path:
        """Store (N, C) logits; written to a temporary file first, so readers never see half."""
        path = self.logits_file(key, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(logits.detach().float().cpu(), tmp)
        tmp.replace(path)
        return path

    def load_logits(self, key: str, split: str) -> Tensor | None:
        """The stored logits, or None when not cached; CacheError names an unreadable file."""
        path = self.logits_file(key, split)
        if not path.is_file():
            return None
        try:
            logits = torch.load(path, weights_only=True)
        except Exception as e:  # truncated or foreign: torch raises many kinds
            raise CacheError(f"teacher logits {path} cannot be read "
                             f"({type(e).__name__}: {_first_line(e)})") from None
        if not isinstance(logits, Tensor) or logits.dim() != 2 or not logits.is_floating_point():
            raise CacheError(f"teacher logits {path} hold no (N, C) float tensor")
        return logits

    def has_entry(self, key: str) -> bool:
        """Whether ``key`` has a complete entry (its manifest); :meth:`load_entry` verifies it."""
        return self.manifest_file(key).is_file()

    def remove(self, key: str, splits: Sequence[str]) -> None:
        """Delete the entry of ``key``: manifest first, so a half-removed entry is incomplete."""
        self.manifest_file(key).unlink(missing_ok=True)
        for split in splits:
            self.logits_file(key, split).unlink(missing_ok=True)
        shutil.rmtree(self.teacher_dir(key), ignore_errors=True)

    def write_manifest(self, key: str, settings: dict[str, Any], splits: Sequence[str]) -> Path:
        """Record ``settings`` and the size and sha256 of every file of the entry (the teacher's
        folder and the logits of ``splits``); written atomically, last."""
        folder, path = self.teacher_dir(key), self.manifest_file(key)
        files = [p for p in sorted(folder.rglob("*")) if p.is_file() and p != path]
        files += [self.logits_file(key, s) for s in splits]
        entry = {"version": MANIFEST_VERSION, "key": key, "settings": settings,
                 "files": {p.relative_to(self.root).as_posix(): {
                     "bytes": p.stat().st_size, "sha256": file_digest(p)} for p in files}}
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{MANIFEST}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(entry, f, indent=1)
        os.replace(tmp, path)
        return path

    def load_entry(self, key: str, settings: dict[str, Any], shapes: dict[str, tuple[int, int]],
                   ) -> dict[str, Tensor] | None:
        """The verified logits of ``key``'s entry per split, or None when there is no entry.

        Parameters
        ----------
        settings : dict
            What made the entry (JSON values); the manifest must hold exactly these.
        shapes : dict
            Split -> the (N, C) its logits must have.

        Raises
        ------
        CacheError
            Naming the file: an unreadable manifest, other settings, a file missing, of another
            size or sha256 (changed or truncated), logits unreadable, of another shape or with
            NaN or inf.
        """
        path = self.manifest_file(key)
        if not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text())
            files = dict(entry["files"])
            saved = entry["settings"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CacheError(f"cache manifest {path} cannot be read ({_first_line(e)})") from None
        if saved != json.loads(json.dumps(settings)):
            other = sorted(k for k in {*saved, *settings} if saved.get(k) != settings.get(k))
            raise CacheError(f"cache manifest {path} was made with other settings {other}")
        wanted = {self.logits_file(key, s).relative_to(self.root).as_posix() for s in shapes}
        if not wanted <= set(files):
            raise CacheError(f"cache manifest {path} lists no logits {sorted(wanted - set(files))}")
        for name, meta in files.items():
            file = Path(self.root) / name
            if not file.is_file():
                raise CacheError(f"cached file {file} is missing")
            if file.stat().st_size != meta.get("bytes") or file_digest(file) != meta.get("sha256"):
                raise CacheError(f"cached file {file} was changed or truncated since it was "
                                 f"written (its sha256 differs from {path})")
        logits = {}
        for split, shape in shapes.items():
            z = self.load_logits(key, split)
            file = self.logits_file(key, split)
            if z is None or tuple(z.shape) != tuple(shape):
                raise CacheError(f"teacher logits {file} have shape "
                                 f"{None if z is None else tuple(z.shape)}, expected {shape}")
            if not torch.isfinite(z).all():
                raise CacheError(f"teacher logits {file} hold NaN or inf values")
            logits[split] = z
        return logits


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
