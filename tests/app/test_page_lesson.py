"""AppTest: the guided lesson (pages/lesson.py and the lesson bar the shell draws in the sidebar
of the current step's page, whose number is the URL's ``lesson`` value)."""

import pytest
from app_pages import open_page

import shell
from sinkd.lab import lesson
from sinkd.lab.divergence_lab_spec import SPEC as LAB
from sinkd.lab.transport_spec import SPEC

LAST = len(lesson.STEPS)


def bar_text(at) -> str:
    return "\n".join(m.value for m in at.sidebar.markdown)


def test_lesson_page_lists_every_step_and_starts_at_step_1():
    """The lesson page names every step with a button to open it; Start opens step 1's page
    with its preset applied and lesson=1 in the URL."""
    at = open_page("lesson")
    assert not at.exception and at.title[0].value == "Guided lesson"
    keys = [b.key for b in at.main.button]
    assert keys == ["lesson_start", *(f"lesson_open_{n}" for n in range(1, LAST + 1))]
    text = "\n".join(m.value for m in at.main.markdown)
    assert all(s.title in text for s in lesson.STEPS)
    at.button(key="lesson_start").click().run()
    first = lesson.step(1)
    assert not at.exception and at.title[0].value == shell.PAGES[first.page].title
    assert at.query_params["lesson"] == "1" and at.query_params["preset"] == first.preset
    assert at.session_state[f"{first.page}_preset"] == first.preset
    values = LAB.presets[first.preset].values
    assert all(at.session_state[f"{first.page}_{k}"] == v for k, v in values.items())
    assert f"step 1 of {LAST}" in bar_text(at) and first.question in bar_text(at)


def test_deep_link_to_step_5_opens_its_page_with_its_preset():
    """A link ?lesson=5 to a fresh session opens step 5's page with its preset's values,
    the sidebar shows step 5 with its question, and the URL keeps lesson=5 beside the page's
    values; the reveal shows the preset's claims or notice and the step's point."""
    s = lesson.step(5)
    at = open_page(s.page, query={"lesson": "5"})
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == shell.PAGES[s.page].title
    values = SPEC.presets[s.preset].values
    assert all(at.session_state[f"{s.page}_{k}"] == v for k, v in values.items())
    assert at.query_params["lesson"] == "5" and at.query_params["preset"] == s.preset
    assert f"step 5 of {LAST}" in bar_text(at) and s.question in bar_text(at)
    assert not at.sidebar.success
    at.sidebar.toggle(key="_lesson_reveal_5").set_value(True).run()
    revealed = at.sidebar.success[0].value
    assert s.point in revealed
    assert all(line in revealed for line in lesson.reveal_lines(s, SPEC.presets))


def test_next_and_previous_move_between_steps():
    """Next on step 1 opens step 2 (its preset's values, lesson=2), Previous goes back to
    step 1's values; Previous is disabled on step 1, and the last step ends with Finish."""
    at = open_page("divergence_lab", query={"lesson": "1"})
    assert at.sidebar.button(key="_lesson_previous").disabled
    at.sidebar.button(key="_lesson_next").click().run()
    two = lesson.step(2)
    assert not at.exception and at.query_params["lesson"] == "2"
    assert at.session_state["divergence_lab_preset"] == two.preset
    assert all(at.session_state[f"divergence_lab_{k}"] == v
               for k, v in LAB.presets[two.preset].values.items())
    assert f"step 2 of {LAST}" in bar_text(at)
    at.sidebar.button(key="_lesson_previous").click().run()
    one = lesson.step(1)
    assert at.query_params["lesson"] == "1"
    assert at.session_state["divergence_lab_init_mean"] == LAB.presets[one.preset].values[
        "init_mean"]
    last = lesson.step(LAST)
    end = open_page(last.page, query={"lesson": str(LAST)})
    assert not end.exception
    assert not [b for b in end.sidebar.button if b.key == "_lesson_next"]
    assert "Finish" in [link.proto.label for link in end.sidebar.get("page_link")]


def test_next_opens_another_page():
    """Next on the verification step (verify page) opens the distillation step's page."""
    number = next(n for n, s in enumerate(lesson.STEPS, 1) if s.page == "verify")
    at = open_page("verify", query={"lesson": str(number)})
    assert not at.exception, [e.value for e in at.exception]
    at.sidebar.button(key="_lesson_next").click().run()
    after = lesson.step(number + 1)
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == shell.PAGES[after.page].title
    assert at.query_params["lesson"] == str(number + 1)


def test_step_on_the_wrong_page_opens_the_steps_page():
    """A step number in the URL of another page (here the lesson page) opens the step's page."""
    number = next(n for n, s in enumerate(lesson.STEPS, 1) if s.page == "batchwise")
    at = open_page("lesson", query={"lesson": str(number)})
    assert not at.exception
    assert at.title[0].value == shell.PAGES["batchwise"].title
    assert at.session_state["batchwise_preset"] == lesson.step(number).preset


@pytest.mark.parametrize("raw", ["0", "99", "two"])
def test_invalid_step_is_ignored_with_a_warning(raw):
    """An invalid step in a link gives a warning naming the lesson's range, no lesson bar and
    no exception; the page is shown as without it."""
    at = open_page("divergence_lab", query={"lesson": raw})
    assert not at.exception
    assert any(f"lesson must be a step number from 1 to {LAST}" in w.value for w in at.warning)
    assert "Lesson · step" not in bar_text(at)


def test_copied_step_link_keeps_its_own_values():
    """A copied link of a step with the page's values changed keeps those values (the link wins
    over the step's preset, as a link does outside the lesson)."""
    one = lesson.step(1)
    at = open_page("divergence_lab", query={"lesson": "1", "preset": one.preset,
                                            "init_mean": "2.0"})
    assert not at.exception
    assert at.session_state["divergence_lab_init_mean"] == 2.0
    assert at.query_params["lesson"] == "1"
