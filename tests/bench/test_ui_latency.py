"""bench.ui_latency: its --smoke mode runs for real (streamlit + headless chromium) and prints
the per-page table; the CLI refuses bad counts.

Performance itself is not asserted (the script measures it); these check that a real browser
interaction is timed and reported in the table's shape.
"""

from __future__ import annotations

import math
import subprocess
import sys

from bench.ui_latency import ROOT

COLUMNS = ["page", "load", "s", "n", "median", "s", "worst", "s", "failed", "target", "worst",
           "interaction"]


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.ui_latency", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_smoke_times_one_slider_step_on_the_transport_page():
    """`--smoke` opens the transport page (N = 64, T = 100) in chromium, moves one slider one
    step and prints a table with one row: the page, its load time, n = 1 interaction, no
    failure, median = worst (one sample), times positive and finite, the interaction named."""
    out = _run("--smoke")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("page "))
    assert lines[header].split() == COLUMNS
    assert set(lines[header + 1]) == {"-"}
    phases_at = next(i for i, line in enumerate(lines) if line.startswith("where the time goes"))
    rows = lines[header + 2:phases_at]
    assert len(rows) == 1, rows
    cells = rows[0].split()
    assert cells[0] == "transport"
    load, n, median, worst, failed = float(cells[1]), int(cells[2]), float(cells[3]), \
        float(cells[4]), int(cells[5])
    assert (n, failed) == (1, 0)
    for t in (load, median, worst):
        assert math.isfinite(t) and t > 0
    assert median == worst  # one interaction
    assert cells[6] in ("met", "missed")
    # the worst interaction is a step of a transport slider, named by its label and direction
    assert rows[0].split(maxsplit=7)[7].endswith(("→", "←"))
    assert "N = 64, T = 100" in out.stdout
    # where the time goes: the three phases of that one interaction, which add up to its time
    phases = lines[phases_at + 1:]
    assert len(phases) == 1 and phases[0].split()[0] == "transport"
    to_run, run, after = map(float, phases[0].split()[1:])
    assert to_run > 0 and run > 0 and after >= 0
    assert abs(to_run + run + after - median) <= 0.02  # each printed to 0.01 s


def test_bad_counts_exit_2_naming_the_argument():
    """`--moves 0`, `--limit 0` and `--timeout 0` are refused before any server starts."""
    for arg, value in (("--moves", "0"), ("--limit", "0"), ("--timeout", "0")):
        out = _run(arg, value, timeout=60)
        assert out.returncode == 2 and arg in out.stderr, (arg, out.stderr)
