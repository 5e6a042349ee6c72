"""The reward-model family seam: what the scorer needs from one family of checkpoints.

A family (one module per family in :mod:`rlreward.engine.models`) says whether it recognises a
checkpoint (:meth:`RewardFamily.matches`, from ``config.json`` and the files beside it), loads it
into ``(backbone, processor, head)`` (:meth:`RewardFamily.load`), builds the preprocessor that
renders a sample to token ids (:meth:`RewardFamily.preprocessor`), and runs the forward pass of a
padded batch to one fp32 score per row (:meth:`RewardFamily.forward`). ``kv_prefix_reuse`` says
whether the scorer may score a shared prefix once and its suffixes against its KV cache; when it
may, :meth:`RewardFamily.language_model`, :meth:`embed` and :meth:`lm_positions` give the scorer's
prefix pass what it needs. :meth:`describe` is the ``model`` section of the effective settings.

Everything here is called by :class:`rlreward.engine.scorer.Scorer`; nothing else in the engine
branches on the family.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from rlreward.engine.config import ScorerConfig


class ModelLoadError(RuntimeError):
    """The backbone, processor or head could not be loaded; the message says what to fix."""


class UnsupportedModelError(ModelLoadError):
    """The checkpoint is not one rlreward can score; the message names what was found and what is supported."""


@dataclass(frozen=True)
class Checkpoint:
    """What detection reads: the model id/dir, its parsed ``config.json`` and whether a file exists."""

    model: str
    config: dict[str, Any]
    has_file: Callable[[str], bool] = field(repr=False)

    @property
    def architectures(self) -> list[str]:
        return list(self.config.get("architectures") or [])

    @property
    def model_type(self) -> str | None:
        return self.config.get("model_type")

    @property
    def num_labels(self) -> int:
        if "num_labels" in self.config:
            return int(self.config["num_labels"])
        labels = self.config.get("id2label")
        return len(labels) if isinstance(labels, dict) else 2  # transformers' default

    def describe(self) -> str:
        return f"architectures {self.architectures or 'none'}, model_type {self.model_type!r}"


def read_checkpoint(config: ScorerConfig) -> Checkpoint:
    """``config.json`` of a local directory or hub id, and a file-existence probe beside it."""
    root = Path(config.model).expanduser()
    if root.is_dir():
        path = root / "config.json"
        if not path.is_file():
            raise ModelLoadError(f"{root} has no config.json: is it a Hugging Face checkpoint directory?")
        return Checkpoint(
            config.model, json.loads(path.read_text(encoding="utf-8")), lambda name: (root / name).is_file()
        )
    if config.model.startswith((".", "/", "~")) or config.model.count("/") > 1 or "\\" in config.model:
        raise ModelLoadError(f"model directory {config.model} does not exist (a hub id is NAME or ORG/NAME)")
    try:
        from huggingface_hub import file_exists, hf_hub_download

        path = hf_hub_download(config.model, "config.json", revision=config.revision)
    except Exception as exc:
        raise ModelLoadError(f"cannot get config.json of {config.model!r} from the hub: {exc}") from exc

    def exists(name: str) -> bool:
        try:
            return bool(file_exists(config.model, name, revision=config.revision))
        except Exception:
            return False

    return Checkpoint(config.model, json.loads(Path(path).read_text(encoding="utf-8")), exists)


def strip_trailing(ids: torch.Tensor, token_id: int | None) -> torch.Tensor:
    """``ids`` without the trailing run of ``token_id``: the tokens a ``*ForSequenceClassification``
    model's own pooling (the rightmost token that is not ``pad_token_id``) skips. Causal attention
    means they cannot change the score, so dropping them makes "the row's last real token" the
    pooled token in every batch layout (pad == eos checkpoints end their rendering with pad ids)."""
    if token_id is None:
        return ids
    keep = ids != token_id
    if not bool(keep.any()):
        return ids
    last = int(torch.nonzero(keep)[-1])
    return ids[: last + 1]


class RewardFamily:
    """One family of reward checkpoints. Subclasses set the class attributes and implement
    :meth:`matches`, :meth:`load` and :meth:`forward`."""

    #: Short name shown in the effective settings (``model.family``).
    name: ClassVar[str] = ""
    #: The recipe the score reproduces (``model.recipe``), written for a reader.
    recipe: ClassVar[str] = ""
    #: Whether a prefix's keys/values may be computed once and reused for its suffixes.
    kv_prefix_reuse: ClassVar[bool] = False
    #: Why not, when it may not (shown in the effective settings).
    no_reuse_reason: ClassVar[str] = ""
    #: Whether the family reads images at all.
    vision: ClassVar[bool] = False
    #: Whether preprocessing follows qwen-vl-utils' first resize (the Qwen-VL model cards).
    qwen_vl_utils: ClassVar[bool] = False
    #: qwen-vl-utils' ``image_patch_size`` for the first resize (14: Qwen2/2.5-VL, 16: Qwen3-VL).
    image_patch_size: ClassVar[int] = 14
    #: What the head is and where it reads the sequence (shown in the effective settings).
    head_kind: ClassVar[str] = ""
    pooling: ClassVar[str] = "last real token"

    def __init__(self, checkpoint: Checkpoint | None = None) -> None:
        self.checkpoint = checkpoint

    @classmethod
    def matches(cls, ckpt: Checkpoint) -> bool:
        raise NotImplementedError

    def load(
        self, config: ScorerConfig, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.nn.Module, Any, torch.nn.Module]:
        """``(backbone, processor, head)``: the model without its output layer, its processor or
        tokenizer, and the fp32 head mapping ``[..., H]`` hidden states to ``[...]`` scores."""
        raise NotImplementedError

    def preprocessor(self, processor: Any, config: ScorerConfig, backbone: torch.nn.Module) -> Any:
        """The :class:`rlreward.engine.preprocess.Preprocessor` (or subclass) rendering samples."""
        from rlreward.engine.preprocess import Preprocessor

        return Preprocessor(processor, config, rope_index=getattr(backbone, "get_rope_index", None))

    def forward(
        self,
        backbone: torch.nn.Module,
        head: torch.nn.Module,
        batch: Any,
        image_features: Callable[[Any], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Scores [B] fp32 of a collated :class:`rlreward.engine.batching.Batch` (on the device)."""
        raise NotImplementedError

    # -- what the scorer's prefix pass needs (families with kv_prefix_reuse) ---------------------
    def language_model(self, backbone: torch.nn.Module) -> torch.nn.Module:
        return backbone.language_model

    def lm_positions(self, position_ids: torch.Tensor) -> torch.Tensor:
        """The collated ``[3, B, L]`` position ids as the language model takes them."""
        return position_ids

    def embed(
        self,
        backbone: torch.nn.Module,
        batch: Any,
        image_features: Callable[[Any], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        return backbone.get_input_embeddings()(batch.input_ids)

    def describe(self) -> dict[str, Any]:
        """The ``model`` section of the effective settings."""
        out: dict[str, Any] = {
            "family": self.name,
            "recipe": self.recipe,
            "kv_prefix_reuse": self.kv_prefix_reuse,
            "head": self.head_kind,
            "pooling": self.pooling,
        }
        if not self.kv_prefix_reuse:
            out["kv_prefix_reuse_off_because"] = self.no_reuse_reason
        if self.checkpoint is not None:
            out["architectures"] = self.checkpoint.architectures
            out["model_type"] = self.checkpoint.model_type
        return out


def load_pretrained(cls: Any, config: ScorerConfig, dtype: torch.dtype, **extra: Any) -> Any:
    """``cls.from_pretrained(config.model, ...)`` with the scorer's options; a failure is a
    :class:`ModelLoadError` naming the checkpoint."""
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "revision": config.revision,
        "trust_remote_code": config.trust_remote_code,
        **extra,
    }
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    try:
        return cls.from_pretrained(config.model, **kwargs)
    except Exception as exc:
        raise ModelLoadError(f"cannot load the backbone from {config.model!r}: {exc}") from exc


def freeze(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    module.requires_grad_(False)
    module.eval()
    t0 = time.perf_counter()
    module = module.to(device)
    module.rlreward_device_copy_s = time.perf_counter() - t0  # the cold-start split (/v1/stats)
    return module


def pooled_scores(
    backbone: torch.nn.Module, head: torch.nn.Module, batch: Any, **inputs: Any
) -> torch.Tensor:
    """The backbone's own forward on the batch's ids and mask (plus ``inputs``), then ``head`` on
    its ``last_hidden_state`` at each row's last real token: ``[B]`` fp32."""
    out = backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False, **inputs)
    return head(last_rows(out.last_hidden_state, batch.last_index))


def last_rows(hidden: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
    """``hidden[r, last_index[r]]`` for every row: ``[B, H]``."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, last_index.to(hidden.device)]
