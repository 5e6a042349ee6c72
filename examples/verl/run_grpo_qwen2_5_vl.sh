#!/usr/bin/env bash
# GRPO of Qwen2.5-VL-7B on geo3k with verl 0.9.x, rewarded by a served Skywork-VL-Reward-7B.
#
#   1. Serve the reward model (its own GPUs; a separate Ray cluster is fine):
#        rlreward serve --model Skywork/Skywork-VL-Reward-7B --config configs/skywork-vl-7b.yaml
#   2. pip install 'rlreward[verl]' on the trainer nodes (verl 0.9.x and mathruler, which verl's geo3k
#      rule imports; without it the manager refuses to start rather than score the rule 0).
#   3. Prepare geo3k as verl does (examples/data_preprocess/geo3k.py in the verl repo).
#   4. RLREWARD_URL=http://rm-host:8000 bash examples/verl/run_grpo_qwen2_5_vl.sh
#
# FORM=manager (default): RLRewardManager reads the prompt and the images from each row's raw_prompt;
#   nothing to change in the data. rlreward_manager.overrides also adds verl's own geo3k rule score
#   (rule_weight=1): r = r_rule + r_θ, the R1V2 mix (geo3k's rule already holds 0.1 x format).
# FORM=function: verl's naive manager with rlreward's compute_score; the prompt and the images must be
#   in extra_info ("prompt" or "question", "images") - add them in the preprocessing step.
# DRY_RUN=1 prints the Hydra overrides instead of launching.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
FORM="${FORM:-manager}"
RLREWARD_URL="${RLREWARD_URL:?set RLREWARD_URL to the rlreward server, e.g. http://rm-host:8000}"
MODEL_PATH="${MODEL_PATH:-Qwen/Qwen2.5-VL-7B-Instruct}"
DATA_DIR="${DATA_DIR:-$HOME/data/geo3k}"
NNODES="${NNODES:-1}"
NGPUS_PER_NODE="${NGPUS_PER_NODE:-8}"

case "$FORM" in
  manager)  OVERRIDES_FILE="$HERE/rlreward_manager.overrides" ;;
  function) OVERRIDES_FILE="$HERE/rlreward_function.overrides" ;;
  *) echo "FORM must be manager or function (got $FORM)" >&2; exit 2 ;;
esac
mapfile -t REWARD < <(grep -v -e '^#' -e '^[[:space:]]*$' "$OVERRIDES_FILE" | sed "s#@RLREWARD_URL@#${RLREWARD_URL}#g")

OVERRIDES=(
  algorithm.adv_estimator=grpo
  algorithm.use_kl_in_reward=False
  data.train_files="$DATA_DIR/train.parquet"
  data.val_files="$DATA_DIR/test.parquet"
  data.image_key=images
  data.train_batch_size=512
  data.max_prompt_length=1024
  data.max_response_length=2048
  data.filter_overlong_prompts=True
  actor_rollout_ref.model.path="$MODEL_PATH"
  actor_rollout_ref.model.use_remove_padding=True
  actor_rollout_ref.model.enable_gradient_checkpointing=True
  actor_rollout_ref.actor.optim.lr=1e-6
  actor_rollout_ref.actor.ppo_mini_batch_size=128
  actor_rollout_ref.actor.use_dynamic_bsz=True
  actor_rollout_ref.actor.ppo_max_token_len_per_gpu=24576
  actor_rollout_ref.actor.use_kl_loss=True
  actor_rollout_ref.actor.kl_loss_coef=0.01
  actor_rollout_ref.actor.kl_loss_type=low_var_kl
  actor_rollout_ref.rollout.name=vllm
  actor_rollout_ref.rollout.tensor_model_parallel_size=2
  actor_rollout_ref.rollout.gpu_memory_utilization=0.6
  actor_rollout_ref.rollout.n=5
  actor_rollout_ref.ref.fsdp_config.param_offload=True
  # Rewards stream per sample to RewardLoopWorker actors; they only wait on HTTP, so many are cheap.
  reward.num_workers=16
  trainer.logger='["console"]'
  trainer.project_name=verl_grpo_geo3k_rlreward
  trainer.experiment_name="qwen2_5_vl_7b_${FORM}"
  trainer.n_gpus_per_node="$NGPUS_PER_NODE"
  trainer.nnodes="$NNODES"
  trainer.total_epochs=15
  "${REWARD[@]}"
)

if [[ "${DRY_RUN:-0}" == 1 ]]; then
  printf '%s\n' "${OVERRIDES[@]}"
  exit 0
fi
# RLREWARD_API_KEY, if the server wants one, is read by the reward workers from their environment.
python3 -m verl.trainer.main_ppo "${OVERRIDES[@]}" "$@"
