"""The command line: `python -m sinkd` lists its subcommands and `verify` really checks."""

import json
import subprocess
import sys


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sinkd", *args], capture_output=True, text=True,
                          timeout=300)


def test_help_lists_subcommands():
    """--help exits 0 and names verify, toy, distill, compare and clean; bench is `python -m bench`,
    not a subcommand of the installed package."""
    out = _run("--help")
    assert out.returncode == 0
    listed = [line.split()[0] for line in out.stdout.splitlines() if line.startswith("    ")
              and not line.startswith("     ")]
    assert listed == ["verify", "toy", "distill", "compare", "clean"]


def test_unknown_subcommand_fails_with_usage():
    """An unknown subcommand, `bench` included (benchmarks are `python -m bench` in a checkout),
    exits 2 with argparse's usage message naming the choices."""
    out = _run("bench")
    assert out.returncode == 2
    assert "invalid choice: 'bench'" in out.stderr
    assert all(name in out.stderr.split("choose from")[1] for name in ("verify", "distill",
                                                                        "compare"))


def test_verify_quick_agrees_with_pot(tmp_path):
    """`verify --quick` compares with POT, exits 0, and its JSON report has only passed checks,
    each with a nonzero relative tolerance of at most 1e-2 and its error / tolerance ratio."""
    report_file = tmp_path / "report.json"
    out = _run("verify", "--quick", "--no-progress", "--json", str(report_file))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    report = json.loads(report_file.read_text())
    assert report["passed"] is True
    assert len(report["checks"]) > 50
    assert all(c["passed"] and c["error"] <= c["tolerance"] for c in report["checks"])
    assert all(0 < c["tolerance"] <= 1e-2 for c in report["checks"])
    assert all(c["ratio"] == c["error"] / c["tolerance"] for c in report["checks"])
    assert any("ot.emd2" in c["name"] for c in report["checks"])
    names = {c["name"] for c in report["checks"]}
    assert any("ot.sinkhorn" in n for n in names) and any("POT torch" in n for n in names)


def test_help_lists_distill_and_compare():
    """`python -m sinkd --help` also names distill and compare; `distill --help` lists its flags."""
    out = _run("--help")
    assert "distill" in out.stdout and "compare" in out.stdout
    out = _run("distill", "--help")
    assert out.returncode == 0
    for flag in ("--recipe", "--steps", "--batch-size", "--train-limit", "--seed", "--device",
                 "--out"):
        assert flag in out.stdout
