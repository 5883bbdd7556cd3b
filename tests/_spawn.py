"""Spawning worker processes from tests, whatever ``__main__`` is at the time.

A spawned child first re-imports the parent's ``__main__`` from its file. Under pytest that is
pytest itself, but AppTest runs each page as a temporary script that it leaves as
``__main__``: a child spawned after an app test would run that script and fail. The workers
need nothing from ``__main__`` (they are importable test functions), so a bare one stands in
while the processes start.
"""

import sys
import types

import torch.multiprocessing as mp


def spawn(fn, args: tuple, nprocs: int) -> mp.ProcessContext:
    """``torch.multiprocessing.spawn(fn, args, nprocs, join=False)`` with a bare ``__main__``."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        return mp.spawn(fn, args=args, nprocs=nprocs, join=False)
    finally:
        sys.modules["__main__"] = main
