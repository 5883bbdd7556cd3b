"""The guided lesson (sinkd.lab.lesson): every step names a page and a preset that exist, and
what a step reveals is computed by its page on the step's own run."""

import math
from pathlib import Path

import numpy as np
import pytest

from sinkd.lab import batchwise, lesson, plans, toy, toy_metrics
from sinkd.lab.batchwise_spec import SPEC as BATCHWISE
from sinkd.lab.divergence_lab_spec import SPEC as DIVERGENCE_LAB
from sinkd.lab.transport_spec import SPEC as TRANSPORT
from sinkd.lab.verify_spec import SPEC as VERIFY

ROOT = Path(__file__).resolve().parents[2]


def page_spec(page: str):
    """The PageSpec the page builds its View from (the distill page's needs sinkd.distill)."""
    if page == "distill":
        from sinkd.distill import RECIPES
        from sinkd.distill.glue import GLUE_TASKS
        from sinkd.lab.distill_spec import spec

        return spec(RECIPES, GLUE_TASKS)
    return {"divergence_lab": DIVERGENCE_LAB, "batchwise": BATCHWISE, "transport": TRANSPORT,
            "verify": VERIFY}[page]


def steps_on(page: str) -> list[lesson.Step]:
    return [s for s in lesson.STEPS if s.page == page]


def test_lesson_tells_the_story_in_about_eight_steps():
    """The lesson has 8 to 10 steps, each with a title, a question and a point, no two alike,
    and visits every lab page in the story's order (divergences first, distillation last)."""
    assert 8 <= len(lesson.STEPS) <= 10
    for s in lesson.STEPS:
        assert s.title and s.question.strip() and s.point.strip()
        assert s.question.rstrip().endswith("?"), s.question
    assert len({s.title for s in lesson.STEPS}) == len({s.question for s in lesson.STEPS}) \
        == len(lesson.STEPS)
    pages = [s.page for s in lesson.STEPS]
    assert set(pages) == {"divergence_lab", "batchwise", "transport", "verify", "distill"}
    assert pages[0] == "divergence_lab" and pages[-1] == "distill"


@pytest.mark.parametrize("number", range(1, len(lesson.STEPS) + 1))
def test_every_step_names_an_existing_page_and_preset(number):
    """Each step's page is a script of pages/ whose View is built by shell.page with its name,
    and its preset is one of that page's presets; a step without a preset is on a page that has
    none (otherwise it should name one)."""
    s = lesson.step(number)
    source = (ROOT / "pages" / f"{s.page}.py").read_text()
    assert f'shell.page("{s.page}"' in source
    presets = page_spec(s.page).presets
    if s.preset is None:
        assert not presets, f"{s.page} has presets {list(presets)}: name one in step {number}"
        assert lesson.reveal_lines(s, presets) == []
    else:
        assert s.preset in presets, (s.preset, list(presets))
        lines = lesson.reveal_lines(s, presets)
        preset = presets[s.preset]
        assert lines == ([c.sentence for c in preset.claims.values()] if preset.claims
                         else [preset.notice])


@pytest.mark.parametrize("s", steps_on("divergence_lab"), ids=lambda s: s.preset)
def test_divergence_lab_steps_reveal_claims_that_hold_on_their_run(s):
    """The claims a divergence-lab step reveals hold on the fit the page computes for the
    preset (toy.fit_view of its values, seed 0): each claim's predicate on its own
    divergence's measured ToyMetrics, and every claimed divergence is one the preset fits."""
    preset = DIVERGENCE_LAB.presets[s.preset]
    assert preset.claims
    fit = toy.fit_view(dict(preset.values))
    metrics = toy_metrics.compute_metrics(fit)
    assert set(preset.claims) <= set(fit.names)
    held = {d: bool(c.holds(metrics, d)) for d, c in preset.claims.items()}
    assert all(held.values()), held


@pytest.mark.parametrize("s", steps_on("batchwise"), ids=lambda s: s.preset)
def test_batchwise_steps_reveal_claims_that_hold_on_their_run(s):
    """The claims a batch-wise step reveals hold on the students the page trains for the
    preset (batchwise.fit_view of its values), for every claimed student."""
    preset = BATCHWISE.presets[s.preset]
    fit = batchwise.fit_view(dict(preset.values))
    held = batchwise.claim_results(fit, s.preset)
    assert set(held) == set(preset.claims) and all(held.values()), held


def _history(values: dict, **changes):
    v = {**TRANSPORT.defaults, **values, **changes}
    teacher, student = plans.batch_for(v["source"], v["n"], v["c"], v["noise"], v["seed"])
    return plans.plan_history(teacher, student, reg=v["lam"], n_iters=v["T"],
                              method=v["method"], dtype=v["dtype"], temperature=v["tau"])


def _step(preset: str) -> lesson.Step:
    (s,) = [s for s in lesson.STEPS if s.preset == preset]
    return s


def test_lambda_step_point_smaller_lambda_needs_more_iterations():
    """The λ-and-T step: at the preset (λ = 0.01, T = 500) the cost is within 1% of exact OT
    (ot.emd2), and the rows reach an L1 error of 0.03 only after over five times as many
    iterations as with SinKD's λ = 0.1 on the same batch (the first t below it, T = 500)."""
    s = lesson.step(5)
    values = dict(TRANSPORT.presets[s.preset].values)
    assert (values["lam"], values["T"]) == (0.01, 500) and "λ" in s.title
    small = _history(values)
    assert abs(small.costs[-1] - small.exact_cost) <= 0.01 * small.exact_cost
    reference = _history(values, lam=0.1)

    def needed(h) -> int:  # the first iteration whose rows are within 0.03 (L1) of 1
        below = np.flatnonzero(h.row_errors < 0.03)
        assert below.size, "not reached in T = 500"
        return int(below[0]) + 1

    assert needed(small) > 5 * needed(reference), (needed(small), needed(reference))


def test_shuffled_step_point_term_unchanged_plan_moved():
    """The batch-wise plan step: shuffling the student's rows leaves the SinKD term equal (to
    1e-9 relative) to the aligned batch's while the plan changes (its diagonal mass drops)."""
    values = dict(TRANSPORT.presets[_step("shuffled: the pairing is lost").preset].values)
    shuffled = _history(values)
    aligned = _history(values, source="aligned")
    assert shuffled.sinkd_value == pytest.approx(aligned.sinkd_value, rel=1e-9)
    assert np.trace(shuffled.plan) < 0.5 * np.trace(aligned.plan)


def test_numerics_step_point_kernel_fails_log_stays_finite():
    """The numerics step: on its preset (disjoint batch, λ = 0.01, float32) the kernel solver's
    plan is not finite and the log-domain solver's is, with columns summing to 1."""
    values = dict(TRANSPORT.presets[_step("disjoint in float32, λ = 0.01").preset].values)
    assert (values["lam"], values["dtype"]) == (0.01, "float32")
    assert not _history(values, method="kernel").finite
    log = _history(values, method="log")
    assert log.finite and np.allclose(log.plan.sum(axis=0), 1.0, atol=1e-4)


def test_verification_step_point_every_check_passes_on_its_run():
    """The verification step's preset (one iteration): there every comparison with POT, after
    every iteration, passes its tolerance (the page's own checks, run on the preset's
    problem), and its plans agree to round-off: the largest gap under 1e-12."""
    from sinkd.lab import verify
    from sinkd.lab.batches import sinkd_problem

    (s,) = steps_on("verify")
    v = {**VERIFY.defaults, **VERIFY.presets[s.preset].values}
    a, b, cost = sinkd_problem(v["kind"], v["n"], v["n_classes"], v["noise"], v["seed"])
    result = verify.compare_problem(a, b, cost, v["reg"], v["n_iters"], v["dtype"],
                                    every_iteration=True, repeats=1)
    assert result.checks and all(c.passed for c in result.checks), [
        (c.name, c.error, c.tolerance) for c in result.checks if not c.passed]
    plan_checks = [c for c in result.checks if "plan" in c.name.lower()]
    assert plan_checks and max(c.error for c in plan_checks) < 1e-12, plan_checks
    assert "round-off" in s.point


def test_distillation_step_point_binomial_standard_error():
    """The distillation step's 2.6 points: the binomial standard error sqrt(p(1-p)/n) of an
    accuracy p = 0.7 on the preset's n = 300 test snippets, with one seed per recipe."""
    (s,) = steps_on("distill")
    values = page_spec("distill").presets[s.preset].values
    assert values["eval_limit"] == 300 and values["n_seeds"] == 1
    assert f"{100 * math.sqrt(0.7 * 0.3 / values['eval_limit']):.1f} points" in s.point


@pytest.mark.parametrize("raw", ["0", "-1", str(len(lesson.STEPS) + 1), "abc", "2.5", ""])
def test_invalid_step_number_is_a_clear_value_error(raw):
    """A URL's step outside 1..len(STEPS), or not an integer, is a ValueError naming the
    URL's parameter and the allowed range."""
    with pytest.raises(ValueError, match=rf"lesson must be a step number from 1 to "
                                         rf"{len(lesson.STEPS)}, got '{raw}'"):
        lesson.parse_step(raw)
    with pytest.raises(ValueError, match="number must be an integer"):
        lesson.step(0)
