"""``*ForSequenceClassification`` reward models (``num_labels == 1``): TRL's ``RewardTrainer``
output and most RewardBench leaders (Skywork-Reward-V2, ...), text and vision-language.

The score is the model's own ``logits[0][0]`` at batch size 1 (the canonical recipe)::

    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")
    AutoModelForSequenceClassification.from_pretrained(dir)(**ids).logits[0][0]

Its pooling takes the rightmost token that is not ``config.pad_token_id``: the render drops a
trailing run of pad ids (pad == eos checkpoints end with one; causal attention means those tokens
cannot change the score), then every batch layout reads each row at its own last real token, so
padding never moves the pooled token. The ``score`` layer runs in fp32 on the upcast hidden state
(identical to the model's own in fp32). Text families refuse images with a per-sample error.

Vision-language (Qwen3.5, Gemma3): the processor's own chat template with the decoded images in
the conversation (``processor.apply_chat_template(..., tokenize=True)``, its one resize), and the
model's own forward (it places the visual features and positions itself); right padding only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch

from rlreward.engine.config import ScorerConfig
from rlreward.engine.head import ValueHead
from rlreward.engine.models.base import (
    Checkpoint,
    ModelLoadError,
    RewardFamily,
    UnsupportedModelError,
    freeze,
    load_pretrained,
    pooled_scores,
    strip_trailing,
)
from rlreward.engine.preprocess import (
    IMAGE_ITEM_KEYS,
    PreparedSample,
    Preprocessor,
    check_text,
    normalize_messages,
)
from rlreward.schema import ErrorCode, SampleError

#: Text model types whose decoder takes a reused KV cache exactly (full causal attention, 1D RoPE).
_REUSABLE = {"llama", "qwen2", "qwen3", "mistral"}
#: Vision-language ``*ForSequenceClassification`` classes (their inner model takes pixels).
VL_CLASSES = {"Qwen3_5ForSequenceClassification": "qwen3.5", "Gemma3ForSequenceClassification": "gemma3"}


def seqcls_class(ckpt: Checkpoint) -> str | None:
    """The checkpoint's ``*ForSequenceClassification`` architecture, if it names one."""
    return next((a for a in ckpt.architectures if a.endswith("ForSequenceClassification")), None)


def _text_config(ckpt: Checkpoint) -> dict[str, Any]:
    return ckpt.config.get("text_config") or ckpt.config


def _pad_id(model: torch.nn.Module) -> int | None:
    return model.config.get_text_config().pad_token_id


class TextPreprocessor(Preprocessor):
    """Renders a conversation with the tokenizer's chat template, ``tokenize=True`` (text only)."""

    family = "text"

    def prepare(self, sample: Any) -> PreparedSample:
        if isinstance(sample, dict) and "rendered_text" in sample:
            return self._strip(self._prepare_rendered(sample))
        messages = normalize_messages(sample)
        flat = []
        for i, m in enumerate(messages):
            content = m["content"]
            if isinstance(content, list):
                kinds = sorted({it["type"] for it in content if it["type"] != "text"})
                if kinds:
                    raise SampleError(
                        ErrorCode.BAD_CONTENT,
                        f"messages[{i}] has {'/'.join(kinds)} content but this reward model ({self.family}) "
                        "reads text only; send text, or serve a vision-language reward model",
                    )
                content = "".join(it["text"] for it in content)
            flat.append({"role": m["role"], "content": content})
        check_text([m["content"] for m in flat], self.config.limits)
        try:
            enc = self.tokenizer.apply_chat_template(
                flat, tokenize=True, add_generation_prompt=False, return_dict=True, return_tensors="pt"
            )
        except Exception as exc:
            raise SampleError(
                ErrorCode.INVALID_SAMPLE,
                f"the model's chat template refused the conversation: {type(exc).__name__}: {exc}",
            ) from exc
        ids = enc["input_ids"][0]
        limit = self.config.limits.max_tokens
        if ids.shape[0] > limit:
            raise SampleError(
                ErrorCode.TOO_MANY_TOKENS,
                f"sample is {ids.shape[0]} tokens, over the limit of {limit} (limits.max_tokens); shorten it",
            )
        return self._strip(PreparedSample(input_ids=ids, position_ids=torch.empty(0)))

    def _strip(self, p: PreparedSample) -> PreparedSample:
        ids = strip_trailing(p.input_ids, self.pool_skip_id)
        return PreparedSample(input_ids=ids, position_ids=torch.arange(len(ids)).view(1, -1).expand(3, -1))

    #: The token id the model's pooling skips (its ``pad_token_id``), set by the family.
    pool_skip_id: int | None = None


class VisionSeqClsPreprocessor(TextPreprocessor):
    """Renders with the processor's chat template, images decoded by the media layer (its limits)."""

    def prepare(self, sample: Any) -> PreparedSample:
        if isinstance(sample, dict) and "rendered_text" in sample:
            return self._strip(self._prepare_rendered(sample))
        messages = normalize_messages(sample)
        texts = [m["content"] for m in messages if isinstance(m["content"], str)]
        texts += [i.get("text", "") for m in messages if isinstance(m["content"], list) for i in m["content"]]
        check_text(texts, self.config.limits)
        if any(
            isinstance(m["content"], list) and any(i["type"] == "video" for i in m["content"])
            for m in messages
        ):
            raise SampleError(
                ErrorCode.BAD_CONTENT,
                f"this reward model ({self.family}) is served for text and images, not videos",
            )
        for m in messages:
            for item in m["content"] if isinstance(m["content"], list) else []:
                keys = sorted(k for k in IMAGE_ITEM_KEYS if k in item)
                if keys:
                    raise SampleError(
                        ErrorCode.BAD_CONTENT,
                        f"image resize keys {keys} are qwen-vl-utils'; {self.family} resizes with its own "
                        "processor and would ignore them: resize the image before sending it",
                    )
        messages, digests = self._vision_items(messages)
        try:
            enc = self.processor.apply_chat_template(
                messages, tokenize=True, add_generation_prompt=False, return_dict=True, return_tensors="pt"
            )
        except Exception as exc:
            raise SampleError(
                ErrorCode.IMAGE_DECODE, f"the processor refused the conversation: {type(exc).__name__}: {exc}"
            ) from exc
        ids = enc["input_ids"][0]
        limit = self.config.limits.max_tokens
        if ids.shape[0] > limit:
            raise SampleError(
                ErrorCode.TOO_MANY_TOKENS,
                f"sample is {ids.shape[0]} tokens, over the limit of {limit} (limits.max_tokens); shorten it",
            )
        stripped = self._strip(PreparedSample(input_ids=ids, position_ids=torch.empty(0)))
        stripped.pixel_values = enc.get("pixel_values")
        stripped.image_grid_thw = enc.get("image_grid_thw")
        stripped.image_digests = digests if stripped.pixel_values is not None else []
        return stripped

    def image_tokens(self, item: dict, width: int, height: int) -> int:
        return 0  # the processor's own resize: not estimated before decoding (max_tokens still applies)


class SequenceClassification(RewardFamily):
    """Text ``*ForSequenceClassification`` (Llama, Qwen2, Qwen3, Qwen3.5 text, Gemma2, Gemma3 text, Mistral, ...)."""

    name = "text-seqcls"
    recipe = (
        "canonical text RM: tokenizer.apply_chat_template(messages, tokenize=True) then the model's "
        "AutoModelForSequenceClassification forward, logits[0][0] (pooled at the rightmost non-pad token)"
    )
    no_reuse_reason = (
        "this architecture's attention (sliding window / hybrid / soft-capped) is not reused from a KV cache"
    )

    @classmethod
    def matches(cls, ckpt: Checkpoint) -> bool:
        arch = seqcls_class(ckpt)
        return arch is not None and arch not in VL_CLASSES and "vision_config" not in ckpt.config

    def __init__(self, checkpoint: Checkpoint | None = None) -> None:
        super().__init__(checkpoint)
        cfg = _text_config(checkpoint) if checkpoint else {}
        mt = checkpoint.model_type if checkpoint else None
        sliding = cfg.get("sliding_window") if cfg.get("use_sliding_window", True) else None
        self.kv_prefix_reuse = mt in _REUSABLE and not sliding  # type: ignore[misc]
        # Linear-attention layers (Qwen3.5 text, ...) carry a recurrent state: pad only after the text.
        self.right_padding_only = "linear_attention" in (cfg.get("layer_types") or [])
        if mt and type(self) is SequenceClassification:
            self.name = f"{mt}-seqcls"  # type: ignore[misc]

    def check(self, ckpt: Checkpoint) -> str:
        import transformers

        arch = seqcls_class(ckpt) or ""
        if getattr(transformers, arch, None) is None:
            raise UnsupportedModelError(
                f"{ckpt.model}: {ckpt.describe()}: the installed transformers {transformers.__version__} has no "
                f"{arch}; upgrade transformers or serve another checkpoint (see docs/models.md)"
            )
        if ckpt.num_labels != 1:
            raise UnsupportedModelError(
                f"{ckpt.model}: {arch} with num_labels={ckpt.num_labels}: a reward model has one output "
                "(num_labels 1); this is a classifier, not a reward model"
            )
        return arch

    def load(
        self, config: ScorerConfig, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.nn.Module, Any, torch.nn.Module]:
        from transformers import AutoModelForSequenceClassification

        assert self.checkpoint is not None
        self.check(self.checkpoint)
        full = load_pretrained(AutoModelForSequenceClassification, config, dtype)
        score = getattr(full, "score", None)
        if not isinstance(score, torch.nn.Linear) or score.out_features != 1:
            raise UnsupportedModelError(
                f"{config.model}: {type(full).__name__} has no single-output 'score' layer "
                f"(found {type(score).__name__}); supported: transformers' generic *ForSequenceClassification"
            )
        head = ValueHead(score.weight.detach(), None if score.bias is None else score.bias.detach())
        self.pad_token_id = _pad_id(full)
        backbone = getattr(full, full.base_model_prefix)
        del full
        return freeze(backbone, device), self._processor(config), head

    def _processor(self, config: ScorerConfig) -> Any:
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(
                config.model, revision=config.revision, trust_remote_code=config.trust_remote_code
            )
        except Exception as exc:
            raise ModelLoadError(f"cannot load the tokenizer from {config.model!r}: {exc}") from exc
        if not getattr(tok, "chat_template", None):
            raise ModelLoadError(
                f"{config.model}: the tokenizer has no chat template; a reward model scores conversations "
                "rendered by its own template (save the template the model was trained with beside it)"
            )
        return tok

    def preprocessor(self, processor: Any, config: ScorerConfig, backbone: torch.nn.Module) -> Any:
        pre = TextPreprocessor(processor, config)
        pre.family = self.name
        pre.pool_skip_id = _pad_id(backbone)
        return pre

    def forward(
        self,
        backbone: torch.nn.Module,
        head: torch.nn.Module,
        batch: Any,
        image_features: Callable[[Any], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        return pooled_scores(backbone, head, batch, position_ids=batch.position_ids[0])

    def language_model(self, backbone: torch.nn.Module) -> torch.nn.Module:
        return backbone

    def lm_positions(self, position_ids: torch.Tensor) -> torch.Tensor:
        return position_ids[0]

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["head"] = "the checkpoint's score layer, applied in fp32"
        out["pooling"] = "rightmost token that is not pad_token_id (trailing pad ids dropped at render)"
        return out


class VisionSequenceClassification(SequenceClassification):
    """Vision-language ``*ForSequenceClassification`` (Qwen3.5, Gemma3)."""

    name = "vl-seqcls"
    recipe = (
        "canonical VL RM: processor.apply_chat_template(messages, tokenize=True, return_dict=True) "
        "(the processor's own image resize) then the model's AutoModelForSequenceClassification forward, logits[0][0]"
    )
    vision = True
    right_padding_only: ClassVar[bool] = True
    no_reuse_reason = (
        "the model's own forward places visual features and positions (and Qwen3.5 has linear attention)"
    )

    @classmethod
    def matches(cls, ckpt: Checkpoint) -> bool:
        return seqcls_class(ckpt) in VL_CLASSES

    def __init__(self, checkpoint: Checkpoint | None = None) -> None:
        super().__init__(checkpoint)
        self.kv_prefix_reuse = False  # type: ignore[misc]
        if checkpoint is not None:
            self.name = f"{VL_CLASSES[seqcls_class(checkpoint) or '']}-seqcls"  # type: ignore[misc]

    def _processor(self, config: ScorerConfig) -> Any:
        from transformers import AutoProcessor

        try:
            return AutoProcessor.from_pretrained(
                config.model, revision=config.revision, trust_remote_code=config.trust_remote_code
            )
        except Exception as exc:
            raise ModelLoadError(f"cannot load the processor from {config.model!r}: {exc}") from exc

    def preprocessor(self, processor: Any, config: ScorerConfig, backbone: torch.nn.Module) -> Any:
        pre = VisionSeqClsPreprocessor(processor, config)
        pre.family = self.name
        pre.pool_skip_id = _pad_id(backbone)
        return pre

    def forward(
        self,
        backbone: torch.nn.Module,
        head: torch.nn.Module,
        batch: Any,
        image_features: Callable[[Any], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        cfg = backbone.config
        kwargs: dict[str, Any] = {}
        ids = batch.input_ids
        if batch.pixel_values is not None:
            kwargs["pixel_values"] = batch.pixel_values
            if batch.image_grid_thw is not None:
                kwargs["image_grid_thw"] = batch.image_grid_thw
        image_id = getattr(cfg, "image_token_id", None)
        if cfg.model_type == "gemma3":
            kwargs["token_type_ids"] = (ids == image_id).long()
        else:
            kwargs["mm_token_type_ids"] = (ids == image_id).int()
        return pooled_scores(backbone, head, batch, **kwargs)
