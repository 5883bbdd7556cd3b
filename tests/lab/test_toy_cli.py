"""The `python -m sinkd toy` command (sinkd.cli): it lists both toys' presets, prints a
preset's robustness counts as JSON or as a table, and rejects an unknown preset with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sinkd.lab import robustness
from sinkd.lab.divergence_lab_spec import SPEC

ROOT = Path(__file__).resolve().parents[2]


def toy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sinkd", "toy", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def batchwise_presets() -> list[str]:
    from sinkd.lab.batchwise_spec import SPEC as BATCHWISE

    return list(BATCHWISE.presets)


def test_list_prints_every_preset_of_both_toys():
    """--list prints the divergence lab's presets, then the batch-wise toy's, one a line."""
    out = toy("--list")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == list(SPEC.presets) + batchwise_presets()


def test_preset_json_with_eight_seeds():
    """--preset NAME --seeds 8 --json prints {divergence: {runs, held, claim}}, exits 0, with
    48 runs (8 seeds x 3 budgets x 2 learning rates) and 0 <= held <= runs; a progress bar
    goes to stderr, not into the JSON."""
    name = "Mode collapse (reverse KL)"
    out = toy("--preset", name, "--seeds", "8", "--json")
    assert out.returncode == 0, out.stderr
    counts = json.loads(out.stdout)
    assert set(counts) == set(SPEC.presets[name].claims)
    for c in counts.values():
        assert c["runs"] == 48 and 0 <= c["held"] <= c["runs"] and c["claim"]
    assert "toy" in out.stderr  # tqdm's bar, labelled like verify's


def test_json_equals_the_library_and_the_table_shows_it():
    """The JSON equals sinkd.lab.robustness.robustness for the same preset and seeds; without
    --json the same counts are printed as "held of runs" with each claim."""
    name = "Mode averaging (forward KL)"
    out = toy("--preset", name, "--seeds", "1", "--json", "--no-progress")
    assert out.returncode == 0 and out.stderr == ""
    expected = robustness.robustness(name, seeds=1)
    assert json.loads(out.stdout) == expected
    table = toy("--preset", name, "--seeds", "1", "--no-progress")
    assert table.returncode == 0
    for d, c in expected.items():
        line = next(x for x in table.stdout.splitlines() if x.startswith(d + " "))
        assert f"{c['held']} of {c['runs']}" in line and c["claim"] in line


def test_unknown_preset_exits_2_naming_the_presets():
    """An unknown preset is one line on stderr naming the allowed presets, and exit code 2."""
    out = toy("--preset", "Nope", "--json")
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Nope" in lines[0]
    assert all(repr(p) in lines[0] for p in list(SPEC.presets) + batchwise_presets())
