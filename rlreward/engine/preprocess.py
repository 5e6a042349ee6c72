"""Sample → model inputs: validate, decode images, resize, render the chat template, tokenise.

:func:`normalize_messages` turns either sample form into one conversation (model-card format) and
checks its structure. :class:`Preprocessor` then decodes and checks every image
(:mod:`rlreward.engine.media`), resizes exactly as the reference recipe does
(``qwen_vl_utils.process_vision_info``: ``smart_resize`` to multiples of 28 within min/max pixels),
renders with the model's chat template (``add_generation_prompt=False``, so the text ends
``<|im_end|>\\n``), runs the model's processor, and computes the sample's 3D (M-RoPE) position ids.

It runs on CPU, holds no model weights, and is safe to call from worker threads: this is the part a
serving replica keeps off its event loop. Failures raise :class:`SampleError` for that sample only.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch

from rlreward.engine.config import ScorerConfig
from rlreward.engine.content import from_openai_part
from rlreward.engine.media import check_path, load_image, load_video_frames
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

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def has_video(self) -> bool:
        return self.pixel_values_videos is not None


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
            items.append({"type": "image", "image": ref})
        elif kind == "video":
            ref = item.get("video")
            if ref is None or (isinstance(ref, list) and not ref):
                raise SampleError(
                    ErrorCode.BAD_CONTENT, f"{w}: video item needs a frame list or a video file"
                )
            items.append({"type": "video", "video": ref, **({"fps": item["fps"]} if "fps" in item else {})})
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
        if not content.strip():
            raise SampleError(ErrorCode.MISSING_ASSISTANT_TURN, "the assistant answer is empty")
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


class Preprocessor:
    """Turns samples into :class:`PreparedSample` for one loaded model.

    ``processor`` is the model's HF processor; ``rope_index`` is the model's ``get_rope_index``
    (a pure function of token ids and grids), or ``None`` for text-only models.
    """

    def __init__(self, processor: Any, config: ScorerConfig, rope_index: Any = None) -> None:
        self.processor = processor
        self.config = config
        self.rope_index = rope_index
        tok = processor.tokenizer if hasattr(processor, "tokenizer") else processor
        self.tokenizer = tok
        self.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        ip = getattr(processor, "image_processor", None)
        if ip is not None:
            # The processor resizes again after qwen-vl-utils; give it the same bounds so that its
            # smart_resize is the identity on the already-resized images.
            ip.min_pixels, ip.max_pixels = config.min_pixels, config.max_pixels
            if hasattr(ip, "size") and isinstance(ip.size, dict):
                ip.size = {"shortest_edge": config.min_pixels, "longest_edge": config.max_pixels}

    def _vision_items(self, messages: list[dict]) -> tuple[list[dict], list[str]]:
        """Decode every image/video ref in place (on a copy) and attach the resize bounds."""
        cfg, limits = self.config, self.config.limits
        digests: list[str] = []
        n_images = 0
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
                    loaded = load_image(item["image"], cfg.media, limits)
                    digests.append(loaded.digest)
                    new_items.append(
                        {
                            "type": "image",
                            "image": loaded.image,
                            "min_pixels": cfg.min_pixels,
                            "max_pixels": cfg.max_pixels,
                        }
                    )
                elif item["type"] == "video":
                    new_items.append(self._video_item(item))
                else:
                    new_items.append(item)
            out.append({"role": msg["role"], "content": new_items})
        return out, digests

    def _video_item(self, item: dict) -> dict:
        cfg, limits = self.config, self.config.limits
        ref = item["video"]
        extra = {"fps": item["fps"]} if "fps" in item else {}
        if cfg.video_max_pixels is not None:
            extra["max_pixels"] = cfg.video_max_pixels
        if isinstance(ref, list):
            if len(ref) > limits.max_video_frames:
                raise SampleError(
                    ErrorCode.TOO_MANY_IMAGES,
                    f"video has {len(ref)} frames, over {limits.max_video_frames} (limits.max_video_frames)",
                )
            frames = [load_image(r, cfg.media, limits).image for r in ref]
            sizes = {f.size for f in frames}
            if len(sizes) > 1:
                raise SampleError(ErrorCode.VIDEO_ERROR, f"video frames differ in size: {sorted(sizes)}")
            return {"type": "video", "video": frames, **extra}
        if isinstance(ref, str):
            path = check_path(ref, cfg.media)
            fps = float(item.get("fps", 2.0))
            frames = load_video_frames(path, limits.max_video_frames, fps=fps, limits=limits)
            return {"type": "video", "video": frames, "sample_fps": fps, **extra}
        raise SampleError(ErrorCode.BAD_CONTENT, "video must be a list of frames or a video-file path")

    def prepare(self, sample: Any) -> PreparedSample:
        """Validate and preprocess one sample. Raises :class:`SampleError`."""
        from qwen_vl_utils import process_vision_info

        if isinstance(sample, dict) and "rendered_text" in sample:
            return self._prepare_rendered(sample)
        messages = normalize_messages(sample)
        limits = self.config.limits
        text_chars = sum(
            len(m["content"])
            if isinstance(m["content"], str)
            else sum(len(i.get("text", "")) for i in m["content"])
            for m in messages
        )
        # Cheap guard before tokenising megabytes: no BPE token is longer than ~64 characters.
        if text_chars > limits.max_tokens * 64:
            raise SampleError(
                ErrorCode.TOO_MANY_TOKENS,
                f"{text_chars} characters of text cannot fit in {limits.max_tokens} tokens",
            )
        messages, digests = self._vision_items(messages)
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        has_vision = any(
            isinstance(m["content"], list) and any(i["type"] != "text" for i in m["content"])
            for m in messages
        )
        if has_vision:
            try:
                image_inputs, video_inputs, video_kwargs = process_vision_info(
                    messages, return_video_kwargs=True
                )
            except SampleError:
                raise
            except Exception as exc:
                raise SampleError(ErrorCode.VIDEO_ERROR, f"cannot read the video: {exc}") from exc
            kwargs: dict[str, Any] = {}
            if video_inputs:
                # qwen-vl-utils samples frames itself; tell the processor not to resample, and pass
                # the sampling rate (one value: a per-video list is refused by transformers 5).
                fps = sorted(set(video_kwargs.get("fps") or []))
                if len(fps) > 1:
                    raise SampleError(
                        ErrorCode.VIDEO_ERROR, f"videos of one sample must share an fps, got {fps}"
                    )
                kwargs = {"do_sample_frames": False, **({"fps": fps[0]} if fps else {})}
            try:
                inputs = self.processor(
                    text=[text],
                    images=image_inputs,
                    videos=video_inputs,
                    padding=False,
                    return_tensors="pt",
                    **kwargs,
                )
            except Exception as exc:
                raise SampleError(
                    ErrorCode.IMAGE_DECODE, f"the processor rejected the images: {exc}"
                ) from exc
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
        )
        prepared.position_ids = self._positions(prepared, inputs.get("mm_token_type_ids"))
        return prepared

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
        if len(text) > limits.max_tokens * 64:  # no BPE token is longer than ~64 characters
            raise SampleError(
                ErrorCode.TOO_MANY_TOKENS,
                f"{len(text)} characters of text cannot fit in {limits.max_tokens} tokens",
            )
        for token in (
            getattr(self.processor, "image_token", None),
            getattr(self.processor, "video_token", None),
        ):
            if token and token in text:
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
