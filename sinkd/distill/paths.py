"""Output and cache paths checked before any model or data loads.

A run writes its record (``out``, with its resume state beside it) and the teacher cache
(``cache_dir``) only after minutes of teacher fine-tuning; a path that cannot be written would
then fail with a raw OSError and the work lost. :func:`check_output_paths` checks them all first:
each folder is created (as the run would) and a probe file written in it and removed, so the
answer is the file system's own, whoever runs it (root included) and whatever the mount.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from sinkd.distill.config import DistillConfig
from sinkd.distill.models import default_cache_dir

CACHE_FOLDERS = ("teachers", "logits")  # what sinkd.distill.models.CacheDir writes in cache_dir


def check_output_paths(config: DistillConfig, out_dir: str | os.PathLike | None = None) -> None:
    """Check that every path ``config`` writes can be written, before any work starts.

    Parameters
    ----------
    config : DistillConfig
        ``config.out`` (the record file, if any) must be a regular file or absent, in a folder
        that can be created and written; ``config.cache_dir`` (None: $SINKD_CACHE or
        ~/.cache/sinkd) must be a folder that can be created and written, and so must its
        ``teachers`` and ``logits`` folders where they exist.
    out_dir : path-like, optional
        A folder of records (the command line's ``--out DIR``), checked the same way.

    Raises
    ------
    ValueError
        One line naming the argument (``--out``, ``out`` or ``cache_dir``), the path and why.
    """
    if out_dir is not None:
        check_writable_dir("--out", out_dir)
    if config.out is not None:
        check_writable_file("out", config.out)
    name = "cache_dir" if config.cache_dir else "cache_dir ($SINKD_CACHE or ~/.cache/sinkd)"
    root = Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()
    check_writable_dir(name, root)
    for folder in CACHE_FOLDERS:  # made by the run if absent (the root takes new folders)
        if (root / folder).exists() or (root / folder).is_symlink():
            check_writable_dir(name, root / folder)


def check_writable_dir(name: str, path: str | os.PathLike, *,
                       given: str | os.PathLike | None = None) -> Path:
    """``path`` as a folder that exists (created if needed) and takes new files; return it.

    Raises ValueError naming ``name`` and the path (``given``, if the argument's value was
    another path, such as a file in this folder): a part of it is a file, it cannot be created,
    or a file cannot be written in it.
    """
    folder = Path(path).expanduser()
    shown = repr(str(given if given is not None else folder))
    for part in (folder, *folder.parents):
        if part.exists() or part.is_symlink():
            if not part.is_dir():
                where = ("is" if given is None and part == folder
                         else f"is under {str(part)!r}, which is")
                raise ValueError(f"{name} {shown} {where} not a folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".sinkd-write-test-")
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(probe)
    except OSError as e:
        where = "" if given is None else f" (in {str(folder)!r})"
        raise ValueError(f"{name} {shown} cannot be created or written{where}: "
                         f"{e.strerror or type(e).__name__}") from None
    return folder


def check_writable_file(name: str, path: str | os.PathLike) -> Path:
    """``path`` as a file that can be (over)written atomically: a regular file or nothing, in a
    folder :func:`check_writable_dir` accepts; return it."""
    file = Path(path).expanduser()
    if file.exists() and not file.is_file():
        kind = "a folder" if file.is_dir() else "not a regular file"
        raise ValueError(f"{name} {str(file)!r} is {kind}: it must be the path of a JSON file")
    if file.is_file() and not os.access(file, os.W_OK):
        raise ValueError(f"{name} {str(file)!r} is a file that cannot be written")
    check_writable_dir(name, file.parent, given=path)
    return file
