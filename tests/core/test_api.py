"""The public API: every exported name imports and the package never imports streamlit."""

import subprocess
import sys

import sinkd


def test_every_name_in_all_imports():
    """Each name in sinkd.__all__ is an attribute of the package."""
    missing = [name for name in sinkd.__all__ if not hasattr(sinkd, name)]
    assert missing == []


def test_library_does_not_import_streamlit():
    """Importing sinkd (and its CLI and verification) loads no streamlit module."""
    code = ("import sys, sinkd, sinkd.cli, sinkd.lab.verify; "
            "print(any(m.split('.')[0] == 'streamlit' for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
