"""What crosses a process boundary: samples in, per-sample results out.

A *sample* is one (conversation, assistant answer) pair to score. It comes in two forms, both
plain JSON-able dicts (images may also be raw bytes or PIL images when the caller is in-process):

* ``{"messages": [...]}``: a full conversation in the model-card format whose **last turn is the
  assistant answer to score**. ``content`` is a string or a list of items::

      {"type": "text", "text": "..."}
      {"type": "image", "image": REF}
      {"type": "video", "video": [REF, REF, ...]}   # frames, or a single video-file REF

* ``{"prompt": str | messages, "response": str, "images": [REF, ...]}``: the prompt (a string, or a
  list of messages without the answer) and the answer; ``images`` are put before the prompt text
  in the (last) user turn, as the model card does.

``REF`` is a local path (only under the allowed roots), a base64 string, a ``data:`` URI, raw
``bytes``, a PIL image (in-process only), or an ``http(s)`` URL when its prefix is allow-listed.

Every sample gets a :class:`ScoreResult`: a ``score`` (float) or an ``error`` (:class:`ErrorInfo`
with a stable :class:`ErrorCode`). One bad sample never fails or changes its neighbours.

Errors: :class:`SampleError` is raised by preprocessing for one sample and turned into that
sample's ``ScoreResult.error``; it never escapes :meth:`rlreward.engine.scorer.Scorer.score`.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorCode(str, Enum):
    """Stable, documented codes for a sample that could not be scored."""

    INVALID_SAMPLE = "invalid_sample"
    """The sample is not one of the two forms (wrong keys, wrong types, empty)."""
    MISSING_ASSISTANT_TURN = "missing_assistant_turn"
    """``messages`` does not end with a non-empty assistant turn."""
    BAD_CONTENT = "bad_content"
    """A content item has an unknown ``type`` or a wrong value type."""
    IMAGE_DECODE = "image_decode_error"
    """The bytes are not a readable image (corrupt, truncated, not an image)."""
    IMAGE_NOT_FOUND = "image_not_found"
    """A local path that does not exist."""
    PATH_NOT_ALLOWED = "path_not_allowed"
    """A local path outside the allowed image roots (or none configured)."""
    URL_NOT_ALLOWED = "url_not_allowed"
    """A URL whose prefix is not allow-listed, a redirect that leaves the allow-list, or a scheme
    other than http(s) (``ftp://``, ``gopher://``...)."""
    INVALID_IMAGE_REF = "invalid_image_ref"
    """A string that cannot name an image: a path with a NUL byte, a path or file name longer than
    the OS allows (4096 / 255 bytes)."""
    INVALID_TEXT = "invalid_text"
    """Text that is not valid Unicode (a lone surrogate such as ``"\\ud800"``): it cannot be encoded
    to UTF-8, so no tokenizer can read it."""
    IMAGE_TOO_LARGE = "image_too_large"
    """Too many pixels (decompression-bomb guard) or too many encoded bytes."""
    ASPECT_RATIO = "aspect_ratio_too_extreme"
    """Longer side / shorter side above the limit (the Qwen2.5-VL resize cannot handle it)."""
    TOO_MANY_IMAGES = "too_many_images"
    """More images (or video frames) than allowed in one sample."""
    TOO_MANY_TOKENS = "too_many_tokens"
    """The rendered sample is longer than the token limit."""
    VIDEO_ERROR = "video_error"
    """A video could not be read or has an unusable number of frames."""
    INTERNAL = "internal_error"
    """A bug or a device failure while scoring; the message says what happened."""
    UNAVAILABLE = "unavailable"
    """Client side: the server could not be reached or kept failing after retries."""


class ErrorInfo(BaseModel):
    """Why one sample has no score."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(description="One of ErrorCode's values.")
    message: str = Field(description="What was wrong and, where possible, what to do.")


class ScoreResult(BaseModel):
    """The result for one sample: exactly one of ``score`` and ``error`` is set."""

    model_config = ConfigDict(frozen=True)

    score: float | None = Field(default=None, description="Raw reward (fp32 value-head logit); no sigmoid.")
    error: ErrorInfo | None = Field(default=None, description="Set when the sample could not be scored.")

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, code: ErrorCode | str, message: str) -> ScoreResult:
        return cls(score=None, error=ErrorInfo(code=ErrorCode(code).value, message=message))


class SampleError(Exception):
    """One sample cannot be scored; carries the :class:`ErrorCode` reported for it."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message

    def to_result(self) -> ScoreResult:
        return ScoreResult.failed(self.code, self.message)


def failed_all(n: int, exc: BaseException) -> list[ScoreResult]:
    """``n`` ``unavailable`` results for a whole call that failed (server down, retries spent)."""
    msg = f"{type(exc).__name__}: {exc}"
    return [ScoreResult.failed(ErrorCode.UNAVAILABLE, msg) for _ in range(n)]


def as_list(value: Any) -> list[Any]:
    """A column of references as a list: ``None`` → ``[]``; a list/tuple/numpy array → a list;
    anything else → ``[value]``."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy arrays from parquet
        out = value.tolist()
        return out if isinstance(out, list) else [out]
    return [value]


#: Content-item types that carry media (the card's and the OpenAI-style names).
MEDIA_TYPES = ("image", "image_url", "video", "video_url")


def media_items(messages: Any) -> Iterator[dict[str, Any]]:
    """The one walk over a conversation's media: every image or video item of the turns' list
    ``content``, in order. An item is a dict whose ``type`` is one of :data:`MEDIA_TYPES` or, without a
    ``type`` (the card allows it), that has one of those keys. The dicts themselves are yielded, so a
    caller may read them or fill them in place; anything that is not a list of turns yields nothing."""
    if not isinstance(messages, list):
        return
    for turn in messages:
        content = turn.get("content") if isinstance(turn, dict) else None
        if not isinstance(content, list):
            continue
        for item in content:
            if isinstance(item, dict) and (
                item.get("type") in MEDIA_TYPES
                or ("type" not in item and any(k in item for k in MEDIA_TYPES))
            ):
                yield item


def media_refs(item: dict[str, Any]) -> list[Any]:
    """The references of one media item: an image's one reference, a video's frames (a list) or its
    file (one reference)."""
    kind = item.get("type") or next(k for k in MEDIA_TYPES if k in item)
    ref = item.get(kind)
    return list(ref) if isinstance(ref, list) and kind.startswith("video") else [ref]


def image_data_uri(image: Any) -> str:
    """The one wire encoding of an in-process image: ``bytes`` → ``data:image/*;base64,...`` (the
    encoded file as it is), a PIL image → ``data:image/png;base64,...`` (lossless, so the server sees
    the same pixels). Raises ``TypeError`` for anything else (strings are references already)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return "data:image/*;base64," + base64.b64encode(bytes(image)).decode("ascii")
    if type(image).__module__.startswith("PIL.") and hasattr(image, "save"):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    raise TypeError(f"not an in-process image (bytes or PIL image): {type(image).__name__}")
