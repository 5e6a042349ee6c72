"""Scoring through a running ``rlreward serve`` for ``rlreward eval --url``: :class:`RemoteBackend`,
and :func:`backend_info`, the effective settings a backend reports for the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rlreward.schema import ErrorCode, ScoreResult, image_data_uri, media_items

from .items import EvalError


class RemoteBackend:
    """Scores through a running server with :class:`rlreward.client.RewardClient` (HTTP).

    Images and video frames are sent inline: local paths are read here under the same rules as
    in-process scoring (``policy``: the allowed roots), and PIL images and bytes become base64, so
    the server needs no access to the dataset's files (a single video *file* is passed as it is: the
    server reads it under its own roots). A sample whose image cannot be read here gets that error
    and is not sent. A request the server refuses as a whole (wrong API key, ...) or a server that
    cannot be reached on the first call stops the run with :class:`EvalError`; a later call that
    fails after the client's retries marks its samples ``unavailable`` (errored items) and the run
    goes on. ``client_options`` go to ``RewardClient`` (timeouts, retries, chunk size).
    """

    def __init__(
        self, url: str, api_key: str | None, policy: Any, limits: Any = None, **client_options: Any
    ) -> None:
        try:
            from rlreward.client import RewardClient
        except ImportError as exc:
            raise EvalError(f"--url needs rlreward.client, which cannot be imported here: {exc}") from exc
        from rlreward.engine.config import Limits

        try:
            self.client = RewardClient(url=url, api_key=api_key, **client_options)
        except ValueError as exc:
            raise EvalError(str(exc)) from exc
        self.url = url
        self.policy = policy
        self.limits = limits or Limits()
        self._answered = False

    def _inline(self, ref: Any) -> str:
        from rlreward.engine.media import read_bytes

        if isinstance(ref, str) and ref.startswith(("data:", "http://", "https://")):
            return ref  # the server applies its own URL policy
        return image_data_uri(read_bytes(ref, self.policy, self.limits))

    def _wire(self, sample: dict) -> dict:
        if "messages" not in sample:
            return {**sample, "images": [self._inline(ref) for ref in sample.get("images", [])]}
        turns = [  # a copy down to the items, filled in place below
            {**m, "content": [dict(c) if isinstance(c, dict) else c for c in m["content"]]}
            if isinstance(m, dict) and isinstance(m.get("content"), list)
            else m
            for m in sample["messages"]
        ]
        for item in media_items(turns):
            if item.get("type") == "image" and "image" in item:
                item["image"] = self._inline(item["image"])
            elif item.get("type") == "video" and isinstance(item.get("video"), list):
                item["video"] = [self._inline(f) for f in item["video"]]
        return {**sample, "messages": turns}

    def info(self) -> dict[str, Any]:
        """The server's ``/v1/models`` description (its effective preprocessing), or why there is none."""
        try:
            return dict(self.client.models())
        except Exception as exc:  # an older server, or no rights to read it: the report says so
            return {"unavailable": f"GET /v1/models failed: {type(exc).__name__}: {exc}"}

    def score(self, samples: Sequence[Any]) -> list[ScoreResult]:
        from rlreward.client import RewardRequestError
        from rlreward.schema import SampleError

        results: list[ScoreResult | None] = [None] * len(samples)
        wire: list[tuple[int, dict]] = []
        for i, s in enumerate(samples):
            try:
                wire.append((i, self._wire(s)))
            except SampleError as exc:
                results[i] = exc.to_result()
        if wire:
            try:
                remote = self.client.score([s for _, s in wire])
                self._answered = True
            except RewardRequestError as exc:
                raise EvalError(f"the server refused the request: {exc}") from exc
            except Exception as exc:  # unreachable, overloaded, timed out, after the client's retries
                if not self._answered:
                    raise EvalError(
                        f"cannot score through {self.url}: {exc}; is the server up (rlreward serve)?"
                    ) from exc
                msg = f"{type(exc).__name__}: {exc}"
                remote = [ScoreResult.failed(ErrorCode.UNAVAILABLE, msg) for _ in wire]
            for (i, _), r in zip(wire, remote):
                results[i] = r
        return results  # type: ignore[return-value]

    def close(self) -> None:
        self.client.close()


def backend_info(backend: Any, fallback: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The effective preprocessing/model settings the backend reports (``Scorer.info()``, the
    server's ``/v1/models``); ``fallback`` (the configuration the run asked for) where it reports
    nothing."""
    info = getattr(backend, "info", None)
    if callable(info):
        try:
            got = info()
            if isinstance(got, dict) and got and "unavailable" not in got:
                return {
                    "reported_by": "scorer" if not isinstance(backend, RemoteBackend) else "server",
                    **got,
                }
            return {"reported_by": "requested configuration", **(fallback or {}), **(got or {})}
        except Exception as exc:  # never lose a finished run over its description
            return {"reported_by": "requested configuration", **(fallback or {}), "info_error": str(exc)}
    return {"reported_by": "requested configuration", **(fallback or {})}
