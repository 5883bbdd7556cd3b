"""bench.server_load: its protocol sessions drive the real app as a browser tab does (the page
applies each move: its own URL sync shows the new value), --smoke prints its table, and the CLI
refuses bad counts.

Performance itself is not asserted (the script measures it).
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import urllib.parse

from bench.server_load import read_run, rerun_request
from bench.ui_latency import ROOT, serve


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.server_load", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_protocol_moves_change_the_page_as_a_tab_does(tmp_path):
    """Opened by name and query (N = 64, T = 100), the transport page sends its sliders with the
    values its link set (N 64, T 100, the select slider λ at 0.1, the reference default); a
    move of N to 63 (a number) and then of λ one option down (a select slider: its formatted
    option) each come back in the page's own URL (n=63, then lam=0.05 with n still 63), and
    the runs finish successfully."""
    import websockets

    async def drive(base: str) -> list[dict[str, str]]:
        uri = base.replace("http://", "ws://") + "/_stcore/stream"
        async with websockets.connect(uri, subprotocols=["streamlit"], max_size=None) as ws:
            await ws.send(rerun_request("transport", "n=64&T=100"))
            run = await read_run(ws, 120)
            assert run.finished == 0
            sliders = {s.label: s for s in run.sliders}
            n, lam = sliders["N (batch size)"], sliders["λ (entropic weight, log scale)"]
            assert (n.value, sliders["T (iterations)"].value, lam.value) == (64, 100, "0.1")
            assert lam.moved(-1) == "0.05" and n.moved(-1) == 63 and n.at_max
            queries = []
            for slider, value in ((n, 63), (lam, "0.05")):
                await ws.send(rerun_request("transport", run.query, slider, value))
                run = await read_run(ws, 120)
                assert run.finished == 0
                queries.append(dict(urllib.parse.parse_qsl(run.query)))
            return queries

    with serve(tmp_path / "server.log") as (base, _pid):
        after_n, after_lam = asyncio.run(drive(base))
    assert (after_n["n"], after_n["lam"]) == ("63", "0.1")
    assert (after_lam["n"], after_lam["lam"]) == ("63", "0.05")


def test_smoke_one_session_one_move_reports_the_server_alone():
    """`--smoke`: one protocol session moves one slider of the transport page; the table gives
    one timed move (all pages = transport, no failure, median = p90 = max, positive and
    finite), one page open, the verdict line and the server's RSS with the peak the largest."""
    out = _run("--smoke")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("moves of"))
    rows = {line[:22].strip(): line[22:].split() for line in lines[header + 2:header + 5]}
    assert set(rows) == {"all pages", "transport", "page open (first run)"}
    assert rows["all pages"] == rows["transport"]
    n, failed = int(rows["transport"][0]), int(rows["transport"][1])
    median, p90, worst = map(float, rows["transport"][2:5])
    assert (n, failed) == (1, 0) and median == p90 == worst
    assert math.isfinite(median) and median > 0
    assert any(line.startswith("server alone, p90 <= 3 s: ") for line in lines)
    rss = next(line for line in lines if line.startswith("server RSS MB"))
    before, peak, after = (float(x.strip(",")) for x in rss.split()[4::2])
    assert 0 < before <= peak and after <= peak


def test_bad_counts_exit_2_naming_the_argument():
    """More sessions than the bound, or none, zero moves, a zero duration are refused."""
    for arg, value in (("--sessions", "0"), ("--sessions", "17"), ("--moves", "0"),
                       ("--duration", "0"), ("--think", "-1")):
        out = _run(arg, value, timeout=60)
        assert out.returncode == 2 and arg in out.stderr, (arg, out.stderr)
