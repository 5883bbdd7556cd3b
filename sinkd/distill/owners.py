"""Who owns which saved run: a record -> owner map kept in a file beside the runs.

An app server's :class:`~sinkd.distill.sessions.JobBoard` lets a browser resume only the runs
its own jobs wrote. :class:`Owners` keeps that map (and the key of the transfer codes that move
a browser's runs to another browser) in files, so that it outlives a server restart and is
shared by every server on one cache folder: each change is merged under a file lock into what
the file holds, and the file is read again whenever it changed.

>>> owners = Owners()  # in memory
>>> owners.update(lambda entries: {**entries, "/runs/a.json": ("alice", 0.0)})
>>> owners.owner_at("/runs/a.json"), owners.owner_at("/runs/b.json")
('alice', None)
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import filelock

# An entry whose record does not exist is kept this long: a queued run writes its record only
# when its turn comes (another server may start a job meanwhile); then it is pruned.
PENDING_S = 30 * 24 * 3600

Entries = dict[str, tuple[str, float]]  # record path (resolved) -> (owner, time entered)


def record_key(path: str | Path) -> str:
    """The map's key of a record: its resolved path."""
    return str(Path(path).resolve())


class Owners:
    """The record -> (owner, time entered) map, in memory or kept in ``path`` (JSON).

    Parameters
    ----------
    path : path-like, optional
        The owners file; ``<path>.lock`` serialises writers, ``<path>.key`` holds the key of the
        transfer codes. None keeps everything in memory (lost with the process).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.entries: Entries = {}
        self._seen: tuple[int, int] | None = None  # the file's (mtime, size) last read
        self._key: bytes | None = None
        self.refresh()

    def refresh(self) -> None:
        """Read the file again if it changed since it was last read (another server on the same
        cache folder, a restart); its entries win over what this map remembers."""
        if self.path is None:
            return
        try:
            st = self.path.stat()
            seen = (st.st_mtime_ns, st.st_size)
        except OSError:
            return
        if seen != self._seen:
            self.entries.update(_read(self.path))
            self._seen = seen

    def owner_at(self, path: str | Path) -> str | None:
        """The owner of the record at ``path``, or None."""
        entry = self.entries.get(record_key(path))
        return entry[0] if entry is not None else None

    def update(self, edit: Callable[[Entries], Entries]) -> None:
        """Apply ``edit`` to the map and write it. Under the file's lock the file is read again
        first, so that entries another server wrote since are kept (the last writer does not
        drop them). An entry goes once its record is missing and it is older than
        :data:`PENDING_S`. Where the file cannot be written the change holds in memory only
        (until a restart)."""
        if self.path is None:
            self.entries = edit(self.entries)
            return
        with contextlib.suppress(OSError, filelock.Timeout):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with filelock.FileLock(f"{self.path}.lock", timeout=10):
                self._seen = None
                self.refresh()
                old = time.time() - PENDING_S
                self.entries = {k: v for k, v in edit(self.entries).items()
                                if v[1] > old or Path(k).exists()}
                _write(self.path, self.entries)
                self.refresh()  # our own write: not read back as news next time
            return
        self.entries = edit(self.entries)

    def code_key(self) -> bytes:
        """The key of the transfer codes: read from ``<path>.key``, made there once (under the
        file's lock, readable by this user only), so a code outlives a restart; in memory
        without a usable file."""
        if self._key is not None:
            return self._key
        key = None
        if self.path is not None:
            key_file = Path(f"{self.path}.key")
            with contextlib.suppress(OSError, filelock.Timeout):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with filelock.FileLock(f"{self.path}.lock", timeout=10):
                    if not key_file.is_file():
                        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                        with os.fdopen(fd, "wb") as out:
                            out.write(secrets.token_bytes(32))
                    key = key_file.read_bytes()
        self._key = key if key is not None and len(key) == 32 else secrets.token_bytes(32)
        return self._key


def _read(path: Path) -> Entries:
    """The entries of ``path``; empty when it is unreadable (then no one may resume the old
    runs from the app: the command line still can). An entry of the older format (a bare
    owner) counts as entered long ago."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    out = {}
    for record, entry in data.items():
        if isinstance(entry, str):
            entry = [entry, 0.0]
        if (isinstance(record, str) and isinstance(entry, list) and len(entry) == 2
                and isinstance(entry[0], str) and isinstance(entry[1], (int, float))):
            out[record] = (entry[0], float(entry[1]))
    return out


def _write(path: Path, entries: Entries) -> None:
    """Rewrite ``path`` atomically (a reader never sees half a file)."""
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    part.write_text(json.dumps({k: list(v) for k, v in entries.items()}, indent=0,
                               sort_keys=True))
    part.replace(path)
