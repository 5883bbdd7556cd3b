"""The README's example runs as written, and its two commands exist in the Makefile."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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
