"""Time the Distill a BERT page's classroom preset from a fresh cache, phase by phase.

Run with ``python bench/classroom_time.py`` (or ``python -m bench.classroom_time``). It runs the
preset's settings (:mod:`sinkd.lab.distill_spec`: CE and SinKD, one seed) through
``python -m sinkd distill`` with ``SINKD_CACHE`` set to a new empty folder, so the teacher is
fine-tuned and its logits computed, as on a first visit to the page. It prints, and writes to
``sinkd/data/classroom_time.json`` (the page states the duration from that file):

- **teacher**: from the command's start until the teacher's last logits file is written (process
  start-up and data loading included): a one-time cost, cached for every later run;
  it splits into the fine-tune (until the saved teacher's last file) and the logits;
- **each run**: from the end of the previous phase until its record's last write, and of that
  the steps themselves (each step's rows over its examples per second, from the record): the
  rest is loading the student, evaluating on dev and test, and writing the record;
- the total, the machine's cores (``os.cpu_count()``), the load average before and after, and
  the share of the CPU other programs used during the run (idle: load before < 0.5, share < 5%):
  other programs on the machine slow the runs, so a number measured under load overstates the
  duration on an idle machine.

The phases are read from file times (logits files, then each record), so they add up to the
total; ``--no-write`` prints without writing the data file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a plain script

from sinkd.distill import RECIPES  # noqa: E402
from sinkd.distill.cache import MANIFEST  # noqa: E402
from sinkd.distill.glue import GLUE_TASKS  # noqa: E402
from sinkd.lab import distill_spec  # noqa: E402

DATA_FILE = ROOT / "sinkd" / "data" / "classroom_time.json"
# Idle: under this 1-minute load average before the start, and the rest of the machine used under
# this share of its CPU time during the run (the command's own load is not counted).
IDLE_LOAD, IDLE_SHARE = 0.5, 0.05
PRESET = next(iter(distill_spec.spec(RECIPES, GLUE_TASKS).presets))  # the classroom preset


def classroom_command(out: Path) -> tuple[list[str], list[str], list[int]]:
    """(argv after ``python -m sinkd``, recipes, seeds) of the classroom preset's runs."""
    values = {**distill_spec.spec(RECIPES, GLUE_TASKS).defaults,
              **distill_spec.spec(RECIPES, GLUE_TASKS).presets[PRESET].values}
    recipes = [r for r in RECIPES if values.get(f"use_{r}")]
    seeds = list(range(values["first_seed"], values["first_seed"] + values["n_seeds"]))
    config = distill_spec.config_overrides(values)
    argv = ["distill", "--recipe", *recipes, "--seed", *map(str, seeds), "--steps",
            str(config.pop("steps")), "--batch-size", str(config.pop("batch_size")),
            "--train-limit", str(config.pop("train_limit")), "--data", str(config.pop("data")),
            "--out", str(out), "--no-progress"]
    teacher = config.pop("teacher")
    if teacher is not None:
        config["teacher"] = teacher
    for key, value in config.items():
        argv += ["--set", f"{key}={value}"]
    return argv, recipes, seeds


def busy_cpu_s() -> float:
    """Seconds of CPU time every core of the machine has been busy since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    """CPU seconds (user + system) of this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(cache: Path) -> dict:
    """Run the preset once in the empty ``cache``; the phases' seconds and the machine."""
    out = cache / "runs"
    argv, recipes, seeds = classroom_command(out)
    env = {**os.environ, "SINKD_CACHE": str(cache)}
    load_before = os.getloadavg()
    busy_before, children_before = busy_cpu_s(), children_cpu_s()
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "sinkd", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    t1 = time.time()
    load_after = os.getloadavg()
    # CPU time the rest of the machine used meanwhile: all busy time minus the command's own
    others_cpu_s = (busy_cpu_s() - busy_before) - (children_cpu_s() - children_before)
    if proc.returncode != 0:
        raise SystemExit(f"the distill command failed ({proc.returncode}):\n{proc.stderr}")
    logits = sorted((cache / "logits").glob("*.pt"), key=lambda p: p.stat().st_mtime)
    # the manifest is written after the logits (it checksums them): not part of the fine-tune
    saved = [f for f in (cache / "teachers").rglob("*") if f.is_file() and f.name != MANIFEST]
    if not logits or not saved:
        raise SystemExit(f"no teacher or teacher logits were cached under {cache}")
    fine_tune_end = max(f.stat().st_mtime for f in saved)  # save_pretrained ends the fine-tune
    teacher_end = logits[-1].stat().st_mtime  # the logits of the last split end the phase
    runs, previous = [], teacher_end
    for recipe in recipes:
        for seed in seeds:
            path = out / f"{recipe}-seed{seed}.json"
            end = path.stat().st_mtime  # the record's last write ends the run
            record = json.loads(path.read_text())
            # seconds of the plain steps: each step's rows / its examples per second
            steps_s = sum(record["global_batch"] / m["examples_per_s"] for m in record["metrics"])
            runs.append(dict(recipe=recipe, seed=seed, steps=len(record["metrics"]),
                             seconds=round(end - previous, 1), steps_s=round(steps_s, 1),
                             wall_time_s=record["wall_time_s"],
                             test=record["results"].get("test")))
            previous = end
    shown = " ".join(shlex.quote(a) for a in ["python", "-m", "sinkd", *argv])
    return dict(
        command=shown.replace(str(out), "<cache>/runs"), preset=PRESET,
        measured=datetime.now(UTC).isoformat(timespec="seconds"), cores=os.cpu_count(),
        machine=platform.machine(), load_before=[round(x, 2) for x in load_before],
        load_after=[round(x, 2) for x in load_after], total_s=round(t1 - t0, 1),
        teacher_s=round(teacher_end - t0, 1), fine_tune_s=round(fine_tune_end - t0, 1),
        logits_s=round(teacher_end - fine_tune_end, 1), runs=runs,
        rest_s=round(t1 - previous, 1),
        teacher_steps=int(next(a.split("=")[1] for a in argv if a.startswith("teacher_steps="))),
        batch_size=int(argv[argv.index("--batch-size") + 1]),
        others_cpu_share=round(max(others_cpu_s, 0.0) / ((t1 - t0) * os.cpu_count()), 3),
        idle=load_before[0] < IDLE_LOAD and others_cpu_s < IDLE_SHARE * (t1 - t0) * os.cpu_count())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/classroom_time.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--no-write", action="store_true",
                        help=f"print only; do not write {DATA_FILE.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sinkd-classroom-") as cache:
        result = measure(Path(cache))
    print(f"classroom preset: {result['preset']}")
    print(f"command: SINKD_CACHE=<empty folder> {result['command']}")
    print(f"{result['cores']} cores; load average {result['load_before']} before, "
          f"{result['load_after']} after (with this command's own load); other programs used "
          f"{result['others_cpu_share']:.1%} of the CPU meanwhile"
          + ("" if result["idle"] else " (NOT an idle machine)"))
    print(f"teacher (fine-tune {result['teacher_steps']} steps + logits, start-up included): "
          f"{result['teacher_s']:.1f} s (fine-tune {result['fine_tune_s']:.1f} s, logits "
          f"{result['logits_s']:.1f} s)")
    for run in result["runs"]:
        print(f"run {run['recipe']} seed {run['seed']} ({run['steps']} steps): "
              f"{run['seconds']:.1f} s, of which {run['steps_s']:.1f} s in the steps themselves")
    print(f"rest (comparison, exit): {result['rest_s']:.1f} s; total {result['total_s']:.1f} s")
    if not args.no_write:
        DATA_FILE.write_text(json.dumps(result, indent=1) + "\n")
        print(f"written to {DATA_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
