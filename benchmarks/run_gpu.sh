#!/usr/bin/env bash
# GPU benchmarks for BENCHMARKS.md: 7b-shape (the exact Qwen2.5-VL-7B config, random bf16 weights,
# 8,292,166,656 parameters) on one GPU. MFU uses the GPU's dense bf16 peak (--peak-tflops to set it).
# Pass a real checkpoint as MODEL=/path/to/Skywork-VL-Reward-7B to measure serve as well.
# No .venv needed: any python with the dependencies (benchmarks/gpu_wheels.sh + gpu_check.sh install
# them from a wheel folder) runs it; PY picks the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-benchmarks/results}
MODEL=${MODEL:-7b-shape}
COMMON=(--model "$MODEL" --device cuda --dtype bfloat16 --repeats 3)
SYSTEMS=reference,unshared,shared
[ "$MODEL" != 7b-shape ] && SYSTEMS=$SYSTEMS,serve

# GRPO: 16 prompts x 8 completions, 1024-token images (the card's 1280-token cap), 16..512-token answers.
"$PY" -m rlreward bench "${COMMON[@]}" --workload grpo --prompts 16 --group 8 --image-tokens 1024 \
  --completion-tokens 16..512 --systems "$SYSTEMS" --json "$OUT/gpu-grpo.json"
# PPO: 128 mixed samples (256..1024 visual tokens, 64..512-token completions).
"$PY" -m rlreward bench "${COMMON[@]}" --workload ppo --samples 128 --image-tokens 1024 --completion-tokens 256 \
  --systems reference,unshared,shared --json "$OUT/gpu-ppo.json"
"$PY" -m rlreward bench "${COMMON[@]}" --workload text --samples 128 --completion-tokens 256 \
  --systems reference,unshared,shared --json "$OUT/gpu-text.json"
