"""vLLM's reward-model HTTP API over rlreward's scoring: ``/classify``, ``/pooling``, ``/score``, ``/rerank``.

Clients written for a vLLM pooling server (verl's reward loop, in-house RL stacks, ``httpx``/``openai``
``client.post``) work unchanged against ``rlreward serve``. Request and response shapes follow vLLM's
own protocol (``vllm/frontend/entrypoints/pooling/{base,classify,pooling,scoring}/protocol.py``, error
bodies from ``serve/exception_handling/``).

Inputs: ``input`` (strings already rendered with the chat template, scored as that text — a vision
placeholder in it is refused, since text carries no pixels), ``messages`` (one conversation ending
with the answer, OpenAI content parts as :mod:`rlreward.engine.content` describes), and for
``/score`` / ``/rerank`` query–document pairs scored as ``[user: query, assistant: document]``.

Contract: the value is exactly what ``POST /v1/score`` returns for the same conversation, raw with
``use_activation: false``, its sigmoid with ``true`` or unset (vLLM's default for one label);
``usage`` counts the tokens scored, visual tokens included. Errors are vLLM's body ``{"error":
{"message", "type", "param", "code"}}``: 400 for a malformed body, an unsupported option or a bad
input (one bad input of a list fails the request, naming its index and reason), 404 for an unknown
``model``, 413 over the limits, 500 when the model failed, 503/504 with ``Retry-After``.

Pure conversion: no torch, no Ray; the ingress passes the scoring call in. The manual:
docs/vllm-api.md.
"""

from __future__ import annotations

import base64
import math
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rlreward.schema import ErrorCode, ScoreResult

#: ``await score(samples) -> (results, token_counts)``: the ingress's scoring call.
ScoreFn = Callable[[list[dict[str, Any]]], Awaitable[tuple[list[ScoreResult], list[int]]]]


# -- errors ----------------------------------------------------------------------------------------------
class VllmError(Exception):
    """A failed vLLM-style request, answered as ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or _error_type(status)
        self.param = param
        self.retry_after_s = retry_after_s

    def body(self, message: str | None = None) -> dict[str, Any]:
        """vLLM's error body; ``message`` replaces the message (the ingress redacts paths)."""
        return {
            "error": {
                "message": self.message if message is None else message,
                "type": self.type,
                "param": self.param,
                "code": self.status,
            }
        }


def _error_type(status: int) -> str:
    # vLLM's names (serve/exception_handling/error_response.py); HTTP's phrase for the others.
    named = {
        400: "BadRequestError",
        404: "NotFoundError",
        500: "InternalServerError",
        501: "NotImplementedError",
    }
    return named.get(status) or HTTPStatus(status).phrase


def bad_request(message: str, param: str | None = None) -> VllmError:
    return VllmError(400, message, param=param)


def from_http_error(status: int, message: str, retry_after_s: float | None = None) -> VllmError:
    """An rlreward whole-request failure (401/413/422/5xx) in vLLM's shape (a 422 is vLLM's 400)."""
    if status == 422:
        return VllmError(400, message, type=HTTPStatus.BAD_REQUEST.phrase)
    return VllmError(status, message, retry_after_s=retry_after_s)


def check_content_type(content_type: str | None) -> None:
    """vLLM accepts only ``application/json`` bodies (400 otherwise)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise VllmError(
            400,
            "Unsupported Media Type: Only 'application/json' is allowed",
            type=HTTPStatus.BAD_REQUEST.phrase,
        )


# -- request bodies (field names and defaults as vLLM's) -----------------------------------------------
class _VllmRequest(BaseModel):
    # Unknown fields are ignored, as vLLM does (it logs them).
    model_config = ConfigDict(extra="allow")

    model: str | None = Field(default=None, description="The served model's id; None = the served model.")
    user: str | None = Field(default=None, description="Ignored (accepted for compatibility).")
    request_id: str | None = Field(default=None, description="Ignored; the response id uses X-Request-Id.")
    priority: int = Field(default=0, description="Only 0: this server has no priority scheduling.")
    truncate_prompt_tokens: int | None = Field(
        default=None, ge=-1, description="None or -1 only: a truncated sample would score another answer."
    )
    truncation_side: Literal["left", "right"] | None = Field(
        default=None, description="Ignored (no truncation)."
    )
    padding: Literal["max_length", "do_not_pad"] | None = Field(
        default=None, description="'do_not_pad' only."
    )
    mm_processor_kwargs: dict[str, Any] | None = Field(
        default=None, description="Refused when set: the preprocessing is the server's (see /v1/models)."
    )
    cache_salt: str | None = Field(default=None, description="Ignored.")
    use_activation: bool | None = Field(
        default=None, description="false: the raw reward; true: its sigmoid; None: vLLM's default (sigmoid)."
    )


class InputRequest(_VllmRequest):
    """Body of ``POST /classify`` (``/v1/classify``): ``input`` (rendered text) or ``messages``."""

    input: str | list[str] | list[int] | list[list[int]] | None = Field(
        default=None, description="Rendered prompt(s), scored as text; one result per string."
    )
    messages: list[dict[str, Any]] | None = Field(
        default=None, description="One conversation ending with the assistant answer (images allowed)."
    )
    add_special_tokens: bool | None = Field(
        default=None,
        description="Tokeniser special tokens for `input` (vLLM default: true for input, false for messages).",
    )
    add_generation_prompt: bool = Field(default=False, description="Must be false: the answer is scored.")
    continue_final_message: bool = Field(default=False, description="Must be false.")
    chat_template: str | None = Field(default=None, description="Refused: the model's own template is used.")
    chat_template_kwargs: dict[str, Any] | None = Field(default=None, description="Refused when non-empty.")
    media_io_kwargs: dict[str, Any] | None = Field(default=None, description="Refused when non-empty.")


class PoolingRequest(InputRequest):
    """Body of ``POST /pooling``: the ``/classify`` inputs; the reward is the pooled value."""

    task: str | None = Field(default=None, description="None or 'classify' (the model's only task).")
    encoding_format: Literal["float", "base64", "bytes", "bytes_only"] = Field(
        default="float", description="'float' (a list) or 'base64' (packed embed_dtype values)."
    )
    embed_dtype: str = Field(default="float32", description="base64 only: 'float32' or 'float16'.")
    endianness: Literal["native", "big", "little"] = Field(default="native", description="base64 only.")
    dimensions: int | None = Field(default=None, description="Refused when set (as vLLM does).")


class _ScoringRequest(_VllmRequest):
    max_tokens_per_query: int = Field(default=0, description="Only 0 (no truncation).")
    max_tokens_per_doc: int = Field(default=0, description="Only 0 (no truncation).")
    instruction: str | None = Field(
        default=None, description="Refused: put a system turn in /classify messages."
    )
    chat_template_kwargs: dict[str, Any] | None = Field(default=None, description="Refused when non-empty.")


class PairScoreRequest(_ScoringRequest):
    """Body of ``POST /score``: queries (prompts) and documents (candidate answers), 1:1, 1:N or N:N."""

    queries: str | dict[str, Any] | list[str | dict[str, Any]] | None = Field(
        default=None, description="Prompts: text, or {'content': [parts]} with images."
    )
    documents: str | dict[str, Any] | list[str | dict[str, Any]] | None = Field(
        default=None, description="Candidate answers (text)."
    )
    items: str | dict[str, Any] | list[str | dict[str, Any]] | None = Field(
        default=None, description="Alias of documents (with queries)."
    )
    data_1: str | dict[str, Any] | list[str | dict[str, Any]] | None = Field(
        default=None, description="= queries."
    )
    data_2: str | dict[str, Any] | list[str | dict[str, Any]] | None = Field(
        default=None, description="= documents."
    )
    text_1: str | dict[str, Any] | list[str | dict[str, Any]] | None = Field(
        default=None, description="= queries."
    )
    text_2: str | dict[str, Any] | list[str | dict[str, Any]] | None = Field(
        default=None, description="= documents."
    )


class RerankRequest(_ScoringRequest):
    """Body of ``POST /rerank``: one query (prompt) and its candidate answers, ranked by reward."""

    query: str | dict[str, Any] = Field(description="The prompt: text, or {'content': [parts]} with images.")
    documents: str | dict[str, Any] | list[str | dict[str, Any]] = Field(description="Candidate answers.")
    top_n: int = Field(default=0, ge=0, description="Keep the best n; 0 = all.")


# -- the routes' logic -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class VllmContext:
    """What a route needs from the ingress besides the body."""

    model_name: str
    max_samples: int
    request_id: str | None = None  # the X-Request-Id header


def sigmoid(x: float) -> float:
    """The logistic function, without overflow for large ``|x|``."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


# pydantic's union-branch / type markers in an error's loc, which name no field (as vLLM drops them).
_TYPE_MARKERS = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "union", "function-after"})


def _internal_loc(part: Any) -> bool:
    return isinstance(part, str) and (any(c in part for c in "[]{}()") or part.lower() in _TYPE_MARKERS)


def _validate(model: type[BaseModel], payload: Any) -> Any:
    if isinstance(payload, dict) and "normalize" in payload:
        raise bad_request("Parameter `normalize` was removed; use `use_activation` instead.", "normalize")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        first = errors[0] if errors else {}
        loc = ".".join(str(p) for p in first.get("loc", ()) if not _internal_loc(p))
        lines = "".join(f"  {e['loc']}: {e['msg']}\n" for e in errors[:5])
        raise VllmError(
            400,
            f"{len(errors)} validation error{'s' if len(errors) != 1 else ''}:\n{lines}".rstrip(),
            type=HTTPStatus.BAD_REQUEST.phrase,
            param=f"body.{loc}" if loc else None,
        ) from exc


def model_matches(requested: str, served: str) -> bool:
    """Whether a request's ``model`` names the served model: the same id, or the same last path
    component (``/ckpt/Skywork-VL-Reward-7B`` and ``Skywork/Skywork-VL-Reward-7B`` match).

    vLLM compares served names exactly, and verl starts vLLM with the checkpoint path as the served
    name, then sends that path as ``model``; rlreward serves a directory under its base name (it never
    reports server paths), so a path is matched by its last component.
    """
    last = requested.rstrip("/").rsplit("/", 1)[-1]
    return requested == served or (bool(last) and last == served.rstrip("/").rsplit("/", 1)[-1])


def _check_common(req: _VllmRequest, ctx: VllmContext) -> None:
    if req.model and not model_matches(req.model, ctx.model_name):
        raise VllmError(404, f"The model `{req.model}` does not exist.", param="model")
    if req.priority != 0:
        raise bad_request("priority scheduling is not enabled on this server: send priority 0", "priority")
    if req.truncate_prompt_tokens not in (None, -1):
        raise bad_request(
            "truncate_prompt_tokens is not supported: a truncated sample would score a different answer "
            "(an over-long input is refused with too_many_tokens)",
            "truncate_prompt_tokens",
        )
    if req.padding == "max_length":
        raise bad_request("padding 'max_length' is not supported; omit padding", "padding")
    if req.mm_processor_kwargs:
        raise bad_request(
            "mm_processor_kwargs are not applied per request: the image preprocessing is the server's "
            "(shown in /v1/models); per-image min_pixels/max_pixels keys go on the image part",
            "mm_processor_kwargs",
        )


def _input_samples(req: InputRequest, ctx: VllmContext) -> tuple[list[dict[str, Any]], str]:
    """The samples of a ``/classify`` or ``/pooling`` body, and the field they came from."""
    _check_common(req, ctx)
    if (req.input is None) == (req.messages is None):
        raise bad_request(
            "send exactly one of `input` (rendered text) and `messages` (a conversation)", "input"
        )
    if req.messages is not None:
        for name in ("add_generation_prompt", "continue_final_message"):
            if getattr(req, name):
                raise bad_request(f"{name} must be false: the last message is the answer to score", name)
        for name in ("chat_template", "chat_template_kwargs", "media_io_kwargs"):
            if getattr(req, name):
                raise bad_request(
                    f"{name} is not supported: the model's own chat template renders messages", name
                )
        return [{"messages": req.messages}], "messages"
    inputs = [req.input] if isinstance(req.input, str) else list(req.input or [])
    if not inputs:
        raise bad_request("You must pass at least one prompt", "input")
    if not all(isinstance(x, str) for x in inputs):
        raise bad_request(
            "token-id inputs are not supported: send the rendered text (a string or a list of strings)",
            "input",
        )
    special = True if req.add_special_tokens is None else req.add_special_tokens
    return [{"rendered_text": text, "add_special_tokens": special} for text in inputs], "input"


def _check_count(n: int, ctx: VllmContext, param: str) -> None:
    if n > ctx.max_samples:
        raise VllmError(
            413,
            f"{n} inputs in one request; the limit is {ctx.max_samples} (max_samples_per_request): send them in chunks",
            param=param,
        )


def _raise_for_errors(results: list[ScoreResult], param: str, one: bool) -> None:
    """A 400 (500 if only the model failed) naming each failed input; nothing when all were scored."""
    failed = [(i, r.error) for i, r in enumerate(results) if r.error is not None]
    if not failed:
        return
    parts = [f"{param if one else f'{param}[{i}]'}: {e.code}: {e.message}" for i, e in failed[:3]]
    more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
    internal = all(e.code == ErrorCode.INTERNAL.value for _, e in failed)
    raise VllmError(500 if internal else 400, "; ".join(parts) + more, param=param)


def _values(results: list[ScoreResult], use_activation: bool | None) -> list[float]:
    raw = [float(r.score) for r in results]  # type: ignore[arg-type]  (no errors left)
    return raw if use_activation is False else [sigmoid(x) for x in raw]


def _envelope(prefix: str, ctx: VllmContext, data: list[dict[str, Any]], tokens: list[int]) -> dict[str, Any]:
    n = int(sum(tokens))
    return {
        "id": f"{prefix}-{ctx.request_id or uuid.uuid4().hex}",
        "object": "list",
        "created": int(time.time()),
        "model": ctx.model_name,
        "data": data,
        "usage": {
            "prompt_tokens": n,
            "total_tokens": n,
            "completion_tokens": 0,
            "prompt_tokens_details": None,
        },
    }


async def classify(payload: Any, ctx: VllmContext, score: ScoreFn) -> dict[str, Any]:
    """``POST /classify``: one ``{"index", "label": None, "probs": [value], "num_classes": 1}`` per input."""
    req: InputRequest = _validate(InputRequest, payload)
    samples, param = _input_samples(req, ctx)
    _check_count(len(samples), ctx, param)
    results, tokens = await score(samples)
    _raise_for_errors(results, param, one=param == "messages")
    data = [
        {"index": i, "label": None, "probs": [v], "num_classes": 1}
        for i, v in enumerate(_values(results, req.use_activation))
    ]
    return _envelope("classify", ctx, data, tokens)


_EMBED_DTYPES = {"float32": "f", "float16": "e"}
_ENDIAN = {"native": "=", "big": ">", "little": "<"}


def _encode(values: list[float], req: PoolingRequest) -> list[float] | str:
    if req.encoding_format == "float":
        return values
    return base64.b64encode(
        struct.pack(f"{_ENDIAN[req.endianness]}{len(values)}{_EMBED_DTYPES[req.embed_dtype]}", *values)
    ).decode()


async def pooling(payload: Any, ctx: VllmContext, score: ScoreFn) -> dict[str, Any]:
    """``POST /pooling``: the reward as the pooled value, ``{"index", "object": "pooling", "data": [value]}``."""
    req: PoolingRequest = _validate(PoolingRequest, payload)
    if req.dimensions is not None:
        raise bad_request("dimensions is currently not supported", "dimensions")
    if req.task not in (None, "classify"):
        raise bad_request(f"Unsupported task: {req.task!r} Supported tasks: ('classify',)", "task")
    if req.encoding_format in ("bytes", "bytes_only"):
        raise bad_request(
            "encoding_format 'bytes' / 'bytes_only' is not supported; use 'float' or 'base64'",
            "encoding_format",
        )
    if req.encoding_format == "base64" and req.embed_dtype not in _EMBED_DTYPES:
        raise bad_request(
            f"embed_dtype {req.embed_dtype!r} is not supported; use 'float32' or 'float16'", "embed_dtype"
        )
    samples, param = _input_samples(req, ctx)
    _check_count(len(samples), ctx, param)
    results, tokens = await score(samples)
    _raise_for_errors(results, param, one=param == "messages")
    data = [
        {"index": i, "object": "pooling", "data": _encode([v], req)}
        for i, v in enumerate(_values(results, req.use_activation))
    ]
    return _envelope("pooling", ctx, data, tokens)


_PAIRS = (("queries", "documents"), ("queries", "items"), ("data_1", "data_2"), ("text_1", "text_2"))


def _score_content(value: Any, param: str) -> str | list[Any]:
    """A vLLM ``ScoreInput`` (a string or ``{"content": [parts]}``) → message content."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), list):
        return value["content"]
    raise bad_request(f"{param}: each item must be a string or {{'content': [parts]}}", param)


def _check_scoring(req: _ScoringRequest, ctx: VllmContext) -> None:
    _check_common(req, ctx)
    for name in ("max_tokens_per_query", "max_tokens_per_doc"):
        if getattr(req, name):
            raise bad_request(
                f"{name} is not supported: a truncated sample would score a different answer", name
            )
    if req.instruction is not None or req.chat_template_kwargs:
        raise bad_request(
            "instruction / chat_template_kwargs are not applied; send a system turn with /classify messages",
            "instruction",
        )


def _pair(query: Any, doc: Any, q_name: str, d_name: str) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": _score_content(query, q_name)},
            {"role": "assistant", "content": _score_content(doc, d_name)},
        ]
    }


def pair_samples(req: PairScoreRequest, ctx: VllmContext) -> tuple[list[dict[str, Any]], str, str]:
    """The conversations ``[user: query, assistant: document]`` of a ``/score`` body (1:1, 1:N, N:N)."""
    _check_scoring(req, ctx)
    pair = next(
        ((a, b) for a, b in _PAIRS if getattr(req, a) is not None and getattr(req, b) is not None), None
    )
    if pair is None:
        raise bad_request(
            "send queries + documents (or data_1 + data_2, text_1 + text_2, queries + items)", "queries"
        )
    q_name, d_name = pair
    queries, docs = getattr(req, q_name), getattr(req, d_name)
    queries = queries if isinstance(queries, list) else [queries]
    docs = docs if isinstance(docs, list) else [docs]
    if len(queries) > 1 and len(queries) != len(docs):
        raise bad_request("Input lengths must be either 1:1, 1:N or N:N", q_name)
    if not queries:
        raise bad_request("At least one text element must be given", q_name)
    if not docs:
        raise bad_request("At least one text_pair element must be given", d_name)
    if len(queries) == 1:
        queries = queries * len(docs)
    return [_pair(q, d, q_name, d_name) for q, d in zip(queries, docs)], q_name, d_name


async def score_pairs(payload: Any, ctx: VllmContext, score_fn: ScoreFn) -> dict[str, Any]:
    """``POST /score``: one ``{"index", "object": "score", "score": value}`` per (query, document) pair."""
    req: PairScoreRequest = _validate(PairScoreRequest, payload)
    samples, _, d_name = pair_samples(req, ctx)
    _check_count(len(samples), ctx, d_name)
    results, tokens = await score_fn(samples)
    _raise_for_errors(results, d_name, one=False)
    data = [
        {"index": i, "object": "score", "score": v}
        for i, v in enumerate(_values(results, req.use_activation))
    ]
    return _envelope("score", ctx, data, tokens)


async def rerank(payload: Any, ctx: VllmContext, score_fn: ScoreFn) -> dict[str, Any]:
    """``POST /rerank``: the documents as ``{"index", "document", "relevance_score"}``, best first.

    ``relevance_score`` is the reward of ``[user: query, assistant: document]`` (its sigmoid unless
    ``use_activation`` is false); ``index`` is the document's position in the request; ``top_n`` > 0
    keeps the best n. Ties keep request order.
    """
    req: RerankRequest = _validate(RerankRequest, payload)
    _check_scoring(req, ctx)
    docs = req.documents if isinstance(req.documents, list) else [req.documents]
    if not docs:
        raise bad_request("At least one text_pair element must be given", "documents")
    samples = [_pair(req.query, d, "query", "documents") for d in docs]
    _check_count(len(samples), ctx, "documents")
    results, tokens = await score_fn(samples)
    _raise_for_errors(results, "documents", one=False)
    ranked = [
        {
            "index": i,
            "document": {"text": d, "multi_modal": None}
            if isinstance(d, str)
            else {"text": None, "multi_modal": d.get("content", [])},
            "relevance_score": v,
        }
        for i, (d, v) in enumerate(zip(docs, _values(results, req.use_activation)))
    ]
    ranked.sort(key=lambda r: r["relevance_score"], reverse=True)
    n = int(sum(tokens))
    return {
        "id": f"rerank-{ctx.request_id or uuid.uuid4().hex}",  # vLLM's do_rerank: "rerank-" + request id
        "model": ctx.model_name,
        "usage": {"prompt_tokens": n, "total_tokens": n},
        "results": ranked[: req.top_n] if req.top_n else ranked,
    }


def model_card(model_name: str, max_model_len: int | None) -> dict[str, Any]:
    """The fields of one ``/v1/models`` entry in vLLM's shape (``ModelCard``); rlreward's follow them."""
    created = int(time.time())
    return {
        "id": model_name,
        "object": "model",
        "created": created,
        "owned_by": "rlreward",
        "root": model_name,  # vLLM puts the model path here; rlreward never reveals server paths
        "parent": None,
        "max_model_len": max_model_len,
        "permission": [
            {
                "id": f"modelperm-{uuid.uuid4().hex}",
                "object": "model_permission",
                "created": created,
                "allow_create_engine": False,
                "allow_sampling": True,
                "allow_logprobs": True,
                "allow_search_indices": False,
                "allow_view": True,
                "allow_fine_tuning": False,
                "organization": "*",
                "group": None,
                "is_blocking": False,
            }
        ],
    }
