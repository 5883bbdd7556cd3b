"""A SinKD student step against a CE-only step, with cached teacher logits (issue: <= 1.1x).

Both run :func:`sinkd.distill.train.student_step`, the step of the training loop itself (forward,
the recipe's loss, backward, clipping, AdamW), on the same real batches: Rotten Tomatoes
training snippets tokenized for the packaged MiniLM, whose first 2 layers are the student. The
teacher's logits are computed once beforehand (the cache of a real run): the teacher never runs
during a step. Each recipe gets its own copy of the student and optimiser; their steps are timed
in paired rounds: round k runs the k-th batch with every recipe (the order rotates), and the
ratio to CE is the median over rounds of the two steps' times on the same batch.

Run ``python -m bench.student_step`` (``--help`` for options); it prints the median step time
of each recipe and the ratio to CE.
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

from bench.timing import environment
from sinkd.distill import models as distill_models
from sinkd.distill.config import DistillConfig
from sinkd.distill.steps import get_batch, make_optimizer
from sinkd.distill.train import load_data, student_step

TARGET = 1.1  # the issue: a SinKD step costs at most 1.1x a CE-only step
RECIPES = ("ce", "kd", "sinkd")


def real_setup(*, batch_size: int, max_length: int, device: str, dev: torch.device, rows: int,
               teacher: str | None = None) -> tuple:
    """(config, tokenized train rows, the teacher's logits on them, a 2-layer student on
    ``dev``): Rotten Tomatoes snippets for the packaged MiniLM (or the ``teacher`` folder), the
    logits computed once beforehand, as a real run's cache."""
    config = DistillConfig(train_limit=rows, batch_size=batch_size, max_length=max_length,
                           device=device, steps=10**6)
    splits = load_data(config)
    path = distill_models.packaged_model_path() if teacher is None else teacher
    model = distill_models.load_classifier(path, splits.train.num_labels).to(dev).eval()
    enc = distill_models.encode_split(distill_models.load_tokenizer(path), splits.train,
                                      max_length)
    with torch.no_grad():  # outside the timing
        logits = torch.cat([model(**{k: v[i:i + 256].to(dev) for k, v in enc.items()
                                     if k != "labels"}).logits.float().cpu()
                            for i in range(0, rows, 256)])
    return config, enc, logits, distill_models.make_student(model, 2).to(dev).train()


def time_steps(*, batch_size: int = 32, max_length: int = 64, device: str = "cpu",
               repeats: int = 20, rows: int = 2048, teacher: str | None = None) -> dict:
    """Seconds per student step of each recipe in :data:`RECIPES` over ``repeats`` paired
    rounds, and the median over rounds of each recipe's step time / CE's on the same batch.
    ``teacher``: a model folder (default: the packaged MiniLM)."""
    dev = distill_models.select_device(device)
    config, enc, logits, base = real_setup(batch_size=batch_size, max_length=max_length,
                                           device=device, dev=dev, rows=rows, teacher=teacher)
    gen = torch.Generator()
    batches = [{k: v.to(dev) for k, v in get_batch(enc, k, config, logits=logits,
                                                   generator=gen).items()} for k in range(64)]
    fns, losses = {}, {}
    for recipe in RECIPES:
        cfg = dataclasses.replace(config, recipe=recipe)
        student = copy.deepcopy(base)
        opt = make_optimizer(student, cfg)

        def step(k: int, student=student, opt=opt, cfg=cfg, recipe=recipe) -> float:
            tic = time.perf_counter()
            terms, _, _ = student_step(student, opt, batches[k % len(batches)], cfg, step=k)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            losses[recipe] = terms.total.item()
            return time.perf_counter() - tic

        fns[recipe] = step
    del teacher
    # paired rounds: round k runs batch k with every recipe (order rotated), so each ratio
    # compares steps on the same padded batch; the first round is a warm-up
    times: dict[str, list[float]] = {r: [] for r in RECIPES}
    for k in range(repeats + 1):
        order = RECIPES[k % len(RECIPES):] + RECIPES[:k % len(RECIPES)]
        for recipe in order:
            t = fns[recipe](k)
            if k > 0:
                times[recipe].append(t)
    return dict(device=str(dev), batch_size=batch_size, max_length=max_length, rounds=repeats,
                student_parameters=distill_models.count_parameters(base),
                times={r: {"median_s": statistics.median(v), "min_s": min(v), "repeats": len(v)}
                       for r, v in times.items()},
                ratio_to_ce={r: statistics.median(t / c for t, c in zip(v, times["ce"],
                                                                         strict=True))
                             for r, v in times.items()},
                finite=all(math.isfinite(v) for v in losses.values()))


def format_report(result: dict, env: dict) -> str:
    """The result as lines of text: medians, ratios to CE, the verdict on the target."""
    lines = [f"Student step with cached teacher logits: {result['device']}, batch "
             f"{result['batch_size']}, max length {result['max_length']}, 2-layer MiniLM student "
             f"({result['student_parameters'] / 1e6:.1f}M parameters), AdamW",
             f"torch {env['torch']} | transformers {env['transformers']} | {env['cpu']} "
             f"({env['cores']} cores) | threads {env['threads']}",
             f"{'recipe':<8}{'median':>10}{'min':>10}{'steps':>7}{'vs ce':>8}"]
    for recipe, t in result["times"].items():
        lines.append(f"{recipe:<8}{1000 * t['median_s']:>8.0f}ms{1000 * t['min_s']:>8.0f}ms"
                     f"{t['repeats']:>7}{result['ratio_to_ce'][recipe]:>7.3f}x")
    ratio = result["ratio_to_ce"]["sinkd"]
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    lines.append(f"sinkd step / ce step (median over {result['rounds']} paired rounds) = "
                 f"{ratio:.3f}x (target <= {TARGET}x): {verdict}; "
                 f"losses finite: {result['finite']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.student_step", description=__doc__
                                     .split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default cpu)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=20,
                        help="timed rounds: steps per recipe, after one warm-up (default 20)")
    parser.add_argument("--rows", type=int, default=2048,
                        help="training snippets the batches are drawn from (default 2048)")
    parser.add_argument("--teacher", help="model folder of the teacher and student (default: the "
                        "packaged MiniLM)")
    parser.add_argument("--out", help="also write the result as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = time_steps(batch_size=args.batch_size, max_length=args.max_length,
                        device=args.device, repeats=args.repeats, rows=args.rows,
                        teacher=args.teacher)
    env = environment(args.threads)
    print(format_report(result, env))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"result": result, "env": env}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
