"""Time one cold render of the Transport plans page's numbers and figures (no Streamlit cache).

Usage: ``python bench/plans_speed.py [--n 64] [--classes 3] [--iters 100] [--repeats 7]
[--threads K]``. Prints the median wall milliseconds of the computation and figure building
(``plan_history``, ``dtype_hazards``, ``class_level`` and the four figures of the page), then
the same plus the JSON serialisation that ``st.plotly_chart`` performs, and the ratio of each to
the page's 300 ms target (< 1 means within the target); the process CPU time beside it shows
how much of the wall time was spent waiting for a busy machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a plain script

import torch  # noqa: E402

from sinkd.lab import plan_figures as figs  # noqa: E402
from sinkd.lab import plans  # noqa: E402
from sinkd.lab.plan_numerics import dtype_hazards  # noqa: E402

TARGET_MS = 300.0


def render(n: int, n_classes: int, n_iters: int, serialise: bool) -> None:
    """What a cold page run computes for the default view at this size."""
    teacher, student = plans.batch_for("aligned", n, n_classes, 0.5, 0)
    history = plans.plan_history(teacher, student, reg=0.1, n_iters=n_iters, method="kernel",
                                 dtype="float64", temperature=2.0)
    hazards = dtype_hazards(teacher, student, reg=0.1, n_iters=n_iters, temperature=2.0)
    level = plans.class_level(history)
    figures = [figs.plan_figure(history, badge=figs.hazard_badge(hazards[0])),
               figs.convergence_figure(history), figs.class_plan_figure(level, 0)]
    if n_classes in (2, 3):
        figures.append(figs.simplex_figure(history))
    if serialise:
        for fig in figures:
            fig.to_json()


def median_ms(repeats: int, **kwargs) -> tuple[float, float]:
    """Median wall and CPU milliseconds of ``render(**kwargs)`` (CPU < wall: a busy machine)."""
    render(**kwargs)  # warm-up: imports, allocator, plotly's validators
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        render(**kwargs)
        wall.append(1e3 * (time.perf_counter() - start))
        cpu.append(1e3 * (time.process_time() - start_cpu))
    return statistics.median(wall), statistics.median(cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as is)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    size = dict(n=args.n, n_classes=args.classes, n_iters=args.iters)
    print(f"Transport plans page, cold render, N = {args.n}, C = {args.classes}, T = {args.iters}, "
          f"torch threads = {torch.get_num_threads()}, median of {args.repeats}")
    for label, serialise in (("compute + figures", False), ("compute + figures + JSON", True)):
        ms, cpu = median_ms(args.repeats, serialise=serialise, **size)
        print(f"  {label:<26} {ms:8.1f} ms   ratio to the {TARGET_MS:.0f} ms target: "
              f"{ms / TARGET_MS:.2f}   (CPU time {cpu:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
