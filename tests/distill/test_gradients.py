"""Per-term gradient norms (sinkd.distill.gradients): the recipes' weights, the norms against
closed forms and finite differences (also on 2 gloo ranks with the global-batch SinKD term),
their record in training, compare and the page's figure."""

import math
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from _spawn import spawn
from test_distill import tiny_config

from sinkd import SinKDLoss, distillation_objective, divergence, sinkd_loss
from sinkd.distill.comparison import compare, format_compare
from sinkd.distill.config import DistillConfig
from sinkd.distill.gradients import KEYS, term_gradient_norms
from sinkd.distill.recipes import RECIPES
from sinkd.distill.records import RunRecord
from sinkd.distill.train import train
from sinkd.lab import distill_figures
from sinkd.lab.style import COLORS

CONFIG = DistillConfig(alpha=0.7, beta=0.8, kd_temperature=2.0, reg=0.2, n_iters=15,
                       sinkhorn_temperature=1.5)
A, B, T = CONFIG.alpha, CONFIG.beta, CONFIG.kd_temperature
# each recipe's weights, written out from its formula (the recipes' docstrings)
WEIGHTS = {"ce": {"ce": 1.0}, **{r: {"ce": 1 - A, "kd": A} for r in
                                 ("kd", "rkl", "js", "tvd", "skew_kl")},
           "sinkd": {"ce": 1 - A, "kd": A, "sinkhorn": B}, "sinkhorn": {"ce": 1 - A, "sinkhorn": B}}


def _logits(seed: int = 0, n: int = 5, c: int = 3) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    z_s = 2 * torch.randn(n, c, generator=g, dtype=torch.float64)  # (N, C)
    z_t = 2 * torch.randn(n, c, generator=g, dtype=torch.float64)  # (N, C)
    return z_s, z_t, torch.randint(0, c, (n,), generator=g)


def _fd_grad(f, z: torch.Tensor, h: float = 1e-5) -> torch.Tensor:
    """Central finite differences of the scalar f at z, entry by entry (float64)."""
    grad = torch.zeros_like(z)
    for idx in np.ndindex(*z.shape):
        up, down = z.clone(), z.clone()
        up[idx] += h
        down[idx] -= h
        grad[idx] = (f(up) - f(down)) / (2 * h)
    return grad


def _term(part: str, recipe: str, z_s, z_t, y) -> torch.Tensor:
    """The unweighted term, computed here from sinkd's public functions (not the recipe)."""
    if part == "ce":
        return F.cross_entropy(z_s, y)
    if part == "sinkhorn":
        return sinkd_loss(z_s, z_t, reg=CONFIG.reg, n_iters=CONFIG.n_iters,
                          temperature=CONFIG.sinkhorn_temperature)
    if recipe == "sinkd":  # soft cross-entropy KD
        return -(torch.softmax(z_t / T, -1) * F.log_softmax(z_s / T, -1)).sum(-1).mean()
    return divergence("kl" if recipe == "kd" else recipe, z_s, z_t, temperature=T)


def _norms(recipe: str, z_s, z_t, y, config: DistillConfig = CONFIG) -> dict:
    z = z_s.clone().requires_grad_(True)
    terms = RECIPES[recipe].loss(z, z_t, y, config=config, progress=0.0)
    return term_gradient_norms(terms, z, RECIPES[recipe].weights(config))


# ----------------------------------------------------------------------------- weights
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipe_weights_are_its_formula_and_sum_its_terms(recipe):
    """Recipe.weights is the recipe's formula's weights ((1-alpha) CE, alpha KD, beta SinKD; CE 1
    alone), and the loss's total is exactly sum(weight * term) over its parts (one source)."""
    weights = RECIPES[recipe].weights(CONFIG)
    assert weights == pytest.approx(WEIGHTS[recipe], rel=1e-15)
    assert RECIPES[recipe].parts == tuple(WEIGHTS[recipe])
    z_s, z_t, y = _logits(1)
    terms = RECIPES[recipe].loss(z_s, z_t, y, config=CONFIG, progress=0.0)
    total = sum(w * getattr(terms, p) for p, w in weights.items())
    torch.testing.assert_close(terms.total, total, rtol=1e-14, atol=0)


# ----------------------------------------------------------------------------- the norms
def test_sinkd_norms_equal_closed_forms_and_finite_differences():
    """sinkd recipe (f64): ||(1-a)(softmax(z) - onehot)/B||, ||a (softmax(z_s/T) -
    softmax(z_t/T))/(T B)||, the SinKD term's by finite differences times beta, the total the
    norm of their sum; shares are norm / sum of norms and sum to 1."""
    z_s, z_t, y = _logits()
    n, c = z_s.shape
    g_ce = (1 - A) * (torch.softmax(z_s, -1) - F.one_hot(y, c)) / n
    g_kd = A * (torch.softmax(z_s / T, -1) - torch.softmax(z_t / T, -1)) / (T * n)
    g_sink = B * _fd_grad(lambda z: sinkd_loss(z, z_t, reg=CONFIG.reg, n_iters=CONFIG.n_iters,
                                               temperature=CONFIG.sinkhorn_temperature), z_s)
    out = _norms("sinkd", z_s, z_t, y)
    expected = {"ce": g_ce.norm(), "kd": g_kd.norm(), "sinkhorn": g_sink.norm()}
    for part, value in expected.items():
        assert out[f"grad_norm_{part}"] == pytest.approx(float(value), rel=1e-8), part
    assert out["grad_norm_total"] == pytest.approx(float((g_ce + g_kd + g_sink).norm()), rel=1e-8)
    whole = sum(float(v) for v in expected.values())
    for part, value in expected.items():
        assert out[f"grad_share_{part}"] == pytest.approx(float(value) / whole, rel=1e-8)
    assert sum(out[f"grad_share_{p}"] for p in expected) == pytest.approx(1.0, abs=1e-14)
    assert set(out) == set(KEYS)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_recipe_norms_match_finite_differences_absent_terms_none(recipe):
    """Each recipe's recorded norms are those of weight x finite-difference gradient of its terms
    (written from sinkd's public losses); the terms it lacks are None; the total is the norm of
    the summed finite-difference gradient."""
    z_s, z_t, y = _logits(2)
    out = _norms(recipe, z_s, z_t, y)
    grads = {p: w * _fd_grad(lambda z, p=p: _term(p, recipe, z, z_t, y), z_s)
             for p, w in WEIGHTS[recipe].items()}
    for part in ("ce", "kd", "sinkhorn"):
        if part in grads:
            assert out[f"grad_norm_{part}"] == pytest.approx(float(grads[part].norm()), rel=1e-7)
            assert 0 < out[f"grad_share_{part}"] <= 1
        else:
            assert out[f"grad_norm_{part}"] is None and out[f"grad_share_{part}"] is None
    assert out["grad_norm_total"] == pytest.approx(float(sum(grads.values()).norm()), rel=1e-7)
    assert sum(out[f"grad_share_{p}"] for p in grads) == pytest.approx(1.0, abs=1e-14)


def test_zero_weight_term_has_zero_norm_and_the_graph_survives():
    """beta = 0: the SinKD term's norm and share are 0 (it is not computed), the others' shares
    sum to 1; the loss can still be backpropagated afterwards (retain_graph) to the same
    gradient as without the norms."""
    z_s, z_t, y = _logits(3)
    config = DistillConfig(alpha=0.5, beta=0.0, kd_temperature=2.0)
    z = z_s.clone().requires_grad_(True)
    terms = RECIPES["sinkd"].loss(z, z_t, y, config=config, progress=0.0)
    out = term_gradient_norms(terms, z, RECIPES["sinkd"].weights(config))
    assert out["grad_norm_sinkhorn"] == 0.0 and out["grad_share_sinkhorn"] == 0.0
    assert out["grad_share_ce"] + out["grad_share_kd"] == pytest.approx(1.0, abs=1e-14)
    assert z.grad is None  # nothing accumulated
    terms.total.backward()
    assert float(z.grad.norm()) == pytest.approx(out["grad_norm_total"], rel=1e-12)


def test_unknown_term_is_rejected():
    """A weight for a term ObjectiveTerms does not have is a ValueError naming the terms."""
    z_s, z_t, y = _logits()
    z = z_s.clone().requires_grad_(True)
    terms = RECIPES["ce"].loss(z, z_t, y, config=CONFIG, progress=0.0)
    with pytest.raises(ValueError, match=r"weights must name terms among \['ce', 'kd'"):
        term_gradient_norms(terms, z, {"mse": 1.0})


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("recipe", ["sinkd", "kd"])
def test_training_records_norms_on_evaluation_steps_only(tiny, recipe):
    """A 5-step run evaluating every 2 steps has the norms and shares in rows 2, 4 and 5 (the
    rows with dev_accuracy) and in no other; shares sum to 1; a term the recipe lacks is None."""
    record = train(tiny_config(tiny, recipe=recipe, steps=5, eval_every=2))
    evals = [row["step"] for row in record.metrics if "dev_accuracy" in row]
    assert evals == [2, 4, 5]
    for row in record.metrics:
        assert (set(KEYS) <= set(row)) == (row["step"] in evals)
    for row in (r for r in record.metrics if r["step"] in evals):
        parts = RECIPES[recipe].parts
        assert all(row[f"grad_norm_{p}"] > 0 for p in parts)
        assert sum(row[f"grad_share_{p}"] for p in parts) == pytest.approx(1.0, abs=1e-6)
        assert row["grad_norm_total"] <= sum(row[f"grad_norm_{p}"] for p in parts) * (1 + 1e-6)
        if recipe == "kd":
            assert row["grad_norm_sinkhorn"] is None and row["grad_share_sinkhorn"] is None


# ----------------------------------------------------------------------------- compare, figure
def _record(recipe: str, seed: int, shares: list[dict] | None) -> RunRecord:
    rows = [{"step": 2 * (i + 1), **{f"grad_share_{p}": v for p, v in s.items()}}
            for i, s in enumerate(shares or [])]
    return RunRecord(config={"recipe": recipe, "steps": 4, "seed": seed}, metrics=rows,
                     results={"test": 0.5, "best_dev": 0.5, "final_dev": 0.5})


SHARES = {0: [{"ce": 0.1, "kd": 0.6, "sinkhorn": 0.3}, {"ce": 0.3, "kd": 0.6, "sinkhorn": 0.1}],
          1: [{"ce": 0.2, "kd": 0.7, "sinkhorn": 0.1}, {"ce": 0.2, "kd": 0.5, "sinkhorn": 0.3}]}


def test_compare_shows_mean_shares_over_evaluations_then_seeds():
    """compare's grad_share_<term> is the mean over each run's evaluations, then over seeds;
    NaN for a term the recipe lacks; format_compare prints them in % with their headers."""
    recs = [_record("sinkd", s, SHARES[s]) for s in (0, 1)]
    recs.append(_record("kd", 0, [{"ce": 0.4, "kd": 0.6, "sinkhorn": None}]))
    table = compare(recs, teacher=False)
    for part in ("ce", "kd", "sinkhorn"):
        per_run = [np.mean([e[part] for e in SHARES[s]]) for s in (0, 1)]
        assert table.loc[0, f"grad_share_{part}"] == pytest.approx(np.mean(per_run), rel=1e-12)
    assert table.loc[1, "grad_share_kd"] == pytest.approx(0.6)
    assert math.isnan(table.loc[1, "grad_share_sinkhorn"])
    text = format_compare(table)
    assert "CE grad %" in text and "KD grad %" in text and "SinKD grad %" in text
    sinkd_line, kd_line = text.splitlines()[1:]
    assert sinkd_line.split()[-3:] == ["20.0", "60.0", "20.0"]
    assert kd_line.split()[-3:] == ["40.0", "60.0", "—"]


def test_old_records_without_shares_show_a_dash_or_no_share_columns():
    """Records written before the shares: a dash beside a record with shares; alone, no share
    columns at all (the README's table of old records is unchanged)."""
    old = _record("ce", 0, None)
    mixed = format_compare(compare([old, _record("sinkd", 0, SHARES[0])], teacher=False),
                           markdown=True)
    assert mixed.splitlines()[0].endswith("| CE grad % | KD grad % | SinKD grad % |")
    assert mixed.splitlines()[2].endswith("| — | — | — |")
    alone = format_compare(compare([old], teacher=False), markdown=True)
    assert "grad" not in alone


def test_grad_shares_figure_draws_each_terms_share_per_run():
    """The shares figure has one line per run and term with 100 x the recorded shares at the
    evaluation steps, in the term's colour; a run without shares draws nothing."""
    recs = [_record("sinkd", 0, SHARES[0]), _record("ce", 1, None)]
    fig = distill_figures.grad_shares_figure([(f"{r.recipe} seed {r.config['seed']}", r.metrics)
                                              for r in recs])
    assert [t.name for t in fig.data] == ["sinkd seed 0: cross-entropy", "sinkd seed 0: KD term",
                                          "sinkd seed 0: Sinkhorn term"]
    for trace, part in zip(fig.data, ("ce", "kd", "sinkhorn"), strict=True):
        assert list(trace.x) == [2, 4]
        assert list(trace.y) == pytest.approx([100 * e[part] for e in SHARES[0]], rel=1e-12)
    assert fig.data[2].line.color == COLORS["sinkhorn"]
    assert not distill_figures.grad_shares_figure([("ce seed 1", recs[1].metrics)]).data


# ----------------------------------------------------------------------------- data parallel
N_RANK = 4  # rows per rank


def _ddp_worker(r: int, world: int, init: str, out: str) -> None:
    """One gloo rank: the sinkd objective with SinKDLoss(batch="global") on its shard, its
    norms, then the optimiser's backward (a second collective after the norms' own)."""
    dist.init_process_group("gloo", init_method=init, rank=r, world_size=world,
                            timeout=timedelta(seconds=60))
    z_s, z_t, y = _logits(4, n=world * N_RANK)
    rows = slice(r * N_RANK, (r + 1) * N_RANK)
    z = z_s[rows].clone().requires_grad_(True)
    term = SinKDLoss(reg=CONFIG.reg, n_iters=CONFIG.n_iters,
                     temperature=CONFIG.sinkhorn_temperature, batch="global")
    terms = distillation_objective(z, z_t[rows], y[rows], alpha=A, beta=B, kd_temperature=T,
                                   sinkhorn_term=term)
    norms = term_gradient_norms(terms, z, RECIPES["sinkd"].weights(CONFIG))
    terms.total.backward()
    torch.save({"norms": norms, "grad": z.grad}, Path(out) / f"rank{r}.pt")
    dist.destroy_process_group()


def test_norms_under_data_parallel_with_the_global_sinkd_term(tmp_path):
    """2 gloo ranks, SinKDLoss(batch="global"): on rank r the SinKD norm is that of beta x W x
    rows r of the single-process gradient of the concatenated batch (f64, 1e-10); CE and KD are
    the shard's own closed forms; the total is the norm of the gradient the backward then gives
    (no rank hangs: both compute the norms on the same step)."""
    world = 2
    init = (tmp_path / "store").as_uri()  # a file store: no port to pick
    context = spawn(_ddp_worker, (world, init, str(tmp_path)), world)
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the 2 workers did not finish in 120 s")
    z_s, z_t, y = _logits(4, n=world * N_RANK)
    whole = z_s.clone().requires_grad_(True)
    sinkd_loss(whole, z_t, reg=CONFIG.reg, n_iters=CONFIG.n_iters,
               temperature=CONFIG.sinkhorn_temperature).backward()
    for r in range(world):
        res = torch.load(tmp_path / f"rank{r}.pt")
        rows = slice(r * N_RANK, (r + 1) * N_RANK)
        g_sink = B * world * whole.grad[rows]
        g_ce = (1 - A) * (torch.softmax(z_s[rows], -1) - F.one_hot(y[rows], z_s.shape[1])) / N_RANK
        g_kd = A * (torch.softmax(z_s[rows] / T, -1) - torch.softmax(z_t[rows] / T, -1)) / (
            T * N_RANK)
        out = res["norms"]
        for part, g in (("ce", g_ce), ("kd", g_kd), ("sinkhorn", g_sink)):
            assert out[f"grad_norm_{part}"] == pytest.approx(float(g.norm()), rel=1e-10), part
        assert out["grad_norm_total"] == pytest.approx(float(res["grad"].norm()), rel=1e-12)
        torch.testing.assert_close(res["grad"], g_ce + g_kd + g_sink, rtol=0, atol=1e-12)
