"""The ``distill`` and ``compare`` subcommands of ``python -m sinkd`` (see :mod:`sinkd.cli`).

``distill`` runs every recipe x seed asked for, one run record each (``--out DIR`` writes
``DIR/<recipe>-seed<k>.json``; a record already there is kept unless ``--overwrite``), with a
progress bar per run on stderr. Ctrl-C stops the current run cleanly: its record is written,
marked stopped, and the command exits 130 (a second Ctrl-C interrupts at once: the record then
reads crashed); ``distill --resume RECORD`` continues a stopped or crashed run (kill -9 too: from
its last periodic state, ``checkpoint_every``) where it left off (``--stop-after K`` stops each
run so after K steps). ``compare`` prints the mean and std over seeds of each experiment's
accuracies, beside the teacher's, counting only finished runs. ``clean`` removes the resume
states no run needs.

Under ``torchrun --nproc_per_node K -m sinkd distill ...`` the same command trains each run on K
processes (:mod:`sinkd.distill.parallel`): rank 0 prints, writes and exits 130 after a stop, the
other ranks are silent and exit 0 then.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from tqdm import tqdm

from sinkd.distill import checkpoints, parallel
from sinkd.distill.checkpoints import config_of
from sinkd.distill.comparison import compare, format_compare
from sinkd.distill.config import DistillConfig
from sinkd.distill.paths import check_output_paths
from sinkd.distill.recipes import RECIPES
from sinkd.distill.records import RunRecord, load_record
from sinkd.distill.tasks import TASKS, dry_run, resolve_epochs, task_settings
from sinkd.distill.train import train
from sinkd.validation import check_int

EXIT_INTERRUPTED = 130  # the shell's code for a process ended by SIGINT


class _StopFlag:
    """A SIGINT handler that asks the running loop to stop; a second Ctrl-C raises at once.
    With ``after``, it also asks once a run has done that many steps (``--stop-after``)."""

    def __init__(self, after: int | None = None) -> None:
        self.stop, self.after, self.steps = False, after, 0

    def __call__(self) -> bool:
        return self.stop or (self.after is not None and self.steps >= self.after)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.stop = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nstopping after this step (Ctrl-C again to abort now)", file=sys.stderr)


def _percent(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _summary(record: RunRecord, path: Path | None) -> str:
    r, c, note = record.results, record.config, ""
    if not record.metrics:
        return f"{c['recipe']} seed {c['seed']}: stopped before its first step" + (
            f" ({record.teacher['stopped']})" if "stopped" in record.teacher else "")
    text = (f"{c['recipe']} seed {c['seed']}: test {_percent(r.get('test'))} (best-dev checkpoint, "
            f"step {r.get('best_step')}), best dev {_percent(r.get('best_dev'))}, final dev "
            f"{_percent(r.get('final_dev'))}, {r.get('steps_done', 0)} of {c['steps']} steps, "
            f"{record.wall_time_s:.0f} s")
    if record.world_size > 1:
        text += f", {record.world_size} processes x {record.global_batch // record.world_size} rows"
    if record.stopped and record.checkpoint and path:
        launcher = (f"torchrun --nproc_per_node {record.world_size}" if record.world_size > 1
                    else "python")
        text += f" [stopped; continue with: {launcher} -m sinkd distill --resume {path}]"
        state = Path(record.checkpoint)
        if state.is_file():  # say what it costs to keep, and how to drop it
            note = (f"\n  its resume state {state} ({_size(state.stat().st_size)}) stays until "
                    f"the run finishes; to give the run up: python -m sinkd clean --all "
                    f"{state.parent}")
    elif record.stopped:
        text += " [stopped]"
    return text + (f" -> {path}" if path else "") + note


def _size(n: int) -> str:
    """Bytes in MB, or kB under 1 MB.

    >>> _size(262_144_000), _size(2_048)
    ('262.1 MB', '2.0 kB')
    """
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def _run_one(config: DistillConfig, flag: _StopFlag, *, quiet: bool,
             resume_from: Path | None, overwrite: bool = False) -> RunRecord:
    """One run with a teacher bar (first run only, unless cached) and a step bar (rank 0's
    only, under torchrun)."""
    bars: dict[str, tqdm] = {}
    quiet = quiet or not parallel.is_main()
    flag.steps = 0

    def on_progress(event: dict) -> None:
        phase = event["phase"] if event["phase"] != "logits" else f"logits {event['split']}"
        if phase == "cache":
            return
        if phase not in bars:
            desc = {"fine-tune": "teacher fine-tune",
                    "wait": "waiting for another process preparing this teacher"}.get(
                        phase, f"teacher {phase}")
            bars[phase] = tqdm(total=event["total"], desc=desc, file=sys.stderr, disable=quiet,
                               leave=False)
        if "loss" in event:
            bars[phase].set_postfix(loss=f"{event['loss']:.3f}", refresh=False)
        bars[phase].update(event["done"] - bars[phase].n)
        if event["done"] >= event["total"]:  # closed now, so the step bar takes its place
            bars.pop(phase).close()

    dev: list[str] = ["—"]

    def on_step(event: dict) -> None:
        if "steps" not in bars:  # created here so that its rate leaves out the teacher phase
            bars["steps"] = tqdm(total=config.steps, desc=f"{config.recipe} seed {config.seed}",
                                 unit="step", file=sys.stderr, disable=quiet,
                                 initial=event["step"] - 1)
        step_bar = bars["steps"]
        if "dev_accuracy" in event:
            dev[0] = f"{100 * event['dev_accuracy']:.1f}%"
        step_bar.set_postfix(loss=f"{event['loss']:.4f}", dev=dev[0], refresh=False)
        step_bar.update(1)
        flag.steps += 1

    try:
        return train(config, on_step=on_step, should_stop=flag, on_progress=on_progress,
                     resume_from=resume_from, overwrite=overwrite)
    finally:
        for bar in bars.values():
            bar.close()


def run_distill(args: argparse.Namespace) -> int:
    """The ``distill`` subcommand: recipes x seeds, one record each; 130 after Ctrl-C."""
    flags = {"steps": args.steps, "batch_size": args.batch_size, "train_limit": args.train_limit,
             "device": args.device, "data": args.data, "data_dir": args.data_dir}
    unknown = sorted(set(args.recipe) - set(RECIPES))
    try:
        if args.stop_after is not None:
            check_int("--stop-after", args.stop_after, low=1)
        if args.resume:
            runs = _resumed_runs(args)
            for config, _ in runs:
                check_output_paths(config)
        elif unknown:
            raise ValueError(f"--recipe must be among {sorted(RECIPES)}, got {unknown}")
        else:
            base, sources = task_settings(args.task, args.set, flags)  # defaults < task < flags
            if not args.dry_run:  # bad output or cache paths fail before any data loads,
                # after the shards' check (which must leave no cache folder behind)
                parallel.check_batch_size(base.batch_size, int(os.environ.get("WORLD_SIZE", 1)))
                check_output_paths(base, out_dir=args.out)
            base = base if args.dry_run else resolve_epochs(base)  # epochs -> steps (loads data)
            runs = [(DistillConfig.from_overrides(
                {"recipe": recipe, "seed": seed,
                 "out": str(Path(args.out) / f"{recipe}-seed{seed}.json") if args.out else None},
                base=base), None) for recipe in args.recipe for seed in args.seed]
            if args.dry_run:
                print(dry_run([config for config, _ in runs], sources))
                return 0
            for config, _ in runs:  # every run's, before the first one's teacher phase
                if config.out is not None:
                    checkpoints.check_new_record(config.out, args.overwrite)
    except (ValueError, RuntimeError, RecursionError) as exc:  # RuntimeError: data that
        print(f"error: {exc}", file=sys.stderr)  # cannot load
        return 2
    flag, records, main = _StopFlag(after=args.stop_after), [], True
    previous = signal.signal(signal.SIGINT, flag.handle)
    try:  # under torchrun: one process group for all the runs (sinkd.distill.parallel)
        with parallel.process_group(runs[0][0].device if runs else "cpu"):
            main = parallel.is_main()  # rank 0 reports; the others train beside it silently
            for config, resume_from in runs:
                record = _run_one(config, flag, quiet=args.no_progress, resume_from=resume_from,
                                  overwrite=args.overwrite)
                records.append(record)
                if main:
                    print(_summary(record, Path(config.out) if config.out else None), flush=True)
                if record.stopped:  # rank 0's exit status is the run's (torchrun reports it)
                    return EXIT_INTERRUPTED if main else 0
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the second Ctrl-C: train() marked the record crashed
        if main:
            print("\ninterrupted at once: the record reads crashed; --resume continues it from "
                  "its last periodic state (checkpoint_every)", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, previous)
    if len(records) > 1 and main:
        print(format_compare(compare(records)))
    return 0


def _resumed_runs(args: argparse.Namespace) -> list[tuple[DistillConfig, Path]]:
    """(config, record) per ``--resume`` record: its own settings; ``--device`` may change and
    ``--stop-after`` applies to the resumed run."""
    given = [f"--{k.replace('_', '-')}" for k in ("steps", "batch_size", "train_limit", "data",
                                                  "out") if getattr(args, k) is not None]
    given += ["--set"] * bool(args.set) + ["--recipe"] * (args.recipe != [DistillConfig.recipe])
    given += ["--seed"] * (args.seed != [DistillConfig.seed])
    given += [f"--{k.replace('_', '-')}" for k in ("task", "data_dir", "dry_run", "overwrite")
              if getattr(args, k)]
    if given:
        raise ValueError(f"--resume continues stopped runs with their own settings; only "
                         f"--device and --stop-after may be given with it, got "
                         f"{sorted(set(given))}")
    runs = []
    for path in map(Path, args.resume):
        try:
            config = config_of(load_record(path))
            overrides = {"out": str(path), **({"device": args.device} if args.device else {})}
            config = DistillConfig.from_overrides(overrides, base=config)
            # status, config and resume state checked now (exit 2), not after the teacher; the
            # state's tensors only mapped: the run reads them when it starts
            checkpoints.resumable(path, dataclasses.asdict(config), mmap=True)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"--resume {path}: {exc}") from None
        runs.append((config, path))
    return runs


def run_compare(args: argparse.Namespace) -> int:
    """The ``compare`` subcommand: load records, print the table (2 on an unreadable record)."""
    try:
        records = [load_record(path) for path in args.records]
        table = format_compare(compare(records, teacher=not args.no_teacher),
                               markdown=args.markdown)
    except (ValueError, TypeError, RecursionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table)
    unfinished = [f"{path} ({r.status})" for path, r in zip(args.records, records, strict=True)
                  if r.status != "finished"]
    if unfinished:
        print(f"not averaged (not finished): {', '.join(unfinished)}")
    return 0


def run_clean(args: argparse.Namespace) -> int:
    """The ``clean`` subcommand: list, then remove, resume states no run needs (2 on a bad
    folder)."""
    for folder in map(Path, args.folders):
        if not folder.is_dir():
            print(f"error: clean: {folder} is not a directory", file=sys.stderr)
            return 2
    verb = "would remove" if args.dry_run else "removed"
    freed = kept = 0
    for folder in map(Path, args.folders):
        for path, size, status in checkpoints.resume_states(folder):
            why = f"its run is {status}" if status else "no readable record beside it"
            if not checkpoints.is_stale(status, abandon=args.all):
                hint = "" if status == "running" else "; --all removes it (gives the run up)"
                print(f"kept {path} ({_size(size)}): {why}{hint}")
                kept += 1
                continue
            if not args.dry_run:
                try:
                    path.unlink()
                except OSError as exc:
                    print(f"error: clean: cannot remove {path}: {exc.strerror or exc}",
                          file=sys.stderr)
                    return 2
            print(f"{verb} {path} ({_size(size)}): {why}")
            freed += size
    print(f"{verb} {_size(freed)} of resume states; kept {kept}")
    return 0


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``distill``, ``compare`` and ``clean`` on the ``python -m sinkd`` subparsers."""
    defaults = DistillConfig()
    distill = subparsers.add_parser(
        "distill", help="distil a fine-tuned BERT teacher into a small student; one record per "
        "run", description="Fine-tune the teacher once (cached), then distil a student per "
        "recipe and seed. Ctrl-C stops the current run cleanly (exit 130); a stopped or killed run "
        "continues with --resume. Records already in --out are never replaced unless "
        "--overwrite.")
    distill.add_argument("--recipe", nargs="+", default=[defaults.recipe], metavar="NAME",
                         help=f"one or several of: {', '.join(RECIPES)} (default "
                         f"{defaults.recipe})")
    distill.add_argument("--seed", nargs="+", type=int, default=[defaults.seed], metavar="K",
                         help="one or several seeds: every recipe runs with each (default 0)")
    distill.add_argument("--steps", type=int, help=f"student steps (default {defaults.steps})")
    distill.add_argument("--batch-size", type=int,
                         help=f"student batch size (default {defaults.batch_size})")
    distill.add_argument("--train-limit", type=int,
                         help="use a fixed random subset of this many training texts")
    distill.add_argument("--device", help="auto, cpu, cuda or mps (default auto)")
    distill.add_argument("--data", help="rotten_tomatoes (default), a GLUE task or a .csv/.tsv")
    distill.add_argument("--out", metavar="DIR",
                         help="write a run record per run: DIR/<recipe>-seed<k>.json; a run "
                         "recorded there already is kept (the command stops, exit 2) unless "
                         "--overwrite")
    distill.add_argument("--overwrite", action="store_true",
                         help="replace the records (and resume states) already in --out of "
                         "finished, stopped or crashed runs; never a running one's")
    distill.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="any config field, repeatable: "
                         + ", ".join(f.name for f in dataclasses.fields(defaults)))
    distill.add_argument("--no-progress", action="store_true", help="no progress bars")
    distill.add_argument("--resume", nargs="+", metavar="RECORD",
                         help="continue stopped or crashed runs from their records (their own "
                         "settings); a killed run from its last state, saved every "
                         "checkpoint_every steps (--set checkpoint_every=K)")
    distill.add_argument("--stop-after", type=int, metavar="K",
                         help="stop a run cleanly after K steps of this command, as Ctrl-C does "
                         "(exit 130; continue it with --resume): a long run in slices")
    distill.add_argument("--task", choices=sorted(TASKS), type=str.lower,
                         help="the reference's GLUE recipe of this task (data, batch size, "
                         "epochs, lr, alpha, KD temperature, beta, 128 tokens); flags and --set "
                         "override it")
    distill.add_argument("--data-dir", metavar="DIR",
                         help="a folder of GLUE's own TSV files (train.tsv, dev.tsv) for a GLUE "
                         "task, instead of the Hugging Face hub")
    distill.add_argument("--dry-run", action="store_true",
                         help="print each setting, its value and where it came from; load no "
                         "model, train nothing")
    distill.set_defaults(run=run_distill)

    compare_cmd = subparsers.add_parser(
        "compare", help="table of mean and std over seeds per recipe, from run records")
    compare_cmd.add_argument("records", nargs="+", metavar="RECORD", help="run record JSON files")
    compare_cmd.add_argument("--markdown", action="store_true", help="a Markdown table")
    compare_cmd.add_argument("--no-teacher", action="store_true", help="no teacher rows")
    compare_cmd.set_defaults(run=run_compare)

    clean = subparsers.add_parser(
        "clean", help="remove the resume states (.resume.pt) that no run needs",
        description="List the resume states under each folder with their sizes and remove those "
        "of finished runs and those whose record is gone; a stopped or crashed run's state is "
        "kept (it can resume) unless --all, a running run's always.")
    clean.add_argument("folders", nargs="+", metavar="DIR", help="folders of run records")
    clean.add_argument("--dry-run", action="store_true", help="list only, remove nothing")
    clean.add_argument("--all", action="store_true",
                       help="also remove stopped and crashed runs' states (they cannot resume)")
    clean.set_defaults(run=run_clean)
