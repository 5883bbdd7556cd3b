"""Whether a run is still going: the status of a run record and the process that writes it.

A record says ``running`` while its run trains, with the writing process (pid, host and the
process's start time, so a reused pid is not mistaken for it) and a heartbeat (the time of its
last write, renewed at least every :data:`HEARTBEAT_S` seconds). A reader turns a ``running``
record whose process is gone into ``crashed`` (kill -9, a server crash, a second Ctrl-C, an
exception): on the same host from the process table; on another host (a shared file system)
when the heartbeat is older than :data:`STALE_S`.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from typing import Any

STATUSES = ("running", "stopped", "finished", "crashed")
HEARTBEAT_S = 60.0  # a running run rewrites its record at least this often (seconds)
STALE_S = 10 * HEARTBEAT_S  # another host's run whose heartbeat is older is taken as dead


def _start_time(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces or parentheses: count fields after the last ")"
    fields = text[text.rfind(")") + 2:].split()
    return int(fields[19]) if len(fields) > 19 else None


def this_process() -> dict[str, Any]:
    """The writing process: pid, host name, and its start time where the OS gives one.

    >>> p = this_process()
    >>> p["pid"] == os.getpid() and p["host"] == socket.gethostname()
    True
    """
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "pid_start": _start_time(pid)}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OverflowError, ValueError):
        return False
    return True


def process_alive(process: dict[str, Any] | None, heartbeat: str | None,
                  now: datetime | None = None) -> bool:
    """Whether the process that wrote a ``running`` record may still be running it.

    Same host: the pid exists and (where known) started when the record says. Another host:
    the heartbeat is younger than :data:`STALE_S`. No process recorded: False.

    >>> process_alive(this_process(), None)
    True
    >>> process_alive({"pid": 2**22 + 1, "host": socket.gethostname()}, None)
    False
    """
    if not isinstance(process, dict) or not isinstance(process.get("pid"), int):
        return False
    if process.get("host") == socket.gethostname():
        pid = process["pid"]
        if not _pid_alive(pid):
            return False
        started = process.get("pid_start")
        return started is None or _start_time(pid) in (None, started)  # a reused pid differs
    try:
        beat = datetime.fromisoformat(str(heartbeat))
    except ValueError:
        return False
    if beat.tzinfo is None:
        beat = beat.replace(tzinfo=UTC)
    return ((now or datetime.now(UTC)) - beat).total_seconds() < STALE_S


def resolve(status: str, process: dict[str, Any] | None, heartbeat: str | None) -> str:
    """A record's status as a reader should see it: ``running`` becomes ``crashed`` when its
    process is gone.

    >>> resolve("running", None, None), resolve("finished", None, None)
    ('crashed', 'finished')
    """
    if status == "running" and not process_alive(process, heartbeat):
        return "crashed"
    return status
