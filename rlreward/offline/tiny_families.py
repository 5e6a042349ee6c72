"""Tiny random checkpoints of every supported reward-model family (``make-tiny --family``).

Each is laid out as the real family ships (config, weights, tokenizer/processor, head), at toy size
(2 layers, hidden 64), built offline and deterministically from ``seed``:

==================  ===============================================================================
``qwen2-vl``        ``Qwen2VLForConditionalGeneration`` + ``value_head.safetensors``
``qwen3-vl``        ``Qwen3VLForConditionalGeneration`` (patch 16, DeepStack) + ``value_head.safetensors``
``llama-seqcls``    ``LlamaForSequenceClassification``, Llama-3 chat template, pad == eos (TRL on Llama-3)
``qwen3-seqcls``    ``Qwen3ForSequenceClassification``, ChatML template, pad ``<|endoftext|>``
``qwen3.5-seqcls``  ``Qwen3_5ForSequenceClassification`` (vision tower, linear + full attention layers)
``gemma3-seqcls``   ``Gemma3ForSequenceClassification`` (SigLIP tower, 4 tokens per image)
``openrlhf``        OpenRLHF reward checkpoint: Qwen2 base + ``score.weight``, ``architectures:
                    ["RewardModel"]``, ``normalize_reward: true`` with ``mean``/``std``
==================  ===============================================================================

``skywork-vl`` (Qwen2.5-VL + value head) is :func:`rlreward.offline.tiny.make_tiny`'s checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlreward.offline.tiny import (
    QWEN25_VL_CHAT_TEMPLATE,
    SPECIAL_TOKENS,
    ProcessorOptions,
    build_tokenizer,
    make_tiny,
)

HIDDEN = 64

#: Llama-3's chat template (without its tool/date preamble): bos, header per turn, ``<|eot_id|>``.
LLAMA3_CHAT_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
#: ChatML (Qwen3's template without its thinking blocks).
CHATML_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
#: Gemma3's chat template (system text folded into the first user turn, images as ``<start_of_image>``).
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- if messages[0]['content'] is string -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}{%- else -%}"
    "{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}{%- endif -%}{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'assistant') -%}{%- set role = 'model' -%}{%- else -%}"
    "{%- set role = message['role'] -%}{%- endif -%}{{ '<start_of_turn>' + role + '\\n' + "
    "(first_user_prefix if loop.first else '') }}{%- if message['content'] is string -%}"
    "{{ message['content'] | trim }}{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}{%- elif item['type'] == 'text' -%}"
    "{{ item['text'] | trim }}{%- endif -%}{%- endfor -%}{%- endif -%}{{ '<end_of_turn>\\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{'<start_of_turn>model\\n'}}{%- endif -%}"
)

FAMILIES = (
    "skywork-vl",
    "qwen2-vl",
    "qwen3-vl",
    "llama-seqcls",
    "qwen3-seqcls",
    "qwen3.5-seqcls",
    "gemma3-seqcls",
    "openrlhf",
)


def _ids(tok: Any) -> dict[str, int]:
    return {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}


def _text(tok: Any, **extra: Any) -> dict[str, Any]:
    """A toy decoder's fields (2 layers, hidden 64, 4 heads of 16, 2 KV heads)."""
    return dict(
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        intermediate_size=HIDDEN * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        **extra,
    )


def _randomise(model: Any, seed: int) -> Any:
    """Weights at std 0.08 (HF's 0.02 makes every token look alike after 2 layers)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.08)
    return gen


def _value_head(out: Path, gen: Any) -> None:
    import torch

    from rlreward.engine.head import save_value_head

    save_value_head(
        out / "value_head.safetensors",
        torch.randn(1, HIDDEN, generator=gen) * (1.0 / HIDDEN**0.5),
        torch.randn(1, generator=gen) * 0.1,
    )


def _qwen_tokens(seed: int) -> tuple[Any, dict[str, int], dict[str, int]]:
    """The Qwen tokenizer, its bos/eos/pad ids and the vision token ids of a Qwen-VL config."""
    tok = build_tokenizer(seed)
    ids = _ids(tok)
    special = dict(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]
    )
    vision = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    return tok, special, vision


def _qwen3_vision(**extra: Any) -> dict[str, Any]:
    """A toy Qwen3-VL / Qwen3.5 vision tower (patch 16, merge 2)."""
    return dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        in_channels=3,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=HIDDEN,
        num_position_embeddings=64,
        **extra,
    )


def _save_model(cls: Any, config: Any, seed: int, out: Path) -> Any:
    """Build ``cls(config)`` from ``seed``, randomise it and save it; the generator, for the head."""
    import torch

    torch.manual_seed(seed)
    model = cls(config)
    gen = _randomise(model, seed)
    model.save_pretrained(out, safe_serialization=True)
    return gen


def _save_qwen_processor(cls: Any, video_cls: Any, tok: Any, patch: int, max_tokens: int, out: Path) -> None:
    """The Qwen-VL processor around ``tok``: ``patch`` x merge 2, 4 to ``max_tokens`` tokens per image."""
    from transformers import Qwen2VLImageProcessor

    f = patch * 2
    geometry = dict(patch_size=patch, merge_size=2, temporal_patch_size=2)
    cls(
        image_processor=Qwen2VLImageProcessor(
            **geometry, size={"shortest_edge": 4 * f * f, "longest_edge": max_tokens * f * f}
        ),
        tokenizer=tok,
        video_processor=video_cls(
            **geometry, size={"shortest_edge": 128 * f * f, "longest_edge": 768 * f * f}
        ),
        chat_template=QWEN25_VL_CHAT_TEMPLATE,
    ).save_pretrained(out)


def _qwen2_vl(out: Path, seed: int) -> None:
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tok, special, vision = _qwen_tokens(seed)
    rope = {"type": "mrope", "mrope_section": [2, 3, 3], "rope_type": "default"}
    config = Qwen2VLConfig(
        text_config={**_text(tok, rope_theta=1e6, rope_scaling=rope), **special},
        vision_config=dict(
            depth=2,
            embed_dim=32,
            hidden_size=HIDDEN,
            mlp_ratio=2,
            num_heads=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            in_channels=3,
        ),
        architectures=["Qwen2VLForConditionalGeneration"],
        **vision,
        **special,
    )
    gen = _save_model(Qwen2VLForConditionalGeneration, config, seed, out)
    _save_qwen_processor(Qwen2VLProcessor, Qwen2VLVideoProcessor, tok, 14, 16384, out)
    _value_head(out, gen)


def _qwen3_vl(out: Path, seed: int) -> None:
    from transformers import (
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    tok, special, vision = _qwen_tokens(seed)
    rope = {"rope_type": "default", "rope_theta": 5e6, "mrope_section": [2, 3, 3], "mrope_interleaved": True}
    config = Qwen3VLConfig(
        text_config={**_text(tok, rope_parameters=rope), **special},
        vision_config=_qwen3_vision(deepstack_visual_indexes=[0]),
        tie_word_embeddings=False,
        architectures=["Qwen3VLForConditionalGeneration"],
        **vision,
    )
    gen = _save_model(Qwen3VLForConditionalGeneration, config, seed, out)
    _save_qwen_processor(Qwen3VLProcessor, Qwen3VLVideoProcessor, tok, 16, 16384, out)
    _value_head(out, gen)


def _text_seqcls(out: Path, seed: int, family: str) -> None:
    from transformers import (
        LlamaConfig,
        LlamaForSequenceClassification,
        Qwen3Config,
        Qwen3ForSequenceClassification,
    )

    tok = build_tokenizer(seed)
    if family == "llama-seqcls":
        tok.add_special_tokens(
            {
                "additional_special_tokens": [
                    "<|begin_of_text|>",
                    "<|start_header_id|>",
                    "<|end_header_id|>",
                    "<|eot_id|>",
                ]
            }
        )
        tok.bos_token, tok.eos_token = "<|begin_of_text|>", "<|eot_id|>"
        tok.pad_token = tok.eos_token  # what TRL sets on Llama-3, which has no pad token
        tok.chat_template = LLAMA3_CHAT_TEMPLATE
        special = dict(
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
        )
        config: Any = LlamaConfig(**_text(tok, rope_theta=5e5), num_labels=1, **special)
        config.architectures = ["LlamaForSequenceClassification"]
        cls: Any = LlamaForSequenceClassification
    else:
        tok.chat_template = CHATML_TEMPLATE
        ids = _ids(tok)
        special = dict(eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
        config = Qwen3Config(**_text(tok, rope_theta=1e6), num_labels=1, **special)
        config.architectures = ["Qwen3ForSequenceClassification"]
        cls = Qwen3ForSequenceClassification
    _save_model(cls, config, seed, out)
    tok.save_pretrained(out)


def _qwen35_seqcls(out: Path, seed: int) -> None:
    from transformers import (
        Qwen3_5Config,
        Qwen3_5ForSequenceClassification,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    tok, special, vision = _qwen_tokens(seed)
    rope = {
        "rope_type": "default",
        "rope_theta": 1e7,
        "mrope_section": [2, 3, 3],
        "mrope_interleaved": True,
        "partial_rotary_factor": 1.0,
    }
    text = _text(
        tok,
        rope_parameters=rope,
        layer_types=["linear_attention", "full_attention"],
        linear_conv_kernel_dim=4,
        linear_key_head_dim=16,
        linear_value_head_dim=16,
        linear_num_key_heads=2,
        linear_num_value_heads=4,
    )
    config = Qwen3_5Config(
        text_config={**text, **special},
        vision_config=_qwen3_vision(),
        tie_word_embeddings=False,
        num_labels=1,
        architectures=["Qwen3_5ForSequenceClassification"],
        **vision,
    )
    _save_model(Qwen3_5ForSequenceClassification, config, seed, out)
    _save_qwen_processor(Qwen3VLProcessor, Qwen3VLVideoProcessor, tok, 16, 1024, out)


def _gemma3_seqcls(out: Path, seed: int) -> None:
    from transformers import (
        Gemma3Config,
        Gemma3ForSequenceClassification,
        Gemma3ImageProcessor,
        Gemma3Processor,
    )

    tok = build_tokenizer(seed)
    marks = [
        "<bos>",
        "<start_of_turn>",
        "<end_of_turn>",
        "<start_of_image>",
        "<end_of_image>",
        "<image_soft_token>",
    ]
    tok.add_special_tokens({"additional_special_tokens": marks})
    tok.bos_token, tok.eos_token, tok.pad_token = "<bos>", "<end_of_turn>", "<|endoftext|>"
    tok.chat_template = GEMMA3_CHAT_TEMPLATE
    tok.save_pretrained(out)
    # Gemma3's named special tokens (the processor reads tokenizer.boi_token, .image_token, ...).
    path = out / "tokenizer_config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["extra_special_tokens"] = {
        "boi_token": "<start_of_image>",
        "eoi_token": "<end_of_image>",
        "image_token": "<image_soft_token>",
    }
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    n_image = 4
    config = Gemma3Config(
        text_config=dict(
            _text(tok),
            sliding_window=64,
            query_pre_attn_scalar=16,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=56,
            patch_size=14,
            model_type="siglip_vision_model",
        ),
        mm_tokens_per_image=n_image,
        boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tok.convert_tokens_to_ids("<image_soft_token>"),
        num_labels=1,
        architectures=["Gemma3ForSequenceClassification"],
    )
    config.pad_token_id = tok.pad_token_id
    _save_model(Gemma3ForSequenceClassification, config, seed, out)
    ip = Gemma3ImageProcessor(size={"height": 56, "width": 56}, do_pan_and_scan=False)
    Gemma3Processor(
        image_processor=ip, tokenizer=tok, chat_template=GEMMA3_CHAT_TEMPLATE, image_seq_length=n_image
    ).save_pretrained(out)


def _openrlhf(out: Path, seed: int) -> None:
    """What OpenRLHF's ``train_rm`` saves: the base model's weights (``model.*``), ``score.weight``
    and the base config with ``architectures: ["RewardModel"]``, ``normalize_reward``, ``mean``, ``std``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    tok = build_tokenizer(seed)
    tok.chat_template = CHATML_TEMPLATE
    ids = _ids(tok)
    config = Qwen2Config(
        **_text(tok, rope_theta=1e6),
        num_labels=1,
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2ForSequenceClassification(config)  # weights model.* + score.weight [1, H], no bias
    _randomise(model, seed)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    path = out / "config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    for key in ("id2label", "label2id", "num_labels"):
        data.pop(key, None)
    data.update(architectures=["RewardModel"], normalize_reward=True, mean=0.25, std=1.5)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def make_family(
    out_dir: str | Path,
    family: str = "skywork-vl",
    *,
    seed: int = 0,
    processor: ProcessorOptions | None = None,
) -> Path:
    """Write a tiny checkpoint of ``family`` (one of :data:`FAMILIES`) to ``out_dir``.

    ``processor`` (a checkpoint whose processor differs from the default) applies to ``skywork-vl``
    only. Deterministic: the same ``seed`` gives the same weights.
    """
    if family == "skywork-vl":
        return make_tiny(out_dir, seed=seed, processor=processor)
    if processor is not None and processor != ProcessorOptions():
        raise ValueError(f"processor options apply to the skywork-vl family only, not {family}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    builders = {
        "qwen2-vl": _qwen2_vl,
        "qwen3-vl": _qwen3_vl,
        "qwen3.5-seqcls": _qwen35_seqcls,
        "gemma3-seqcls": _gemma3_seqcls,
        "openrlhf": _openrlhf,
    }
    if family in ("llama-seqcls", "qwen3-seqcls"):
        _text_seqcls(out, seed, family)
    elif family in builders:
        builders[family](out, seed)
    else:
        raise ValueError(f"unknown family {family!r}; one of {', '.join(FAMILIES)}")
    return out
