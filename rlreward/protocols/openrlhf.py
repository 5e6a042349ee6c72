r"""OpenRLHF 0.11.x's remote reward wire format: ``POST /get_reward`` in, rewards out.

OpenRLHF scores each generated sample on its own, from inside the vLLM rollout actor, with::

    {"query": [prompt + response decoded with special tokens], "prompts": [templated prompt], "labels": [label]}

and needs ``{"rewards": [...], "scores": [...], "extra_logs": {...}}`` back, numeric, one entry per
query: a missing reward or a non-numeric log value crashes training. It never sends the images:
they come from the **label**, a dict or its JSON string ``{"images": [REF, ...], "answer": "42"}``
(``"ground_truth"`` / ``"solution"`` work as ``"answer"``); a plain string label is the answer.

The text is rebuilt from ``query``: runs of image pad tokens (``<|image_pad|>`` × N) collapse to one
slot per image; the response is what follows the prompt (``prompts[i]``, else the last
``<|im_start|>assistant\n``) without the policy's special tokens; the prompt's ChatML turns become
messages, each image slot taking the next label image; non-ChatML prompts become one user turn.

A sample that cannot be scored gets ``fallback_reward`` in place of the model score and
``extra_logs["rm_error"] = 1.0``; an empty query list gets empty lists. Options
(:class:`GetRewardOptions`) come from the JSON in ``$RLREWARD_OPENRLHF``.

Used by the serving wing's ``POST /get_reward`` (:func:`get_reward_endpoint`) and by
:mod:`rlreward.adapters.openrlhf` (the Python-file and agent-executor forms). Pure: no torch, no Ray.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rlreward.rewards import RewardComposition, accuracy_reward
from rlreward.schema import ErrorCode, ScoreResult, as_list, failed_all, media_items

__all__ = [
    "CONNECTION_KEYS",
    "ENV_OPTIONS",
    "GetRewardOptions",
    "GetRewardRequest",
    "get_reward_endpoint",
    "parse_label",
    "parse_query",
    "QueryItem",
    "columns",
    "merge_results",
    "options_from_json",
    "prepare_query",
    "rewards_body",
]

log = logging.getLogger("rlreward.protocols.openrlhf")

ENV_OPTIONS = "RLREWARD_OPENRLHF"
#: Keys of ``$RLREWARD_OPENRLHF`` that configure the trainer side's connection
#: (:class:`rlreward.adapters._common.ClientSpec`); the server's ``/get_reward`` ignores them.
CONNECTION_KEYS = frozenset(
    {"url", "app_name", "api_key", "timeout_s", "client_options", "options", "record_trace"}
)

#: ``score_fn`` of :func:`get_reward_endpoint`: samples → one result each.
SamplesScoreFn = Callable[[list[dict]], Awaitable[list[ScoreResult]]]


class GetRewardRequest(BaseModel):
    """``POST /get_reward``: OpenRLHF's remote reward request (``--reward.remote_url``)."""

    model_config = ConfigDict(extra="allow")

    query: str | list[str] = Field(description="Full decoded sequences (prompt + response), one per sample.")
    prompts: str | list[str | None] | None = Field(
        default=None, description="The prompt part of each query (may be shorter or missing)."
    )
    labels: Any = Field(default=None, description="Per-sample labels (answers, image references); optional.")


class GetRewardOptions(BaseModel):
    """How queries become samples and results become OpenRLHF rewards."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fallback_reward: float = Field(
        default=0.0, description="Stands in for the model score of a failed sample."
    )
    composition: RewardComposition = Field(
        default_factory=RewardComposition, description="R1V2 mix of model score and rule rewards."
    )
    scores: Literal["reward", "sigmoid", "accuracy"] = Field(
        default="reward",
        description="What goes in 'scores' (OpenRLHF's dynamic filtering keeps groups with mean score in "
        "(0, 1)): the reward itself, its sigmoid, or the 0/1 answer accuracy.",
    )
    image_pad_tokens: list[str] = Field(
        default_factory=lambda: ["<|image_pad|>"],
        description="Pad tokens the policy processor repeats per image.",
    )
    vision_start: str = Field(default="<|vision_start|>", description="Token before an image's pads.")
    vision_end: str = Field(default="<|vision_end|>", description="Token after an image's pads.")
    assistant_header: str = Field(
        default="<|im_start|>assistant\n",
        description="Where the response starts when the prompt is not a prefix.",
    )
    special_token_pattern: str = Field(
        default=r"<\|[A-Za-z0-9_]{1,40}\|>|</s>|<s>",
        description="Regex of the policy's special tokens, removed from the response and the prompt text.",
    )
    label_images_key: str = Field(default="images", description="Label key holding the image references.")
    label_answer_keys: list[str] = Field(
        default_factory=lambda: ["answer", "ground_truth", "solution"],
        description="Label keys of the answer.",
    )

    @classmethod
    def from_env(cls) -> GetRewardOptions:
        """Options from ``$RLREWARD_OPENRLHF`` (JSON; defaults when unset), without the trainer's
        connection keys (:data:`CONNECTION_KEYS`); any other unknown key is an error."""
        return options_from_json(cls, os.environ.get(ENV_OPTIONS, ""), drop=CONNECTION_KEYS)


@lru_cache(maxsize=16)
def options_from_json(cls: type[BaseModel], raw: str, drop: frozenset[str] = frozenset()) -> Any:
    """``cls`` validated from the JSON text ``raw`` (defaults when blank), without the keys in ``drop``;
    a ``ValueError`` naming ``$RLREWARD_OPENRLHF`` and the problem otherwise."""
    if not raw.strip():
        return cls()
    try:
        data = json.loads(raw)
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k not in drop}
        return cls.model_validate(data)
    except Exception as exc:
        raise ValueError(f"${ENV_OPTIONS} is not valid {cls.__name__} JSON: {exc}") from exc


# -- query/label → sample ------------------------------------------------------------------------------
@dataclass
class QueryItem:
    """One query on its way to a reward: a sample to score, or the reason it cannot be."""

    response: str = ""
    answer: Any = None
    sample: dict | None = None
    error: ScoreResult | None = None


def parse_label(label: Any, options: GetRewardOptions | None = None) -> tuple[list[Any], Any]:
    """``(images, answer)`` from a label: a dict, its JSON string, or a plain answer string."""
    options = options or GetRewardOptions()
    if isinstance(label, str) and label.lstrip().startswith("{"):
        try:
            label = json.loads(label)
        except json.JSONDecodeError:
            pass
    if isinstance(label, dict):
        images = as_list(label.get(options.label_images_key))
        answer = next((label[k] for k in options.label_answer_keys if label.get(k) is not None), None)
        return images, answer
    if label is None or (isinstance(label, str) and not label.strip()):
        return [], None
    return [], label


def _collapse_pads(text: str, options: GetRewardOptions) -> str:
    for pad in options.image_pad_tokens:
        text = re.sub(f"(?:{re.escape(pad)})+", pad, text)
    return text


def parse_query(
    query: str, prompt: str | None, options: GetRewardOptions | None = None
) -> tuple[list[dict], str]:
    """``(messages, response)`` from OpenRLHF's decoded query: see the module docstring.

    ``messages`` hold one ``{"type": "image", "image": None}`` item per image slot, in order.
    Raises ``ValueError`` if the response cannot be located.

    >>> q = "<|im_start|>user\\n<|vision_start|><|image_pad|><|image_pad|><|vision_end|>Hi<|im_end|>\\n" \\
    ...     "<|im_start|>assistant\\nA cat.<|im_end|><|endoftext|>"
    >>> parse_query(q, None)
    ([{'role': 'user', 'content': [{'type': 'image', 'image': None}, {'type': 'text', 'text': 'Hi'}]}], 'A cat.')
    """
    options = options or GetRewardOptions()
    query = _collapse_pads(query, options)
    prompt_c = _collapse_pads(prompt, options) if prompt else ""
    if prompt_c and query.startswith(prompt_c):
        head, tail = prompt_c, query[len(prompt_c) :]
    else:
        cut = query.rfind(options.assistant_header)
        if cut < 0:
            raise ValueError(
                "cannot find where the response starts: the query does not begin with the prompt and has no "
                f"{options.assistant_header!r}; set GetRewardOptions.assistant_header for this policy's template"
            )
        head, tail = (
            query[: cut + len(options.assistant_header)],
            query[cut + len(options.assistant_header) :],
        )
    special = re.compile(options.special_token_pattern)
    response = special.sub("", tail).strip()
    return _prompt_messages(head, options, special), response


_CHATML = re.compile(r"<\|im_start\|>(system|user|assistant|tool)\n(.*?)(?:<\|im_end\|>|$)", re.DOTALL)


def _prompt_messages(text: str, options: GetRewardOptions, special: re.Pattern[str]) -> list[dict]:
    turns = [(m.group(1), m.group(2)) for m in _CHATML.finditer(text)]
    if not turns:
        turns = [("user", text)]
    if turns and turns[-1][0] == "assistant" and not turns[-1][1].strip():
        turns = turns[:-1]  # the generation prompt
    pads = "|".join(re.escape(p) for p in options.image_pad_tokens)
    slot = re.compile(f"(?:{re.escape(options.vision_start)})?(?:{pads})(?:{re.escape(options.vision_end)})?")
    messages = []
    for role, body in turns:
        items: list[dict] = []
        pos = 0
        for m in slot.finditer(body):
            items.append({"type": "text", "text": special.sub("", body[pos : m.start()])})
            items.append({"type": "image", "image": None})
            pos = m.end()
        items.append({"type": "text", "text": special.sub("", body[pos:])})
        items = [it for it in items if it["type"] == "image" or it["text"]]
        if role == "user" or any(it["type"] == "image" for it in items):
            messages.append({"role": role, "content": items or [{"type": "text", "text": ""}]})
        else:
            messages.append({"role": role, "content": "".join(it["text"] for it in items)})
    return messages


def _build(
    messages: list[dict], response: str, images: list[Any], encode_image: Callable[[Any], Any] | None
) -> dict:
    """Fill the image slots with ``images`` (through ``encode_image``, if given); raise ``ValueError`` if
    they do not fit."""
    slots = [it for it in media_items(messages) if it["type"] == "image"]
    refs = [encode_image(im) for im in images] if encode_image else list(images)
    if not slots:
        return (
            {"prompt": messages, "response": response, "images": refs}
            if refs
            else {"messages": [*messages, {"role": "assistant", "content": response}]}
        )
    if not refs:
        raise ValueError(
            f"the prompt has {len(slots)} image(s) but no image references came with it; "
            'put them in the label: {"images": [path | URL | base64, ...]} (or use the agent executor)'
        )
    if len(refs) != len(slots):
        raise ValueError(
            f"the prompt has {len(slots)} image(s) but {len(refs)} image references came with it"
        )
    for it, ref in zip(slots, refs, strict=True):
        it["image"] = ref
    return {"messages": [*messages, {"role": "assistant", "content": response}]}


def prepare_query(
    query: Any,
    prompt: Any,
    label: Any,
    options: GetRewardOptions,
    images: Any = None,
    response: str | None = None,
    encode_image: Callable[[Any], Any] | None = None,
) -> QueryItem:
    """One query (or, agent form, a prompt and its decoded ``response``) as a sample to score, or the
    reason it cannot be; ``images`` (else the label's) fill the prompt's image slots, each passed
    through ``encode_image`` when given (in-process images → JSON-safe references)."""
    item = QueryItem()
    try:
        label_images, item.answer = parse_label(label, options)
        if response is None:
            messages, item.response = parse_query(
                str(query), prompt if isinstance(prompt, str) else None, options
            )
        else:  # agent form: the prompt string and the decoded response are known separately
            special = re.compile(options.special_token_pattern)
            messages = _prompt_messages(_collapse_pads(str(prompt), options), options, special)
            item.response = special.sub("", response).strip()
        item.sample = _build(messages, item.response, as_list(images) or label_images, encode_image)
    except (ValueError, TypeError) as exc:
        item.error = ScoreResult.failed(ErrorCode.INVALID_SAMPLE, str(exc))
    return item


def columns(payload: Any) -> tuple[list[Any], list[Any], list[Any]]:
    """``(queries, prompts, labels)`` of a request body, the last two padded with ``None`` to length."""
    if not isinstance(payload, dict) or "query" not in payload:
        raise ValueError('expected a JSON object {"query": [...], "prompts": [...], "labels": [...]}')
    queries = payload["query"]
    queries = [queries] if isinstance(queries, str) else list(queries or [])
    n = len(queries)

    def column(key: str) -> list[Any]:
        value = payload.get(key)
        value = [value] if isinstance(value, (str, dict)) else list(value or [])
        return (value + [None] * n)[:n]

    return queries, column("prompts"), column("labels")


def rewards_body(
    items: list[QueryItem], results: list[ScoreResult], options: GetRewardOptions
) -> dict[str, Any]:
    """OpenRLHF's answer for ``items`` and one result each: numeric ``rewards``, ``scores`` and
    ``extra_logs`` (``rm_score``, ``rm_error``, the composition's terms)."""
    rewards: list[float] = []
    scores: list[float] = []
    logs: dict[str, list[float]] = {"rm_score": [], "rm_error": []}
    for item, res in zip(items, results, strict=True):
        parts = options.composition.combine(
            res.score, item.response, item.answer, fallback=options.fallback_reward
        )
        total = float(parts.total if parts.total is not None else options.fallback_reward)
        rewards.append(total)
        if options.scores == "sigmoid":
            scores.append(1.0 / (1.0 + math.exp(-max(min(total, 60.0), -60.0))))
        elif options.scores == "accuracy":
            scores.append(float(accuracy_reward(item.response, item.answer) or 0.0))
        else:
            scores.append(total)
        logs["rm_score"].append(float(res.score if res.ok else options.fallback_reward))
        logs["rm_error"].append(0.0 if res.ok else 1.0)
        for k, v in parts.terms().items():
            logs.setdefault(k, []).append(float(v))
    return {"rewards": rewards, "scores": scores, "extra_logs": logs}


def merge_results(items: list[QueryItem], scored: list[ScoreResult]) -> list[ScoreResult]:
    """One result per item: its own error, else the next of ``scored`` (results of the good samples)."""
    it = iter(scored)
    return [item.error if item.error is not None else next(it) for item in items]


async def get_reward_endpoint(
    payload: dict, score_fn: SamplesScoreFn, options: GetRewardOptions | None = None
) -> dict[str, Any]:
    """The body of ``POST /get_reward`` (OpenRLHF ``--reward.remote_url``).

    Args:
        payload: ``{"query": [...], "prompts": [...], "labels": [...]}``; ``prompts``/``labels`` may be
            missing or short (padded with ``None``); any length, including 0.
        score_fn: ``async (samples) -> list[ScoreResult]``, the server's own scoring.
        options: Default: :meth:`GetRewardOptions.from_env`.

    Returns:
        ``{"rewards": [float]*n, "scores": [float]*n, "extra_logs": {"rm_score": [...], "rm_error": [...],
        ...}}``: always numeric, always ``n`` long. A failing ``score_fn`` gives the fallback for all.

    Raises:
        ValueError: ``payload`` is not an object with a ``query`` list (a malformed request).
    """
    options = options or GetRewardOptions.from_env()
    queries, prompts, labels = columns(payload)
    items = [prepare_query(q, p, lab, options) for q, p, lab in zip(queries, prompts, labels, strict=True)]
    samples = [it.sample for it in items if it.error is None]
    try:
        scored = list(await score_fn(samples)) if samples else []
        if len(scored) != len(samples):
            raise RuntimeError(f"score_fn returned {len(scored)} results for {len(samples)} samples")
    except Exception as exc:  # overloaded / failing server: OpenRLHF still needs numbers
        log.warning("get_reward: scoring %d samples failed, using the fallback reward: %s", len(samples), exc)
        scored = failed_all(len(samples), exc)
    return rewards_body(items, merge_results(items, scored), options)
