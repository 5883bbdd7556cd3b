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
    assert list(shell.PAGES) == ["home", "lesson", "divergence_lab", "batchwise", "transport",
                                 "verify", "distill"]


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


def test_home_links_every_page_and_the_lesson():
    """The home page's main area links every page of the app but itself, the guided lesson
    first (its call to action), each card's link being the page's short menu title."""
    at = open_page(HOME)
    links = [link.proto for link in at.main.get("page_link")]
    assert links[0].page == "lesson"
    assert {link.page for link in links} == set(shell.PAGES) - {HOME}
    cards = {link.page: link.label.strip("*") for link in links[1:]}
    assert cards == {name: shell.PAGES[name].title for name in shell.PAGES if name != HOME}


def test_home_names_exactly_the_pages_that_have_presets():
    """The home page's sentence on presets names exactly the pages whose spec has presets
    (their menu titles), so it stays true when a page gains or loses presets."""
    from sinkd.distill import RECIPES
    from sinkd.distill.glue import GLUE_TASKS
    from sinkd.lab import (
        batchwise_spec,
        distill_spec,
        divergence_lab_spec,
        transport_spec,
        verify_spec,
    )

    specs = {"divergence_lab": divergence_lab_spec.SPEC, "batchwise": batchwise_spec.SPEC,
             "transport": transport_spec.SPEC, "verify": verify_spec.SPEC,
             "distill": distill_spec.spec(RECIPES, GLUE_TASKS)}
    at = open_page(HOME)
    (line,) = [m.value for m in at.markdown if "have presets" in m.value]
    named = {name for name, link in shell.PAGES.items() if link.title in line}
    assert named == {name for name, spec in specs.items() if spec.presets}, line


def test_projector_mode_follows_the_user_across_pages():
    """Projector mode switched on at home stays on when the menu opens another page (a link
    without a query string): the toggle is on there and projector=1 is back in its URL."""
    at = open_page(HOME)
    at.toggle(key="projector_toggle_home").set_value(True).run()
    at.query_params.clear()  # the menu link to a page carries no query string
    at.switch_page("pages/lesson.py").run()
    assert not at.exception
    assert at.toggle(key="projector_toggle_lesson").value is True
    assert at.query_params["projector"] == "1"
