"""Time the toys of SinKD Lab against the targets of the divergence-lab issue.

Run with ``python -m bench.toy_speed`` (or ``python bench/toy_speed.py``; ``--skip-robustness``
for the preset switches only). Per preset of the divergence lab it prints:

- **preset switch**: what the page computes when a preset is chosen, at its default bins and
  steps: the fit of every divergence (:func:`sinkd.lab.toy.fit_view`), its metrics and outcome
  sentences (median of 3 after a warm-up); target 1 s;
- **robustness**: :func:`sinkd.lab.robustness.robustness` over 8 seeds x 3 step budgets x 2
  learning rates (48 runs of the claimed divergences, one stacked fit), timed once; target 10 s.

Each row gives the wall time, this process's CPU time over it (less sensitive to other
programs on the machine) and the ratio time / target (<= 1: within the target). Other toys
add their rows to :data:`ROWS` (label, function of the preset name, presets, target seconds,
repeats).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a plain script

from sinkd.lab import batchwise, robustness, toy, toy_metrics  # noqa: E402
from sinkd.lab.batchwise_spec import SPEC as BATCHWISE  # noqa: E402
from sinkd.lab.divergence_lab_spec import SPEC  # noqa: E402

SWITCH_TARGET_S = 1.0
ROBUSTNESS_TARGET_S = 10.0


def preset_switch(name: str) -> object:
    """The divergence lab's computation on a preset switch: fit, metrics, outcome sentences."""
    fit = toy.fit_view(SPEC.presets[name].values)
    metrics = toy_metrics.compute_metrics(fit)
    return toy_metrics.metrics_frame(metrics), toy_metrics.outcomes(metrics)


def preset_robustness(name: str) -> object:
    return robustness.robustness(name, seeds=8)


BATCHWISE_TARGET_S = 2.0  # a batch-wise toy preset: six students, their metrics and text


def batchwise_switch(name: str) -> object:
    """The batch-wise page's computation on a preset switch: the fit of its six students (with
    their measurements: exact OT by POT per student), the table and the outcome sentences."""
    fit = batchwise.fit_view(BATCHWISE.presets[name].values)
    return batchwise.metrics_frame(fit), batchwise.outcomes(fit)


# (label, function of a preset name, the presets, target seconds, timed repeats)
ROWS: list[tuple[str, Callable[[str], object], Iterable[str], float, int]] = [
    ("lab preset switch", preset_switch, SPEC.presets, SWITCH_TARGET_S, 3),
    ("lab robustness (48 runs)", preset_robustness, SPEC.presets, ROBUSTNESS_TARGET_S, 1),
    ("batch-wise preset switch", lambda name: batchwise_switch(name), BATCHWISE.presets,
     BATCHWISE_TARGET_S, 3),
    ("batch-wise robustness", lambda name: batchwise.robustness(name, seeds=8),
     BATCHWISE.presets, ROBUSTNESS_TARGET_S, 1),
]


def time_call(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``repeats`` calls (after one warm-up when repeats > 1)."""
    if repeats > 1:
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.toy_speed", description=__doc__
                                     .split("\n")[0])
    parser.add_argument("--skip-robustness", action="store_true",
                        help="only the rows of one run each (no robustness grids)")
    args = parser.parse_args(argv)
    toy.fit_view(dict(SPEC.defaults, steps=5))  # warm-up: first-call imports and allocations
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"SinKD Lab toys: wall and CPU seconds, ratio = wall / target (<= 1: within target); "
          f"{os.cpu_count()} CPUs, load average {load:.2f} at start")
    print(f"{'row':26s} {'preset':42s} {'wall s':>7s} {'cpu s':>6s} {'target':>6s} "
          f"{'ratio':>6s}")
    worst: dict[str, float] = {}
    for label, fn, presets, target, repeats in ROWS:
        if args.skip_robustness and "robustness" in label:
            continue
        for name in presets:
            wall, cpu = time_call(lambda fn=fn, name=name: fn(name), repeats)
            worst[label] = max(worst.get(label, 0.0), wall / target)
            print(f"{label:26s} {name[:42]:42s} {wall:7.2f} {cpu:6.2f} {target:6.1f} "
                  f"{wall / target:6.2f}", flush=True)
    for label, ratio in worst.items():
        print(f"worst {label}: {ratio:.2f} of its target "
              f"({'within' if ratio <= 1 else 'over'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
