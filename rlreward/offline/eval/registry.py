"""The benchmark formats ``rlreward eval`` knows, by ``--format`` name; one line per format.

:func:`benchmark` looks one up, :func:`detect_format` guesses it from a record's keys (most
specific first: each format's ``detect_priority``), :func:`records_to_items` turns records into
items with the format's loader (a malformed record becomes an errored item, never dropped).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import best_of_k, mm_rewardbench, mm_rlhf_rewardbench, pairs, rewardbench, vl_rewardbench
from .benchmark import Benchmark, PaperNumbers
from .items import EvalError, Item

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        vl_rewardbench.BENCHMARK,
        mm_rewardbench.BENCHMARK,
        rewardbench.BENCHMARK,
        mm_rlhf_rewardbench.BENCHMARK,
        best_of_k.BENCHMARK,
        pairs.BENCHMARK,
    )
}

#: The ``--format`` names, in the order the help lists them.
FORMATS = tuple(BENCHMARKS)

#: Skywork-VL-Reward-7B's own numbers, only where its model card / tech report gives them (the card's
#: VL-RewardBench and RewardBench tables; arXiv 2505.07263 Tables 3-4). The card gives none for
#: Multimodal RewardBench or MM-RLHF-RewardBench (third-party aggregator figures are not used).
PAPER: dict[str, PaperNumbers] = {name: b.paper for name, b in BENCHMARKS.items() if b.paper is not None}


def benchmark(fmt: str) -> Benchmark:
    """The format named ``fmt``; :class:`~.items.EvalError` naming the known ones otherwise."""
    try:
        return BENCHMARKS[fmt]
    except KeyError:
        raise EvalError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}") from None


def default_tie_tolerance(fmt: str) -> float:
    """The tie tolerance ``rlreward eval`` uses unless told otherwise (:attr:`Benchmark.tie_tolerance`).

    >>> default_tie_tolerance("rewardbench"), default_tie_tolerance("pairs")
    (0.0, 1e-05)
    """
    return benchmark(fmt).tie_tolerance


def detect_format(record: Any) -> str:
    """The format a record looks like, from its keys (most specific first)."""
    if isinstance(record, dict):
        keys = set(record)
        for b in sorted(BENCHMARKS.values(), key=lambda b: b.detect_priority):
            if b.detect(keys):
                return b.name
    shown = sorted(record)[:12] if isinstance(record, dict) else type(record).__name__
    raise EvalError(f"cannot tell the dataset's format from its first record (keys: {shown}); pass --format")


def records_to_items(records: Iterable[Any], fmt: str, base: Path | None = None) -> list[Item]:
    """Records of format ``fmt`` → items (:class:`~.items.Group` for ``best-of-k``, else
    :class:`~.items.Pair`); a malformed record becomes an errored item, never dropped. ``base`` is
    the dataset's folder (where relative frame folders are listed)."""
    b = benchmark(fmt)
    return [
        b.load(i, r, base)
        if isinstance(r, dict)
        else b.bad_item(f"#{i}", "unknown", f"record #{i} is not an object")
        for i, r in enumerate(records)
    ]
