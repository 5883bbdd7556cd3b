"""Command line of the suite: ``python -m bench [--quick] [--out FILE.json] [--threads N]
[--runs N] [--section S] [--strict]``.
"""

from __future__ import annotations

import argparse
import sys

from bench.report import format_spread, format_table, save_json
from bench.suite import SECTIONS, run_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark SinKD Lab's Sinkhorn solver and SinKD term against POT and a "
        "BERT training step (CPU). Ratios are peer time / our time: > 1 means ours is faster.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="a small subset that finishes in under 30 s")
    parser.add_argument("--out", metavar="FILE.json", help="save the results as JSON")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch (and numpy BLAS) threads (default 2)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds per timed cell (default 0.3, 0.08 with --quick)")
    parser.add_argument("--section", action="append", choices=list(SECTIONS),
                        help="run only this section (repeatable)")
    parser.add_argument("--runs", type=int, default=1,
                        help="run the suite this many times and add the spread of each ratio "
                        "(the table shown is the last run's; default 1)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 if a target failed in any run (default: a report, exit 0)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.budget is not None and args.budget <= 0:
        parser.error("--budget must be > 0")
    if args.runs < 1:
        parser.error("--runs must be >= 1")

    def progress(message: str) -> None:
        print(f"  ... {message}", file=sys.stderr, flush=True)

    runs = []
    for k in range(args.runs):
        if args.runs > 1:
            progress(f"run {k + 1} of {args.runs}")
        runs.append(run_all(quick=args.quick, threads=args.threads, budget=args.budget,
                            sections=args.section, progress=progress))
    results = runs[-1]
    print(format_table(results))
    if args.runs > 1:
        print(format_spread(runs))
    if args.out:
        save_json(results, args.out)
        print(f"\nresults saved to {args.out}")
    return exit_code(runs, args.strict)


def exit_code(runs: list[list[dict]], strict: bool) -> int:
    """0, or 1 when ``strict`` and a targeted comparison failed in any run (said on stderr)."""
    failed = sum(r["status"] == "FAIL" for results in runs for r in results)
    if strict and failed:
        print(f"--strict: {failed} target(s) failed over {len(runs)} run(s)", file=sys.stderr)
        return 1
    return 0
