#!/usr/bin/env bash
# Prepare, on a machine with network access, the wheel folder benchmarks/gpu_check.sh installs from
# on a bare GPU machine (one that has python, torch, torchvision and transformers, and no network).
# It holds what the GPU check needs beyond those: pydantic (+ core, for CPython 3.10-3.13),
# qwen-vl-utils, pyyaml, psutil, pytest; pinned to the versions of this repository's environment.
# Ray is not needed (the check runs in-process) and would not fit: the folder stays under 20 MiB.
#   benchmarks/gpu_wheels.sh [DIR]        # default DIR: wheels/
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-wheels}
PY=${PY:-python3}
mkdir -p "$DIR"
pin() { "$PY" -c "import importlib.metadata as m, sys; print(sys.argv[1] + '==' + m.version(sys.argv[1]))" "$1"; }
PURE=(annotated-types typing-inspection typing-extensions qwen-vl-utils pytest pluggy iniconfig packaging)
BINARY=(pydantic-core pyyaml psutil)
"$PY" -m pip download -q --no-deps --only-binary=:all: -d "$DIR" $(for p in pydantic "${PURE[@]}"; do pin "$p"; done)
for v in 3.10 3.11 3.12 3.13; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --python-version "$v" \
    -d "$DIR" $(for p in "${BINARY[@]}"; do pin "$p"; done)
done
du -sh "$DIR"
ls "$DIR"
