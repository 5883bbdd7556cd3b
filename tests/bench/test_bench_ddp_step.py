"""bench.ddp_step: the data-parallel step comparison runs under torchrun on the real model."""

import json
import socket
import subprocess
import sys
from pathlib import Path

from bench.ddp_step import TARGET, VARIANTS

ROOT = Path(__file__).resolve().parents[2]


def test_ddp_step_bench_times_every_variant_on_two_gloo_processes(tmp_path):
    """torchrun with 2 processes (gloo, CPU) times CE, KD, global and local SinKD steps of the
    real 2-layer MiniLM student on shards of one global batch of 8: the JSON of rank 0 states
    world size 2, samples/s = global batch / median step time, min <= median, finite losses;
    the report names the 1.05x target."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp.json"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
         "127.0.0.1", "--master_port", str(port), "-m", "bench.ddp_step", "--rows", "64",
         "--batch-size", "8", "--max-length", "16", "--repeats", "2", "--threads", "1",
         "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["world_size"] == 2 and result["global_batch"] == 8 and result["finite"]
    assert list(result["times"]) == [label for label, _, _ in VARIANTS]
    for t in result["times"].values():
        assert 0 < t["min_s"] <= t["median_s"]
        assert abs(t["samples_per_s"] - 8 / t["median_s"]) <= 1e-9 * t["samples_per_s"]
        assert t["peak_memory_mb"] is None  # CPU: no CUDA peak to report
    assert result["sinkd_over_kd"] > 0 and result["global_over_local"] > 0
    assert f"target <= {TARGET}x" in done.stdout and done.stdout.count("global-batch") == 1
