"""End to end: the real app served by `streamlit run`, driven by headless Debian chromium.

The module's server is fresh, and its first request is a copied deep link to a page with values
in its query (test_deep_link_first_request_shows_shell_and_url_state): in the pages-directory
mode that page runs alone, so it must set up the shell itself. Then every page of the app is
opened by its URL; it must finish running with a title, the grouped menu, no Streamlit exception
box and no browser console error. A full-page screenshot of each lands in screenshots/
(git-ignored). Chromium comes from `make browser` (apt), never from a Playwright download.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from app_pages import HOME, ROOT, app_pages, url_path
from playwright.sync_api import BrowserContext, Page, sync_playwright

import shell
from bench.ui_latency import ServerStartError, serve
from sinkd.lab import plans
from sinkd.lab.divergence_lab_spec import SPEC as LAB
from sinkd.lab.style import LABELS
from sinkd.lab.toy import FIT_DIVERGENCES
from sinkd.lab.transport_spec import SPEC as TRANSPORT
from sinkd.lab.units import sci

SHOTS = ROOT / "screenshots"
TIMEOUT_MS = 60_000  # some pages compute for a while on 2 CPU cores
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHELL_RADIO = "Plot download format"  # drawn by shell.sidebar_controls on every page
GROUPS = list(shell.NAV)  # the menu's groups: Learn, Explore, Verify, Distill
LINKS = [link.title for links in shell.NAV.values() for link in links]
DEEP_LINK = {"n": "8", "lam": "0.01"}  # a copied link to the transport page: N = 8, λ = 0.01
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


@contextlib.contextmanager
def _serve(log: Path) -> Iterator[str]:
    """Run `streamlit run app.py` on a free loopback port (the benches' server start); yield its
    base URL; always stop it. A server that does not start fails the test with its log."""
    with contextlib.ExitStack() as stack:
        try:
            base, _pid = stack.enter_context(serve(log, timeout_s=60))
        except ServerStartError as err:
            pytest.fail(str(err), pytrace=False)
        yield base


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
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh `streamlit run app.py` for the module; nothing has asked it for a page yet."""
    with _serve(tmp_path_factory.mktemp("streamlit") / "server.log") as base:
        yield base


@pytest.fixture(scope="module")
def first_visit(browser: BrowserContext, server: str) -> dict[str, Any]:
    """The deep link opened as the very first request to the fresh server, and what it showed.

    A fixture, so that the first request is this one whichever tests run and in what order:
    every other browser test waits for it through ``app_url``. A failure to render is recorded
    (``error``) for the deep-link test to report, so the other browser tests still run.
    """
    query = "&".join(f"{k}={v}" for k, v in DEEP_LINK.items())
    page = browser.new_page()
    console = Console(page)
    seen: dict[str, Any] = {"console": console.errors}
    try:
        page.goto(f"{server}/{url_path('transport')}?{query}", timeout=TIMEOUT_MS)
        _wait_until_idle(page)
        sidebar = page.locator('[data-testid="stSidebar"]')
        seen["url"] = page.url
        seen["tab_title"] = page.title()
        seen["title"] = page.locator("h1").first.inner_text().strip()
        seen["exceptions"] = _exceptions(page)
        seen["groups"] = sidebar.locator('[data-testid="stCaptionContainer"]').all_inner_texts()
        seen["links"] = _menu(page)
        seen["streamlit_menu"] = page.locator('[data-testid="stSidebarNav"]').count()
        seen["shell_radio"] = _shell_radio(page).count()
        seen["n"] = _slider_text(page, "N (batch size)")
        seen["lam"] = _slider_text(page, "λ (entropic weight, log scale)")
        seen["term"] = _metric_text(page, "SinKD term")
        _screenshot(page, "deep_link_transport")
    except Exception as err:  # reported by the deep-link test, not by every test's setup
        seen["error"] = f"{type(err).__name__}: {err}"
        with contextlib.suppress(Exception):
            page.screenshot(path=str(SHOTS / "deep_link_transport_error.png"), full_page=True)
    finally:
        page.close()
    return seen


@pytest.fixture(scope="module")
def app_url(server: str, first_visit: dict[str, Any]) -> str:
    """The module's server, once the deep link has been its first request."""
    return server


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


def _menu(page: Page) -> list[str]:
    """The titles of the sidebar's page links, in order (each link's text ends with it)."""
    links = page.locator('[data-testid="stSidebar"] [data-testid="stPageLink"]')
    return [text.split("\n")[-1].strip() for text in links.all_inner_texts()]


def _slider_text(page: Page, label: str) -> str | None:
    """The value a slider (or select slider) shows, found by its label."""
    slider = page.locator('[data-testid="stSlider"]').filter(has_text=label)
    return slider.locator('input[type="range"]').first.get_attribute("aria-valuetext")


def _metric_text(page: Page, label: str) -> str:
    """The value of the st.metric whose label starts with ``label``."""
    metric = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    value = metric.locator('[data-testid="stMetricValue"]')
    return value.inner_text(timeout=TIMEOUT_MS).strip()


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


def test_deep_link_first_request_shows_shell_and_url_state(first_visit: dict[str, Any]):
    """A copied link, the first request of a fresh server, opens its page inside the shell:
    the shell's tab title, the four menu groups with every page's link (Streamlit's own flat
    menu hidden), the shared sidebar radio, and the link's values on the widgets and in the
    computed SinKD term, which equals the library's for N = 8, λ = 0.01."""
    seen = first_visit
    assert "error" not in seen, seen
    assert not seen["exceptions"] and not seen["console"], (seen["exceptions"], seen["console"])
    assert seen["tab_title"] == "Transport plans · SinKD Lab"
    assert seen["title"] == "Transport plans"
    assert seen["groups"] == GROUPS and seen["links"] == LINKS
    assert seen["streamlit_menu"] == 0 and seen["shell_radio"] == 1
    assert (seen["n"], seen["lam"]) == ("8", "0.01")
    assert all(f"{k}={v}" in seen["url"] for k, v in DEEP_LINK.items()), seen["url"]
    v = {**TRANSPORT.defaults, **{k: TRANSPORT.parse(k, raw) for k, raw in DEEP_LINK.items()}}
    teacher, student = plans.batch_for(v["source"], v["n"], v["c"], v["noise"], v["seed"])
    history = plans.plan_history(teacher, student, reg=v["lam"], n_iters=v["T"],
                                 method=v["method"], dtype=v["dtype"], temperature=v["tau"])
    assert seen["term"] == sci(history.sinkd_value)


@pytest.mark.parametrize("page_name", app_pages())
def test_page_renders_in_browser(browser: BrowserContext, app_url: str, page_name: str):
    """A page opened by its URL finishes running: a title, the shell's menu and sidebar, no
    exception box, no console error."""
    page = browser.new_page()
    console = Console(page)
    try:
        start = time.monotonic()
        page.goto(f"{app_url}/{url_path(page_name)}", timeout=TIMEOUT_MS)
        _wait_until_idle(page)
        PAGE_SECONDS[page_name] = time.monotonic() - start
        title = page.locator("h1").first.inner_text().strip()
        assert title, f"{page_name}: empty page title"
        assert page.url.split("?")[0].rstrip("/") == f"{app_url}/{url_path(page_name)}".rstrip(
            "/"), f"{page_name}: Streamlit left the page's URL (page not found?): {page.url}"
        assert _shell_radio(page).count() == 1, f"{page_name}: the shared sidebar is missing"
        assert _menu(page) == LINKS, f"{page_name}: the shell's menu is missing"
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
            page.goto(f"{app_url}/{url_path(name)}", timeout=TIMEOUT_MS)
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
        page.goto(f"{app_url}/{url_path(name or HOME)}", timeout=TIMEOUT_MS)
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


def test_menu_link_opens_its_page(browser: BrowserContext, app_url: str):
    """Clicking a page in the shell's menu opens that page at its own URL, menu included."""
    page = browser.new_page()
    console = Console(page)
    try:
        page.goto(f"{app_url}/", timeout=TIMEOUT_MS)
        _wait_until_idle(page)
        _watch_runs(page)
        page.locator('[data-testid="stSidebar"] [data-testid="stPageLink"]').filter(
            has_text="Verify against POT").click()
        page.wait_for_function(
            "() => document.querySelector('h1')?.innerText.startsWith('Verify against POT')",
            timeout=TIMEOUT_MS)
        _wait_until_idle(page)
        assert page.url.split("?")[0] == f"{app_url}/verify"
        assert page.title() == "Verify against POT · SinKD Lab"
        assert _shell_radio(page).count() == 1
        assert not _exceptions(page), _exceptions(page)
        assert not console.errors, console.errors
    finally:
        page.close()


def test_divergence_lab_first_figure_in_viewport_one_panel_per_divergence(
        browser: BrowserContext, app_url: str):
    """At 1280x720, without scrolling, the divergence lab's first figure lies entirely in the
    viewport, and plotly drew one panel (its own subplot) per divergence the page fits, each
    titled by that divergence's label."""
    values = next(iter(LAB.presets.values())).values  # a fresh visit opens the first preset
    names = [LABELS[n] for n in FIT_DIVERGENCES if values[f"use_{n}"]]
    page = browser.new_page()
    console = Console(page)
    try:
        page.goto(f"{app_url}/{url_path('divergence_lab')}", timeout=TIMEOUT_MS)
        _wait_until_idle(page)
        assert page.viewport_size == {"width": 1280, "height": 720}
        scrolled = page.evaluate(
            """() => document.querySelector('[data-testid="stMain"]')?.scrollTop ?? 0""")
        assert scrolled == 0
        chart = page.locator('[data-testid="stPlotlyChart"]').first
        box = chart.bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 720, box
        panels = chart.locator("g.cartesianlayer > g.subplot").count()
        titles = chart.locator("g.infolayer g.annotation").all_text_contents()
        assert panels == len(names) == len(titles), (panels, titles)
        for title, name in zip(titles, names, strict=True):
            assert title.startswith(name), (title, name)
        assert not _exceptions(page), _exceptions(page)
        assert not console.errors, console.errors
    finally:
        page.close()


SETTINGS_PAGES = ["divergence_lab", "batchwise", "transport", "verify"]
OPEN_SETTINGS = '[data-testid="stExpander"] details[open]:has([data-testid="stSlider"])'
CLOSED_SETTINGS = '[data-testid="stExpander"] details:not([open]):has([data-testid="stSlider"])'


@pytest.mark.parametrize("name", SETTINGS_PAGES)
def test_settings_stay_open_when_a_slider_leaves_the_preset(
        browser: BrowserContext, app_url: str, name: str):
    """Open every expander that holds sliders, move the first slider one step (the page leaves
    its preset, so the question and reveal above the settings give way to a note): the
    rerun keeps every one of them open (an unkeyed expander whose place changed would
    collapse, and the student would have to reopen it after each move)."""
    page = browser.new_page()
    try:
        page.goto(f"{app_url}/{url_path(name)}", timeout=TIMEOUT_MS)
        _wait_until_idle(page)
        closed = page.locator(f"{CLOSED_SETTINGS} > summary")
        for _ in range(10):
            if not closed.count():
                break
            closed.first.click()
        page.wait_for_timeout(300)
        labels = page.locator(f"{OPEN_SETTINGS} > summary").all_inner_texts()
        assert labels, "no expander with sliders"
        slider = page.locator(f'{OPEN_SETTINGS} [data-testid="stSlider"]').filter(
            has=page.locator('input[type="range"]:not([disabled])')).first
        label = slider.locator('[data-testid="stWidgetLabel"]').inner_text().strip()
        thumb = slider.locator('input[type="range"]')
        before = thumb.get_attribute("aria-valuetext")
        at_max = thumb.evaluate("e => Number(e.value) >= Number(e.max)")
        _watch_runs(page)
        thumb.focus()
        thumb.press("ArrowLeft" if at_max else "ArrowRight")
        _wait_for_rerun(page)
        assert page.locator(f"{OPEN_SETTINGS} > summary").all_inner_texts() == labels
        assert _slider_text(page, label) != before
        assert not _exceptions(page), _exceptions(page)
    finally:
        page.close()


# --- projector mode and the guided lesson (issue 12) -------------------------------------------
TEXT_PAGES = {HOME, "lesson"}  # pages of text and links only: no figure to show first
# The distill page draws figures of runs only: on a fresh machine its first thing is Start.
RUN_PAGES = {"distill"}
VIEWPORT = {"width": 1280, "height": 720}
# Font sizes plotly.js drew in the first figure: tick labels, and the figure's and axes' titles.
SVG_FONTS = """(chart) => {
    const px = els => [...els].map(e => parseFloat(getComputedStyle(e).fontSize));
    return {ticks: px(chart.querySelectorAll('.xtick text, .ytick text')),
            titles: px(chart.querySelectorAll(
                'text.gtitle, text.xtitle, text.ytitle, .g-atitle text, .g-btitle text, '
                + '.g-ctitle text, text.atitle, text.btitle, text.ctitle'))}; }"""


def _open(browser: BrowserContext, url: str) -> tuple[Page, Console]:
    page = browser.new_page()
    page.set_viewport_size(VIEWPORT)
    console = Console(page)
    page.goto(url, timeout=TIMEOUT_MS)
    _wait_until_idle(page)
    return page, console


def _assert_first_figure_in_view_at_projector_sizes(page: Page, page_name: str) -> None:
    charts = page.locator('[data-testid="stPlotlyChart"]')
    assert charts.count(), f"{page_name}: no figure"
    scrolled = page.evaluate(
        """() => document.querySelector('[data-testid="stMain"]')?.scrollTop ?? 0""")
    assert scrolled == 0
    box = charts.first.bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 720, (
        f"{page_name}: first figure at y = {box and box['y']:.0f} .. "
        f"{box and box['y'] + box['height']:.0f}, not inside 0 .. 720")
    fonts = charts.first.evaluate(SVG_FONTS)
    # text was read (a simplex's axes have titles and no tick labels), none of it small
    assert fonts["ticks"] or fonts["titles"], (page_name, fonts)
    assert all(px >= 18 for px in fonts["ticks"]), (page_name, fonts)
    assert all(px >= 22 for px in fonts["titles"]), (page_name, fonts)


@pytest.mark.parametrize("page_name", app_pages())
def test_projector_mode_first_figure_in_viewport_with_projector_fonts(
        browser: BrowserContext, app_url: str, page_name: str):
    """At 1280x720 with projector=1 in the URL, the projector toggle is on and, without
    scrolling, the page's first figure lies entirely in the viewport, with every tick label
    drawn at >= 18 px and every figure or axis title at >= 22 px (read from the SVG). Pages of
    text only (home, lesson) show no figure; the distill page, whose figures are of runs, shows
    its Start button without scrolling."""
    page, console = _open(browser, f"{app_url}/{url_path(page_name)}?projector=1")
    try:
        toggle = page.locator('[data-testid="stSidebar"] [data-testid="stCheckbox"]').filter(
            has_text="Projector mode").locator("input")
        assert toggle.is_checked(), f"{page_name}: projector mode is off"
        assert "projector=1" in page.url, page.url
        charts = page.locator('[data-testid="stPlotlyChart"]')
        if page_name in TEXT_PAGES:
            assert charts.count() == 0
            return
        if page_name in RUN_PAGES:
            start = page.get_by_role("button", name="Start", exact=True).bounding_box()
            assert start is not None and 0 <= start["y"] and start["y"] + start["height"] <= 720
            return
        _assert_first_figure_in_view_at_projector_sizes(page, page_name)
        assert not _exceptions(page), _exceptions(page)
        assert not console.errors, console.errors
        _screenshot(page, f"projector_{page_name}")
    finally:
        page.close()


def test_distill_results_figure_in_view_in_projector_mode_with_saved_runs(
        browser: BrowserContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """On a server whose cache holds saved runs (the real records of docs/results: 6
    recipes x 3 seeds), the distill page at 1280x720 with projector=1 shows the results'
    figure first, wholly in the viewport without scrolling, at projector font sizes, one bar
    per recipe and the teacher's."""
    runs = tmp_path / "cache" / "runs"
    runs.mkdir(parents=True)
    results = ROOT / "docs" / "results" / "rotten-tomatoes"
    for record in sorted(results.glob("*-seed*.json")):
        (runs / record.name).write_text(record.read_text())
    recipes = {r.name.split("-seed")[0] for r in results.glob("*-seed*.json")}
    monkeypatch.setenv("SINKD_CACHE", str(tmp_path / "cache"))  # the server inherits it
    with _serve(tmp_path / "server.log") as base:
        page, console = _open(browser, f"{base}/distill?projector=1")
        try:
            _assert_first_figure_in_view_at_projector_sizes(page, "distill")
            bars = page.locator('[data-testid="stPlotlyChart"]').first.locator(
                "g.xtick text").all_text_contents()
            assert sorted(bars) == sorted(recipes | {"teacher"}), bars
            assert not _exceptions(page), _exceptions(page)
            assert not console.errors, console.errors
        finally:
            page.close()


def test_home_links_are_not_cut_off_at_1280(browser: BrowserContext, app_url: str):
    """At 1280x720 every link of the home page's main area (each page and the lesson) shows its
    whole label: its text is not clipped (scroll width within client width) and it ends inside
    the window."""
    page, console = _open(browser, f"{app_url}/")
    try:
        links = page.locator('[data-testid="stMain"] [data-testid="stPageLink"]')
        assert links.count() == len(shell.PAGES)  # the lesson's call to action, then each page
        for i in range(links.count()):
            link = links.nth(i)
            clipped = link.evaluate(
                """(l) => [...l.querySelectorAll('*')].some(
                       e => e.scrollWidth > e.clientWidth + 1 && e.clientWidth > 0
                            && getComputedStyle(e).overflow !== 'visible')""")
            box = link.bounding_box()
            assert not clipped and box["x"] + box["width"] <= 1280, link.inner_text()
        assert not console.errors, console.errors
    finally:
        page.close()


def test_lesson_runs_end_to_end(browser: BrowserContext, app_url: str):
    """From the lesson page, Start opens step 1; Next then opens every step in turn: each on its
    own page (its title), with lesson=<step> in the URL, the sidebar showing the step, and no
    exception; Finish on the last step returns to the lesson page."""
    from sinkd.lab import lesson

    page, console = _open(browser, f"{app_url}/lesson")
    try:
        _watch_runs(page)
        page.get_by_role("button", name="Start the lesson at step 1").click()
        for number, step in enumerate(lesson.STEPS, 1):
            title = shell.PAGES[step.page].title
            page.wait_for_function(
                "([t, n]) => document.querySelector('h1')?.innerText.startsWith(t) && "
                "location.search.includes('lesson=' + n)", arg=[title, number],
                timeout=TIMEOUT_MS)
            _wait_until_idle(page)
            sidebar = page.locator('[data-testid="stSidebar"]')
            assert f"step {number} of {len(lesson.STEPS)}" in sidebar.inner_text()
            assert not _exceptions(page), (number, _exceptions(page))
            if number < len(lesson.STEPS):
                sidebar.get_by_role("button", name="Next ▶").click()
        page.locator('[data-testid="stSidebar"] [data-testid="stPageLink"]').filter(
            has_text="Finish").click()
        page.wait_for_function(
            "() => document.querySelector('h1')?.innerText.startsWith('Guided lesson')",
            timeout=TIMEOUT_MS)
        assert not console.errors, console.errors
    finally:
        page.close()


def test_hostile_links_show_no_server_file_and_an_upload_trains_on_its_copy(
        browser: BrowserContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """On a server of its own (an empty sinkd cache), the link that used to print a server file
    (/distill?data_source=file&data_file=/etc/passwd) and links with 4,000-character values
    render the distill page with no exception box and nothing of /etc/passwd anywhere; a CSV
    uploaded through the page's real uploader is stored under <cache>/uploads by the sha256
    of its bytes and its rows are counted on the page."""
    import hashlib

    monkeypatch.setenv("SINKD_CACHE", str(tmp_path / "cache"))  # the server inherits it
    first_line = Path("/etc/passwd").read_text().splitlines()[0]
    long = "x" * 4000
    queries = ["data_source=file&data_file=/etc/passwd",
               f"data_source=file&data_file={long}&teacher={long}&steps={'9' * 4000}",
               f"preset={long}&{long}={long}&lr=nan&alpha=-inf"]
    with _serve(tmp_path / "server.log") as base:
        page = browser.new_page()
        try:
            for query in queries:
                page.goto(f"{base}/distill?{query}", timeout=TIMEOUT_MS)
                _wait_until_idle(page)
                text = page.locator("body").inner_text()
                assert not _exceptions(page), (query[:40], _exceptions(page))
                assert "Traceback" not in text and first_line not in text and "root:" not in text
                assert "data_file" not in page.url and long not in page.url
            # the first query chose the data set "file": its uploader is on the page
            page.goto(f"{base}/distill?data_source=file", timeout=TIMEOUT_MS)
            _wait_until_idle(page)
            rows = "".join(f"a great film {i},1\na dull film {i},0\n" for i in range(25))
            data = ("text,label\n" + rows).encode()
            page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
                {"name": "reviews.csv", "mimeType": "text/csv", "buffer": data})
            page.get_by_text("reviews.csv: 50 rows, labels ['0', '1'].").wait_for(
                timeout=TIMEOUT_MS)
            _wait_until_idle(page)
            assert not _exceptions(page), _exceptions(page)
            stored = tmp_path / "cache" / "uploads" / f"{hashlib.sha256(data).hexdigest()[:32]}.csv"
            assert stored.read_bytes() == data
            assert "2 run(s)" in page.locator("body").inner_text()
        finally:
            page.close()


def test_a_job_keeps_its_controls_in_its_browser_and_no_other(
        browser: BrowserContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """On a server of its own, a tab starts a long distillation job. Reloading that tab, and a
    second tab of the same browser, still show its Stop button (the job belongs to the browser,
    not to one Streamlit session); a second browser (another cookie jar) sees the job listed
    with no Stop button and Start disabled. Stopped from the reloaded tab, the run is offered
    for Resume there and not in the other browser, until that browser types the first one's
    transfer code (as a student whose cookie was lost would): then the run is offered there,
    and no longer in the first browser. A code that belongs to no one moves nothing and says
    so."""
    monkeypatch.setenv("SINKD_CACHE", str(tmp_path / "cache"))  # the server inherits it
    query = ("teacher_steps=0&steps=3000&batch_size=2&max_length=8&student_layers=1"
             "&train_limit=100&eval_limit=50")
    stop_button = {"role": "button", "name": "Stop", "exact": True}
    with _serve(tmp_path / "server.log") as base:
        url = f"{base}/distill?{query}"
        mine, other = browser.new_page(), browser.browser.new_context(
            viewport={"width": 1280, "height": 720})
        try:
            mine.goto(url, timeout=TIMEOUT_MS)
            _wait_until_idle(mine)
            mine.get_by_role("button", name="Start", exact=True).click()
            mine.get_by_role(**stop_button).wait_for(timeout=TIMEOUT_MS)
            mine.reload(timeout=TIMEOUT_MS)
            mine.get_by_role(**stop_button).wait_for(timeout=TIMEOUT_MS)
            second_tab = browser.new_page()
            second_tab.goto(url, timeout=TIMEOUT_MS)
            second_tab.get_by_role(**stop_button).wait_for(timeout=TIMEOUT_MS)
            second_tab.close()

            stranger = other.new_page()
            stranger.goto(url, timeout=TIMEOUT_MS)
            stranger.get_by_text("Running on this machine for other visitors").wait_for(
                timeout=TIMEOUT_MS)
            assert stranger.get_by_role(**stop_button).count() == 0
            assert stranger.get_by_role("button", name="Start", exact=True).is_disabled()

            mine.get_by_role(**stop_button).click()
            resume = {"role": "button", "name": re.compile(r"^Resume 1 stopped run")}
            mine.get_by_role(**resume).wait_for(timeout=2 * TIMEOUT_MS)
            stranger.reload(timeout=TIMEOUT_MS)
            _wait_until_idle(stranger)
            assert not stranger.get_by_role("button", name="Start", exact=True).is_disabled()
            assert stranger.get_by_role(**resume).count() == 0

            transfer = "Your runs from another browser"
            mine.get_by_text(transfer).click()
            shown = mine.get_by_text("This browser's transfer code").inner_text()
            code = re.search(r"code: ([A-Z2-9]{4}-[A-Z2-9]{4})", shown).group(1)
            stranger.get_by_text(transfer).click()
            box = stranger.get_by_label("Transfer code of your other browser")
            claim = stranger.get_by_role("button", name="Move its runs here")
            box.fill("ZZZZ-ZZZZ" if code != "ZZZZ-ZZZZ" else "YYYY-YYYY")
            box.press("Enter")
            _wait_until_idle(stranger)
            claim.click()
            stranger.get_by_text("No runs belong to that code").wait_for(timeout=TIMEOUT_MS)
            assert stranger.get_by_role(**resume).count() == 0
            box.fill(code.lower())
            box.press("Enter")
            _wait_until_idle(stranger)
            claim.click()
            stranger.get_by_text("Moved 1 run(s) of that browser here.").wait_for(
                timeout=TIMEOUT_MS)
            stranger.get_by_role(**resume).wait_for(timeout=TIMEOUT_MS)
            mine.reload(timeout=TIMEOUT_MS)
            _wait_until_idle(mine)
            assert mine.get_by_role(**resume).count() == 0
            assert not _exceptions(mine) and not _exceptions(stranger)
        finally:
            mine.close()
            other.close()
