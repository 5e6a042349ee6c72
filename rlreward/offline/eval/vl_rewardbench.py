"""VL-RewardBench (HF ``MMInstruction/VL-RewardBench``), scored as ``vl-rewardbench/VL_RewardBench``
``cal.py`` scores it.

Records: ``id``, ``query``, ``image`` (or ``image_path``), ``response`` [2], ``human_ranking`` [2]
(rank 0 is the better answer). Category from the id prefix (:func:`vl_rewardbench_category`).
Headline ``overall``: pooled over all items, ties and errored items wrong, with ``macro`` (mean of
the three categories) beside it. ``cal.py``'s own count — group accuracy = agree / (agree +
reject), items without a verdict and repeated keys left out — is the named variant
``vl_rewardbench_official`` (:func:`vl_rewardbench_official`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import stats
from .benchmark import Benchmark, Draft, PaperNumbers
from .items import Pair, bad_pair, images_of
from .outcomes import Outcome, Verdict
from .report import Variant


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
        return bad_pair(
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
        images_of(image),
        str(responses[best]),
        str(responses[1 - best]),
        source=source,
    )


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


def official_variant(outcomes: Sequence[Outcome], bootstrap: int, seed: int) -> Variant:
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
    cis = stats.bootstrap(judged, bootstrap, seed) if bootstrap > 0 and judged else None
    excluded = sum(g["no_verdict"] for g in off.groups.values()) + off.duplicates
    return Variant(
        name="vl_rewardbench_official",
        description=(
            "VL-RewardBench cal.py: accuracy = agree / (agree + reject) per group; items without a verdict "
            "(a tie or an errored answer) and repeated id+query+responses keys are left out of the "
            "denominator; overall pooled, macro = mean of the group accuracies"
        ),
        overall=None if off.overall is None else stats.accuracy(off.overall, cis[1] if cis else None),
        macro=None if off.macro is None else stats.accuracy(off.macro, cis[2] if cis else None),
        categories={k: (None if v is None else stats.pct(v)) for k, v in off.accuracy.items()},
        counted=sum(g["agree"] + g["reject"] for g in off.groups.values()),
        excluded=excluded,
    )


class VLRewardBench(Benchmark):
    name = "vl-rewardbench"
    official = True
    paper = PaperNumbers(
        {"general": 66.0, "hallucination": 80.0, "reasoning": 61.0, "overall": 73.1, "macro": 69.0},
        "Skywork-VL-Reward-7B model card / arXiv 2505.07263 Table 3",
    )
    categories = VL_REWARDBENCH_CATEGORIES
    detect_priority = 10

    def detect(self, keys: set[str]) -> bool:
        return {"response", "human_ranking"} <= keys

    def load(self, i: int, record: Mapping[str, Any], base: Path | None) -> Pair:
        return pair_vl_rewardbench(i, record, base)

    def finish(self, draft: Draft) -> None:
        h, paper = draft.headline, draft.paper or {}
        h.macro = draft.macro.value
        h.paper, h.paper_macro = paper["overall"], paper["macro"]
        h.rule = (
            "overall = pooled over all items, ties and errored items wrong (macro = mean of the 3 "
            "categories); the official cal.py count, no-verdict items left out, is the variant "
            "vl_rewardbench_official"
        )
        draft.variants.append(official_variant(draft.outcomes, draft.bootstrap, draft.seed))


BENCHMARK = VLRewardBench()
