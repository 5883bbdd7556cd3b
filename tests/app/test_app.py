"""AppTest: every page of the app renders inside the shared shell (shell.py)."""

import ast

import pytest
from app_pages import HOME, ROOT, app_pages, open_page, script

import shell

GROUPS = ["Learn", "Explore", "Verify", "Distill"]


def test_home_renders():
    """The entry point runs and the home page shows its title and no exception."""
    at = open_page(HOME)
    assert not at.exception
    assert at.title[0].value == "SinKD Lab"


def test_home_shows_formula_and_download_format():
    """The home page shows the SinKD loss formula and the sidebar's plot download format radio."""
    at = open_page(HOME)
    assert not at.exception
    assert len(at.latex) == 1
    formula = at.latex[0].value
    assert r"\mathcal{L}_{\mathrm{SinKD}}" in formula and "Sinkhorn" in formula
    radios = [r for r in at.sidebar.get("radio") if r.key == "image_format"]
    assert len(radios) == 1
    assert radios[0].options == ["png", "svg"] and radios[0].value == "png"


def test_download_format_choice_is_kept():
    """Choosing SVG in the sidebar survives a rerun and is stored where show_figure reads it."""
    at = open_page(HOME)
    at.radio(key="image_format").set_value("svg").run()
    assert not at.exception
    assert at.session_state["image_format"] == "svg"
    assert at.radio(key="image_format").value == "svg"


@pytest.mark.parametrize("page_name", app_pages())
def test_every_page_renders_inside_the_shell(page_name):
    """Each page, run alone as a copied link runs it, shows a title, the four menu groups with a
    link to every page, the shared sidebar radio, and no exception."""
    at = open_page(page_name)
    assert not at.exception, [e.value for e in at.exception]
    assert at.title and at.title[0].value.strip()
    assert [c.value for c in at.sidebar.caption] == GROUPS
    links = [link.proto.label for link in at.sidebar.get("page_link")]
    assert links == [link.title for group in GROUPS for link in shell.NAV[group]]
    assert [r.key for r in at.sidebar.get("radio")] == ["image_format"]


def test_menu_links_every_page_once_and_only_pages():
    """The shell's menu names each script of the app exactly once, and every script it names
    exists: a new file in pages/ must be given a place in a group."""
    linked = [link.path for links in shell.NAV.values() for link in links]
    assert sorted(linked) == sorted(script(page) for page in app_pages())
    assert all((ROOT / path).is_file() for path in linked)
    assert list(shell.PAGES) == ["home", "divergence_lab", "batchwise", "transport", "verify",
                                 "distill"]


@pytest.mark.parametrize("page", app_pages())
def test_page_starts_with_the_shell(page):
    """The first statement of every script after its imports is one call to shell.page, naming
    the page itself (so its config, menu and state prefix are its own)."""
    tree = ast.parse((ROOT / script(page)).read_text())
    body = [node for node in tree.body if not isinstance(node, (ast.Import, ast.ImportFrom))
            and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
    call = body[0].value
    assert isinstance(call, ast.Call) and ast.unparse(call.func) == "shell.page"
    assert call.args[0].value == page
