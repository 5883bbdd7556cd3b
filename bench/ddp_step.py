"""Data-parallel student steps under torchrun: throughput of CE, KD and SinKD students, the
SinKD/KD step-time ratio (issue: <= 1.05 on a GPU), peak memory, and what the global-batch SinKD
term costs against the per-shard ("local") one.

Every rank runs :func:`sinkd.distill.train.student_step`, the training loop's own step, on its
shard of the same global batches (:mod:`sinkd.distill.parallel`): Rotten Tomatoes snippets
tokenized for the packaged MiniLM, whose first 2 layers are the student, wrapped in
DistributedDataParallel, with the teacher's logits computed once beforehand (as a real run's
cache). The recipes are timed in paired rounds, as in :mod:`bench.student_step`: round k runs
global batch k with every recipe (the order rotates), each step ends with a device
synchronisation and a barrier, and a ratio is the median over rounds of two recipes' times on
the same batch. Samples per second count the global batch.

    torchrun --nproc_per_node 1 -m bench.ddp_step --device cuda     # one GPU (world size 1)
    torchrun --nproc_per_node 2 -m bench.ddp_step --device cpu      # gloo on the CPU

Run without torchrun it is the one-process case (world size 1, no process group).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import statistics
import sys
import time

import torch

from bench.student_step import real_setup
from sinkd.distill import models as distill_models
from sinkd.distill import parallel
from sinkd.distill.steps import get_batch, make_optimizer
from sinkd.distill.train import student_step

TARGET = 1.05  # the issue: a SinKD step costs at most 1.05x a KD step on a GPU
# (label, recipe, SinKD term's batch): "sinkd" is the global-batch term, as a run uses it
VARIANTS = (("ce", "ce", "global"), ("kd", "kd", "global"), ("sinkd", "sinkd", "global"),
            ("sinkd-local", "sinkd", "local"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    parallel.barrier()  # a step ends when every rank has ended it


def time_steps(*, batch_size: int = 32, max_length: int = 64, device: str = "cpu",
               repeats: int = 20, rows: int = 2048) -> dict:
    """Median seconds per data-parallel step of each variant of :data:`VARIANTS` over
    ``repeats`` paired rounds (after one warm-up), samples per second of the global batch, peak
    memory per variant on CUDA, and the median ratios sinkd / kd and sinkd / sinkd-local."""
    world, rank = parallel.world_size(), parallel.rank()
    parallel.check_batch_size(batch_size, world)
    dev = parallel.device_of_rank(distill_models.select_device(device))
    config, enc, logits, base = real_setup(batch_size=batch_size, max_length=max_length,
                                           device=device, dev=dev, rows=rows)
    gen = torch.Generator()
    batches = [{k: v.to(dev) for k, v in parallel.shard(
        get_batch(enc, k, config, logits=logits, generator=gen), rank, world).items()}
        for k in range(16)]
    steps, peaks, losses = {}, {}, {}
    for label, recipe, batch in VARIANTS:
        cfg = dataclasses.replace(config, recipe=recipe, sinkhorn_batch=batch)
        student = parallel.wrap(copy.deepcopy(base), dev)
        opt = make_optimizer(student, cfg)

        def step(k: int, student=student, opt=opt, cfg=cfg, label=label) -> float:
            _sync(dev)
            tic = time.perf_counter()
            terms, _, _ = student_step(student, opt, batches[k % len(batches)], cfg, step=k)
            _sync(dev)
            losses[label] = terms.total.item()
            return time.perf_counter() - tic

        steps[label] = step
    labels = [v[0] for v in VARIANTS]
    times: dict[str, list[float]] = {label: [] for label in labels}
    for k in range(repeats + 1):
        for label in labels[k % len(labels):] + labels[:k % len(labels)]:
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            t = steps[label](k)
            if dev.type == "cuda":
                peaks[label] = max(peaks.get(label, 0), torch.cuda.max_memory_allocated(dev))
            if k > 0:
                times[label].append(t)

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))

    return dict(device=str(dev), world_size=world, global_batch=batch_size,
                max_length=max_length, rounds=repeats,
                student_parameters=distill_models.count_parameters(base),
                times={label: {"median_s": statistics.median(v), "min_s": min(v),
                               "samples_per_s": batch_size / statistics.median(v),
                               "peak_memory_mb": peaks[label] / 2**20 if label in peaks else None}
                       for label, v in times.items()},
                sinkd_over_kd=ratio("sinkd", "kd"), global_over_local=ratio("sinkd", "sinkd-local"),
                finite=all(math.isfinite(v) for v in losses.values()))


def format_report(result: dict) -> str:
    """The result as lines of text: per variant the step time, samples/s and peak memory; the
    SinKD / KD ratio against its target and the global term's cost over the local one."""
    lines = [f"Data-parallel student step: {result['world_size']} process(es) on "
             f"{result['device']} (rank 0 shown), global batch {result['global_batch']}, max "
             f"length {result['max_length']}, 2-layer MiniLM student "
             f"({result['student_parameters'] / 1e6:.1f}M parameters), DDP + AdamW",
             f"{'variant':<13}{'median':>9}{'min':>9}{'samples/s':>11}{'peak MB':>9}"]
    for label, t in result["times"].items():
        peak = "—" if t["peak_memory_mb"] is None else f"{t['peak_memory_mb']:.0f}"
        lines.append(f"{label:<13}{1000 * t['median_s']:>7.1f}ms{1000 * t['min_s']:>7.1f}ms"
                     f"{t['samples_per_s']:>11.0f}{peak:>9}")
    verdict = "PASS" if result["sinkd_over_kd"] <= TARGET else "FAIL"
    lines.append(f"sinkd step / kd step (median over {result['rounds']} paired rounds) = "
                 f"{result['sinkd_over_kd']:.3f}x (target <= {TARGET}x on a GPU): {verdict}")
    lines.append(f"global-batch SinKD step / local (per-shard) SinKD step = "
                 f"{result['global_over_local']:.3f}x; losses finite: {result['finite']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ddp_step",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=32, help="global batch (default 32)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process")
    parser.add_argument("--repeats", type=int, default=20,
                        help="timed rounds: steps per variant, after one warm-up (default 20)")
    parser.add_argument("--rows", type=int, default=2048,
                        help="training snippets the batches are drawn from (default 2048)")
    parser.add_argument("--out", help="rank 0 also writes the result as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with parallel.process_group(args.device):
        result = time_steps(batch_size=args.batch_size, max_length=args.max_length,
                            device=args.device, repeats=args.repeats, rows=args.rows)
        if parallel.is_main():
            print(format_report(result), flush=True)
            if args.out:
                with open(args.out, "w") as f:
                    json.dump(result, f, indent=1)
        parallel.barrier()
    return 0


if __name__ == "__main__":
    sys.exit(main())
