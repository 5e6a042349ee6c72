"""Reward-model families: one module per family behind one seam (:class:`RewardFamily`).

:func:`detect_family` reads the checkpoint's ``config.json`` and files and returns the family that
scores it, or raises :class:`UnsupportedModelError` naming what was found and what is supported.
Add a family: a module with a :class:`RewardFamily` subclass, appended to :data:`FAMILIES`
(see docs/models.md).
"""

from __future__ import annotations

from rlreward.engine.config import ScorerConfig
from rlreward.engine.head import HeadLoadError
from rlreward.engine.models.base import (
    Checkpoint,
    ModelLoadError,
    RewardFamily,
    UnsupportedModelError,
    read_checkpoint,
)
from rlreward.engine.models.openrlhf import OpenRLHFReward
from rlreward.engine.models.qwen_vl import Qwen2VLValueHead, Qwen3VLValueHead, QwenVLValueHead
from rlreward.engine.models.seqcls import SequenceClassification, VisionSequenceClassification

#: Detection order: the first family whose ``matches`` is true scores the checkpoint.
FAMILIES: tuple[type[RewardFamily], ...] = (
    OpenRLHFReward,
    VisionSequenceClassification,
    SequenceClassification,
    QwenVLValueHead,
    Qwen2VLValueHead,
    Qwen3VLValueHead,
)

SUPPORTED = (
    "*ForSequenceClassification with num_labels 1 (Llama, Qwen2, Qwen3, Qwen3.5, Gemma2, Gemma3, Mistral, ...); "
    "Qwen2-VL / Qwen2.5-VL / Qwen3-VL with value_head.safetensors; OpenRLHF reward checkpoints "
    "(architectures ['RewardModel'])"
)


class MissingHeadError(UnsupportedModelError, HeadLoadError):
    """A base model without a reward head (what was found, what is supported, ``--head-file``)."""


def family_of(ckpt: Checkpoint, head_file: str = "value_head.safetensors") -> RewardFamily:
    """The family that scores ``ckpt``; :class:`UnsupportedModelError` if none does."""
    for cls in FAMILIES:
        if cls.matches(ckpt):
            family = cls(ckpt)
            if isinstance(family, QwenVLValueHead) and not ckpt.has_file(head_file):
                raise MissingHeadError(
                    f"{ckpt.model}: {ckpt.describe()} has no reward head: no {head_file} beside the weights "
                    f"and no *ForSequenceClassification architecture. Supported: {SUPPORTED}. A value-head "
                    "checkpoint ships the head file (pass --head-file NAME if yours is named otherwise)"
                )
            return family
    raise UnsupportedModelError(
        f"{ckpt.model}: {ckpt.describe()} is not a supported reward model. Supported: {SUPPORTED}"
    )


def detect_family(config: ScorerConfig) -> RewardFamily:
    """Read ``config.model``'s ``config.json`` and files; the family that scores it."""
    return family_of(read_checkpoint(config), config.head_file)


def family_for_backbone(backbone: object) -> RewardFamily:
    """The family of an already-loaded backbone (callers that build a Scorer by hand)."""
    cfg = getattr(backbone, "config", None)
    mt = getattr(cfg, "model_type", None)
    for cls in (QwenVLValueHead, Qwen2VLValueHead, Qwen3VLValueHead):
        if mt in cls.model_types:
            return cls()
    return SequenceClassification(
        Checkpoint("", cfg.to_dict() if cfg is not None else {}, lambda name: False)
    )


__all__ = [
    "FAMILIES",
    "Checkpoint",
    "MissingHeadError",
    "ModelLoadError",
    "RewardFamily",
    "UnsupportedModelError",
    "detect_family",
    "family_for_backbone",
    "family_of",
]
