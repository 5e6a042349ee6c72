"""Scores → outcomes: the verdict of a pair, the rule of a best-of-K group, and per item the scores
(or why there are none) that the benchmarks' metrics count.

A reward model gives scores, not the text verdicts the generative-judge scorers parse. A pair's
verdict is ``"chosen"`` when the chosen answer scores higher by more than the tie tolerance,
``"rejected"`` when lower, ``"tie"`` within it (the analogue of a judge output with no parsable
verdict), ``"error"`` when an answer could not be scored. A pair is right only on ``"chosen"``; a
group only when a best answer is on top by more than the tolerance. Errored items count as wrong.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from rlreward.schema import ErrorCode, ScoreResult

from .items import Group, Item, Pair, vl_rewardbench_key

Verdict = Literal["chosen", "rejected", "tie", "error"]


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


@dataclass
class PairOutcome:
    """The scores of one pair, or why it has none. ``label``, ``group``, ``source`` and ``key`` carry
    what a benchmark's metric needs from its pair (:class:`~.items.Pair`)."""

    id: str
    category: str
    chosen_score: float | None
    rejected_score: float | None
    error_side: Literal["chosen", "rejected", "both", "record"] | None = None
    error_code: str | None = None
    error_message: str | None = None
    tie_tolerance: float = 1e-5
    label: str | None = None
    group: str | None = None
    source: str | None = None
    key: str | None = None

    @property
    def errored(self) -> bool:
        return self.error_side is not None

    @property
    def correct(self) -> bool:
        """Chosen above rejected by more than ``tie_tolerance``; ties and errors are wrong."""
        return not self.errored and self.chosen_score - self.rejected_score > self.tie_tolerance  # type: ignore[operator]

    @property
    def tie(self) -> bool:
        return not self.errored and abs(self.chosen_score - self.rejected_score) <= self.tie_tolerance  # type: ignore[operator]

    @property
    def verdict(self) -> str:
        """``chosen`` / ``rejected`` / ``tie`` / ``error`` (:func:`verdict`)."""
        return (
            "error" if self.errored else verdict(self.chosen_score, self.rejected_score, self.tie_tolerance)
        )


@dataclass
class GroupOutcome:
    """The scores of one best-of-K group (``scores[i]`` is answer ``i``'s), or why it has none."""

    id: str
    category: str
    scores: list[float | None]
    ranks: list[int]
    error_side: str | None = None  # "answer 2", "answers 0, 3" or "record"
    error_code: str | None = None
    error_message: str | None = None
    tie_tolerance: float = 1e-5

    @property
    def best(self) -> list[int]:
        top = min(self.ranks) if self.ranks else 0
        return [i for i, r in enumerate(self.ranks) if r == top]

    @property
    def errored(self) -> bool:
        return self.error_side is not None

    @property
    def correct(self) -> bool:
        """The best answer on top by more than ``tie_tolerance`` (:func:`best_of_k_correct`)."""
        return not self.errored and best_of_k_correct(self.scores, self.best, self.tie_tolerance)

    @property
    def tie(self) -> bool:
        """A best answer ties a non-best one for the top score."""
        if self.errored or not self.scores:
            return False
        top_best = max(s for i, s in enumerate(self.scores) if i in self.best)  # type: ignore[type-var]
        rest = [s for i, s in enumerate(self.scores) if i not in self.best]
        return bool(rest) and abs(top_best - max(rest)) <= self.tie_tolerance  # type: ignore[operator,type-var]


Outcome = PairOutcome | GroupOutcome


def outcome_of(
    pair: Pair, chosen: ScoreResult | None, rejected: ScoreResult | None, tie_tolerance: float = 1e-5
) -> PairOutcome:
    """Combine the two results of ``pair`` (``None`` results only for a malformed record)."""
    extra = {
        "label": pair.label,
        "group": pair.group,
        "source": pair.source,
        "key": vl_rewardbench_key(pair) if pair.error is None else pair.id,
    }
    if pair.error is not None or chosen is None or rejected is None:
        code, msg = pair.error or (ErrorCode.INVALID_SAMPLE.value, "record was not scored")
        return PairOutcome(pair.id, pair.category, None, None, "record", code, msg, tie_tolerance, **extra)
    bad = [(side, r) for side, r in (("chosen", chosen), ("rejected", rejected)) if not r.ok]
    if not bad:
        return PairOutcome(
            pair.id, pair.category, chosen.score, rejected.score, tie_tolerance=tie_tolerance, **extra
        )
    side = "both" if len(bad) == 2 else bad[0][0]
    err = bad[0][1].error
    return PairOutcome(
        pair.id,
        pair.category,
        chosen.score,
        rejected.score,
        side,  # type: ignore[arg-type]
        err.code,  # type: ignore[union-attr]
        err.message,  # type: ignore[union-attr]
        tie_tolerance,
        **extra,
    )


def group_outcome_of(
    group: Group, results: Sequence[ScoreResult] | None, tie_tolerance: float = 1e-5
) -> GroupOutcome:
    """Combine the K results of ``group`` (``None`` only for a malformed record)."""
    if group.error is not None or results is None:
        code, msg = group.error or (ErrorCode.INVALID_SAMPLE.value, "record was not scored")
        return GroupOutcome(group.id, group.category, [], group.ranks, "record", code, msg, tie_tolerance)
    scores = [r.score if r.ok else None for r in results]
    bad = [i for i, r in enumerate(results) if not r.ok]
    if not bad:
        return GroupOutcome(group.id, group.category, scores, group.ranks, tie_tolerance=tie_tolerance)
    err = results[bad[0]].error
    side = f"answer {bad[0]}" if len(bad) == 1 else "answers " + ", ".join(map(str, bad))
    return GroupOutcome(
        group.id,
        group.category,
        scores,
        group.ranks,
        side,
        err.code,
        err.message,
        tie_tolerance,  # type: ignore[union-attr]
    )


def outcomes_of(
    items: Sequence[Item], results: Sequence[Sequence[ScoreResult] | None], tie_tolerance: float = 1e-5
) -> list[Outcome]:
    """Outcome per item from its results (:func:`score_items`'s output)."""
    out: list[Outcome] = []
    for item, res in zip(items, results):
        if isinstance(item, Group):
            out.append(group_outcome_of(item, res, tie_tolerance))
        else:
            c, r = (res[0], res[1]) if res is not None else (None, None)
            out.append(outcome_of(item, c, r, tie_tolerance))
    return out
