"""Time the divergence lab's fits: every preset, all its divergences together, median of 3.

Run with ``python bench/toy_speed.py``. Prints, per preset, the wall time of one fit (median of
3, after one warm-up fit), the CPU time of this process over that fit (less sensitive to other
programs sharing the machine), and the ratio to the 2-second target (< 1 is within target).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sinkd.lab import toy  # noqa: E402
from sinkd.lab.divergence_lab_spec import SPEC  # noqa: E402

TARGET_S = 2.0
REPEATS = 3


def time_preset(values: dict) -> tuple[float, float, int]:
    """Median wall seconds, median CPU seconds of ``REPEATS`` fits, and the number of fits."""
    walls, cpus = [], []
    for _ in range(REPEATS):
        c0, w0 = time.process_time(), time.perf_counter()
        fit = toy.fit_view(values)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), len(fit.names)


def main() -> int:
    toy.fit_view(dict(SPEC.defaults, steps=5))  # warm-up: first-call imports and allocations
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"divergence lab fits, median of {REPEATS}; target {TARGET_S:.1f} s per preset "
          f"(all divergences); {os.cpu_count()} CPUs, load average {load:.2f} at start")
    print(f"{'preset':42s} {'fits':>4s} {'steps':>5s} {'wall s':>7s} {'cpu s':>6s} "
          f"{'wall/target':>11s}")
    worst = 0.0
    for name, preset in SPEC.presets.items():
        values = preset.values
        wall, cpu, n_fits = time_preset(values)
        worst = max(worst, wall / TARGET_S)
        print(f"{name:42s} {n_fits:4d} {values['steps']:5d} {wall:7.2f} {cpu:6.2f} "
              f"{wall / TARGET_S:11.2f}")
    print(f"worst wall/target: {worst:.2f} ({'within' if worst <= 1 else 'over'} target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
