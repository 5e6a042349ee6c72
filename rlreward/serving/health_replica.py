"""Reward health on the model replica: each sample's identity and answer length, and the canaries.

* :func:`sample_identity` — ``(conversation digest, answer digest, answer text)``: the conversation is
  everything before the answer (messages and image references as sent); a ``rendered_text`` sample
  is split at its last assistant header.
* :func:`answer_token_counts` — the answer's tokens (the model's tokenizer, no special tokens), one
  batch call per request in the replica's preparation pool; returned beside the scores.
* :class:`ReplicaHealth` — :meth:`~ReplicaHealth.sample_infos` for ``RewardReplica.score_with_health``,
  and the canary loop: every ``canary.interval_s`` the replica scores the probe set (configured, or
  :func:`default_probes`) in a forward pass of its own and reports the scores and its counters to
  the application's board (:mod:`rlreward.serving.health`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from rlreward.serving.health import get_board

log = logging.getLogger("rlreward")

_ASSISTANT_MARK = "<|im_start|>assistant\n"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray)):
        return {"bytes": hashlib.blake2b(bytes(obj), digest_size=16).hexdigest()}
    tobytes = getattr(obj, "tobytes", None)  # a PIL image (in-process callers)
    if callable(tobytes):
        return {"pixels": hashlib.blake2b(tobytes(), digest_size=16).hexdigest(), "size": list(obj.size)}
    return repr(obj)


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=_jsonable, ensure_ascii=False)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()


def sample_identity(sample: Any) -> tuple[str | None, str, str] | None:
    """``(conversation digest, answer digest, answer text)`` of a sample, None if it is malformed.

    The conversation is everything before the answer (messages and image references as sent). A
    ``rendered_text`` sample is split at its last assistant header; without one it has no
    conversation (it joins no group)."""
    from rlreward.engine.preprocess import normalize_messages
    from rlreward.schema import SampleError

    if isinstance(sample, dict) and isinstance(sample.get("rendered_text"), str):
        text = sample["rendered_text"]
        head, mark, answer = text.rpartition(_ASSISTANT_MARK)
        if not mark:
            return None, _digest([None, text]), text
        answer = answer.removesuffix("\n").removesuffix("<|im_end|>")
        return _digest(head), _digest([head, answer]), answer
    try:
        messages = normalize_messages(sample)
    except SampleError:
        return None
    conv = _digest(messages[:-1])
    content = messages[-1]["content"]
    if isinstance(content, str):
        answer = content
    else:
        answer = "".join(
            i.get("text", "") for i in content if isinstance(i, dict) and i.get("type") == "text"
        )
    return conv, _digest([conv, content]), answer


def default_probes() -> list[dict[str, Any]]:
    """The generated canary set: four text samples and one with a small image (a PNG data URI)."""
    from PIL import Image

    buf = io.BytesIO()
    img = Image.new("RGB", (56, 56), (30, 90, 200))
    img.paste((250, 250, 250), (14, 14, 42, 42))
    img.save(buf, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return [
        {"prompt": "What is 2 + 2?", "response": "2 + 2 = 4."},
        {"prompt": "What is 2 + 2?", "response": "It is 5."},
        {"prompt": "Name a primary colour.", "response": "Red is a primary colour."},
        {"prompt": "Summarise: the cat sat on the mat.", "response": "A cat sat on a mat."},
        {"prompt": "What is in the picture?", "response": "A white square on blue.", "images": [uri]},
    ]


def answer_token_counts(tokenizer: Any, texts: list[str]) -> list[int | None]:
    """Tokens of each answer (``add_special_tokens=False``); one batch call to a fast tokenizer's
    backend (Rust, several threads) when there is one. Never raises (None counts instead)."""
    if not texts or tokenizer is None:
        return [None] * len(texts)
    try:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None:
            return [len(e.ids) for e in backend.encode_batch(texts, add_special_tokens=False)]
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    except Exception as exc:  # never fail scoring for a statistic
        log.warning("reward health: answers not tokenised: %s", exc)
        return [None] * len(texts)


class ReplicaHealth:
    """What a model replica does for reward health: per-sample identity and answer length, canaries."""

    def __init__(self, options: dict[str, Any] | None) -> None:
        self.options = options if options and options.get("enabled", True) and options.get("board") else None
        canary = (self.options or {}).get("canary") or {}
        self.interval_s = float(canary.get("interval_s") or 0.0)
        self.probes = canary.get("samples") or None
        self._task: asyncio.Task | None = None
        self._warned = False
        self._board: Any = None

    def sample_infos(self, tokenizer: Any, samples: Sequence[Any]) -> list[list[Any] | None]:
        """Per sample ``[conversation digest, answer digest, answer tokens]`` (None if malformed)."""
        if self.options is None:
            return [None] * len(samples)
        idents = []
        for sample in samples:
            try:
                idents.append(sample_identity(sample))
            except Exception as exc:  # e.g. an unhashable in-process object: no identity, still scored
                log.warning("reward health: no identity for a sample: %s", exc)
                idents.append(None)
        counts = answer_token_counts(tokenizer, [i[2] for i in idents if i is not None])
        out: list[list[Any] | None] = []
        for ident in idents:
            out.append(None if ident is None else [ident[0], ident[1], counts.pop(0)])
        return out

    def ensure_canary(self, score_alone: Callable[[list[Any]], Any], stats: Callable[[], dict]) -> None:
        """Start this replica's canary loop on the running event loop (once)."""
        if self.options is None or self.interval_s <= 0:
            return
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.get_running_loop().create_task(self._loop(score_alone, stats), name="canary")

    async def _loop(self, score_alone: Callable[[list[Any]], Any], stats: Callable[[], dict]) -> None:
        probes = self.probes or default_probes()
        while True:
            try:
                results = await score_alone(probes)
                failed = {r.error.code for r in results if r.error is not None}
                if failed and not self._warned:
                    self._warned = True
                    log.warning(
                        "reward health: canary probes failed to score (%s): fix health.canary.samples", failed
                    )
                info = stats()
                report = {
                    "replica_id": info.get("replica_id") or f"pid-{info.get('pid')}",
                    "scores": [r.score if r.error is None else None for r in results],
                    "t": time.time(),
                    **{k: info.get(k) for k in ("pid", "node_id", "actor_name", "backlog_samples", "queued_samples",
                                                "samples", "errors")},
                }  # fmt: skip
                if self._board is None:
                    self._board = get_board(self.options)  # type: ignore[arg-type]
                self._board.canary.remote(report)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._board = None
                log.warning("reward health canary failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.interval_s)
