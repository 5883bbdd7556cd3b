"""Time the app's pages in a real browser: from an input to a settled page.

Run with ``python -m bench.ui_latency`` (``--smoke`` for one page and one interaction). It starts
``streamlit run app.py`` on a free loopback port, drives headless Debian chromium
(``/usr/bin/chromium``, through Playwright) at 1280x720 through every page's presets (the
"Preset" select box) and a move of each of its sliders (one arrow key step, then the step back:
the second lands on a value the page has seen before), and prints per page the median and the
worst time from the input to a settled page; target: median <= 1 s, worst <= 2 s per
interaction (issue #12), with the transport page at N = 64, T = 100.

**Settled** (measured inside the page, on its own clock): Streamlit ran the script again (the
app's ``data-test-script-state`` went to ``running``) and is back to ``notRunning``, its running
indicator (``stStatusWidget``) is gone, no skeleton holds a chart's place, every Plotly chart has
drawn its SVG, and nothing in the document changed for ``QUIET_MS``. The time is from the input
event (the key press, caught by a capture listener) to the last change of the document before
that quiet spell (the figure's redraw, a metric, the end of the run), so the quiet spell itself
is not counted. A slider's keyboard step includes Streamlit's own debounce before it sends the
value (part of what a user waits for).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 720}
QUIET_MS = 400  # a page is settled once its document stayed unchanged this long
MEDIAN_TARGET_S, WORST_TARGET_S = 1.0, 2.0
PAGES = ("transport", "divergence_lab", "batchwise", "verify", "distill")
# Issue #12 measures the transport page at N = 64, T = 100 (a copied link sets them).
QUERIES = {"transport": {"n": "64", "T": "100"}}
PRESET_LABEL = "Preset"  # shell.View.presets draws a select box with this label

# Installed in a loaded page: the time of the next armed input, every run state of the app
# with its time, and the time of the document's last change.
INSTALL_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const s = window.__ui = {armed: false, t0: null, sawRun: false, runAt: 0, idleAt: 0,
                           lastMut: performance.now()};
  const arm = () => { if (s.armed) { s.t0 = performance.now(); s.armed = false; } };
  document.addEventListener('keydown', arm, true);
  document.addEventListener('pointerdown', arm, true);
  let prev = app.getAttribute('data-test-script-state');
  new MutationObserver((records) => {
    const now = performance.now(), state = app.getAttribute('data-test-script-state');
    s.lastMut = now;
    // A fast run can go running -> notRunning inside one batch of records: the current state
    // alone would miss it, the records' old values do not.
    const ran = state === 'running' || records.some(r => r.target === app
        && r.attributeName === 'data-test-script-state' && r.oldValue === 'running');
    if (ran && s.t0 !== null && !s.sawRun) { s.sawRun = true; s.runAt = now; }
    if (state === 'notRunning' && (state !== prev || ran)) s.idleAt = now;
    prev = state;
  }).observe(document.body, {subtree: true, childList: true, attributes: true,
                             attributeOldValue: true, characterData: true});
}"""
ARM_JS = ("() => { Object.assign(window.__ui, {armed: true, t0: null, sawRun: false, "
          "sentMsg: 0, startMsg: 0, endMsg: 0}); }")
# The app idle with every chart drawn: not running, no status widget or skeleton left (charts,
# tables and download buttons load lazily), each Plotly chart with its SVG.
IDLE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stStatusWidget"]')) return false;
  if (document.querySelector('[data-testid="stSkeleton"]')) return false;
  return [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].every(c => {
      const p = c.querySelector('.js-plotly-plot');
      return p && p._fullLayout && p.querySelector('.main-svg'); });
}"""
# False until the page settled; then seconds [input to settled, input to the run's start (the
# widget's debounce, the message, the server's queue), the run (the script, its elements
# streaming in and drawn meanwhile), the run's end to settled (drawing what came last)]. The run
# is the one the document showed; where it never read "running" (the frontend applied a whole
# run in one render, under load), the one the app's messages showed, when the page records
# them (MESSAGES_JS below: startMsg, endMsg). A fifth value: the app's answer at the page's
# socket, from the page's first message after the input (the rerun request) to the run's last
# message handled (script_finished), or -1 where the page does not record messages.
SETTLED_JS = """(quiet) => {
  const s = window.__ui, now = performance.now();
  if (s.t0 === null) return false;
  const [runAt, idleAt] = s.sawRun ? [s.runAt, s.idleAt] : [s.startMsg, s.endMsg];
  if (!runAt || !idleAt || idleAt < runAt) return false;
  if (!(""" + IDLE_JS + """)() || now - s.lastMut < quiet) return false;
  const end = Math.max(s.lastMut, idleAt);
  const answer = s.sentMsg && s.endMsg > s.sentMsg ? s.endMsg - s.sentMsg : -1000;
  return [end - s.t0, runAt - s.t0, idleAt - runAt, end - idleAt, answer].map(x => x / 1000);
}"""
# Installed before the page's own scripts: the page times of the app's websocket messages that
# start a run (ForwardMsg.new_session, field 4) and end it (script_finished, field 6) after an
# armed input, read from each message's first field past ``hash`` (1) and ``metadata`` (2),
# and the time of the page's first rerun request after that input (``sentMsg``: a BackMsg whose
# first field is rerun_script, 11).
# Under load the frontend can apply a whole run's messages in one render, so that its run state
# never reads "running" in the document; these messages still say when the run started and ended
# (SETTLED_JS reads them then).
MESSAGES_JS = """(() => {
  const kind = (data) => {
    const b = data instanceof ArrayBuffer ? new Uint8Array(data) : ArrayBuffer.isView(data)
        ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : null;
    if (b === null) return -1;
    let i = 0;
    const varint = () => { let x = 0, f = 1, c;
      do { c = b[i++]; x += (c & 0x7f) * f; f *= 128; } while (c & 0x80 && i < b.length);
      return x; };
    while (i < b.length) {
      const tag = varint(), field = Math.floor(tag / 8), wire = tag & 7;
      if (field !== 1 && field !== 2) return field;
      if (wire !== 2) return -1;
      const length = varint();  // read before i is: varint() moves i
      i += length;
    }
    return -1;
  };
  window.__messageKind = kind;  // for the tests
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (event) => {
        const s = window.__ui, now = performance.now(), field = kind(event.data);
        if (!s || s.t0 === null) return;
        if (field === 4 && !s.startMsg) s.startMsg = now;
        if (field === 6 && s.startMsg) s.endMsg = now;
      });
    }
    send(data) {
      const s = window.__ui;
      if (s && s.t0 !== null && !s.sentMsg && kind(data) === 11) s.sentMsg = performance.now();
      return super.send(data);
    }
  };
})()"""
# The same conditions for a page that was just opened (no input to time from).
LOADED_JS = """() => !!document.querySelector('h1') && (""" + IDLE_JS + """)()"""
# Every enabled slider thumb: its label, whether it sits at its maximum.
SLIDERS_JS = """() => [...document.querySelectorAll('[data-testid="stSlider"]')].flatMap(s => {
  const t = s.querySelector('input[type="range"], [role="slider"]');
  if (!t || t.disabled || t.getAttribute('aria-disabled') === 'true') return [];
  const label = (s.querySelector('[data-testid="stWidgetLabel"]')?.innerText || '').trim();
  const now = Number(t.value ?? t.getAttribute('aria-valuenow'));
  const max = Number(t.max ?? t.getAttribute('aria-valuemax'));
  return [{label, atMax: now >= max}];
})"""
# The index among the page's sliders of the one labelled exactly so (-1: gone).
SLIDER_INDEX_JS = """(label) => [...document.querySelectorAll('[data-testid="stSlider"]')]
  .findIndex(s => (s.querySelector('[data-testid="stWidgetLabel"]')?.innerText || '').trim()
                  === label)"""
THUMB = 'input[type="range"], [role="slider"]'


@dataclass
class Timing:
    """One interaction: the page, what was done, seconds to a settled page (NaN: timed out)."""

    page: str
    action: str
    seconds: float
    note: str = ""
    # input to the run's start, the run, the run's end to settled (NaN when not settled)
    phases: tuple[float, float, float] = (math.nan, math.nan, math.nan)


@dataclass
class PageResult:
    page: str
    load_s: float
    timings: list[Timing] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerStartError(RuntimeError):
    """The app server exited or did not answer its health check in time (the message holds
    its log)."""


@contextlib.contextmanager
def serve(log: Path, *, timeout_s: float = 90) -> Iterator[tuple[str, int]]:
    """Run ``streamlit run app.py`` on a free loopback port; yield (base URL, server pid); always
    stop it (its whole process group). No file watcher: others may edit the tree meanwhile (no
    spurious reruns), and watching .venv overflows inotify."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own process group, stopped whole
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ServerStartError(f"streamlit did not become healthy; its log:\n"
                                   f"{log.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as reply:
                    if reply.read().decode().strip() == "ok":
                        break
            except OSError:
                time.sleep(0.3)
        yield base, proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def chromium_path() -> str:
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if path is None:
        raise RuntimeError("chromium is not installed: run `make browser` (apt-get install "
                           "chromium)")
    return path


def page_url(base: str, page: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in QUERIES.get(page, {}).items())
    return f"{base}/{page}" + (f"?{query}" if query else "")


def open_page(tab, url: str, timeout_ms: int) -> float:
    """Open ``url``, wait until it settled, install the timers; return the seconds it took."""
    start = time.perf_counter()
    tab.goto(url, timeout=timeout_ms)
    tab.wait_for_function(LOADED_JS, timeout=timeout_ms, polling=50)
    seconds = time.perf_counter() - start
    tab.evaluate(INSTALL_JS)
    return seconds


# Collapsed expanders: those whose (hidden) content holds a slider, or every one. An expander
# drawn only while open (``on_change="rerun"``: the lab's animation) is empty while collapsed.
CLOSED = '[data-testid="stExpander"] details:not([open])'
CLOSED_WITH_SLIDERS = CLOSED + ':has([data-testid="stSlider"]) > summary'
CLOSED_ANY = CLOSED + " > summary"


def expand(tab, timeout_ms: int, *, every: bool = False) -> None:
    """Open the collapsed expanders that hold sliders, so that those are on screen to move
    (``every``: all of them, the heavier content drawn only on request included)."""
    closed = tab.locator(CLOSED_ANY if every else CLOSED_WITH_SLIDERS)
    for _ in range(50):  # the list shrinks as they open; bounded all the same
        if not closed.count():
            break
        closed.first.click(timeout=timeout_ms)
    tab.wait_for_timeout(300)


def timed(tab, page: str, action: str, act, timeout_ms: int) -> Timing:
    """Arm the timer, do ``act()``, wait for the settled page."""
    tab.evaluate(ARM_JS)
    act()
    try:
        handle = tab.wait_for_function(SETTLED_JS, arg=QUIET_MS, timeout=timeout_ms, polling=50)
    except Exception as err:  # a timeout: recorded, the run goes on
        return Timing(page, action, math.nan, f"not settled: {type(err).__name__}")
    total, *phases, _answer = map(float, handle.json_value())
    return Timing(page, action, total, phases=tuple(phases))


def slider_moves(tab, page: str, moves: int, timeout_ms: int, limit: int | None) -> list[Timing]:
    """Each enabled slider one keyboard step away and (``moves`` = 2) back again."""
    out: list[Timing] = []
    sliders = tab.evaluate(SLIDERS_JS)
    for k, info in enumerate(sliders[:limit]):
        index = tab.evaluate(SLIDER_INDEX_JS, info["label"])
        if index < 0:  # a rerun removed it
            continue
        thumb = tab.locator('[data-testid="stSlider"]').nth(index).locator(THUMB).first
        keys = ["ArrowLeft", "ArrowRight"] if info["atMax"] else ["ArrowRight", "ArrowLeft"]
        for step in range(moves):
            key = keys[step % 2]
            thumb.scroll_into_view_if_needed(timeout=timeout_ms)
            thumb.focus()
            label = f"{(info['label'] or f'slider {k}')[:30]} " + (
                "→" if key == "ArrowRight" else "←")
            out.append(timed(tab, page, label, functools.partial(thumb.press, key), timeout_ms))
    return out


def preset_names(tab, timeout_ms: int) -> list[str]:
    box = tab.locator('[data-testid="stSelectbox"]').filter(
        has=tab.locator('[data-testid="stWidgetLabel"]', has_text=PRESET_LABEL))
    if not box.count():
        return []
    field_ = box.first.locator("input")
    field_.click(timeout=timeout_ms)
    try:  # the list opens a bit later; after a slider had the focus, a click may only focus
        tab.get_by_role("option").first.wait_for(timeout=2000)
    except Exception:
        field_.press("ArrowDown")
        tab.get_by_role("option").first.wait_for(timeout=timeout_ms)
    names = [t.strip() for t in tab.get_by_role("option").all_inner_texts()]
    tab.keyboard.press("Escape")
    tab.wait_for_timeout(200)
    return names


def preset_switches(tab, page: str, timeout_ms: int, limit: int | None) -> list[Timing]:
    """Choose each preset, the one shown last, by typing its name into the box and Enter."""
    out: list[Timing] = []
    names = preset_names(tab, timeout_ms)
    if not names:
        return out
    box = tab.locator('[data-testid="stSelectbox"]').filter(
        has=tab.locator('[data-testid="stWidgetLabel"]', has_text=PRESET_LABEL)).first
    # Choosing the preset already selected runs nothing: that one waits for its turn last.
    todo, deferred = list(names), set()
    while todo and (limit is None or len(out) < limit):
        name = todo.pop(0)
        field_ = box.locator("input")
        field_.scroll_into_view_if_needed(timeout=timeout_ms)
        field_.click(timeout=timeout_ms)
        field_.fill(name)
        option = tab.get_by_role("option", name=name, exact=True)
        option.wait_for(timeout=timeout_ms)
        if option.get_attribute("aria-selected") == "true":
            field_.press("Escape")
            if name not in deferred:
                deferred.add(name)
                todo.append(name)
            continue
        out.append(timed(tab, page, f"preset: {name[:32]}",
                         functools.partial(field_.press, "Enter"), timeout_ms))
    return out


def run_page(context, base: str, page: str, *, moves: int, timeout_ms: int,
             limit: int | None, presets: bool, open_all: bool = False) -> PageResult:
    """Open ``page`` in a new tab and time its slider moves, then its presets. An error (a
    widget not found, a timeout outside a timed wait) ends the page with a failed row."""
    tab = context.new_page()
    result = PageResult(page, math.nan)
    try:
        result.load_s = open_page(tab, page_url(base, page), timeout_ms)
        expand(tab, timeout_ms, every=open_all)
        result.timings += slider_moves(tab, page, moves, timeout_ms, limit)
        if presets and (limit is None or len(result.timings) < limit):
            left = None if limit is None else limit - len(result.timings)
            result.timings += preset_switches(tab, page, timeout_ms, left)
    except Exception as err:  # reported in the table, the other pages still run
        first_line = (str(err).splitlines() or [""])[0][:120]
        result.timings.append(Timing(page, f"error: {type(err).__name__}", math.nan,
                                     first_line))
    finally:
        tab.close()
    return result


def summarize(seconds: Sequence[float]) -> dict[str, float]:
    """Median, 90th percentile (nearest rank) and maximum of the finite times; NaN if none."""
    good = sorted(s for s in seconds if math.isfinite(s))
    if not good:
        return {"n": 0, "median": math.nan, "p90": math.nan, "max": math.nan}
    p90 = good[min(len(good) - 1, math.ceil(0.9 * len(good)) - 1)]
    return {"n": len(good), "median": statistics.median(good), "p90": p90, "max": good[-1]}


def format_table(results: Sequence[PageResult]) -> str:
    head = (f"{'page':16s} {'load s':>7s} {'n':>3s} {'median s':>9s} {'worst s':>8s} "
            f"{'failed':>6s}  {'target':6s}  worst interaction")
    lines = [head, "-" * len(head)]
    for r in results:
        stats = summarize([t.seconds for t in r.timings])
        failed = sum(not math.isfinite(t.seconds) for t in r.timings)
        worst = max((t for t in r.timings if math.isfinite(t.seconds)),
                    key=lambda t: t.seconds, default=None)
        ok = (stats["n"] > 0 and not failed and stats["median"] <= MEDIAN_TARGET_S
              and stats["max"] <= WORST_TARGET_S)
        lines.append(f"{r.page:16s} {r.load_s:7.2f} {stats['n']:3d} {stats['median']:9.2f} "
                     f"{stats['max']:8.2f} {failed:6d}  {'met' if ok else 'missed':6s}  "
                     f"{worst.action if worst else '-'}")
    return "\n".join(lines)


def format_phases(groups: Sequence[tuple[str, Sequence[tuple[float, float, float]]]]) -> str:
    """Where the time goes: per group, the median of each phase of the settled interactions."""
    head = (f"{'where the time goes':22s} {'to run s':>9s} {'run s':>7s} {'after s':>8s}  "
            "(medians: input to the run's start, the script's run, its end to settled)")
    lines = [head]
    for name, phases in groups:
        done = [p for p in phases if all(math.isfinite(x) for x in p)]
        cells = [statistics.median(p[i] for p in done) if done else math.nan for i in range(3)]
        lines.append(f"{name:22s} {cells[0]:9.2f} {cells[1]:7.2f} {cells[2]:8.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ui_latency",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--pages", nargs="+", choices=PAGES, default=list(PAGES),
                        help="pages to time (default: all with sliders or presets)")
    parser.add_argument("--moves", type=int, default=2,
                        help="keyboard steps per slider: 1 away, 2 away and back (default 2)")
    parser.add_argument("--limit", type=int, default=None,
                        help="at most this many interactions per page (default: all)")
    parser.add_argument("--no-presets", action="store_true", help="slider moves only")
    parser.add_argument("--open-all", action="store_true",
                        help="open every expander first, the content drawn only on request "
                        "(the lab's training animation, full tables) included; default: only "
                        "the expanders that hold sliders")
    parser.add_argument("--timeout", type=float, default=60,
                        help="seconds to wait for one page to settle (default 60)")
    parser.add_argument("--smoke", action="store_true",
                        help="one page (transport), one slider step: a check that it works")
    parser.add_argument("--verbose", action="store_true", help="print every interaction")
    args = parser.parse_args(argv)
    if args.moves < 1:
        parser.error("--moves must be >= 1")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    if args.timeout <= 0:
        parser.error("--timeout must be > 0")
    if args.smoke:
        args.pages, args.moves, args.limit, args.no_presets = ["transport"], 1, 1, True
    try:
        results = measure(args)
    except RuntimeError as err:
        print(f"bench.ui_latency: {err}", file=sys.stderr)
        return 2
    if args.verbose:
        for r in results:
            for t in r.timings:
                print(f"  {t.page:16s} {t.action:44s} {t.seconds:7.2f} {t.note}")
    load = os.getloadavg()[0]
    print(f"Input to settled page, real browser (chromium {VIEWPORT['width']}x"
          f"{VIEWPORT['height']}); expanders open: "
          f"{'every one' if args.open_all else 'those with sliders'}; transport at N = 64, "
          f"T = 100; targets: median <= "
          f"{MEDIAN_TARGET_S:g} s, worst <= {WORST_TARGET_S:g} s; {os.cpu_count()} CPUs, load "
          f"average {load:.2f} at the end")
    print(format_table(results))
    print(format_phases([(r.page, [t.phases for t in r.timings]) for r in results]))
    return 0


def measure(args: argparse.Namespace) -> list[PageResult]:
    from playwright.sync_api import sync_playwright  # a dev dependency; bench only

    timeout_ms = int(args.timeout * 1000)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"ui_latency_{os.getpid()}.log"
    results = []
    with serve(log) as (base, _pid), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.add_init_script(MESSAGES_JS)  # a run the document never shows is still timed
            context.set_default_timeout(timeout_ms)
            # A first visit warms the server's imports, so the first page's time is its own.
            warm = context.new_page()
            open_page(warm, f"{base}/", timeout_ms)
            warm.close()
            for page in args.pages:
                print(f"  ... {page}", file=sys.stderr, flush=True)
                results.append(run_page(context, base, page, moves=args.moves,
                                        timeout_ms=timeout_ms, limit=args.limit,
                                        presets=not args.no_presets,
                                        open_all=args.open_all))
        finally:
            browser.close()
    return results


if __name__ == "__main__":
    sys.exit(main())
