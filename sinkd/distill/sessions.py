"""What an app server shares between its visitors: a board of distillation jobs, each owned by
the visitor that started it, and the tables visitors upload, stored by content hash.

A :class:`JobBoard` holds at most ``max_jobs`` running :class:`~sinkd.distill.jobs.Job` s of
one process. Only a job's owner (an opaque id the app keeps per browser and never
shows) can stop it, and only the owner can resume the runs its jobs wrote; everyone sees what
runs (:meth:`JobBoard.jobs`: recipe, seed, status, progress, no owner ids). A full board refuses
a new job with :class:`BusyError`. :func:`browser_owner` makes that id from the browser's
anti-forgery cookie, so that a reloaded tab, or a second tab of the same browser, keeps its
job's controls. :func:`store_upload` writes an uploaded table under the
cache, named by the hash of its bytes, so a run's config points to a file whose path no
visitor chose.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sinkd.distill.config import DistillConfig
from sinkd.distill.jobs import Job, list_records, runs_dir
from sinkd.distill.models import default_cache_dir
from sinkd.distill.owners import Owners, record_key
from sinkd.validation import check_choice, check_int

# One running job per process: a job trains with every core (Job's ``threads``) and torch's
# thread count is one setting per process, so a second job would halve both jobs' speed and
# reset the other's threads when it ends; on a GPU both students would also share its memory.
MAX_JOBS = 1
MAX_KEPT = 64  # finished jobs kept for their owners' pages; older ones are dropped first
# in the runs folder: which browser started each saved run (JSON; not *.json, which are records)
OWNERS_FILE = ".owners"
# Transfer codes (JobBoard.transfer_code): no 0/O, 1/I/L, so a code read aloud or off a
# projector is typed right.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
UPLOAD_SUFFIXES = (".csv", ".tsv")
# A classroom's tables are far smaller; this bounds what one visitor makes the server store and
# parse (the page's uploader and `--server.maxUploadSize` in the Makefile say the same).
MAX_UPLOAD_BYTES = 20 * 2**20
# Every visitor's uploads together: the disk a server gives them (a hostile visitor could
# otherwise fill it with distinct files); the least recently used go first.
MAX_UPLOADS_TOTAL = 25 * MAX_UPLOAD_BYTES


class BusyError(RuntimeError):
    """The board already runs its maximum of jobs, or the owner's own job still runs."""


def _owner(owner: Any) -> str:
    if not isinstance(owner, str) or not owner.strip():
        raise ValueError(f"owner must be a non-empty string (a session's id), got {owner!r}")
    return owner


def browser_owner(xsrf_cookie: Any) -> str | None:
    """The owner id of a browser: a hash of the secret token in its XSRF cookie, or None.

    A Streamlit server gives each browser a random token in its ``_streamlit_xsrf`` cookie
    (Tornado's version 2 format, ``2|<mask>|<token XOR mask>|<time>``, the mask new on every
    page load) and sends it with every session's first request; the token is the same for
    every tab and reload of that browser and unknown to any other visitor (links do not carry
    cookies). The id is the SHA-256 of the unmasked token, so that the secret itself is never
    kept. None when the cookie is absent (XSRF protection off) or not of that format: the app
    then falls back to one id per session.

    >>> token, masks = bytes(range(16)), (bytes.fromhex("01020304"), bytes.fromhex("ff00aa55"))
    >>> cookies = [f"2|{m.hex()}|{bytes(t ^ m[i % 4] for i, t in enumerate(token)).hex()}|17"
    ...            for m in masks]
    >>> owner = browser_owner(cookies[0])
    >>> owner == browser_owner(cookies[1]) == hashlib.sha256(token).hexdigest()
    True
    >>> browser_owner(None), browser_owner("2|zz|00|1"), browser_owner("1|abc")
    (None, None, None)
    """
    if not isinstance(xsrf_cookie, str):
        return None
    parts = xsrf_cookie.strip('"').split("|")
    if len(parts) != 4 or parts[0] != "2":
        return None
    try:
        mask, masked = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
    except ValueError:
        return None
    if len(mask) != 4 or len(masked) < 16:  # a 4-byte mask over a token of 16 bytes or more
        return None
    token = bytes(b ^ mask[i % 4] for i, b in enumerate(masked))
    return hashlib.sha256(token).hexdigest()


class JobBoard:
    """The distillation jobs of one process, each owned by the visitor that started it.

    Parameters
    ----------
    max_jobs : int
        How many jobs may run at once, in [1, 64] (default :data:`MAX_JOBS`).
    owners_file : path-like, optional
        A JSON file mapping each record a job wrote to its owner (:class:`Owners`: read again
        whenever it changed, merged at each start under a file lock): a server restarted after
        a crash still lets each browser resume its own crashed or stopped runs (and no one
        else's), and two servers sharing one cache folder keep each other's entries. A browser
        that lost its cookie gets its runs back with :meth:`transfer_code` and :meth:`claim`.
        None keeps it in memory.

    Examples
    --------
    >>> board = JobBoard()
    >>> job = board.start("alice", [DistillConfig(steps=0)])  # fails at once: steps < 1
    >>> job.wait(60), board.stop("bob"), board.job("bob") is None
    (True, False, True)
    >>> [(r["yours"], r["recipe"], r["status"]) for r in board.jobs("alice")]
    [(True, 'sinkd', 'failed')]
    """

    def __init__(self, max_jobs: int = MAX_JOBS, owners_file: str | Path | None = None) -> None:
        self.max_jobs = check_int("max_jobs", max_jobs, low=1, high=64)
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}  # owner -> its latest job (insertion order: oldest first)
        self._owners = Owners(owners_file)

    def start(self, owner: str, configs: Iterable[DistillConfig], *, threads: int | None = None,
              resume_from: Sequence[str | Path | None] | None = None) -> Job:
        """Start a :class:`Job` of ``configs`` for ``owner``; return it.

        Raises :class:`BusyError` while ``owner``'s previous job runs or the board is full, and
        PermissionError when ``resume_from`` names a record that ``owner``'s jobs did not write.
        """
        owner = _owner(owner)
        configs = list(configs)
        with self._lock:
            mine = self._jobs.get(owner)
            if mine is not None and mine.alive:
                raise BusyError("this session's job is still running: stop it or wait until it "
                                "ends before starting another")
            running = self.running()
            if running >= self.max_jobs:
                raise BusyError(f"the machine is busy: {running} of its {self.max_jobs} job "
                                f"slot(s) in use by other sessions; start again when one ends")
            self._owners.refresh()
            foreign = [str(p) for p in resume_from or [] if p is not None
                       and self._owners.owner_at(p) != owner]
            if foreign:
                raise PermissionError(f"resume_from names runs this session did not start: "
                                      f"{[Path(p).name for p in foreign]}")
            job = Job(configs, threads=threads, resume_from=resume_from)
            self._jobs.pop(owner, None)  # re-inserted last: the order is the start order
            self._jobs[owner] = job.start()
            new = {record_key(c.out): (owner, time.time()) for c in configs if c.out is not None}
            self._owners.update(lambda entries: {**entries, **new})
            self._forget_old()
        return job

    def transfer_code(self, owner: str) -> str:
        """``owner``'s transfer code, ``XXXX-XXXX``: entered in another browser
        (:meth:`claim`), it moves ``owner``'s runs there. A keyed hash of the owner id (the key
        kept beside the owners file, so a code outlives a restart); it reveals nothing of the
        id, and guessing one is one chance in 31^8 (~10^12)."""
        digest = hmac.new(self._owners.code_key(), _owner(owner).encode(),
                          hashlib.sha256).digest()
        code = "".join(CODE_ALPHABET[b % len(CODE_ALPHABET)] for b in digest[:8])
        return f"{code[:4]}-{code[4:]}"

    def claim(self, owner: str, code: str) -> int:
        """Move to ``owner`` every run of the browser whose :meth:`transfer_code` is ``code``:
        its saved runs (which ``owner`` may then resume) and its running job (which ``owner``
        may then stop, unless ``owner`` runs one itself). Return how many saved runs moved (0:
        no browser with runs has that code). Raises ValueError naming ``code`` when it is not
        8 letters or digits of the code alphabet (dashes and spaces aside, any case)."""
        owner = _owner(owner)
        text = code.upper().replace("-", "").replace(" ", "") if isinstance(code, str) else ""
        if len(text) != 8 or any(c not in CODE_ALPHABET for c in text):
            raise ValueError(f"code must be the 8 letters and digits another browser shows "
                             f"(as ABCD-EFGH), got {str(code)[:40]!r}")
        wanted = f"{text[:4]}-{text[4:]}"
        with self._lock:
            self._owners.refresh()
            others = {o for o, _ in self._owners.entries.values()} | set(self._jobs)
            source = next((o for o in sorted(others - {owner})
                           if hmac.compare_digest(self.transfer_code(o), wanted)), None)
            if source is None:
                return 0
            moved = sum(o == source and Path(k).exists()  # saved; queued ones move too
                        for k, (o, _) in self._owners.entries.items())
            self._owners.update(lambda entries: {
                k: ((owner, t) if o == source else (o, t)) for k, (o, t) in entries.items()})
            job, mine = self._jobs.get(source), self._jobs.get(owner)
            if job is not None and (mine is None or not mine.alive):
                self._jobs[owner] = self._jobs.pop(source)
            return moved

    def _forget_old(self) -> None:
        """Drop the oldest finished jobs beyond :data:`MAX_KEPT` (their records stay on disk)."""
        finished = [o for o, j in self._jobs.items() if not j.alive]
        for owner in finished[:max(0, len(self._jobs) - MAX_KEPT)]:
            del self._jobs[owner]

    def stop(self, owner: str) -> bool:
        """Ask ``owner``'s running job to stop after its step; False if it has none running."""
        job = self._jobs.get(_owner(owner))
        if job is None or not job.alive:
            return False
        job.stop()
        return True

    def job(self, owner: str) -> Job | None:
        """``owner``'s latest job (running or ended), or None."""
        return self._jobs.get(_owner(owner))

    def owns(self, owner: str, path: str | Path) -> bool:
        """Whether one of ``owner``'s jobs wrote the record at ``path`` (so it may resume it)."""
        self._owners.refresh()
        return self._owners.owner_at(path) == _owner(owner)

    def running(self) -> int:
        """How many jobs are running now."""
        return sum(job.alive for job in list(self._jobs.values()))

    @property
    def full(self) -> bool:
        """True while :meth:`running` is ``max_jobs``: a new job would be refused."""
        return self.running() >= self.max_jobs

    def jobs(self, owner: str | None = None) -> list[dict[str, Any]]:
        """One row per run of every running job, and of ``owner``'s job even when it ended:
        ``yours`` (whether ``owner`` started it), recipe, seed, status, step and total steps.
        Rows never carry an owner's id."""
        rows = []
        for who, job in list(self._jobs.items()):
            if not job.alive and who != owner:
                continue
            for run in job.snapshot():
                rows.append(dict(yours=who == owner, recipe=run["recipe"], seed=run["seed"],
                                 status=run["status"],
                                 step=run["steps"][-1]["step"] if run["steps"] else 0,
                                 total=run["total"]))
        return rows

    def stop_all(self, timeout: float | None = None) -> bool:
        """Stop every job and wait for them (a server's shutdown, tests); True if all ended."""
        jobs = list(self._jobs.values())
        for job in jobs:
            job.stop()
        return all(job.wait(timeout) for job in jobs)


@functools.cache
def shared_board() -> JobBoard:
    """The board of this process: every page and session of an app server shares it; who owns
    which saved run is kept beside the runs (``<runs>/.owners``) across restarts."""
    return JobBoard(owners_file=runs_dir() / OWNERS_FILE)


def store_upload(data: bytes, name: str, folder: str | Path | None = None, *,
                 keep: Iterable[str | Path] | None = None) -> Path:
    """Write an uploaded table to ``<folder>/<sha256 of data>.<csv|tsv>``; return its path.

    The path comes from the bytes' hash and the suffix of ``name`` (which must be ``.csv`` or
    ``.tsv``), never from ``name`` itself; equal bytes reuse one file (and mark it used now).
    ``folder`` defaults to ``<sinkd cache>/uploads``. The folder's tables stay under
    :data:`MAX_UPLOADS_TOTAL` bytes: to make room, the least recently used are removed, except
    those in ``keep`` (default: the tables named by the saved runs' records in the runs folder
    beside ``folder``, ``<folder>/../runs``, so that a stopped run can resume). Raises
    ValueError for empty data, data over :data:`MAX_UPLOAD_BYTES`, another suffix, or no room
    left once all else is removed.

    >>> import tempfile
    >>> folder, data = tempfile.mkdtemp(), b"text,label\\n"
    >>> path = store_upload(data, "../../etc/x.CSV", folder)
    >>> str(path.parent) == folder, path.name == hashlib.sha256(data).hexdigest()[:32] + ".csv"
    (True, True)
    """
    if not isinstance(data, bytes) or not data:
        raise ValueError("data must be the non-empty bytes of a .csv or .tsv file")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ValueError(f"the uploaded file is {len(data) / 2**20:.1f} MB; the limit is "
                         f"{MAX_UPLOAD_BYTES / 2**20:.0f} MB")
    suffix = check_choice("name's suffix", Path(str(name)).suffix.lower(), UPLOAD_SUFFIXES)
    folder = Path(folder) if folder is not None else default_cache_dir() / "uploads"
    path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}{suffix}"
    if path.is_file():
        os.utime(path)  # used again: the last to be removed for room
        return path
    folder.mkdir(parents=True, exist_ok=True)
    if keep is None:
        keep = [r.config.get("data") for _, r in list_records(runs_dir(folder.parent))]
    _make_room(folder, len(data), {Path(p).resolve() for p in keep if p})
    part = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    part.write_bytes(data)
    part.replace(path)  # atomic: a reader never sees half a file
    return path


def _make_room(folder: Path, size: int, keep: set[Path]) -> None:
    """Remove ``folder``'s least recently used tables (not in ``keep``) until ``size`` more
    bytes fit under :data:`MAX_UPLOADS_TOTAL`; ValueError if they cannot."""
    tables = sorted((p for p in folder.iterdir() if p.suffix in UPLOAD_SUFFIXES),
                    key=lambda p: p.stat().st_mtime)
    total = sum(p.stat().st_size for p in tables)
    for table in tables:
        if total + size <= MAX_UPLOADS_TOTAL:
            break
        if table.resolve() not in keep:
            total -= table.stat().st_size
            table.unlink(missing_ok=True)
    if total + size > MAX_UPLOADS_TOTAL:
        raise ValueError(f"the server's space for uploads ({MAX_UPLOADS_TOTAL / 2**20:.0f} MB) "
                         "is taken by tables that saved runs use; ask its operator to remove "
                         "old runs")
