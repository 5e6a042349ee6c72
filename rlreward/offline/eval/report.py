"""The report of ``rlreward eval`` (:class:`EvalReport`, written as JSON): accuracies in percent,
the benchmark's own headline first, categories, sections, variants, errors and every score.

Its fields are the contract of the JSON file; :mod:`.render` turns it into Markdown and a chart.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Accuracy(BaseModel):
    """An accuracy in percent with its bootstrap 95% interval (``None`` when bootstrapping is off)."""

    value: float = Field(description="Accuracy in percent.")
    ci_low: float | None = Field(default=None, description="2.5th percentile of the bootstrap, percent.")
    ci_high: float | None = Field(default=None, description="97.5th percentile of the bootstrap, percent.")


class Headline(BaseModel):
    """The benchmark's own headline number, first in every report."""

    metric: str = Field(description="overall / score / accuracy / best_of_k_accuracy (the benchmark's own).")
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
