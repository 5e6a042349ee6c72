"""Scored items → :class:`~.report.EvalReport`: what every format shares, then the format's own part.

Shared: each item's credit (right, or the format's rule: Multimodal RewardBench's coin for ties),
categories in the benchmark's official order, per-category accuracy over all items (errored ones
included, counted wrong) and over the scored ones, pooled and macro accuracy, and stratified
percentile-bootstrap 95% intervals (``bootstrap`` resamples, by category, seeded). The format's
:meth:`~.benchmark.Benchmark.finish` adds its headline rule, sections, variants and notes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import stats
from .benchmark import Benchmark, Draft
from .items import EvalError
from .outcomes import GroupOutcome, Outcome, PairOutcome
from .registry import benchmark
from .report import CategoryResult, EvalReport, GroupRecord, Headline, PairError, PairRecord


def _category_order(b: Benchmark, outcomes: Sequence[Outcome]) -> list[str]:
    seen = list(dict.fromkeys(o.category for o in outcomes))
    return [c for c in b.categories if c in seen] + [c for c in seen if c not in b.categories]


def _draft(b: Benchmark, outcomes: Sequence[Outcome], bootstrap: int, seed: int) -> Draft:
    credit, notes = b.credit(outcomes)
    order = _category_order(b, outcomes)
    groups = {name: [int(c) for o, c in zip(outcomes, credit) if o.category == name] for name in order}
    groups = {k: v for k, v in groups.items() if v}
    paper = dict(b.paper.values) if b.paper else None
    boot = stats.resample(groups, bootstrap, seed) if bootstrap > 0 else None
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
                accuracy=stats.accuracy(sum(flags) / len(cat), stats.ci(boot[name]) if boot else None),
                accuracy_scored=stats.pct(sum(flags) / (len(cat) - n_err)) if len(cat) > n_err else None,
                paper=(paper or {}).get(name),
                **b.category_fields(name),
            )
        )
    sizes = {k: len(v) for k, v in groups.items()}
    pooled_ci = macro_ci = None
    if boot:
        import numpy as np

        pooled_ci = stats.ci(sum(boot[k] * sizes[k] for k in boot) / len(outcomes))
        macro_ci = stats.ci(np.mean(np.stack(list(boot.values())), axis=0))
    overall = stats.accuracy(sum(credit) / len(outcomes), pooled_ci)
    macro = stats.accuracy(sum(c.correct / c.pairs for c in categories) / len(categories), macro_ci)
    headline = Headline(
        metric=b.headline_metric,
        value=overall.value,
        ci_low=overall.ci_low,
        ci_high=overall.ci_high,
        rule="pooled accuracy: correct / items; ties and errored items wrong",
    )
    return Draft(
        outcomes, list(credit), bootstrap, seed, boot, paper, categories, overall, macro, headline, notes
    )


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
    (rules: the module doc and the format's module)."""
    if not outcomes:
        raise EvalError("no items to evaluate")
    b = benchmark(fmt)
    d = _draft(b, outcomes, bootstrap, seed)
    b.finish(d)
    return EvalReport(
        headline=d.headline,
        dataset=dataset,
        format=fmt,
        model=model,
        pairs=len(outcomes),
        correct=sum(d.credit),
        ties=sum(o.tie for o in outcomes),
        errors=sum(o.errored for o in outcomes),
        overall=d.overall,
        macro=d.macro,
        categories=d.categories,
        sections=d.sections,
        acc_plus=d.acc_plus,
        questions=d.questions,
        variants=d.variants,
        paper=d.paper,
        paper_source=b.paper.source if b.paper else None,
        notes=d.notes,
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
            for o, c in zip(outcomes, d.credit)
            if isinstance(o, PairOutcome)
        ],
        group_scores=[
            GroupRecord(id=o.id, category=o.category, scores=o.scores, best=o.best, correct=bool(c))
            for o, c in zip(outcomes, d.credit)
            if isinstance(o, GroupOutcome)
        ],
    )
