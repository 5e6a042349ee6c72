#!/usr/bin/env bash
# CPU benchmarks recorded in BENCHMARKS.md: bench-small (random weights, Qwen2.5-VL-7B proportions).
# Each run takes 2-5 minutes on 2 cores; results and plots go to benchmarks/results/.
# One torch thread (and a one-CPU replica for serve): on a machine shared with other work, two
# threads spin-wait on each other and the timings scatter; one thread degrades in proportion.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${OUT:-benchmarks/results}
COMMON=(--model bench-small --device cpu --dtype float32 --threads 1 --repeats 3)

# GRPO: 4 prompts x 8 completions, one 256-token image per prompt, 64-token completions (image = 4x).
$BIN/rlreward bench "${COMMON[@]}" --workload grpo --prompts 4 --group 8 --image-tokens 256 \
  --completion-tokens 64 --systems reference,unshared,shared,serve --json "$OUT/cpu-grpo.json"
# The same, shared against serve with a 0.5 s replica batch wait (the 4 requests then meet in one batch).
$BIN/rlreward bench "${COMMON[@]}" --workload grpo --prompts 4 --group 8 --image-tokens 256 \
  --completion-tokens 64 --systems shared,serve --serve-batch-wait-s 0.5 --json "$OUT/cpu-grpo-serve-wait0.5.json"

# PPO: 32 independent samples, one image each (64..256 visual tokens), 16..128-token completions.
$BIN/rlreward bench "${COMMON[@]}" --workload ppo --samples 32 --image-tokens 256 --completion-tokens 64 \
  --systems reference,unshared,shared --json "$OUT/cpu-ppo.json"
# The same with 4096- and 1024-token forward budgets: smaller, length-sorted batches pad less, and on
# a CPU activations that stay in cache are worth more than big matmuls.
for budget in 4096 1024; do
  $BIN/rlreward bench "${COMMON[@]}" --workload ppo --samples 32 --image-tokens 256 --completion-tokens 64 \
    --systems reference,unshared --max-batch-tokens $budget --json "$OUT/cpu-ppo-budget$budget.json"
done

# Text only: 32 samples, 16..128-token prompts, 16..128-token completions.
$BIN/rlreward bench "${COMMON[@]}" --workload text --samples 32 --completion-tokens 64 \
  --systems reference,unshared,shared --json "$OUT/cpu-text.json"


# The defaults runs (no --max-batch-tokens: the CPU default, 1024, and the padding floor 0.9). The
# recorded cpu-*-defaults.json ran at 16384 (bench missed the CPU default then; fixed in 0ce6b26):
# each record's `effective.batching` now says which budget ran and why.
$BIN/rlreward bench "${COMMON[@]}" --workload ppo --samples 32 --image-tokens 256 --completion-tokens 64 \
  --systems reference,unshared,shared --json "$OUT/cpu-ppo-defaults.json"
$BIN/rlreward bench "${COMMON[@]}" --workload text --samples 32 --completion-tokens 64 \
  --systems reference,unshared,shared --json "$OUT/cpu-text-defaults.json"
