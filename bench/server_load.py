"""The app server under load without browsers: protocol clients move the sliders.

Run with ``python -m bench.server_load`` (``--smoke`` for one session and one move). It starts
``streamlit run app.py`` on a free loopback port and opens ``--sessions`` websocket sessions
(default 8) that speak Streamlit's own protocol as a browser tab does: each asks for its page
(a ``BackMsg.rerun_script`` with the page's name and query; half the transport page at
N = 64, T = 100, half the divergence lab, as :mod:`bench.app_load`), reads the sliders from the
elements the run sends, then moves them as app_load's sessions do (session k starts on slider
k // 2; one step away, then back), sending each change as the browser does (the widget's new
value, the page's current query string) and waiting for the run's ``script_finished``, then
``--think`` seconds. Nothing is drawn: the time of a move is the server's answer (its queue,
the script's run, every element sent), as a class sees it when the students' browsers run on
their own machines. :mod:`bench.app_load` measures the same moves with the browsers drawing on
this machine too (its "answer" rows are this time, seen from inside the pages).

It prints the median, p90 and max per page and overall, the page opens, the server's memory and
the CPU seconds used (server, this client). Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a plain script

from bench.app_load import (  # noqa: E402
    P90_TARGET_S,
    CpuMeter,
    load_parser,
    parse_load_args,
    rss_mb,
)
from bench.ui_latency import QUERIES, serve, summarize  # noqa: E402


@dataclass
class Slider:
    """A slider as the client knows it: its widget id, label and current position."""

    id: str
    label: str
    options: list[str]  # a select_slider's formatted options; empty for a numeric slider
    low: float
    high: float
    step: float
    value: float | str | None  # None: the run did not say (a value the user set stays unsent)
    default: float | str

    def moved(self, direction: int) -> float | str:
        """The value one step away in ``direction`` (+1 / -1), kept in range."""
        if self.options:
            k = min(max(self.options.index(self.value) + direction, 0), len(self.options) - 1)
            return self.options[k]
        return round(min(max(self.value + direction * self.step, self.low), self.high), 10)

    @property
    def at_max(self) -> bool:
        return self.value == (self.options[-1] if self.options else self.high)


@dataclass
class Run:
    """What one run of a page sent: its query string, its sliders, how it finished."""

    query: str = ""
    sliders: list[Slider] = field(default_factory=list)
    finished: int = -1  # ForwardMsg.script_finished's status (0: finished successfully)


def slider_of(proto) -> Slider | None:
    """A Slider from an element's slider proto, or None where it is disabled."""
    if proto.disabled:
        return None
    options = list(proto.options)
    if options:  # select_slider: its value is the formatted option
        raw = list(proto.raw_value) if not isinstance(proto.raw_value, str) else [proto.raw_value]
        value = raw[0] if proto.set_value and raw else None
        return Slider(proto.id, proto.label, options, 0, len(options) - 1, 1, value,
                      options[int(proto.default[0])])
    value = proto.value[0] if proto.set_value and proto.value else None
    return Slider(proto.id, proto.label, [], proto.min, proto.max, proto.step, value,
                  proto.default[0])


async def read_run(ws, timeout: float) -> Run:
    """Read the messages of one run up to its ``script_finished`` (a run that ended early for
    a rerun the app asked for itself goes on into that rerun)."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    run = Run()
    while True:
        msg = ForwardMsg()
        msg.ParseFromString(await asyncio.wait_for(ws.recv(), timeout))
        kind = msg.WhichOneof("type")
        if kind == "page_info_changed":
            run.query = msg.page_info_changed.query_string
        elif kind == "delta" and msg.delta.new_element.WhichOneof("type") == "slider":
            slider = slider_of(msg.delta.new_element.slider)
            if slider is not None:
                run.sliders.append(slider)
        elif kind == "script_finished":
            run.finished = msg.script_finished
            if run.finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                return run


def rerun_request(page: str, query: str, slider: Slider | None = None,
                  value: float | str | None = None) -> bytes:
    """The BackMsg a tab sends: run ``page`` with ``query``, ``slider`` set to ``value``."""
    from streamlit.proto.BackMsg_pb2 import BackMsg

    msg = BackMsg()
    msg.rerun_script.page_name, msg.rerun_script.query_string = page, query
    if slider is not None:
        widget = msg.rerun_script.widget_states.widgets.add()
        widget.id = slider.id
        if slider.options:
            widget.string_array_value.data.append(str(value))
        else:
            widget.double_array_value.data.append(float(value))
    return msg.SerializeToString()


async def session(base: str, k: int, page: str, args: argparse.Namespace, deadline: float,
                  moves: list[tuple[str, str, float]], opened: list[tuple[str, float]]) -> None:
    import websockets  # Streamlit's own dependency

    uri = base.replace("http://", "ws://") + "/_stcore/stream"
    async with websockets.connect(uri, subprotocols=["streamlit"], max_size=None) as ws:
        query = "&".join(f"{a}={b}" for a, b in QUERIES.get(page, {}).items())
        start = time.perf_counter()
        await ws.send(rerun_request(page, query))
        run = await read_run(ws, args.timeout)
        opened.append((page, time.perf_counter() - start))
        known: dict[str, float | str] = {}  # the values this session set
        if not run.sliders:
            raise RuntimeError(f"{page}: the page sent no enabled slider (finished {run.finished})")
        direction = 1
        for m in range(args.moves):
            if time.monotonic() > deadline:
                break
            label = run.sliders[(k // 2 + m // 2) % len(run.sliders)].label
            slider = next((s for s in run.sliders if s.label == label), None)
            if slider is None:  # a rerun removed it
                continue
            if slider.value is None:  # as the tab remembers it, else the widget's default
                slider.value = known.get(label, slider.default)
            if m % 2 == 0:  # away from where it is (left at the maximum), then back
                direction = -1 if slider.at_max else 1
            value = known[label] = slider.moved(direction if m % 2 == 0 else -direction)
            start = time.perf_counter()
            await ws.send(rerun_request(page, run.query, slider, value))
            try:
                new = await read_run(ws, args.timeout)
            except TimeoutError:  # its messages may still come: this session stops here
                moves.append((page, label, math.nan))
                break
            moves.append((page, label, time.perf_counter() - start if new.finished == 0
                          else math.nan))
            run = Run(new.query or run.query, new.sliders or run.sliders, new.finished)
            await asyncio.sleep(args.think)


async def run_load(args: argparse.Namespace) -> dict:
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"server_load_{os.getpid()}.log"
    moves: list[tuple[str, str, float]] = []
    opened: list[tuple[str, float]] = []
    with serve(log) as (base, pid):
        # One warm-up visit: the server's imports and first run are not the load's.
        await session(base, 0, args.pages[0], argparse.Namespace(**{**vars(args), "moves": 0}),
                      math.inf, [], [])
        before = peak = rss_mb(pid)
        meter = CpuMeter(os.getpid(), pid)
        start = time.monotonic()
        jobs = [session(base, k, args.pages[k % len(args.pages)], args,
                        start + args.duration, moves, opened) for k in range(args.sessions)]
        gathered = asyncio.gather(*jobs)
        while not gathered.done():
            peak = max(peak, rss_mb(pid))
            meter.sample()
            await asyncio.wait([gathered], timeout=0.5)
        gathered.result()
        wall = time.monotonic() - start
        meter.sample()
        after = rss_mb(pid)
    return {"moves": moves, "opened": opened, "rss": (before, max(peak, after), after),
            "wall": wall, "cpu": meter.used()}


def format_table(result: dict) -> str:
    moves = result["moves"]
    head = f"{'moves of':22s} {'n':>4s} {'failed':>6s} {'median s':>9s} {'p90 s':>7s} {'max s':>7s}"
    lines = [head, "-" * len(head)]
    groups = [("all pages", moves)] + [
        (page, [m for m in moves if m[0] == page]) for page in sorted({m[0] for m in moves})]
    for name, group in groups:
        stats = summarize([s for *_, s in group])
        failed = sum(not math.isfinite(s) for *_, s in group)
        lines.append(f"{name:22s} {stats['n']:4d} {failed:6d} {stats['median']:9.2f} "
                     f"{stats['p90']:7.2f} {stats['max']:7.2f}")
    stats = summarize([s for _, s in result["opened"]])
    lines.append(f"{'page open (first run)':22s} {stats['n']:4d} {'':6s} {stats['median']:9.2f} "
                 f"{stats['p90']:7.2f} {stats['max']:7.2f}")
    # a move that failed counts as slower than any (nearest-rank p90 over all moves)
    times = sorted(s if math.isfinite(s) else math.inf for *_, s in moves)
    ok = bool(times) and times[math.ceil(0.9 * len(times)) - 1] <= P90_TARGET_S
    lines.append(f"server alone, p90 <= {P90_TARGET_S:g} s: {'met' if ok else 'missed'}")
    before, peak, after = result["rss"]
    lines.append(f"server RSS MB: before {before:.0f}, peak {peak:.0f}, after {after:.0f}")
    cpu, n = result["cpu"], max(len(moves), 1)
    capacity = result["wall"] * (os.cpu_count() or 1)
    lines.append(f"CPU seconds over the run (per move): {sum(cpu.values()):.0f} used of "
                 f"{capacity:.0f} available; server {cpu['server']:.0f} ({cpu['server'] / n:.2f}), "
                 f"client {cpu['driver']:.0f} ({cpu['driver'] / n:.2f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = load_parser("python -m bench.server_load", __doc__.split("\n")[0], "a run's end")
    args = parse_load_args(parser, argv)
    try:
        result = asyncio.run(run_load(args))
    except RuntimeError as err:
        print(f"bench.server_load: {err}", file=sys.stderr)
        return 2
    print(f"{args.sessions} concurrent protocol sessions ({', '.join(args.pages)}), {args.moves} "
          f"slider moves each, think {args.think:g} s; request sent to the run's last message, "
          f"nothing drawn; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the "
          f"end; wall {result['wall']:.0f} s")
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
