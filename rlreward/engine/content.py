"""OpenAI chat content parts → the model card's content items.

Clients written for OpenAI-compatible servers (vLLM's ``/classify``, ``/pooling``, ``/score``,
chat completions) send message content as *parts*. :func:`from_openai_part` turns one part into
the item form :mod:`rlreward.engine.preprocess` understands (``{"type": "text"|"image"|"video",
...}``); parts already in that form pass through unchanged, so every sample form accepts both.
``text`` / ``input_text`` / ``output_text`` become text; ``image_url`` (nested or bare, with or
without ``type``), ``input_image`` and ``image_pil`` become an image; ``video_url`` (a local file or
a list of frames) and ``video`` frame lists become a video.

Contract: ``REF`` keeps every rule of :mod:`rlreward.engine.media`; a video given as one reference
must be a local file (a ``data:``/``http(s)`` video is refused with what to send instead).
Unsupported parts (``input_audio``, ``audio_url``, ``*_embeds``, ``file``, ``refusal``, ...) raise
:class:`SampleError` (``bad_content``) for that sample only, naming the part and what the model
accepts. Pure functions; no I/O, no torch. The table of parts: docs/serving.md ("Samples").

>>> from_openai_part({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}, "m")
{'type': 'image', 'image': 'data:image/png;base64,AAAA'}
>>> from_openai_part({"type": "input_text", "text": "hi"}, "m")
{'type': 'text', 'text': 'hi'}
"""

from __future__ import annotations

from typing import Any

from rlreward.schema import ErrorCode, SampleError

#: OpenAI / vLLM part types this model cannot read, and why (shown in the error).
UNSUPPORTED_PARTS: dict[str, str] = {
    "input_audio": "audio",
    "audio_url": "audio",
    "image_embeds": "precomputed embeddings",
    "audio_embeds": "precomputed embeddings",
    "video_embeds": "precomputed embeddings",
    "prompt_embeds": "precomputed embeddings",
    "file": "files",
    "input_file": "files",
    "refusal": "refusals",
    "thinking": "thinking blocks",
    "tool_reference": "tool references",
}

#: Keys of OpenAI parts that are not the card's: dropped (``detail``/``uuid`` only tune caching upstream).
_OPENAI_KEYS = frozenset({"type", "image_url", "image_pil", "video_url", "video", "uuid", "detail"})

_SUPPORTED = "text, input_text, image_url, input_image, video_url (or the card's image / video items)"


def _url(value: Any, where: str, kind: str) -> Any:
    """``{"url": X}`` or a bare ``X`` → ``X`` (not checked further here: the media layer does)."""
    if isinstance(value, dict):
        if "url" not in value:
            raise SampleError(
                ErrorCode.BAD_CONTENT, f'{where}: {kind} object needs a "url" (got keys {sorted(value)})'
            )
        value = value["url"]
    if value is None or (isinstance(value, str) and not value):
        raise SampleError(ErrorCode.BAD_CONTENT, f"{where}: {kind} has no url")
    return value


def _frame(ref: Any, where: str) -> Any:
    """One video frame given as an image part, ``{"url": REF}`` or a plain REF → the plain REF."""
    if isinstance(ref, dict):
        if ref.get("type") in ("image_url", "input_image") or ("image_url" in ref and "type" not in ref):
            return _url(ref["image_url"], where, "image_url")
        if ref.get("type") == "image" and "image" in ref:
            return ref["image"]
        if set(ref) == {"url"}:
            return _url(ref, where, "frame")
    return ref


def _video(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, list):
        if not value:
            raise SampleError(ErrorCode.BAD_CONTENT, f"{where}: a video needs at least one frame")
        return {"type": "video", "video": [_frame(f, f"{where}.frames[{i}]") for i, f in enumerate(value)]}
    if isinstance(value, str) and value.startswith(("data:", "http://", "https://")):
        raise SampleError(
            ErrorCode.BAD_CONTENT,
            f"{where}: a video is read from a local file (under the image roots) or from a list of frames, "
            f"not from {value.split(':', 1)[0]}: URLs; send the frames as "
            '{"type": "video_url", "video_url": {"url": [frame, ...]}} with data: URIs',
        )
    return {"type": "video", "video": value}


def from_openai_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    """One content part (a dict) → the card's item; card items and unknown types pass through.

    ``where`` names the part in error messages (``messages[0].content[2]``). Raises
    :class:`SampleError` (``bad_content``) for a malformed or unsupported part.
    """
    kind = part.get("type")
    if kind is None and "image_url" in part:  # OpenAI accepts {"image_url": ...} without a type
        kind = "image_url"
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": part.get("text")}
    rest = {k: v for k, v in part.items() if k not in _OPENAI_KEYS}  # per-item resize keys, fps, ...
    if kind in ("image_url", "input_image"):
        if "image_url" not in part:
            raise SampleError(ErrorCode.BAD_CONTENT, f'{where}: {kind} part has no "image_url"')
        return {**rest, "type": "image", "image": _url(part["image_url"], where, "image_url")}
    if kind == "image_pil":
        return {**rest, "type": "image", "image": part.get("image_pil")}
    if kind == "video_url":
        if "video_url" not in part:
            raise SampleError(ErrorCode.BAD_CONTENT, f'{where}: video_url part has no "video_url"')
        return {**rest, **_video(_url(part["video_url"], where, "video_url"), where)}
    if kind == "video" and isinstance(part.get("video"), list):
        return {**rest, **_video(part["video"], where)}
    if isinstance(kind, str) and kind in UNSUPPORTED_PARTS:
        raise SampleError(
            ErrorCode.BAD_CONTENT,
            f"{where}: content part type {kind!r} is not supported: this reward model reads text, images "
            f"and videos, not {UNSUPPORTED_PARTS[kind]} (supported parts: {_SUPPORTED})",
        )
    return part


def vision_placeholder_in(processor: Any, texts: list[Any]) -> str | None:
    """The first of the processor's vision placeholder tokens (``image_token``, ``video_token``)
    that one of ``texts`` holds, or None."""
    for attr in ("image_token", "video_token"):
        marker = getattr(processor, attr, None)
        if isinstance(marker, str) and marker and any(isinstance(t, str) and marker in t for t in texts):
            return marker
    return None


def check_no_vision_markers(processor: Any, messages: list[dict], texts: list[str]) -> None:
    """Text beside images or videos may not hold the processor's vision placeholder tokens: the
    processor would expand them as media it was not given (the card's recipe fails there too)."""
    has_media = any(
        isinstance(m["content"], list) and any(i.get("type") != "text" for i in m["content"])
        for m in messages
    )
    marker = vision_placeholder_in(processor, texts) if has_media else None
    if marker is not None:
        raise SampleError(
            ErrorCode.BAD_CONTENT,
            f"a text holds the model's vision placeholder {marker!r} beside images/videos; "
            "send media as image/video items, never as placeholder tokens in text",
        )
