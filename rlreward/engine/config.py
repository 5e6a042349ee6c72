"""Configuration of the scoring side, as pydantic models that map 1:1 to YAML.

``ScorerConfig`` is everything one replica (or one ``rlreward score`` process) needs: which model,
how to load it, which inputs are allowed, and how batches are planned. Serving options (replicas,
autoscaling, HTTP) live in :mod:`rlreward.serving` and embed a ``ScorerConfig``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Token budget used on CPU when none is configured: CPU cost per token is lowest at 512-1024.
CPU_MAX_BATCH_TOKENS = 1024
#: Token budget used on a GPU when none is configured (one 7B bf16 pass fits an 80 GB card).
GPU_MAX_BATCH_TOKENS = 16384


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
    url_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Total deadline of one URL fetch (connect, redirects, headers and body together); "
        "a server that stalls or drips bytes is cut off (image_not_found).",
    )
    url_read_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="Longest single network wait (connect, or one read) within a fetch; a fetch can "
        "therefore hold a thread at most url_timeout_s + url_read_timeout_s.",
    )
    max_url_redirects: int = Field(
        default=3,
        ge=0,
        description="Redirect hops followed per fetch; every hop's target is checked against "
        "allowed_url_prefixes before it is connected to (url_not_allowed otherwise).",
    )


class Limits(_Model):
    """Per-sample limits; a sample over one gets that limit's error code, its neighbours are unaffected."""

    max_image_bytes: int = Field(
        default=32 * 1024 * 1024, gt=0, description="Largest encoded image (bytes after base64 decoding)."
    )
    max_image_pixels: int = Field(
        default=32 * 1024 * 1024,
        gt=0,
        description="Largest decoded image, width*height, checked from the header before decoding "
        "(decompression-bomb guard). 32 Mpx holds any camera photo up to 6.5k x 5k; decoding one costs "
        "about 6 bytes per pixel (the RGB image and qwen-vl-utils' RGB copy), ~200 MB at the limit.",
    )
    max_sample_pixels: int = Field(
        default=64 * 1024 * 1024,
        gt=0,
        description="Largest sum of width*height over one sample's images and video frames, each "
        "checked from its header before it is decoded (they are held together until the resize).",
    )
    max_aspect_ratio: float = Field(
        default=200.0, gt=1, description="Largest long/short side ratio (Qwen2.5-VL's resize refuses > 200)."
    )
    max_images: int = Field(default=16, ge=0, description="Most images per sample (video frames count too).")
    max_video_frames: int = Field(
        default=64,
        ge=0,
        description="Most frames per video: the frames of a frame list, or the frames qwen-vl-utils "
        "would sample from a video file (its fps/nframes rule, computed from the file's metadata before "
        "anything is decoded). A video over it is refused (too_many_images), never silently thinned.",
    )
    max_video_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="Longest video file, in seconds, read from its metadata before decoding.",
    )
    max_tokens: int = Field(
        default=16384, gt=0, description="Longest rendered sample, in tokens, visual tokens included."
    )
    max_text_chars: int | None = Field(
        default=None,
        gt=0,
        description="Most characters of text per sample, checked before anything is tokenised "
        "(tokenising ~1 M characters took 11 s and 0.4 GB on CPU). None = 8 x max_tokens "
        "(131,072 by default): English runs ~4 characters per token.",
    )

    @property
    def text_char_limit(self) -> int:
        """The effective ``max_text_chars``."""
        return self.max_text_chars if self.max_text_chars is not None else 8 * self.max_tokens


class BatchingConfig(_Model):
    """How samples are grouped into forward passes."""

    max_batch_tokens: int | None = Field(
        default=None,
        gt=0,
        description="Token budget of one forward pass (and of one replica batch): padded length x rows. "
        "Samples are sorted by length so padding stays small. A single sample longer than this still "
        f"runs, alone. None = the device's default, resolved where the scorer is built: {CPU_MAX_BATCH_TOKENS} "
        f"on CPU (big batches only lose cache there; see BENCHMARKS.md), {GPU_MAX_BATCH_TOKENS} on a GPU.",
    )
    max_batch_size: int = Field(
        default=64, gt=0, description="Most samples in one forward pass (and in one replica batch)."
    )
    batch_wait_timeout_s: float = Field(
        default=0.01,
        ge=0,
        description="Serving only: how long the first sample of a replica batch waits for samples of "
        "other requests (latency you trade for batch size). Retunable on running replicas.",
    )
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
    pass_cost_tokens: int = Field(
        default=128,
        ge=0,
        description="Prefix sharing: what one more forward pass costs, in tokens (launch and weight reads). "
        "A group's suffixes are cut into more passes only when that saves more padded tokens than this.",
    )
    image_cache_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=0,
        description="Bytes of prepared images (decoded, resized, patchified pixels) kept for reuse, least "
        "recently used out first: a GRPO group's samples, in one request or many, prepare their image "
        "once and share one pixel tensor. 0 = no reuse across samples (only concurrent ones share).",
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
    min_pixels: int | None = Field(
        default=None,
        gt=0,
        description="DEVIATION from the checkpoint when set: smallest image area of the second resize "
        "(the checkpoint processor's, as AutoProcessor.from_pretrained(model, min_pixels=...) in the card's "
        "commented option). None = the checkpoint's saved processor bound (the card's recipe).",
    )
    max_pixels: int | None = Field(
        default=None,
        gt=0,
        description="DEVIATION from the checkpoint when set: largest image area of the second resize "
        "(the card's optional 1280*28*28 bounds visual tokens). None = the checkpoint's saved bound.",
    )
    video_max_pixels: int | None = Field(
        default=None,
        gt=0,
        description="DEVIATION when set: per-frame max_pixels given to qwen-vl-utils' first resize of a "
        "video that carries no max_pixels of its own. None = qwen-vl-utils' video default (the recipe).",
    )
    media: MediaPolicy = Field(default_factory=MediaPolicy, description="Allowed image sources.")
    limits: Limits = Field(default_factory=Limits, description="Per-sample limits.")
    batching: BatchingConfig = Field(default_factory=BatchingConfig, description="Batch planning.")
    trust_remote_code: bool = Field(default=False, description="Passed to transformers' loaders.")

    @model_validator(mode="after")
    def _pixel_bounds(self) -> ScorerConfig:
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) is above max_pixels ({self.max_pixels})")
        return self

    @property
    def deviations(self) -> dict[str, int]:
        """The preprocessing settings that depart from the checkpoint/recipe (empty = none)."""
        return {
            k: v
            for k, v in (
                ("min_pixels", self.min_pixels),
                ("max_pixels", self.max_pixels),
                ("video_max_pixels", self.video_max_pixels),
            )
            if v is not None
        }


def default_max_batch_tokens(device_type: str) -> int:
    """The token budget an unset ``batching.max_batch_tokens`` means on a device of this type."""
    return CPU_MAX_BATCH_TOKENS if device_type == "cpu" else GPU_MAX_BATCH_TOKENS


def resolve_device_defaults(config: ScorerConfig, device_type: str) -> ScorerConfig:
    """``config`` with every device-dependent default made concrete for ``device_type`` ('cpu',
    'cuda', ...). The one place an unset value becomes a number; the scorer calls it when built, so
    ``score``, ``serve``, ``bench``, ``eval`` and the Python API resolve alike. Idempotent."""
    bc = config.batching
    if bc.max_batch_tokens is not None:
        return config
    batching = bc.model_copy(update={"max_batch_tokens": default_max_batch_tokens(device_type)})
    return config.model_copy(update={"batching": batching})
