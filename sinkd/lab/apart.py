"""Run a page's heavy pure computation in a worker process, off the app server's GIL.

An app server runs every visitor's page as a thread of one Python process, so a computation
that holds the GIL (the divergence lab's refit: ~0.34 s of small torch operations) stalls every
other visitor's page meanwhile and the server uses about one core however many it has.
:func:`run_apart` runs such a function in one worker process instead (``python -m
sinkd.lab.apart``, started on first use, shared by every caller of the process) and waits for
its result; where the worker cannot start or dies, the call runs here. Measured with 8 sessions
on a 2-core machine: the server's p90 answer went from about 3 s to under 1 s, for a worker of
~210 MB private memory (its own torch; ``bench.server_load``, docs/benchmarks.md).

Not :mod:`multiprocessing`: its workers import the parent's ``__main__`` again, and in a
Streamlit server that is the page script being run (the worker would run the page).

>>> run_apart(divmod, 7, 2)
(3, 1)
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()  # one worker, one call at a time
_worker: subprocess.Popen | None = None


def _start() -> subprocess.Popen:
    """A fresh worker: this interpreter, this package first on its path."""
    package_root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    return subprocess.Popen([sys.executable, "-m", "sinkd.lab.apart"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": path})


def run_apart(fn: Callable[..., T], /, *args: Any) -> T:
    """``fn(*args)`` computed in the worker process; its exceptions are raised here as they
    were raised there (a ValueError naming a bad argument stays one).

    ``fn`` must be a module-level function and ``args`` and the result picklable. Calls from
    several threads queue for the one worker. If the worker cannot start or dies (killed, out
    of memory) the call runs in this process, and the next call starts a new worker.
    """
    global _worker
    with _lock:
        try:
            if _worker is None or _worker.poll() is not None:
                _worker = _start()
            pickle.dump((fn, args), _worker.stdin)
            _worker.stdin.flush()
            ok, value = pickle.load(_worker.stdout)
        except (OSError, EOFError, pickle.PickleError):
            if _worker is not None:
                _worker.kill()
                _worker.wait()
            _worker, ok = None, None
    if ok is None:
        return fn(*args)
    if not ok:
        raise value
    return value


def _serve() -> None:
    """The worker's loop: read (fn, args), write (True, result) or (False, exception)."""
    # Ctrl-C in the server's terminal reaches its whole process group: the server handles
    # it, and the worker ends when the server closes its pipe (no traceback of its own).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a print in fn must not write into the replies
    while True:
        try:
            fn, args = pickle.load(requests)
        except EOFError:  # the server closed the pipe (it ended): so does the worker
            return
        try:
            reply = pickle.dumps((True, fn(*args)))
        except Exception as err:  # raised again in the server, as it was raised here
            try:
                reply = pickle.dumps((False, err))
            except Exception:
                reply = pickle.dumps((False, RuntimeError(f"{type(err).__name__}: {err}")))
        replies.write(reply)
        replies.flush()


if __name__ == "__main__":
    _serve()
