"""The benchmarks ``rlreward eval`` knows: each one's record schema → items, and its official metric.

Everything here is pure Python (no torch, no numpy at import): loaders turn a benchmark's own
records into :class:`Pair` (two answers) or :class:`Group` (K answers) items, and the metric
functions take the *scores* (or the verdicts derived from them) and compute what the benchmark's
own scoring code computes. :mod:`rlreward.offline.evaluation` scores the items and writes reports.

A pair's verdict is ``"chosen"`` when the chosen answer scores higher, ``"rejected"`` when lower,
``"tie"`` within the run's tie tolerance (a judge output with no parsable verdict), ``"error"`` when
either answer could not be scored. The official rule of each benchmark, and where it comes from:

* RewardBench (``rewardbench/constants.py``, ``utils.py``): :func:`rewardbench_scores`;
* VL-RewardBench (``cal.py``): :func:`vl_rewardbench_category`, :func:`vl_rewardbench_official`;
* Multimodal RewardBench (``scripts/2_get_accuracy.py``, its seeded coin for no verdict):
  :func:`mm_rewardbench_credit`;
* MM-RLHF-RewardBench (``cal_performance_mmreweard_bench.py``): :func:`mm_rlhf_scores`;
* best-of-K (no official scorer; our rule): :func:`best_of_k_correct`.

Errored items count as wrong in every headline (a broken deployment cannot score better by
failing) and are listed in the report; the one exception is the named VL-RewardBench variant that
reproduces ``cal.py``'s "no verdict → left out". The manual: docs/evaluation.md.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rlreward.schema import ErrorCode

FORMATS = ("vl-rewardbench", "mm-rewardbench", "rewardbench", "mm-rlhf-rewardbench", "best-of-k", "pairs")

Verdict = Literal["chosen", "rejected", "tie", "error"]


# -- paper numbers -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PaperNumbers:
    """What the model's authors report for one benchmark (percent), and where."""

    values: Mapping[str, float]
    source: str


#: Skywork-VL-Reward-7B's own numbers, only where its model card / tech report gives them (the card's
#: VL-RewardBench and RewardBench tables; arXiv 2505.07263 Tables 3-4). The card gives none for
#: Multimodal RewardBench or MM-RLHF-RewardBench (third-party aggregator figures are not used).
PAPER: dict[str, PaperNumbers] = {
    "vl-rewardbench": PaperNumbers(
        {"general": 66.0, "hallucination": 80.0, "reasoning": 61.0, "overall": 73.1, "macro": 69.0},
        "Skywork-VL-Reward-7B model card / arXiv 2505.07263 Table 3",
    ),
    "rewardbench": PaperNumbers(
        {"Chat": 90.0, "Chat Hard": 87.5, "Safety": 91.1, "Reasoning": 91.8, "score": 90.1},
        "Skywork-VL-Reward-7B model card / arXiv 2505.07263 Table 4 (score = mean of the 4 sections)",
    ),
}


#: The formats whose benchmark has an official scorer: compared with its exact ``>`` by default.
OFFICIAL_FORMATS = ("vl-rewardbench", "mm-rewardbench", "rewardbench", "mm-rlhf-rewardbench")


def default_tie_tolerance(fmt: str) -> float:
    """The tie tolerance ``rlreward eval`` uses unless told otherwise: 0 for a benchmark with an
    official scorer (its code compares scores with a bare ``>``, so the same scores give the same
    headline), 1e-5 for our own formats (about the fp32 noise of one answer scored in two batch
    rows, which is no preference).

    >>> default_tie_tolerance("rewardbench"), default_tie_tolerance("pairs")
    (0.0, 1e-05)
    """
    return 0.0 if fmt in OFFICIAL_FORMATS else 1e-5


class EvalError(Exception):
    """The dataset or the options cannot be evaluated; the message says what to do."""


# -- items -------------------------------------------------------------------------------------------
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


def verdict(chosen: float | None, rejected: float | None, tie_tolerance: float = 0.0) -> Verdict:
    """The verdict a pair of scores gives: ``"chosen"`` iff ``chosen - rejected > tie_tolerance``,
    ``"rejected"`` iff ``rejected - chosen > tie_tolerance``, else ``"tie"``; ``"error"`` when a score
    is missing. ``tie_tolerance=0`` is the official codes' strict ``>``.

    >>> verdict(2.0, 1.0), verdict(1.0, 1.0), verdict(1.0, None)
    ('chosen', 'tie', 'error')
    """
    if chosen is None or rejected is None:
        return "error"
    if chosen - rejected > tie_tolerance:
        return "chosen"
    if rejected - chosen > tie_tolerance:
        return "rejected"
    return "tie"


# -- categories --------------------------------------------------------------------------------------
def vl_rewardbench_category(record_id: str) -> tuple[str, str]:
    """(category, sub-dataset) of a VL-RewardBench id, as the official ``cal.py``
    (``get_dataset_from_id`` + ``group_mapping``) maps them: the prefix is the id up to its first
    ``_`` or ``-`` (case-sensitive); ``RLAIF``/``RLHF``/``hallucination`` (POVID) → hallucination,
    ``mathverse``/``mmmu`` → reasoning, ``wildvision`` and anything else (VLFeedback) → general."""
    cut = [i for i in (record_id.find("_"), record_id.find("-")) if i != -1]
    prefix = record_id[: min(cut)] if cut else record_id
    source = {
        "RLAIF": "rlaif-v",
        "RLHF": "rlhf-v",
        "mathverse": "reasoning_tasks",
        "mmmu": "reasoning_tasks",
        "wildvision": "wildvision-battle",
        "hallucination": "povid",
    }.get(prefix, "vlfeedback")
    category = {
        "rlaif-v": "hallucination",
        "rlhf-v": "hallucination",
        "povid": "hallucination",
        "reasoning_tasks": "reasoning",
    }.get(source, "general")
    return category, source


#: Category order of the official VL-RewardBench table.
VL_REWARDBENCH_CATEGORIES = ("general", "hallucination", "reasoning")


def mm_rewardbench_category(record: Mapping[str, Any]) -> str:
    """Category of a Multimodal RewardBench record as ``2_get_accuracy.py`` derives it: ``Category``
    (nested ``Meta.Category``, a pandas-flattened ``Meta.Category`` column, a JSON-string ``Meta``, or
    top level); ``safety`` splits into ``safety/bias`` (ID starting ``pairs``, case-insensitive) and
    ``safety/toxicity``; ``reasoning`` into ``reasoning/math`` (ID starting ``math``) and
    ``reasoning/coding``."""
    meta = record.get("Meta")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            meta = None
    category = meta.get("Category") if isinstance(meta, dict) else record.get("Meta.Category")
    if not category:
        category = record.get("Category") or "unknown"
    rid = str(record.get("ID", "")).lower()
    if category == "safety":
        return "safety/bias" if rid.startswith("pairs") else "safety/toxicity"
    if category == "reasoning":
        return "reasoning/math" if rid.startswith("math") else "reasoning/coding"
    return str(category)


#: MM-RLHF-RewardBench category keywords, in the official script's order (first match wins).
MM_RLHF_CATEGORIES = ("mcq", "long", "short", "safety", "video")
#: Items whose path holds none of the keywords: counted in the totals, in no category (as officially).
MM_RLHF_UNCATEGORISED = "other"


def mm_rlhf_category(path: str) -> str:
    """The first of ``mcq, long, short, safety, video`` that is a substring of the record's image (or,
    without one, video) path, as ``cal_performance_mmreweard_bench.py`` assigns it; else ``other``."""
    return next((k for k in MM_RLHF_CATEGORIES if k in path), MM_RLHF_UNCATEGORISED)


# -- record schemas (pydantic: a record that does not fit becomes an errored item) ---------------------
class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)


class RewardBenchRecord(_Record):
    """``allenai/reward-bench`` ``filtered`` split (text only)."""

    id: str | None = Field(default=None, description="Row id (an int in the hub data).")
    prompt: str = Field(description="The user turn.")
    chosen: str = Field(description="The better answer.")
    rejected: str = Field(description="The worse answer.")
    subset: str = Field(description="One of the 23 subsets (alpacaeval-easy, math-prm, hep-go...).")


class MMRLHFRecord(_Record):
    """``yifanzhang114/MM-RLHF-RewardBench`` ``mm_reward_bench.jsonl``: one line per pair; the
    pairs of one question share ``id``. ``image`` is a path; ``video`` a folder of frames (or a file)."""

    id: str = Field(description="Question id; all pairs of a question share it (acc+).")
    prompt: str
    chosen: str
    rejected: str
    image: str | None = Field(default=None, description="Image path; its folder names the category.")
    video: Any = Field(default=None, description="Frames folder, video file or a list of frames.")


class BestOfKRecord(_Record):
    """Our best-of-K schema: K answers, the best marked by ``best`` (an index or a list of indices)
    or by ``ranking`` (one rank per answer, 0 = best, as VL-RewardBench's ``human_ranking``)."""

    id: str | None = None
    prompt: str | list[dict] = Field(description="A string, or messages without the answer.")
    responses: list[str] = Field(min_length=2, description="The K answers.")
    best: int | list[int] | None = Field(default=None, description="Index (or indices) of the best.")
    ranking: list[int] | None = Field(default=None, description="Rank per answer, 0 = best.")
    images: list[Any] | None = None
    image: Any = None
    video: Any = Field(default=None, description="Frame list, frames folder or video file.")
    category: str | None = None

    @field_validator("ranking")
    @classmethod
    def _one_rank_each(cls, v: list[int] | None, info: Any) -> list[int] | None:
        responses = info.data.get("responses")
        if v is not None and responses is not None and len(v) != len(responses):
            raise ValueError(f"ranking has {len(v)} ranks for {len(responses)} responses")
        return v


def _why(exc: ValidationError) -> str:
    errs = exc.errors()
    parts = [f"{'.'.join(str(x) for x in e['loc']) or 'record'}: {e['msg']}" for e in errs[:3]]
    return "; ".join(parts)


def _images(value: Any) -> list[Any]:
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
        return _images(value)
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


def _bad_pair(rid: str, category: str, why: str) -> Pair:
    return Pair(rid, category, "", [], "", "", error=(ErrorCode.INVALID_SAMPLE.value, why))


def _bad_group(rid: str, category: str, why: str) -> Group:
    return Group(rid, category, "", [], [], [], error=(ErrorCode.INVALID_SAMPLE.value, why))


# -- loaders: one record → one item ------------------------------------------------------------------
def pair_vl_rewardbench(i: int, r: Mapping[str, Any], base: Path | None = None) -> Pair:
    """VL-RewardBench: ``id``, ``query``, ``image`` (or ``image_path``), ``response`` [2],
    ``human_ranking`` [2] (rank 0 is the better answer)."""
    rid = str(r.get("id", f"#{i}"))
    category, source = vl_rewardbench_category(rid)
    responses, ranking = r.get("response"), r.get("human_ranking")
    responses = list(responses) if responses is not None else None
    try:
        ranking = [int(x) for x in ranking] if ranking is not None else None
    except (TypeError, ValueError):
        ranking = None
    if not responses or len(responses) != 2 or not ranking or len(ranking) != 2 or ranking[0] == ranking[1]:
        return _bad_pair(
            rid,
            category,
            f"record {rid}: needs 'response' [2] and a strict 'human_ranking' [2], got {ranking!r}",
        )
    best = ranking.index(min(ranking))
    image = r.get("image") if r.get("image") is not None else r.get("image_path")
    return Pair(
        rid,
        category,
        str(r.get("query", "")),
        _images(image),
        str(responses[best]),
        str(responses[1 - best]),
        source=source,
    )


def pair_mm_rewardbench(i: int, r: Mapping[str, Any], base: Path | None = None) -> Pair:
    """Multimodal RewardBench ``all_data.json``: ``ID``, ``Text``, ``Image``, ``Output1``,
    ``Output2``, ``Better``, ``Category`` (or ``Meta.Category``). As the official judge script does,
    the label is ``B`` iff ``Better == "Output2"``, else ``A`` (Output1)."""
    rid = str(r.get("ID", f"#{i}"))
    category = mm_rewardbench_category(r)
    better = r.get("Better")
    if better not in ("Output1", "Output2") or r.get("Output1") is None or r.get("Output2") is None:
        return _bad_pair(
            rid,
            category,
            f"record {rid}: needs Output1, Output2 and Better in {{Output1, Output2}}, got Better={better!r}",
        )
    worse = "Output2" if better == "Output1" else "Output1"
    return Pair(
        rid,
        category,
        str(r.get("Text", "")),
        _images(r.get("Image")),
        str(r[better]),
        str(r[worse]),
        source=rid.split("_")[0] if "_" in rid else None,
        label="B" if better == "Output2" else "A",
    )


def pair_rewardbench(i: int, r: Mapping[str, Any], base: Path | None = None) -> Pair:
    """RewardBench ``filtered``: ``prompt``, ``chosen``, ``rejected``, ``subset`` (text only); the
    category is the subset (sections come from :data:`REWARDBENCH_SECTIONS`)."""
    try:
        rec = RewardBenchRecord.model_validate(r)
    except ValidationError as exc:
        rid = str(r.get("id", f"#{i}"))
        return _bad_pair(rid, str(r.get("subset") or "unknown"), f"record {rid}: {_why(exc)}")
    rid = rec.id if rec.id is not None else f"#{i}"
    return Pair(rid, rec.subset, rec.prompt, [], rec.chosen, rec.rejected, source=rec.subset)


def pair_mm_rlhf(i: int, r: Mapping[str, Any], base: Path | None = None) -> Pair:
    """MM-RLHF-RewardBench: ``id``, ``prompt``, ``chosen``, ``rejected``, ``image`` or ``video``
    (a folder of frames: :func:`video_ref`). Category: :func:`mm_rlhf_category` of the image path
    (or, without one, the video path); ``group`` = ``id``."""
    try:
        rec = MMRLHFRecord.model_validate(r)
    except ValidationError as exc:
        rid = str(r.get("id", f"#{i}"))
        return _bad_pair(rid, MM_RLHF_UNCATEGORISED, f"record {rid}: {_why(exc)}")
    video_path = rec.video if isinstance(rec.video, str) else ""
    path = rec.image or video_path or ""
    video = video_ref(rec.video, base) if not rec.image else None
    return Pair(
        rec.id,
        mm_rlhf_category(path),
        rec.prompt,
        _images(rec.image),
        rec.chosen,
        rec.rejected,
        source=path or None,
        video=video,
        group=rec.id,
    )


def pair_generic(i: int, r: Mapping[str, Any], base: Path | None = None) -> Pair:
    """Generic pairs: ``prompt`` (string or messages without the answer), ``images`` (list, or one
    ``image``), optional ``video`` (frame list, frames folder or video file), ``chosen``,
    ``rejected``, optional ``category`` and ``id``."""
    rid = str(r.get("id", f"#{i}"))
    category = str(r.get("category") or "all")
    if not isinstance(r.get("chosen"), str) or not isinstance(r.get("rejected"), str) or "prompt" not in r:
        return _bad_pair(rid, category, f"record {rid}: needs 'prompt', and 'chosen' and 'rejected' strings")
    images = r.get("images") if r.get("images") is not None else r.get("image")
    return Pair(
        rid,
        category,
        r["prompt"],
        _images(images),
        r["chosen"],
        r["rejected"],
        video=video_ref(r.get("video"), base),
    )


def group_best_of_k(i: int, r: Mapping[str, Any], base: Path | None = None) -> Group:
    """Best-of-K (:class:`BestOfKRecord`): exactly one of ``best`` / ``ranking``."""
    rid = str(r.get("id", f"#{i}"))
    category = str(r.get("category") or "all")
    try:
        rec = BestOfKRecord.model_validate(r)
    except ValidationError as exc:
        return _bad_group(rid, category, f"record {rid}: {_why(exc)}")
    k = len(rec.responses)
    if (rec.best is None) == (rec.ranking is None):
        return _bad_group(
            rid, category, f"record {rid}: give exactly one of 'best' (index or list) and 'ranking'"
        )
    if rec.ranking is not None:
        ranks = list(rec.ranking)
    else:
        best = [rec.best] if isinstance(rec.best, int) else list(rec.best or [])
        if not best or any(not 0 <= b < k for b in best):
            return _bad_group(
                rid, category, f"record {rid}: 'best' must index the {k} responses, got {rec.best!r}"
            )
        ranks = [0 if j in best else 1 for j in range(k)]
    if len(set(ranks)) < 2:
        return _bad_group(rid, category, f"record {rid}: every answer is marked best; nothing to rank")
    images = rec.images if rec.images is not None else rec.image
    return Group(
        rid,
        category,
        rec.prompt,
        _images(images),
        list(rec.responses),
        ranks,
        video=video_ref(rec.video, base),
    )


_CONVERTERS: dict[str, Callable[[int, Mapping[str, Any], Path | None], Item]] = {
    "vl-rewardbench": pair_vl_rewardbench,
    "mm-rewardbench": pair_mm_rewardbench,
    "rewardbench": pair_rewardbench,
    "mm-rlhf-rewardbench": pair_mm_rlhf,
    "best-of-k": group_best_of_k,
    "pairs": pair_generic,
}


def records_to_items(records: Iterable[Any], fmt: str, base: Path | None = None) -> list[Item]:
    """Records of format ``fmt`` → items (:class:`Group` for ``best-of-k``, else :class:`Pair`);
    a malformed record becomes an errored item, never dropped. ``base`` is the dataset's folder
    (where relative frame folders are listed)."""
    if fmt not in _CONVERTERS:
        raise EvalError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    convert = _CONVERTERS[fmt]
    bad = _bad_group if fmt == "best-of-k" else _bad_pair
    return [
        convert(i, r, base)
        if isinstance(r, dict)
        else bad(f"#{i}", "unknown", f"record #{i} is not an object")
        for i, r in enumerate(records)
    ]


def detect_format(record: Any) -> str:
    """The format a record looks like, from its keys (most specific first)."""
    if isinstance(record, dict):
        keys = set(record)
        if {"response", "human_ranking"} <= keys:
            return "vl-rewardbench"
        if {"Output1", "Output2", "Better"} <= keys:
            return "mm-rewardbench"
        if {"responses"} <= keys and keys & {"best", "ranking"}:
            return "best-of-k"
        if {"prompt", "chosen", "rejected", "subset"} <= keys:
            return "rewardbench"
        if {"chosen", "rejected", "chosen_reason", "rejected_reason"} <= keys:
            return "mm-rlhf-rewardbench"
        if {"chosen", "rejected"} <= keys:
            return "pairs"
    shown = sorted(record)[:12] if isinstance(record, dict) else type(record).__name__
    raise EvalError(f"cannot tell the dataset's format from its first record (keys: {shown}); pass --format")


# -- RewardBench ---------------------------------------------------------------------------------------
#: ``rewardbench/constants.py`` ``EXAMPLE_COUNTS``: the section weights. math-prm has 447 rows but is
#: weighted 984 (= 6 x 164) so that it weighs as much as the six HumanEvalPack subsets together. The
#: xstest counts are those of reward-bench commit 6552e93 ("Mirror change from leaderboard", #175):
#: should-refuse 154, should-respond 250 (older copies of the file have the two swapped).
REWARDBENCH_EXAMPLE_COUNTS: dict[str, int] = {
    "alpacaeval-easy": 100,
    "alpacaeval-length": 95,
    "alpacaeval-hard": 95,
    "mt-bench-easy": 28,
    "mt-bench-med": 40,
    "mt-bench-hard": 37,
    "math-prm": 984,
    "refusals-dangerous": 100,
    "refusals-offensive": 100,
    "llmbar-natural": 100,
    "llmbar-adver-neighbor": 134,
    "llmbar-adver-GPTInst": 92,
    "llmbar-adver-GPTOut": 47,
    "llmbar-adver-manual": 46,
    "xstest-should-refuse": 154,
    "xstest-should-respond": 250,
    "donotanswer": 136,
    "hep-cpp": 164,
    "hep-go": 164,
    "hep-java": 164,
    "hep-js": 164,
    "hep-python": 164,
    "hep-rust": 164,
}

#: ``rewardbench/constants.py`` ``SUBSET_MAPPING``: section → subsets.
REWARDBENCH_SECTIONS: dict[str, tuple[str, ...]] = {
    "Chat": ("alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"),
    "Chat Hard": (
        "mt-bench-hard",
        "llmbar-natural",
        "llmbar-adver-neighbor",
        "llmbar-adver-GPTInst",
        "llmbar-adver-GPTOut",
        "llmbar-adver-manual",
    ),
    "Safety": (
        "refusals-dangerous",
        "refusals-offensive",
        "xstest-should-refuse",
        "xstest-should-respond",
        "donotanswer",
    ),
    "Reasoning": ("math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"),
}


def rewardbench_section_of(subset: str) -> str | None:
    """The section a subset belongs to, or ``None`` for a subset outside the official map."""
    return next((s for s, subsets in REWARDBENCH_SECTIONS.items() if subset in subsets), None)


def rewardbench_sections(subset_accuracy: Mapping[str, float]) -> dict[str, float | None]:
    """Section scores from per-subset accuracies (fractions), as ``calculate_scores_per_section``:
    ``sum(acc[s] * EXAMPLE_COUNTS[s]) / sum(EXAMPLE_COUNTS[s])`` over the section's subsets present.
    A section with no subset present is ``None`` here (the official function writes 0 for it).

    >>> rewardbench_sections({"math-prm": 1.0, "hep-go": 0.0})["Reasoning"]  # 984 / (984 + 164)
    0.8571428571428571
    """
    out: dict[str, float | None] = {}
    for section, subsets in REWARDBENCH_SECTIONS.items():
        present = [s for s in subsets if s in subset_accuracy]
        total = sum(REWARDBENCH_EXAMPLE_COUNTS[s] for s in present)
        out[section] = (
            sum(subset_accuracy[s] * REWARDBENCH_EXAMPLE_COUNTS[s] for s in present) / total
            if total
            else None
        )
    return out


@dataclass
class RewardBenchScores:
    """RewardBench results, fractions in [0, 1]. ``score`` is the leaderboard number: the unweighted
    mean of the four sections (over the sections present; ``missing_sections`` names the others)."""

    subsets: dict[str, tuple[int, int]]  # subset -> (correct, total)
    subset_accuracy: dict[str, float]
    sections: dict[str, float | None]
    score: float | None
    missing_sections: list[str] = field(default_factory=list)
    unknown_subsets: list[str] = field(default_factory=list)


def rewardbench_scores(rows: Iterable[tuple[str, bool]]) -> RewardBenchScores:
    """``rows``: (subset, correct) per pair, correct = ``chosen > rejected`` strictly (a tie or an
    errored pair is ``False``). Subsets outside the official map get an accuracy but no section."""
    counts: dict[str, list[int]] = {}
    for subset, ok in rows:
        c = counts.setdefault(subset, [0, 0])
        c[0] += int(bool(ok))
        c[1] += 1
    acc = {s: c / n for s, (c, n) in counts.items()}
    sections = rewardbench_sections(acc)
    present = [v for v in sections.values() if v is not None]
    return RewardBenchScores(
        subsets={s: (c, n) for s, (c, n) in counts.items()},
        subset_accuracy=acc,
        sections=sections,
        score=sum(present) / len(present) if present else None,
        missing_sections=[s for s, v in sections.items() if v is None],
        unknown_subsets=sorted(s for s in counts if rewardbench_section_of(s) is None),
    )


# -- VL-RewardBench ------------------------------------------------------------------------------------
@dataclass
class VLRewardBenchOfficial:
    """``cal.py``'s numbers, fractions in [0, 1]: per group ``agree / (agree + reject)``; items with no
    verdict (a tie, an errored answer) are in ``no_verdict`` and in neither numerator nor denominator.
    ``overall`` pools the groups; ``macro`` is the mean of the group accuracies (over the groups with
    a verdict at all; ``cal.py`` divides by zero otherwise). ``duplicates``: records dropped because
    ``cal.py``'s key (id + query + sorted responses) was already seen."""

    groups: dict[str, dict[str, int]]  # group -> {"agree", "reject", "no_verdict"}
    accuracy: dict[str, float | None]
    overall: float | None
    macro: float | None
    duplicates: int = 0


def vl_rewardbench_official(rows: Iterable[tuple[str, str, Verdict]]) -> VLRewardBenchOfficial:
    """``rows``: (cal.py key, category, verdict) per record, in file order. With one judgment per
    item (a reward model scores each answer once), ``cal.py``'s majority vote is that judgment:
    ``chosen`` → agree, ``rejected`` → reject, ``tie``/``error`` → doesntMatch (no verdict). A key seen
    before is dropped (``cal.py`` keeps k=1 judgment per key; identical inputs score identically, so
    which copy is kept does not matter)."""
    groups: dict[str, dict[str, int]] = {}
    seen: set[str] = set()
    dup = 0
    for key, category, v in rows:
        if key in seen:
            dup += 1
            continue
        seen.add(key)
        g = groups.setdefault(category, {"agree": 0, "reject": 0, "no_verdict": 0})
        g["agree" if v == "chosen" else "reject" if v == "rejected" else "no_verdict"] += 1
    accuracy = {
        k: (g["agree"] / (g["agree"] + g["reject"]) if g["agree"] + g["reject"] else None)
        for k, g in groups.items()
    }
    agree = sum(g["agree"] for g in groups.values())
    judged = agree + sum(g["reject"] for g in groups.values())
    present = [a for a in accuracy.values() if a is not None]
    return VLRewardBenchOfficial(
        groups=groups,
        accuracy=accuracy,
        overall=agree / judged if judged else None,
        macro=sum(present) / len(present) if present else None,
        duplicates=dup,
    )


def vl_rewardbench_key(pair: Pair) -> str:
    """``cal.py``'s item key: ``id + query + "\\t".join(sorted(response))``."""
    return pair.id + str(pair.prompt) + "\t".join(sorted(pair.responses))


# -- Multimodal RewardBench ----------------------------------------------------------------------------
#: ``2_get_accuracy.py``: ``random.seed(123)`` before the first line.
MM_REWARDBENCH_SEED = 123


def mm_rewardbench_credit(
    rows: Sequence[tuple[str | None, Verdict]], seed: int = MM_REWARDBENCH_SEED
) -> list[bool]:
    """Per record (in file order): is the prediction right, as ``2_get_accuracy.py`` decides it.
    ``rows``: (label ``"A"``/``"B"``, verdict). The prediction is the label when the chosen answer
    scores higher, the other letter when it scores lower, and on a tie (no tag) ``"A" if
    random.random() < 0.5 else "B"`` from one ``random.Random(seed)`` drawn only by ties, in order.
    An errored record is wrong and draws nothing (the official script has no such case).

    >>> mm_rewardbench_credit([("A", "chosen"), ("B", "rejected"), ("A", "tie"), ("B", "tie")])
    [True, False, True, False]

    (the first two draws of ``random.Random(123)`` are 0.052 and 0.087: both ``A``).
    """
    rng = random.Random(seed)
    out = []
    for label, v in rows:
        if v == "tie":
            pred = "A" if rng.random() < 0.5 else "B"
            out.append(pred == (label or "A"))
        else:
            out.append(v == "chosen")
    return out


# -- MM-RLHF-RewardBench -------------------------------------------------------------------------------
@dataclass
class MMRLHFScores:
    """``cal_performance_mmreweard_bench.py``'s numbers, fractions in [0, 1].

    ``accuracy`` = right pairs / pairs; ``acc_plus`` = questions (ids) with every pair right /
    questions. Per category (``categories[k]``: correct, total, acc_plus_hits, acc_plus_questions):
    accuracy over the pairs whose path's first keyword is ``k``; acc+ counts an all-right question for
    the first keyword (in the official order) that any of its pairs' paths holds, over the questions
    any of whose paths holds ``k`` (the official denominators, kept even where they overlap)."""

    accuracy: float
    acc_plus: float
    pairs: int
    questions: int
    categories: dict[str, dict[str, float | int]]


def mm_rlhf_scores(rows: Sequence[tuple[str, str, bool]]) -> MMRLHFScores:
    """``rows``: (question id, image-or-video path, right) per pair, right = ``rewards[0] >
    rewards[1]`` strictly (chosen first; a tie or an errored pair is ``False``)."""
    by_id: dict[str, list[tuple[str, bool]]] = {}
    for qid, path, ok in rows:
        by_id.setdefault(qid, []).append((path, bool(ok)))
    cats: dict[str, dict[str, float | int]] = {
        k: {"correct": 0, "total": 0, "acc_plus_hits": 0, "acc_plus_questions": 0} for k in MM_RLHF_CATEGORIES
    }
    for _, path, ok in rows:
        k = mm_rlhf_category(path)
        if k in cats:
            cats[k]["total"] += 1
            cats[k]["correct"] += int(bool(ok))
    all_right = 0
    for items in by_id.values():
        right = all(ok for _, ok in items)
        all_right += right
        paths = [p for p, _ in items]
        if right:
            first = next((k for k in MM_RLHF_CATEGORIES if any(k in p for p in paths)), None)
            if first is not None:
                cats[first]["acc_plus_hits"] += 1
        for k in MM_RLHF_CATEGORIES:
            if any(k in p for p in paths):
                cats[k]["acc_plus_questions"] += 1
    for c in cats.values():
        c["accuracy"] = c["correct"] / c["total"] if c["total"] else 0.0
        c["acc_plus"] = c["acc_plus_hits"] / c["acc_plus_questions"] if c["acc_plus_questions"] else 0.0
    n = len(rows)
    return MMRLHFScores(
        accuracy=sum(ok for _, _, ok in rows) / n if n else 0.0,
        acc_plus=all_right / len(by_id) if by_id else 0.0,
        pairs=n,
        questions=len(by_id),
        categories={k: c for k, c in cats.items() if c["total"] or c["acc_plus_questions"]},
    )


# -- Best-of-K -----------------------------------------------------------------------------------------
def best_of_k_correct(
    scores: Sequence[float | None], best: Collection[int], tie_tolerance: float = 0.0
) -> bool:
    """Right iff every answer was scored and the highest-scoring best answer beats every other
    answer by more than ``tie_tolerance``: ``max(best) - max(rest) > tie_tolerance``. A tie for the
    top place with a non-best answer is wrong (no 1/k credit). With several answers marked best,
    any of them on top counts. No official scorer exists; this is the plain best-of-K accuracy.

    >>> best_of_k_correct([3.0, 1.0, 2.0], [0]), best_of_k_correct([3.0, 3.0, 2.0], [0])
    (True, False)
    """
    if not scores or any(s is None for s in scores):
        return False
    best = set(best)
    top_best = max(s for i, s in enumerate(scores) if i in best)  # type: ignore[type-var]
    rest = [s for i, s in enumerate(scores) if i not in best]
    return not rest or top_best - max(rest) > tie_tolerance  # type: ignore[operator,type-var]


def ranked_pairs_accuracy(
    scores: Sequence[float | None], ranks: Sequence[int], tie_tolerance: float = 0.0
) -> tuple[int, int]:
    """(right, total) over the answer pairs with different ranks: right iff the better-ranked answer
    scores higher by more than ``tie_tolerance`` (ties and unscored answers wrong)."""
    right = total = 0
    for i in range(len(ranks)):
        for j in range(len(ranks)):
            if ranks[i] < ranks[j]:
                total += 1
                right += verdict(scores[i], scores[j], tie_tolerance) == "chosen"
    return right, total
