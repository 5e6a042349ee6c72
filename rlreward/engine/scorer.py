"""The scorer: a list of samples in, a list of :class:`ScoreResult` out, same order.

The score is exactly the model card's (docs/serving.md, "Preprocessing fidelity")::

    score(sample) = w · h_L[t] + b        (fp32)

``h_L`` is the post-final-norm hidden state of the language model (``last_hidden_state``), ``t``
the sample's last real token (the ``\\n`` after the final ``<|im_end|>``), ``w, b`` the value head.
``lm_head`` is never computed (nor kept in memory).

Isolation: preprocessing errors are per sample (:class:`SampleError`); if a forward pass fails, its
samples are retried one by one so that only the one that fails gets an ``internal_error``.

>>> scorer = Scorer.from_pretrained("/path/to/tiny")                      # doctest: +SKIP
>>> scorer.score([{"prompt": "2+2?", "response": "4"}])                    # doctest: +SKIP
[ScoreResult(score=0.73, error=None)]
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch

from rlreward.engine.batching import (
    Batch,
    ForwardPass,
    collate,
    find_prefix_groups,
    pack_shared,
    plan_batches,
)
from rlreward.engine.config import ScorerConfig, resolve_device_defaults
from rlreward.engine.head import ValueHead, load_value_head, looks_like_a_path, resolve_head_file
from rlreward.engine.media import VIDEO_READER
from rlreward.engine.preprocess import VIDEO_ITEM_KEYS, PreparedSample, Preprocessor, processor_bounds
from rlreward.schema import ErrorCode, SampleError, ScoreResult

log = logging.getLogger("rlreward")

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(RuntimeError):
    """The backbone, processor or head could not be loaded; the message says what to fix."""


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[dtype]


def load_backbone(config: ScorerConfig, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Load the vision-language backbone without its ``lm_head``; returns the inner ``*Model``."""
    from pathlib import Path

    from transformers import AutoModelForImageTextToText

    if not Path(config.model).is_dir() and looks_like_a_path(config.model):
        raise ModelLoadError(f"model directory {config.model} does not exist (a hub id is NAME or ORG/NAME)")
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "revision": config.revision,
        "trust_remote_code": config.trust_remote_code,
    }
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    if device.type == "cuda":  # straight to the device: no full host copy, `.to(device)` is then a no-op
        kwargs["device_map"] = {"": str(device)}
    try:
        full = AutoModelForImageTextToText.from_pretrained(config.model, **kwargs)
    except Exception as exc:
        raise ModelLoadError(f"cannot load the backbone from {config.model!r}: {exc}") from exc
    backbone = full.model  # Qwen2_5_VLModel: vision tower + language model, no lm_head
    del full
    backbone.requires_grad_(False)
    backbone.eval()
    t0 = time.perf_counter()
    backbone = backbone.to(device)
    backbone.rlreward_device_copy_s = time.perf_counter() - t0  # the cold-start split (/v1/stats)
    return backbone


def embed_batch(
    backbone: torch.nn.Module,
    batch: Batch,
    image_features: Callable[[Batch], torch.Tensor] | None = None,
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
    batch: Batch,
    image_features: Callable[[Batch], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The score of every row of one collated batch, [B] fp32: the one forward pass of rlreward.

    Token embeddings with visual features scattered in (:func:`embed_batch`), the language model
    on them with the batch's M-RoPE positions, its post-final-norm hidden state at each row's last
    real token, the fp32 value head. No ``lm_head``. :meth:`Scorer.forward` runs it under
    ``inference_mode``; training (:mod:`rlreward.offline.train`) runs it with autograd.
    """
    out = backbone.language_model(
        inputs_embeds=embed_batch(backbone, batch, image_features),
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
    )
    hidden = out.last_hidden_state  # post final norm
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return head(hidden[rows, batch.last_index])


def _processor_classes() -> list[type]:
    """Processor classes whose ``__init__`` mutates a class-level ``size`` dict (transformers 5.x)."""
    import transformers

    names = ("Qwen2VLImageProcessor", "Qwen2VLImageProcessorPil", "Qwen2VLVideoProcessor")
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
    import copy

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


class Scorer:
    """Scores samples with a value-head reward model. Thread-safe for :meth:`prepare`; one
    :meth:`score_prepared` at a time per instance (it owns the device)."""

    def __init__(
        self, config: ScorerConfig, backbone: torch.nn.Module, processor: Any, head: ValueHead
    ) -> None:
        self.device = next(backbone.parameters()).device
        self.dtype = next(backbone.parameters()).dtype
        self.requested_config = config
        # The one place unset device-dependent values (the batch budget) become numbers: every
        # path (score, serve, bench, eval, the Python API) builds a Scorer.
        config = resolve_device_defaults(config, self.device.type)
        self.config = config
        self.backbone = backbone
        self.processor = processor
        self.head = head.to(self.device)
        rope = getattr(backbone, "get_rope_index", None)
        self.preprocessor = Preprocessor(processor, config, rope_index=rope)
        cfg = backbone.config
        self.image_token_id = getattr(cfg, "image_token_id", None)
        self.video_token_id = getattr(cfg, "video_token_id", None)
        self._vision_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._vision_cache_size = config.batching.vision_cache_size
        #: 0 awake, else the level of :meth:`sleep` in effect.
        self.sleep_level = 0

    @classmethod
    def from_config(cls, config: ScorerConfig) -> Scorer:
        """Load backbone, processor and head as ``config`` says."""
        device = resolve_device(config.device)
        dtype = resolve_dtype(config.dtype, device)
        # Head first: it is the cheapest thing to get wrong.
        head_path = resolve_head_file(config.model, config.head_file, config.revision)
        backbone = load_backbone(config, device, dtype)
        hidden = backbone.config.get_text_config().hidden_size
        head = load_value_head(head_path, hidden, config.head_key_prefix)
        processor = load_processor(config)
        scorer = cls(config, backbone, processor, head)
        scorer.load_split = {"device_copy_s": float(getattr(backbone, "rlreward_device_copy_s", 0.0))}
        log.info(
            "rlreward scorer: model=%s dtype=%s device=%s attn=%s hidden=%d head=%s batching=%s",
            config.model,
            dtype,
            device,
            backbone.config._attn_implementation,
            hidden,
            head_path,
            scorer.config.batching.model_dump(),
        )
        return scorer

    @classmethod
    def from_pretrained(cls, model: str, **overrides: Any) -> Scorer:
        return cls.from_config(ScorerConfig(model=model, **overrides))

    def effective_settings(self) -> dict[str, Any]:
        """What this scorer actually does: both resize stages' bounds, video bounds, what deviates
        from the checkpoint/recipe, and the resolved batch budget. JSON-serialisable.

        ``preprocessing.image.first_resize`` is qwen-vl-utils' default for an item without its own
        keys; ``second_resize`` is read from the loaded processor instance (the checkpoint's saved
        bounds, or the configured deviation). Pixel counts are areas (width x height).
        """
        from qwen_vl_utils import vision_process as vp

        ip = getattr(self.processor, "image_processor", None)
        vproc = getattr(self.processor, "video_processor", None)
        lo, hi = processor_bounds(ip) if ip is not None else (None, None)
        vlo, vhi = processor_bounds(vproc) if vproc is not None else (None, None)
        factor = 14 * vp.SPATIAL_MERGE_SIZE
        cfg = self.config
        deviations = cfg.deviations
        bc = cfg.batching
        requested = self.requested_config.batching.max_batch_tokens
        return {
            "preprocessing": {
                "recipe": "model card: process_vision_info (first resize, per-item keys honoured) then "
                "the checkpoint's processor (second resize)",
                "image": {
                    "first_resize": {
                        "by": "qwen-vl-utils",
                        "min_pixels": vp.IMAGE_MIN_TOKEN_NUM * factor**2,
                        "max_pixels": vp.IMAGE_MAX_TOKEN_NUM * factor**2,
                        "factor": factor,
                        "per_item_keys": ["min_pixels", "max_pixels", "resized_height", "resized_width"],
                    },
                    "second_resize": {
                        "by": "configured deviation"
                        if ("min_pixels" in deviations or "max_pixels" in deviations)
                        else "checkpoint processor",
                        "min_pixels": lo,
                        "max_pixels": hi,
                        "patch_size": getattr(ip, "patch_size", None),
                        "merge_size": getattr(ip, "merge_size", None),
                    },
                },
                "video": {
                    "first_resize": {
                        "by": "qwen-vl-utils",
                        "min_pixels": vp.VIDEO_MIN_TOKEN_NUM * factor**2,
                        "max_pixels": cfg.video_max_pixels or vp.VIDEO_MAX_TOKEN_NUM * factor**2,
                        "fps": vp.FPS,
                        "min_frames": vp.FPS_MIN_FRAMES,
                        "max_frames": vp.FPS_MAX_FRAMES,
                        "per_item_keys": [k for k in VIDEO_ITEM_KEYS if k not in ("sample_fps", "raw_fps")],
                        "file_reader": os.environ.get("FORCE_QWENVL_VIDEO_READER") or VIDEO_READER,
                    },
                    "second_resize": {"by": "checkpoint processor", "min_pixels": vlo, "max_pixels": vhi},
                    "max_video_frames": cfg.limits.max_video_frames,
                    "max_video_seconds": cfg.limits.max_video_seconds,
                },
                "deviations": deviations,
                "faithful": not deviations,
            },
            "batching": {
                "max_batch_tokens": bc.max_batch_tokens,
                "max_batch_tokens_source": "configured"
                if requested is not None
                else f"{self.device.type} default",
                "max_batch_size": bc.max_batch_size,
                "prefix_sharing": bc.prefix_sharing,
                "batch_wait_timeout_s": bc.batch_wait_timeout_s,
            },
        }

    def info(self) -> dict[str, Any]:
        """What the server reports on ``/v1/models``: model facts, the effective preprocessing and
        batch budget (:meth:`effective_settings`), limits. ``min_pixels``/``max_pixels`` are the
        second (processor) resize's effective bounds."""
        eff = self.effective_settings()
        second = eff["preprocessing"]["image"]["second_resize"]
        return {
            "model": self.config.model,
            "hidden_size": self.head.hidden_size,
            "head_shape": [1, self.head.hidden_size],
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": str(self.device),
            "min_pixels": second["min_pixels"],
            "max_pixels": second["max_pixels"],
            "max_batch_tokens": eff["batching"]["max_batch_tokens"],
            "preprocessing": eff["preprocessing"],
            "batching": eff["batching"],
            "limits": self.config.limits.model_dump(),
        }

    # -- preprocessing (CPU, thread-safe) ------------------------------------------------------
    def prepare(self, sample: Any) -> PreparedSample | ScoreResult:
        """One sample → model inputs, or its error result. Never raises for a bad sample."""
        try:
            return self.preprocessor.prepare(sample)
        except SampleError as exc:
            return exc.to_result()
        except Exception as exc:  # a bug in preprocessing must not kill the batch
            log.exception("unexpected preprocessing failure")
            return ScoreResult.failed(
                ErrorCode.INTERNAL, f"preprocessing failed: {type(exc).__name__}: {exc}"
            )

    # -- forward ---------------------------------------------------------------------------------
    def _image_features(self, pixels: torch.Tensor, grid: torch.Tensor, digests: list[str]) -> torch.Tensor:
        """Vision-tower features for the images of a batch, each distinct image encoded once.

        ``pixels`` holds the images' patch rows back to back (``grid[i].prod()`` rows each);
        ``digests`` their content hashes. Identical images (a GRPO group's, say) share one pass;
        with ``vision_cache_size`` > 0, features are also kept across batches (LRU by hash).
        """
        m = self.backbone
        if len(digests) != grid.shape[0]:  # no hashes (callers that built Batch by hand)
            return torch.cat(m.get_image_features(pixels, grid).pooler_output, dim=0)
        rows = grid.prod(-1).tolist()
        chunks = torch.split(pixels, rows)
        todo: dict[str, int] = {}
        for i, d in enumerate(digests):
            if d not in self._vision_cache and d not in todo:
                todo[d] = i
        fresh: dict[str, torch.Tensor] = {}
        if todo:
            idx = list(todo.values())
            feats = m.get_image_features(torch.cat([chunks[i] for i in idx]), grid[idx]).pooler_output
            fresh = dict(zip(todo, feats))
        out = []
        for d in digests:
            f = fresh.get(d)
            if f is None:
                f = self._vision_cache[d]
                self._vision_cache.move_to_end(d)
            out.append(f)
        if self._vision_cache_size:
            for d, f in fresh.items():
                self._vision_cache[d] = f
            while len(self._vision_cache) > self._vision_cache_size:
                self._vision_cache.popitem(last=False)
        return torch.cat(out, dim=0)

    @torch.inference_mode()
    def _embed(self, batch: Batch) -> torch.Tensor:
        return embed_batch(self.backbone, batch, self._batch_image_features)

    def _batch_image_features(self, batch: Batch) -> torch.Tensor:
        return self._image_features(batch.pixel_values, batch.image_grid_thw, batch.image_digests)

    @torch.inference_mode()
    def forward(self, batch: Batch) -> torch.Tensor:
        """Scores [B] (fp32, on CPU) for one collated batch (:func:`value_forward`, no autograd)."""
        batch = batch.to(self.device)
        return value_forward(self.backbone, self.head, batch, self._batch_image_features).cpu()

    @torch.inference_mode()
    def forward_shared(self, segments: Sequence[tuple[Sequence[PreparedSample], int]]) -> torch.Tensor:
        """Scores for groups of samples that share a prefix, in segment then member order.

        ``segments`` are ``(members, prefix_len)``: the members of one group share their first
        ``prefix_len`` tokens, images included. All prefixes run as one batch (vision tower
        included); their keys/values are then gathered per member, and all suffixes run as one
        right-padded batch at their own position ids. Causal attention makes this exact: prefix
        states never see a suffix.
        """
        from transformers import DynamicCache

        lm = self.backbone.language_model
        heads = []
        for members, p in segments:
            first = members[0]
            heads.append(
                PreparedSample(
                    input_ids=first.input_ids[:p],
                    position_ids=first.position_ids[:, :p],
                    pixel_values=first.pixel_values,
                    image_grid_thw=first.image_grid_thw,
                    image_digests=list(first.image_digests),
                )
            )
        prefix = collate(heads, self.preprocessor.pad_token_id, "right").to(self.device)
        out = lm(
            inputs_embeds=self._embed(prefix),
            attention_mask=prefix.attention_mask,
            position_ids=prefix.position_ids,
            use_cache=True,
        )
        kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        wp = prefix.input_ids.shape[1]
        rows = [(g, s, p) for g, (members, p) in enumerate(segments) for s in members]
        n = len(rows)
        width = max(s.num_tokens - p for _, s, p in rows)
        ids = torch.full((n, width), self.preprocessor.pad_token_id, dtype=torch.long)
        mask = torch.zeros((n, wp + width), dtype=torch.long)
        pos = torch.zeros((3, n, width), dtype=torch.long)
        last = torch.empty(n, dtype=torch.long)
        prefix_mask = prefix.attention_mask.cpu()
        for r, (g, s, p) in enumerate(rows):
            k = s.num_tokens - p
            ids[r, :k] = s.input_ids[p:]
            mask[r, :wp] = prefix_mask[g]
            mask[r, wp : wp + k] = 1
            pos[:, r, :k] = s.position_ids[:, p:]
            last[r] = k - 1
        which = torch.tensor([g for g, _, _ in rows], device=self.device)
        cache = DynamicCache(
            ddp_cache_data=[(k.index_select(0, which), v.index_select(0, which)) for k, v in kv]
        )
        ids, mask, pos = ids.to(self.device), mask.to(self.device), pos.to(self.device)
        out = lm(
            inputs_embeds=self.backbone.get_input_embeddings()(ids),
            attention_mask=mask,
            position_ids=pos,
            past_key_values=cache,
            use_cache=True,
        )
        hidden = out.last_hidden_state
        return self.head(hidden[torch.arange(n, device=hidden.device), last.to(self.device)]).cpu()

    def _results(self, scores: list[float]) -> list[ScoreResult]:
        return [
            ScoreResult(score=s)
            if math.isfinite(s)
            else ScoreResult.failed(ErrorCode.INTERNAL, f"the model produced a non-finite score ({s})")
            for s in scores
        ]

    def _run(self, fp: ForwardPass, items: Sequence[PreparedSample]) -> list[ScoreResult]:
        """One forward pass; on failure, retry its samples one by one (unshared)."""
        try:
            if fp.shared:
                scores = self.forward_shared([([items[i] for i in m], p) for m, p in fp.segments]).tolist()
            else:
                batch = collate(
                    [items[i] for i in fp.indices],
                    self.preprocessor.pad_token_id,
                    self.config.batching.padding_side,
                )
                scores = self.forward(batch).tolist()
        except Exception as exc:
            if len(fp.indices) == 1 and not fp.shared:
                log.exception("forward pass failed for one sample")
                return [
                    ScoreResult.failed(
                        ErrorCode.INTERNAL, f"forward pass failed: {type(exc).__name__}: {exc}"
                    )
                ]
            log.warning("forward pass of %d samples failed (%s); retrying one by one", len(fp.indices), exc)
            return [r for i in fp.indices for r in self._run(ForwardPass([([i], 0)]), items)]
        return self._results(scores)

    def plan(self, items: Sequence[PreparedSample]) -> list[ForwardPass]:
        """The forward passes that score ``items``, in run order (see :class:`ForwardPass`)."""
        bc = self.config.batching
        rest = list(range(len(items)))
        passes: list[ForwardPass] = []
        if bc.prefix_sharing:
            vision_ids = [t for t in (self.image_token_id, self.video_token_id) if t is not None]
            groups, rest = find_prefix_groups(items, bc.min_shared_prefix_tokens, vision_ids)
            chunks = []
            for grp in groups:
                # Split a big group by the suffix token budget; every chunk re-uses the prefix.
                suffix = [items[m].num_tokens - grp.prefix_len for m in grp.members]
                for chunk in plan_batches(
                    suffix, bc.max_batch_tokens, bc.max_batch_size, bc.min_padding_efficiency
                ):
                    chunks.append(([grp.members[c] for c in chunk], grp.prefix_len))
            passes += pack_shared(
                chunks, [it.num_tokens for it in items], bc.max_batch_tokens, bc.max_batch_size
            )
        lengths = [items[i].num_tokens for i in rest]
        for chunk in plan_batches(lengths, bc.max_batch_tokens, bc.max_batch_size, bc.min_padding_efficiency):
            passes.append(ForwardPass([([rest[c] for c in chunk], 0)]))
        return passes

    def score_prepared(
        self, items: Sequence[PreparedSample | ScoreResult], progress: Callable[[int], None] | None = None
    ) -> list[ScoreResult]:
        """Score already-prepared samples; error results pass through in place. A sleeping scorer
        wakes first (:meth:`wake`)."""
        if self.sleep_level:
            self.wake()
        results: list[ScoreResult | None] = [it if isinstance(it, ScoreResult) else None for it in items]
        todo = [i for i, it in enumerate(items) if isinstance(it, PreparedSample)]
        prepared = [items[i] for i in todo]
        if progress and len(todo) < len(items):
            progress(len(items) - len(todo))
        for fp in self.plan(prepared):
            for j, r in zip(fp.indices, self._run(fp, prepared)):
                results[todo[j]] = r
            if progress:
                progress(len(fp.indices))
        return results  # type: ignore[return-value]

    def score(
        self, samples: Sequence[Any], progress: Callable[[int], None] | None = None
    ) -> list[ScoreResult]:
        """Score ``samples`` (dicts in either form). ``results[i]`` belongs to ``samples[i]``."""
        return self.score_prepared([self.prepare(s) for s in samples], progress=progress)

    # -- sleep and wake (rlreward.engine.sleep) ---------------------------------------------------------
    def weight_bytes(self) -> int:
        """Bytes the backbone's and head's parameters hold now (0 while asleep at level 2)."""
        from rlreward.engine.sleep import parameter_bytes

        return parameter_bytes([self.backbone, self.head])

    def sleep(self, level: int = 1) -> int:
        """Release the model's memory, keep everything else; returns the parameter bytes released
        from the device (level 1 on a GPU) or from memory (level 2). Not thread-safe with
        :meth:`score_prepared` (the caller owns the device). See :mod:`rlreward.engine.sleep`."""
        from rlreward.engine import sleep as sl

        level = sl.check_level(level)
        if self.sleep_level >= level:
            return 0
        modules = [self.backbone, self.head]
        self._vision_cache.clear()
        size = self.weight_bytes()
        if level == 1:
            sl.offload(modules, self.device)
            released = size if self.device.type == "cuda" else 0
        else:
            sl.remember_shapes(modules)
            released = sl.drop(modules)
        self.sleep_level = level
        log.info("rlreward scorer asleep (level %d): %d weight bytes released", level, released)
        return released

    def wake(self) -> None:
        """Undo :meth:`sleep`: the same weights back on the device (level 2: reloaded from the
        checkpoint's files). Scores after a wake are bitwise those before the sleep."""
        from rlreward.engine import sleep as sl

        if self.sleep_level == 0:
            return
        if self.sleep_level == 1:
            sl.restore([self.backbone, self.head], self.device)
        else:
            config = self.config
            head_path = resolve_head_file(config.model, config.head_file, config.revision)
            fresh = load_backbone(config, self.device, self.dtype)
            sl.refill(self.backbone, fresh)
            del fresh
            head = load_value_head(head_path, self.head.hidden_size, config.head_key_prefix)
            sl.refill(self.head, head.to(self.device))
        self.sleep_level = 0
