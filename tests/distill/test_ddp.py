"""Data-parallel distillation under torchrun (sinkd.distill.parallel), on the CPU with gloo.

Two processes launched by ``python -m torch.distributed.run`` (torchrun) train the tiny teacher's
student on shards of the same global batches as one process does; in float64 with dropout off,
the global-batch SinKD term and DDP's gradient averaging make every update the one-process
update, so the losses of every step and the weights agree to rounding. The torchrun runs are
stopped (``--stop-after``) and resumed under torchrun; the one-process reference runs in this
process.
"""

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sinkd.distill.checkpoints import checkpoint_path, load_checkpoint
from sinkd.distill.config import DistillConfig
from sinkd.distill.gradients import KEYS, SHARE_KEYS
from sinkd.distill.models import load_classifier
from sinkd.distill.parallel import check_batch_size, shard
from sinkd.distill.recipes import RECIPES
from sinkd.distill.records import load_record
from sinkd.distill.train import train

STEPS, STOP, BATCH = 6, 3, 8  # 6 steps of a global batch of 8; the torchrun run stops after 3
TOL = 1e-6  # float64: the two computations differ by rounding only (about 1e-15 here)
TERMS = ("loss", "ce", "kd", "sinkhorn")


def settings(tiny: dict, cache: Path) -> dict:
    """The run's config: float64, no dropout, a large lr so that the weights move."""
    return dict(teacher=tiny["teacher"], data=tiny["data"], teacher_steps=4, student_layers=1,
                max_length=16, steps=STEPS, batch_size=BATCH, eval_every=2, lr=1e-3,
                dtype="float64", dropout=False, cache_dir=str(cache), device="cpu")


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 -m sinkd distill ARGS`` on a free port, 240 s at most."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "sinkd",
               "distill", "--device", "cpu", "--no-progress", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def runs(tiny, tmp_path_factory) -> dict:
    """A torchrun run stopped after 3 steps then resumed, and the same run on one process,
    uninterrupted and stopped after 3 steps (the teacher cache starts empty: torchrun fills it)."""
    root = tmp_path_factory.mktemp("ddp")
    config = settings(tiny, root / "cache")
    sets = [arg for k, v in config.items() if k not in ("steps", "batch_size", "device")
            for arg in ("--set", f"{k}={v}")]
    out = root / "ddp"
    stopped = torchrun(*sets, "--steps", str(STEPS), "--batch-size", str(BATCH), "--out",
                       str(out), "--stop-after", str(STOP), cwd=root)
    record = out / "sinkd-seed0.json"
    stopped_record = load_record(record)
    files_when_stopped = sorted(p.name for p in out.iterdir())
    ddp_state = load_checkpoint(checkpoint_path(record))  # the resumed run deletes it
    copy = root / "copy" / record.name  # the stopped run, also resumed on one process below
    copy.parent.mkdir()
    for path in (record, checkpoint_path(record)):
        shutil.copy(path, copy.parent / path.name)
    resumed = torchrun("--resume", str(record), cwd=root)
    one = train(DistillConfig(**config))
    resumed_alone = train(DistillConfig(**config, out=str(copy)), resume_from=copy)
    steps = []
    one_stopped = train(DistillConfig(**config, out=str(root / "one" / "one.json")),
                        on_step=steps.append, should_stop=lambda: len(steps) >= STOP)
    return dict(stopped=stopped, stopped_record=stopped_record, ddp_state=ddp_state,
                files_when_stopped=files_when_stopped, resumed=resumed, out=out,
                record=load_record(record), one=one, one_stopped=one_stopped,
                resumed_alone=resumed_alone,
                one_state=load_checkpoint(checkpoint_path(root / "one" / "one.json")),
                cache=root / "cache")


def test_torchrun_stops_with_one_record_and_its_checkpoint(runs):
    """--stop-after 3 under torchrun: every rank stops after step 3; rank 0 alone writes one
    record (stopped, 3 steps, world size 2, global batch 8) and its resume state, and says how
    to continue under torchrun; rank 0's exit status (130) makes torchrun's non-zero."""
    proc, record = runs["stopped"], runs["stopped_record"]
    assert proc.returncode != 0, proc.stderr[-3000:]
    assert "continue with: torchrun --nproc_per_node 2 -m sinkd distill --resume" in proc.stdout
    assert proc.stdout.count("sinkd seed 0:") == 1  # one summary: rank 0's
    assert runs["files_when_stopped"] == ["sinkd-seed0.json", "sinkd-seed0.resume.pt"]
    assert record.stopped and len(record.metrics) == STOP and runs["ddp_state"]["step"] == STOP
    assert (record.world_size, record.global_batch) == (2, BATCH)
    assert len(runs["ddp_state"]["ranks"]) == 2  # each rank's dropout generator


def test_teacher_is_prepared_once_by_rank_0(runs):
    """Rank 0 fine-tuned and cached the teacher (from_cache False) while rank 1 waited; the
    cache holds one teacher, which the one-process runs then read (from_cache True)."""
    assert runs["stopped_record"].teacher["from_cache"] is False
    assert runs["one"].teacher["from_cache"] is True
    assert len([p for p in runs["cache"].rglob("config.json")]) == 1


def test_torchrun_weights_equal_one_process(runs):
    """After 3 steps, the student weights and AdamW moments of the 2-process run (rank 0's
    checkpoint) equal those of one process with the same global batches, to 1e-6 in float64;
    the weights did move (the comparison is not between two untouched copies)."""
    ddp, one = runs["ddp_state"], runs["one_state"]
    assert ddp["student"].keys() == one["student"].keys()
    for key, value in one["student"].items():
        assert value.dtype == torch.float64
        assert torch.allclose(ddp["student"][key], value, rtol=0, atol=TOL), key
    ddp_moments = [s["exp_avg"] for s in ddp["optimizer"]["state"].values()]
    one_moments = [s["exp_avg"] for s in one["optimizer"]["state"].values()]
    assert len(one_moments) > 0
    assert all(torch.allclose(a, b, rtol=0, atol=TOL)
               for a, b in zip(ddp_moments, one_moments, strict=True))
    # the student started as the teacher's first layer: 3 AdamW steps at lr 1e-3 moved it
    teacher = load_classifier(runs["one"].teacher["cache"], 2).state_dict()
    moved = max(float((one["student"][k] - teacher[k].double()).abs().max())
                for k in one["student"] if k in teacher)
    assert moved > 1e3 * TOL


def test_resumed_torchrun_run_equals_one_uninterrupted_process(runs):
    """torchrun --resume continues the stopped run on 2 processes and finishes it: exit 0, one
    record (its resume state deleted), resumed at step 3, and every step's loss terms, dev
    accuracy, gradient norms and shares at the logits (evaluation steps) and the last global
    batch's plan equal the uninterrupted one-process run to 1e-6."""
    proc, record, one = runs["resumed"], runs["record"], runs["one"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in runs["out"].iterdir()) == ["sinkd-seed0.json"]
    assert not record.stopped and record.resumed_at == [STOP] and record.world_size == 2
    assert len(record.metrics) == len(one.metrics) == STEPS
    for ours, theirs in zip(record.metrics, one.metrics, strict=True):
        for term in TERMS:
            assert ours[term] == pytest.approx(theirs[term], rel=0, abs=TOL), (ours, term)
        assert ours.get("dev_accuracy") == theirs.get("dev_accuracy")
        assert {k for k in KEYS if k in ours} == {k for k in KEYS if k in theirs}
        for key in (k for k in KEYS if theirs.get(k) is not None):
            assert ours[key] == pytest.approx(theirs[key], rel=0, abs=TOL), (ours, key)
    assert sum(theirs.get(SHARE_KEYS["sinkhorn"]) is not None for theirs in one.metrics) == 3
    plans = [torch.tensor(r.last_batch["plan"]) for r in (record, one)]
    assert plans[0].shape == (BATCH, BATCH) and torch.allclose(*plans, rtol=0, atol=TOL)
    assert record.results["test"] == one.results["test"]


def test_torchrun_run_resumes_on_one_process(runs):
    """The run stopped on 2 processes continues on one (python, no torchrun) exactly as the
    uninterrupted one-process run: the resume state is the same whatever the world size."""
    resumed, one = runs["resumed_alone"], runs["one"]
    assert not resumed.stopped and resumed.world_size == 1 and resumed.resumed_at == [STOP]
    for ours, theirs in zip(resumed.metrics, one.metrics, strict=True):
        for term in TERMS:
            assert ours[term] == pytest.approx(theirs[term], rel=0, abs=TOL), (ours, term)


def test_batch_not_divisible_by_world_size_fails_before_any_model_loads(tiny, tmp_path):
    """A global batch of 7 on 2 processes: ValueError naming batch_size and the world size on
    every rank, before the teacher is fine-tuned (the cache stays empty); the shards of a
    global batch are its consecutive rows, in rank order."""
    config = settings(tiny, tmp_path / "cache")
    proc = torchrun("--set", f"teacher={config['teacher']}", "--set", f"data={config['data']}",
                    "--set", f"cache_dir={config['cache_dir']}", "--batch-size", "7", cwd=tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.count("batch_size must be a multiple of the world size 2") == 2
    assert not (tmp_path / "cache").exists()
    with pytest.raises(ValueError, match="batch_size must be a multiple of the world size 3"):
        check_batch_size(8, 3)
    rows = torch.arange(8)
    assert torch.equal(torch.cat([shard({"x": rows}, r, 4)["x"] for r in range(4)]), rows)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_shard_means_average_to_the_global_batch_in_every_recipe(recipe):
    """DDP averages the W ranks' gradients; for every recipe the CE and KD parts are means over
    the rows, so the mean over 4 shards of their weighted sum and of its gradient at the logits
    equals the global batch's (the SinKD part is the global term, checked by the runs above)."""
    torch.manual_seed(0)
    z_s = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    z_t, labels = torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 3, (8,))
    config = DistillConfig(alpha=0.6, anneal_temperature=True, kd_temperature=3.0)

    def rows_part(rows: slice) -> torch.Tensor:
        terms = RECIPES[recipe].loss(z_s[rows], z_t[rows], labels[rows], config=config,
                                     progress=0.5)
        weights = RECIPES[recipe].weights(config)
        return sum(w * getattr(terms, p) for p, w in weights.items() if p != "sinkhorn")

    whole = rows_part(slice(None))
    sharded = sum(rows_part(slice(2 * r, 2 * r + 2)) for r in range(4)) / 4
    grads = [torch.autograd.grad(v, z_s)[0] for v in (whole, sharded)]
    assert float(grads[0].abs().max()) > 1e-3  # a gradient to compare
    assert torch.allclose(sharded, whole, rtol=0, atol=1e-12)
    assert torch.allclose(*grads, rtol=0, atol=1e-12)
