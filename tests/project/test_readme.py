"""The README's example runs as written, and its two commands exist in the Makefile."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_python_examples_run():
    """Every ```python block of the README executes without error (its asserts hold)."""
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_the_two_commands_are_make_targets_and_ci_calls_the_test_one():
    """`make run` and `make test` are the README's commands; .ci/run calls `make test`."""
    commands = re.findall(r"```\n(make \w+)\n```", README)
    assert commands == ["make run", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_results_table_is_computed_from_the_committed_records():
    """The README's Rotten Tomatoes table is exactly `compare --markdown` of the run records in
    docs/results/rotten-tomatoes (recipes in the README's order): no number typed by hand."""
    from sinkd.distill.comparison import compare, format_compare
    from sinkd.distill.records import load_record

    folder = ROOT / "docs" / "results" / "rotten-tomatoes"
    records = [load_record(p) for recipe in ("ce", "kd", "rkl", "js", "sinkd")
               for p in sorted(folder.glob(f"{recipe}-seed*.json"))]
    assert len(records) == 15 and not any(r.stopped for r in records)
    assert sorted({r.config["seed"] for r in records}) == [0, 1, 2]
    table = format_compare(compare(records), markdown=True)
    assert table in README
