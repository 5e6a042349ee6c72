#!/usr/bin/env bash
# The GPU check kit: everything this project wants measured on one GPU, in one call, on a bare GPU
# machine that holds a copy of this repository and the wheel folder benchmarks/gpu_wheels.sh prepares
# (python, torch, torchvision and transformers must be there; no network, no .venv needed).
#   benchmarks/gpu_check.sh              # on the GPU machine: ~9 minutes on one H100 (estimated)
#   benchmarks/gpu_check.sh --dry-run    # anywhere: the same steps on CPU, bench-small, small sizes
# Env: WHEELS (default wheels/), OUT (default benchmarks/results/gpu-check, -dry-run for a dry run),
# PY (default python3).
# Steps, each writing JSON to $OUT (a failed step is recorded in steps.json and the rest go on):
#   1. env.json: GPU, driver, python/torch/transformers versions;
#   2. tests-gpu.json: pytest tests/gpu (bf16 parity with the card recipe; shared vs unshared; left
#      vs right padding; GRPO groups with varied answer lengths);
#   3. bench-grpo-varied.json: the 7b-shape GRPO bench, answers 16..512 tokens, reference/unshared/
#      shared (useful vs executed FLOPs, MFU over wall and device time);
#   4. bench-budget-{16k,32k,64k}.json: the shared system's peak GPU memory at those token budgets.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
PY=${PY:-python3}
WHEELS=${WHEELS:-wheels}
if [ "$DRY" = 1 ]; then OUT=${OUT:-benchmarks/results/gpu-check-dry-run}; else OUT=${OUT:-benchmarks/results/gpu-check}; fi
DEPS=${DEPS:-.gpu-deps}
mkdir -p "$OUT"
STEPS="$OUT/steps.json"
echo "{}" > "$STEPS"
T0=$(date +%s)

step() {  # step NAME COMMAND...: run it, record rc and seconds in steps.json
  local name=$1; shift
  local t=$(date +%s)
  echo "== $name: $*" >&2
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -5 "$OUT/$name.log" >&2
  "$PY" - "$STEPS" "$name" "$rc" "$(( $(date +%s) - t ))" <<'PYEOF'
import json, sys
path, name, rc, s = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
d = json.load(open(path)); d[name] = {"rc": rc, "seconds": s}; json.dump(d, open(path, "w"), indent=2)
PYEOF
}

# 1. dependencies from the wheel folder (no network), beside the machine's own torch/transformers
if [ -d "$WHEELS" ]; then
  "$PY" -m pip install -q --no-index --no-deps --find-links "$WHEELS" --target "$DEPS" --upgrade \
    pydantic pydantic-core annotated-types typing-inspection typing-extensions qwen-vl-utils \
    pytest pluggy iniconfig packaging pyyaml psutil || { echo "installing from $WHEELS failed" >&2; exit 1; }
  export PYTHONPATH="$PWD:$PWD/$DEPS${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "no wheel folder $WHEELS: using the interpreter's packages (benchmarks/gpu_wheels.sh makes one)" >&2
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

"$PY" - "$OUT/env.json" <<'PYEOF'
import json, platform, sys
import torch, transformers
env = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
       "cuda": torch.version.cuda, "machine": platform.machine(), "gpu": None}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    env["gpu"] = {"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1), "count": torch.cuda.device_count()}
json.dump(env, open(sys.argv[1], "w"), indent=2)
print(json.dumps(env))
PYEOF

if [ "$DRY" = 1 ]; then
  COMMON=(--model bench-small --device cpu --dtype float32 --threads 2)
  GRPO=(--prompts 2 --group 4 --image-tokens 64 --completion-tokens 8..64)
  BUDGETS=("1k:1024" "2k:2048" "4k:4096")
else
  COMMON=(--model 7b-shape --device cuda --dtype bfloat16)
  GRPO=(--prompts 16 --group 8 --image-tokens 1024 --completion-tokens 16..512)
  BUDGETS=("16k:16384" "32k:32768" "64k:65536")
fi

# 2. GPU tests (skipped, and said so, without CUDA)
step tests-gpu "$PY" -m pytest -q -rs tests/gpu --junitxml "$OUT/tests-gpu.xml"
"$PY" - "$OUT/tests-gpu.xml" "$OUT/tests-gpu.json" <<'PYEOF'
import json, sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError) as exc:
    json.dump({"error": str(exc)}, open(sys.argv[2], "w")); sys.exit()
cases = []
for c in root.iter("testcase"):
    outcome = next((k.tag for k in c if k.tag in ("failure", "error", "skipped")), "passed")
    msg = next((k.get("message", "") for k in c if k.tag in ("failure", "error", "skipped")), "")
    cases.append({"test": f"{c.get('classname')}::{c.get('name')}", "outcome": outcome, "message": msg[:300]})
counts = {o: sum(c["outcome"] == o for c in cases) for o in ("passed", "failure", "error", "skipped")}
json.dump({"counts": counts, "cases": cases}, open(sys.argv[2], "w"), indent=2)
PYEOF

# 3. the 7b-shape GRPO bench with varied answer lengths
step bench-grpo-varied "$PY" -m rlreward bench "${COMMON[@]}" --workload grpo "${GRPO[@]}" \
  --systems reference,unshared,shared --json "$OUT/bench-grpo-varied.json"

# 4. peak memory of the shared system at three token budgets
for b in "${BUDGETS[@]}"; do
  step "bench-budget-${b%%:*}" "$PY" -m rlreward bench "${COMMON[@]}" --workload grpo "${GRPO[@]}" \
    --systems shared --max-batch-tokens "${b##*:}" --json "$OUT/bench-budget-${b%%:*}.json"
done

echo "gpu_check: done in $(( $(date +%s) - T0 )) s; results in $OUT" >&2
cat "$STEPS"
