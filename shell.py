"""Classroom conventions shared by every page: the only Streamlit helper module (no math here).

How a page uses it (see views/transport.py for a full example)::

    view = View("transport", DEFAULTS, LIMITS)       # state from defaults or from a copied URL
    view.presets(PRESETS)                             # named presets + "what to notice"
    st.slider("N", 2, 64, key=view.key("n"))          # widgets: key=view.key(name), no value=
    view.reset_button()
    view.sync_url()                                   # after the widgets: the URL is the view
    with guard():                                     # a ValueError becomes st.error, no traceback
        fig = sinkd.some_figure(view["n"], ...)
    show_figure(fig, "transport_plan")

Widgets take their value from ``st.session_state`` only (never pass ``value=``/``index=``), so a
preset, the reset button and a copied link all set the same state.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st


@dataclass(frozen=True)
class Preset:
    """A named setting of some of a page's values, with the one thing to notice in it."""

    values: Mapping[str, Any]
    notice: str


def _coerce(raw: str, default: Any, limit: Any) -> Any:
    """Parse a URL value into the default's type and clamp it to its limit; ValueError if bad."""
    if isinstance(default, bool):
        if raw.lower() not in ("true", "false"):
            raise ValueError(raw)
        return raw.lower() == "true"
    if isinstance(default, int):
        value: Any = int(float(raw))  # OverflowError for "inf": caught by the caller
    elif isinstance(default, float):
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError(raw)
    else:
        value = raw
    if isinstance(limit, tuple) and len(limit) == 2 and not isinstance(default, str):
        value = min(max(value, limit[0]), limit[1])
    elif isinstance(limit, (tuple, list)) and value not in limit:
        raise ValueError(raw)
    return value


class View:
    """The state of one page: defaults, values from a copied link, presets, reset, URL sync."""

    def __init__(self, page: str, defaults: Mapping[str, Any],
                 limits: Mapping[str, Any] | None = None) -> None:
        self.page, self.defaults, self.limits = page, dict(defaults), dict(limits or {})
        ignored = []
        for name, default in self.defaults.items():
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
                st.session_state[key] = _coerce(raw, default, self.limits.get(name))
            except (ValueError, OverflowError):
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
        return {name: self[name] for name in self.defaults}

    def _apply(self, values: Mapping[str, Any]) -> None:
        for name, value in values.items():
            st.session_state[self.key(name)] = value

    def presets(self, presets: Mapping[str, Preset], label: str = "Preset") -> str:
        """A preset selector that sets the page's values; shows what to notice in the chosen one."""
        key = self.key("preset")
        self._presets = presets
        if key not in st.session_state:
            st.session_state[key] = st.query_params.get("preset", next(iter(presets)))
            if st.session_state[key] not in presets:
                st.session_state[key] = next(iter(presets))
            if not any(name in st.query_params for name in self.defaults):
                # a fresh view shows the chosen preset; a link's own values take precedence
                self._apply(presets[st.session_state[key]].values)

        def apply() -> None:
            self._apply(presets[st.session_state[key]].values)

        name = st.selectbox(label, list(presets), key=key, on_change=apply)
        preset = presets[name]
        if all(self[k] == v for k, v in preset.values.items()):
            st.info(f"**What to notice:** {preset.notice}")
        else:
            st.caption(f"The values differ from the preset *{name}*: choose it again to restore "
                       "them and its note.")
        return name

    def reset_button(self) -> None:
        """Put the page back as a fresh visit shows it: defaults, then the first preset if any."""

        def reset() -> None:
            self._apply(self.defaults)
            presets = getattr(self, "_presets", None)
            if presets:
                first = next(iter(presets))
                st.session_state[self.key("preset")] = first
                self._apply(presets[first].values)

        st.button("Reset to defaults", key=self.key("reset"), on_click=reset)

    def sync_url(self) -> None:
        """Write the page's values into the URL, so a copied link restores this exact view."""
        for name, value in self.values().items():
            st.session_state[self._saved(name)] = value
        params = {name: str(value) for name, value in self.values().items()}
        preset = st.session_state.get(self.key("preset"))
        if preset is not None:
            params["preset"] = preset
        if dict(st.query_params) != params:
            st.query_params.from_dict(params)


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


def sidebar_controls() -> None:
    """Controls shared by every page, drawn once per run by app.py."""
    if "image_format" not in st.session_state:
        st.session_state["image_format"] = "png"
    st.sidebar.radio("Plot download format", ["png", "svg"], key="image_format", horizontal=True,
                     help="Used by the camera button in the toolbar of every plot.")


def show_figure(fig, key: str) -> None:
    """Plot a sinkd figure with the toolbar's image download in the chosen format."""
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
