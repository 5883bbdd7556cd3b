"""Command line: ``python -m sinkd {verify,bench,distill,compare} ...``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from sinkd.cli_distill import add_subcommands


def _verify(args: argparse.Namespace) -> int:
    from sinkd.verify import format_report, run_suite

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


def _bench(args: argparse.Namespace) -> int:
    root = Path(__file__).resolve().parent.parent  # bench/ lives beside sinkd/ in the repository
    if not (root / "bench" / "__init__.py").exists():
        print("error: bench/ not found beside the sinkd package (run from a repository checkout)",
              file=sys.stderr)
        return 2
    sys.path.insert(0, str(root))
    import bench

    forwarded = ["--threads", str(args.threads), "--runs", str(args.runs)] + (
        ["--quick"] if args.quick else []) + (["--strict"] if args.strict else [])
    for section in args.section or []:
        forwarded += ["--section", section]
    if args.out:
        forwarded += ["--out", args.out]
    return bench.main(forwarded)


def build_parser() -> argparse.ArgumentParser:
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

    bench_cmd = sub.add_parser("bench", help="benchmark against POT and a training step; print "
                               "ratios")
    bench_cmd.add_argument("--quick", action="store_true", help="a subset, under 30 s")
    bench_cmd.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    bench_cmd.add_argument("--out", metavar="FILE", help="also write results as JSON")
    bench_cmd.add_argument("--runs", type=int, default=1,
                           help="repeat the suite and print each ratio's spread (default 1)")
    bench_cmd.add_argument("--section", action="append",
                           choices=["forward", "forward_backward", "batched", "sinkd_share"],
                           help="run only this section (repeatable)")
    bench_cmd.add_argument("--strict", action="store_true",
                           help="exit 1 if a target failed in any run (default: exit 0)")
    bench_cmd.set_defaults(run=_bench)
    add_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)
