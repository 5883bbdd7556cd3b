"""The guided lesson: the paper's story in steps, each a named preset of a page of the app.

A step opens one page of SinKD Lab with one of its presets (:class:`sinkd.lab.spec.Preset`)
applied, asks a question to answer before revealing, and then shows what to notice: the
preset's own claims (the sentences the page checks on its run) or its notice, and the step's
point for SinKD. The app's shell (``shell.py``) draws the lesson bar from these steps on the page
of the current step, whose number is the URL's ``lesson`` value (``/transport?lesson=6``); the
page ``pages/lesson.py`` lists them. This module is data: it imports no page and no spec, so
tests/lab/test_lesson.py checks that every step's page and preset exist and that what a step
reveals is computed by its page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sinkd.validation import check_int

URL_PARAM = "lesson"  # the URL's name of the step number (1-based)


@dataclass(frozen=True)
class Step:
    """One step of the lesson.

    Attributes
    ----------
    title : str
        The story's beat, shown as the step's heading.
    page : str
        The app page that shows it: a page's name (its file stem under ``pages/``).
    preset : str or None
        The name of one of that page's presets, applied when the step opens; None for a page
        without presets (it opens with its defaults).
    question : str
        What the class predicts before revealing.
    point : str
        What the step shows about SinKD, revealed with the preset's claims.
    """

    title: str
    page: str
    preset: str | None
    question: str
    point: str


STEPS: tuple[Step, ...] = (
    Step("What KD matches: the teacher's distribution", "divergence_lab",
         "Mode averaging (forward KL)",
         "Knowledge distillation trains the student to match the teacher's distribution over "
         "classes, classically with forward KL. The teacher has two modes, the student is a "
         "single Gaussian: where will each divergence put the student's mass?",
         "KD matches a distribution, and the divergence decides how a student that cannot "
         "copy it compromises. Forward KL, the classic KD loss, punishes every class the "
         "student misses, so it covers both modes and fills the gap between them: mode "
         "averaging."),
    Step("Mode collapse", "divergence_lab", "Mode collapse (reverse KL)",
         "Same teacher; the student starts narrow near the right mode. Which students stay "
         "there, and which spread over both modes?",
         "Reverse KL punishes mass where the teacher has none, so its student hides inside one "
         "mode and drops the other: mode collapse. Sinkhorn spreads like forward KL."),
    Step("Mode underestimation", "divergence_lab", "Mode underestimation (JS)",
         "Three teacher modes, the third holding only 10%, and a student of two components: "
         "which students give the small mode less than half its mass?",
         "The small mode is the teacher's knowledge about unlikely classes, what KD is meant "
         "to pass on. JS and reverse KL underestimate it; exact OT keeps at least half of it."),
    Step("Why transport: no overlap", "divergence_lab", "No overlap: JS saturates",
         "The student starts 6 units away from the teacher, with no overlap at all: which "
         "students will move towards the teacher?",
         "Without overlap JS sits at log 2 and total variation at 1: their gradients vanish "
         "and their students stay put. A transport cost grows with the distance the mass "
         "must travel, so Sinkhorn and exact OT keep pulling the student towards the teacher. "
         "This is SinKD's case for the Sinkhorn distance."),
    Step("λ and T: blur against exactness", "transport", "small λ: near exact OT",
         "SinKD uses λ = 0.1 and T = 20. Lower λ to 0.01 and run T = 500 iterations: how close "
         "will the transport cost come to exact OT, and what will the plan look like?",
         "λ sets the blur: small λ approaches exact OT and a plan that pairs each student "
         "with one teacher, large λ spreads every student over the whole batch. The smaller "
         "λ, the more iterations T the plan needs: SinKD's λ = 0.1, T = 20 trades exactness "
         "for a cheap, smooth loss."),
    Step("The batch-wise plan", "transport", "shuffled: the pairing is lost",
         "The student's predictions are put in another order: the same predictions, now "
         "paired with other inputs. Will the SinKD term change?",
         "SinKD transports the batch's student predictions onto the teacher's as two clouds: "
         "the plan re-pairs them, so shuffling the rows moves the plan, not the term."),
    Step("What the batch-wise term misses", "batchwise",
         "Batch-wise: every label moved at the start",
         "The student starts with the teacher's cloud of predictions, but every label moved to "
         "the next class. Which students put the labels back?",
         "The batch-wise term alone keeps the wrong labels: the clouds already match, so it "
         "has nothing to fix. That is why SinKD's recipe adds its term to the per-sample KD "
         "and cross-entropy terms instead of replacing them."),
    Step("Kernel against log numerics", "transport", "disjoint in float32, λ = 0.01",
         "Student and teacher predictions far apart, λ = 0.01, float32: will the plain "
         "kernel solver, which forms exp(−D/λ), give a plan?",
         "exp(−D/λ) underflows to 0 once D/λ leaves the dtype's range: the kernel solver then "
         "divides 0 by 0. The stabilised log-domain solver works with potentials and "
         "log-sum-exp and stays finite; sinkd's method='auto' picks the kernel only where it "
         "is safe."),
    Step("Verification against POT", "verify", "One iteration (T = 1)",
         "Our solver scales rows then columns, POT columns then rows; POT runs the transposed "
         "problem. After a single iteration, far from convergence, how far apart will the two "
         "plans be?",
         "The plans agree after every iteration to round-off: each check's error stays under "
         "a tolerance set by the dtype's precision, so the loop is the algorithm it claims to "
         "be, not merely a similar one."),
    Step("A real distillation", "distill",
         "Classroom: CE vs SinKD, 150 steps on 2,000 training snippets",
         "A small BERT student trained with cross-entropy alone, another with SinKD's recipe "
         "(CE, KD and the SinKD term): how far apart will their test accuracies be, and is one "
         "seed enough to tell?",
         "One seed and 300 test snippets cannot separate two recipes a few points apart: the "
         "binomial standard error alone is about 2.6 points. Compare over seeds (the Seeds "
         "preset) before believing a gap."),
)


def step(number: int) -> Step:
    """The lesson's step ``number``, counted from 1.

    >>> step(1).page, step(len(STEPS)).page
    ('divergence_lab', 'distill')
    """
    return STEPS[check_int("number", number, low=1, high=len(STEPS)) - 1]


def parse_step(raw: str) -> int:
    """The step number a URL's ``lesson`` value names; ValueError unless it is an integer from
    1 to the number of steps.

    >>> parse_step("5")
    5
    """
    try:
        return check_int(URL_PARAM, int(raw), low=1, high=len(STEPS))
    except (TypeError, ValueError):
        raise ValueError(f"{URL_PARAM} must be a step number from 1 to {len(STEPS)}, got "
                         f"{raw!r}") from None


def reveal_lines(s: Step, presets: Any) -> list[str]:
    """What step ``s`` reveals about its page's preset (``presets``: the page's
    ``PageSpec.presets``): each claim's sentence where the preset has claims (the page checks
    them on its run), else the preset's notice; nothing for a step without a preset."""
    if s.preset is None:
        return []
    preset = presets[s.preset]
    if preset.claims:
        return [claim.sentence for claim in preset.claims.values()]
    return [preset.notice]
