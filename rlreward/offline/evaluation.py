"""``rlreward eval``: a reward model on the benchmarks its authors report, scored as their code scores it.

Check that a deployment scores like the paper (Skywork-VL-Reward-7B: VL-RewardBench 73.1 overall /
69.0 macro, RewardBench 90.1) before spending GPU-days of RL on it.

Formats (``--format``; ``auto`` looks at the first record's keys). The schemas, the category rules
and the official metric of each are in :mod:`rlreward.offline.benchmarks`:

* ``vl-rewardbench`` (HF ``MMInstruction/VL-RewardBench``): ``id``, ``query``, ``image`` (or
  ``image_path``), ``response`` [2], ``human_ranking`` [2]. Headline ``overall`` (``macro`` beside).
* ``mm-rewardbench`` (``facebookresearch/multimodal_rewardbench`` ``all_data.json``): ``ID``, ``Text``,
  ``Image``, ``Output1``, ``Output2``, ``Better``, ``Category``/``Meta.Category``. Headline ``overall``
  (the official ``all``), ties broken by the official seeded coin.
* ``rewardbench`` (``allenai/reward-bench`` ``filtered``): ``prompt``, ``chosen``, ``rejected``,
  ``subset``. Headline ``score``: the mean of the four count-weighted sections.
* ``mm-rlhf-rewardbench`` (``mm_reward_bench.jsonl``): ``id``, ``prompt``, ``chosen``, ``rejected``,
  ``image`` or ``video``. Headline ``accuracy`` (``acc_plus`` beside).
* ``best-of-k``: ``prompt``, ``responses`` [K], ``best`` (index or indices) or ``ranking``. Headline
  ``best_of_k_accuracy``.
* ``pairs`` (generic): ``prompt`` (string or messages without the answer), ``images`` (or one
  ``image``), optional ``video`` (frames, a frames folder or a video file), ``chosen``, ``rejected``,
  optional ``category`` and ``id``. Headline ``overall``.

Files are JSON (a list, or ``{"data": [...]}``), JSONL or parquet, or a directory of them (files
whose name holds ``--split`` are preferred); anything else is taken as a Hugging Face dataset id
(needs ``datasets`` and a reachable hub). Images may be paths, base64, data URIs, bytes or HF-style
``{"bytes": ..., "path": ...}`` dicts. Paths follow the rules of ``rlreward score``: they are read
only under ``--image-root`` (default: the dataset's own folder), and relative paths are relative to
those roots.

Scoring rules (pinned down by the tests):

* a pair is **correct only when the chosen answer scores strictly higher**; a tie is wrong (a model
  that gives every answer the same score gets 0%, not 50%) and is counted in ``ties``. Scores within
  ``--tie-tolerance`` are a tie. Its default is 0 for the four benchmarks with an official scorer
  (their code compares with a bare ``>``, so the same scores give the same headline) and 1e-5 for
  ``pairs`` and ``best-of-k`` (about the fp32 resolution of a score near 20: the same answer scored
  in two rows of a batch can differ in the 7th digit, and that is no preference). Multimodal
  RewardBench's own script flips its seeded coin for a tie (a judgment with no verdict), and its
  headline does the same;
* an item whose answer could not be scored (missing image, path outside the roots, too many
  tokens, server unavailable, malformed record...) is an **error**: it counts as wrong in every
  headline (the denominator is always all items, so a broken deployment cannot look better by
  failing), and it is listed in ``error_list`` with its id, side, code and message;
  ``accuracy_scored`` gives the accuracy over error-free items for diagnosis. VL-RewardBench's
  official ``cal.py`` instead leaves items without a verdict out; that number is reported as the
  named variant ``vl_rewardbench_official`` beside today's headline;
* overall accuracy is pooled over items; macro accuracy is the mean of the category accuracies;
* 95% intervals are percentile bootstrap intervals (``--bootstrap`` resamples, stratified by
  category — by subset for RewardBench — seeded by ``--seed``).

Long runs: ``--limit N`` takes the first N records; every scored chunk is appended to a JSONL
sidecar next to the report (``REPORT.scores.jsonl``), and ``--resume`` reuses the scores found there
for the same items (matched by position and content) and scores only the rest, so an interrupted
run loses at most one chunk.

Outputs: a JSON report (:class:`EvalReport`, ``headline`` first), a Markdown table beside it
(``.md``, also printed) and a PNG bar chart (``.png``), next to the paper's numbers where the paper
has some, with the effective preprocessing settings of the scorer or server that produced them.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from rlreward.offline.benchmarks import (
    FORMATS,
    MM_REWARDBENCH_SEED,
    MM_RLHF_CATEGORIES,
    PAPER,
    REWARDBENCH_EXAMPLE_COUNTS,
    REWARDBENCH_SECTIONS,
    VL_REWARDBENCH_CATEGORIES,
    EvalError,
    Group,
    Item,
    Pair,
    best_of_k_correct,
    detect_format,
    mm_rewardbench_category,
    mm_rewardbench_credit,
    mm_rlhf_scores,
    ranked_pairs_accuracy,
    records_to_items,
    rewardbench_scores,
    rewardbench_section_of,
    verdict,
    vl_rewardbench_category,
    vl_rewardbench_key,
    vl_rewardbench_official,
)
from rlreward.schema import ErrorCode, ScoreResult, image_data_uri, media_items

log = logging.getLogger("rlreward")

__all__ = [
    "FORMATS",
    "EvalError",
    "EvalReport",
    "Group",
    "GroupOutcome",
    "Pair",
    "PairOutcome",
    "RemoteBackend",
    "ScoreCache",
    "build_report",
    "detect_format",
    "load_items",
    "load_pairs",
    "mm_rewardbench_category",
    "outcome_of",
    "score_items",
    "score_pairs",
    "vl_rewardbench_category",
    "write_reports",
]

#: Skywork-VL-Reward-7B on VL-RewardBench (tech report Table 3 / model card), in percent.
PAPER_VL_REWARDBENCH: dict[str, float] = dict(PAPER["vl-rewardbench"].values)
PAPER_SOURCE = PAPER["vl-rewardbench"].source

#: The benchmark's own headline metric, per format.
HEADLINE_METRIC = {
    "vl-rewardbench": "overall",
    "mm-rewardbench": "overall",
    "rewardbench": "score",
    "mm-rlhf-rewardbench": "accuracy",
    "best-of-k": "best_of_k_accuracy",
    "pairs": "overall",
}


# -- outcomes ----------------------------------------------------------------------------------------
@dataclass
class PairOutcome:
    """The scores of one pair, or why it has none. ``label``, ``group``, ``source`` and ``key`` carry
    what a benchmark's metric needs from its pair (:class:`rlreward.offline.benchmarks.Pair`)."""

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
        """``chosen`` / ``rejected`` / ``tie`` / ``error`` (:func:`rlreward.offline.benchmarks.verdict`)."""
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


# -- scoring -----------------------------------------------------------------------------------------
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


# -- loading -----------------------------------------------------------------------------------------
_DATA_EXTS = (".parquet", ".jsonl", ".json")


def _read_file(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise EvalError(f"{path}:{n} is not JSON ({exc}); fix or remove that line") from exc
        return rows
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # A .json file holding JSON lines is common enough to accept.
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError:
            raise EvalError(f"{path} is not JSON: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise EvalError(
            f"{path} must hold a list of records (or {{'data': [...]}}), not {type(data).__name__}"
        )
    return data


def _data_files(directory: Path, split: str | None) -> list[Path]:
    files = sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and p.suffix in _DATA_EXTS and not any(part.startswith(".") for part in p.parts)
    )
    for ext in _DATA_EXTS:  # parquet first (HF snapshots), then JSONL, then JSON
        same = [p for p in files if p.suffix == ext]
        if split:
            named = [p for p in same if split in p.name]
            same = named or same
        if same:
            return same
    raise EvalError(f"{directory} holds no .parquet, .jsonl or .json file to evaluate")


def read_records(dataset: str, split: str | None = "test") -> tuple[list[dict], Path | None]:
    """Records of a local file or directory, or of a Hugging Face dataset; and the dataset's folder
    (``None`` for a hub dataset), which is where relative image paths are read from by default."""
    path = Path(dataset).expanduser()
    if path.is_file():
        if path.suffix not in _DATA_EXTS:
            raise EvalError(f"{path}: unknown file type {path.suffix!r}; use .json, .jsonl or .parquet")
        return _read_file(path), path.parent.resolve()
    if path.is_dir():
        rows: list[dict] = []
        for f in _data_files(path, split):
            rows += _read_file(f)
        return rows, path.resolve()
    if dataset.startswith((".", "/", "~")) or dataset.count("/") != 1:
        raise EvalError(f"{dataset} does not exist (and is not a Hugging Face dataset id like 'owner/name')")
    return _read_hub(dataset, split or "test"), None


def _read_hub(dataset_id: str, split: str) -> list[dict]:
    try:
        import datasets
    except ImportError as exc:
        raise EvalError(
            f"{dataset_id} is not a local file, and loading Hugging Face datasets needs the 'datasets' "
            "package: pip install datasets (or download the dataset and pass its local path)"
        ) from exc
    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:
        raise EvalError(
            f"cannot load {dataset_id!r} (split {split!r}) from the hub: {exc}. Offline? Download it "
            "where a hub is reachable and pass the local folder"
        ) from exc
    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Image):  # keep the encoded bytes: {"bytes", "path"}
            ds = ds.cast_column(name, datasets.Image(decode=False))
    return [dict(row) for row in ds]


def load_items(
    dataset: str, fmt: str = "auto", *, split: str | None = None, limit: int | None = None
) -> tuple[list[Item], str, Path | None]:
    """(items, resolved format, dataset folder or None) for a local path or HF dataset id: the first
    ``limit`` records as :class:`Pair` items (:class:`Group` for ``best-of-k``). ``split`` defaults
    to ``filtered`` for RewardBench (its official split) and ``test`` otherwise."""
    if split is None:
        split = "filtered" if fmt == "rewardbench" else "test"
    records, base = read_records(dataset, split)
    if not records:
        raise EvalError(f"{dataset} holds no records")
    if limit is not None:
        records = records[:limit]
    if fmt == "auto":
        fmt = detect_format(records[0])
    elif fmt not in FORMATS:
        raise EvalError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    items = records_to_items(records, fmt, base)
    if all(p.error for p in items):
        raise EvalError(f"no record of {dataset} is a {fmt} item ({items[0].error[1]}); check --format")  # type: ignore[index]
    return items, fmt, base


def load_pairs(
    dataset: str, fmt: str = "auto", *, split: str | None = None, limit: int | None = None
) -> tuple[list[Item], str, Path | None]:
    """:func:`load_items` (the pairwise formats give :class:`Pair` items)."""
    return load_items(dataset, fmt, split=split, limit=limit)


# -- remote scoring ----------------------------------------------------------------------------------
class RemoteBackend:
    """Scores through a running server with :class:`rlreward.client.RewardClient` (HTTP).

    Images and video frames are sent inline: local paths are read here under the same rules as
    in-process scoring (``policy``: the allowed roots), and PIL images and bytes become base64, so
    the server needs no access to the dataset's files (a single video *file* is passed as it is: the
    server reads it under its own roots). A sample whose image cannot be read here gets that error
    and is not sent. A request the server refuses as a whole (wrong API key, ...) or a server that
    cannot be reached on the first call stops the run with :class:`EvalError`; a later call that
    fails after the client's retries marks its samples ``unavailable`` (errored items) and the run
    goes on. ``client_options`` go to ``RewardClient`` (timeouts, retries, chunk size).
    """

    def __init__(
        self, url: str, api_key: str | None, policy: Any, limits: Any = None, **client_options: Any
    ) -> None:
        try:
            from rlreward.client import RewardClient
        except ImportError as exc:
            raise EvalError(f"--url needs rlreward.client, which cannot be imported here: {exc}") from exc
        from rlreward.engine.config import Limits

        try:
            self.client = RewardClient(url=url, api_key=api_key, **client_options)
        except ValueError as exc:
            raise EvalError(str(exc)) from exc
        self.url = url
        self.policy = policy
        self.limits = limits or Limits()
        self._answered = False

    def _inline(self, ref: Any) -> str:
        from rlreward.engine.media import read_bytes

        if isinstance(ref, str) and ref.startswith(("data:", "http://", "https://")):
            return ref  # the server applies its own URL policy
        return image_data_uri(read_bytes(ref, self.policy, self.limits))

    def _wire(self, sample: dict) -> dict:
        if "messages" not in sample:
            return {**sample, "images": [self._inline(ref) for ref in sample.get("images", [])]}
        turns = [  # a copy down to the items, filled in place below
            {**m, "content": [dict(c) if isinstance(c, dict) else c for c in m["content"]]}
            if isinstance(m, dict) and isinstance(m.get("content"), list)
            else m
            for m in sample["messages"]
        ]
        for item in media_items(turns):
            if item.get("type") == "image" and "image" in item:
                item["image"] = self._inline(item["image"])
            elif item.get("type") == "video" and isinstance(item.get("video"), list):
                item["video"] = [self._inline(f) for f in item["video"]]
        return {**sample, "messages": turns}

    def info(self) -> dict[str, Any]:
        """The server's ``/v1/models`` description (its effective preprocessing), or why there is none."""
        try:
            return dict(self.client.models())
        except Exception as exc:  # an older server, or no rights to read it: the report says so
            return {"unavailable": f"GET /v1/models failed: {type(exc).__name__}: {exc}"}

    def score(self, samples: Sequence[Any]) -> list[ScoreResult]:
        from rlreward.client import RewardRequestError
        from rlreward.schema import SampleError

        results: list[ScoreResult | None] = [None] * len(samples)
        wire: list[tuple[int, dict]] = []
        for i, s in enumerate(samples):
            try:
                wire.append((i, self._wire(s)))
            except SampleError as exc:
                results[i] = exc.to_result()
        if wire:
            try:
                remote = self.client.score([s for _, s in wire])
                self._answered = True
            except RewardRequestError as exc:
                raise EvalError(f"the server refused the request: {exc}") from exc
            except Exception as exc:  # unreachable, overloaded, timed out, after the client's retries
                if not self._answered:
                    raise EvalError(
                        f"cannot score through {self.url}: {exc}; is the server up (rlreward serve)?"
                    ) from exc
                msg = f"{type(exc).__name__}: {exc}"
                remote = [ScoreResult.failed(ErrorCode.UNAVAILABLE, msg) for _ in wire]
            for (i, _), r in zip(wire, remote):
                results[i] = r
        return results  # type: ignore[return-value]

    def close(self) -> None:
        self.client.close()


def backend_info(backend: Any, fallback: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The effective preprocessing/model settings the backend reports (``Scorer.info()``, the
    server's ``/v1/models``); ``fallback`` (the configuration the run asked for) where it reports
    nothing."""
    info = getattr(backend, "info", None)
    if callable(info):
        try:
            got = info()
            if isinstance(got, dict) and got and "unavailable" not in got:
                return {
                    "reported_by": "scorer" if not isinstance(backend, RemoteBackend) else "server",
                    **got,
                }
            return {"reported_by": "requested configuration", **(fallback or {}), **(got or {})}
        except Exception as exc:  # never lose a finished run over its description
            return {"reported_by": "requested configuration", **(fallback or {}), "info_error": str(exc)}
    return {"reported_by": "requested configuration", **(fallback or {})}


# -- metrics -----------------------------------------------------------------------------------------
class Accuracy(BaseModel):
    """An accuracy in percent with its bootstrap 95% interval (``None`` when bootstrapping is off)."""

    value: float = Field(description="Accuracy in percent.")
    ci_low: float | None = Field(default=None, description="2.5th percentile of the bootstrap, percent.")
    ci_high: float | None = Field(default=None, description="97.5th percentile of the bootstrap, percent.")


class Headline(BaseModel):
    """The benchmark's own headline number, first in every report."""

    metric: str = Field(description="overall / score / accuracy / best_of_k_accuracy (see HEADLINE_METRIC).")
    value: float | None = Field(description="Percent; None when nothing could be computed.")
    ci_low: float | None = Field(default=None, description="Bootstrap 2.5th percentile, percent.")
    ci_high: float | None = Field(default=None, description="Bootstrap 97.5th percentile, percent.")
    paper: float | None = Field(default=None, description="The model card's number for it, percent.")
    paper_source: str | None = None
    macro: float | None = Field(default=None, description="VL-RewardBench: the macro average beside it.")
    paper_macro: float | None = Field(default=None, description="VL-RewardBench: the paper's macro.")
    acc_plus: float | None = Field(default=None, description="MM-RLHF-RewardBench: acc+ beside it.")
    rule: str = Field(description="What the number is, and the official code it follows.")


class CategoryResult(BaseModel):
    name: str
    pairs: int = Field(description="Items in the category, errored ones included.")
    correct: int = Field(description="Items scored right (pairs: chosen strictly higher).")
    ties: int = Field(description="Items with a tie (counted wrong; Multimodal RewardBench: coin).")
    errors: int = Field(description="Items with an answer that could not be scored (counted wrong).")
    accuracy: Accuracy = Field(description="correct / pairs.")
    accuracy_scored: float | None = Field(
        description="correct / (pairs - errors), percent; None if all errored."
    )
    paper: float | None = Field(default=None, description="The paper's number for this category, percent.")
    section: str | None = Field(default=None, description="RewardBench: the section of this subset.")
    weight: int | None = Field(default=None, description="RewardBench: EXAMPLE_COUNTS weight in its section.")
    acc_plus: float | None = Field(default=None, description="MM-RLHF: acc+ of the category, percent.")
    questions: int | None = Field(default=None, description="MM-RLHF: questions in acc+'s denominator.")


class SectionResult(BaseModel):
    """A RewardBench section: the EXAMPLE_COUNTS-weighted mean of its subsets' accuracies."""

    name: str
    subsets: list[str] = Field(description="The section's subsets present in the data.")
    pairs: int
    accuracy: Accuracy | None = Field(description="None when none of its subsets is present.")
    paper: float | None = None


class Variant(BaseModel):
    """Another way of counting the same scores, named, with what differs."""

    name: str
    description: str
    overall: Accuracy | None
    macro: Accuracy | None = None
    categories: dict[str, float | None] = Field(default_factory=dict, description="Percent.")
    counted: int = Field(description="Items in the denominator.")
    excluded: int = Field(default=0, description="Items left out of the denominator.")


class PairError(BaseModel):
    id: str
    category: str
    side: str = Field(description="Which sample failed: chosen / rejected / both / record / answer i.")
    code: str = Field(description="ErrorCode value.")
    message: str


class PairRecord(BaseModel):
    id: str
    category: str
    chosen_score: float | None
    rejected_score: float | None
    correct: bool = Field(description="Counted right in the headline (Multimodal RewardBench: coin on ties).")


class GroupRecord(BaseModel):
    id: str
    category: str
    scores: list[float | None] = Field(description="One score per answer, in the record's order.")
    best: list[int] = Field(description="Indices of the answers marked best.")
    correct: bool


class EvalReport(BaseModel):
    """The result of ``rlreward eval``; accuracies in percent. ``headline`` comes first."""

    headline: Headline
    dataset: str
    format: str
    model: str = Field(description="Model directory / id, or the server URL.")
    pairs: int = Field(description="Items evaluated (pairs; groups for best-of-k).")
    correct: int
    ties: int
    errors: int
    overall: Accuracy = Field(description="Pooled: correct / items over all categories.")
    macro: Accuracy = Field(description="Mean of the category accuracies.")
    categories: list[CategoryResult] = Field(description="RewardBench: one per subset.")
    sections: list[SectionResult] = Field(default_factory=list, description="RewardBench sections.")
    acc_plus: Accuracy | None = Field(default=None, description="MM-RLHF: questions with all pairs right.")
    questions: int | None = Field(default=None, description="MM-RLHF: distinct question ids.")
    variants: list[Variant] = Field(default_factory=list)
    paper: dict[str, float] | None = Field(default=None, description="The paper's numbers, percent.")
    paper_source: str | None = None
    rules: str = Field(
        default="correct iff score(chosen) - score(rejected) > tie_tolerance; ties and errored pairs count "
        "as wrong; "
        "overall = pooled, macro = mean over categories; 95% CI = stratified percentile bootstrap",
    )
    notes: list[str] = Field(default_factory=list, description="Which number is which; what was left out.")
    preprocessing: dict[str, Any] = Field(
        default_factory=dict,
        description="Effective model/preprocessing settings the scorer or server reported.",
    )
    limit: int | None = Field(default=None, description="--limit: only the first N records.")
    resumed: int = Field(default=0, description="Items whose scores were reused from the sidecar (--resume).")
    tie_tolerance: float = Field(description="Score differences up to this were ties.")
    bootstrap: int = Field(description="Bootstrap resamples (0: no intervals).")
    seed: int
    seconds: float = Field(description="Wall time of scoring.")
    error_list: list[PairError] = Field(default_factory=list)
    pair_scores: list[PairRecord] = Field(default_factory=list)
    group_scores: list[GroupRecord] = Field(default_factory=list, description="best-of-k: scores per group.")


def _pct(x: float) -> float:
    return round(100.0 * x, 4)


def _resample(groups: Mapping[str, Sequence[float]], n: int, seed: int) -> dict[str, Any]:
    """Stratified bootstrap: per stratum, ``n`` resampled means (numpy arrays)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for name, values in groups.items():
        arr = np.asarray(values, dtype=np.float64)
        idx = rng.integers(0, len(arr), size=(n, len(arr)))
        out[name] = arr[idx].sum(axis=1) / len(arr)
    return out


def _ci(v: Any) -> tuple[float, float]:
    import numpy as np

    lo, hi = np.percentile(v, [2.5, 97.5])
    return float(lo), float(hi)


def _bootstrap(
    groups: dict[str, list[int]], n: int, seed: int
) -> tuple[dict[str, tuple[float, float]], tuple[float, float], tuple[float, float]]:
    """Stratified percentile bootstrap: per-category, pooled and macro (low, high) in [0, 1]."""
    import numpy as np

    per_cat = _resample(groups, n, seed)
    sizes = {k: len(v) for k, v in groups.items()}
    pooled = sum(per_cat[k] * sizes[k] for k in per_cat) / sum(sizes.values())
    macro = np.mean(np.stack(list(per_cat.values())), axis=0)
    return {k: _ci(v) for k, v in per_cat.items()}, _ci(pooled), _ci(macro)


def _acc(value: float, lo_hi: tuple[float, float] | None) -> Accuracy:
    if lo_hi is None:
        return Accuracy(value=_pct(value))
    return Accuracy(value=_pct(value), ci_low=_pct(lo_hi[0]), ci_high=_pct(lo_hi[1]))


def _category_order(fmt: str, outcomes: Sequence[Outcome]) -> list[str]:
    seen = list(dict.fromkeys(o.category for o in outcomes))
    if fmt == "vl-rewardbench":
        first: list[str] = list(VL_REWARDBENCH_CATEGORIES)
    elif fmt == "rewardbench":
        first = [s for subs in REWARDBENCH_SECTIONS.values() for s in subs]
    elif fmt == "mm-rlhf-rewardbench":
        first = list(MM_RLHF_CATEGORIES)
    else:
        first = []
    return [c for c in first if c in seen] + [c for c in seen if c not in first]


def build_report(
    outcomes: Sequence[Outcome],
    *,
    dataset: str,
    fmt: str,
    model: str,
    bootstrap: int = 1000,
    seed: int = 0,
    seconds: float = 0.0,
    preprocessing: Mapping[str, Any] | None = None,
    limit: int | None = None,
    resumed: int = 0,
) -> EvalReport:
    """Headline, accuracies, intervals, per-category table, variants and error list of scored items
    (rules: module doc and :mod:`rlreward.offline.benchmarks`)."""
    if not outcomes:
        raise EvalError("no items to evaluate")
    notes: list[str] = []
    # What each item counts in the headline: Multimodal RewardBench's coin decides its ties.
    if fmt == "mm-rewardbench":
        credit = mm_rewardbench_credit([(getattr(o, "label", None), o.verdict) for o in outcomes])  # type: ignore[union-attr]
        flips = sum(o.tie for o in outcomes)
        notes.append(
            f"{flips} tie(s) decided by the official coin (random.seed({MM_REWARDBENCH_SEED}), "
            "'A' if random.random() < 0.5, drawn in file order), as 2_get_accuracy.py does for a "
            "judgment without [[A]]/[[B]]; errored items are wrong and draw nothing"
        )
    else:
        credit = [o.correct for o in outcomes]
    order = _category_order(fmt, outcomes)
    groups = {name: [int(c) for o, c in zip(outcomes, credit) if o.category == name] for name in order}
    groups = {k: v for k, v in groups.items() if v}
    paper_numbers = PAPER.get(fmt)
    paper = dict(paper_numbers.values) if paper_numbers else None
    boot = _resample(groups, bootstrap, seed) if bootstrap > 0 else None

    categories = []
    for name, flags in groups.items():
        cat = [o for o in outcomes if o.category == name]
        n_err = sum(o.errored for o in cat)
        categories.append(
            CategoryResult(
                name=name,
                pairs=len(cat),
                correct=sum(flags),
                ties=sum(o.tie for o in cat),
                errors=n_err,
                accuracy=_acc(sum(flags) / len(cat), _ci(boot[name]) if boot else None),
                accuracy_scored=_pct(sum(flags) / (len(cat) - n_err)) if len(cat) > n_err else None,
                paper=(paper or {}).get(name),
                section=rewardbench_section_of(name) if fmt == "rewardbench" else None,
                weight=REWARDBENCH_EXAMPLE_COUNTS.get(name) if fmt == "rewardbench" else None,
            )
        )
    correct = sum(credit)
    sizes = {k: len(v) for k, v in groups.items()}
    pooled_ci = macro_ci = None
    if boot:
        import numpy as np

        pooled_ci = _ci(sum(boot[k] * sizes[k] for k in boot) / len(outcomes))
        macro_ci = _ci(np.mean(np.stack(list(boot.values())), axis=0))
    overall = _acc(correct / len(outcomes), pooled_ci)
    macro = _acc(sum(c.correct / c.pairs for c in categories) / len(categories), macro_ci)

    metric = HEADLINE_METRIC[fmt]
    headline = Headline(
        metric=metric,
        value=overall.value,
        ci_low=overall.ci_low,
        ci_high=overall.ci_high,
        rule="pooled accuracy: correct / items; ties and errored items wrong",
    )
    sections: list[SectionResult] = []
    variants: list[Variant] = []
    acc_plus: Accuracy | None = None
    questions: int | None = None

    if fmt == "vl-rewardbench":
        headline.macro = macro.value
        headline.paper, headline.paper_macro = paper["overall"], paper["macro"]  # type: ignore[index]
        headline.rule = (
            "overall = pooled over all items, ties and errored items wrong (macro = mean of the 3 "
            "categories); the official cal.py count, no-verdict items left out, is the variant "
            "vl_rewardbench_official"
        )
        variants.append(_vl_official_variant(outcomes, bootstrap, seed))
    elif fmt == "mm-rewardbench":
        headline.rule = (
            "overall = 'all' of 2_get_accuracy.py: pooled over items, a tie decided by its seeded "
            "coin, errored items wrong; safety/reasoning split by ID as it splits them"
        )
    elif fmt == "rewardbench":
        rb = rewardbench_scores((o.category, bool(c)) for o, c in zip(outcomes, credit))
        sec_ci: dict[str, tuple[float, float]] = {}
        score_ci = None
        if boot:
            sec_boot = {}
            for section, subs in REWARDBENCH_SECTIONS.items():
                present = [s for s in subs if s in boot]
                if present:
                    w = sum(REWARDBENCH_EXAMPLE_COUNTS[s] for s in present)
                    sec_boot[section] = sum(boot[s] * REWARDBENCH_EXAMPLE_COUNTS[s] for s in present) / w
            sec_ci = {k: _ci(v) for k, v in sec_boot.items()}
            if sec_boot:
                score_ci = _ci(sum(sec_boot.values()) / len(sec_boot))
        for section, subs in REWARDBENCH_SECTIONS.items():
            present = [s for s in subs if s in rb.subsets]
            value = rb.sections[section]
            sections.append(
                SectionResult(
                    name=section,
                    subsets=present,
                    pairs=sum(rb.subsets[s][1] for s in present),
                    accuracy=None if value is None else _acc(value, sec_ci.get(section)),
                    paper=(paper or {}).get(section),
                )
            )
        headline.value = None if rb.score is None else _pct(rb.score)
        headline.ci_low, headline.ci_high = (
            (_pct(score_ci[0]), _pct(score_ci[1])) if score_ci else (None, None)
        )
        headline.paper = (paper or {}).get("score")
        headline.rule = (
            "score = unweighted mean of the 4 sections (Chat, Chat Hard, Safety, Reasoning); a section = "
            "the EXAMPLE_COUNTS-weighted mean of its subsets' accuracies (math-prm weighted 984), "
            "rewardbench/utils.py calculate_scores_per_section; a pair is right iff chosen > rejected"
        )
        if rb.missing_sections:
            notes.append(
                f"sections with no subset in the data: {', '.join(rb.missing_sections)}; the score is the "
                "mean of the others (the official function would count them as 0)"
            )
        if rb.unknown_subsets:
            notes.append(f"subsets outside the official map (in no section): {', '.join(rb.unknown_subsets)}")
    elif fmt == "mm-rlhf-rewardbench":
        rows = [(o.group or o.id, o.source or "", bool(c)) for o, c in zip(outcomes, credit)]  # type: ignore[union-attr]
        res = mm_rlhf_scores(rows)
        by_q: dict[str, list[bool]] = {}
        for q, _, ok in rows:
            by_q.setdefault(q, []).append(ok)
        q_flags = [int(all(v)) for v in by_q.values()]
        plus_ci = _ci(_resample({"q": q_flags}, bootstrap, seed + 1)["q"]) if bootstrap > 0 else None
        acc_plus = _acc(res.acc_plus, plus_ci)
        questions = res.questions
        for c in categories:
            stats = res.categories.get(c.name)
            if stats is not None:
                c.acc_plus = _pct(stats["acc_plus"])
                c.questions = int(stats["acc_plus_questions"])
        headline.acc_plus = acc_plus.value
        headline.rule = (
            "accuracy = pairs with rewards[0] > rewards[1] (chosen first; ties wrong) / pairs; acc_plus = "
            "question ids with every pair right / ids; cal_performance_mmreweard_bench.py"
        )
    elif fmt == "best-of-k":
        right = total = 0
        for o in outcomes:
            if isinstance(o, GroupOutcome) and not o.errored:
                r, t = ranked_pairs_accuracy(o.scores, o.ranks, o.tie_tolerance)
                right, total = right + r, total + t
            elif isinstance(o, GroupOutcome):
                k = len(o.ranks)
                total += sum(1 for i in range(k) for j in range(k) if o.ranks[i] < o.ranks[j])
        variants.append(
            Variant(
                name="ranked_pairs",
                description="answer pairs with different ranks ordered right by score (ties, errors wrong)",
                overall=Accuracy(value=_pct(right / total)) if total else None,
                counted=total,
            )
        )
        headline.rule = (
            "best_of_k_accuracy = groups whose best answer scores above every other answer (a tie for the "
            "top is wrong; with several marked best, any of them on top); no official scorer exists"
        )
    return EvalReport(
        headline=headline,
        dataset=dataset,
        format=fmt,
        model=model,
        pairs=len(outcomes),
        correct=correct,
        ties=sum(o.tie for o in outcomes),
        errors=sum(o.errored for o in outcomes),
        overall=overall,
        macro=macro,
        categories=categories,
        sections=sections,
        acc_plus=acc_plus,
        questions=questions,
        variants=variants,
        paper=paper,
        paper_source=paper_numbers.source if paper_numbers else None,
        notes=notes,
        preprocessing=dict(preprocessing or {}),
        limit=limit,
        resumed=resumed,
        tie_tolerance=outcomes[0].tie_tolerance,
        bootstrap=max(0, bootstrap),
        seed=seed,
        seconds=round(seconds, 3),
        error_list=[
            PairError(
                id=o.id,
                category=o.category,
                side=o.error_side or "",
                code=o.error_code or "",
                message=o.error_message or "",
            )
            for o in outcomes
            if o.errored
        ],
        pair_scores=[
            PairRecord(
                id=o.id,
                category=o.category,
                chosen_score=o.chosen_score,
                rejected_score=o.rejected_score,
                correct=bool(c),
            )
            for o, c in zip(outcomes, credit)
            if isinstance(o, PairOutcome)
        ],
        group_scores=[
            GroupRecord(id=o.id, category=o.category, scores=o.scores, best=o.best, correct=bool(c))
            for o, c in zip(outcomes, credit)
            if isinstance(o, GroupOutcome)
        ],
    )


def _vl_official_variant(outcomes: Sequence[Outcome], bootstrap: int, seed: int) -> Variant:
    """``cal.py``'s count: no-verdict items (ties, errors) and repeated keys left out."""
    rows = [(getattr(o, "key", None) or o.id, o.category, o.verdict) for o in outcomes]  # type: ignore[union-attr]
    off = vl_rewardbench_official(rows)
    judged: dict[str, list[int]] = {}
    seen: set[str] = set()
    for key, cat, v in rows:
        if key in seen:
            continue
        seen.add(key)
        if v in ("chosen", "rejected"):
            judged.setdefault(cat, []).append(int(v == "chosen"))
    cis = _bootstrap(judged, bootstrap, seed) if bootstrap > 0 and judged else None
    excluded = sum(g["no_verdict"] for g in off.groups.values()) + off.duplicates
    return Variant(
        name="vl_rewardbench_official",
        description=(
            "VL-RewardBench cal.py: accuracy = agree / (agree + reject) per group; items without a verdict "
            "(a tie or an errored answer) and repeated id+query+responses keys are left out of the "
            "denominator; overall pooled, macro = mean of the group accuracies"
        ),
        overall=None if off.overall is None else _acc(off.overall, cis[1] if cis else None),
        macro=None if off.macro is None else _acc(off.macro, cis[2] if cis else None),
        categories={k: (None if v is None else _pct(v)) for k, v in off.accuracy.items()},
        counted=sum(g["agree"] + g["reject"] for g in off.groups.values()),
        excluded=excluded,
    )


# -- report files ------------------------------------------------------------------------------------
def _fmt_acc(a: Accuracy | None) -> str:
    if a is None:
        return "–"
    if a.ci_low is None or a.ci_high is None:
        return f"{a.value:.1f}"
    return f"{a.value:.1f} ({a.ci_low:.1f}–{a.ci_high:.1f})"


def _headline_line(report: EvalReport) -> str:
    h = report.headline
    value = "–" if h.value is None else f"{h.value:.1f}%"
    ci = f" (95% CI {h.ci_low:.1f}–{h.ci_high:.1f})" if h.ci_low is not None and h.ci_high is not None else ""
    parts = [f"**Headline — {h.metric}: {value}{ci}**"]
    parts.append(f"paper {h.paper:.1f}" if h.paper is not None else "paper: no number reported")
    if h.macro is not None:
        parts.append(
            f"macro {h.macro:.1f}" + (f" (paper {h.paper_macro:.1f})" if h.paper_macro is not None else "")
        )
    if h.acc_plus is not None:
        parts.append(f"acc+ {h.acc_plus:.1f}")
    return " · ".join(parts)


_PREPROCESSING_KEYS = (
    "reported_by",
    "model",
    "dtype",
    "device",
    "min_pixels",
    "max_pixels",
    "max_batch_tokens",
)


def markdown_table(report: EvalReport) -> str:
    """Headline first, then the per-category table (with the paper's column where it has numbers),
    the RewardBench sections, the variants, the preprocessing settings and the error summary."""
    paper = report.paper or {}
    lines = [_headline_line(report), "", f"{report.headline.rule}.", ""]
    lines.append(f"**{report.format}** `{report.dataset}` scored by `{report.model}`")
    lines.append("")
    if report.sections:
        lines += [
            "| section | subsets | pairs | accuracy % (95% CI) | paper % |",
            "|---|---:|---:|---:|---:|",
        ]
        for s in report.sections:
            p = f"{s.paper:.1f}" if s.paper is not None else "–"
            lines.append(f"| {s.name} | {len(s.subsets)} | {s.pairs} | {_fmt_acc(s.accuracy)} | {p} |")
        h = report.headline
        hv = Accuracy(value=h.value, ci_low=h.ci_low, ci_high=h.ci_high) if h.value is not None else None
        hp = f"{h.paper:.1f}" if h.paper is not None else "–"
        lines += [f"| **score** (mean of sections) | | {report.pairs} | {_fmt_acc(hv)} | {hp} |", ""]
    has_paper = any(c.paper is not None for c in report.categories) or "overall" in paper
    plus = report.acc_plus is not None
    name = "subset" if report.format == "rewardbench" else "category"
    head = f"| {name} | items | correct | ties | errors | accuracy % (95% CI) |"
    sep = "|---|---:|---:|---:|---:|---:|"
    if plus:
        head, sep = head + " acc+ % |", sep + "---:|"
    if has_paper:
        head, sep = head + " paper % |", sep + "---:|"
    lines += [head, sep]

    def row(label: str, n: Any, c: Any, t: Any, e: Any, a: Accuracy, ap: Any, p: float | None) -> str:
        cells = f"| {label} | {n} | {c} | {t} | {e} | {_fmt_acc(a)} |"
        if plus:
            cells += f" {ap if ap is not None else '–'} |"
        if has_paper:
            cells += f" {p:.1f} |" if p is not None else " – |"
        return cells

    for c in report.categories:
        ap = f"{c.acc_plus:.1f}" if c.acc_plus is not None else None
        lines.append(row(c.name, c.pairs, c.correct, c.ties, c.errors, c.accuracy, ap, c.paper))
    total_plus = _fmt_acc(report.acc_plus) if report.acc_plus is not None else None
    lines.append(
        row(
            "**overall**",
            report.pairs,
            report.correct,
            report.ties,
            report.errors,
            report.overall,
            total_plus,
            paper.get("overall"),
        )
    )
    lines.append(row("**macro**", "", "", "", "", report.macro, None, paper.get("macro")))
    lines.append("")
    lines.append(
        "An item is right only when the chosen (best) answer scores strictly higher; ties and items "
        "with an unscorable answer count as wrong (Multimodal RewardBench: its seeded coin decides ties)."
    )
    for v in report.variants:
        text = f"Variant **{v.name}**: overall {_fmt_acc(v.overall)}"
        if v.macro is not None:
            text += f", macro {_fmt_acc(v.macro)}"
        if v.categories:
            text += (
                " ("
                + ", ".join(f"{k} {'–' if x is None else f'{x:.1f}'}" for k, x in v.categories.items())
                + ")"
            )
        text += f"; {v.counted} counted, {v.excluded} left out — {v.description}."
        lines.append(text)
    for n in report.notes:
        lines.append(f"Note: {n}.")
    if report.paper_source:
        lines.append(f"Paper: {report.paper_source}.")
    if report.preprocessing:
        shown = {k: report.preprocessing[k] for k in _PREPROCESSING_KEYS if k in report.preprocessing}
        lines.append(
            "Preprocessing: " + ", ".join(f"{k}={v}" for k, v in shown.items()) + " (all of it in the JSON)."
        )
    run = [f"--limit {report.limit} (the first {report.limit} records)"] if report.limit is not None else []
    if report.resumed:
        run.append(f"{report.resumed} item(s) reused from the sidecar (--resume)")
    if run:
        lines.append("Run: " + "; ".join(run) + ".")
    if report.error_list:
        codes: dict[str, int] = {}
        for e in report.error_list:
            codes[e.code] = codes.get(e.code, 0) + 1
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(codes.items()))
        lines.append(f"Errored items: {len(report.error_list)} ({summary}); listed in the JSON report.")
    return "\n".join(lines) + "\n"


def _plot_rows(report: EvalReport) -> list[tuple[str, Accuracy, float]]:
    """(label, ours, paper or nan) for the chart: the sections and score for RewardBench, else the
    categories, the headline and (where it means something) macro / acc+."""
    paper = report.paper or {}
    h = report.headline
    head = Accuracy(value=h.value if h.value is not None else math.nan, ci_low=h.ci_low, ci_high=h.ci_high)
    if report.sections:
        rows = [(s.name, s.accuracy, paper.get(s.name, math.nan)) for s in report.sections if s.accuracy]
        return [*rows, ("score", head, paper.get("score", math.nan))]  # type: ignore[list-item]
    rows = [(c.name, c.accuracy, c.paper if c.paper is not None else math.nan) for c in report.categories]
    rows.append((h.metric, head, paper.get("overall", math.nan)))
    if report.acc_plus is not None:
        rows.append(("acc+", report.acc_plus, math.nan))
    elif report.format != "best-of-k":
        rows.append(("macro", report.macro, paper.get("macro", math.nan)))
    return rows


def plot_report(report: EvalReport, path: str | Path) -> Path:
    """Bar chart of the rows of :func:`_plot_rows` (95% CI whiskers), beside the paper's numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _plot_rows(report)
    names = [r[0] for r in rows]
    ours = [r[1] for r in rows]
    pv = [r[2] for r in rows]
    has_paper = any(not math.isnan(v) for v in pv)
    x = list(range(len(names)))
    width = 0.38 if has_paper else 0.6
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names) + 1.5), 3.8))
    vals = [a.value for a in ours]
    err = None
    if all(a.ci_low is not None and a.ci_high is not None for a in ours):
        err = [[max(0.0, a.value - a.ci_low) for a in ours], [max(0.0, a.ci_high - a.value) for a in ours]]  # type: ignore[operator]
    shift = -width / 2 if has_paper else 0.0
    bars = ax.bar([i + shift for i in x], vals, width, yerr=err, capsize=3, label="this run", color="#4c72b0")
    ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    if has_paper:
        pb = ax.bar([i + width / 2 for i in x], pv, width, label="paper", color="#dd8452")
        ax.bar_label(pb, fmt="%.1f", fontsize=7, padding=2)
    if report.format != "best-of-k":
        ax.axhline(50, color="grey", lw=0.8, ls="--", label="chance (50%)")
    ax.set_xticks(x, names, rotation=20 if len(names) > 6 else 0, fontsize=8)
    ax.set_ylim(0, 122)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("accuracy (%)")
    h = report.headline
    value = "–" if h.value is None else f"{h.value:.1f}"
    ax.set_title(
        f"{report.format}: {Path(report.model).name or report.model} ({report.pairs} items), "
        f"{h.metric} {value}",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="upper right", ncol=3, frameon=False)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def write_reports(report: EvalReport, json_path: str | Path) -> tuple[Path, Path, Path]:
    """Write ``report.json``, ``report.md`` and ``report.png`` (same stem); returns the three paths."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    md = json_path.with_suffix(".md")
    md.write_text(markdown_table(report), encoding="utf-8")
    png = plot_report(report, json_path.with_suffix(".png"))
    return json_path, md, png
