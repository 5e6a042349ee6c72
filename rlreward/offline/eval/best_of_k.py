"""Best-of-K (our format; no official scorer exists): K answers to one prompt, the best marked.

Records (:class:`BestOfKRecord`): ``prompt``, ``responses`` [K], ``best`` (index or indices) or
``ranking`` (one rank per answer, 0 = best), optional ``images``/``image``, ``video``, ``category``,
``id``. Headline ``best_of_k_accuracy``: groups whose best answer scores above every other answer
by more than the tie tolerance (:func:`~.outcomes.best_of_k_correct`); the variant ``ranked_pairs``
counts the answer pairs of different ranks ordered right (:func:`ranked_pairs_accuracy`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator

from . import stats
from .benchmark import Benchmark, Draft
from .items import Group, Record, bad_group, images_of, video_ref, why
from .outcomes import GroupOutcome, verdict
from .report import Accuracy, Variant


class BestOfKRecord(Record):
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


def group_best_of_k(i: int, r: Mapping[str, Any], base: Path | None = None) -> Group:
    """Best-of-K (:class:`BestOfKRecord`): exactly one of ``best`` / ``ranking``."""
    rid = str(r.get("id", f"#{i}"))
    category = str(r.get("category") or "all")
    try:
        rec = BestOfKRecord.model_validate(r)
    except ValidationError as exc:
        return bad_group(rid, category, f"record {rid}: {why(exc)}")
    k = len(rec.responses)
    if (rec.best is None) == (rec.ranking is None):
        return bad_group(
            rid, category, f"record {rid}: give exactly one of 'best' (index or list) and 'ranking'"
        )
    if rec.ranking is not None:
        ranks = list(rec.ranking)
    else:
        best = [rec.best] if isinstance(rec.best, int) else list(rec.best or [])
        if not best or any(not 0 <= b < k for b in best):
            return bad_group(
                rid, category, f"record {rid}: 'best' must index the {k} responses, got {rec.best!r}"
            )
        ranks = [0 if j in best else 1 for j in range(k)]
    if len(set(ranks)) < 2:
        return bad_group(rid, category, f"record {rid}: every answer is marked best; nothing to rank")
    images = rec.images if rec.images is not None else rec.image
    return Group(
        rid,
        category,
        rec.prompt,
        images_of(images),
        list(rec.responses),
        ranks,
        video=video_ref(rec.video, base),
    )


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


class BestOfK(Benchmark):
    name = "best-of-k"
    headline_metric = "best_of_k_accuracy"
    item_kind = "group"
    detect_priority = 30

    def detect(self, keys: set[str]) -> bool:
        return {"responses"} <= keys and bool(keys & {"best", "ranking"})

    def load(self, i: int, record: Mapping[str, Any], base: Path | None) -> Group:
        return group_best_of_k(i, record, base)

    def finish(self, draft: Draft) -> None:
        right = total = 0
        for o in draft.outcomes:
            if isinstance(o, GroupOutcome) and not o.errored:
                r, t = ranked_pairs_accuracy(o.scores, o.ranks, o.tie_tolerance)
                right, total = right + r, total + t
            elif isinstance(o, GroupOutcome):
                k = len(o.ranks)
                total += sum(1 for i in range(k) for j in range(k) if o.ranks[i] < o.ranks[j])
        draft.variants.append(
            Variant(
                name="ranked_pairs",
                description="answer pairs with different ranks ordered right by score (ties, errors wrong)",
                overall=Accuracy(value=stats.pct(right / total)) if total else None,
                counted=total,
            )
        )
        draft.headline.rule = (
            "best_of_k_accuracy = groups whose best answer scores above every other answer (a tie for the "
            "top is wrong; with several marked best, any of them on top); no official scorer exists"
        )


BENCHMARK = BestOfK()
