"""Configuration of the scoring side, as pydantic models that map 1:1 to YAML.

``ScorerConfig`` is everything one replica (or one ``rlreward score`` process) needs: which model,
how to load it, which inputs are allowed, and how batches are planned. Serving options (replicas,
autoscaling, HTTP) live in :mod:`rlreward.serving` and embed a ``ScorerConfig``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: Qwen2.5-VL defaults: 4 to 16,384 visual tokens per image (28x28 pixels per token).
DEFAULT_MIN_PIXELS = 4 * 28 * 28
DEFAULT_MAX_PIXELS = 16384 * 28 * 28
#: Token budget used on CPU when none is configured: CPU cost per token is lowest at 512-1024.
CPU_MAX_BATCH_TOKENS = 1024


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class MediaPolicy(_Model):
    """Where images may come from. base64, ``data:`` URIs, bytes and PIL images are always allowed."""

    image_roots: list[str] = Field(
        default_factory=list,
        description="Local directories under which image/video paths may be read. Empty: no local paths.",
    )
    allowed_url_prefixes: list[str] = Field(
        default_factory=list,
        description="http(s) URL prefixes that may be fetched (e.g. 'https://my-bucket.example/'). "
        "Empty: URLs are refused.",
    )
    url_timeout_s: float = Field(default=10.0, gt=0, description="Timeout for fetching an allow-listed URL.")


class Limits(_Model):
    """Per-sample limits; a sample over one gets that limit's error code, its neighbours are unaffected."""

    max_image_bytes: int = Field(
        default=32 * 1024 * 1024, gt=0, description="Largest encoded image (bytes after base64 decoding)."
    )
    max_image_pixels: int = Field(
        default=64 * 1024 * 1024,
        gt=0,
        description="Largest decoded image, width*height, checked from the header before decoding "
        "(decompression-bomb guard).",
    )
    max_aspect_ratio: float = Field(
        default=200.0, gt=1, description="Largest long/short side ratio (Qwen2.5-VL's resize refuses > 200)."
    )
    max_images: int = Field(default=16, ge=0, description="Most images per sample (video frames count too).")
    max_video_frames: int = Field(default=64, ge=0, description="Most frames per video.")
    max_tokens: int = Field(
        default=16384, gt=0, description="Longest rendered sample, in tokens, visual tokens included."
    )


class BatchingConfig(_Model):
    """How samples are grouped into forward passes."""

    max_batch_tokens: int = Field(
        default=16384,
        gt=0,
        description="Token budget of one forward pass: padded length x rows. Samples are sorted by length "
        "so padding stays small. A single sample longer than this still runs, alone. When left unset "
        f"on a CPU device, {CPU_MAX_BATCH_TOKENS} is used (big batches only lose cache there; see BENCHMARKS.md).",
    )
    max_batch_size: int = Field(default=64, gt=0, description="Most samples in one forward pass.")
    min_padding_efficiency: float = Field(
        default=0.9,
        ge=0.0,
        le=1.0,
        description="Start a new batch rather than let useful / computed (padded) tokens fall below this.",
    )
    padding_side: Literal["right", "left"] = Field(
        default="right", description="Padding side; scores do not depend on it (tests pin this down)."
    )
    prefix_sharing: bool = Field(
        default=True,
        description="Encode a prefix shared by several samples of a batch (a GRPO group) once.",
    )
    min_shared_prefix_tokens: int = Field(
        default=64, ge=1, description="Shortest common prefix worth sharing."
    )
    vision_cache_size: int = Field(
        default=0, ge=0, description="Entries in the cross-batch vision-embedding cache (0 = off)."
    )


class ScorerConfig(_Model):
    """Everything a scoring process needs. Paths in it are local to the machine that loads the model."""

    model: str = Field(description="Local checkpoint directory or Hugging Face model id.")
    revision: str | None = Field(default=None, description="Hub revision, for an HF model id.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="Backbone dtype; 'auto' = bfloat16 on GPU, float32 on CPU. Head is always fp32.",
    )
    device: str = Field(
        default="auto", description="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1', ..."
    )
    attn_implementation: str | None = Field(
        default=None, description="'sdpa', 'flash_attention_2', 'eager'; None lets transformers choose."
    )
    head_file: str = Field(
        default="value_head.safetensors", description="Value-head file name inside the model directory/repo."
    )
    head_key_prefix: str = Field(
        default="v_head.summary",
        description="Key prefix of the head tensors: '<prefix>.weight' [1, H] and '<prefix>.bias' [1].",
    )
    min_pixels: int = Field(default=DEFAULT_MIN_PIXELS, gt=0, description="Smallest resized image area.")
    max_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS,
        gt=0,
        description="Largest resized image area (the card suggests 1280*28*28 to bound visual tokens).",
    )
    video_max_pixels: int | None = Field(
        default=None, description="Largest resized video-frame area; None = qwen-vl-utils default."
    )
    media: MediaPolicy = Field(default_factory=MediaPolicy, description="Allowed image sources.")
    limits: Limits = Field(default_factory=Limits, description="Per-sample limits.")
    batching: BatchingConfig = Field(default_factory=BatchingConfig, description="Batch planning.")
    trust_remote_code: bool = Field(default=False, description="Passed to transformers' loaders.")
