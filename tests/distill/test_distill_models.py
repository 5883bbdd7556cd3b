"""Tests for sinkd.distill.models with the real packaged MiniLM and its real tokenizer.

Parameter counts are checked against BERT's closed-form count and the documented sizes
(22.7M teacher, 15.6M two-layer student, 11.7M of it word embeddings); logits against direct,
unbatched forward passes of the same model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sinkd.distill.data import TextData, load_rotten_tomatoes
from sinkd.distill.models import (
    CacheDir,
    available_devices,
    count_parameters,
    default_cache_dir,
    load_classifier,
    load_tokenizer,
    make_small_student,
    make_student,
    packaged_model_path,
    select_device,
    teacher_cache_key,
    teacher_logits,
    tiny_classifier,
    tiny_config,
)

M = 1e6


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(packaged_model_path())


@pytest.fixture(scope="module")
def teacher():
    return load_classifier(packaged_model_path(), 2, label_names=("rotten", "fresh"))


@pytest.fixture(scope="module")
def texts() -> TextData:
    """Eight real test snippets of different lengths."""
    return load_rotten_tomatoes().test.subset(range(0, 80, 10))


def bert_parameters(cfg, n_labels: int) -> int:
    """BERT-for-classification parameter count from its configuration, written out by hand."""
    H, F, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers  # F: feed-forward
    embeddings = (cfg.vocab_size + cfg.max_position_embeddings + cfg.type_vocab_size) * H + 2 * H
    layer = 4 * (H * H + H) + 2 * H + (H * F + F) + (F * H + H) + 2 * H
    return embeddings + L * layer + (H * H + H) + (H * n_labels + n_labels)


def test_select_device():
    """auto takes CUDA, then MPS, then CPU; an absent or unknown device is refused, naming it."""
    avail = available_devices()
    assert select_device("auto").type == avail[0] == (
        "cuda" if torch.cuda.is_available() else "mps" if "mps" in avail else "cpu")
    assert select_device("cpu") == torch.device("cpu")
    missing = next(d for d in ("cuda", "mps") if d not in avail)  # no machine has both
    with pytest.raises(ValueError, match=f"device '{missing}' is not available.*'cpu'"):
        select_device(missing)
    with pytest.raises(ValueError, match="device must be one of"):
        select_device("tpu")


def test_packaged_teacher_size(teacher, tokenizer):
    """The packaged MiniLM: 6 layers, hidden 384, 22.7M parameters plus a 2-label head."""
    cfg = teacher.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_labels) == (6, 384, 2)
    n = count_parameters(teacher)
    assert n == sum(p.numel() for p in teacher.parameters()) == bert_parameters(cfg, 2)
    assert abs((n - (384 * 2 + 2)) - 22.7 * M) < 0.1 * M
    assert len(tokenizer) == cfg.vocab_size == tiny_config().vocab_size
    assert cfg.id2label == {0: "rotten", 1: "fresh"} and not teacher.training


def test_two_layer_student_size(teacher):
    """The 2-layer student has 15.6M parameters, 11.7M of them word embeddings (documented)."""
    student = make_student(teacher, 2)
    n = count_parameters(student)
    assert n == sum(p.numel() for p in student.parameters()) == bert_parameters(student.config, 2)
    assert abs(n - 15.6 * M) < 0.1 * M
    # the documented 11.7M is the word-embedding table (30,522 x 384); with positions, token
    # types and LayerNorm the embedding block has 11.9M
    words = student.get_input_embeddings().weight.numel()
    assert abs(words - 11.7 * M) < 0.1 * M and words == 30_522 * 384
    assert count_parameters(student, trainable_only=True) == n


def test_make_student_copies_first_layers(teacher):
    """Every student weight equals the teacher's same-named weight; copies, not shared tensors."""
    student = make_student(teacher, 2)
    t = dict(teacher.named_parameters())
    s = dict(student.named_parameters())
    assert set(s) == {k for k in t if not any(f"layer.{i}." in k for i in range(2, 6))}
    for k, p in s.items():
        assert torch.equal(p, t[k]) and p.data_ptr() != t[k].data_ptr(), k
    assert student.config.num_hidden_layers == 2 and teacher.config.num_hidden_layers == 6
    assert student.training == teacher.training


def test_full_depth_student_is_the_teacher(teacher, tokenizer, texts):
    """With all 6 layers the student's logits equal the teacher's exactly."""
    student = make_student(teacher, 6)
    batch = tokenizer(list(texts.texts), padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(student(**batch).logits, teacher(**batch).logits)


@pytest.mark.parametrize("n_layers", [0, 7, 2.0])
def test_make_student_rejects_bad_depth(teacher, n_layers):
    """n_layers outside [1, teacher's layers] is a ValueError naming n_layers."""
    with pytest.raises(ValueError, match=r"n_layers must be an integer in \[1, 6\]"):
        make_student(teacher, n_layers)


def test_teacher_logits_match_unbatched_forward(teacher, tokenizer, texts):
    """Batched logits equal one-text-at-a-time forwards (1e-5) for any batch size."""
    with torch.no_grad():
        direct = torch.cat([teacher(**tokenizer(t, return_tensors="pt")).logits
                            for t in texts.texts])
    calls = []
    got = teacher_logits(teacher, tokenizer, texts, batch_size=3,
                         on_batch=lambda done, n: calls.append((done, n)))
    assert got.shape == (8, 2) and got.dtype == torch.float32
    assert torch.allclose(got, direct, atol=1e-5, rtol=0)
    for b in (1, 8, 64):
        assert torch.allclose(teacher_logits(teacher, tokenizer, texts, batch_size=b), got,
                              atol=1e-5, rtol=0)
    assert calls == [(3, 8), (6, 8), (8, 8)]


def test_teacher_logits_pairs_and_mode(teacher, tokenizer):
    """Pairs are encoded as (text, text_b); the model's train/eval mode is restored."""
    pairs = TextData(("a fine film", "dull"), ("it was good", "and far too long"), (1, 0),
                     ("no", "yes"))
    teacher.train()
    try:
        got = teacher_logits(teacher, tokenizer, pairs, batch_size=2)
        assert teacher.training
        teacher.eval()
        with torch.no_grad():
            direct = torch.cat([teacher(**tokenizer(a, b, return_tensors="pt")).logits
                                for a, b in zip(pairs.texts, pairs.texts_b, strict=True)])
    finally:
        teacher.eval()
    assert torch.allclose(got, direct, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="batch_size"):
        teacher_logits(teacher, tokenizer, pairs, batch_size=0)


def test_tiny_classifier_trains_and_is_seeded(tokenizer):
    """The tiny BERT runs forward/backward with finite gradients; seeds fix its weights only."""
    state = torch.random.get_rng_state()
    a, b, c = tiny_classifier(0), tiny_classifier(0), tiny_classifier(1)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    batch = tokenizer(["good", "a bad movie"], padding=True, return_tensors="pt")
    out = a(**batch, labels=torch.tensor([1, 0]))
    out.loss.backward()
    grads = [p.grad for p in a.parameters() if p.grad is not None]
    assert out.logits.shape == (2, 2) and torch.isfinite(out.loss)
    assert all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert count_parameters(a) == bert_parameters(a.config, 2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_folder_loads_in_float32(dtype, tmp_path):
    """A checkpoint saved in float16 or bfloat16 loads with float32 weights equal to the saved
    ones (exactly: widening is exact), so training never updates half-precision weights."""
    saved = tiny_classifier(0).to(dtype)
    saved.save_pretrained(tmp_path)
    loaded = load_classifier(tmp_path, 2)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    for name, p in saved.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], p.float()), name


def test_make_small_student(teacher):
    """A smaller config keeps vocab and head size; its count matches BERT's closed form."""
    small = make_small_student(teacher.config, 2, 128, seed=0)
    cfg = small.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads) == (2, 128, 4)
    assert cfg.intermediate_size == 512 and cfg.vocab_size == teacher.config.vocab_size
    assert count_parameters(small) == bert_parameters(cfg, 2) and small.training
    assert teacher.config.hidden_size == 384  # the teacher's config is not modified
    with pytest.raises(ValueError, match="num_attention_heads"):
        make_small_student(teacher.config, 2, 100, num_attention_heads=3)


def test_loading_errors(monkeypatch, tmp_path):
    """Offline hub ids, missing folders and bad num_labels fail clearly, without the network."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="could not load 'someone/no-such-bert'.*local folder"):
        load_tokenizer("someone/no-such-bert")
    with pytest.raises(RuntimeError, match="Hugging Face hub"):
        load_classifier("someone/no-such-bert", 2)
    with pytest.raises(ValueError, match="not a model folder"):
        load_classifier(tmp_path / "absent", 2)
    with pytest.raises(ValueError, match="not a loadable model folder"):
        load_classifier(tmp_path, 2)
    with pytest.raises(ValueError, match="num_labels"):
        load_classifier(packaged_model_path(), 1)


def test_cache_dir_and_keys(monkeypatch, tmp_path):
    """$SINKD_CACHE overrides ~/.cache/sinkd; keys are stable 16-hex hashes of every argument."""
    monkeypatch.delenv("SINKD_CACHE", raising=False)
    assert default_cache_dir() == Path.home() / ".cache" / "sinkd"
    monkeypatch.setenv("SINKD_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path and CacheDir().root == tmp_path
    args = dict(model_id="minilm", data_name="rotten_tomatoes", max_length=64, steps=150, seed=0)
    key = teacher_cache_key(**args)
    assert key == teacher_cache_key(**args) and len(key) == 16 and int(key, 16) >= 0
    changes = dict(model_id="x", data_name="sst2", max_length=128, steps=151, seed=1)
    for name, other in changes.items():
        assert teacher_cache_key(**{**args, name: other}) != key, name
    cache = CacheDir()
    assert cache.load_logits(key, "train") is None
    logits = torch.randn(5, 2, dtype=torch.float64)
    path = cache.save_logits(key, "train", logits)
    assert path.parent.parent == tmp_path
    assert torch.equal(cache.load_logits(key, "train"), logits.float())
    assert cache.teacher_dir(key) == tmp_path / "teachers" / key
