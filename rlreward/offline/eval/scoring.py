"""The scoring loop of ``rlreward eval``: items → results, a chunk of items per backend call, each
chunk appended to a JSONL sidecar (``REPORT.scores.jsonl``) before the next starts, so an interrupted
run loses at most one chunk and ``--resume`` scores only the rest.

A backend is anything with ``score(samples) -> list[ScoreResult]``: the in-process
:class:`rlreward.engine.scorer.Scorer` or :class:`~.remote.RemoteBackend`. The answers of one item go
in the same call (the scorer can share their prompt prefix).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from rlreward.schema import ErrorCode, ScoreResult

from .items import EvalError, Item, Pair
from .outcomes import PairOutcome, outcomes_of


class ScoringBackend(Protocol):
    """Anything that scores samples: :class:`rlreward.engine.scorer.Scorer`, :class:`RemoteBackend`."""

    def score(self, samples: Sequence[Any]) -> list[ScoreResult]: ...


#: Error codes worth scoring again on ``--resume`` (the server was away; the item itself is fine).
RETRYABLE_CODES = frozenset({ErrorCode.UNAVAILABLE.value, ErrorCode.INTERNAL.value})


class ScoreCache:
    """The JSONL sidecar of a run (``REPORT.scores.jsonl``): a header line naming the dataset, format
    and model, then one line per scored item ``{"i", "id", "fp", "results"}`` appended (and flushed)
    as chunks finish, so a run killed at any point keeps what it scored. A torn last line is ignored.

    ``open(path, header, resume=False)`` starts a fresh sidecar; with ``resume=True`` it keeps the
    lines of a sidecar with the same format and model (another model's scores raise
    :class:`EvalError`) and :meth:`get` returns an item's results when its position and content
    fingerprint match and none of them failed for a retryable reason (server unavailable).
    """

    def __init__(self, path: Path, header: dict[str, Any], entries: dict[tuple[int, str], list[ScoreResult]]):
        self.path = path
        self.header = header
        self.entries = entries
        self.reused = 0
        self._fh = path.open("a", encoding="utf-8")

    @classmethod
    def sidecar_path(cls, report_path: str | Path) -> Path:
        p = Path(report_path)
        return p.with_name(p.stem + ".scores.jsonl")

    @classmethod
    def open(cls, path: str | Path, header: dict[str, Any], *, resume: bool = False) -> ScoreCache:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        entries: dict[tuple[int, str], list[ScoreResult]] = {}
        if resume and path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            old = _json_line(lines[0]) if lines else None
            if old is not None:
                for k in ("format", "model"):
                    if old.get(k) != header.get(k):
                        raise EvalError(
                            f"{path} holds scores for {k} {old.get(k)!r}, not {header.get(k)!r}; pass the same "
                            f"--{'model/--url' if k == 'model' else k}, or delete it to start over"
                        )
                for line in lines[1:]:
                    e = _json_line(line)
                    if e is None or "i" not in e or "results" not in e:
                        continue  # a line torn by an interruption
                    entries[(int(e["i"]), str(e.get("fp")))] = [
                        ScoreResult.model_validate(r) for r in e["results"]
                    ]
        if not entries:
            path.write_text(json.dumps({"rlreward_eval_scores": 1, **header}) + "\n", encoding="utf-8")
        else:  # keep the old lines; make sure the next append starts on a new line
            text = path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):
                path.write_text(text[: text.rfind("\n") + 1], encoding="utf-8")
        return cls(path, header, entries)

    def get(self, index: int, item: Item) -> list[ScoreResult] | None:
        res = self.entries.get((index, item.fingerprint()))
        if res is None or any(not r.ok and r.error.code in RETRYABLE_CODES for r in res):  # type: ignore[union-attr]
            return None
        self.reused += 1
        return res

    def put(self, index: int, item: Item, results: Sequence[ScoreResult]) -> None:
        line = {
            "i": index,
            "id": item.id,
            "fp": item.fingerprint(),
            "results": [r.model_dump() for r in results],
        }
        self._fh.write(json.dumps(line) + "\n")

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _json_line(line: str) -> dict | None:
    try:
        v = json.loads(line)
    except json.JSONDecodeError:
        return None
    return v if isinstance(v, dict) else None


def score_items(
    items: Sequence[Item],
    backend: ScoringBackend,
    *,
    chunk_pairs: int = 32,
    cache: ScoreCache | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[list[ScoreResult] | None]:
    """Results per item (``None`` for a malformed record), ``chunk_pairs`` items per backend call (the
    answers of one item in the same call, so the scorer can share their prompt prefix). With a
    ``cache``, items it holds are not scored again and each scored chunk is appended to it before
    the next one starts. ``progress(n)`` is called with the number of items just finished."""
    out: list[list[ScoreResult] | None] = [None] * len(items)
    step = max(1, chunk_pairs)
    for start in range(0, len(items), step):
        todo: list[tuple[int, Item]] = []
        for i in range(start, min(start + step, len(items))):
            item = items[i]
            if item.error is not None:
                continue
            hit = cache.get(i, item) if cache is not None else None
            if hit is not None:
                out[i] = hit
            else:
                todo.append((i, item))
        samples = [s for _, item in todo for s in item.samples()]
        results = iter(backend.score(samples) if samples else [])
        for i, item in todo:
            out[i] = [next(results) for _ in item.samples()]
            if cache is not None:
                cache.put(i, item, out[i])  # type: ignore[arg-type]
        if cache is not None:
            cache.flush()
        if progress:
            progress(min(step, len(items) - start))
    return out


def score_pairs(
    pairs: Sequence[Pair],
    backend: ScoringBackend,
    *,
    chunk_pairs: int = 32,
    tie_tolerance: float = 1e-5,
    progress: Callable[[int], None] | None = None,
) -> list[PairOutcome]:
    """Score every pair with ``backend`` (:func:`score_items`); ``outcomes[i]`` is ``pairs[i]``'s.
    Score differences within ``tie_tolerance`` are ties (wrong)."""
    results = score_items(pairs, backend, chunk_pairs=chunk_pairs, progress=progress)
    return outcomes_of(pairs, results, tie_tolerance)  # type: ignore[return-value]
