"""Run a page's heavy pure computation in a worker process, off the app server's GIL.

An app server runs every visitor's page as a thread of one Python process, so a computation
that holds the GIL (the divergence lab's refit: ~0.34 s of small torch operations) stalls every
other visitor's page meanwhile and the server uses about one core however many it has.
:func:`run_apart` runs such a function in one worker process instead (started on first use,
shared by every caller of the process) and waits for its result; where no worker can start or
it dies, the call runs here. Measured with 8 sessions on a 2-core machine: the server's p90
answer went from about 3 s to under 1 s, for a worker of ~280 MB private memory (its own
torch; ``bench.server_load``, docs/benchmarks.md).

>>> run_apart(divmod, 7, 2)
(3, 1)
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_pool: concurrent.futures.ProcessPoolExecutor | None = None


def run_apart(fn: Callable[..., T], /, *args: Any) -> T:
    """``fn(*args)`` computed in the worker process; its exceptions are raised here as they
    were raised there (a ValueError naming a bad argument stays one).

    ``fn`` must be a module-level function and ``args`` and the result picklable. One worker:
    calls from several threads queue there. If the worker cannot start or dies (killed, out of
    memory) the call runs in this process, and the next call starts a new worker.
    """
    global _pool
    with _lock:
        if _pool is None:
            # forkserver: a fresh process, not a fork of a server with threads and torch in it
            _pool = concurrent.futures.ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("forkserver"))
        pool = _pool
    try:
        return pool.submit(fn, *args).result()
    except (BrokenProcessPool, OSError):
        with _lock:
            if _pool is pool:
                _pool = None
        return fn(*args)

