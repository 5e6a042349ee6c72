"""Recording what a trainer sends to the reward server: one JSON line per request, sizes and times only.

``RewardClient(..., record_trace="run.jsonl")`` (or ``ClientSpec(record_trace=...)`` in an adapter)
appends, for every request (one chunk of samples) the client sends, one line in the trace format that
``rlreward tune --trace`` and ``rlreward loadtest --shape trace`` read: a header line, then per
request ``t`` (seconds since the header's ``t0_unix`` when first sent), ``samples``, ``group``,
``step``, ``latency_s``, ``ok``, ``errors``, ``retries`` and per-sample ``sizes`` (characters of
prompt and answer, image width × height). A **group** is a GRPO prompt (same prompt and images,
same id); ``step`` advances after a pause of ``step_gap_s`` with nothing in flight, or after
:meth:`TraceRecorder.step_done`.

Contract: no payload is stored (no text, no pixels; prompt identity only as the group id). Lines are
written (and flushed) when a request finishes, so they are not in ``t`` order; readers sort.
Thread- and asyncio-safe; several processes may append to one file (each line is one ``write`` on a
file opened for appending). Light: imports only the standard library (and PIL, lazily, to read an
encoded image's header). Every field: docs/tuning.md ("Measuring your reward stage").
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import io
import itertools
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rlreward.schema import media_items, media_refs

__all__ = ["TraceRecorder", "sample_sizes", "note_retry"]

FORMAT = "rlreward-trace"
VERSION = 1
_MAX_GROUPS = 200_000

_current: contextvars.ContextVar[_Entry | None] = contextvars.ContextVar("rlreward_trace_entry", default=None)


class _Entry:
    __slots__ = ("record", "start", "retries")

    def __init__(self, record: dict[str, Any], start: float) -> None:
        self.record, self.start, self.retries = record, start, 0

    def results(self, results: Sequence[Any]) -> None:
        """Count the samples answered with an error (``ScoreResult.error`` set)."""
        self.record["errors"] = sum(1 for r in results if getattr(r, "error", None) is not None)


def note_retry() -> None:
    """Count one retry of the request being recorded in this context (no-op when none is)."""
    entry = _current.get()
    if entry is not None:
        entry.retries += 1


class TraceRecorder:
    """Appends one JSON line per request to ``path`` (format in the module docstring).

    Use :meth:`for_path` to get the process-wide recorder of a path (clients sharing a path share
    its step and group counters). ``step_gap_s``: a request that starts after this many seconds with
    no request in flight begins a new step.
    """

    _registry: dict[str, TraceRecorder] = {}
    _registry_lock = threading.Lock()

    def __init__(self, path: str | os.PathLike[str], *, step_gap_s: float = 2.0) -> None:
        if step_gap_s <= 0:
            raise ValueError(f"step_gap_s must be positive, got {step_gap_s}")
        self.path = Path(path)
        self.step_gap_s = float(step_gap_s)
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._prefix = uuid.uuid4().hex[:6]
        self._groups: dict[str, str] = {}
        self._in_flight = 0
        self._last_done: float | None = None
        self._step = 0
        self._started_any = False
        self._next_step = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.t0_unix = self._origin()

    @classmethod
    def for_path(cls, path: str | os.PathLike[str], **kwargs: Any) -> TraceRecorder:
        """The recorder of ``path`` in this process (created on first use)."""
        key = str(Path(path).resolve())
        with cls._registry_lock:
            rec = cls._registry.get(key)
            if rec is None:
                rec = cls._registry[key] = cls(path, **kwargs)
            return rec

    def _origin(self) -> float:
        """The file's time origin: its header's ``t0_unix``, or now (writing the header)."""
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open(encoding="utf-8") as f:
                first = f.readline()
            try:
                head = json.loads(first)
                if head.get("kind") == "header" and isinstance(head.get("t0_unix"), (int, float)):
                    return float(head["t0_unix"])
            except json.JSONDecodeError:
                pass
            raise ValueError(
                f"{self.path} exists and is not an rlreward trace; choose another record_trace path"
            )
        t0 = time.time()
        header = {
            "kind": "header",
            "format": FORMAT,
            "version": VERSION,
            "t0_unix": t0,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
            "step_gap_s": self.step_gap_s,
        }
        self._write(header)
        return t0

    def _write(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, separators=(",", ":")) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:  # one write per line: appends do not interleave
            f.write(line)

    def step_done(self) -> None:
        """The trainer finished a step: the next request starts a new one."""
        with self._lock:
            self._next_step = True

    def _group(self, key: str) -> str:
        gid = self._groups.get(key)
        if gid is None:
            if len(self._groups) >= _MAX_GROUPS:
                self._groups.clear()
            gid = self._groups[key] = f"g{len(self._groups)}"
        return gid

    @contextmanager
    def request(self, samples: Sequence[Any]) -> Iterator[_Entry]:
        """Record one request around its sending (retries included); yields the entry, whose
        :meth:`_Entry.results` the caller may feed. Exceptions propagate (recorded as ``ok: false``)."""
        sizes = [sample_sizes(s) for s in samples]
        now = time.time()
        with self._lock:
            quiet = self._in_flight == 0 and (
                self._last_done is None or time.monotonic() - self._last_done > self.step_gap_s
            )
            if self._started_any and (self._next_step or quiet):
                self._step += 1
            self._next_step = False
            self._started_any = True
            self._in_flight += 1
            groups = [self._group(key) for key, _ in sizes]
            rid = f"{self._prefix}-{next(self._ids)}"
            step = self._step
        record: dict[str, Any] = {
            "kind": "request",
            "t": round(max(0.0, now - self.t0_unix), 6),
            "samples": len(samples),
            "group": groups[0] if groups and len(set(groups)) == 1 else None,
            "step": step,
            "tokens": None,
            "request_id": rid,
        }
        entry = _Entry(record, time.perf_counter())
        token = _current.set(entry)
        ok, error = True, None
        try:
            yield entry
        except BaseException as exc:
            ok, error = False, type(exc).__name__
            raise
        finally:
            _current.reset(token)
            record["latency_s"] = round(time.perf_counter() - entry.start, 6)
            record["ok"] = ok
            if error:
                record["error"] = error
            record.setdefault("errors", 0 if ok else len(samples))
            record["retries"] = entry.retries
            record["sizes"] = [dict(sz, group=g) for (_, sz), g in zip(sizes, groups)]
            with self._lock:
                self._in_flight -= 1
                self._last_done = time.monotonic()
                self._write(record)


# -- sizes of a sample, without its payload ----------------------------------------------------------
def _texts_and_images(sample: Any) -> tuple[list[str], list[Any], list[str], list[Any]]:
    """(prompt texts, prompt images, answer texts, answer images) of a sample in either form."""
    if not isinstance(sample, dict):
        return [], [], [str(sample)], []

    def walk(content: Any, texts: list[str], images: list[Any]) -> None:
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for item in content:
                if isinstance(item, dict) and "text" in item:
                    texts.append(str(item["text"]))
                elif isinstance(item, list | str):
                    walk(item, texts, images)
            images.extend(ref for item in media_items([{"content": content}]) for ref in media_refs(item))

    pt: list[str] = []
    pi: list[Any] = []
    at: list[str] = []
    ai: list[Any] = []
    if "messages" in sample and isinstance(sample["messages"], list):
        msgs = sample["messages"]
        for m in msgs[:-1]:
            walk(m.get("content") if isinstance(m, dict) else m, pt, pi)
        if msgs:
            last = msgs[-1]
            walk(last.get("content") if isinstance(last, dict) else last, at, ai)
    else:
        prompt = sample.get("prompt")
        if isinstance(prompt, list):
            for m in prompt:
                walk(m.get("content") if isinstance(m, dict) else m, pt, pi)
        elif prompt is not None:
            pt.append(str(prompt))
        pi.extend(sample.get("images") or [])
        at.append(str(sample.get("response", "")))
    return pt, pi, at, ai


def _image_identity(ref: Any) -> str:
    """A cheap fingerprint of an image reference (never its content in the trace, only in a hash)."""
    if isinstance(ref, (bytes, bytearray, memoryview)):
        b = bytes(ref)
        return f"b{len(b)}:{hashlib.blake2b(b[:4096] + b[-4096:], digest_size=8).hexdigest()}"
    if isinstance(ref, str):
        return (
            f"s{len(ref)}:{hashlib.blake2b((ref[:4096] + ref[-4096:]).encode(), digest_size=8).hexdigest()}"
        )
    if hasattr(ref, "size") and hasattr(ref, "mode"):
        return f"pil{id(ref)}"
    return f"o{id(ref)}"


def _image_dims(ref: Any) -> list[int] | None:
    """``[width, height]`` read from the image header where that is cheap; None otherwise."""
    try:
        if hasattr(ref, "size") and hasattr(ref, "mode") and not isinstance(ref, (bytes, str)):
            w, h = ref.size
            return [int(w), int(h)]
        data: bytes | None = None
        if isinstance(ref, (bytes, bytearray, memoryview)):
            data = bytes(ref)
        elif isinstance(ref, str):
            if ref.startswith(("http://", "https://")):
                return None
            if ref.startswith("data:"):
                data = base64.b64decode(ref.split(",", 1)[1])
            elif len(ref) < 4096 and os.path.isfile(ref):
                from PIL import Image

                with Image.open(ref) as im:
                    return [int(im.size[0]), int(im.size[1])]
            else:
                data = base64.b64decode(ref, validate=False)
        if data is None:
            return None
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            return [int(im.size[0]), int(im.size[1])]
    except Exception:
        return None


def sample_sizes(sample: Any) -> tuple[str, dict[str, Any]]:
    """(group key, sizes) of one sample: ``{"prompt_chars", "response_chars", "images": [[w, h] | None]}``.

    The group key hashes the prompt (texts and image fingerprints, without the answer); it never
    leaves the process.

    >>> key, sizes = sample_sizes({"prompt": "2+2?", "response": "4"})
    >>> sizes
    {'prompt_chars': 4, 'response_chars': 1, 'images': []}
    """
    pt, pi, at, ai = _texts_and_images(sample)
    key_src = json.dumps([pt, [_image_identity(r) for r in pi]], ensure_ascii=False)
    key = hashlib.blake2b(key_src.encode("utf-8"), digest_size=12).hexdigest()
    sizes = {
        "prompt_chars": sum(len(t) for t in pt),
        "response_chars": sum(len(t) for t in at),
        "images": [_image_dims(r) for r in pi + ai],
    }
    return key, sizes
