r"""Rule rewards and their composition with the reward model: the R1V2 recipe.

Skywork-R1V2 trains with a hybrid reward ``r = r_rule + r_θ + r_format``: the value-head score of
the reward model (``r_θ``, raw, no sigmoid) plus a verifiable answer-accuracy reward and a format
reward. :class:`RewardComposition` holds the weights and computes, per sample::

    total = w_model · r_θ + w_accuracy · r_accuracy + w_format · r_format

It is plain data (pydantic): the same object configures the TRL, OpenRLHF and verl adapters and
crosses process boundaries. The rule rewards are pure functions of strings, cheap enough to run on
the trainer side beside the remote model score.

>>> comp = RewardComposition(model=1.0, accuracy=1.0, format=0.5)
>>> parts = comp.combine(0.25, "<think>2+2</think> The answer is \\boxed{4}.", "4")
>>> parts.total, parts.accuracy, parts.format
(1.75, 1.0, 1.0)
>>> comp.combine(None, "\\boxed{4}", "4").total is None       # model failed, no fallback: unscored
True
>>> comp.combine(None, "\\boxed{4}", "4", fallback=0.0).total  # fallback replaces r_θ only
1.0
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "DEFAULT_FORMAT_PATTERN",
    "RewardComposition",
    "RewardParts",
    "accuracy_reward",
    "answers_match",
    "extract_answer",
    "format_reward",
]

#: One reasoning block, then a non-empty answer: ``<think>…</think> answer``.
DEFAULT_FORMAT_PATTERN = r"^\s*<think>.*?</think>\s*\S.*$"

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_CHOICE = re.compile(r"^\(?([a-z])\)?[.:]?$")


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, j = 1, i
    while j < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    return text[i : j - 1] if depth == 0 else None


def extract_answer(text: str) -> str | None:
    r"""The final answer in a response: the last ``<answer>…</answer>``, else the last ``\boxed{…}``.

    ``None`` when the response states no answer in either form.

    >>> extract_answer("<think>…</think><answer>(B)</answer>")
    '(B)'
    >>> extract_answer("so x = \\boxed{\\frac{1}{2}}.")
    '\\frac{1}{2}'
    """
    tags = _ANSWER_TAG.findall(text)
    if tags:
        inner = tags[-1]
        return _last_boxed(inner) or inner.strip()
    return _last_boxed(text)


def _normalize(s: str) -> str:
    s = s.strip().strip("$").strip()
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    s = re.sub(r"\\(left|right|!|,|;|quad)", "", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("^\\circ", "").replace("°", "")
    s = re.sub(r"\s+", "", s).lower().rstrip(".")
    return s


def _as_number(s: str) -> Fraction | None:
    s = s.replace(",", "")
    m = re.fullmatch(r"\\frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}", s)
    if m:
        s = f"{m.group(1)}/{m.group(2)}"
    percent = s.endswith("%")
    s = s.rstrip("%")
    try:
        value = Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None
    return value / 100 if percent else value


def answers_match(predicted: str, truth: str) -> bool:
    """Same answer after normalisation: numbers (incl. fractions, %) by value, choices by letter.

    >>> answers_match("0.5", "\\\\frac{1}{2}"), answers_match("(C)", "c"), answers_match("3 cm", "4 cm")
    (True, True, False)
    """
    p, t = _normalize(predicted), _normalize(truth)
    if p == t:
        return True
    pn, tn = _as_number(p), _as_number(t)
    if pn is not None and tn is not None:
        return math.isclose(float(pn), float(tn), rel_tol=1e-6, abs_tol=1e-9)
    pc, tc = _CHOICE.fullmatch(p), _CHOICE.fullmatch(t)
    return bool(pc and tc and pc.group(1) == tc.group(1))


def accuracy_reward(response: str, ground_truth: Any) -> float | None:
    r"""1.0 if the response's final answer matches ``ground_truth``, else 0.0; ``None`` without a truth.

    >>> accuracy_reward("The area is \\boxed{12}.", "12"), accuracy_reward("no idea", "12")
    (1.0, 0.0)
    """
    if ground_truth is None or (isinstance(ground_truth, str) and not ground_truth.strip()):
        return None
    answer = extract_answer(response)
    if answer is None:
        return 0.0
    return 1.0 if answers_match(answer, str(ground_truth)) else 0.0


def format_reward(response: str, pattern: str | re.Pattern[str] = DEFAULT_FORMAT_PATTERN) -> float:
    """1.0 if the whole response matches ``pattern`` (default: a ``<think>`` block, then an answer).

    >>> format_reward("<think>look at the bars</think> B"), format_reward("B")
    (1.0, 0.0)
    """
    rx = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, re.DOTALL)
    return 1.0 if rx.fullmatch(response) else 0.0


@dataclass(frozen=True)
class RewardParts:
    """One sample's reward and its terms. ``total`` is ``None`` when the sample has no reward
    (the model score is missing and no fallback was given); terms with weight 0 are ``None``."""

    total: float | None
    model: float | None
    accuracy: float | None = None
    format: float | None = None

    def terms(self) -> dict[str, float]:
        """The rule terms that were computed, for logging (keys depend only on the weights)."""
        return {k: v for k, v in (("accuracy", self.accuracy), ("format", self.format)) if v is not None}


class RewardComposition(BaseModel):
    """Weights of ``total = w_model·r_θ + w_accuracy·r_accuracy + w_format·r_format``.

    A missing ground truth gives ``r_accuracy = 0`` (the term is skipped, not guessed). A missing
    model score (the server rejected the sample) makes ``total`` ``None`` unless the caller gives a
    ``fallback``, which then stands in for ``r_θ``; the rule terms are still added.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: float = Field(default=1.0, description="Weight of the reward model's raw score r_θ.")
    accuracy: float = Field(default=0.0, description="Weight of the answer-accuracy reward (0/1).")
    format: float = Field(default=0.0, description="Weight of the format reward (0/1).")
    format_pattern: str = Field(
        default=DEFAULT_FORMAT_PATTERN, description="Regex the whole response must match (re.DOTALL)."
    )

    @field_validator("format_pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"format_pattern is not a valid regex: {exc}") from exc
        return v

    @cached_property
    def _format_rx(self) -> re.Pattern[str]:
        return re.compile(self.format_pattern, re.DOTALL)

    def combine(
        self,
        model_score: float | None,
        response: str,
        ground_truth: Any = None,
        *,
        fallback: float | None = None,
    ) -> RewardParts:
        """The reward of one sample from its model score, response text and ground truth."""
        acc = fmt = None
        rules = 0.0
        if self.accuracy:
            acc = accuracy_reward(response, ground_truth) or 0.0
            rules += self.accuracy * acc
        if self.format:
            fmt = format_reward(response, self._format_rx)
            rules += self.format * fmt
        r_theta = model_score if model_score is not None else fallback
        if not self.model:
            total = rules
        elif r_theta is None:
            total = None
        else:
            total = self.model * r_theta + rules
        return RewardParts(total=total, model=model_score, accuracy=acc, format=fmt)
