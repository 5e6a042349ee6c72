"""What ``rlreward eval`` scores: a benchmark record becomes a :class:`Pair` (two answers) or a
:class:`Group` (K answers) of scorer samples.

Pure Python (no torch at import). Each item knows its samples (:meth:`Pair.samples`: the prompt,
images and video with one answer each; a video turns the sample into the messages form) and a
content fingerprint for ``--resume``. An ``error`` set on an item means the record itself was
malformed: it is not scored and counts as an errored item (wrong) in every headline. The helpers
below are what the per-benchmark loaders share: image lists, video folders, errored items.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from rlreward.schema import ErrorCode


class EvalError(Exception):
    """The dataset or the options cannot be evaluated; the message says what to do."""


def _sample(prompt: str | list[dict], images: list[Any], video: list[Any] | str | None, answer: str) -> dict:
    """One scorer sample. Without a video: ``{"prompt", "response", "images"}``. With one, the
    messages form (the only one that carries a video): images, then the video, then the prompt text
    in the (last) user turn, as the model card orders image and text."""
    if video is None:
        return {"prompt": prompt, "response": answer, "images": list(images)}
    media: list[dict] = [{"type": "image", "image": ref} for ref in images]
    media.append({"type": "video", "video": list(video) if isinstance(video, list) else video})
    if isinstance(prompt, str):
        turns: list[dict] = [{"role": "user", "content": [*media, {"type": "text", "text": prompt}]}]
    else:
        turns = [dict(m) for m in prompt]
        last_user = max((i for i, m in enumerate(turns) if m.get("role") == "user"), default=None)
        if last_user is None:
            turns.append({"role": "user", "content": media})
        else:
            content = turns[last_user].get("content")
            text = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
            turns[last_user] = {**turns[last_user], "content": [*media, *text]}
    return {"messages": [*turns, {"role": "assistant", "content": answer}]}


@dataclass
class Pair:
    """One preference pair: the same prompt (images, video) with a better and a worse answer.

    ``images`` hold any image reference the scorer takes (path, base64, data URI, bytes, HF
    ``{"bytes", "path"}`` dict, PIL image); ``video`` is a list of frame references or one video-file
    reference. ``source`` names the sub-dataset where a benchmark has them (VL-RewardBench:
    ``rlaif-v``...; MM-RLHF: the image/video path its categories come from). ``group`` is the question
    a pair belongs to where a metric needs it (MM-RLHF acc+); ``label`` is the benchmark's own name
    for the chosen answer where its scorer needs it (Multimodal RewardBench: ``"A"`` for Output1,
    ``"B"`` for Output2). ``error`` is set when the record itself is malformed: such a pair is not
    scored and counts as an errored pair.
    """

    id: str
    category: str
    prompt: str | list[dict]
    images: list[Any]
    chosen: str
    rejected: str
    source: str | None = None
    error: tuple[str, str] | None = None  # (ErrorCode value, message)
    video: list[Any] | str | None = None
    group: str | None = None
    label: str | None = None

    @property
    def responses(self) -> list[str]:
        return [self.chosen, self.rejected]

    def samples(self) -> tuple[dict, ...]:
        """(chosen sample, rejected sample)."""
        return tuple(_sample(self.prompt, self.images, self.video, a) for a in (self.chosen, self.rejected))

    def fingerprint(self) -> str:
        """Identifies the item's content (for ``--resume``): id, prompt, answers, images, video."""
        return _fingerprint(self.id, self.prompt, self.responses, [self.images, self.video])


@dataclass
class Group:
    """K ≥ 2 answers to one prompt with the best one(s) marked (best-of-K).

    ``ranks[i]`` is answer ``i``'s rank, 0 = best (several answers may share a rank); ``best`` is the
    set of answers with the lowest rank. ``error`` as in :class:`Pair`.
    """

    id: str
    category: str
    prompt: str | list[dict]
    images: list[Any]
    responses: list[str]
    ranks: list[int]
    video: list[Any] | str | None = None
    error: tuple[str, str] | None = None
    source: str | None = None

    @property
    def best(self) -> list[int]:
        if not self.ranks:
            return []
        top = min(self.ranks)
        return [i for i, r in enumerate(self.ranks) if r == top]

    def samples(self) -> tuple[dict, ...]:
        """One sample per answer, in the record's order."""
        return tuple(_sample(self.prompt, self.images, self.video, a) for a in self.responses)

    def fingerprint(self) -> str:
        """As :meth:`Pair.fingerprint`."""
        return _fingerprint(self.id, self.prompt, self.responses, [self.images, self.video])


Item = Pair | Group


def _fingerprint(rid: str, prompt: Any, responses: Sequence[str], media: Any = None) -> str:
    """A short hash of what is scored: id, prompt, answers and the image/video references (raw bytes
    by their own hash; an in-memory image by its id, so it is never taken for another one)."""
    import hashlib

    def ref(v: Any) -> str:
        if isinstance(v, (bytes, bytearray)):
            return "sha256:" + hashlib.sha256(v).hexdigest()
        return f"{type(v).__name__}@{id(v)}"

    text = json.dumps([rid, prompt, list(responses), media], sort_keys=True, default=ref, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def vl_rewardbench_key(pair: Pair) -> str:
    """VL-RewardBench ``cal.py``'s item key, ``id + query + "\\t".join(sorted(response))``: every
    outcome carries it, so the official count can drop repeated items."""
    return pair.id + str(pair.prompt) + "\t".join(sorted(pair.responses))


# -- what the loaders share ------------------------------------------------------------------------
class Record(BaseModel):
    """Base of the record schemas (pydantic: a record that does not fit becomes an errored item)."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)


def why(exc: ValidationError) -> str:
    """The first three problems of a record, one line."""
    errs = exc.errors()
    parts = [f"{'.'.join(str(x) for x in e['loc']) or 'record'}: {e['msg']}" for e in errs[:3]]
    return "; ".join(parts)


def images_of(value: Any) -> list[Any]:
    """A record's image field as a list of references (None → [], one → [one], numpy → list)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [v for v in value if v is not None]
    if hasattr(value, "tolist") and not isinstance(value, (bytes, str)):  # numpy arrays from parquet
        return [v for v in value.tolist() if v is not None]
    return [value]


#: Frames taken from a folder of frames: MM-RLHF's ``eval_mm_reward_bench.py`` samples 32, evenly.
VIDEO_FOLDER_FRAMES = 32
_FRAME_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def video_ref(value: Any, base: Path | None, frames: int = VIDEO_FOLDER_FRAMES) -> list[Any] | str | None:
    """A record's video as the scorer takes it: a list of frames stays a list; a folder of frames
    becomes ``frames`` evenly spaced frame paths (sorted by name, ``np.linspace(0, n-1, frames)``
    rounded down, as MM-RLHF's evaluation samples them; all of them when there are fewer); anything
    else is a video-file reference. Relative folders are looked up under ``base`` (the dataset's
    folder); the frame paths keep the record's form, so the scorer's path rules still apply."""
    if value is None or (isinstance(value, str) and not value):
        return None
    if isinstance(value, (list, tuple)) or (hasattr(value, "tolist") and not isinstance(value, (bytes, str))):
        return images_of(value)
    if not isinstance(value, str):
        return value
    folder = Path(value).expanduser()
    if not folder.is_absolute() and base is not None:
        folder = base / folder
    if not folder.is_dir():
        return value
    names = sorted(
        n for n in os.listdir(folder) if n.lower().endswith(_FRAME_EXTS) and (folder / n).is_file()
    )
    if not names:
        return value  # the scorer reports it as an unreadable video
    if len(names) > frames:
        last = len(names) - 1
        names = [names[(k * last) // (frames - 1)] for k in range(frames)] if frames > 1 else names[:1]
    return [str(Path(value) / n) for n in names]


def bad_pair(rid: str, category: str, why: str) -> Pair:
    """An errored pair for a malformed record (not scored, counted wrong)."""
    return Pair(rid, category, "", [], "", "", error=(ErrorCode.INVALID_SAMPLE.value, why))


def bad_group(rid: str, category: str, why: str) -> Group:
    """An errored group for a malformed record (not scored, counted wrong)."""
    return Group(rid, category, "", [], [], [], error=(ErrorCode.INVALID_SAMPLE.value, why))
