"""Command line: ``python -m sinkd {verify,distill,compare} ...``.

``verify`` checks the Sinkhorn solver against POT (:mod:`sinkd.lab.verify`); ``distill`` and
``compare`` come from :mod:`sinkd.distill.cli`. Benchmarks are not part of the package: they are
``python -m bench`` in a repository checkout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from sinkd.distill.cli import add_subcommands


def _verify(args: argparse.Namespace) -> int:
    # imported when the subcommand runs: it needs POT (the lab extra), `distill` does not
    from sinkd.lab.verify import format_report, run_suite

    with tqdm(total=1, desc="verify", unit="problem", file=sys.stderr,
              disable=args.no_progress) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        report = run_suite(quick=args.quick, seed=args.seed, on_check=progress)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(report.to_json())
        print(f"report written to {args.json}")
    return 0 if report.passed else 1


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m sinkd`` parser: ``verify``, ``distill`` and ``compare``."""
    parser = argparse.ArgumentParser(
        prog="python -m sinkd",
        description="SinKD Lab: Sinkhorn knowledge distillation, verified against POT.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    verify = sub.add_parser("verify", help="compare our Sinkhorn solver with POT; exit 1 on any "
                            "disagreement")
    verify.add_argument("--quick", action="store_true", help="a smaller random suite")
    verify.add_argument("--seed", type=int, default=0, help="seed of the random suite")
    verify.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar")
    verify.set_defaults(run=_verify)

    add_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the subcommand in ``argv`` (default: the command line); return its exit code."""
    args = build_parser().parse_args(argv)
    return args.run(args)
