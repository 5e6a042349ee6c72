"""Sample → model inputs: validate, decode images, resize, render the chat template, tokenise.

:func:`normalize_messages` turns either sample form into one conversation (model-card format) and
checks its structure. :class:`Preprocessor` then decodes and checks every image
(:mod:`rlreward.engine.media`) and runs the model card's recipe literally: the chat template
(``add_generation_prompt=False``, so the text ends ``<|im_end|>\\n``), then **two resizes**:

1. ``qwen_vl_utils.process_vision_info`` on the conversation, per-item keys included (images:
   ``min_pixels``/``max_pixels``/``resized_height``/``resized_width``; videos: also ``fps``/
   ``nframes``/``min_frames``/``max_frames``/``total_pixels``/``video_start``/``video_end``), with
   qwen-vl-utils' own defaults where an item has none; video files are read by the reader
   :func:`rlreward.engine.media.ensure_video_reader` pins (decord: only the sampled frames are decoded);
2. the checkpoint's own processor, called as the card calls it, with the bounds saved in its
   processor config — unless ``ScorerConfig.min_pixels``/``max_pixels`` are set, an explicit,
   reported deviation (the card's commented ``AutoProcessor.from_pretrained(..., max_pixels=...)``).

Finally it computes the sample's 3D (M-RoPE) position ids.

It runs on CPU, holds no model weights, and is safe to call from worker threads: this is the part a
serving replica keeps off its event loop. Failures raise :class:`SampleError` for that sample only.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Any

import torch

from rlreward.engine.config import ScorerConfig
from rlreward.engine.content import check_no_vision_markers, from_openai_part, vision_placeholder_in
from rlreward.engine.image_cache import ImageCache, ImageHeader, PreparedImage
from rlreward.engine.media import (
    PixelBudget,
    check_item_resize,
    check_path,
    check_video_file,
    decode_image,
    ensure_video_reader,
    first_resize,
    load_image,
    open_image,
)
from rlreward.engine.tokens import PrefixTokens, token_ids
from rlreward.schema import ErrorCode, SampleError

_ROLES = {"system", "user", "assistant"}


@dataclass
class PreparedSample:
    """One sample, tokenised, with its vision inputs; everything the forward pass needs.

    Shapes: ``input_ids`` [L]; ``position_ids`` [3, L] (temporal/height/width M-RoPE ids; equal rows
    for text); ``pixel_values`` [patches, C*T*14*14] with ``image_grid_thw`` [n_images, 3]; the
    same for videos. ``image_digests`` are content hashes, one per image, for vision reuse.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    pixel_values: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None
    pixel_values_videos: torch.Tensor | None = None
    video_grid_thw: torch.Tensor | None = None
    second_per_grid_ts: torch.Tensor | None = None
    image_digests: list[str] = field(default_factory=list)
    #: Per video, what decoded it: qwen-vl-utils' reader for a file ("decord", ...), "frames" for a list.
    video_readers: list[str] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def has_video(self) -> bool:
        return self.pixel_values_videos is not None


#: Per-item keys qwen-vl-utils 0.0.14 reads from an image item (``fetch_image``).
IMAGE_ITEM_KEYS = ("min_pixels", "max_pixels", "resized_height", "resized_width")
#: Per-item keys qwen-vl-utils 0.0.14 reads from a video item (``fetch_video``/``smart_nframes``).
VIDEO_ITEM_KEYS = (
    "fps",
    "nframes",
    "min_frames",
    "max_frames",
    "min_pixels",
    "max_pixels",
    "total_pixels",
    "resized_height",
    "resized_width",
    "video_start",
    "video_end",
    "sample_fps",
    "raw_fps",
)
_INT_KEYS = {
    "min_pixels",
    "max_pixels",
    "resized_height",
    "resized_width",
    "nframes",
    "min_frames",
    "max_frames",
}


def _item_keys(item: dict, keys: tuple[str, ...], where: str) -> dict:
    """The item's resize/sampling keys, type-checked (qwen-vl-utils would fail obscurely on bad ones)."""
    out: dict[str, Any] = {}
    for k in keys:
        if k not in item or item[k] is None:
            continue
        v = item[k]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
        if ok and k in _INT_KEYS:
            ok = float(v).is_integer()
            v = int(v) if ok else v
        if not ok or (v < 0 if k in ("video_start", "video_end") else v <= 0):
            raise SampleError(ErrorCode.BAD_CONTENT, f"{where}: {k!r} must be a positive number, not {v!r}")
        out[k] = v
    if "min_pixels" in out and "max_pixels" in out and out["min_pixels"] > out["max_pixels"]:
        raise SampleError(
            ErrorCode.BAD_CONTENT,
            f"{where}: min_pixels {out['min_pixels']} is above max_pixels {out['max_pixels']}",
        )
    if ("resized_height" in out) != ("resized_width" in out):
        raise SampleError(
            ErrorCode.BAD_CONTENT,
            f"{where}: give both resized_height and resized_width (qwen-vl-utils needs both)",
        )
    if "fps" in out and "nframes" in out:
        raise SampleError(ErrorCode.BAD_CONTENT, f"{where}: give 'fps' or 'nframes', not both")
    return out


def check_text(texts: list[str], limits: Any) -> None:
    """Refuse text that is too long or not valid Unicode, before anything is tokenised.

    The length is counted in characters against ``limits.text_char_limit`` (``Limits.max_text_chars``),
    so megabytes of text cost a ``len``, not a tokenisation. A lone surrogate (``"\ud800"``, which
    JSON can carry) cannot be encoded to UTF-8: ``invalid_text``, not a tokenizer crash.
    """
    n = sum(len(t) for t in texts)
    if n > limits.text_char_limit:
        raise SampleError(
            ErrorCode.TOO_MANY_TOKENS,
            f"{n} characters of text, over the limit of {limits.text_char_limit} (limits.max_text_chars, "
            f"checked before tokenising; default 8 x max_tokens); shorten it",
        )
    for t in texts:
        if t.isascii():
            continue
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise SampleError(
                ErrorCode.INVALID_TEXT,
                f"text has a lone surrogate {t[exc.start]!r} at character {exc.start}: not valid Unicode "
                "(check how the text was decoded)",
            ) from None


def _text_item(text: Any, where: str) -> dict:
    if not isinstance(text, str):
        raise SampleError(ErrorCode.BAD_CONTENT, f"{where}: text must be a string, not {type(text).__name__}")
    return {"type": "text", "text": text}


def _content_items(content: Any, where: str) -> str | list[dict]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise SampleError(
            ErrorCode.BAD_CONTENT,
            f"{where}: content must be a string or a list of items, not {type(content).__name__}",
        )
    items: list[dict] = []
    for j, item in enumerate(content):
        w = f"{where}.content[{j}]"
        if isinstance(item, str):
            items.append(_text_item(item, w))
            continue
        if not isinstance(item, dict):
            raise SampleError(
                ErrorCode.BAD_CONTENT, f"{w}: an item must be an object, not {type(item).__name__}"
            )
        item = from_openai_part(item, w)  # OpenAI content parts → the card's items
        kind = item.get("type")
        if kind is None:  # the card allows {"image": ...} / {"text": ...} without "type"
            kind = next((k for k in ("image", "video", "text", "image_url") if k in item), None)
        if kind == "text":
            items.append(_text_item(item.get("text"), w))
        elif kind in ("image", "image_url"):
            ref = item.get("image", item.get("image_url"))
            if isinstance(ref, dict) and "url" in ref:  # OpenAI style {"image_url": {"url": ...}}
                ref = ref["url"]
            if ref is None:
                raise SampleError(ErrorCode.BAD_CONTENT, f"{w}: image item has no 'image' value")
            items.append({"type": "image", "image": ref, **_item_keys(item, IMAGE_ITEM_KEYS, w)})
        elif kind == "video":
            ref = item.get("video")
            if ref is None or (isinstance(ref, list) and not ref):
                raise SampleError(
                    ErrorCode.BAD_CONTENT, f"{w}: video item needs a frame list or a video file"
                )
            items.append({"type": "video", "video": ref, **_item_keys(item, VIDEO_ITEM_KEYS, w)})
        else:
            raise SampleError(
                ErrorCode.BAD_CONTENT, f"{w}: unknown content type {kind!r} (use 'text', 'image' or 'video')"
            )
    return items


def _check_messages(messages: Any, where: str, *, need_answer: bool) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise SampleError(ErrorCode.INVALID_SAMPLE, f"{where} must be a non-empty list of messages")
    out = []
    for i, msg in enumerate(messages):
        w = f"{where}[{i}]"
        if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
            raise SampleError(ErrorCode.INVALID_SAMPLE, f"{w} must be an object with 'role' and 'content'")
        role = msg["role"]
        if role not in _ROLES:
            raise SampleError(
                ErrorCode.INVALID_SAMPLE, f"{w}: role must be one of {sorted(_ROLES)}, not {role!r}"
            )
        out.append({"role": role, "content": _content_items(msg["content"], w)})
    if need_answer:
        last = out[-1]
        if last["role"] != "assistant":
            raise SampleError(
                ErrorCode.MISSING_ASSISTANT_TURN,
                f"the last message must be the assistant answer to score (got role {last['role']!r}); "
                "or send {'prompt': ..., 'response': ...}",
            )
        content = last["content"]
        if isinstance(content, list):
            if any(it["type"] != "text" for it in content):
                raise SampleError(ErrorCode.BAD_CONTENT, "the assistant answer may only contain text")
            content = "".join(it["text"] for it in content)
            last["content"] = content
        # An empty answer is scored as the card's template renders it ("<|im_start|>assistant\n<|im_end|>").
        if len(out) < 2:
            raise SampleError(ErrorCode.INVALID_SAMPLE, "messages need at least one turn before the answer")
    return out


def normalize_messages(sample: Any) -> list[dict]:
    """Either sample form → one validated conversation ending with the assistant answer.

    Image/video references are left as they are (decoding happens in :class:`Preprocessor`).
    """
    if not isinstance(sample, dict):
        raise SampleError(
            ErrorCode.INVALID_SAMPLE, f"a sample must be an object, not {type(sample).__name__}"
        )
    if "messages" in sample:
        extra = set(sample) - {"messages", "id", "metadata"}
        if extra:
            raise SampleError(ErrorCode.INVALID_SAMPLE, f"unexpected keys beside 'messages': {sorted(extra)}")
        return _check_messages(sample["messages"], "messages", need_answer=True)
    if "prompt" in sample and "response" in sample:
        extra = set(sample) - {"prompt", "response", "images", "id", "metadata"}
        if extra:
            raise SampleError(ErrorCode.INVALID_SAMPLE, f"unexpected keys: {sorted(extra)}")
        response = sample["response"]
        if not isinstance(response, str):
            raise SampleError(
                ErrorCode.INVALID_SAMPLE, f"'response' must be a string, not {type(response).__name__}"
            )
        images = sample.get("images") or []
        if not isinstance(images, list):
            images = [images]
        prompt = sample["prompt"]
        if isinstance(prompt, str):
            messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
        else:
            messages = _check_messages(prompt, "prompt", need_answer=False)
            messages = copy.copy(messages)
        if images:
            # Images go before the text of the last user turn, as in the model card.
            idx = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
            if idx is None:
                raise SampleError(ErrorCode.INVALID_SAMPLE, "'images' given but the prompt has no user turn")
            content = messages[idx]["content"]
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
            messages[idx] = {
                "role": "user",
                "content": [{"type": "image", "image": ref} for ref in images] + list(content),
            }
        messages.append({"role": "assistant", "content": response})
        return _check_messages(messages, "prompt", need_answer=True)
    raise SampleError(
        ErrorCode.INVALID_SAMPLE,
        "a sample needs 'messages' (ending with the assistant answer) or 'prompt' + 'response' "
        f"(got keys {sorted(sample)[:10]})",
    )


def processor_bounds(image_processor: Any) -> tuple[int | None, int | None]:
    """(min_pixels, max_pixels) an image processor's second resize uses (its ``size`` edges)."""
    size = getattr(image_processor, "size", None)
    get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
    return get("shortest_edge"), get("longest_edge")


def _opened(image: Any) -> Any:
    """An image item's opened image: a PIL image, or the deferred ``open_image`` call of a reference
    whose prepared pixels were cached when its item was built (run it when they are gone)."""
    return image().image if callable(image) else image


class Preprocessor:
    """Turns samples into :class:`PreparedSample` for one loaded model.

    ``processor`` is the model's HF processor; ``rope_index`` is the model's ``get_rope_index``
    (a pure function of token ids and grids), or ``None`` for text-only models; ``pixel_dtype`` the
    dtype the device computes in (pixel tensors are kept in it: the vision tower casts to it first).
    Images are prepared once per content (:attr:`images`, :mod:`rlreward.engine.image_cache`).
    """

    def __init__(
        self,
        processor: Any,
        config: ScorerConfig,
        rope_index: Any = None,
        pixel_dtype: torch.dtype = torch.float32,
    ) -> None:
        self.processor = processor
        self.config = config
        self.rope_index = rope_index
        #: Family hooks (:mod:`rlreward.engine.models`): qwen-vl-utils' ``image_patch_size``, extra
        #: keyword arguments of the processor call, and whether videos are accepted at all.
        self.image_patch_size = 14
        self.processor_kwargs: dict[str, Any] = {}
        self.accepts_video = True
        self.pixel_dtype = pixel_dtype
        self.images = ImageCache(config.batching.image_cache_bytes)
        # The processor's own placeholder expansion, used when the images come from the cache.
        self._expands = all(
            callable(getattr(processor, a, None))
            for a in ("replace_image_token", "get_text_with_replacements")
        ) and callable(getattr(processor, "image_processor", None))
        tok = processor.tokenizer if hasattr(processor, "tokenizer") else processor
        self.tokenizer = tok
        mm_ids = [getattr(processor, f"{m}_token_ids", None) or [] for m in ("image", "video", "audio")]
        self.prefixes = PrefixTokens(tok, {i for ids in mm_ids for i in ids if i is not None})
        self.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        ip = getattr(processor, "image_processor", None)
        if ip is not None and (config.min_pixels is not None or config.max_pixels is not None):
            # The named deviation: the second resize's bounds, set on this instance only (a new
            # SizeDict; the class-level default dict is never touched), exactly as
            # AutoProcessor.from_pretrained(model, min_pixels=..., max_pixels=...) would set them.
            from transformers.image_utils import SizeDict

            lo, hi = processor_bounds(ip)
            lo = config.min_pixels if config.min_pixels is not None else lo
            hi = config.max_pixels if config.max_pixels is not None else hi
            if lo is None or hi is None or lo > hi:
                raise ValueError(
                    f"min_pixels/max_pixels {config.min_pixels}/{config.max_pixels} with the checkpoint's "
                    f"processor bounds give an empty range ({lo} > {hi})"
                )
            ip.size = SizeDict(shortest_edge=lo, longest_edge=hi)

    def image_tokens(self, item: dict, width: int, height: int) -> int:
        """The tokens a ``width`` x ``height`` image item becomes (its visual tokens, and the
        ``<|vision_start|>``/``<|vision_end|>`` around them), from its size alone: the
        recipe's two resizes computed, not performed (qwen-vl-utils' ``smart_resize`` with the item's
        keys or its defaults, as ``fetch_image`` does, then the processor's with its bounds), so the
        token limit can be checked before the image is decoded. 0 when unknown (no image processor,
        or keys the resize refuses: those fail later with their own code)."""
        from qwen_vl_utils import vision_process as vp

        ip = getattr(self.processor, "image_processor", None)
        patch, merge = getattr(ip, "patch_size", None), getattr(ip, "merge_size", None)
        lo2, hi2 = processor_bounds(ip) if ip is not None else (None, None)
        if not (isinstance(patch, int) and isinstance(merge, int) and lo2 and hi2):
            return 0
        try:
            h1, w1, _ = first_resize(item, width, height, self.image_patch_size)
            h2, w2 = vp.smart_resize(h1, w1, factor=patch * merge, min_pixels=lo2, max_pixels=hi2)
        except Exception:
            return 0
        return (h2 // (patch * merge)) * (w2 // (patch * merge)) + 2

    def _vision_items(self, messages: list[dict], defer: bool = False) -> tuple[list[dict], list[str]]:
        """Decode every image/video ref in place (on a copy) and attach the resize bounds; with
        ``defer`` images are only opened (header checked and charged) and decoded when prepared."""
        limits = self.config.limits
        digests: list[str] = []
        n_images = 0
        # Every rendered sample has at least <|im_start|>/<|im_end|> around a user and an assistant turn.
        budget = PixelBudget.for_sample(limits, count_tokens=True, reserved_tokens=4)
        out = []
        for msg in messages:
            content = msg["content"]
            if isinstance(content, str):
                out.append(msg)
                continue
            new_items = []
            for item in content:
                if item["type"] == "image":
                    n_images += 1
                    if n_images > limits.max_images:
                        raise SampleError(
                            ErrorCode.TOO_MANY_IMAGES,
                            f"more than {limits.max_images} images (limits.max_images)",
                        )
                    new_item, digest = self._image_item(item, budget)
                    if not defer:
                        new_item["image"] = decode_image(_opened(new_item["image"]))
                    digests.append(digest)
                    new_items.append(new_item)
                elif item["type"] == "video":
                    if not self.accepts_video:
                        raise SampleError(
                            ErrorCode.BAD_CONTENT,
                            "this model family's videos are not supported by rlreward (see docs/models.md); "
                            "send frames as images",
                        )
                    new_items.append(self._video_item(item, budget))
                else:
                    new_items.append(item)
            out.append({"role": msg["role"], "content": new_items})
        return out, digests

    def _image_item(self, item: dict, budget: PixelBudget) -> tuple[dict, str]:
        """An image item with its image opened (header read and charged, pixels decoded later only
        if not already prepared), and its identity: content digest + per-item resize keys.

        An inline reference (data URI, base64) already opened here is not decoded from base64 again
        while its prepared pixels are cached: its header facts are remembered by a hash of the
        reference itself, and the image is charged and checked from them."""
        cfg, limits = self.config, self.config.limits
        ref = item["image"]
        keys = {k: item[k] for k in IMAGE_ITEM_KEYS if k in item}
        # Vision reuse keys on the pixels the model sees: the same file resized under other
        # per-item keys is another image.
        suffix = f"|{sorted(keys.items())}" if keys else ""
        rkey = self.images.reference_key(ref)
        seen = self.images.header(rkey) if rkey is not None else None
        if seen is not None and seen.digest + suffix in self.images:
            if budget is not None:
                budget.charge(
                    seen.width, seen.height, limits, self.image_tokens(item, seen.width, seen.height)
                )
            check_item_resize(item, seen.width, seen.height, limits, self.image_patch_size)
            opener = functools.partial(open_image, ref, cfg.media, limits)  # if evicted meanwhile
            return {**item, "image": opener}, seen.digest + suffix
        loaded = open_image(ref, cfg.media, limits, budget, lambda w, h: self.image_tokens(item, w, h))
        check_item_resize(item, loaded.image.width, loaded.image.height, limits, self.image_patch_size)
        if rkey is not None:
            self.images.remember(rkey, ImageHeader(loaded.digest, loaded.image.width, loaded.image.height))
        # The item's own resize keys pass through to qwen-vl-utils; none are added.
        return {**item, "image": loaded.image}, loaded.digest + suffix

    def _video_item(self, item: dict, budget: PixelBudget | None = None) -> dict:
        cfg, limits = self.config, self.config.limits
        ref = item["video"]
        extra = {k: v for k, v in item.items() if k not in ("type", "video")}
        if cfg.video_max_pixels is not None and "max_pixels" not in extra:
            extra["max_pixels"] = cfg.video_max_pixels  # the named deviation
        check_item_resize(extra, None, None, limits, self.image_patch_size)
        if isinstance(ref, list):
            if len(ref) > limits.max_video_frames:
                raise SampleError(
                    ErrorCode.TOO_MANY_IMAGES,
                    f"video has {len(ref)} frames, over {limits.max_video_frames} (limits.max_video_frames)",
                )
            frames = [load_image(r, cfg.media, limits, budget).image for r in ref]
            sizes = {f.size for f in frames}
            if len(sizes) > 1:
                raise SampleError(ErrorCode.VIDEO_ERROR, f"video frames differ in size: {sorted(sizes)}")
            return {"type": "video", "video": frames, **extra}
        if isinstance(ref, str):
            path = check_path(ref, cfg.media)
            # Metadata only (frame count, rate, size): limits are checked before a frame is decoded.
            check_video_file(path, extra, limits)
            return {"type": "video", "video": str(path), **extra}
        raise SampleError(ErrorCode.BAD_CONTENT, "video must be a list of frames or a video-file path")

    def prepare(self, sample: Any) -> PreparedSample:
        """Validate and preprocess one sample. Raises :class:`SampleError`."""

        if isinstance(sample, dict) and "rendered_text" in sample:
            return self._prepare_rendered(sample)
        messages = normalize_messages(sample)
        limits = self.config.limits
        texts = [m["content"] for m in messages if isinstance(m["content"], str)]
        texts += [i.get("text", "") for m in messages if isinstance(m["content"], list) for i in m["content"]]
        check_text(texts, limits)
        check_no_vision_markers(self.processor, messages, texts)
        messages, digests = self._vision_items(messages, defer=True)
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        kinds = {i["type"] for m in messages if isinstance(m["content"], list) for i in m["content"]}
        readers: list[str] = []
        # Images from the cache when the processor call is the plain one (no family extra kwargs).
        if "image" in kinds and "video" not in kinds and self._expands and not self.processor_kwargs:
            inputs = self._with_prepared_images(messages, text, digests)
        elif kinds - {"text"}:
            inputs, readers = self._with_media(messages, text)
        else:
            inputs = self.processor(text=[text], padding=False, return_tensors="pt")
        input_ids = inputs["input_ids"][0]
        if input_ids.shape[0] > limits.max_tokens:
            raise SampleError(
                ErrorCode.TOO_MANY_TOKENS,
                f"sample is {input_ids.shape[0]} tokens, over the limit of {limits.max_tokens} (limits.max_tokens); "
                "shorten it or lower max_pixels",
            )
        prepared = PreparedSample(
            input_ids=input_ids,
            position_ids=torch.empty(0),
            pixel_values=inputs.get("pixel_values"),
            image_grid_thw=inputs.get("image_grid_thw"),
            pixel_values_videos=inputs.get("pixel_values_videos"),
            video_grid_thw=inputs.get("video_grid_thw"),
            second_per_grid_ts=inputs.get("second_per_grid_ts"),
            image_digests=digests,
            video_readers=readers,
        )
        pos = inputs.get("position_ids")  # the prepared-image path positions its samples itself
        prepared.position_ids = (
            self._positions(prepared, inputs.get("mm_token_type_ids")) if pos is None else pos
        )
        return prepared

    def _with_media(self, messages: list[dict], text: str) -> tuple[Any, list[str]]:
        """The processor's outputs for a conversation with a video (and maybe images), and which
        reader decoded each video: the card's two calls on the whole conversation."""
        from qwen_vl_utils import process_vision_info

        readers: list[str] = []
        for m in messages:
            for i in m["content"] if isinstance(m["content"], list) else ():
                if i["type"] == "image":
                    i["image"] = decode_image(i["image"])
        has_file = any(
            isinstance(m["content"], list)
            and any(i["type"] == "video" and isinstance(i["video"], str) for i in m["content"])
            for m in messages
        )
        reader = ensure_video_reader() if has_file else None
        try:
            # First resize, literally the card's call (metadata only adds which reader ran).
            image_inputs, video_pairs, _ = process_vision_info(
                messages,
                return_video_kwargs=True,
                return_video_metadata=True,
                image_patch_size=self.image_patch_size,
            )
        except SampleError:
            raise
        except Exception as exc:
            has_video = any(
                isinstance(m["content"], list) and any(i["type"] == "video" for i in m["content"])
                for m in messages
            )
            raise SampleError(
                ErrorCode.VIDEO_ERROR if has_video else ErrorCode.IMAGE_DECODE,
                f"qwen-vl-utils could not process the media: {type(exc).__name__}: {exc}",
            ) from exc
        video_inputs = [v for v, _ in video_pairs] if video_pairs else None
        for _, meta in video_pairs or []:
            ran = meta.get("video_backend", "frames")
            if ran != "frames" and ran != reader:
                # qwen-vl-utils falls back to torchvision when the reader fails: refuse, do not
                # score frames sampled by another decoder.
                raise SampleError(
                    ErrorCode.VIDEO_ERROR,
                    f"the video was read by {ran}, not {reader} (the {reader} read failed)",
                )
            readers.append(ran)
        try:
            # Second resize: the checkpoint's processor, called as the card calls it.
            inputs = self.processor(
                text=[text],
                images=image_inputs,
                videos=video_inputs,
                padding=False,
                return_tensors="pt",
                **self.processor_kwargs,
            )
        except Exception as exc:
            raise SampleError(ErrorCode.IMAGE_DECODE, f"the processor rejected the images: {exc}") from exc
        return inputs, readers

    def _with_prepared_images(self, messages: list[dict], text: str, digests: list[str]) -> dict[str, Any]:
        """The processor's outputs (and positions) for a conversation whose images (no video) come
        from :attr:`images`, each prepared once (:meth:`_prepare_image`); placeholders expanded by the
        processor's ``replace_image_token``/``get_text_with_replacements``, then tokenised as the
        card's call does, the part before the scored turn once per prefix (:attr:`prefixes`)."""
        contents = [m["content"] for m in messages if isinstance(m["content"], list)]
        items = [i for content in contents for i in content if i["type"] == "image"]
        parts = [self.images.get(d, lambda it=it: self._prepare_image(it)) for d, it in zip(digests, items)]
        if len(parts) == 1:
            image = parts[0]
        else:  # the sample's images concatenated once, shared by the samples showing the same ones
            image = self.images.get(
                tuple(digests),
                lambda: PreparedImage(
                    torch.cat([p.pixel_values for p in parts]), torch.cat([p.image_grid_thw for p in parts])
                ),
            )
        grids = {"image_grid_thw": image.image_grid_thw}
        replacements = [self.processor.replace_image_token(grids, i) for i in range(len(items))]
        expanded, _ = self.processor.get_text_with_replacements([text], replacements, [], [])

        def full() -> tuple[torch.Tensor, torch.Tensor]:  # the processor's text step, without its overhead
            ids = token_ids(self.tokenizer, expanded[0])
            mm = torch.tensor(self.processor.create_mm_token_type_ids([ids.tolist()]))
            return ids, self._positions(
                PreparedSample(ids, torch.empty(0), image_grid_thw=image.image_grid_thw), mm
            )

        ids, pos = self.prefixes.tokens(expanded[0], full)
        pixels = {"pixel_values": image.pixel_values, "image_grid_thw": image.image_grid_thw}
        return {"input_ids": ids.unsqueeze(0), "position_ids": pos, **pixels}

    def _prepare_image(self, item: dict) -> PreparedImage:
        """Decode one image item, resize it as the card's recipe does (qwen-vl-utils'
        ``process_vision_info`` with the item's keys, then the checkpoint's image processor) and
        patchify it; pixels in :attr:`pixel_dtype`."""
        from qwen_vl_utils import process_vision_info

        item = {**item, "image": decode_image(_opened(item["image"]))}
        try:
            images, _ = process_vision_info(
                [{"role": "user", "content": [item]}], image_patch_size=self.image_patch_size
            )
        except Exception as exc:
            raise SampleError(
                ErrorCode.IMAGE_DECODE,
                f"qwen-vl-utils could not process the media: {type(exc).__name__}: {exc}",
            ) from exc
        try:
            out = self.processor.image_processor(images=images, return_tensors="pt")
        except Exception as exc:
            raise SampleError(ErrorCode.IMAGE_DECODE, f"the processor rejected the images: {exc}") from exc
        return PreparedImage(out["pixel_values"].to(self.pixel_dtype), out["image_grid_thw"])

    def _prepare_rendered(self, sample: dict) -> PreparedSample:
        """``{"rendered_text": str, "add_special_tokens": bool = True}``: text already rendered with
        the chat template (what vLLM's ``/classify`` ``input`` carries), tokenised and scored as it is.

        Scored like a conversation whose rendering is this text: the same token ids give the same
        score. It carries no pixels, so a vision placeholder in it (``<|image_pad|>``) is refused
        rather than scored as a text token.
        """
        extra = set(sample) - {"rendered_text", "add_special_tokens", "id", "metadata"}
        if extra:
            raise SampleError(
                ErrorCode.INVALID_SAMPLE, f"unexpected keys beside 'rendered_text': {sorted(extra)}"
            )
        text, special = sample["rendered_text"], sample.get("add_special_tokens", True)
        if not isinstance(text, str) or not text:
            raise SampleError(ErrorCode.INVALID_SAMPLE, "'rendered_text' must be a non-empty string")
        if not isinstance(special, bool):
            raise SampleError(ErrorCode.INVALID_SAMPLE, "'add_special_tokens' must be true or false")
        limits = self.config.limits
        check_text([text], limits)
        token = vision_placeholder_in(self.processor, [text])
        if token is not None:
            raise SampleError(
                ErrorCode.BAD_CONTENT,
                f"the rendered text contains the vision placeholder {token!r} but carries no pixels; send the "
                "conversation as messages with image_url / video_url parts to score the images",
            )
        input_ids = self.tokenizer(text, add_special_tokens=special, return_tensors="pt")["input_ids"][0]
        if input_ids.shape[0] > limits.max_tokens:
            raise SampleError(
                ErrorCode.TOO_MANY_TOKENS,
                f"sample is {input_ids.shape[0]} tokens, over the limit of {limits.max_tokens} (limits.max_tokens)",
            )
        prepared = PreparedSample(input_ids=input_ids, position_ids=torch.empty(0))
        prepared.position_ids = self._positions(prepared, None)
        return prepared

    def _positions(self, p: PreparedSample, mm_token_type_ids: torch.Tensor | None) -> torch.Tensor:
        n = p.num_tokens
        if self.rope_index is None or (p.image_grid_thw is None and p.video_grid_thw is None):
            return torch.arange(n).view(1, -1).expand(3, -1).contiguous()
        with torch.no_grad():
            pos, _ = self.rope_index(
                p.input_ids.unsqueeze(0),
                mm_token_type_ids=mm_token_type_ids,
                image_grid_thw=p.image_grid_thw,
                video_grid_thw=p.video_grid_thw,
                second_per_grid_ts=p.second_per_grid_ts,
            )
        return pos[:, 0, :].contiguous()
