"""``rlreward make-tiny``: a tiny random checkpoint laid out like Skywork-VL-Reward-7B.

The directory holds what the real repository holds, at toy size:

* ``config.json`` + ``model.safetensors``: a ``Qwen2_5_VLForConditionalGeneration`` (2 text layers,
  hidden 64; a 2-block vision tower with the real patch 14 / merge 2 geometry, so the same
  ``smart_resize`` to multiples of 28 applies);
* a byte-level BPE tokenizer (``Qwen2Tokenizer``) trained on a small generated corpus, with the
  Qwen2.5-VL special tokens (``<|im_start|>``, ``<|image_pad|>``, ...);
* the Qwen2.5-VL chat template, image processor and video processor configs;
* ``value_head.safetensors`` with ``v_head.summary.weight [1, H]`` and ``v_head.summary.bias [1]``.

Everything is built offline, deterministically from ``seed``, in a few seconds on a CPU.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from rlreward.offline.synthetic import WORDS

#: The Qwen2.5-VL chat template (as shipped with Qwen2.5-VL-7B-Instruct and Skywork-VL-Reward-7B).
QWEN25_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Special tokens of the Qwen2.5-VL tokenizer, in their real order.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def _corpus(seed: int, n_lines: int = 3000) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 14))]
        line = " ".join(words)
        if rng.random() < 0.3:
            line = line.capitalize() + rng.choice([".", "?", "!", ":", ","])
        if rng.random() < 0.2:
            line += f" {rng.randint(0, 999)} ({rng.choice('ABCD')})"
        lines.append(line)
    # Every printable ASCII char appears, so no text is ever out of the merges' reach.
    lines.append("".join(chr(c) for c in range(32, 127)))
    return lines


def build_tokenizer(seed: int = 0, vocab_size: int = 1024):
    """Train a byte-level BPE like Qwen2's (same pre-tokenizer regex) and wrap it as ``Qwen2Tokenizer``."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(seed), trainer=trainer)
    spec = json.loads(bpe.to_str())
    vocab = spec["model"]["vocab"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in spec["model"]["merges"]]
    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        errors="replace",
        model_max_length=32768,
    )
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tok.chat_template = QWEN25_VL_CHAT_TEMPLATE
    return tok


@dataclass(frozen=True)
class ProcessorOptions:
    """The tiny checkpoint's processor, by default the Qwen2.5-VL / Skywork one. Anything else makes a
    checkpoint unlike the default (tests of the second resize: ``make-tiny --max-pixels ...``).

    Pixel counts are areas (width x height). ``legacy_bounds`` writes the image bounds as top-level
    ``min_pixels``/``max_pixels`` keys without ``size`` (the layout of Qwen2.5-VL's and Skywork's
    ``preprocessor_config.json``) instead of transformers 5's ``size``.
    """

    min_pixels: int = 4 * 28 * 28
    max_pixels: int = 16384 * 28 * 28
    video_min_pixels: int = 128 * 28 * 28
    video_max_pixels: int = 768 * 28 * 28
    patch_size: int = 14
    merge_size: int = 2
    legacy_bounds: bool = False

    def __post_init__(self) -> None:
        if self.min_pixels > self.max_pixels or self.video_min_pixels > self.video_max_pixels:
            raise ValueError(f"min pixels above max pixels in {self}")
        if min(self.min_pixels, self.video_min_pixels, self.patch_size, self.merge_size) <= 0:
            raise ValueError(f"sizes must be positive: {self}")


def tiny_config(tokenizer, *, hidden: int = 64, layers: int = 2, patch_size: int = 14, merge_size: int = 2):
    """A ``Qwen2_5_VLConfig`` at toy size. Every field is explicit: the defaults are the 72B shape."""

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = 16
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=hidden // head_dim,
        num_key_value_heads=2,
        head_dim=head_dim,
        hidden_act="silu",
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3], "rope_type": "default"},
        use_sliding_window=False,
        sliding_window=32768,
        max_window_layers=layers,
        tie_word_embeddings=False,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        in_channels=3,
        patch_size=patch_size,
        spatial_merge_size=merge_size,
        temporal_patch_size=2,
        window_size=patch_size * merge_size * 4,
        fullatt_block_indexes=[1],
        out_hidden_size=hidden,
        tokens_per_second=2,
        hidden_act="silu",
    )
    return qwen_config(tokenizer, text, vision)


def qwen_config(tokenizer, text: dict, vision: dict):
    """A ``Qwen2_5_VLConfig`` from explicit text/vision fields, with every special-token id taken
    from ``tokenizer`` (the ids of our tokenizers are not the real Qwen vocabulary's)."""
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    special = dict(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]
    )
    return Qwen2_5_VLConfig(
        text_config={**text, **special},
        vision_config=dict(vision),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        vision_token_id=ids["<|vision_pad|>"],
        tie_word_embeddings=False,
        architectures=["Qwen2_5_VLForConditionalGeneration"],
        **special,
    )


def build_processor(tokenizer, options: ProcessorOptions | None = None):
    """The Qwen2.5-VL processor around ``tokenizer``: by default patch 14, merge 2, 4 to 16,384
    visual tokens per image, 128 to 768 per video frame; ``options`` changes any of those. Sizes are
    passed explicitly, so no class-level default is mutated."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    o = options or ProcessorOptions()
    image_processor = Qwen2VLImageProcessor(
        patch_size=o.patch_size,
        merge_size=o.merge_size,
        temporal_patch_size=2,
        size={"shortest_edge": o.min_pixels, "longest_edge": o.max_pixels},
    )
    video_processor = Qwen2VLVideoProcessor(
        patch_size=o.patch_size,
        merge_size=o.merge_size,
        temporal_patch_size=2,
        size={"shortest_edge": o.video_min_pixels, "longest_edge": o.video_max_pixels},
    )
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN25_VL_CHAT_TEMPLATE,
    )


def make_tiny(out_dir: str | Path, *, seed: int = 0, processor: ProcessorOptions | None = None) -> Path:
    """Write the tiny checkpoint to ``out_dir`` (created; existing files are overwritten).

    ``processor`` makes a checkpoint whose processor (and vision patch/merge sizes) differ from the
    default. Returns the directory. Deterministic: the same ``seed`` gives byte-identical weights.
    """
    popts = processor or ProcessorOptions()
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from rlreward.engine.head import save_value_head

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(seed)
    config = tiny_config(tokenizer, patch_size=popts.patch_size, merge_size=popts.merge_size)
    config.dtype = "float32"

    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    # Random init at the HF std (0.02) makes every token look alike after 2 layers; a larger std
    # gives scores that actually depend on the input, which the tests need.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.08)
    model.save_pretrained(out, safe_serialization=True)

    build_processor(tokenizer, popts).save_pretrained(out)
    if popts.legacy_bounds:
        _legacy_bounds(out / "processor_config.json", popts)

    hidden = config.text_config.hidden_size
    save_value_head(
        out / "value_head.safetensors",
        torch.randn(1, hidden, generator=gen) * (1.0 / hidden**0.5),
        torch.randn(1, generator=gen) * 0.1,
    )
    return out


def _legacy_bounds(path: Path, o: ProcessorOptions) -> None:
    """Rewrite the saved image-processor bounds as Qwen2.5-VL's own config has them (no ``size``)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    ip = data["image_processor"]
    ip.pop("size", None)
    ip["min_pixels"], ip["max_pixels"] = o.min_pixels, o.max_pixels
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
