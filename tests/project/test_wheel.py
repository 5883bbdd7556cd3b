"""`sinkd` is an installable library: its wheel builds, installs elsewhere and works there.

The wheel is built once per module from a copy of what the build needs (pyproject.toml,
README.md, sinkd/; setuptools builds in the source tree, and the repository stays clean) with
the venv's setuptools (no network: build isolation would download the backend), installed with
``pip install --target`` into a temporary folder; every check then runs a fresh interpreter
from a directory outside the repository, with that folder first on ``PYTHONPATH``, so the
repository's own ``sinkd/`` cannot be the one imported.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """The wheel built from the repository and the folder it was installed into."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(ROOT / "sinkd", source / "sinkd",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                    "--no-build-isolation", "--quiet", "--disable-pip-version-check",
                    "-w", str(root / "dist")], check=True, cwd=root)
    wheels = list((root / "dist").glob("sinkd_lab-*.whl"))
    assert len(wheels) == 1
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
                    "--disable-pip-version-check", "--target", str(target), str(wheels[0])],
                   check=True, cwd=root)
    outside = root / "elsewhere"
    outside.mkdir()
    return {"wheel": wheels[0], "site": target, "cwd": outside}


def run_outside(installed: dict, code: str) -> str:
    """Run ``code`` in a fresh interpreter outside the repository; return its stdout."""
    env = {**os.environ, "PYTHONPATH": str(installed["site"])}
    out = subprocess.run([sys.executable, "-c", code], cwd=installed["cwd"], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_wheel_holds_the_package_its_data_and_nothing_else(installed):
    """The wheel carries sinkd, sinkd.distill, sinkd.lab and the JSON files the library reads;
    no app, test or benchmark file."""
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"sinkd", f"sinkd_lab-{VERSION}.dist-info"}
    for needed in ("sinkd/__init__.py", "sinkd/distill/__init__.py", "sinkd/lab/__init__.py",
                   "sinkd/data/rotten_tomatoes_split.json"):
        assert needed in names


def test_readme_library_example_runs_from_the_installed_wheel(installed):
    """The README's library example runs outside the repository, on the installed copy, and
    the version comes from the installed package's metadata."""
    block = re.search(r"## The library in one example\n.*?```python\n(.*?)```", README, re.S)
    assert block is not None
    code = block.group(1) + ("\nprint(sinkd.__file__)\nprint(sinkd.__version__)\n")
    lines = run_outside(installed, code).splitlines()
    assert Path(lines[-2]).is_relative_to(installed["site"])
    assert lines[-1] == VERSION


def test_installed_distill_reads_its_split_rule_from_the_package(installed):
    """The distillation split rule is read from the installed package, not from a checkout."""
    code = ("import json\nfrom sinkd.distill import data\n"
            "print(json.loads(data.DEFAULT_SPLIT_FILE.read_text())['rule'])\n"
            "print(data.DEFAULT_SPLIT_FILE)\n")
    rule, path = run_outside(installed, code).splitlines()
    assert rule == json.loads((ROOT / "data" / "rotten_tomatoes_split.json").read_text())["rule"]
    assert Path(path).is_relative_to(installed["site"])


def test_import_sinkd_loads_only_torch_numpy_and_scipy(installed):
    """`import sinkd` adds no third-party module beyond what torch, numpy and scipy load
    themselves (no pandas, plotly, POT, transformers, streamlit); the standard library is free."""
    code = ("import sys\nimport numpy, scipy, scipy.special, torch\n"
            "before = {m.split('.')[0] for m in sys.modules}\nimport sinkd\n"
            "new = {m.split('.')[0] for m in sys.modules} - before - sys.stdlib_module_names\n"
            "print(sorted(new))\n")
    assert run_outside(installed, code).strip() == "['sinkd']"
