"""Clients of a running rlreward server: :class:`RewardClient` (sync, thread-safe) and
:class:`AsyncRewardClient` (one per event loop), over HTTP (``url=``) or a Ray Serve handle
(``app_name=``, inside the cluster); the transports are :mod:`rlreward.transport`.

``score(samples) -> list[ScoreResult]``: one result per sample, in order; a sample the server rejects
carries its ``error``. Lists are cut into ``chunk_size`` chunks, ``max_concurrency`` in flight; each
chunk is retried (jittered exponential backoff, at least the server's ``Retry-After``) for as long as
its time budget ``retry_budget_s`` (default 120 s) lasts when the server is unreachable, answers
429/502/503/504 or a 500 that Ray Serve's proxy wrote for a dead ingress, a replica died, or an
attempt timed out; any other 4xx is final (the error says when the budget ran out). ``submit``
returns a ``concurrent.futures.Future``.

One attempt each, errors as for ``score``: ``models()``; ``stats()`` (``GET /v1/stats``);
``sleep(level=1)`` / ``wake()`` (``POST /v1/sleep`` / ``/v1/wake``); the autoscaling phase hints
``expect(n_samples, within_s=None)``, ``rollout_started()``, ``step_done()`` (``POST /v1/hints``,
advisory: ``{"accepted": bool, "reason"?}``). In handle mode the ingress's ``stats_snapshot``,
``sleep_replicas``, ``wake_replicas`` and ``post_hint`` answer them.

Every failure is a :class:`RewardClientError` (the tree, once, in :mod:`rlreward.errors`); constructor
misuse is a ``ValueError``. Clients pickle (live connections are rebuilt on first use). ``timeout_s``
bounds one attempt; the API key defaults to ``$RLREWARD_API_KEY``; ``transport=httpx.MockTransport``
runs the client against a function (tests). No torch or transformers; ray only in handle mode.
Manual: docs/client.md, docs/serving.md.
>>> RewardClient(url="http://127.0.0.1:8000").score([{"prompt": "2+2?", "response": "4"}])  # doctest: +SKIP
[ScoreResult(score=0.73, error=None)]
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

from rlreward.errors import (
    AuthenticationError,
    RewardClientError,
    RewardRequestError,
    RewardServerError,
    RewardTimeoutError,
)
from rlreward.schema import ScoreResult
from rlreward.trace import TraceRecorder, note_retry
from rlreward.transport import REPLICA_DEPLOYMENT, HandleTransport, HttpTransport, Transport

log = logging.getLogger("rlreward.client")

__all__ = [
    "AsyncRewardClient",
    "AuthenticationError",
    "RewardClient",
    "RewardClientError",
    "RewardRequestError",
    "RewardServerError",
    "RewardTimeoutError",
]


# -- shared client logic -----------------------------------------------------------------------------
class _BaseRewardClient:
    def __init__(
        self,
        url: str | None = None,
        *,
        app_name: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 300.0,
        connect_timeout_s: float = 10.0,
        retry_budget_s: float = 120.0,
        retries: int | None = None,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        chunk_size: int = 64,
        max_concurrency: int = 8,
        deployment_name: str = REPLICA_DEPLOYMENT,
        ray_address: str | None = None,
        transport: Any = None,
        record_trace: str | os.PathLike[str] | None = None,
    ) -> None:
        """Connect to a server by ``url`` (HTTP) or by ``app_name`` (Ray handle); exactly one of them.

        ``timeout_s``: one attempt of one chunk; ``connect_timeout_s``: one HTTP connect;
        ``retry_budget_s``: how long one chunk may keep being retried, counted from its first
        attempt (the default outlasts a Serve HTTP proxy restart, ~30 s); ``retries``: an optional cap
        on further attempts per chunk (None: only the time budget; 0: never retry);
        ``backoff_s``/``max_backoff_s``: first and largest wait between attempts (doubling, jittered;
        a server's ``Retry-After`` is waited in full if the budget allows it); ``chunk_size``: samples
        per request; ``max_concurrency``: requests in flight per ``score`` call; ``api_key``: bearer
        token (default ``$RLREWARD_API_KEY``; HTTP only); ``ray_address``: cluster to join in handle
        mode when Ray is not initialised (default "auto"); ``transport``: an httpx transport for the
        HTTP mode (``httpx.BaseTransport`` for :class:`RewardClient`, ``httpx.AsyncBaseTransport`` for
        :class:`AsyncRewardClient`; ``httpx.MockTransport`` is both), for tests; not pickled;
        ``record_trace``: a JSONL path to append one line per request to (sizes and times only, no
        payload; :mod:`rlreward.trace`), off by default.
        """
        if (url is None) == (app_name is None):
            raise ValueError("pass exactly one of url= (HTTP) or app_name= (Ray handle, inside the cluster)")
        for name, value in (
            ("timeout_s", timeout_s),
            ("connect_timeout_s", connect_timeout_s),
            ("chunk_size", chunk_size),
            ("max_concurrency", max_concurrency),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if (retries is not None and retries < 0) or backoff_s < 0 or max_backoff_s < 0 or retry_budget_s < 0:
            raise ValueError("retries, retry_budget_s, backoff_s and max_backoff_s must be >= 0")
        if transport is not None and url is None:
            raise ValueError("transport= is for the HTTP mode (url=); the handle mode has no HTTP transport")
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        self.url, self.app_name = url, app_name
        self.api_key = api_key if api_key is not None else os.environ.get("RLREWARD_API_KEY") or None
        self.timeout_s, self.connect_timeout_s = float(timeout_s), float(connect_timeout_s)
        self.retry_budget_s = float(retry_budget_s)
        self.retries = None if retries is None else int(retries)
        self.backoff_s, self.max_backoff_s = float(backoff_s), float(max_backoff_s)
        self._custom_transport = transport
        self.chunk_size, self.max_concurrency = int(chunk_size), int(max_concurrency)
        self.deployment_name, self.ray_address = deployment_name, ray_address
        self.record_trace = os.fspath(record_trace) if record_trace is not None else None
        self._init_transport()

    def _init_transport(self) -> None:
        self._transport: Transport
        record = getattr(self, "record_trace", None)
        self._trace = TraceRecorder.for_path(record) if record else None
        if self.url is not None:
            self._transport = HttpTransport(
                self.url,
                self.api_key,
                self.timeout_s,
                self.connect_timeout_s,
                getattr(self, "_custom_transport", None),
            )
        else:
            self._transport = HandleTransport(
                self.app_name, self.deployment_name, self.ray_address, self.timeout_s
            )

    # -- RL-phase hints (advisory: the autoscaling policy reads them, scoring never needs them) --------
    def _hint_body(self, event: str, n_samples: int | None = None, within_s: float | None = None) -> dict:
        if event == "expect":
            if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
                raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
            if within_s is not None and not within_s > 0:
                raise ValueError(f"within_s must be > 0 seconds, got {within_s!r}")
        if getattr(self, "_hint_source", None) is None:
            import uuid

            self._hint_source = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        body: dict[str, Any] = {"event": event, "source": self._hint_source}
        if n_samples is not None:
            body["n_samples"] = n_samples
        if within_s is not None:
            body["within_s"] = float(within_s)
        return body

    @staticmethod
    def _sleep_level(level: int) -> int:
        if isinstance(level, bool) or level not in (1, 2):
            raise ValueError(f"sleep level must be 1 or 2, got {level!r}")
        return level

    @property
    def mode(self) -> str:
        """``"http"`` or ``"handle"``."""
        return "http" if self.url is not None else "handle"

    def __repr__(self) -> str:
        target = f"url={self.url!r}" if self.url else f"app_name={self.app_name!r}"
        return (
            f"{type(self).__name__}({target}, chunk_size={self.chunk_size}, "
            f"retry_budget_s={self.retry_budget_s})"
        )

    # Picklable (Ray tasks, trainer workers): live connections (and an injected test transport) are
    # dropped and rebuilt on first use.
    _LIVE = ("_transport", "_executor", "_submitter", "_pool_lock", "_custom_transport", "_trace")

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._LIVE}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_transport()
        self._after_unpickle()

    def _after_unpickle(self) -> None:
        pass

    def _chunks(self, samples: Sequence[Any]) -> list[Sequence[Any]]:
        if isinstance(samples, (str, bytes, dict)) or not isinstance(samples, Sequence):
            raise TypeError(f"samples must be a list of sample dicts, not {type(samples).__name__}")
        return [samples[i : i + self.chunk_size] for i in range(0, len(samples), self.chunk_size)]

    def _delay(self, attempt: int, err: RewardClientError) -> float:
        """Jittered exponential backoff (half to all of ``backoff_s * 2**attempt``, capped), and at
        least the server's ``Retry-After``."""
        delay = min(self.max_backoff_s, self.backoff_s * (2 ** min(attempt, 30))) * (
            0.5 + random.random() / 2
        )
        if err.retry_after_s:
            delay = max(delay, err.retry_after_s)
        return delay

    def _final(self, err: RewardClientError, attempts: int, elapsed_s: float, why: str) -> RewardClientError:
        if isinstance(err, RewardServerError) and err.retryable:
            err.message = (
                f"{err.message} (gave up after {attempts} attempt{'s' if attempts > 1 else ''} in "
                f"{elapsed_s:.1f}s: {why})"
            )
            err.args = (err.message,)
        return err

    def _retry_delay(self, err: RewardClientError, attempt: int, n_samples: int, started: float) -> float:
        """Seconds to wait before retrying a chunk that failed with ``err`` on ``attempt`` (0-based),
        whose first attempt began at ``started`` (``time.monotonic()``); raises ``err`` (made final)
        when it is not retryable or the next attempt would start after the time budget."""
        elapsed = time.monotonic() - started
        if not err.retryable:
            raise err
        if self.retries is not None and attempt >= self.retries:
            raise self._final(err, attempt + 1, elapsed, f"retries={self.retries} used up")
        delay = self._delay(attempt, err)
        if elapsed + delay > self.retry_budget_s:
            why = f"retry_budget_s={self.retry_budget_s:g} spent"
            if err.retry_after_s and elapsed + err.retry_after_s > self.retry_budget_s:
                why += f"; the server asked to wait {err.retry_after_s:g}s more"
            raise self._final(err, attempt + 1, elapsed, why)
        log.info(
            "retrying a chunk of %d samples in %.2fs (attempt %d): %s", n_samples, delay, attempt + 2, err
        )
        note_retry()
        return delay


class RewardClient(_BaseRewardClient):
    """Synchronous client; thread-safe. See the module docstring for transports, retries, errors."""

    def _after_unpickle(self) -> None:
        self._executor = None
        self._submitter = None
        self._pool_lock = threading.Lock()

    def _init_transport(self) -> None:
        super()._init_transport()
        if not hasattr(self, "_pool_lock"):
            self._after_unpickle()

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._pool_lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    self.max_concurrency, thread_name_prefix="rlreward-client"
                )
            return self._executor

    def _score_chunk(self, chunk: Sequence[Any]) -> list[ScoreResult]:
        attempt, started = 0, time.monotonic()
        while True:
            try:
                return self._transport.score(chunk)
            except RewardClientError as err:
                time.sleep(self._retry_delay(err, attempt, len(chunk), started))
                attempt += 1

    def _send(self, chunk: Sequence[Any]) -> list[ScoreResult]:
        """One request (a chunk, retried), recorded when ``record_trace`` is set."""
        if self._trace is None:
            return self._score_chunk(chunk)
        with self._trace.request(chunk) as entry:
            results = self._score_chunk(chunk)
            entry.results(results)
            return results

    def score(self, samples: Sequence[Any]) -> list[ScoreResult]:
        """Score ``samples``; ``results[i]`` belongs to ``samples[i]``. Raises :class:`RewardClientError`."""
        chunks = self._chunks(samples)
        if not chunks:
            return []
        if len(chunks) == 1:
            return self._send(chunks[0])
        futures = [self._pool().submit(self._send, c) for c in chunks]
        try:
            return [r for f in futures for r in f.result()]
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    def submit(self, samples: Sequence[Any]) -> concurrent.futures.Future[list[ScoreResult]]:
        """Start scoring in the background; the future resolves to ``score(samples)``'s result or error."""
        with self._pool_lock:
            if self._submitter is None:
                self._submitter = concurrent.futures.ThreadPoolExecutor(
                    4, thread_name_prefix="rlreward-submit"
                )
            submitter = self._submitter
        return submitter.submit(self.score, list(samples))

    def models(self) -> dict[str, Any]:
        """The served model's description (``GET /v1/models`` or the replica's ``info()``)."""
        return self._transport.models()

    def stats(self) -> dict[str, Any]:
        """The deployment's state (``GET /v1/stats`` or the ingress's ``stats_snapshot()``): a JSON
        object of sections (``"replicas"``, ``"reward"``, ...). One attempt; errors as for :meth:`score`."""
        return self._transport.stats()

    def sleep(self, level: int = 1) -> dict[str, Any]:
        """Put every replica to sleep (``POST /v1/sleep``, ``level`` 1 or 2); returns
        ``{"replicas": [...states...]}`` once all sleep. One attempt; errors as for :meth:`score`."""
        return self._transport.sleep(self._sleep_level(level))

    def wake(self) -> dict[str, Any]:
        """Wake every replica (``POST /v1/wake``); returns once all are awake. One attempt."""
        return self._transport.wake()

    def _hint(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._transport.hint(body)

    def expect(self, n_samples: int, within_s: float | None = None) -> dict[str, Any]:
        """Tell the deployment that ``n_samples`` samples are coming, to be scored within ``within_s``
        seconds (None: the deployment's ``hints.default_within_s``). Call it when the rollout starts.

        Returns ``{"accepted": bool, "reason"?: str}`` — not accepted when the deployment has no hint
        policy (it then scales on load alone). One attempt, no retry (a late hint is worth little);
        raises :class:`RewardClientError` like :meth:`score` (401 → :class:`AuthenticationError`).
        """
        return self._hint(self._hint_body("expect", n_samples, within_s))

    def rollout_started(self) -> dict[str, Any]:
        """A rollout started: re-announce this client's last :meth:`expect` (no-op before any)."""
        return self._hint(self._hint_body("rollout_started"))

    def step_done(self) -> dict[str, Any]:
        """This step's scores are all back: the deployment may scale down during the trainer update.
        With ``record_trace``, the next request is recorded as the next step."""
        if self._trace is not None:
            self._trace.step_done()
        return self._hint(self._hint_body("step_done"))

    def close(self) -> None:
        """Close connections and worker threads (the client reopens them if used again)."""
        self._transport.close()
        with self._pool_lock:
            for pool in (self._executor, self._submitter):
                if pool is not None:
                    pool.shutdown(wait=False, cancel_futures=True)
            self._executor = self._submitter = None

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncRewardClient(_BaseRewardClient):
    """``asyncio`` client (TRL async rewards, verl reward loops, async Ray actors). Same options.

    Use one instance per event loop; ``await client.aclose()`` when done.
    """

    async def _score_chunk(self, chunk: Sequence[Any], gate: asyncio.Semaphore) -> list[ScoreResult]:
        attempt, started = 0, time.monotonic()
        while True:
            try:
                async with gate:
                    return await self._transport.ascore(chunk)
            except RewardClientError as err:
                await asyncio.sleep(self._retry_delay(err, attempt, len(chunk), started))
                attempt += 1

    async def _send(self, chunk: Sequence[Any], gate: asyncio.Semaphore) -> list[ScoreResult]:
        """One request (a chunk, retried), recorded when ``record_trace`` is set."""
        if self._trace is None:
            return await self._score_chunk(chunk, gate)
        with self._trace.request(chunk) as entry:
            results = await self._score_chunk(chunk, gate)
            entry.results(results)
            return results

    async def score(self, samples: Sequence[Any]) -> list[ScoreResult]:
        """Score ``samples``; ``results[i]`` belongs to ``samples[i]``. Raises :class:`RewardClientError`."""
        chunks = self._chunks(samples)
        if not chunks:
            return []
        gate = asyncio.Semaphore(self.max_concurrency)
        tasks = [asyncio.ensure_future(self._send(c, gate)) for c in chunks]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            raise
        return [r for part in parts for r in part]

    async def models(self) -> dict[str, Any]:
        """Async :meth:`RewardClient.models`."""
        return await self._transport.amodels()

    async def stats(self) -> dict[str, Any]:
        """Async :meth:`RewardClient.stats`."""
        return await self._transport.astats()

    async def sleep(self, level: int = 1) -> dict[str, Any]:
        """Async :meth:`RewardClient.sleep`."""
        return await self._transport.asleep(self._sleep_level(level))

    async def wake(self) -> dict[str, Any]:
        """Async :meth:`RewardClient.wake`."""
        return await self._transport.awake()

    async def _hint(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._transport.ahint(body)

    async def expect(self, n_samples: int, within_s: float | None = None) -> dict[str, Any]:
        """Async :meth:`RewardClient.expect`."""
        return await self._hint(self._hint_body("expect", n_samples, within_s))

    async def rollout_started(self) -> dict[str, Any]:
        """Async :meth:`RewardClient.rollout_started`."""
        return await self._hint(self._hint_body("rollout_started"))

    async def step_done(self) -> dict[str, Any]:
        """Async :meth:`RewardClient.step_done`."""
        if self._trace is not None:
            self._trace.step_done()
        return await self._hint(self._hint_body("step_done"))

    async def aclose(self) -> None:
        """Close this event loop's connections (the client reopens them if used again)."""
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncRewardClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
