"""The batch-wise toy (sinkd.lab.batchwise_toy, batchwise_fit, batchwise, batchwise_figures):
its losses are sinkd's, its measurements agree with independent computations, the batch-wise
term ignores the pairing, and every preset's claims hold in most robustness runs."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from sinkd import SinKDLoss, distillation_objective, divergence, sinkd_loss
from sinkd.lab import batchwise, batchwise_figures
from sinkd.lab.batchwise_fit import Metrics, fit, fit_grid, recipe_share
from sinkd.lab.batchwise_spec import SPEC
from sinkd.lab.batchwise_toy import (
    STUDENTS,
    Options,
    batch_term,
    class_term,
    losses,
    make_batch,
    start_params,
)

F64 = torch.float64


def _logits(seed: int, shape: tuple[int, ...], scale: float = 2.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _simplex(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    p = rng.gamma(0.5, size=(n, c))
    return p / p.sum(1, keepdims=True)


@pytest.fixture(scope="module")
def default_fit():
    return batchwise.fit_view(SPEC.defaults)


@pytest.mark.parametrize("c", [2, 3, 5, 10])
def test_exact_ot_over_unordered_classes_is_total_variation(c):
    """Per sample, exact OT (POT's ot.emd2) between two class distributions over the cost
    1 - I equals their total variation ½‖p − q‖₁ (and sinkd.divergence's "tvd")."""
    rng = np.random.default_rng(c)
    p, q = _simplex(rng, 20, c), _simplex(rng, 20, c)
    M = 1.0 - np.eye(c)
    exact = np.array([ot.emd2(p[i], q[i], M) for i in range(20)])
    tvd = 0.5 * np.abs(p - q).sum(1)
    assert np.allclose(exact, tvd, rtol=0, atol=1e-12)
    lib = divergence("tvd", torch.tensor(np.log(q)), torch.tensor(np.log(p)), reduction="none")
    assert np.allclose(lib.numpy(), tvd, rtol=0, atol=1e-12)


def test_class_level_sinkd_approaches_total_variation_as_lambda_shrinks():
    """sinkd_loss(level="class") with cost 1 − I (the class_ot student's term) tends to the
    total variation as λ → 0: within 1e-3 at λ = 0.005 with enough iterations."""
    zs, zt = _logits(0, (16, 3)), _logits(1, (16, 3))
    value = sinkd_loss(zs, zt, level="class", marginals="uniform", temperature=1.0, scale=1.0,
                       reg=0.005, n_iters=2000, method="log")
    tvd = 0.5 * (torch.softmax(zs, -1) - torch.softmax(zt, -1)).abs().sum(-1).mean()
    assert float(value) == pytest.approx(float(tvd), abs=1e-3)


@pytest.mark.parametrize("o", [Options(), Options(reg=0.01, n_iters=50, tau=1.0),
                               Options(reg=0.002, n_iters=5, tau=4.0), Options(reg=5.0)])
def test_batch_term_equals_sinkd_loss_with_its_gradient(o):
    """The stacked SinKD term of each run equals sinkd_loss on that run alone (value and
    gradient), for the reference options, small λ (the log method) and large λ."""
    zs = _logits(2, (3, 10, 3)).requires_grad_()
    zt = _logits(3, (3, 10, 3))
    stacked = batch_term(zs, zt, o)
    (grad,) = torch.autograd.grad(stacked.sum(), zs)
    for r in range(3):
        z = zs[r].detach().clone().requires_grad_()
        ref = sinkd_loss(z, zt[r], reg=o.reg, n_iters=o.n_iters, temperature=o.tau)
        ref.backward()
        assert float(stacked[r].detach()) == pytest.approx(float(ref.detach()), rel=1e-12,
                                                           abs=1e-15)
        assert torch.allclose(grad[r], z.grad, rtol=1e-9, atol=1e-15)


def test_class_term_equals_class_level_sinkd_loss():
    """The class_ot student's stacked term equals sinkd_loss(level="class", marginals="uniform",
    temperature 1, scale 1) run by run."""
    o = Options(reg=0.1, n_iters=20)
    zs, zt = _logits(4, (2, 12, 3)), _logits(5, (2, 12, 3))
    stacked = class_term(zs, zt, o)
    for r in range(2):
        ref = sinkd_loss(zs[r], zt[r], level="class", marginals="uniform", temperature=1.0,
                         scale=1.0, reg=o.reg, n_iters=o.n_iters)
        assert float(stacked[r]) == pytest.approx(float(ref), rel=1e-12)


def test_each_student_loss_is_the_library_loss():
    """Row by row, the stacked losses are sinkd.divergence (kl, rkl, js), the class-level and
    batch-level sinkd_loss, and the recipe's sinkd.distillation_objective (alpha = 1, no CE)."""
    o = Options(beta=0.8)
    zs, zt = _logits(6, (6, 12, 3)), _logits(7, (6, 12, 3))
    got = losses(STUDENTS, zs, zt, o)
    labels = zt[5].argmax(-1)
    term = SinKDLoss(reg=o.reg, n_iters=o.n_iters, temperature=o.tau)
    recipe = distillation_objective(zs[5], zt[5], labels, alpha=1.0, beta=o.beta,
                                    kd_temperature=1.0, kd="soft_ce", sinkhorn_term=term)
    expected = [divergence(d, zs[i], zt[i]) for i, d in enumerate(("kl", "rkl", "js"))] + [
        sinkd_loss(zs[3], zt[3], level="class", marginals="uniform", temperature=1.0,
                   scale=1.0),
        sinkd_loss(zs[4], zt[4], reg=o.reg, n_iters=o.n_iters, temperature=o.tau),
        recipe.total]
    assert torch.allclose(got, torch.stack(expected), rtol=1e-12, atol=0)


def test_batch_term_is_invariant_to_permuting_the_batch():
    """Law: permuting the student's rows (or both batches the same way) leaves SinKD's batch
    term unchanged, while a per-sample KL changes: the term knows nothing of the pairing."""
    o = Options()
    zs, zt = _logits(8, (1, 16, 3)), _logits(9, (1, 16, 3))
    base = float(batch_term(zs, zt, o))
    moved = 0
    for seed in range(10):
        perm = torch.randperm(16, generator=torch.Generator().manual_seed(seed))
        assert float(batch_term(zs[:, perm], zt, o)) == pytest.approx(base, rel=1e-10)
        assert float(batch_term(zs[:, perm], zt[:, perm], o)) == pytest.approx(base, rel=1e-10)
        kl = divergence("kl", zs[0, perm], zt[0])
        moved += abs(float(kl) - float(divergence("kl", zs[0], zt[0]))) > 1e-3
    assert moved >= 9


def _independent_metrics(zs: np.ndarray, zt: np.ndarray, o: Options) -> Metrics:
    """Metrics recomputed without the module: scipy's optimal assignment for the cloud OT
    (uniform equal masses: an optimal plan is a permutation, Birkhoff), POT's Sinkhorn for the
    plan (the reference rows-then-columns scaling is POT's on the transposed problem)."""
    s = np.exp(zs - zs.max(1, keepdims=True))
    s /= s.sum(1, keepdims=True)
    t = np.exp(zt - zt.max(1, keepdims=True))
    t /= t.sum(1, keepdims=True)
    D = cdist(s, t, "cityblock")
    rows, cols = linear_sum_assignment(D)
    s2 = np.exp((zs - zs.max(1, keepdims=True)) / o.tau)
    s2 /= s2.sum(1, keepdims=True)
    t2 = np.exp((zt - zt.max(1, keepdims=True)) / o.tau)
    t2 /= t2.sum(1, keepdims=True)
    D2 = cdist(s2, t2, "cityblock")
    ones = np.ones(len(zs))
    P = ot.sinkhorn(ones, ones, D2.T, o.reg, numItermax=o.n_iters, stopThr=0, warn=False).T
    return Metrics(
        paired_l1=float(np.abs(s - t).sum(1).mean()),
        kl=float((t * (np.log(t) - np.log(s))).sum(1).mean()),
        accuracy=float(np.mean(s.argmax(1) == t.argmax(1))),
        cloud_ot=float(D[rows, cols].mean()),
        confidence=float(s.max(1).mean()),
        own_mass=float(np.trace(P) / len(zs)))


def test_measurements_agree_with_independent_computations(default_fit):
    """Every student's metrics (cloud OT by ot.emd2, paired L1, KL, accuracy, confidence,
    own-pair mass) equal those recomputed independently, and cloud OT <= paired L1 (the
    identity pairing is one plan)."""
    f = default_fit
    for i, s in enumerate(f.students):
        ref = _independent_metrics(f.logits[i], f.batch.teacher_logits, f.options)
        got = f.metrics[s]
        for field in Metrics.__dataclass_fields__:
            assert getattr(got, field) == pytest.approx(getattr(ref, field), rel=1e-9,
                                                        abs=1e-12), (s, field)
        assert got.cloud_ot <= got.paired_l1 + 1e-12


def test_the_sinkd_students_final_loss_is_sinkd_loss_recomputed(default_fit):
    """The SinKD-alone student's recorded final loss is sinkd_loss on its final logits, and
    the recipe's is distillation_objective's total (alpha = 1) on its own."""
    f, o = default_fit, default_fit.options
    zt = torch.tensor(f.batch.teacher_logits)
    i = f.students.index("sinkd")
    ref = sinkd_loss(torch.tensor(f.logits[i]), zt, reg=o.reg, n_iters=o.n_iters,
                     temperature=o.tau)
    assert f.losses[-1, i] == pytest.approx(float(ref), rel=1e-12)
    j = f.students.index("recipe")
    total = distillation_objective(
        torch.tensor(f.logits[j]), zt, zt.argmax(-1), alpha=1.0, beta=o.beta,
        sinkhorn_term=SinKDLoss(reg=o.reg, n_iters=o.n_iters, temperature=o.tau)).total
    assert f.losses[-1, j] == pytest.approx(float(total), rel=1e-12)


def test_fit_is_deterministic_float64_and_the_grid_replays_single_fits():
    """The same seed gives the same fit (float64); another seed another batch; and every run of
    the stacked robustness grid equals the single fit with that seed, rate and budget."""
    a, b = fit(n=12, steps=6, seed=3), fit(n=12, steps=6, seed=3)
    assert a.logits.dtype == np.float64 and np.array_equal(a.logits, b.logits)
    assert not np.array_equal(make_batch(seed=3).x, make_batch(seed=4).x)
    grid = fit_grid(n=12, steps=4, lr=0.05, seeds=2)
    assert len(grid) == 2 * 2 * 3
    for (seed, lr, budget) in [(1, 0.05, 2), (0, 0.125, 16)]:
        single = fit(n=12, steps=budget, lr=lr, seed=seed)
        for s in STUDENTS:
            assert grid[(seed, lr, budget)][s].cloud_ot == pytest.approx(
                single.metrics[s].cloud_ot, rel=1e-9, abs=1e-12)
            assert grid[(seed, lr, budget)][s].paired_l1 == pytest.approx(
                single.metrics[s].paired_l1, rel=1e-9)


def test_the_rolled_start_has_the_teachers_cloud_with_every_label_moved():
    """The "rolled" start predicts, for every input of a linear-teacher batch, the class the
    teacher gives the next cluster: accuracy 0, yet a cloud close to the teacher's."""
    batch = make_batch("linear", n=36, uncertain=0.0, seed=0)
    W, b = start_params("rolled", 0)
    zs = batch.x @ W.T + b
    assert np.mean(zs.argmax(1) == batch.labels) == 0.0
    assert np.array_equal(zs.argmax(1), (batch.labels - 1) % 3)


@pytest.mark.parametrize("call, word", [
    (lambda: fit("circle"), "teacher"), (lambda: fit(n=3), "n"), (lambda: fit(lr=0.0), "lr"),
    (lambda: fit(start="zero"), "start"), (lambda: fit(students=("kl", "kl")), "students"),
    (lambda: Options(reg=0.0), "reg"), (lambda: batchwise.fit_view({"n": 12}), "missing"),
    (lambda: batchwise.robustness("Mode averaging (forward KL)"), "preset"),
    (lambda: batchwise_figures.cloud_figure(fit(n=12, steps=1, students=("kl",)), ["js"]),
     "students"),
])
def test_bad_input_is_a_value_error_naming_it(call, word):
    """Bad arguments raise ValueError naming the argument (what the page turns into st.error)."""
    with pytest.raises(ValueError, match=word):
        call()


def test_cloud_figure_structure(default_fit):
    """One ternary panel per student: the teacher then the student, at the end of training;
    one frame per recorded step, each moving only the student traces to that step's points."""
    f = default_fit
    fig = batchwise_figures.cloud_figure(f)
    assert len(fig.data) == 2 * len(f.students)
    assert all(t.type == "scatterternary" for t in fig.data)
    for k, _s in enumerate(f.students):
        teacher, student = fig.data[2 * k], fig.data[2 * k + 1]
        assert np.allclose(np.column_stack([teacher.a, teacher.b, teacher.c]),
                           f.batch.teacher_probs)
        assert np.allclose(np.column_stack([student.a, student.b, student.c]), f.frames[-1, k])
        assert student.subplot == teacher.subplot
    assert [fr.name for fr in fig.frames] == [str(s) for s in f.frame_steps]
    assert list(fig.frames[0].traces) == list(range(1, 2 * len(f.students), 2))
    assert np.allclose(fig.frames[0].data[0].a, f.frames[0, 0][:, 0])
    still = batchwise_figures.cloud_figure(f, ["sinkd", "kl"], animate=False)
    assert len(still.data) == 4 and not still.frames


def test_plan_and_metrics_figures_structure(default_fit):
    """The plan heatmap is SinKD's N × N plan (columns of mass 1: Sinkhorn ends on them) in the
    teacher-label order; the bars are every student's cloud OT and paired L1."""
    f = default_fit
    heat = batchwise_figures.plan_figure(f).data[0]
    z = np.asarray(heat.z)
    assert z.shape == (f.settings["n"],) * 2
    assert np.allclose(z.sum(0), 1.0, atol=1e-9)
    assert np.isclose(z.sum(), f.plan.sum())
    bars = batchwise_figures.metrics_figure(f).data
    assert [b.type for b in bars] == ["bar", "bar"]
    assert np.allclose(bars[0].y, [f.metrics[s].cloud_ot for s in f.students])
    assert np.allclose(bars[1].y, [f.metrics[s].paired_l1 for s in f.students])


def test_page_text_reports_the_measured_numbers(default_fit):
    """The honest text quotes the fit's own numbers, and the reveal marks a claim as held
    exactly when its predicate holds on the fit's measurements."""
    f = default_fit
    text = " ".join(batchwise.outcomes(f))
    assert f"cloud OT {f.metrics['sinkd'].cloud_ot:.2f}" in text
    assert f"{f.recipe_share:.2%}" in text
    name = next(iter(SPEC.presets))
    held = batchwise.claim_results(f, name)
    m = batchwise.measurements(f)
    assert held == {s: c.holds(m, s) for s, c in SPEC.presets[name].claims.items()}
    assert len(batchwise.reveal(f, name)) == len(held)
    table = batchwise.metrics_frame(f)
    assert len(table) == len(f.students) + 2


def test_recipe_share_is_the_gradient_norm_ratio():
    """The recipe's SinKD share is |∇(β SinKD)| / |∇ KD| at the start, by finite differences of
    the two losses along random directions (independent of autograd)."""
    batch, (W0, b0), o = make_batch(n=12), start_params("small", 0), Options(beta=80.0)
    share = recipe_share(batch, W0, b0, o)
    X, zt = torch.tensor(batch.x), torch.tensor(batch.teacher_logits)
    theta = np.concatenate([W0.ravel(), b0])

    def grad(part) -> np.ndarray:
        def value(th: np.ndarray) -> float:
            W, b = torch.tensor(th[:6].reshape(3, 2)), torch.tensor(th[6:])
            z = X @ W.T + b
            if part == "kd":
                return float(-(torch.softmax(zt, -1) * torch.log_softmax(z, -1)).sum(-1).mean())
            return o.beta * float(sinkd_loss(z, zt, reg=o.reg, n_iters=o.n_iters,
                                             temperature=o.tau))
        h = 1e-6
        return np.array([(value(theta + h * e) - value(theta - h * e)) / (2 * h)
                         for e in np.eye(len(theta))])

    expected = np.linalg.norm(grad("sinkd")) / np.linalg.norm(grad("kd"))
    assert share == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", list(SPEC.presets))
def test_every_presets_claims_hold_in_most_robustness_runs(name):
    """Computed fresh over 8 seeds x budgets (half, as set, 4x) x two learning rates: every
    claim of every preset holds in more than half of the 48 runs."""
    counts = batchwise.robustness(name, seeds=8)
    assert set(counts) == set(STUDENTS)
    for student, c in counts.items():
        assert c["runs"] == 48
        assert c["held"] > c["runs"] / 2, (student, c)
