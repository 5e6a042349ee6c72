"""OpenRLHF reward checkpoints: a base ``AutoModel`` plus a ``score`` head, as
``openrlhf.models.get_llm_for_sequence_regression(path, "reward")`` saves and loads them.

Layout: ``config.json`` of the base model type (``architectures: ["RewardModel"]``, optionally
``value_head_prefix``, ``normalize_reward``, ``mean``, ``std``), weights ``model.*`` and
``<value_head_prefix>.weight`` [1, H] (no bias; the prefix defaults to ``score``).

The reward is OpenRLHF's ``RewardModel.forward``: the base model's ``last_hidden_state`` at the
last real token (``eos_indices = L - 1 - attention_mask.fliplr().argmax(1)``; it does not skip pad
or eos ids), the head in fp32, then — when the config says ``normalize_reward: true`` —
``(reward - mean) / std`` with ``mean``/``std`` from the config (0 and 1 when absent, as OpenRLHF).
The conversation is rendered by the checkpoint tokenizer's chat template (``tokenize=True``).
A ``CriticModel`` (PPO critic) is refused: its output is per token, not a reward.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from rlreward.engine.config import ScorerConfig
from rlreward.engine.head import HeadLoadError, ValueHead
from rlreward.engine.models.base import (
    Checkpoint,
    ModelLoadError,
    UnsupportedModelError,
    freeze,
    load_pretrained,
)
from rlreward.engine.models.seqcls import SequenceClassification, TextPreprocessor


def _weights_dir(config: ScorerConfig) -> Path:
    root = Path(config.model).expanduser()
    if root.is_dir():
        return root
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                config.model, revision=config.revision, allow_patterns=["*.json", "*.safetensors"]
            )
        )
    except Exception as exc:
        raise ModelLoadError(f"cannot get the weights of {config.model!r} from the hub: {exc}") from exc


def read_tensor(root: Path, key: str) -> torch.Tensor:
    """Tensor ``key`` from the checkpoint's safetensors file(s) (sharded or not)."""
    from safetensors import safe_open

    index = root / "model.safetensors.index.json"
    if index.is_file():
        shard = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).get(key)
        files = [root / shard] if shard else []
    else:
        files = sorted(root.glob("*.safetensors"))
    for path in files:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            if key in f.keys():
                return f.get_tensor(key)
    raise HeadLoadError(
        f"{root}: no tensor {key!r} in {[p.name for p in files] or 'no safetensors file'}: an OpenRLHF reward "
        "checkpoint saves its head as '<value_head_prefix>.weight' (set value_head_prefix in config.json if "
        "yours is not 'score')"
    )


class OpenRLHFReward(SequenceClassification):
    name = "openrlhf-reward"
    recipe = (
        "OpenRLHF get_llm_for_sequence_regression(path, 'reward'): tokenizer.apply_chat_template(tokenize=True), "
        "base model last_hidden_state at the last real token (attention-mask rule), score head, then "
        "(r - mean) / std when config.normalize_reward"
    )

    @classmethod
    def matches(cls, ckpt: Checkpoint) -> bool:
        arch = ckpt.architectures
        return (
            "RewardModel" in arch
            or "CriticModel" in arch
            or (not arch and ("normalize_reward" in ckpt.config or "value_head_prefix" in ckpt.config))
        )

    def check(self, ckpt: Checkpoint) -> str:
        if "CriticModel" in ckpt.architectures:
            raise UnsupportedModelError(
                f"{ckpt.model}: {ckpt.describe()}: an OpenRLHF critic (per-token values), not a reward model; "
                "serve the reward checkpoint (architectures ['RewardModel'])"
            )
        return "RewardModel"

    def load(
        self, config: ScorerConfig, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.nn.Module, Any, torch.nn.Module]:
        from transformers import AutoModel

        assert self.checkpoint is not None
        self.check(self.checkpoint)
        cfg = self.checkpoint.config
        prefix = cfg.get("value_head_prefix") or "score"
        weight = read_tensor(_weights_dir(config), f"{prefix}.weight")
        backbone = load_pretrained(AutoModel, config, dtype)
        hidden = backbone.config.get_text_config().hidden_size
        if tuple(weight.shape) != (1, hidden):
            raise HeadLoadError(f"{prefix}.weight has shape {list(weight.shape)}, expected [1, {hidden}]")
        self.normalization: dict[str, Any] = {"normalize_reward": bool(cfg.get("normalize_reward", False))}
        mean = std = None
        if self.normalization["normalize_reward"]:
            mean, std = float(cfg.get("mean", 0.0)), float(cfg.get("std", 1.0))
            if not std:
                raise ModelLoadError(f"{config.model}: normalize_reward with std {std} in config.json")
            self.normalization.update(mean=mean, std=std)
        head = ValueHead(weight, None, mean, std)
        self.head_key = f"{prefix}.weight"
        return freeze(backbone, device), self._processor(config), head

    def preprocessor(self, processor: Any, config: ScorerConfig, backbone: torch.nn.Module) -> Any:
        pre = TextPreprocessor(processor, config)
        pre.family = self.name
        pre.pool_skip_id = None  # OpenRLHF pools at the last real token, whatever its id
        return pre

    pooling = "last real token (OpenRLHF's eos_indices rule)"

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["head"] = f"{getattr(self, 'head_key', 'score.weight')} (no bias), applied in fp32"
        out["normalization"] = getattr(self, "normalization", {})
        return out
