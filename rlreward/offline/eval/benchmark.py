"""The seam every benchmark format of ``rlreward eval`` fills: :class:`Benchmark`.

A format module (``vl_rewardbench``, ``rewardbench``, ...) holds its record schema, its loader
(:meth:`Benchmark.load`: one record → one item), its category rule, its official metric and its
headline (:meth:`Benchmark.finish`), as one ``Benchmark`` subclass and one instance ``BENCHMARK``;
:mod:`.registry` lists the instances. :func:`rlreward.offline.eval.build.build_report` computes
what is common to all (credit per item, categories, pooled and macro accuracy, bootstrap) into a
:class:`Draft`, and hands it to the format's ``finish`` for the rest. Adding a benchmark: one new
module with its ``BENCHMARK``, one line in :mod:`.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from .items import Item, bad_group, bad_pair
from .outcomes import Outcome
from .report import Accuracy, CategoryResult, Headline, SectionResult, Variant


@dataclass(frozen=True)
class PaperNumbers:
    """What the model's authors report for one benchmark (percent), and where."""

    values: Mapping[str, float]
    source: str


@dataclass
class Draft:
    """A report in the making: what :func:`~.build.build_report` computed for every format, which
    a format's :meth:`Benchmark.finish` completes (headline rule and value, sections, variants...).

    ``credit[i]``: outcome ``i`` counts right in the headline. ``boot``: per category, the bootstrap
    resampled accuracies (None with ``--bootstrap 0``). ``paper``: the paper's numbers or None.
    """

    outcomes: Sequence[Outcome]
    credit: list[bool]
    bootstrap: int
    seed: int
    boot: dict[str, Any] | None
    paper: dict[str, float] | None
    categories: list[CategoryResult]
    overall: Accuracy
    macro: Accuracy
    headline: Headline
    notes: list[str] = field(default_factory=list)
    sections: list[SectionResult] = field(default_factory=list)
    variants: list[Variant] = field(default_factory=list)
    acc_plus: Accuracy | None = None
    questions: int | None = None


class Benchmark:
    """One format ``rlreward eval --format NAME`` reads and scores as its own code does.

    Class attributes: ``name`` (the ``--format`` value), ``headline_metric``, ``official`` (the
    benchmark has an official scorer: exact ``>``, tie tolerance 0 by default), ``item_kind``
    (``"pair"`` or ``"group"``), ``paper`` (the model card's numbers, if any), ``categories`` (the
    official category order; others follow in file order), ``category_label`` (the table's first
    column), ``default_split``, ``detect_priority`` (auto-detection tries lower first).
    """

    name: ClassVar[str]
    headline_metric: ClassVar[str] = "overall"
    official: ClassVar[bool] = False
    item_kind: ClassVar[Literal["pair", "group"]] = "pair"
    paper: ClassVar[PaperNumbers | None] = None
    categories: ClassVar[tuple[str, ...]] = ()
    category_label: ClassVar[str] = "category"
    default_split: ClassVar[str] = "test"
    detect_priority: ClassVar[int] = 50

    def detect(self, keys: set[str]) -> bool:
        """Does a record with these keys look like this format?"""
        raise NotImplementedError

    def load(self, i: int, record: Mapping[str, Any], base: Path | None) -> Item:
        """Record ``i`` → one item (an errored one when malformed); ``base``: the dataset folder."""
        raise NotImplementedError

    def bad_item(self, rid: str, category: str, why: str) -> Item:
        """An errored item of this format's kind."""
        return bad_group(rid, category, why) if self.item_kind == "group" else bad_pair(rid, category, why)

    @property
    def tie_tolerance(self) -> float:
        """0 with an official scorer (its code compares with a bare ``>``, so the same scores give
        the same headline); 1e-5 for our own formats (about the fp32 noise of one answer scored in
        two batch rows, which is no preference)."""
        return 0.0 if self.official else 1e-5

    def credit(self, outcomes: Sequence[Outcome]) -> tuple[list[bool], list[str]]:
        """What each outcome counts in the headline, and notes on how: right = ``correct``."""
        return [o.correct for o in outcomes], []

    def category_fields(self, name: str) -> dict[str, Any]:
        """Extra :class:`~.report.CategoryResult` fields of a category (RewardBench: section)."""
        return {}

    def finish(self, draft: Draft) -> None:
        """Complete the draft: the headline's rule (and value where it is not pooled accuracy),
        sections, variants, notes. The default keeps pooled accuracy and its rule."""
