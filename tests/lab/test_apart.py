"""sinkd.lab.apart: a page's heavy computation in a worker process gives what it gives here."""

from __future__ import annotations

import dataclasses
import os
import signal

import numpy as np
import pytest

from sinkd.lab import apart, toy
from sinkd.lab.divergence_lab_spec import SPEC


def test_the_lab_fit_in_the_worker_equals_the_fit_here():
    """The divergence lab's fit of its default values, computed in the worker process (another
    pid than this one), equals the fit computed here in every field bit for bit (the arrays,
    the starting parameters, the teacher, the settings), the wall time aside."""
    values = dict(SPEC.defaults, steps=30)
    assert apart.run_apart(os.getpid) != os.getpid()
    there, here = apart.run_apart(toy.fit_view, values), toy.fit_view(values)
    for field in dataclasses.fields(toy.ToyFit):
        if field.name == "seconds":
            continue
        a, b = getattr(there, field.name), getattr(here, field.name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b), field.name
        elif field.name == "init_params":
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
        else:
            assert repr(a) == repr(b), field.name


def test_an_error_in_the_worker_is_raised_here_as_it_was_raised_there():
    """A bad value makes fit_view raise a ValueError naming the argument; through the worker
    the caller gets the same type and message (the page's st.error path is unchanged)."""
    values = dict(SPEC.defaults, lr=-1.0)
    with pytest.raises(ValueError) as here:
        toy.fit_view(values)
    with pytest.raises(ValueError) as there:
        apart.run_apart(toy.fit_view, values)
    assert str(there.value) == str(here.value) and "lr" in str(there.value)


def test_a_killed_worker_costs_one_call_here_and_the_next_starts_a_new_one():
    """Killing the worker (as the out-of-memory killer would) breaks its pool: the next call
    still returns the right answer (computed in this process), and the call after that runs in
    a new worker with another pid."""
    old = apart.run_apart(os.getpid)
    os.kill(old, signal.SIGKILL)
    assert apart.run_apart(divmod, 17, 5) == (3, 2)
    new = apart.run_apart(os.getpid)
    assert new not in (old, os.getpid())


def test_the_worker_does_not_run_the_script_streamlit_is_running(tmp_path, monkeypatch):
    """While Streamlit runs a page, ``__main__`` is that page's script. A worker started then
    must not run it again (multiprocessing's workers do: they import the parent's main): with a
    fake main whose script would fail on import, a fresh worker still answers from its own
    process, not by the fallback here."""
    import sys
    import types

    script = tmp_path / "page.py"
    script.write_text("raise SystemExit('the page ran in the worker')\n")
    fake = types.ModuleType("__main__")
    fake.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", fake)
    os.kill(apart.run_apart(os.getpid), signal.SIGKILL)  # the next call needs a new worker
    apart.run_apart(os.getpid)  # a new worker, or here if the death is not seen yet
    assert apart.run_apart(os.getpid) != os.getpid()
