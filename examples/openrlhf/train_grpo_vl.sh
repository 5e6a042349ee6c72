#!/usr/bin/env bash
# GRPO of a vision-language policy with OpenRLHF 0.11.x, rewarded by a served Skywork-VL-Reward-7B.
#
#   1. Serve the reward model (on its own GPUs, or the same Ray cluster):
#        rlreward serve --model Skywork/Skywork-VL-Reward-7B --config configs/skywork-vl-7b.yaml \
#                       --image-root /data/vl   # only for the label form with image *paths*
#   2. Train (this script), choosing how OpenRLHF reaches the reward:
#        FORM=agent  (default) --train.agent_func_path agent_func.py: the rollout's own images are scored.
#        FORM=file   --reward.remote_url reward_func.py: images from the label {"images": [...], "answer": ...}.
#        FORM=http   --reward.remote_url $RLREWARD_URL/get_reward: the server's route, images from the label.
#
# Dataset rows (JSONL), --data.input_key prompt --data.image_key images --data.label_key label:
#   {"prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Find x."}]}],
#    "images": ["/data/vl/geo/17.png"],
#    "label": {"images": ["/data/vl/geo/17.png"], "answer": "3"}}   # label.images: file/http forms only
#
# Environment: RLREWARD_URL (server), RLREWARD_API_KEY (if the server wants one), RLREWARD_OPENRLHF
# (JSON options, e.g. '{"fallback_reward": -1.0, "composition": {"model": 1.0, "accuracy": 1.0}}').
# They reach OpenRLHF's vLLM actors through the Ray job's runtime_env below.
# DRY_RUN=1 prints the OpenRLHF arguments (one per line) instead of submitting the job.
# Needs: pip install rlreward on the trainer nodes (the adapters need only the core install; OpenRLHF
# itself as its own docs say), and the Ray job CLI.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
FORM="${FORM:-agent}"
RLREWARD_URL="${RLREWARD_URL:-http://127.0.0.1:8000}"
DEFAULT_OPTIONS='{"fallback_reward": 0.0, "composition": {"model": 1.0, "accuracy": 1.0}}'
RLREWARD_OPENRLHF="${RLREWARD_OPENRLHF:-$DEFAULT_OPTIONS}"
POLICY="${POLICY:-Qwen/Qwen2.5-VL-7B-Instruct}"
DATA="${DATA:-/data/vl/geo3k_train.jsonl}"
RAY_ADDRESS="${RAY_ADDRESS:-http://127.0.0.1:8265}"

case "$FORM" in
  agent) REWARD_ARGS=(--train.agent_func_path "$HERE/agent_func.py") ;;
  file)  REWARD_ARGS=(--reward.remote_url "$HERE/reward_func.py") ;;
  http)  REWARD_ARGS=(--reward.remote_url "$RLREWARD_URL/get_reward") ;;
  *) echo "FORM must be agent, file or http (got $FORM)" >&2; exit 2 ;;
esac

RUNTIME_ENV=$(python3 - "$RLREWARD_URL" "${RLREWARD_API_KEY:-}" "$RLREWARD_OPENRLHF" <<'EOF'
import json, sys
url, key, opts = sys.argv[1:]
env = {"RLREWARD_URL": url, "RLREWARD_OPENRLHF": opts}
if key:
    env["RLREWARD_API_KEY"] = key
print(json.dumps({"env_vars": env}))
EOF
)

ARGS=(
    --actor.model_name_or_path "$POLICY" \
    --actor.num_nodes 1 --actor.num_gpus_per_node 8 \
    --ref.num_nodes 1 --ref.num_gpus_per_node 8 \
    --vllm.num_engines 4 --vllm.tensor_parallel_size 2 --vllm.gpu_memory_utilization 0.6 \
    --data.prompt_dataset "$DATA" --data.input_key prompt --data.apply_chat_template \
    --data.image_key images --data.max_images_per_prompt 1 --data.label_key label \
    --data.max_len 4096 --rollout.max_new_tokens 1024 \
    --rollout.batch_size 128 --rollout.n_samples_per_prompt 8 \
    --train.batch_size 128 --train.micro_batch_size 2 --rollout.micro_batch_size 4 \
    --algo.advantage.estimator group_norm --algo.kl.use_loss --algo.kl.init_coef 1e-3 \
    --actor.freeze_visual_encoder --actor.gradient_checkpointing_enable \
    --ds.zero_stage 3 --ds.param_dtype bf16 \
    --train.num_episodes 1 --ckpt.output_dir ./ckpt/grpo_vl_rlreward \
    "${REWARD_ARGS[@]}"
)

if [[ "${DRY_RUN:-0}" == 1 ]]; then
  printf '%s\n' "${ARGS[@]}"
  exit 0
fi
ray job submit --address="$RAY_ADDRESS" --runtime-env-json="$RUNTIME_ENV" -- \
  python3 -m openrlhf.cli.train_ppo_ray "${ARGS[@]}"
