"""The engine seam: what a serving replica needs from a scoring engine.

:class:`rlreward.engine.scorer.Scorer` is the engine; serving tests where the real model is not the
point may hand :class:`rlreward.serving.replica.RewardReplica` any object with this shape instead
(parity tests keep the real one). Importing this module costs nothing (no torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from rlreward.engine.config import ScorerConfig
    from rlreward.engine.preprocess import PreparedSample
    from rlreward.schema import ScoreResult


@runtime_checkable
class ScoringEngine(Protocol):
    """Prepares samples (CPU, thread-safe) and scores prepared ones (one caller at a time).

    ``prepare`` never raises for a bad sample: it returns the sample's error as a ``ScoreResult``.
    ``score_prepared`` returns one result per item, in order; error results pass through in place.
    A prepared sample exposes ``num_tokens``, ``input_ids``, ``image_digests`` and ``has_video``
    (the replica's batch planning reads them).
    """

    config: ScorerConfig
    device: Any

    def prepare(self, sample: Any) -> PreparedSample | ScoreResult: ...

    def score_prepared(self, items: Sequence[PreparedSample | ScoreResult]) -> list[ScoreResult]: ...

    def info(self) -> dict[str, Any]: ...
