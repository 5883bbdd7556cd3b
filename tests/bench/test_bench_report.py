"""Tests for the benchmark report's spread over several runs (bench/report.py).

Performance itself is never asserted in tests (it is measured by `python -m bench`); these check
the report's arithmetic against statistics computed here from the same rows.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

from bench.cli import exit_code
from bench.report import format_spread


def _row(case: str, ratio: float, target: float | None) -> dict:
    status = "info" if target is None else ("PASS" if ratio >= target else "FAIL")
    return {"section": "forward", "case": case, "ours": "ours kernel (numpy)",
            "peer": "POT numpy", "ratio": ratio, "target": target, "status": status}


def test_spread_gives_min_median_max_and_runs_that_met_the_target():
    """Per targeted comparison: min, median and max of its ratios over the runs, and how many
    runs met the target; rows without a target are left out; the last line counts the targets
    met in every run."""
    ratios = {"n=16": [4.0, 2.0, 3.5], "n=256": [3.2, 3.1, 3.3]}
    runs = [[_row(case, r[k], 3.0) for case, r in ratios.items()] + [_row("info", 9.0, None)]
            for k in range(3)]
    text = format_spread(runs)
    lines = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("n=")}
    for case, r in ratios.items():
        expected = [f"{x:.2f}x" for x in (min(r), statistics.median(r), max(r))]
        assert lines[case][-6:-3] == expected, case
    assert lines["n=16"][-1] == "2/3" and lines["n=256"][-1] == "3/3"
    assert not any(line.startswith("info") for line in text.splitlines())
    assert text.splitlines()[-1] == "1 of 2 targets met in every run"
    assert "Spread over 3 runs" in text


def test_a_target_whose_faster_peer_changes_between_runs_stays_one_row():
    """"vs the faster POT path" is one target even when POT numpy is faster in some runs and POT
    torch in others (and its note differs): one row over all runs, naming each peer with its
    number of runs."""
    runs = []
    for k, peer in enumerate(["POT numpy", "POT torch", "POT numpy"]):
        row = _row("n=1024", [3.0, 2.5, 0.5][k], 1.0)
        row["peer"], row["note"] = peer, f"measured share {k}%"
        runs.append([row])
    text = format_spread(runs)
    lines = [line for line in text.splitlines() if line.startswith("n=1024")]
    assert len(lines) == 1
    assert "POT numpy (2), POT torch (1)" in lines[0] and lines[0].split()[-1] == "2/3"
    assert text.splitlines()[-1] == "0 of 1 targets met in every run"


def test_runs_below_one_is_refused():
    """`python -m bench --runs 0` exits 2 naming --runs."""
    out = subprocess.run([sys.executable, "-m", "bench", "--runs", "0"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "--runs must be >= 1" in out.stderr


def test_strict_exits_1_only_when_a_target_failed_in_some_run(capsys):
    """Without --strict the bench is a report (exit 0); with it, one FAIL in any run gives 1 and
    says how many; rows without a target never count."""
    passing = [[_row("n=16", 4.0, 3.0), _row("info", 0.1, None)]]
    failing = passing + [[_row("n=16", 2.0, 3.0)]]
    assert exit_code(passing, strict=True) == 0
    assert exit_code(failing, strict=False) == 0
    assert exit_code(failing, strict=True) == 1
    assert "1 target(s) failed over 2 run(s)" in capsys.readouterr().err


def test_strict_run_of_a_real_section_matches_its_fail_count():
    """`python -m bench --quick --section batched --strict` really runs the section; its exit
    code is 1 exactly when its table reports a FAIL."""
    out = subprocess.run([sys.executable, "-m", "bench", "--quick", "--section",
                          "batched", "--strict"], capture_output=True, text=True, timeout=300)
    assert "Targets:" in out.stdout
    failed = " 0 FAIL" not in out.stdout
    assert out.returncode == (1 if failed else 0), out.stdout[-2000:] + out.stderr[-2000:]
