"""End to end: the real app served by `streamlit run`, driven by headless Debian chromium.

Every page of views/ (not starting with "_") is opened in the browser; it must finish running
with a title, no Streamlit exception box and no browser console error. A full-page screenshot of
each lands in screenshots/ (git-ignored). Chromium comes from `make browser` (apt), never from a
Playwright download.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DEFAULT_PAGE, ROOT, app_pages  # tests/app/conftest.py
from playwright.sync_api import BrowserContext, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

SHOTS = ROOT / "screenshots"
TIMEOUT_MS = 60_000  # some pages compute for a while on 2 CPU cores
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHELL_RADIO = "Plot download format"  # drawn by views/_shell.sidebar_controls on every page
# Streamlit's frontend, opened on a page's own URL, first probes <page>/_stcore/health and
# <page>/_stcore/host-config to find the server's base path; those probes 404 before it tries
# "/" (streamlit/streamlit#7074, open). They are its own requests, not an error of this app.
# st.plotly_chart first draws an empty frame, then plotly.js fills it with its SVG.
PLOTS_DRAWN = """() => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].every(
    c => { const p = c.querySelector('.js-plotly-plot');
           return p && p._fullLayout && p.querySelector('.main-svg'); })"""
# Noted by test_page_renders_in_browser: seconds each page took to render, pages with a slider.
PAGE_SECONDS: dict[str, float] = {}
SLIDER_PAGES: set[str] = set()
BASE_PATH_PROBE = re.compile(r"^http://127\.0\.0\.1:\d+/[^/]+/_stcore/(health|host-config)$")


def _url_path(page_name: str) -> str:
    """The URL of a page: its file stem, except the default page, which is served at "/"."""
    return "" if page_name == DEFAULT_PAGE else page_name


@contextlib.contextmanager
def _serve(log: Path) -> Iterator[str]:
    """Run `streamlit run app.py` on a free loopback port; yield its base URL; always stop it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1",
           "--browser.gatherUsageStats", "false",
           # No file watcher: others edit the tree while tests run (no spurious reruns), and
           # watching .venv overflows inotify.
           "--server.fileWatcherType", "none"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # own process group, killed as a whole
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not become healthy; its log:\n{log.read_text()}",
                            pytrace=False)
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as reply:
                    if reply.read().decode().strip() == "ok":
                        break
            except OSError:
                time.sleep(0.3)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    """Headless Debian chromium driven by Playwright; fails (not skips) when it is missing.

    One context for the module: its HTTP cache spares reloading Streamlit's scripts per tab;
    every tab is still its own Streamlit session.
    """
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: run `make browser` (apt-get install chromium) "
                    "before the end-to-end browser tests.", pytrace=False)
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched.new_context(viewport={"width": 1280, "height": 720})
        finally:
            launched.close()


@pytest.fixture(scope="module")
def app_url(browser: BrowserContext, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server for the module, opened once at "/" as a user does after `make run`."""
    with _serve(tmp_path_factory.mktemp("streamlit") / "server.log") as base:
        # The very first run of a fresh server decides its multipage mode; that first run is
        # checked on its own by test_shared_link_opens_page_inside_app_shell.
        page = browser.new_page()
        page.goto(base + "/")
        _wait_until_idle(page)
        page.close()
        yield base


class Console:
    """Console errors and uncaught page errors of one browser tab."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda err: self.errors.append(f"pageerror: {err}"))

    def _on_console(self, msg) -> None:
        if msg.type != "error":
            return
        url = msg.location.get("url", "")
        if msg.text.startswith("Failed to load resource: the server responded with a status "
                               "of 404") and BASE_PATH_PROBE.match(url):
            return
        self.errors.append(f"console.error: {msg.text} ({url})")


def _wait_until_idle(page: Page) -> None:
    """Wait for the app to be connected, titled and done running, with every plot drawn."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=TIMEOUT_MS)
    page.wait_for_selector("h1", timeout=TIMEOUT_MS)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]',
                           timeout=TIMEOUT_MS)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached",
                           timeout=TIMEOUT_MS)
    page.wait_for_load_state("networkidle", timeout=TIMEOUT_MS)
    # Charts, tables and download buttons are lazily loaded: a skeleton holds their place until
    # their code has arrived, after the run has ended.
    page.wait_for_selector('[data-testid="stSkeleton"]', state="detached", timeout=TIMEOUT_MS)
    page.wait_for_function(PLOTS_DRAWN, timeout=TIMEOUT_MS)


def _exceptions(page: Page) -> list[str]:
    return page.locator('[data-testid="stException"]').all_inner_texts()


def _shell_radio(page: Page):
    return page.locator('[data-testid="stSidebar"] [data-testid="stRadio"]').filter(
        has_text=SHELL_RADIO)


def _screenshot(page: Page, name: str) -> Path:
    """Save the whole page: Streamlit scrolls inside stMain, so grow the viewport to fit it."""
    height = page.evaluate(
        """() => { const m = document.querySelector('[data-testid="stMain"]');
                   return m ? m.scrollHeight : document.documentElement.scrollHeight; }""")
    page.set_viewport_size({"width": 1280, "height": min(max(int(height), 720), 16_000)})
    page.wait_for_timeout(300)  # let plotly relayout to the new size
    page.wait_for_function(PLOTS_DRAWN, timeout=TIMEOUT_MS)
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_pages_are_discovered():
    """The page list comes from views/ and holds the default page served at "/"."""
    pages = app_pages()
    assert pages[0] == DEFAULT_PAGE
    assert all(not p.startswith("_") for p in pages)


def test_page_renders_in_browser(browser: BrowserContext, app_url: str, page_name: str):
    """A page opened by its URL finishes running: a title, no exception box, no console error."""
    page = browser.new_page()
    console = Console(page)
    try:
        start = time.monotonic()
        page.goto(f"{app_url}/{_url_path(page_name)}", timeout=TIMEOUT_MS)
        _wait_until_idle(page)
        PAGE_SECONDS[page_name] = time.monotonic() - start
        title = page.locator("h1").first.inner_text().strip()
        assert title, f"{page_name}: empty page title"
        assert page.url.split("?")[0].rstrip("/") == f"{app_url}/{_url_path(page_name)}".rstrip(
            "/"), f"{page_name}: Streamlit left the page's URL (page not found?): {page.url}"
        assert _shell_radio(page).count() == 1, f"{page_name}: the shared sidebar is missing"
        if page.locator('[data-testid="stSlider"]').count():
            SLIDER_PAGES.add(page_name)
        _screenshot(page, page_name)
        assert not _exceptions(page), f"{page_name}: exception shown:\n{_exceptions(page)}"
        assert not console.errors, f"{page_name}: browser console errors:\n{console.errors}"
    finally:
        page.close()


def _watch_runs(page: Page) -> None:
    """Record every script state stApp goes through from now on, to see a rerun happen."""
    page.evaluate(
        """() => { const app = document.querySelector('[data-testid="stApp"]');
                   window.__runStates = [];
                   new MutationObserver(() => window.__runStates.push(
                       app.getAttribute('data-test-script-state'))).observe(
                       app, {attributes: true, attributeFilter: ['data-test-script-state']}); }""")


def _wait_for_rerun(page: Page) -> None:
    page.wait_for_function("() => window.__runStates.includes('running')", timeout=TIMEOUT_MS)
    _wait_until_idle(page)


def _page_with_slider(browser: BrowserContext, app_url: str) -> str | None:
    """The quickest page with a slider, from the page tests' notes, else by opening the pages."""
    if SLIDER_PAGES:
        return min(SLIDER_PAGES, key=PAGE_SECONDS.__getitem__)
    for name in app_pages():
        page = browser.new_page()
        try:
            page.goto(f"{app_url}/{_url_path(name)}", timeout=TIMEOUT_MS)
            _wait_until_idle(page)
            if page.locator('[data-testid="stSlider"]').count():
                return name
        finally:
            page.close()
    return None


def test_widget_change_reruns_without_exception(browser: BrowserContext, app_url: str):
    """Moving the first slider (else the sidebar radio) reruns the app and keeps the new value."""
    name = _page_with_slider(browser, app_url)
    page = browser.new_page()
    console = Console(page)
    try:
        page.goto(f"{app_url}/{_url_path(name or DEFAULT_PAGE)}", timeout=TIMEOUT_MS)
        _wait_until_idle(page)
        _watch_runs(page)
        if name is not None:
            enabled = '[data-testid="stSlider"] input[type="range"]:not([disabled])'
            thumb = page.locator(enabled).first
            before = thumb.get_attribute("aria-valuetext")
            at_max = thumb.evaluate("e => Number(e.value) >= Number(e.max)")
            thumb.focus()
            thumb.press("ArrowLeft" if at_max else "ArrowRight")
            _wait_for_rerun(page)
            after = thumb.get_attribute("aria-valuetext")
            assert after != before, f"{name}: the slider did not move from {before}"
            # The server's rerun kept the value the user chose (it did not reset the widget).
            page.wait_for_timeout(500)
            assert thumb.get_attribute("aria-valuetext") == after
        else:
            radio = _shell_radio(page)
            radio.get_by_text("svg", exact=True).click()
            _wait_for_rerun(page)
            page.wait_for_timeout(500)
            assert radio.locator("input").nth(1).is_checked(), "svg was not kept after the rerun"
        assert not _exceptions(page), _exceptions(page)
        assert not console.errors, console.errors
    finally:
        page.close()


def test_shared_link_opens_page_inside_app_shell(browser: BrowserContext, tmp_path: Path):
    """On a fresh server, a copied link to a page runs it through app.py: menu and sidebar shown."""
    others = sorted((p for p in app_pages() if p != DEFAULT_PAGE),
                    key=lambda p: PAGE_SECONDS.get(p, 0.0))  # the quickest page when known
    assert others, "the app has a single page"
    with _serve(tmp_path / "server.log") as base:
        page = browser.new_page()
        console = Console(page)
        try:
            page.goto(f"{base}/{others[0]}", timeout=TIMEOUT_MS)
            # The menu and the shell come before the page's own work: no need to wait for it.
            page.wait_for_selector('[data-testid="stSidebarNav"]', timeout=TIMEOUT_MS)
            page.wait_for_selector("h1", timeout=TIMEOUT_MS)
            nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
            assert "shell" not in nav.lower(), f"helper module listed as a page: {nav!r}"
            with contextlib.suppress(PlaywrightTimeoutError):  # same run, may be laid out later
                _shell_radio(page).first.wait_for(timeout=TIMEOUT_MS)
            assert _shell_radio(page).count() == 1, (
                f"/{others[0]} ran without app.py (no shared sidebar); menu: {nav!r}")
            with contextlib.suppress(PlaywrightTimeoutError):  # the title is set after a render
                page.wait_for_function("document.title === 'SinKD Lab'", timeout=TIMEOUT_MS)
            assert page.title() == "SinKD Lab", "app.py's st.set_page_config did not run"
            assert not console.errors, console.errors
        finally:
            page.close()
