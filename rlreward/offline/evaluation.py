"""``rlreward eval``: pairwise accuracy of a reward model on preference benchmarks.

Check that a deployment scores like the paper (Skywork-VL-Reward-7B on VL-RewardBench: 73.1 overall,
69.0 macro; general 66.0, hallucination 80.0, reasoning 61.0) before spending GPU-days of RL on it.

Formats (``--format``; ``auto`` looks at the first record's keys):

* ``vl-rewardbench`` (HF ``MMInstruction/VL-RewardBench``): ``id``, ``query``, ``image`` (or
  ``image_path``), ``response`` [2], ``human_ranking`` [2] (rank 0 is the better answer). The category
  comes from the id prefix exactly as the official ``cal.py`` does it: the prefix is the id up to its
  first ``_`` or ``-``; ``RLAIF``, ``RLHF`` and ``hallucination`` (POVID) → hallucination;
  ``mathverse``, ``mmmu`` → reasoning; ``wildvision`` and everything else (VLFeedback) → general.
* ``mm-rewardbench`` (``facebookresearch/multimodal_rewardbench`` ``all_data.json``): ``ID``, ``Text``,
  ``Image``, ``Output1``, ``Output2``, ``Better`` (``"Output1"``/``"Output2"``), ``Meta.Category``
  (nested or flattened). As in the official ``2_get_accuracy.py``, ``safety`` splits into
  ``safety/bias`` (IDs starting ``pairs``) and ``safety/toxicity``, ``reasoning`` into
  ``reasoning/math`` (IDs starting ``math``) and ``reasoning/coding``.
* ``pairs`` (generic): ``prompt`` (string or messages without the answer), ``images`` (list, or one
  ``image``), ``chosen``, ``rejected``, optional ``category`` and ``id``.

Files are JSON (a list, or ``{"data": [...]}``), JSONL or parquet, or a directory of them (files
whose name holds ``--split`` are preferred); anything else is taken as a Hugging Face dataset id
(needs ``datasets`` and a reachable hub). Images may be paths, base64, data URIs, bytes or HF-style
``{"bytes": ..., "path": ...}`` dicts. Paths follow the rules of ``rlreward score``: they are read
only under ``--image-root`` (default: the dataset's own folder), and relative paths are relative to
those roots.

Scoring rules (pinned down by the tests):

* a pair is **correct only when the chosen answer scores strictly higher**; a tie is wrong (a model
  that gives every answer the same score gets 0%, not 50%) and is counted in ``ties``. Scores within
  ``--tie-tolerance`` (default 1e-5, about the fp32 resolution of a score near 20) are a tie: the
  same answer scored in two rows of a batch can differ in the 7th digit, and that is no preference;
* a pair whose chosen or rejected sample could not be scored (missing image, path outside the
  roots, too many tokens, server unavailable, malformed record...) is an **error**: it counts as
  wrong in every accuracy (the denominator is always all pairs, so a broken deployment cannot look
  better by failing), and it is listed in ``errors`` with its id, side, code and message;
  ``accuracy_scored`` gives the accuracy over error-free pairs for diagnosis;
* overall accuracy is pooled over pairs; macro accuracy is the mean of the category accuracies
  (over the categories present);
* 95% intervals are percentile bootstrap intervals (``--bootstrap`` resamples, stratified by
  category so that every resample keeps the benchmark's composition; seeded by ``--seed``).

Outputs: a JSON report (:class:`EvalReport`), a Markdown table beside it (``.md``, also printed) and
a PNG bar chart (``.png``), both next to the paper's numbers where the paper has some.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from rlreward.schema import ErrorCode, ScoreResult

log = logging.getLogger("rlreward")

FORMATS = ("vl-rewardbench", "mm-rewardbench", "pairs")

#: Skywork-VL-Reward-7B on VL-RewardBench (tech report Table 3 / model card), in percent.
PAPER_VL_REWARDBENCH: dict[str, float] = {
    "general": 66.0,
    "hallucination": 80.0,
    "reasoning": 61.0,
    "overall": 73.1,
    "macro": 69.0,
}
PAPER_SOURCE = "Skywork-VL-Reward-7B, arXiv 2505.07263 Table 3"
#: Category order of the official VL-RewardBench table.
VL_REWARDBENCH_CATEGORIES = ("general", "hallucination", "reasoning")


class EvalError(Exception):
    """The dataset or the options cannot be evaluated; the message says what to do."""


# -- pairs -------------------------------------------------------------------------------------------
@dataclass
class Pair:
    """One preference pair: the same prompt (and images) with a better and a worse answer.

    ``images`` hold any image reference the scorer takes (path, base64, data URI, bytes, HF
    ``{"bytes", "path"}`` dict, PIL image). ``source`` names the sub-dataset where a benchmark has
    them (VL-RewardBench: ``rlaif-v``, ``povid``...). ``error`` is set when the record itself is
    malformed; such a pair is not scored and counts as an errored pair.
    """

    id: str
    category: str
    prompt: str | list[dict]
    images: list[Any]
    chosen: str
    rejected: str
    source: str | None = None
    error: tuple[str, str] | None = None  # (ErrorCode value, message)

    def samples(self) -> tuple[dict, dict]:
        """(chosen sample, rejected sample) in the ``{"prompt", "response", "images"}`` form."""
        base = {"prompt": self.prompt, "images": list(self.images)}
        return {**base, "response": self.chosen}, {**base, "response": self.rejected}


@dataclass
class PairOutcome:
    """The scores of one pair, or why it has none."""

    id: str
    category: str
    chosen_score: float | None
    rejected_score: float | None
    error_side: Literal["chosen", "rejected", "both", "record"] | None = None
    error_code: str | None = None
    error_message: str | None = None
    tie_tolerance: float = 1e-5

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


def outcome_of(
    pair: Pair, chosen: ScoreResult | None, rejected: ScoreResult | None, tie_tolerance: float = 1e-5
) -> PairOutcome:
    """Combine the two results of ``pair`` (``None`` results only for a malformed record)."""
    if pair.error is not None or chosen is None or rejected is None:
        code, msg = pair.error or (ErrorCode.INVALID_SAMPLE.value, "record was not scored")
        return PairOutcome(pair.id, pair.category, None, None, "record", code, msg, tie_tolerance)
    bad = [(side, r) for side, r in (("chosen", chosen), ("rejected", rejected)) if not r.ok]
    if not bad:
        return PairOutcome(pair.id, pair.category, chosen.score, rejected.score, tie_tolerance=tie_tolerance)
    side = "both" if len(bad) == 2 else bad[0][0]
    err = bad[0][1].error
    return PairOutcome(
        pair.id,
        pair.category,
        chosen.score,
        rejected.score,
        side,
        err.code,
        err.message,  # type: ignore[arg-type]
        tie_tolerance,
    )


class ScoringBackend(Protocol):
    """Anything that scores samples: :class:`rlreward.engine.scorer.Scorer`, :class:`RemoteBackend`."""

    def score(self, samples: Sequence[Any]) -> list[ScoreResult]: ...


def score_pairs(
    pairs: Sequence[Pair],
    backend: ScoringBackend,
    *,
    chunk_pairs: int = 32,
    tie_tolerance: float = 1e-5,
    progress: Callable[[int], None] | None = None,
) -> list[PairOutcome]:
    """Score every pair with ``backend``, ``chunk_pairs`` pairs per call (both answers of a pair in
    the same call, so the scorer can share their prompt prefix). ``outcomes[i]`` is ``pairs[i]``'s.
    ``progress(n)`` is called with the number of pairs just finished. Score differences within
    ``tie_tolerance`` are ties (wrong)."""
    outcomes: list[PairOutcome] = []
    for start in range(0, len(pairs), max(1, chunk_pairs)):
        chunk = pairs[start : start + chunk_pairs]
        todo = [p for p in chunk if p.error is None]
        samples = [s for p in todo for s in p.samples()]
        results = iter(backend.score(samples) if samples else [])
        for p in chunk:
            if p.error is not None:
                outcomes.append(outcome_of(p, None, None, tie_tolerance))
            else:
                c, r = next(results), next(results)
                outcomes.append(outcome_of(p, c, r, tie_tolerance))
        if progress:
            progress(len(chunk))
    return outcomes


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


def detect_format(record: Any) -> str:
    """The format a record looks like, from its keys."""
    if isinstance(record, dict):
        keys = set(record)
        if {"response", "human_ranking"} <= keys:
            return "vl-rewardbench"
        if {"Output1", "Output2", "Better"} <= keys:
            return "mm-rewardbench"
        if {"chosen", "rejected"} <= keys:
            return "pairs"
    shown = sorted(record)[:12] if isinstance(record, dict) else type(record).__name__
    raise EvalError(f"cannot tell the dataset's format from its first record (keys: {shown}); pass --format")


def vl_rewardbench_category(record_id: str) -> tuple[str, str]:
    """(category, sub-dataset) of a VL-RewardBench id, as the official ``cal.py`` maps them."""
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


def mm_rewardbench_category(record: dict) -> str:
    """Category of a Multimodal RewardBench record, split as the official ``2_get_accuracy.py`` does."""
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


def _images(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [v for v in value if v is not None]
    if hasattr(value, "tolist") and not isinstance(value, (bytes, str)):  # numpy arrays from parquet
        return [v for v in value.tolist() if v is not None]
    return [value]


def _bad(rid: str, category: str, why: str) -> Pair:
    return Pair(rid, category, "", [], "", "", error=(ErrorCode.INVALID_SAMPLE.value, why))


def _pair_vl_rewardbench(i: int, r: dict) -> Pair:
    rid = str(r.get("id", f"#{i}"))
    category, source = vl_rewardbench_category(rid)
    responses, ranking = r.get("response"), r.get("human_ranking")
    responses = list(responses) if responses is not None else None
    ranking = [int(x) for x in ranking] if ranking is not None else None
    if not responses or len(responses) != 2 or not ranking or len(ranking) != 2 or ranking[0] == ranking[1]:
        return _bad(
            rid,
            category,
            f"record {rid}: needs 'response' [2] and a strict 'human_ranking' [2], got {ranking!r}",
        )
    best = ranking.index(min(ranking))  # rank 0 is the better answer
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


def _pair_mm_rewardbench(i: int, r: dict) -> Pair:
    rid = str(r.get("ID", f"#{i}"))
    category = mm_rewardbench_category(r)
    better = r.get("Better")
    if better not in ("Output1", "Output2") or r.get("Output1") is None or r.get("Output2") is None:
        return _bad(
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
    )


def _pair_generic(i: int, r: dict) -> Pair:
    rid = str(r.get("id", f"#{i}"))
    category = str(r.get("category") or "all")
    if not isinstance(r.get("chosen"), str) or not isinstance(r.get("rejected"), str) or "prompt" not in r:
        return _bad(rid, category, f"record {rid}: needs 'prompt', and 'chosen' and 'rejected' strings")
    images = r.get("images") if r.get("images") is not None else r.get("image")
    return Pair(rid, category, r["prompt"], _images(images), r["chosen"], r["rejected"])


_CONVERTERS = {
    "vl-rewardbench": _pair_vl_rewardbench,
    "mm-rewardbench": _pair_mm_rewardbench,
    "pairs": _pair_generic,
}


def records_to_pairs(records: Iterable[Any], fmt: str) -> list[Pair]:
    """Records of format ``fmt`` → pairs; a malformed record becomes an errored pair (never dropped)."""
    convert = _CONVERTERS[fmt]
    return [
        convert(i, r) if isinstance(r, dict) else _bad(f"#{i}", "unknown", f"record #{i} is not an object")
        for i, r in enumerate(records)
    ]


def load_pairs(
    dataset: str, fmt: str = "auto", *, split: str | None = "test", limit: int | None = None
) -> tuple[list[Pair], str, Path | None]:
    """(pairs, resolved format, dataset folder or None) for a local path or HF dataset id."""
    records, base = read_records(dataset, split)
    if not records:
        raise EvalError(f"{dataset} holds no records")
    if limit is not None:
        records = records[:limit]
    if fmt == "auto":
        fmt = detect_format(records[0])
    elif fmt not in FORMATS:
        raise EvalError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    pairs = records_to_pairs(records, fmt)
    if all(p.error for p in pairs):
        raise EvalError(f"no record of {dataset} is a {fmt} pair ({pairs[0].error[1]}); check --format")  # type: ignore[index]
    return pairs, fmt, base


# -- remote scoring ----------------------------------------------------------------------------------
class RemoteBackend:
    """Scores through a running server with :class:`rlreward.client.RewardClient` (HTTP).

    Images are sent inline: local paths are read here under the same rules as in-process scoring
    (``policy``: the allowed roots), and PIL images and bytes become base64, so the server needs no
    access to the dataset's files. A sample whose image cannot be read here gets that error and is
    not sent. A request the server refuses as a whole (wrong API key, ...) or a server that cannot
    be reached on the first call stops the run with :class:`EvalError`; a later call that fails
    after the client's retries marks its samples ``unavailable`` (errored pairs) and the run goes on.
    ``client_options`` go to ``RewardClient`` (timeouts, retries, chunk size).
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
        from PIL import Image

        from rlreward.engine.media import read_bytes

        if isinstance(ref, str) and ref.startswith(("data:", "http://", "https://")):
            return ref  # the server applies its own URL policy
        data = read_bytes(ref, self.policy, self.limits)
        if isinstance(data, Image.Image):
            buf = io.BytesIO()
            data.save(buf, "PNG")
            data = buf.getvalue()
        return base64.b64encode(data).decode("ascii")

    def score(self, samples: Sequence[Any]) -> list[ScoreResult]:
        from rlreward.client import RewardRequestError
        from rlreward.schema import SampleError

        results: list[ScoreResult | None] = [None] * len(samples)
        wire: list[tuple[int, dict]] = []
        for i, s in enumerate(samples):
            try:
                wire.append((i, {**s, "images": [self._inline(ref) for ref in s.get("images", [])]}))
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


# -- metrics -----------------------------------------------------------------------------------------
class Accuracy(BaseModel):
    """An accuracy in percent with its bootstrap 95% interval (``None`` when bootstrapping is off)."""

    value: float = Field(description="Accuracy in percent.")
    ci_low: float | None = Field(default=None, description="2.5th percentile of the bootstrap, percent.")
    ci_high: float | None = Field(default=None, description="97.5th percentile of the bootstrap, percent.")


class CategoryResult(BaseModel):
    name: str
    pairs: int = Field(description="Pairs in the category, errored ones included.")
    correct: int = Field(description="Pairs whose chosen answer scored strictly higher.")
    ties: int = Field(description="Pairs scored equal (counted wrong).")
    errors: int = Field(description="Pairs with a sample that could not be scored (counted wrong).")
    accuracy: Accuracy = Field(description="correct / pairs.")
    accuracy_scored: float | None = Field(
        description="correct / (pairs - errors), percent; None if all errored."
    )
    paper: float | None = Field(default=None, description="The paper's number for this category, percent.")


class PairError(BaseModel):
    id: str
    category: str
    side: Literal["chosen", "rejected", "both", "record"] = Field(description="Which sample failed.")
    code: str = Field(description="ErrorCode value.")
    message: str


class PairRecord(BaseModel):
    id: str
    category: str
    chosen_score: float | None
    rejected_score: float | None
    correct: bool


class EvalReport(BaseModel):
    """The result of ``rlreward eval``; accuracies in percent."""

    dataset: str
    format: str
    model: str = Field(description="Model directory / id, or the server URL.")
    pairs: int
    correct: int
    ties: int
    errors: int
    overall: Accuracy = Field(description="Pooled: correct / pairs over all categories.")
    macro: Accuracy = Field(description="Mean of the category accuracies.")
    categories: list[CategoryResult]
    paper: dict[str, float] | None = Field(default=None, description="The paper's numbers, percent.")
    paper_source: str | None = None
    rules: str = Field(
        default="correct iff score(chosen) - score(rejected) > tie_tolerance; ties and errored pairs count "
        "as wrong; "
        "overall = pooled, macro = mean over categories; 95% CI = stratified percentile bootstrap",
    )
    tie_tolerance: float = Field(description="Score differences up to this were ties.")
    bootstrap: int = Field(description="Bootstrap resamples (0: no intervals).")
    seed: int
    seconds: float = Field(description="Wall time of scoring.")
    error_list: list[PairError] = Field(default_factory=list)
    pair_scores: list[PairRecord] = Field(default_factory=list)


def _pct(x: float) -> float:
    return round(100.0 * x, 4)


def _bootstrap(
    groups: dict[str, list[int]], n: int, seed: int
) -> tuple[dict[str, tuple[float, float]], tuple[float, float], tuple[float, float]]:
    """Stratified percentile bootstrap: per-category, pooled and macro (low, high) in [0, 1]."""
    import numpy as np

    rng = np.random.default_rng(seed)
    per_cat: dict[str, Any] = {}
    sums, sizes = np.zeros(n), 0
    for name, outcomes in groups.items():
        arr = np.asarray(outcomes, dtype=np.float64)
        idx = rng.integers(0, len(arr), size=(n, len(arr)))
        s = arr[idx].sum(axis=1)
        per_cat[name] = s / len(arr)
        sums += s
        sizes += len(arr)
    macro = np.mean(np.stack(list(per_cat.values())), axis=0)

    def ci(v: Any) -> tuple[float, float]:
        lo, hi = np.percentile(v, [2.5, 97.5])
        return float(lo), float(hi)

    return {k: ci(v) for k, v in per_cat.items()}, ci(sums / sizes), ci(macro)


def build_report(
    outcomes: Sequence[PairOutcome],
    *,
    dataset: str,
    fmt: str,
    model: str,
    bootstrap: int = 1000,
    seed: int = 0,
    seconds: float = 0.0,
) -> EvalReport:
    """Accuracies, intervals, per-category table and error list of scored pairs (rules: module doc)."""
    if not outcomes:
        raise EvalError("no pairs to evaluate")
    order = list(VL_REWARDBENCH_CATEGORIES) if fmt == "vl-rewardbench" else []
    for o in outcomes:
        if o.category not in order:
            order.append(o.category)
    groups = {name: [int(o.correct) for o in outcomes if o.category == name] for name in order}
    groups = {k: v for k, v in groups.items() if v}
    paper = PAPER_VL_REWARDBENCH if fmt == "vl-rewardbench" else None
    cis = _bootstrap(groups, bootstrap, seed) if bootstrap > 0 else None
    categories = []
    for name, flags in groups.items():
        cat = [o for o in outcomes if o.category == name]
        n_err = sum(o.errored for o in cat)
        lo_hi = cis[0][name] if cis else (None, None)
        categories.append(
            CategoryResult(
                name=name,
                pairs=len(cat),
                correct=sum(flags),
                ties=sum(o.tie for o in cat),
                errors=n_err,
                accuracy=Accuracy(
                    value=_pct(sum(flags) / len(cat)),
                    ci_low=None if lo_hi[0] is None else _pct(lo_hi[0]),
                    ci_high=None if lo_hi[1] is None else _pct(lo_hi[1]),
                ),
                accuracy_scored=_pct(sum(flags) / (len(cat) - n_err)) if len(cat) > n_err else None,
                paper=(paper or {}).get(name),
            )
        )
    correct = sum(o.correct for o in outcomes)

    def acc(value: float, lo_hi: tuple[float, float] | None) -> Accuracy:
        if lo_hi is None:
            return Accuracy(value=_pct(value))
        return Accuracy(value=_pct(value), ci_low=_pct(lo_hi[0]), ci_high=_pct(lo_hi[1]))

    macro = sum(c.correct / c.pairs for c in categories) / len(categories)
    return EvalReport(
        dataset=dataset,
        format=fmt,
        model=model,
        pairs=len(outcomes),
        correct=correct,
        ties=sum(o.tie for o in outcomes),
        errors=sum(o.errored for o in outcomes),
        overall=acc(correct / len(outcomes), cis[1] if cis else None),
        macro=acc(macro, cis[2] if cis else None),
        categories=categories,
        paper=paper,
        paper_source=PAPER_SOURCE if paper else None,
        tie_tolerance=outcomes[0].tie_tolerance,
        bootstrap=max(0, bootstrap),
        seed=seed,
        seconds=round(seconds, 3),
        error_list=[
            PairError(
                id=o.id,
                category=o.category,
                side=o.error_side,
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
                correct=o.correct,
            )
            for o in outcomes
        ],
    )


# -- report files ------------------------------------------------------------------------------------
def _fmt_acc(a: Accuracy) -> str:
    if a.ci_low is None or a.ci_high is None:
        return f"{a.value:.1f}"
    return f"{a.value:.1f} ({a.ci_low:.1f}–{a.ci_high:.1f})"


def markdown_table(report: EvalReport) -> str:
    """The per-category table (with the paper's column where it has numbers) and the error summary."""
    paper = report.paper or {}
    has_paper = bool(paper)
    head = "| category | pairs | correct | ties | errors | accuracy % (95% CI) |" + (
        " paper % |" if has_paper else ""
    )
    sep = "|---|---:|---:|---:|---:|---:|" + ("---:|" if has_paper else "")
    lines = [f"**{report.format}** `{report.dataset}` scored by `{report.model}`", "", head, sep]

    def row(name: str, n: Any, c: Any, t: Any, e: Any, a: Accuracy, p: float | None) -> str:
        cells = f"| {name} | {n} | {c} | {t} | {e} | {_fmt_acc(a)} |"
        return cells + (f" {p:.1f} |" if p is not None else " – |") if has_paper else cells

    for c in report.categories:
        lines.append(row(c.name, c.pairs, c.correct, c.ties, c.errors, c.accuracy, c.paper))
    lines.append(
        row(
            "**overall**",
            report.pairs,
            report.correct,
            report.ties,
            report.errors,
            report.overall,
            paper.get("overall"),
        )
    )
    lines.append(row("**macro**", "", "", "", "", report.macro, paper.get("macro")))
    lines.append("")
    lines.append(
        "A pair is correct only when the chosen answer scores strictly higher; ties and pairs "
        "with an unscorable sample count as wrong."
    )
    if report.paper_source:
        lines.append(f"Paper: {report.paper_source}.")
    if report.error_list:
        codes: dict[str, int] = {}
        for e in report.error_list:
            codes[e.code] = codes.get(e.code, 0) + 1
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(codes.items()))
        lines.append(f"Errored pairs: {len(report.error_list)} ({summary}); listed in the JSON report.")
    return "\n".join(lines) + "\n"


def plot_report(report: EvalReport, path: str | Path) -> Path:
    """Bar chart of the category, overall and macro accuracies (95% CI whiskers), beside the paper's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c.name for c in report.categories] + ["overall", "macro"]
    ours = [c.accuracy for c in report.categories] + [report.overall, report.macro]
    paper = report.paper or {}
    x = list(range(len(names)))
    width = 0.38 if paper else 0.6
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names) + 1.5), 3.8))
    vals = [a.value for a in ours]
    err = None
    if all(a.ci_low is not None for a in ours):
        err = [[a.value - a.ci_low for a in ours], [a.ci_high - a.value for a in ours]]  # type: ignore[operator]
    shift = -width / 2 if paper else 0.0
    bars = ax.bar([i + shift for i in x], vals, width, yerr=err, capsize=3, label="this run", color="#4c72b0")
    ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    if paper:
        pv = [paper.get(n, math.nan) for n in names]
        pb = ax.bar([i + width / 2 for i in x], pv, width, label="paper", color="#dd8452")
        ax.bar_label(pb, fmt="%.1f", fontsize=7, padding=2)
    ax.axhline(50, color="grey", lw=0.8, ls="--", label="chance (50%)")
    ax.set_xticks(x, names, rotation=20 if len(names) > 6 else 0, fontsize=8)
    ax.set_ylim(0, 122)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("pairwise accuracy (%)")
    ax.set_title(
        f"{report.format}: {Path(report.model).name or report.model} ({report.pairs} pairs)", fontsize=9
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
