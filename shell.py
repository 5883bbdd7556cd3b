"""The app's shell: what every page of SinKD Lab shares. The only Streamlit helper module of the
app, and no math: the pages' numbers and figures come from ``sinkd.lab``.

The app runs in Streamlit's pages-directory mode: ``app.py`` is the home page and each file of
``pages/`` is a page that runs on its own (a copied link runs only that file), so every one of
them starts with ONE call to :func:`page`, which sets the page up and returns its :class:`View`::

    view = shell.page("transport", SPEC)             # config, menu, shared controls, state
    view.presets()                                   # named presets + "what to notice"
    st.slider("N", *SPEC.limits["n"], key=view.key("n"))  # widgets: key=view.key(name) only
    view.reset_button()
    view.sync_url()                                  # after the widgets: the URL is the view
    with guard():                                    # a ValueError becomes st.error
        fig = plan_figures.plan_figure(...)          # one sinkd.lab call per figure
    show_figure(fig, "transport_plan")

``SPEC`` is the page's :class:`sinkd.lab.spec.PageSpec` (defaults, limits, presets), defined in
``sinkd/lab/<page>_spec.py``. Widgets take their value from ``st.session_state`` only (never pass
``value=``/``index=``), so a preset, the reset button and a copied link all set the same state.
This file sits beside ``app.py``, not in ``pages/``: every file there would become a page.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch

from sinkd.lab import lesson as guided
from sinkd.lab.spec import PageSpec
from sinkd.lab.style import projector


@dataclass(frozen=True)
class Link:
    """A page of the app in the menu: its script (relative to app.py), title and icon."""

    path: str
    title: str
    icon: str

    @property
    def name(self) -> str:
        """The page's name: its URL path, its state's prefix ("home" for app.py, at "/")."""
        return "home" if self.path == "app.py" else Path(self.path).stem


# The grouped menu drawn on every page; Streamlit's own flat list of pages/ is hidden
# (client.showSidebarNavigation = false in .streamlit/config.toml).
NAV = {
    "Learn": (Link("app.py", "Home", "🏠"), Link("pages/lesson.py", "Guided lesson", "🧭"),
              Link("pages/divergence_lab.py", "Divergence lab", "⛰️"),
              Link("pages/batchwise.py", "What SinKD matches", "🎯")),
    "Explore": (Link("pages/transport.py", "Transport plans", "🧮"),),
    "Verify": (Link("pages/verify.py", "Verify against POT", "✅"),),
    "Distill": (Link("pages/distill.py", "Distill a BERT", "🎓"),),
}
PAGES = {link.name: link for links in NAV.values() for link in links}
APP_TITLE = "SinKD Lab"
PROJECTOR = "projector"  # projector mode's session key and URL name ("1" when on)
PROJECTOR_TOGGLE = "projector_toggle"  # the sidebar toggle's widget key (+ "_<page>")
# Values of the shell, not of a page: View.sync_url keeps them in the URL beside the page's.
SHELL_PARAMS = (guided.URL_PARAM, PROJECTOR)
_LESSON_AT = "_lesson_applied"  # the lesson step whose preset this session last applied


def page(name: str, spec: PageSpec | None = None) -> View:
    """Set up page ``name`` (a key of :data:`PAGES`): wide layout and tab title, the grouped
    menu and the shared controls in the sidebar; return the View of its ``spec``."""
    if name not in PAGES:
        raise ValueError(f"page must be one of {list(PAGES)} (shell.NAV), got {name!r}")
    link = PAGES[name]
    title = APP_TITLE if name == "home" else f"{link.title} · {APP_TITLE}"
    st.set_page_config(page_title=title, page_icon=link.icon, layout="wide")
    # The pages solve many small problems: one thread is several times faster there than two
    # (measured in bench/plans_speed.py), and it leaves a core to the browser and the server.
    torch.set_num_threads(1)
    spec = spec if spec is not None else PageSpec({})
    number = _lesson_number()
    if number is not None and guided.step(number).page != name:
        go_to_step(number)  # a step's number with another page's URL: open the step's page
    if number is not None:
        _open_step(name, spec, number)
    with st.sidebar:
        if number is not None:
            lesson_bar(number, spec)
        for group, links in NAV.items():
            st.caption(group)
            for item in links:
                st.page_link(item.path, label=item.title, icon=item.icon)
    sidebar_controls(name)
    return View(name, spec)


def _lesson_number() -> int | None:
    """The lesson step the URL names (``?lesson=5``), None without one or for an invalid one."""
    raw = st.query_params.get(guided.URL_PARAM)
    if raw is None:
        return None
    try:
        return guided.parse_step(raw)
    except ValueError as err:
        st.warning(f"The link's lesson step was ignored: {err}.")
        return None


def go_to_step(number: int) -> None:
    """Open step ``number`` of the guided lesson: its page, with its preset applied."""
    st.session_state.pop(_LESSON_AT, None)
    st.switch_page(PAGES[guided.step(number).page].path,
                   query_params={guided.URL_PARAM: str(number)})


def _open_step(name: str, spec: PageSpec, number: int) -> None:
    """On arriving at a step, give the page its preset: the page's values in this session are
    dropped, then the preset's are set (a page without presets gets its defaults). A link that
    carries the page's own values or preset (a copied URL) keeps them, as outside the lesson."""
    if st.session_state.get(_LESSON_AT) == number:
        return
    st.session_state[_LESSON_AT] = number
    if "preset" in st.query_params or any(k in st.query_params for k in spec.defaults):
        return
    for key in spec.defaults:
        st.session_state.pop(f"{name}_{key}", None)
        st.session_state.pop(f"_saved_{name}_{key}", None)
    st.session_state.pop(f"{name}_preset", None)
    preset = guided.step(number).preset
    if preset is not None:
        st.session_state[f"{name}_preset"] = preset
        for key, value in spec.presets[preset].values.items():
            st.session_state[f"{name}_{key}"] = value


def lesson_bar(number: int, spec: PageSpec) -> None:
    """The current lesson step, drawn at the top of the sidebar: previous / next (first, so they
    stay in view), its question, and the reveal of what to notice."""
    step, total = guided.step(number), len(guided.STEPS)
    st.markdown(f"**🧭 Lesson · step {number} of {total}**  \n{step.title}")
    back, ahead = st.columns(2)
    if back.button("◀ Previous", key="_lesson_previous", disabled=number == 1,
                   width="stretch"):
        go_to_step(number - 1)
    if number < total:
        if ahead.button("Next ▶", key="_lesson_next", type="primary", width="stretch"):
            go_to_step(number + 1)
    else:
        ahead.page_link("pages/lesson.py", label="Finish", icon="🏁")
    st.markdown(f"**Predict first:** {step.question}")
    if st.toggle("Reveal what to notice", key=f"_lesson_reveal_{number}"):
        lines = guided.reveal_lines(step, spec.presets)
        shown = "".join(f"\n- {line}" for line in lines)
        st.success(f"**What to notice:**{shown}\n\n**For SinKD:** {step.point}" if lines
                   else f"**What to notice:** {step.point}")
    st.divider()


def sidebar_controls(page: str = "") -> None:
    """Controls shared by every page, drawn by :func:`page` (``page``: the page's name)."""
    if "image_format" not in st.session_state:
        st.session_state["image_format"] = "png"
    st.sidebar.radio("Plot download format", ["png", "svg"], key="image_format", horizontal=True,
                     help="Used by the camera button in the toolbar of every plot.")
    projector_toggle(page)


def projector_toggle(page: str = "") -> bool:
    """Projector mode: every figure restyled by :func:`sinkd.lab.style.projector` (larger
    fonts, thicker lines). Kept in the session across pages and in the URL (``projector=1``),
    so a copied link opens in the same mode."""
    # The mode lives in a plain session key; each page has its own toggle (Streamlit keeps no
    # widget's state across pages), set from that key, and its callback writes a click into it.
    if PROJECTOR not in st.session_state:  # a fresh session: the link's mode
        st.session_state[PROJECTOR] = st.query_params.get(PROJECTOR) in ("1", "true", "True")
    key = f"{PROJECTOR_TOGGLE}_{page}" if page else PROJECTOR_TOGGLE
    if st.session_state.get(key) != st.session_state[PROJECTOR]:
        st.session_state[key] = st.session_state[PROJECTOR]

    def switched() -> None:
        st.session_state[PROJECTOR] = st.session_state[key]

    on = st.sidebar.toggle("Projector mode", key=key, on_change=switched,
                           help="Large fonts and thick lines in every figure, for a class.")
    if on and st.query_params.get(PROJECTOR) != "1":
        st.query_params[PROJECTOR] = "1"
    elif not on and PROJECTOR in st.query_params:
        del st.query_params[PROJECTOR]
    return on


class View:
    """The state of one page: defaults, values from a copied link, presets, reset, URL sync."""

    def __init__(self, page: str, spec: PageSpec) -> None:
        self.page, self.spec = page, spec
        ignored = []
        for name, default in spec.defaults.items():
            key = self.key(name)
            if key in st.session_state:
                continue
            saved = st.session_state.get(self._saved(name))
            if saved is not None:  # Streamlit drops a widget's state on pages not shown: restore
                st.session_state[key] = saved
                continue
            raw = st.query_params.get(name)
            if raw is None:
                st.session_state[key] = default
                continue
            try:
                st.session_state[key] = spec.parse(name, raw)
            except ValueError:
                st.session_state[key] = default
                ignored.append(name)
        if ignored:
            st.warning(f"The link's values for {', '.join(ignored)} were not valid and were "
                       "replaced by the defaults.")

    def _saved(self, name: str) -> str:
        return f"_saved_{self.page}_{name}"

    def key(self, name: str) -> str:
        """The session-state (and widget) key of a value of this page."""
        return f"{self.page}_{name}"

    def __getitem__(self, name: str) -> Any:
        return st.session_state[self.key(name)]

    def values(self) -> dict[str, Any]:
        return {name: self[name] for name in self.spec.defaults}

    def _apply(self, values: Mapping[str, Any]) -> None:
        for name, value in values.items():
            st.session_state[self.key(name)] = value

    def presets(self, label: str = "Preset", *, notice: bool = True) -> str:
        """A selector of the spec's presets that sets the page's values; shows what to notice
        in the chosen one while the values are the preset's (``notice=False``: the page shows
        it itself, e.g. after a question's reveal)."""
        presets, key = self.spec.presets, self.key("preset")
        if key not in st.session_state:
            st.session_state[key] = st.query_params.get("preset", next(iter(presets)))
            if st.session_state[key] not in presets:
                st.session_state[key] = next(iter(presets))
            if not any(name in st.query_params for name in self.spec.defaults):
                # a fresh view shows the chosen preset; a link's own values take precedence
                self._apply(presets[st.session_state[key]].values)

        def apply() -> None:
            self._apply(presets[st.session_state[key]].values)

        name = st.selectbox(label, list(presets), key=key, on_change=apply)
        if notice:
            self.preset_notice(name)
        return name

    def header(self, title: str) -> str:
        """The page's title beside its preset selector (one row: the figure below it stays in
        view at 1280x720); returns the chosen preset's name, its note left to the page."""
        head, pick = st.columns([3, 2], vertical_alignment="bottom")
        head.title(title)
        with pick:
            return self.presets(notice=False)

    def preset_notice(self, name: str) -> None:
        """What to notice in preset ``name`` while the values are still its own."""
        if self.matches(self.spec.presets[name]):
            st.info(f"**What to notice:** {self.spec.presets[name].notice}")
        else:
            st.caption(f"The values differ from the preset *{name}*: choose it again to restore "
                       "them and its note.")

    def matches(self, preset: Any) -> bool:
        """Whether the page's values are still those ``preset`` set."""
        return all(self[k] == v for k, v in preset.values.items())

    def reset_button(self) -> None:
        """Put the page back as a fresh visit shows it: defaults, then the first preset if any."""

        def reset() -> None:
            self._apply(self.spec.defaults)
            if self.spec.presets:
                first = next(iter(self.spec.presets))
                st.session_state[self.key("preset")] = first
                self._apply(self.spec.presets[first].values)

        st.button("Reset to defaults", key=self.key("reset"), on_click=reset)

    def sync_url(self) -> None:
        """Write the page's values into the URL, so a copied link restores this exact view."""
        for name, value in self.values().items():
            st.session_state[self._saved(name)] = value
        params = {name: str(value) for name, value in self.values().items()}
        preset = st.session_state.get(self.key("preset"))
        if preset is not None:
            params["preset"] = preset
        params.update({k: st.query_params[k] for k in SHELL_PARAMS if k in st.query_params})
        if dict(st.query_params) != params:
            st.query_params.from_dict(params)


def values_of(page: str) -> dict[str, Any]:
    """Another page's values in this session (those it last showed), by name; {} if not visited."""
    saved, live = f"_saved_{page}_", f"{page}_"
    keys = list(st.session_state.keys())
    out = {k.removeprefix(saved): st.session_state[k] for k in keys if k.startswith(saved)}
    out.update({k.removeprefix(live): st.session_state[k] for k in keys if k.startswith(live)})
    return out


@contextlib.contextmanager
def guard(*kinds: type[Exception]) -> Iterator[None]:
    """Turn a ValueError (or ``kinds``) from the library into an st.error and stop this run,
    keeping the state."""
    caught = kinds or (ValueError,)
    try:
        yield
    except caught as err:
        st.error(f"Cannot compute this view: {err}")
        st.stop()


def lesson(why: str, what_to_try: str) -> None:
    """The "Why" and "What to try" text that sits beside the figures."""
    why_col, try_col = st.columns(2)
    with why_col.expander("Why", expanded=True):
        st.markdown(why)
    with try_col.expander("What to try", expanded=True):
        st.markdown(what_to_try)


LAMBDA_LABEL = "λ (entropic weight, log scale)"


def lambda_slider(view: View, name: str, label: str = LAMBDA_LABEL, *, where: Any = None,
                  help: str | None = None) -> float:
    """The app's one λ control: a log-scale select slider over the page's λ values.

    Every page's λ limit is :data:`sinkd.lab.spec.LAMBDA_VALUES` (1-2-5 steps, 0.001 to 10), so
    the same slider, with the same stops, sits on every page; ``where`` is a column or the
    sidebar (default: the page). The value round-trips through a copied link as ``str(float)``.
    """
    options = view.spec.limits.get(name)
    if not isinstance(options, tuple) or not options:
        raise ValueError(f"{name} needs a tuple of λ values as its limit (LAMBDA_VALUES), "
                         f"got {options!r}")
    return (where or st).select_slider(label, options=options, key=view.key(name),
                                       format_func=lambda v: f"{v:g}", help=help)


def show_figure(fig: go.Figure, key: str) -> None:
    """Plot a sinkd figure with the toolbar's image download in the chosen format, restyled
    for a projector in projector mode."""
    if st.session_state.get(PROJECTOR):
        fig = projector(fig)
    config = {"displaylogo": False,
              "toImageButtonOptions": {"format": st.session_state.get("image_format", "png"),
                                       "filename": key, "scale": 2}}
    st.plotly_chart(fig, key=key, config=config)


def download_numbers(data: pd.DataFrame | Mapping[str, Any], name: str, key: str) -> None:
    """A download button for the numbers shown: CSV for a table, JSON for anything else."""
    if isinstance(data, pd.DataFrame):
        st.download_button(f"Download {name}.csv", data.to_csv(index=False), f"{name}.csv",
                           "text/csv", key=key)
    else:
        text = json.dumps(_jsonable(data), indent=1, allow_nan=False)
        st.download_button(f"Download {name}.json", text, f"{name}.json", "application/json",
                           key=key)


def _jsonable(x: Any) -> Any:
    """Arrays and tensors become lists, non-finite numbers null: strict JSON."""
    if hasattr(x, "tolist"):
        x = x.tolist()
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
