"""Value-head reward models on Qwen-VL bases: Qwen2-VL, Qwen2.5-VL (Skywork-VL-Reward), Qwen3-VL.

The checkpoint is the base ``*ForConditionalGeneration`` plus ``value_head.safetensors``
(``v_head.summary.weight`` [1, H], ``v_head.summary.bias`` [1]). The score is the model card's:
``w · h_L[t] + b`` in fp32, ``h_L`` the language model's post-final-norm hidden state at the
sample's last real token, rendered by the checkpoint's own chat template and processor after
qwen-vl-utils' first resize. ``lm_head`` is never loaded into the scorer.

* Qwen2-VL / Qwen2.5-VL: the model card's two resizes (qwen-vl-utils with patch 14, then the
  processor with its saved bounds); visual features are scattered into the placeholder tokens and
  the language model runs on the embeddings, so a shared prefix's KV cache is reusable.
* Qwen3-VL: qwen-vl-utils with ``image_patch_size=16``, then the processor with ``do_resize=False``
  (its model card); the model's own forward adds DeepStack visual features inside the first
  layers, so it runs whole (no KV prefix reuse) and videos are refused (their metadata path is not
  reproduced here).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from rlreward.engine.config import ScorerConfig
from rlreward.engine.head import ValueHead, load_value_head, resolve_head_file
from rlreward.engine.models.base import (
    Checkpoint,
    ModelLoadError,
    RewardFamily,
    freeze,
    last_rows,
    load_pretrained,
    pooled_scores,
)


def load_backbone(config: ScorerConfig, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Load the vision-language backbone without its ``lm_head``; returns the inner ``*Model``."""
    from transformers import AutoModelForImageTextToText

    # On a GPU, straight to the device (no full host copy; the `.to(device)` below is then a no-op).
    to_gpu = {"device_map": {"": str(device)}} if device.type == "cuda" else {}
    full = load_pretrained(AutoModelForImageTextToText, config, dtype, **to_gpu)
    backbone = full.model  # *VLModel: vision tower + language model, no lm_head
    del full
    return freeze(backbone, device)


def embed_batch(
    backbone: torch.nn.Module,
    batch: Any,
    image_features: Callable[[Any], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Token embeddings with the image and video features scattered into their placeholder tokens.

    ``image_features(batch)`` may supply the images' features (the scorer's vision reuse/cache);
    by default the backbone's vision tower computes them.
    """
    cfg = backbone.config
    embeds = backbone.get_input_embeddings()(batch.input_ids)
    if batch.pixel_values is not None:
        if image_features is not None:
            feats = image_features(batch)
        else:
            feats = torch.cat(
                backbone.get_image_features(batch.pixel_values, batch.image_grid_thw).pooler_output
            )
        mask = (batch.input_ids == cfg.image_token_id).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(mask, feats.to(embeds.dtype))
    if batch.pixel_values_videos is not None:
        feats = torch.cat(
            backbone.get_video_features(batch.pixel_values_videos, batch.video_grid_thw).pooler_output
        )
        mask = (batch.input_ids == cfg.video_token_id).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(mask, feats.to(embeds.dtype))
    return embeds


def value_forward(
    backbone: torch.nn.Module,
    head: ValueHead,
    batch: Any,
    image_features: Callable[[Any], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The score of every row of one collated batch, [B] fp32 (Qwen2-VL / Qwen2.5-VL).

    Token embeddings with visual features scattered in (:func:`embed_batch`), the language model
    on them with the batch's M-RoPE positions, its post-final-norm hidden state at each row's last
    real token, the fp32 value head. No ``lm_head``. The scorer runs it under ``inference_mode``;
    training (:mod:`rlreward.offline.train`) runs it with autograd.
    """
    out = backbone.language_model(
        inputs_embeds=embed_batch(backbone, batch, image_features),
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
    )
    return head(last_rows(out.last_hidden_state, batch.last_index))  # post final norm


def _processor_classes() -> list[type]:
    """Processor classes whose ``__init__`` mutates a class-level ``size`` dict (transformers 5.x)."""
    import transformers

    names = (
        "Qwen2VLImageProcessor",
        "Qwen2VLImageProcessorPil",
        "Qwen2VLVideoProcessor",
        "Qwen3VLVideoProcessor",
    )
    out = []
    for name in names:
        try:
            out.append(getattr(transformers, name))
        except Exception:  # absent in this transformers version
            continue
    return out


#: The class-level ``size`` defaults of the processor classes, as first seen by :func:`load_processor`.
_PRISTINE_SIZES: dict[type, dict] = {}


def load_processor(config: ScorerConfig) -> Any:
    """The checkpoint's own processor, with the bounds saved in its processor config.

    Building a Qwen2-VL processor whose saved config carries ``min_pixels``/``max_pixels`` (the
    Qwen2.5-VL / Skywork layout) writes them into the *class-level* ``size`` dict, so every
    processor built later in the process without explicit bounds would inherit them: two
    checkpoints would contaminate each other. Each load here starts from the class defaults as first
    seen (whatever other code built in between), and the class defaults are restored afterwards.
    """
    from transformers import AutoProcessor

    for cls in _processor_classes():
        if cls not in _PRISTINE_SIZES and isinstance(cls.__dict__.get("size"), dict):
            _PRISTINE_SIZES[cls] = copy.deepcopy(cls.__dict__["size"])
    saved = {cls: cls.__dict__["size"] for cls in _PRISTINE_SIZES}
    try:
        for cls, size in _PRISTINE_SIZES.items():
            cls.size = copy.deepcopy(size)
        return AutoProcessor.from_pretrained(
            config.model, revision=config.revision, trust_remote_code=config.trust_remote_code
        )
    except Exception as exc:
        raise ModelLoadError(f"cannot load the processor from {config.model!r}: {exc}") from exc
    finally:
        for cls, size in saved.items():
            cls.size = size


class QwenVLValueHead(RewardFamily):
    """Qwen2.5-VL + value head (Skywork-VL-Reward's layout); the parent of the other Qwen-VL bases."""

    name = "qwen2.5-vl+value-head"
    model_types: ClassVar[tuple[str, ...]] = ("qwen2_5_vl",)
    recipe = (
        "model card (Skywork-VL-Reward): chat template (add_generation_prompt=False), "
        "qwen_vl_utils.process_vision_info then the checkpoint's processor, full forward, fp32 "
        "v_head on hidden_states[-1] at the last token"
    )
    kv_prefix_reuse = True
    vision = True
    qwen_vl_utils = True
    head_kind = "value_head.safetensors: fp32 Linear(H, 1) with bias"

    @classmethod
    def matches(cls, ckpt: Checkpoint) -> bool:
        return ckpt.model_type in cls.model_types

    def load(
        self, config: ScorerConfig, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.nn.Module, Any, torch.nn.Module]:
        # Head file first: it is the cheapest thing to get wrong.
        head_path = resolve_head_file(config.model, config.head_file, config.revision)
        backbone = load_backbone(config, device, dtype)
        hidden = backbone.config.get_text_config().hidden_size
        head = load_value_head(head_path, hidden, config.head_key_prefix)
        self.head_file = head_path
        return backbone, load_processor(config), head

    def forward(
        self,
        backbone: torch.nn.Module,
        head: torch.nn.Module,
        batch: Any,
        image_features: Callable[[Any], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        return value_forward(backbone, head, batch, image_features)

    def embed(
        self,
        backbone: torch.nn.Module,
        batch: Any,
        image_features: Callable[[Any], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        return embed_batch(backbone, batch, image_features)


class Qwen2VLValueHead(QwenVLValueHead):
    name = "qwen2-vl+value-head"
    model_types = ("qwen2_vl",)
    recipe = (
        "Qwen2-VL model card: chat template (add_generation_prompt=False), qwen_vl_utils.process_vision_info "
        "then the checkpoint's processor, full forward, fp32 value head on hidden_states[-1] at the last token"
    )


class Qwen3VLValueHead(QwenVLValueHead):
    name = "qwen3-vl+value-head"
    model_types = ("qwen3_vl",)
    recipe = (
        "Qwen3-VL model card: chat template (add_generation_prompt=False), "
        "qwen_vl_utils.process_vision_info(image_patch_size=16) then the checkpoint's processor with "
        "do_resize=False, full forward, fp32 value head on hidden_states[-1] at the last token"
    )
    kv_prefix_reuse = False
    no_reuse_reason = (
        "Qwen3-VL adds DeepStack visual features inside its first decoder layers: the model's own forward "
        "runs whole"
    )
    image_patch_size = 16

    def preprocessor(self, processor: Any, config: ScorerConfig, backbone: torch.nn.Module) -> Any:
        pre = super().preprocessor(processor, config, backbone)
        pre.image_patch_size = self.image_patch_size
        pre.processor_kwargs = {"do_resize": False}
        pre.accepts_video = False
        return pre

    def forward(
        self,
        backbone: torch.nn.Module,
        head: torch.nn.Module,
        batch: Any,
        image_features: Callable[[Any], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        return pooled_scores(
            backbone,
            head,
            batch,
            position_ids=batch.position_ids,
            pixel_values=batch.pixel_values,
            image_grid_thw=batch.image_grid_thw,
        )
