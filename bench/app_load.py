"""The app under load: concurrent browser sessions moving sliders, and the server's memory.

Run with ``python -m bench.app_load`` (``--smoke`` for one session and one move). It starts
``streamlit run app.py`` on a free loopback port and one headless Debian chromium with
``--sessions`` contexts (default 8, each its own Streamlit session, as 8 students' browsers);
half of them open the transport page (N = 64, T = 100, as in :mod:`bench.ui_latency`), half the
divergence lab, all at once. Each session then moves its page's sliders one keyboard step at a
time, away and back, waiting for the settled page (the definition of :mod:`bench.ui_latency`)
and ``--think`` seconds before the next move, ``--moves`` times or until ``--duration`` runs
out. Session k starts on the page's slider k // 2, so the sessions move different sliders.

It prints the median, 90th percentile and maximum time from input to settled page over all
moves (target of issue #14: p90 <= 3 s for 8 sessions on a 2-core machine), the same per page,
the time to open the page under load, the same moves up to the run's last message as the page
received it (the "answer" rows: from the page's rerun request to its ``script_finished``, the
drawing after it left out; :mod:`bench.server_load` times them with no browser at all), and the
server's resident memory (VmRSS from /proc, the process and its children) before the sessions
(after one warm-up visit), at its peak and after.
Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a plain script

from bench.ui_latency import (  # noqa: E402
    ARM_JS,
    CHROMIUM_ARGS,
    CLOSED_WITH_SLIDERS,
    INSTALL_JS,
    LOADED_JS,
    MESSAGES_JS,
    QUIET_MS,
    SETTLED_JS,
    SLIDER_INDEX_JS,
    SLIDERS_JS,
    THUMB,
    VIEWPORT,
    chromium_path,
    format_phases,
    page_url,
    serve,
    summarize,
)

P90_TARGET_S = 3.0
LOAD_PAGES = ("transport", "divergence_lab")
MAX_SESSIONS = 16  # bounded: one 2-core machine


@dataclass
class Move:
    session: int
    page: str
    action: str
    seconds: float  # NaN: did not settle within the timeout
    # input to the run's start, the run, the run's end to settled
    phases: tuple[float, float, float] = (math.nan, math.nan, math.nan)
    note: str = ""  # why a move did not settle, where known
    # the app's answer at the page's socket: its rerun request sent to the run's last message
    # handled (the server's queue and run and the transfer, without the drawing after it)
    answer: float = math.nan


def cpu_seconds(root: int, server: int) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) used so far by each process under ``root`` (this one), with
    its kind: the Streamlit ``server`` (``server``'s tree), the ``browsers`` (every chromium
    process: page renderers, compositing and rasterising on the CPU, network) and the
    ``driver`` (this process and Playwright's). Linux /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    todo = [(root, "driver")]
    while todo:
        p, kind = todo.pop()
        try:
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if p == server:
                kind = "server"
            elif kind != "server" and "chrom" in cmd.split(" ", 1)[0]:
                kind = "browsers"
            out[p] = (kind, (int(stat[11]) + int(stat[12])) / tick)  # utime + stime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [(int(c), kind) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return out


class CpuMeter:
    """CPU seconds by kind since the meter started, sampled often: a process that ends (a
    closed browser context's renderer) keeps the time last seen."""

    def __init__(self, root: int, server: int) -> None:
        self.root, self.server = root, server
        self.start = cpu_seconds(root, server)
        self.seen = dict(self.start)

    def sample(self) -> None:
        self.seen.update(cpu_seconds(self.root, self.server))

    def used(self) -> dict[str, float]:
        out = {"server": 0.0, "browsers": 0.0, "driver": 0.0}
        for pid, (kind, seconds) in self.seen.items():
            out[kind] += seconds - self.start.get(pid, (kind, 0.0))[1]
        return out


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` and its descendants, in MB (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += next(int(line.split()[1]) for line in status.splitlines()
                          if line.startswith("VmRSS:"))
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue  # gone meanwhile
    return total / 1024


async def session(browser, base: str, k: int, page: str, args: argparse.Namespace,
                  deadline: float, moves: list[Move], opened: list[tuple[str, float]],
                  together: asyncio.Barrier | None = None) -> None:
    timeout_ms = int(args.timeout * 1000)
    context = await browser.new_context(viewport=VIEWPORT)
    try:
        tab = await context.new_page()
        frames: dict[str, list[float]] = {"sent": [], "received": []}  # the app's websocket

        def watch(ws) -> None:
            ws.on("framesent", lambda _: frames["sent"].append(time.perf_counter()))
            ws.on("framereceived", lambda _: frames["received"].append(time.perf_counter()))

        tab.on("websocket", watch)
        await tab.add_init_script(MESSAGES_JS)
        start = time.perf_counter()
        await tab.goto(page_url(base, page), timeout=timeout_ms)
        await tab.wait_for_function(LOADED_JS, timeout=timeout_ms, polling=100)
        opened.append((page, time.perf_counter() - start))
        await tab.evaluate(INSTALL_JS)
        closed = tab.locator(CLOSED_WITH_SLIDERS)  # the settings, as a student opens them
        for _ in range(50):  # the list shrinks as they open; bounded all the same
            if not await closed.count():
                break
            await closed.first.click(timeout=timeout_ms)
        sliders = await tab.evaluate(SLIDERS_JS)
        if together is not None:  # every session open before the first move
            with contextlib.suppress(asyncio.BrokenBarrierError):
                await together.wait()
            together = None
        if not sliders:
            return
        first = None
        for m in range(args.moves):
            if time.monotonic() > deadline:
                break
            info = sliders[(k // 2 + m // 2) % len(sliders)]
            index = await tab.evaluate(SLIDER_INDEX_JS, info["label"])
            if index < 0:
                continue
            thumb = tab.locator('[data-testid="stSlider"]').nth(index).locator(THUMB).first
            if m % 2 == 0:  # away from where it is (left at the maximum), then back
                first = "ArrowLeft" if info["atMax"] else "ArrowRight"
                key = first
            else:
                key = "ArrowRight" if first == "ArrowLeft" else "ArrowLeft"
            await thumb.focus()
            before = await thumb.get_attribute("aria-valuetext")
            await tab.evaluate(ARM_JS)
            pressed = time.perf_counter()
            await thumb.press(key)
            note = ""
            try:
                handle = await tab.wait_for_function(SETTLED_JS, arg=QUIET_MS,
                                                     timeout=timeout_ms, polling=100)
                seconds, *phases, answer = map(float, await handle.json_value())
                if not await tab.evaluate("() => window.__ui.sawRun"):
                    note = "the document never showed the run running: timed by its messages"
            except Exception:  # a timeout: counted as failed, the session goes on
                seconds, phases, answer = math.nan, [math.nan] * 3, math.nan
                after = await thumb.get_attribute("aria-valuetext")
                ran = await tab.evaluate("() => window.__ui.sawRun")
                state = await tab.evaluate("() => document.querySelector("
                                           "'[data-testid=\"stApp\"]')?.getAttribute("
                                           "'data-test-script-state')")
                sent, received = (sum(t >= pressed for t in frames[kind]) for kind in frames)
                changed = await tab.evaluate("() => (window.__ui.lastMut - window.__ui.t0) / 1000")
                note = (f"value {before} -> {after}, "
                        + ("a run started" if ran else "no run started")
                        + f"; after the key {sent} message(s) sent, {received} received; "
                        f"app {state}; document last changed {changed:.2f} s after the key")
            arrow = "→" if key == "ArrowRight" else "←"
            moves.append(Move(k, page, f"{info['label'][:30]} {arrow}", seconds,
                              tuple(phases), note, answer if answer >= 0 else math.nan))
            await asyncio.sleep(args.think)
    finally:
        if together is not None:  # this session failed to open: the others move without it
            await together.abort()
        await context.close()


async def run_load(args: argparse.Namespace) -> dict:
    from playwright.async_api import async_playwright  # a dev dependency; bench only

    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"app_load_{os.getpid()}.log"
    moves: list[Move] = []
    opened: list[tuple[str, float]] = []
    peak = [0.0]
    with serve(log) as (base, pid):
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium_path(), headless=True,
                                               args=CHROMIUM_ARGS)
            try:
                # One warm-up visit: the server's imports and first run are not the load's.
                context = await browser.new_context(viewport=VIEWPORT)
                tab = await context.new_page()
                await tab.goto(f"{base}/", timeout=int(args.timeout * 1000))
                await tab.wait_for_function(LOADED_JS, timeout=int(args.timeout * 1000))
                await context.close()
                before = rss_mb(pid)
                peak[0] = before
                meter = CpuMeter(os.getpid(), pid)

                async def sample() -> None:
                    while True:
                        peak[0] = max(peak[0], rss_mb(pid))
                        meter.sample()
                        await asyncio.sleep(0.5)

                sampler = asyncio.create_task(sample())
                start = time.monotonic()
                deadline = start + args.duration
                pages = args.pages
                together = asyncio.Barrier(args.sessions) if args.together else None
                jobs = [session(browser, base, k, pages[k % len(pages)], args, deadline, moves,
                                opened, together) for k in range(args.sessions)]
                # Bounded in time: the sessions stop moving at the deadline; this is the cap on
                # the last waits.
                await asyncio.wait_for(asyncio.gather(*jobs),
                                       timeout=args.duration + 2 * args.timeout + 60)
                wall = time.monotonic() - start
                meter.sample()
                cpu = meter.used()
                sampler.cancel()
                after = rss_mb(pid)
                peak[0] = max(peak[0], after)
            finally:
                await browser.close()
    return {"moves": moves, "opened": opened, "rss_before": before, "rss_peak": peak[0],
            "rss_after": after, "wall": wall, "cpu": cpu}


def format_table(result: dict, sessions: int) -> str:
    moves: list[Move] = result["moves"]
    head = (f"{'moves of':22s} {'n':>4s} {'failed':>6s} {'median s':>9s} {'p90 s':>7s} "
            f"{'max s':>7s}")
    lines = [head, "-" * len(head)]
    groups = [("all pages", moves)] + [
        (page, [m for m in moves if m.page == page]) for page in sorted({m.page for m in moves})]
    for name, group in groups:
        stats = summarize([m.seconds for m in group])
        failed = sum(not math.isfinite(m.seconds) for m in group)
        lines.append(f"{name:22s} {stats['n']:4d} {failed:6d} {stats['median']:9.2f} "
                     f"{stats['p90']:7.2f} {stats['max']:7.2f}")
    for name, group in groups:  # the same moves, up to the run's last message only
        stats = summarize([m.answer for m in group if math.isfinite(m.answer)])
        lines.append(f"{'answer ' + name:22s} {stats['n']:4d} {'':6s} "
                     f"{stats['median']:9.2f} {stats['p90']:7.2f} {stats['max']:7.2f}")
    opened = summarize([s for _, s in result["opened"]])
    lines.append(f"{'page open (first run)':22s} {opened['n']:4d} {sessions - opened['n']:6d} "
                 f"{opened['median']:9.2f} {opened['p90']:7.2f} {opened['max']:7.2f}")
    # a move that never settled counts as slower than any (nearest-rank p90 over all moves)
    times = sorted(m.seconds if math.isfinite(m.seconds) else math.inf for m in moves)
    ok = bool(times) and times[math.ceil(0.9 * len(times)) - 1] <= P90_TARGET_S
    lines.append(f"target p90 <= {P90_TARGET_S:g} s: {'met' if ok else 'missed'}")
    unseen = sum(m.note.startswith("the document never showed") for m in moves)
    if unseen:
        lines.append(f"{unseen} move(s) timed by the app's messages: the document never showed "
                     "their run running (one render for the whole run)")
    lines.append(f"server RSS MB: before {result['rss_before']:.0f}, peak "
                 f"{result['rss_peak']:.0f}, after {result['rss_after']:.0f}")
    # Where the machine's CPU went (page opens included): in a classroom the browsers run on
    # the students' machines, here they share the server's cores.
    cpu, n = result["cpu"], max(len(moves), 1)
    used = sum(cpu.values())
    capacity = result["wall"] * (os.cpu_count() or 1)
    if used:
        lines.append(f"CPU seconds over the run (per move, share): {used:.0f} used of "
                     f"{capacity:.0f} available; " + ", ".join(
                         f"{k} {v:.0f} ({v / n:.2f}, {v / used:.0%})" for k, v in cpu.items()))
    return "\n".join(lines)


def load_parser(prog: str, description: str, until: str) -> argparse.ArgumentParser:
    """The options app_load and server_load share (``until``: what ends a move's wait)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--sessions", type=int, default=8,
                        help=f"concurrent sessions, 1 to {MAX_SESSIONS} (default 8)")
    parser.add_argument("--moves", type=int, default=8,
                        help="slider moves per session (default 8)")
    parser.add_argument("--duration", type=float, default=300,
                        help="seconds after which no session starts a new move (default 300)")
    parser.add_argument("--think", type=float, default=1.0,
                        help=f"seconds a session waits after {until} (default 1)")
    parser.add_argument("--timeout", type=float, default=120,
                        help=f"seconds to wait for {until} (default 120)")
    parser.add_argument("--pages", nargs="+", choices=LOAD_PAGES, default=list(LOAD_PAGES),
                        help="pages the sessions use, in turn (default: both)")
    parser.add_argument("--smoke", action="store_true",
                        help="one session on the transport page, one move")
    return parser


def parse_load_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse and check the shared options (exit 2 naming a bad one); ``--smoke`` applied."""
    args = parser.parse_args(argv)
    if not 1 <= args.sessions <= MAX_SESSIONS:
        parser.error(f"--sessions must be in 1..{MAX_SESSIONS}")
    if args.moves < 1:
        parser.error("--moves must be >= 1")
    for name in ("duration", "timeout"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be > 0")
    if args.think < 0:
        parser.error("--think must be >= 0")
    if args.smoke:
        args.sessions, args.moves, args.pages, args.think = 1, 1, ["transport"], 0.0
    return args


def main(argv: list[str] | None = None) -> int:
    parser = load_parser("python -m bench.app_load", __doc__.split("\n")[0],
                         "a settled page")
    parser.add_argument("--together", action="store_true",
                        help="no session moves before every page is open (default: each moves "
                        "once its own page is open, while others still open theirs)")
    parser.add_argument("--verbose", action="store_true", help="print every move")
    args = parse_load_args(parser, argv)
    try:
        result = asyncio.run(run_load(args))
    except RuntimeError as err:
        print(f"bench.app_load: {err}", file=sys.stderr)
        return 2
    if args.verbose:
        for m in result["moves"]:
            print(f"  session {m.session} {m.page:15s} {m.action:34s} {m.seconds:7.2f} "
                  f"{m.note}")
    print(f"{args.sessions} concurrent sessions ({', '.join(args.pages)}), {args.moves} slider "
          f"moves each, think {args.think:g} s, "
          + ("moving once every page is open" if args.together else
             "each moving once its page is open")
          + f"; input to settled page; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at the end; wall {result['wall']:.0f} s")
    print(format_table(result, args.sessions))
    pages = sorted({m.page for m in result["moves"]})
    print(format_phases([("all pages", [m.phases for m in result["moves"]])] + [
        (page, [m.phases for m in result["moves"] if m.page == page]) for page in pages]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
