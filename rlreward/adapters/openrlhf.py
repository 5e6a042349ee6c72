"""OpenRLHF 0.11.x adapter: remote reward for (vision-)language PPO/GRPO, three ways in.

OpenRLHF scores each generated sample on its own, from inside the vLLM rollout actor, sending
``{"query": [...], "prompts": [...], "labels": [...]}`` without images, and needs ``{"rewards",
"scores", "extra_logs"}`` back, numeric, one entry per query. The three forms:

1. **HTTP** (``--reward.remote_url http://rm:8000/get_reward``): the app's ``POST /get_reward``
   calls :func:`get_reward_endpoint`; images come from the label.
2. **Python file** (``--reward.remote_url examples/openrlhf/reward_func.py``): :func:`reward_func`,
   scoring through :class:`rlreward.client.RewardClient`; images come from the label.
3. **Agent executor** (``--train.agent_func_path examples/openrlhf/agent_func.py``):
   ``RewardAgentExecutor`` generates as OpenRLHF's ``SingleTurnAgentExecutor`` does and scores the
   response with the rollout's own images.

Contract: the text is rebuilt from ``query`` (image pad runs collapsed, the policy's special tokens
removed, ChatML turns back to messages, each image slot taking the next label image); a sample that
cannot be scored gets ``fallback_reward`` and ``extra_logs["rm_error"] = 1.0``, the call never fails
on a per-sample problem, and an empty query list gets empty lists. Options:
:class:`OpenRLHFOptions`, JSON in ``$RLREWARD_OPENRLHF``. No phase hints are sent from here (no step
boundary is visible to a reward function). The manual (label schema, options): docs/trainers.md.
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

from pydantic import Field

from rlreward.adapters._common import (
    ClientHolder,
    ClientSpec,
    as_list,
    failed_all,
    score_async,
    score_sync,
    shared_holder,
    wire_image,
)
from rlreward.rewards import RewardComposition, accuracy_reward
from rlreward.schema import ErrorCode, ScoreResult

__all__ = [
    "OpenRLHFOptions",
    "RewardAgentExecutor",  # noqa: F822 (built on first access: it subclasses openrlhf's executor)
    "get_reward_endpoint",
    "parse_label",
    "parse_query",
    "reward_func",
]

log = logging.getLogger("rlreward.adapters.openrlhf")

ENV_OPTIONS = "RLREWARD_OPENRLHF"

#: ``score_fn`` of :func:`get_reward_endpoint`: samples → one result each.
ScoreFn = Callable[[list[dict]], Awaitable[list[ScoreResult]]]


class OpenRLHFOptions(ClientSpec):
    """How queries become samples and results become OpenRLHF rewards (plus :class:`ClientSpec`'s
    connection fields: ``url`` / ``app_name``, ``api_key``, ``timeout_s``, ``client_options``)."""

    timeout_s: float = Field(
        default=170.0, gt=0, description="Client timeout; OpenRLHF gives up after 180 s."
    )
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
    def from_env(cls) -> OpenRLHFOptions:
        """Options from ``$RLREWARD_OPENRLHF`` (JSON; defaults when unset)."""
        return _options_from_json(os.environ.get(ENV_OPTIONS, ""))

    @property
    def needs_answer(self) -> bool:
        return bool(self.composition.accuracy) or self.scores == "accuracy"


@lru_cache(maxsize=8)
def _options_from_json(raw: str) -> OpenRLHFOptions:
    if not raw.strip():
        return OpenRLHFOptions()
    try:
        return OpenRLHFOptions.model_validate_json(raw)
    except Exception as exc:
        raise ValueError(f"${ENV_OPTIONS} is not valid OpenRLHFOptions JSON: {exc}") from exc


# -- query/label → sample ------------------------------------------------------------------------------
@dataclass
class _Item:
    """One query on its way to a reward: a sample to score, or the reason it cannot be."""

    response: str = ""
    answer: Any = None
    sample: dict | None = None
    error: ScoreResult | None = None


def parse_label(label: Any, options: OpenRLHFOptions | None = None) -> tuple[list[Any], Any]:
    """``(images, answer)`` from a label: a dict, its JSON string, or a plain answer string."""
    options = options or OpenRLHFOptions()
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


def _collapse_pads(text: str, options: OpenRLHFOptions) -> str:
    for pad in options.image_pad_tokens:
        text = re.sub(f"(?:{re.escape(pad)})+", pad, text)
    return text


def parse_query(
    query: str, prompt: str | None, options: OpenRLHFOptions | None = None
) -> tuple[list[dict], str]:
    """``(messages, response)`` from OpenRLHF's decoded query: see the module docstring.

    ``messages`` hold one ``{"type": "image", "image": None}`` item per image slot, in order.
    Raises ``ValueError`` if the response cannot be located.

    >>> q = "<|im_start|>user\\n<|vision_start|><|image_pad|><|image_pad|><|vision_end|>Hi<|im_end|>\\n" \\
    ...     "<|im_start|>assistant\\nA cat.<|im_end|><|endoftext|>"
    >>> parse_query(q, None)
    ([{'role': 'user', 'content': [{'type': 'image', 'image': None}, {'type': 'text', 'text': 'Hi'}]}], 'A cat.')
    """
    options = options or OpenRLHFOptions()
    query = _collapse_pads(query, options)
    prompt_c = _collapse_pads(prompt, options) if prompt else ""
    if prompt_c and query.startswith(prompt_c):
        head, tail = prompt_c, query[len(prompt_c) :]
    else:
        cut = query.rfind(options.assistant_header)
        if cut < 0:
            raise ValueError(
                "cannot find where the response starts: the query does not begin with the prompt and has no "
                f"{options.assistant_header!r}; set OpenRLHFOptions.assistant_header for this policy's template"
            )
        head, tail = (
            query[: cut + len(options.assistant_header)],
            query[cut + len(options.assistant_header) :],
        )
    special = re.compile(options.special_token_pattern)
    response = special.sub("", tail).strip()
    return _prompt_messages(head, options, special), response


_CHATML = re.compile(r"<\|im_start\|>(system|user|assistant|tool)\n(.*?)(?:<\|im_end\|>|$)", re.DOTALL)


def _prompt_messages(text: str, options: OpenRLHFOptions, special: re.Pattern[str]) -> list[dict]:
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


def _build(messages: list[dict], response: str, images: list[Any]) -> dict:
    """Fill the image slots with ``images``; raise ``ValueError`` if they do not fit."""
    slots = [
        it for m in messages if isinstance(m["content"], list) for it in m["content"] if it["type"] == "image"
    ]
    memo: dict[int, Any] = {}
    refs = [wire_image(im, memo) for im in images]
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


def _prepare(
    query: Any,
    prompt: Any,
    label: Any,
    options: OpenRLHFOptions,
    images: Any = None,
    response: str | None = None,
) -> _Item:
    item = _Item()
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
        item.sample = _build(messages, item.response, as_list(images) or label_images)
    except (ValueError, TypeError) as exc:
        item.error = ScoreResult.failed(ErrorCode.INVALID_SAMPLE, str(exc))
    return item


def _columns(payload: Any) -> tuple[list[Any], list[Any], list[Any]]:
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


def _assemble(items: list[_Item], results: list[ScoreResult], options: OpenRLHFOptions) -> dict[str, Any]:
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


def _merge(items: list[_Item], scored: list[ScoreResult]) -> list[ScoreResult]:
    it = iter(scored)
    return [item.error if item.error is not None else next(it) for item in items]


async def get_reward_endpoint(
    payload: dict, score_fn: ScoreFn, options: OpenRLHFOptions | None = None
) -> dict[str, Any]:
    """The body of ``POST /get_reward`` (OpenRLHF ``--reward.remote_url``).

    Args:
        payload: ``{"query": [...], "prompts": [...], "labels": [...]}``; ``prompts``/``labels`` may be
            missing or short (padded with ``None``); any length, including 0.
        score_fn: ``async (samples) -> list[ScoreResult]``, the server's own scoring.
        options: Default: :meth:`OpenRLHFOptions.from_env`.

    Returns:
        ``{"rewards": [float]*n, "scores": [float]*n, "extra_logs": {"rm_score": [...], "rm_error": [...],
        ...}}``: always numeric, always ``n`` long. A failing ``score_fn`` gives the fallback for all.

    Raises:
        ValueError: ``payload`` is not an object with a ``query`` list (a malformed request).
    """
    options = options or OpenRLHFOptions.from_env()
    queries, prompts, labels = _columns(payload)
    items = [_prepare(q, p, lab, options) for q, p, lab in zip(queries, prompts, labels, strict=True)]
    samples = [it.sample for it in items if it.error is None]
    try:
        scored = list(await score_fn(samples)) if samples else []
        if len(scored) != len(samples):
            raise RuntimeError(f"score_fn returned {len(scored)} results for {len(samples)} samples")
    except Exception as exc:  # overloaded / failing server: OpenRLHF still needs numbers
        log.warning("get_reward: scoring %d samples failed, using the fallback reward: %s", len(samples), exc)
        scored = failed_all(len(samples), exc)
    return _assemble(items, _merge(items, scored), options)


# -- python-file form ---------------------------------------------------------------------------------
def _holder(options: OpenRLHFOptions) -> ClientHolder:
    return shared_holder(options.client_spec())


def reward_func(queries: list[str], prompts: list[str], labels: list[Any], **kwargs: Any) -> dict[str, Any]:
    """OpenRLHF ``reward_func`` (``--reward.remote_url path/to/file.py`` whose module exposes it).

    Thread-safe (OpenRLHF calls it from a thread pool, one query per call). Same output as
    :func:`get_reward_endpoint`; a server that cannot be reached gives the fallback reward with
    ``rm_error = 1.0`` rather than an exception (which would leave OpenRLHF without a reward).
    """
    options = OpenRLHFOptions.from_env()
    items = [
        _prepare(q, p, lab, options)
        for q, p, lab in zip(*_columns({"query": queries, "prompts": prompts, "labels": labels}), strict=True)
    ]
    samples = [it.sample for it in items if it.error is None]
    try:
        scored = score_sync(_holder(options), samples)
    except Exception as exc:
        log.warning("reward_func: scoring failed, using the fallback reward: %s", exc)
        scored = failed_all(len(samples), exc)
    return _assemble(items, _merge(items, scored), options)


# -- agent-executor form ------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _agent_class() -> type:
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    class RewardAgentExecutor(SingleTurnAgentExecutor):
        """OpenRLHF single-turn executor that scores each response with the rollout's real images.

        Built with no arguments (OpenRLHF's ``_load_agent_executor`` does ``AgentExecutor()``);
        configured by ``$RLREWARD_OPENRLHF`` / ``$RLREWARD_URL``. Sets a float ``reward`` and
        ``scores`` and numeric ``extra_logs`` on every output, the fallback when scoring fails.
        """

        def __init__(self) -> None:
            super().__init__(remote_rm_url=None)  # generation only; we score below
            self.options = OpenRLHFOptions.from_env()
            self.holder = _holder(self.options)

        async def execute(
            self, prompt, label, sampling_params, max_length: int, hf_tokenizer, llm_engine, images=None
        ):
            out = await super().execute(
                prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, images=images
            )
            start, end = out["action_ranges"][0]
            response = hf_tokenizer.decode(out["observation_tokens"][start:end], skip_special_tokens=True)
            item = _prepare(None, prompt, label, self.options, images=images, response=response)
            if item.error is not None:
                result = item.error
            else:
                try:
                    (result,) = await score_async(self.holder, [item.sample])
                except Exception as exc:
                    log.warning("agent executor: scoring failed, using the fallback reward: %s", exc)
                    (result,) = failed_all(1, exc)
            info = _assemble([item], [result], self.options)
            out.update(
                reward=info["rewards"][0],
                scores=info["scores"][0],
                extra_logs={k: v[0] for k, v in info["extra_logs"].items()},
            )
            return out

    RewardAgentExecutor.__module__ = __name__
    RewardAgentExecutor.__qualname__ = "RewardAgentExecutor"
    return RewardAgentExecutor


def __getattr__(name: str) -> Any:
    # Subclassing OpenRLHF's executor imports openrlhf (and torch): only when asked for.
    if name == "RewardAgentExecutor":
        return _agent_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
