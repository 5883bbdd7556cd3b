"""Distillation training (sinkd.distill): config, recipes, schedule, loop, command line.

Unit tests use a random tiny BERT teacher (sinkd.distill.models.tiny_classifier) saved to a
folder with the packaged tokenizer, and a small hand-written CSV; one end-to-end test runs the
packaged MiniLM on the real Rotten Tomatoes data.
"""

import dataclasses
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import sinkd.distill
from sinkd import annealed_temperature, divergence, sinkd_loss
from sinkd.cli import build_parser, main
from sinkd.distill import models
from sinkd.distill.cli import run_distill
from sinkd.distill.config import DistillConfig
from sinkd.distill.recipes import RECIPES, kd_temperature_at, progress_at
from sinkd.distill.records import load_record
from sinkd.distill.steps import get_batch, lr_at
from sinkd.distill.teacher import prepare_teacher, teacher_cache
from sinkd.distill.train import evaluate, load_data, train


def tiny_config(tiny: dict, **changes) -> DistillConfig:
    """A fast CPU config on the tiny teacher: 6 steps of batch 8, dev every 2 steps."""
    base = DistillConfig(data=tiny["data"], teacher=tiny["teacher"], teacher_steps=4,
                         student_layers=1, steps=6, batch_size=8, eval_every=2, max_length=16,
                         cache_dir=str(tiny["root"] / "cache"), device="cpu")
    return dataclasses.replace(base, **changes)


# ----------------------------------------------------------------------------- config
BAD_VALUES = {
    "data": "", "train_limit": 1, "eval_limit": 0, "max_length": 4, "teacher": "",
    "data_dir": " ", "epochs": 0.0,
    "teacher_steps": -1, "teacher_lr": 0.0, "cache_dir": "  ", "student_layers": 0,
    "student_from_scratch": 1, "dtype": "float16", "dropout": "no", "sinkhorn_batch": "all",
    "recipe": "mse", "alpha": 1.5, "beta": -0.1, "kd_temperature": 0.0,
    "anneal_temperature": "yes", "reg": -1.0, "n_iters": 0, "sinkhorn_temperature": math.inf,
    "steps": 0, "batch_size": 2.5, "lr": 0.0, "weight_decay": 2.0, "warmup_fraction": -0.5,
    "eval_every": 0, "checkpoint_every": 0, "seed": -1, "device": "tpu", "out": "",
}


def test_bad_values_cover_every_field():
    """The bad-value table below names every config field (new fields must join it)."""
    assert set(BAD_VALUES) == {f.name for f in dataclasses.fields(DistillConfig)}


@pytest.mark.parametrize("field", sorted(BAD_VALUES))
def test_validate_names_the_bad_field(field):
    """A bad value of any field raises ValueError naming that field and what it allows."""
    with pytest.raises(ValueError, match=rf"^{field} must be .+, got "):
        DistillConfig(**{field: BAD_VALUES[field]}).validate()


def test_validate_accepts_defaults_and_range_edges():
    """Defaults and the closed ends of the ranges are valid; an int given for a float field is
    accepted and stored as a float."""
    DistillConfig().validate()
    cfg = DistillConfig(alpha=0.0, beta=0.0, warmup_fraction=1.0, teacher_steps=0, lr=1,
                        train_limit=2, anneal_temperature=True, out="x.json").validate()
    assert cfg.lr == 1.0 and type(cfg.lr) is float


@pytest.mark.parametrize("field, value, allowed", [
    ("steps", 0, "an integer in [1, 10000000]"), ("alpha", 1.5, "a finite number in [0, 1]"),
    ("reg", -1.0, "a finite number in (0, 100]"), ("device", "tpu", "one of ('auto', 'cpu'"),
    ("anneal_temperature", "yes", "True or False"), ("out", "", "a non-empty string"),
])
def test_validate_message_names_field_range_and_value(field, value, allowed):
    """Messages read like sinkd.validation's everywhere: '<field> must be <allowed>, got <v>'."""
    with pytest.raises(ValueError) as info:
        DistillConfig(**{field: value}).validate()
    text = str(info.value)
    assert text.startswith(f"{field} must be {allowed}") and text.endswith(f"got {value!r}")


def test_from_overrides_parses_strings_to_field_types():
    """key=value strings become the field's type: int, float, bool, str and None."""
    cfg = DistillConfig.from_overrides(["steps=7", "lr=1e-4", "alpha=1", "recipe=kd",
                                        "anneal_temperature=true", "train_limit=None",
                                        "teacher=/some/folder"])
    assert (cfg.steps, cfg.lr, cfg.alpha, cfg.recipe) == (7, 1e-4, 1.0, "kd")
    assert type(cfg.steps) is int and type(cfg.alpha) is float
    assert cfg.anneal_temperature is True and cfg.train_limit is None
    assert cfg.teacher == "/some/folder"
    assert DistillConfig.from_overrides({"lr": 1}, base=cfg).steps == 7  # base kept


@pytest.mark.parametrize("overrides, field", [
    (["steps=ten"], "steps"), (["anneal_temperature=maybe"], "anneal_temperature"),
    (["alpha=2"], "alpha"), ({"steps": 2.5}, "steps"), ({"steps": "10"}, "steps"),
    ({"steps": True}, "steps"),
    ({"anneal_temperature": 1}, "anneal_temperature"), ({"recipe": None}, "recipe"),
])
def test_from_overrides_type_checks(overrides, field):
    """A value of the wrong type or range raises ValueError naming the field."""
    with pytest.raises(ValueError, match=rf"^{field} must be"):
        DistillConfig.from_overrides(overrides)


def test_from_overrides_unknown_key_lists_valid_ones():
    """An unknown key (string or dict) raises ValueError naming it and listing the valid keys."""
    for overrides in (["stepz=3"], {"stepz": 3}):
        with pytest.raises(ValueError, match=r"stepz.*valid keys: \[.*'steps'"):
            DistillConfig.from_overrides(overrides)
    with pytest.raises(ValueError, match="key=value"):
        DistillConfig.from_overrides(["steps"])


# ----------------------------------------------------------------------------- recipes
def _logits(seed: int = 0, n: int = 6, c: int = 3) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    z_s = 2 * torch.randn(n, c, generator=g, dtype=torch.float64)  # (N, C)
    z_t = 2 * torch.randn(n, c, generator=g, dtype=torch.float64)  # (N, C)
    return z_s, z_t, torch.randint(0, c, (n,), generator=g)


CONFIG = DistillConfig(alpha=0.7, beta=0.5, kd_temperature=3.0, reg=0.2, n_iters=15,
                       sinkhorn_temperature=1.5)


def _expected(recipe: str, z_s, z_t, y, cfg: DistillConfig, temperature: float) -> torch.Tensor:
    """Each recipe's formula, written out from its parts."""
    a, b = cfg.alpha, cfg.beta
    ce = F.cross_entropy(z_s, y)
    sink = sinkd_loss(z_s, z_t, reg=cfg.reg, n_iters=cfg.n_iters,
                      temperature=cfg.sinkhorn_temperature)
    p_t = torch.softmax(z_t / temperature, -1)
    log_p_s, log_p_t = F.log_softmax(z_s / temperature, -1), F.log_softmax(z_t / temperature, -1)
    if recipe == "ce":
        return ce
    if recipe == "kd":  # KL(teacher || student), by hand
        return (1 - a) * ce + a * (p_t * (log_p_t - log_p_s)).sum(-1).mean()
    if recipe in ("rkl", "js", "tvd", "skew_kl"):
        return (1 - a) * ce + a * divergence(recipe, z_s, z_t, temperature=temperature)
    if recipe == "sinkd":  # soft cross-entropy KD, no T^2, plus the SinKD term
        return (1 - a) * ce + a * -(p_t * log_p_s).sum(-1).mean() + b * sink
    assert recipe == "sinkhorn"
    return (1 - a) * ce + b * sink


def test_recipes_are_the_documented_set():
    """RECIPES holds exactly the eight documented recipes, each with a description."""
    assert set(RECIPES) == {"ce", "kd", "rkl", "js", "tvd", "skew_kl", "sinkd", "sinkhorn"}
    assert all(r.description and r.parts[0] == "ce" for r in RECIPES.values())


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipe_loss_equals_its_formula(recipe):
    """Each recipe's total equals its formula from CE, sinkd.divergence and sinkd_loss (f64)."""
    z_s, z_t, y = _logits()
    terms = RECIPES[recipe].loss(z_s, z_t, y, config=CONFIG, progress=0.3)
    expected = _expected(recipe, z_s, z_t, y, CONFIG, CONFIG.kd_temperature)
    assert terms.total.dtype == torch.float64
    torch.testing.assert_close(terms.total, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(terms.ce, F.cross_entropy(z_s, y), rtol=1e-12, atol=0)
    if "sinkhorn" in RECIPES[recipe].parts:
        torch.testing.assert_close(terms.sinkhorn, sinkd_loss(
            z_s, z_t, reg=0.2, n_iters=15, temperature=1.5), rtol=1e-12, atol=0)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_teacher_logits_get_no_gradient(recipe):
    """Backpropagating any recipe's loss reaches the student's logits, never the teacher's."""
    z_s, z_t, y = _logits(1)
    z_s.requires_grad_(True)
    z_t.requires_grad_(True)
    RECIPES[recipe].loss(z_s, z_t, y, config=CONFIG, progress=0.5).total.backward()
    assert z_t.grad is None
    assert z_s.grad is not None and bool(z_s.grad.abs().sum() > 0)


def test_annealing_follows_annealed_temperature_per_step():
    """With annealing, step s of S has sinkd.annealed_temperature(T, s, S); else T throughout."""
    cfg = DistillConfig(kd_temperature=4.0, anneal_temperature=True, steps=7)
    got = [kd_temperature_at(cfg, progress_at(s, cfg.steps)) for s in range(cfg.steps)]
    assert got == pytest.approx([annealed_temperature(4.0, s, 7) for s in range(7)], abs=1e-15)
    assert got[0] == 4.0 and got[-1] == 1.0
    fixed = dataclasses.replace(cfg, anneal_temperature=False)
    assert {kd_temperature_at(fixed, progress_at(s, 7)) for s in range(7)} == {4.0}


def test_annealed_recipe_uses_the_current_temperature():
    """At the last step an annealed recipe's loss is the formula at temperature 1."""
    z_s, z_t, y = _logits(2)
    cfg = dataclasses.replace(CONFIG, anneal_temperature=True)
    for recipe in ("kd", "js", "sinkd"):
        total = RECIPES[recipe].loss(z_s, z_t, y, config=cfg, progress=1.0).total
        torch.testing.assert_close(total, _expected(recipe, z_s, z_t, y, cfg, 1.0), rtol=1e-12,
                                   atol=1e-14)


# ----------------------------------------------------------------------------- schedule, batches
def test_lr_schedule_closed_form():
    """lr rises linearly to its peak over round(0.3 * 10) = 3 steps, then decays linearly."""
    cfg = DistillConfig(steps=10, lr=2.0, warmup_fraction=0.3)
    expected = [2.0 * (s + 1) / 3 for s in range(3)] + [2.0 * (10 - s) / 7 for s in range(3, 10)]
    assert [lr_at(s, cfg) for s in range(10)] == pytest.approx(expected, rel=1e-15)
    no_warmup = DistillConfig(steps=4, lr=1.0, warmup_fraction=0.0)
    assert [lr_at(s, no_warmup) for s in range(4)] == [1.0, 0.75, 0.5, 0.25]


def _split(n: int, width: int = 10) -> dict[str, torch.Tensor]:
    """A fake tokenized split whose row i has i % 7 + 3 real tokens, all equal to i."""
    lengths = torch.arange(n) % 7 + 3
    mask = (torch.arange(width)[None, :] < lengths[:, None]).long()  # (N, L)
    return {"input_ids": torch.arange(n)[:, None] * mask, "attention_mask": mask,
            "labels": torch.arange(n)}


def test_get_batch_epochs_are_seeded_permutations():
    """An epoch visits every row once; same (step, seed) gives the same batch, padding trimmed."""
    split, cfg = _split(24), DistillConfig(batch_size=8, seed=3)
    logits = torch.stack([torch.arange(24.0), -torch.arange(24.0)], 1)  # (N, 2) row ids
    gen = torch.Generator()
    epoch = [get_batch(split, s, cfg, logits=logits, generator=gen) for s in range(3)]
    rows = torch.cat([b["labels"] for b in epoch])
    assert sorted(rows.tolist()) == list(range(24))
    for b in epoch:
        assert torch.equal(b["teacher_logits"][:, 0].long(), b["labels"])  # rows stay paired
        assert b["input_ids"].shape[1] == int((b["labels"] % 7 + 3).max())  # trimmed
        assert torch.equal(b["input_ids"][:, 0], b["labels"])
    again = get_batch(split, 1, cfg)  # a fresh generator: the batch depends on (step, seed)
    assert torch.equal(again["labels"], epoch[1]["labels"]) and "teacher_logits" not in again
    next_epoch = get_batch(split, 3, cfg)["labels"]
    other_seed = get_batch(split, 0, dataclasses.replace(cfg, seed=4))["labels"]
    assert not torch.equal(next_epoch, epoch[0]["labels"])
    assert not torch.equal(other_seed, epoch[0]["labels"])


def test_evaluate_matches_direct_forward(tiny):
    """evaluate's accuracy equals argmax accuracy of one unbatched forward; mode is restored."""
    cfg = tiny_config(tiny, batch_size=2)  # eval batches of 8 rows: several, unevenly padded
    tokenizer = models.load_tokenizer(tiny["teacher"])
    data = load_data(cfg).train
    enc = models.encode(tokenizer, data.texts, max_length=cfg.max_length)
    labels = torch.tensor(data.labels)
    model = models.tiny_classifier(seed=5)
    model.eval()
    with torch.no_grad():
        expected = float((model(**enc).logits.argmax(-1) == labels).double().mean())
    model.train()
    got = evaluate(model, {**enc, "labels": labels}, cfg)
    assert got == pytest.approx(expected, abs=1e-12)
    assert model.training


# ----------------------------------------------------------------------------- teacher and loop
def test_prepare_teacher_fine_tunes_once_then_reads_cache(tiny, tmp_path):
    """First call fine-tunes (events per step) and caches; the second returns cached logits."""
    cfg = tiny_config(tiny, cache_dir=str(tmp_path))
    splits = load_data(cfg)
    events = []
    teacher, logits = prepare_teacher(cfg, splits, on_progress=events.append)
    assert [e["done"] for e in events if e["phase"] == "fine-tune"] == [1, 2, 3, 4]
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    for s in ("train", "dev", "test"):
        assert logits[s].shape == (len(getattr(splits, s)), 2)
    # the cached logits are the saved teacher's: recompute them independently from the folder
    cache, key = teacher_cache(cfg, splits)
    saved = models.load_classifier(cache.teacher_dir(key), 2)
    tok = models.load_tokenizer(tiny["teacher"])
    again = models.teacher_logits(saved, tok, splits.dev, max_length=cfg.max_length)
    torch.testing.assert_close(again, logits["dev"], rtol=1e-5, atol=1e-5)
    events.clear()
    cached, logits2 = prepare_teacher(cfg, splits, on_progress=events.append)
    assert cached is None and [e["phase"] for e in events] == ["cache"]
    assert all(torch.equal(logits[s], logits2[s]) for s in logits)


def test_train_runs_and_records(tiny, tmp_path):
    """train() runs every step, calls on_step each time, and writes a loadable, complete record."""
    out = tmp_path / "run.json"
    cfg = tiny_config(tiny, out=str(out), recipe="sinkd")
    events = []
    record = train(cfg, on_step=events.append)
    assert [e["step"] for e in events] == list(range(1, 7)) and events[0]["steps"] == 6
    assert record.metrics == [{k: v for k, v in e.items() if k != "steps"} for e in events]
    assert not record.stopped and record.ended is not None
    for row in record.metrics:
        assert all(math.isfinite(row[k]) for k in ("loss", "ce", "kd", "sinkhorn", "lr"))
        assert row["loss"] == pytest.approx(0.1 * row["ce"] + 0.9 * row["kd"]
                                            + 0.8 * row["sinkhorn"], rel=1e-5)
    devs = {r["step"]: r["dev_accuracy"] for r in record.metrics if "dev_accuracy" in r}
    assert sorted(devs) == [2, 4, 6]
    res = record.results
    assert res["best_dev"] == max(devs.values()) and devs[res["best_step"]] == res["best_dev"]
    assert min(s for s, d in devs.items() if d == res["best_dev"]) == res["best_step"]
    assert res["final_dev"] == devs[6] and 0 <= res["test"] <= 1 and res["steps_done"] == 6
    assert load_record(out).to_dict() == record.to_dict()
    assert record.data["train"] + record.data["dev"] + record.data["test"] == 96
    assert record.versions["torch"] == torch.__version__
    plan = torch.tensor(record.last_batch["plan"], dtype=torch.float64)  # (B, B)
    assert plan.shape == (8, 8)
    torch.testing.assert_close(plan.sum(0), torch.ones(8, dtype=torch.float64))  # columns exact
    assert len(record.last_batch["student_logits"]) == 8


def test_interrupted_run_records_exactly_what_it_finished(tiny, tmp_path):
    """should_stop after k steps: a stopped record with k metric rows, equal to a full run's."""
    full = train(tiny_config(tiny, recipe="kd"))
    out = tmp_path / "stopped.json"
    calls = []
    stopped = train(tiny_config(tiny, recipe="kd", out=str(out)), on_step=calls.append,
                    should_stop=lambda: len(calls) >= 3)
    assert stopped.stopped and len(calls) == 3
    on_disk = load_record(out)
    assert on_disk.stopped and [r["step"] for r in on_disk.metrics] == [1, 2, 3]
    timing_free = [{k: v for k, v in r.items() if k != "examples_per_s"} for r in on_disk.metrics]
    assert timing_free == [{k: v for k, v in r.items() if k != "examples_per_s"}
                           for r in full.metrics[:3]]
    assert on_disk.results["best_step"] == 2 and on_disk.results["final_dev_step"] == 2


def test_stop_during_teacher_fine_tuning_caches_nothing(tiny, tmp_path):
    """Stopping while the teacher trains returns a stopped record and leaves no cached logits."""
    record = train(tiny_config(tiny, cache_dir=str(tmp_path)), should_stop=lambda: True)
    assert record.stopped and record.metrics == [] and "stopped" in record.teacher
    assert not (tmp_path / "logits").exists()


def test_teacher_params_never_get_gradients_while_distilling(tiny, tmp_path):
    """After distillation steps every teacher parameter still has grad None."""
    cfg = tiny_config(tiny, cache_dir=str(tmp_path), steps=3)
    teacher, logits = prepare_teacher(cfg, load_data(cfg))
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    record = train(cfg, prepared=(teacher, logits))
    assert len(record.metrics) == 3 and record.teacher["from_cache"] is False
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_student_from_scratch_has_the_requested_shape(tiny):
    """student_from_scratch=True trains a random student with the teacher's width, 1 layer."""
    record = train(tiny_config(tiny, student_from_scratch=True, steps=2, eval_every=1))
    assert record.teacher["student_parameters"] == models.count_parameters(
        models.make_small_student(models.tiny_config(), 1, 32))
    assert len(record.metrics) == 2


# ----------------------------------------------------------------------------- real end to end
def test_end_to_end_minilm_rotten_tomatoes(tmp_path):
    """Packaged MiniLM, real Rotten Tomatoes: fine-tune, cache, distil; the rerun reuses it."""
    cfg = DistillConfig(teacher_steps=3, train_limit=64, eval_limit=64, max_length=32,
                        batch_size=8, steps=3, eval_every=3, recipe="sinkd", device="cpu",
                        cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "run.json"))
    phases, t0 = [], time.perf_counter()
    first = train(cfg, on_progress=lambda e: phases.append(e["phase"]))
    t_first = time.perf_counter() - t0
    assert phases.count("fine-tune") == 3 and "logits" in phases
    assert first.teacher["from_cache"] is False and first.data["name"] == "rotten_tomatoes"
    assert (first.data["train"], first.data["dev"], first.data["test"]) == (64, 64, 64)
    assert first.teacher["parameters"] > 22_000_000  # MiniLM-L6 with a 2-label head
    assert first.teacher["student_parameters"] < 16_000_000  # its first 2 layers
    for row in first.metrics:
        assert all(math.isfinite(row[k]) for k in ("loss", "ce", "kd", "sinkhorn"))
    assert 0 <= first.results["test"] <= 1 and 0 <= first.results["best_dev"] <= 1
    saved = json.loads(Path(cfg.out).read_text())
    assert saved["teacher"]["from_cache"] is False and len(saved["metrics"]) == 3
    phases.clear()
    t0 = time.perf_counter()
    second = train(cfg, on_progress=lambda e: phases.append(e["phase"]), overwrite=True)
    t_second = time.perf_counter() - t0
    assert phases == ["cache"] and second.teacher["from_cache"] is True
    assert load_record(cfg.out).teacher["from_cache"] is True
    assert second.teacher["dev_accuracy"] == first.teacher["dev_accuracy"]
    print(f"\ne2e: first run {t_first:.1f} s (fine-tune + logits + 3 steps), "
          f"cached rerun {t_second:.1f} s")


# ----------------------------------------------------------------------------- command line
def _cli_args(tiny: dict, out: Path, *extra: str) -> list[str]:
    return ["distill", "--data", tiny["data"], "--steps", "2", "--batch-size", "8", "--device",
            "cpu", "--set", f"teacher={tiny['teacher']}", "--set", "teacher_steps=4",
            "--set", "student_layers=1", "--set", "max_length=16", "--set",
            f"cache_dir={tiny['root'] / 'cache'}", "--out", str(out), "--no-progress", *extra]


def test_package_exports_its_public_names():
    """Every name in sinkd.distill.__all__ is an attribute of the package, defined in one of its
    modules (not in train.py re-exporting another's)."""
    for name in sinkd.distill.__all__:
        obj = getattr(sinkd.distill, name)
        module = getattr(obj, "__module__", None)
        assert module is None or module.startswith("sinkd.distill."), (name, module)
    assert {"DistillConfig", "RECIPES", "train"} <= set(sinkd.distill.__all__)


def test_importing_the_package_leaves_transformers_unloaded():
    """`import sinkd.distill` (the pages, --help, reading records) does not import transformers:
    it is loaded with the first model."""
    code = "import sys, sinkd.distill; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_distill_help_lists_flags():
    """distill --help names every flag of the subcommand."""
    sub = build_parser()._subparsers._group_actions[0].choices["distill"]
    text = sub.format_help()
    for flag in ("--recipe", "--steps", "--batch-size", "--train-limit", "--seed", "--device",
                 "--out", "--data", "--set"):
        assert flag in text
    assert all(name in text for name in RECIPES)


def test_add_subcommands_plugs_into_the_sinkd_parser():
    """`python -m sinkd`'s parser has exactly verify, toy, distill, compare and clean
    (benchmarks are `python -m bench`, outside the package)."""
    parser = build_parser()
    sub = parser._subparsers._group_actions[0]
    assert set(sub.choices) == {"verify", "toy", "distill", "compare", "clean"}
    args = parser.parse_args(["distill", "--recipe", "kd", "sinkd", "--seed", "0", "2"])
    assert args.run is run_distill and args.recipe == ["kd", "sinkd"] and args.seed == [0, 2]
    assert parser.parse_args(["compare", "a.json"]).records == ["a.json"]


def test_distill_cli_runs_recipes_times_seeds(tiny, tmp_path, capsys):
    """distill --recipe a b --seed 0 1 writes four records and prints the comparison."""
    code = main(_cli_args(tiny, tmp_path, "--recipe", "ce", "js", "--seed", "0", "1"))
    out = capsys.readouterr().out
    assert code == 0
    names = sorted(p.name for p in tmp_path.glob("*.json"))
    assert names == ["ce-seed0.json", "ce-seed1.json", "js-seed0.json", "js-seed1.json"]
    record = load_record(tmp_path / "js-seed1.json")
    assert record.config["recipe"] == "js" and record.config["seed"] == 1
    assert record.config["steps"] == 2 and record.config["batch_size"] == 8
    table = out[out.index("recipe "):].splitlines()
    assert "test %" in table[0] and [line.split()[0] for line in table[1:]] == [
        "teacher", "ce", "js"]


def test_distill_cli_rejects_bad_settings(tiny, tmp_path, capsys):
    """A bad --set or --recipe exits 2 with a message naming it, running nothing."""
    assert main(_cli_args(tiny, tmp_path, "--set", "alpha=3")) == 2
    assert "alpha must be" in capsys.readouterr().err
    assert main(_cli_args(tiny, tmp_path, "--recipe", "mse")) == 2
    assert "mse" in capsys.readouterr().err
    assert list(tmp_path.glob("*.json")) == []


def test_ctrl_c_stops_cleanly_with_exit_130(tiny, tmp_path):
    """SIGINT during a run: exit 130, and the record on disk is marked stopped."""
    args = _cli_args(tiny, tmp_path, "--recipe", "ce", "--set", "eval_every=1")
    args[args.index("--steps") + 1] = "100000"
    proc = subprocess.Popen([sys.executable, "-m", "sinkd", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    record_file = tmp_path / "ce-seed0.json"
    deadline = time.time() + 90
    while time.time() < deadline:
        if record_file.exists() and load_record(record_file).metrics:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    record = load_record(record_file)
    assert record.stopped and 1 <= len(record.metrics) < 100000
    assert "[stopped; continue with: python -m sinkd distill --resume" in stdout
