"""The scorer: a list of samples in, a list of :class:`ScoreResult` out, same order.

The checkpoint's family (:mod:`rlreward.engine.models`: detected from its ``config.json`` and
files) loads it, renders samples and runs the forward pass; for every family the score is

    score(sample) = head(h_L[t])        (fp32)

``h_L`` the post-final-norm hidden state of the language model, ``t`` the sample's last real
token (after the family's render), ``head`` the value head / ``score`` layer in fp32 (Skywork-VL:
``w · h + b``). ``lm_head`` is never computed (nor kept in memory). The scorer
plans batches, shares prefixes where the family allows KV reuse, and reports what ran.

Isolation: preprocessing errors are per sample (:class:`SampleError`); a failed forward pass is split
in halves until only the sample that fails gets an ``internal_error``; out of memory lowers the token
budget (:mod:`rlreward.engine.passes`). A GRPO group's prefix runs once per batch (:meth:`Scorer.plan`).

>>> scorer = Scorer.from_pretrained("/path/to/tiny")                      # doctest: +SKIP
>>> scorer.score([{"prompt": "2+2?", "response": "4"}])                    # doctest: +SKIP
[ScoreResult(score=0.73, error=None)]
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch

from rlreward.engine.batching import (
    Batch,
    ForwardPass,
    PlanCosts,
    collate,
    find_prefix_groups,
    kv_tokens_per_token,
    plan_batches,
    plan_shared,
)
from rlreward.engine.config import ScorerConfig, resolve_device_defaults
from rlreward.engine.head import ValueHead
from rlreward.engine.media import VIDEO_READER
from rlreward.engine.models import RewardFamily, detect_family, family_for_backbone
from rlreward.engine.passes import PassRunner, PrefixKV
from rlreward.engine.preprocess import VIDEO_ITEM_KEYS, PreparedSample, Preprocessor, processor_bounds
from rlreward.engine.vision_attention import batch_vision_windows
from rlreward.schema import ErrorCode, SampleError, ScoreResult

log = logging.getLogger("rlreward")

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[dtype]


class Scorer:
    """Scores samples with a reward model of any supported family (:mod:`rlreward.engine.models`).
    Thread-safe for :meth:`prepare`; one :meth:`score_prepared` at a time per instance (it owns
    the device)."""

    def __init__(
        self,
        config: ScorerConfig,
        backbone: torch.nn.Module,
        processor: Any,
        head: ValueHead | torch.nn.Module,
        family: RewardFamily | None = None,
    ) -> None:
        self.device = next(backbone.parameters()).device
        self.dtype = next(backbone.parameters()).dtype
        self.requested_config = config
        # The one place unset device-dependent values (the batch budget) become numbers: every
        # path (score, serve, bench, eval, the Python API) builds a Scorer.
        config = resolve_device_defaults(config, self.device.type)
        self.family = family if family is not None else family_for_backbone(backbone)
        config = self._family_limits(config)
        self.config = config
        self.backbone = backbone
        self.processor = processor
        self.head = head.to(self.device)
        self.preprocessor: Preprocessor = self.family.preprocessor(processor, config, backbone)
        self.preprocessor.pixel_dtype = self.dtype  # pixel tensors kept in the compute dtype
        cfg = backbone.config
        self.image_token_id = getattr(cfg, "image_token_id", None)
        self.video_token_id = getattr(cfg, "video_token_id", None)
        self._vision_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._vision_cache_size = config.batching.vision_cache_size
        self.runner = PassRunner(self, config.batching.max_batch_tokens)
        #: Vision attention modules running equal-size windows as one call per layer.
        self.batched_vision_windows = batch_vision_windows(backbone)
        #: 0 awake, else the level of :meth:`sleep` in effect.
        self.sleep_level = 0

    def _family_limits(self, config: ScorerConfig) -> ScorerConfig:
        """``config`` with what the family's forward cannot do switched off (reported in
        :meth:`effective_settings`): prefix sharing without KV reuse, left padding."""
        bc, update = config.batching, {}
        if bc.prefix_sharing and not self.family.kv_prefix_reuse:
            update["prefix_sharing"] = False
        if bc.padding_side == "left" and getattr(self.family, "right_padding_only", False):
            update["padding_side"] = "right"
        if not update:
            return config
        return config.model_copy(update={"batching": bc.model_copy(update=update)})

    @classmethod
    def from_config(cls, config: ScorerConfig) -> Scorer:
        """Detect the checkpoint's family (:func:`rlreward.engine.models.detect_family`), load
        backbone, processor and head as it says."""
        device = resolve_device(config.device)
        dtype = resolve_dtype(config.dtype, device)
        family = detect_family(config)
        backbone, processor, head = family.load(config, device, dtype)
        scorer = cls(config, backbone, processor, head, family=family)
        scorer.load_split = {"device_copy_s": float(getattr(backbone, "rlreward_device_copy_s", 0.0))}
        log.info(
            "rlreward scorer: model=%s family=%s dtype=%s device=%s attn=%s hidden=%d batching=%s",
            config.model,
            family.name,
            dtype,
            device,
            backbone.config._attn_implementation,
            head.hidden_size,
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
        bc = self.config.batching
        requested = self.requested_config.batching
        batching = {
            "max_batch_tokens": bc.max_batch_tokens,
            "max_batch_tokens_source": "configured"
            if requested.max_batch_tokens is not None
            else f"{self.device.type} default",
            "max_batch_size": bc.max_batch_size,
            "budget_tokens": self.runner.budget_tokens,
            "prefix_sharing": bc.prefix_sharing,
            "pass_cost_tokens": bc.pass_cost_tokens,
            "batch_wait_timeout_s": bc.batch_wait_timeout_s,
        }
        if requested.prefix_sharing and not bc.prefix_sharing:
            batching["prefix_sharing_off_because"] = self.family.no_reuse_reason
        if requested.padding_side != bc.padding_side:
            batching["padding_side"] = f"{bc.padding_side} (this family's forward needs it)"
        preprocessing = (
            self._qwen_vl_preprocessing() if self.family.qwen_vl_utils else self._family_preprocessing()
        )
        return {"model": self.family.describe(), "preprocessing": preprocessing, "batching": batching}

    def _family_preprocessing(self) -> dict[str, Any]:
        """The preprocessing of a family that renders with its own processor/tokenizer alone."""
        ip = getattr(self.processor, "image_processor", None)
        size = getattr(ip, "size", None)
        lo, hi = processor_bounds(ip) if ip is not None else (None, None)
        resize = {"by": "checkpoint processor", "min_pixels": lo, "max_pixels": hi}
        if size is not None and lo is None:
            resize["size"] = dict(size) if isinstance(size, dict) else str(size)
        deviations = self.config.deviations
        return {
            "recipe": self.family.recipe,
            "image": {"first_resize": None, "second_resize": resize if self.family.vision else None},
            "video": None,
            "deviations": deviations,
            "faithful": not deviations,
        }

    def _qwen_vl_preprocessing(self) -> dict[str, Any]:
        """The two resizes of the Qwen-VL model cards (qwen-vl-utils, then the processor)."""
        from qwen_vl_utils import vision_process as vp

        ip = getattr(self.processor, "image_processor", None)
        vproc = getattr(self.processor, "video_processor", None)
        lo, hi = processor_bounds(ip) if ip is not None else (None, None)
        vlo, vhi = processor_bounds(vproc) if vproc is not None else (None, None)
        factor = self.family.image_patch_size * vp.SPATIAL_MERGE_SIZE
        cfg = self.config
        deviations = cfg.deviations
        no_second = self.preprocessor.processor_kwargs.get("do_resize") is False
        return {
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
                    else "none: the processor runs with do_resize=False (the card's)"
                    if no_second
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
        }

    def info(self) -> dict[str, Any]:
        """What the server reports on ``/v1/models``: model facts, the effective preprocessing and
        batch budget (:meth:`effective_settings`), limits. ``min_pixels``/``max_pixels`` are the
        second (processor) resize's effective bounds."""
        eff = self.effective_settings()
        second = eff["preprocessing"]["image"]["second_resize"] or {}
        return {
            "model": self.config.model,
            "family": eff["model"],
            "hidden_size": self.head.hidden_size,
            "head_shape": [1, self.head.hidden_size],
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": str(self.device),
            "min_pixels": second.get("min_pixels"),
            "max_pixels": second.get("max_pixels"),
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
        return self.family.embed(self.backbone, batch, self._batch_image_features)

    def _batch_image_features(self, batch: Batch) -> torch.Tensor:
        return self._image_features(batch.pixel_values, batch.image_grid_thw, batch.image_digests)

    @torch.inference_mode()
    def forward(self, batch: Batch) -> torch.Tensor:
        """Scores [B] (fp32, on CPU) for one collated batch (the family's forward, no autograd)."""
        batch = batch.to(self.device)
        return self.family.forward(self.backbone, self.head, batch, self._batch_image_features).cpu()

    @torch.inference_mode()
    def prefix_kv(self, heads: Sequence[tuple[PreparedSample, int]]) -> PrefixKV:
        """Run the prefixes ``(sample, prefix_len)`` (one per group, images included) as one batch
        and keep their keys/values for :meth:`suffix_scores`. Rows are right-padded."""
        from rlreward.engine.batching import prefix_sample

        batch = collate([prefix_sample(s, p) for s, p in heads], self.preprocessor.pad_token_id, "right")
        batch = batch.to(self.device)
        out = self.family.language_model(self.backbone)(
            inputs_embeds=self._embed(batch),
            attention_mask=batch.attention_mask,
            position_ids=self.family.lm_positions(batch.position_ids),
            use_cache=True,
        )
        layers = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        return PrefixKV(layers=layers, mask=batch.attention_mask, width=int(batch.input_ids.shape[1]))

    @torch.inference_mode()
    def suffix_scores(
        self, prefix: PrefixKV, rows: Sequence[tuple[int, PreparedSample, int]]
    ) -> torch.Tensor:
        """Scores [R] (fp32, CPU) of rows ``(prefix row, sample, prefix_len)`` whose suffixes (the
        sample's tokens after ``prefix_len``) run as one padded batch at their own position ids
        against ``prefix``'s keys/values, expanded to the rows. Causal attention makes this exact:
        a prefix state never sees a suffix."""
        from transformers import DynamicCache

        n, wp = len(rows), prefix.width
        width = max(s.num_tokens - p for _, s, p in rows)
        left = self.config.batching.padding_side == "left"
        ids = torch.full((n, width), self.preprocessor.pad_token_id, dtype=torch.long)
        mask = torch.zeros((n, wp + width), dtype=torch.long)
        pos = torch.zeros((3, n, width), dtype=torch.long)
        last = torch.empty(n, dtype=torch.long)
        prefix_mask = prefix.mask.cpu()
        for r, (g, s, p) in enumerate(rows):
            k = s.num_tokens - p
            sl = slice(width - k, width) if left else slice(0, k)
            ids[r, sl] = s.input_ids[p:]
            mask[r, :wp] = prefix_mask[g]
            mask[r, wp + sl.start : wp + sl.stop] = 1
            pos[:, r, sl] = s.position_ids[:, p:]
            last[r] = sl.stop - 1
        which = torch.tensor([g for g, _, _ in rows], device=self.device)
        cache = DynamicCache(
            ddp_cache_data=[(k.index_select(0, which), v.index_select(0, which)) for k, v in prefix.layers]
        )
        ids, mask, pos = ids.to(self.device), mask.to(self.device), pos.to(self.device)
        out = self.family.language_model(self.backbone)(
            inputs_embeds=self.backbone.get_input_embeddings()(ids),
            attention_mask=mask,
            position_ids=self.family.lm_positions(pos),
            past_key_values=cache,
            use_cache=True,
        )
        hidden = out.last_hidden_state
        return self.head(hidden[torch.arange(n, device=hidden.device), last.to(self.device)]).cpu()

    @property
    def kv_tokens_per_token(self) -> float:
        """A cached token's keys/values in token-equivalents of the budget (:func:`kv_tokens_per_token`)."""
        return kv_tokens_per_token(self.backbone.config.get_text_config())

    @property
    def budget_tokens(self) -> int:
        """The token budget plans use now: ``max_batch_tokens``, lowered after out-of-memory errors."""
        return self.runner.budget_tokens

    def engine_stats(self) -> dict[str, Any]:
        """Cumulative pass counters (see :mod:`rlreward.engine.passes`): ``forward_passes``,
        ``prefix_passes``, ``computed_tokens``, ``useful_tokens``, ``shared_path_failures``,
        ``out_of_memory``, the ``budget_tokens`` in use, and the prepared-image cache's figures."""
        c = self.runner.counters
        return {
            "forward_passes": c.forward_passes,
            "prefix_passes": c.prefix_passes,
            "computed_tokens": c.computed_tokens,
            "useful_tokens": c.useful_tokens,
            "shared_path_failures": c.shared_path_failures,
            "out_of_memory": c.out_of_memory,
            "budget_tokens": self.runner.budget_tokens,
            "image_cache": self.preprocessor.images.stats(),
        }

    def plan(self, items: Sequence[PreparedSample]) -> list[ForwardPass]:
        """The passes that score ``items``, in run order (see :class:`ForwardPass`): prefix groups
        (:func:`find_prefix_groups`) as shared passes planned by cost (:func:`plan_shared`: each
        group's prefix once, suffix chunks, prefix KV counted in the budget), the rest unshared
        (:func:`plan_batches`), all under :attr:`budget_tokens`."""
        bc = self.config.batching
        budget = self.runner.budget_tokens
        rest = list(range(len(items)))
        passes: list[ForwardPass] = []
        if bc.prefix_sharing:
            vision_ids = [t for t in (self.image_token_id, self.video_token_id) if t is not None]
            groups, rest = find_prefix_groups(items, bc.min_shared_prefix_tokens, vision_ids)
            costs = PlanCosts(budget, bc.max_batch_size, self.kv_tokens_per_token, bc.pass_cost_tokens)
            passes += plan_shared(groups, [it.num_tokens for it in items], costs)
        lengths = [items[i].num_tokens for i in rest]
        for chunk in plan_batches(lengths, budget, bc.max_batch_size, bc.min_padding_efficiency):
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
            for j, r in self.runner.run(fp, prepared).items():
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
        self.preprocessor.images.clear()  # prepared pixels (host memory) go too
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
        else:  # the family's own loader, over the checkpoint's files again
            fresh, _, head = self.family.load(self.config, self.device, self.dtype)
            sl.refill(self.backbone, fresh)
            sl.refill(self.head, head.to(self.device))
            del fresh, head
        self.sleep_level = 0
