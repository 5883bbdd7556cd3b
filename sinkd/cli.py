"""Command line: ``python -m sinkd {verify,toy,distill,compare} ...``.

``verify`` checks the Sinkhorn solver against POT (:mod:`sinkd.lab.verify`); ``toy`` lists the
toys' presets and counts in how many runs a preset's claims hold (:mod:`sinkd.lab.robustness`
for the divergence lab, :mod:`sinkd.lab.batchwise` for the batch-wise toy); ``distill`` and
``compare`` come from :mod:`sinkd.distill.cli`. Benchmarks are not part of the package: they are
``python -m bench`` in a repository checkout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
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


def _toy_presets() -> dict[str, Callable[..., dict]]:
    """Every toy preset's name -> the function counting its claims over a robustness grid."""
    # imported when the subcommand runs, as for verify: the lab extra (torch, POT, plotly)
    from sinkd.lab import batchwise, robustness
    from sinkd.lab.batchwise_spec import SPEC as BATCHWISE
    from sinkd.lab.divergence_lab_spec import SPEC as DIVERGENCE_LAB

    # both toys' robustness give {divergence: {"claim", "runs", "held"}}
    return {**{name: partial(robustness.robustness, name) for name in DIVERGENCE_LAB.presets},
            **{name: partial(batchwise.robustness, name) for name in BATCHWISE.presets}}


def format_counts(name: str, counts: dict[str, dict]) -> str:
    """The robustness counts of a preset as a text table: divergence, held of runs, claim."""
    rows = [(d, f"{c['held']} of {c['runs']}", c["claim"]) for d, c in counts.items()]
    w = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(("divergence", "held"))]
    lines = [f"{name}: in how many runs each claim held", f"{'divergence':{w[0]}}  "
             f"{'held':>{w[1]}}  claim", f"{'-' * w[0]}  {'-' * w[1]}  -----"]
    lines += [f"{d:{w[0]}}  {h:>{w[1]}}  {claim}" for d, h, claim in rows]
    return "\n".join(lines)


def _toy(args: argparse.Namespace) -> int:
    presets = _toy_presets()
    if args.list:
        print("\n".join(presets))
        return 0
    if args.preset not in presets:
        print(f"python -m sinkd toy: unknown preset {args.preset!r}; choose one of: "
              + ", ".join(repr(p) for p in presets), file=sys.stderr)
        return 2
    if args.seeds < 1:
        print("python -m sinkd toy: --seeds must be >= 1", file=sys.stderr)
        return 2
    with tqdm(total=1, desc="toy", unit="step", file=sys.stderr,
              disable=args.no_progress) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        counts = presets[args.preset](seeds=args.seeds, on_progress=progress)
    print(json.dumps(counts, indent=1) if args.json else format_counts(args.preset, counts))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m sinkd`` parser: ``verify``, ``toy``, ``distill`` and ``compare``."""
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

    toy = sub.add_parser("toy", help="list the toys' presets, or count in how many runs of a "
                         "robustness grid a preset's claims hold")
    what = toy.add_mutually_exclusive_group(required=True)
    what.add_argument("--list", action="store_true", help="print the preset names, one a line")
    what.add_argument("--preset", metavar="NAME", help="the preset to check (see --list)")
    toy.add_argument("--seeds", type=int, default=8, help="seeds 0 .. N-1 (default 8)")
    toy.add_argument("--json", action="store_true",
                     help="print {divergence: {runs, held, claim}} as JSON")
    toy.add_argument("--no-progress", action="store_true", help="no progress bar")
    toy.set_defaults(run=_toy)

    add_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the subcommand in ``argv`` (default: the command line); return its exit code."""
    args = build_parser().parse_args(argv)
    return args.run(args)
