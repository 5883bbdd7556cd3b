"""Timing and machine description for the benchmark suite.

One timer for every cell: a warm-up call, then repeats until the cell has used about ``budget``
seconds, and the median. Slow calls (> ``single_above`` s, default 0.5) are timed once: the
warm-up itself is the measurement, so that the large POT log-domain cases stay affordable.

:func:`measure_many` times the implementations of one case *interleaved*, in rounds (A, B, C,
A, B, C, ...), so that a burst of load from another process hits all of them alike and the
ratios between them stay meaningful on a shared machine.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    median: float  # seconds per call
    best: float  # fastest call
    repeats: int  # calls timed (the warm-up is counted only when it is the measurement)

    def as_dict(self) -> dict:
        return {"median_s": self.median, "min_s": self.best, "repeats": self.repeats}


def _once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(
    fn: Callable[[], object], budget: float = 0.3, single_above: float = 0.5, max_repeats: int = 500
) -> Timing:
    """Median wall time of ``fn()`` over an adaptive number of repeats (~``budget`` seconds)."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        first = _once(fn)  # warm-up: first-call costs (allocations, backend set-up, lazy imports)
        if first >= single_above:
            return Timing(first, first, 1)
        samples = [_once(fn)]
        extra = int(budget / max(samples[0], 1e-7))
        extra = min(max_repeats, max(extra, 2 if samples[0] < budget / 2 else 1))
        samples += [_once(fn) for _ in range(extra)]
    finally:
        if enabled:
            gc.enable()
    return Timing(statistics.median(samples), min(samples), len(samples))


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine from /proc/stat, None where unavailable."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


class CpuMonitor:
    """How busy the machine was while the suite ran, and how much of that was other processes.

    Other processes on a 2-core machine make multi-threaded timings noisy (a thread that loses
    its core stalls the others at the next barrier), so the report states it.
    """

    def __init__(self) -> None:
        self.start = _cpu_jiffies()
        self.own = os.times()
        self.wall = time.perf_counter()

    def result(self) -> dict:
        end, own = _cpu_jiffies(), os.times()
        wall = time.perf_counter() - self.wall
        if self.start is None or end is None or end[1] <= self.start[1] or wall <= 0:
            return {}
        cores = os.cpu_count() or 1
        busy_cores = cores * (end[0] - self.start[0]) / (end[1] - self.start[1])
        own_cores = (own.user - self.own.user + own.system - self.own.system) / wall
        return {
            "busy_cores": round(busy_cores, 2),
            "own_cores": round(own_cores, 2),
            "other_cores": round(max(busy_cores - own_cores, 0.0), 2),
        }


def measure_many(
    fns: dict[str, Callable[[], object]],
    budget: float = 0.3,
    single_above: float = 0.5,
    rounds: int = 5,
    max_repeats: int = 500,
    outputs: dict | None = None,
) -> dict[str, Timing]:
    """Like :func:`measure` for several implementations, their repeats interleaved in rounds.

    ``outputs``, when given, receives what each implementation's warm-up call returned.
    """
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        samples: dict[str, list[float]] = {}
        calls: dict[str, int] = {}
        for name, fn in fns.items():
            start = time.perf_counter()
            out = fn()  # warm-up
            first = time.perf_counter() - start
            if outputs is not None:
                outputs[name] = out
            del out
            if first >= single_above:
                samples[name] = [first]  # timed once: the warm-up is the measurement
                continue
            samples[name] = [_once(fn)]
            calls[name] = min(max_repeats, max(2, int(budget / max(samples[name][0], 1e-7))))
        for r in range(rounds):
            for name, total in calls.items():
                fn = fns[name]
                for _ in range(total // rounds + (1 if r < total % rounds else 0)):
                    samples[name].append(_once(fn))
    finally:
        if enabled:
            gc.enable()
    return {k: Timing(statistics.median(v), min(v), len(v)) for k, v in samples.items()}


def cpu_model() -> str:
    """The CPU's model name from lscpu (platform.processor() is often empty on Linux)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        for line in out.splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine() or "unknown"


_BLAS_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)


def set_numpy_blas_threads(n: int) -> str:
    """Limit the OpenBLAS bundled with numpy to ``n`` threads (POT's numpy path uses it).

    Done through the loaded library, as threadpoolctl does, so that it works after numpy was
    imported. Returns a short description of what happened, for the report's header.
    """
    import numpy as np  # noqa: F401  (loads the BLAS library)

    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        paths = set()
    for path in sorted(p for p in paths if p.startswith("/")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _BLAS_SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(ctypes.c_int(n))
                return f"OpenBLAS set to {n}"
    return "not set (no OpenBLAS found; numpy uses its default)"


def environment(threads: int, blas: str | None = None) -> dict:
    """Versions, CPU and load, for the header of the report."""
    import numpy as np
    import torch

    versions = {}
    for name in ("ot", "transformers"):  # absent on a bare GPU image (bench/gpu_check.sh)
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            versions[name] = "not installed"
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {
        "torch": torch.__version__,
        "pot": versions["ot"],
        "numpy": np.__version__,
        "transformers": versions["transformers"],
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "processor": platform.processor(),
        "cores": os.cpu_count(),
        "threads": threads,
        "numpy_blas_threads": blas or "default",
        "load_avg_1min": round(load[0], 2),
    }
