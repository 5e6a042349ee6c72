"""Multimodal RewardBench (``facebookresearch/multimodal_rewardbench`` ``all_data.json``), scored as
its ``scripts/2_get_accuracy.py`` scores it.

Records: ``ID``, ``Text``, ``Image``, ``Output1``, ``Output2``, ``Better``, ``Category`` (or
``Meta.Category``). The label (from ``scripts/1_run_model_as_judge_gpt4o.py``) is ``B`` iff
``Better == "Output2"``, else ``A``; a judgment without a tag — a tie here — is a coin flip
(``random.seed(123)`` once, then ``random.random() < 0.5`` → ``A``, drawn in file order); safety and
reasoning split by ID prefix (:func:`mm_rewardbench_category`). Headline ``overall``: the official
``all``, pooled over items; errored items wrong (:func:`mm_rewardbench_credit`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .benchmark import Benchmark, Draft
from .items import Pair, bad_pair, images_of
from .outcomes import Outcome, Verdict


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


def pair_mm_rewardbench(i: int, r: Mapping[str, Any], base: Path | None = None) -> Pair:
    """Multimodal RewardBench ``all_data.json``: ``ID``, ``Text``, ``Image``, ``Output1``,
    ``Output2``, ``Better``, ``Category`` (or ``Meta.Category``). As the official judge script does,
    the label is ``B`` iff ``Better == "Output2"``, else ``A`` (Output1)."""
    rid = str(r.get("ID", f"#{i}"))
    category = mm_rewardbench_category(r)
    better = r.get("Better")
    if better not in ("Output1", "Output2") or r.get("Output1") is None or r.get("Output2") is None:
        return bad_pair(
            rid,
            category,
            f"record {rid}: needs Output1, Output2 and Better in {{Output1, Output2}}, got Better={better!r}",
        )
    worse = "Output2" if better == "Output1" else "Output1"
    return Pair(
        rid,
        category,
        str(r.get("Text", "")),
        images_of(r.get("Image")),
        str(r[better]),
        str(r[worse]),
        source=rid.split("_")[0] if "_" in rid else None,
        label="B" if better == "Output2" else "A",
    )


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


class MMRewardBench(Benchmark):
    name = "mm-rewardbench"
    official = True
    detect_priority = 20

    def detect(self, keys: set[str]) -> bool:
        return {"Output1", "Output2", "Better"} <= keys

    def load(self, i: int, record: Mapping[str, Any], base: Path | None) -> Pair:
        return pair_mm_rewardbench(i, record, base)

    def credit(self, outcomes: Sequence[Outcome]) -> tuple[list[bool], list[str]]:
        """The official coin decides ties (:func:`mm_rewardbench_credit`)."""
        credit = mm_rewardbench_credit([(getattr(o, "label", None), o.verdict) for o in outcomes])  # type: ignore[union-attr]
        flips = sum(o.tie for o in outcomes)
        note = (
            f"{flips} tie(s) decided by the official coin (random.seed({MM_REWARDBENCH_SEED}), "
            "'A' if random.random() < 0.5, drawn in file order), as 2_get_accuracy.py does for a "
            "judgment without [[A]]/[[B]]; errored items are wrong and draw nothing"
        )
        return credit, [note]

    def finish(self, draft: Draft) -> None:
        draft.headline.rule = (
            "overall = 'all' of 2_get_accuracy.py: pooled over items, a tie decided by its seeded "
            "coin, errored items wrong; safety/reasoning split by ID as it splits them"
        )


BENCHMARK = MMRewardBench()
