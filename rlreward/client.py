"""Clients of a running rlreward server: :class:`RewardClient` (sync) and :class:`AsyncRewardClient`.

Two transports behind one interface, chosen by the constructor: **HTTP** from anywhere
(``RewardClient(url="http://head:8000", api_key=...)``, ``POST /v1/score``), or a **Ray handle**
from a job on the serving cluster (``RewardClient(app_name="rlreward")``: no HTTP hop, no JSON).

Contract: ``score(samples) -> list[ScoreResult]`` returns one result per sample, in order; a sample
the server rejects carries its ``error``. Lists are cut into ``chunk_size`` chunks sent
``max_concurrency`` at a time; each chunk is retried (jittered exponential backoff, at least the
server's ``Retry-After``) for its time budget ``retry_budget_s`` on connection errors, 429/502/503/
504, a bare 500 from Serve's proxy, replica death and attempt timeouts; any other 4xx is final.
When the budget runs out the error says so. ``submit(samples)`` returns a ``Future``. Phase hints
for the hint autoscaling policy: ``expect(n_samples, within_s=None)``, ``rollout_started()``,
``step_done()`` (advisory: one attempt, ``{"accepted": bool, "reason"?}`` back).

``timeout_s`` bounds one attempt of one chunk, ``connect_timeout_s`` one HTTP connect; the API key
defaults to ``$RLREWARD_API_KEY``; ``transport=httpx.MockTransport(handler)`` runs the client against
a function. Every failure raised is a :class:`rlreward.errors.RewardClientError` (tree in
:mod:`rlreward.errors`), the foreign error attached as ``__cause__``; constructor misuse raises
``ValueError``. Nothing here imports torch or transformers; ray only in handle mode, on first use.
The manual: docs/serving.md ("Clients").

>>> client = RewardClient(url="http://127.0.0.1:8000")                      # doctest: +SKIP
>>> client.score([{"prompt": "2+2?", "response": "4"}])                       # doctest: +SKIP
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
    RayFailure,
    RewardClientError,
    RewardRequestError,
    RewardServerError,
    RewardTimeoutError,
    _Fatal,
    classify_ray_error,
)
from rlreward.schema import ScoreResult, image_data_uri
from rlreward.trace import TraceRecorder, note_retry

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

#: Name of the model deployment inside an rlreward application (see rlreward.serving.config).
REPLICA_DEPLOYMENT = "RewardReplica"
#: Name of the HTTP ingress deployment (it also takes handle-mode phase hints).
INGRESS_DEPLOYMENT = "RewardIngress"
#: One hint is one attempt of at most this long: a late hint is worth little, and hints are advisory.
HINT_TIMEOUT_S = 10.0
_RETRY_STATUS = {429, 502, 503, 504}


# -- JSON encoding of in-process image references ----------------------------------------------------
def _jsonable(obj: Any) -> Any:
    """bytes → base64 text and PIL images → base64 PNG, recursively (HTTP carries JSON only)."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bytes, bytearray, memoryview)) or (
        type(obj).__module__.startswith("PIL.") and hasattr(obj, "save")
    ):
        return image_data_uri(obj)
    return obj


def _error_body(response: Any) -> tuple[str | None, str]:
    try:
        err = response.json().get("error") or {}
        return err.get("code"), err.get("message") or response.text[:500]
    except Exception:
        return None, response.text[:500]


def _retry_after(response: Any) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date); None if absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _is_proxy_500(response: Any) -> bool:
    """A 500 that the ingress did not write: Ray Serve's HTTP proxy answers a bare "Internal Server
    Error" when the ingress actor died under the request (it sends no body for a ``RayActorError``),
    while every 500 of the ingress itself carries ``{"error": {"code", "message"}}`` (a bug: final)."""
    if response.status_code != 500:
        return False
    try:
        body = response.json()
    except ValueError:
        return True
    return not (isinstance(body, dict) and isinstance(body.get("error"), dict))


# -- transports: the one place where foreign errors are translated -----------------------------------
class _HttpTransport:
    def __init__(
        self,
        url: str,
        api_key: str | None,
        timeout_s: float,
        connect_timeout_s: float,
        transport: Any = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = (timeout_s, connect_timeout_s)
        self.transport = transport  # an httpx (Async)BaseTransport, or None for httpx's own
        self._sync: Any = None
        self._lock = threading.Lock()

    def _timeout(self) -> Any:
        import httpx

        return httpx.Timeout(self.timeout[0], connect=self.timeout[1])

    def sync_client(self) -> Any:
        import httpx

        with self._lock:
            if self._sync is None:
                self._sync = httpx.Client(
                    base_url=self.url, headers=self.headers, timeout=self._timeout(), transport=self.transport
                )
            return self._sync

    def new_async_client(self) -> Any:
        import httpx

        return httpx.AsyncClient(
            base_url=self.url, headers=self.headers, timeout=self._timeout(), transport=self.transport
        )

    @staticmethod
    def body(chunk: Sequence[Any]) -> dict[str, Any]:
        return {"samples": _jsonable(list(chunk))}

    def results(self, response: Any, n: int) -> list[ScoreResult]:
        """Map an HTTP response to results, or raise the translated error."""
        status = response.status_code
        if status == 200:
            try:
                data = response.json()
                results = [ScoreResult.model_validate(r) for r in data["results"]]
            except Exception as exc:
                raise _Fatal(
                    f"{self.url} answered 200 with an unexpected body: {exc}", status_code=200
                ) from exc
            if len(results) != n:
                raise _Fatal(f"{self.url} returned {len(results)} results for {n} samples", status_code=200)
            return results
        code, message = _error_body(response)
        text = f"{self.url}/v1/score answered {status}" + (f" {code}" if code else "") + f": {message}"
        if status == 401 or status == 403:
            raise AuthenticationError(
                text + " (pass api_key= or set RLREWARD_API_KEY)", status_code=status, code=code
            )
        if status in _RETRY_STATUS or _is_proxy_500(response):
            raise RewardServerError(text, status_code=status, code=code, retry_after_s=_retry_after(response))
        if 400 <= status < 500:
            raise RewardRequestError(text, status_code=status, code=code)
        raise _Fatal(text, status_code=status, code=code)

    def translate(self, exc: BaseException) -> RewardClientError:
        import httpx

        if isinstance(exc, RewardClientError):
            return exc
        if isinstance(exc, httpx.TimeoutException):
            return RewardTimeoutError(
                f"{self.url}: no answer within {self.timeout[0]}s ({type(exc).__name__})"
            )
        if isinstance(exc, httpx.TransportError):
            return RewardServerError(f"cannot reach {self.url}: {type(exc).__name__}: {exc}")
        return _Fatal(f"request to {self.url} failed: {type(exc).__name__}: {exc}")

    def score(self, chunk: Sequence[Any]) -> list[ScoreResult]:
        response = self.sync_client().post("/v1/score", json=self.body(chunk))
        return self.results(response, len(chunk))

    async def ascore(self, client: Any, chunk: Sequence[Any]) -> list[ScoreResult]:
        response = await client.post("/v1/score", json=self.body(chunk))
        return self.results(response, len(chunk))

    def close(self) -> None:
        with self._lock:
            if self._sync is not None:
                self._sync.close()
                self._sync = None


class _HandleTransport:
    def __init__(self, app_name: str, deployment: str, ray_address: str | None, timeout_s: float) -> None:
        self.app_name, self.deployment, self.ray_address, self.timeout_s = (
            app_name,
            deployment,
            ray_address,
            timeout_s,
        )
        self._handle: Any = None
        self._lock = threading.Lock()

    def handle(self) -> Any:
        with self._lock:
            if self._handle is None:
                import ray
                from ray import serve

                if not ray.is_initialized():
                    ray.init(address=self.ray_address or "auto", log_to_driver=False)
                self._handle = serve.get_deployment_handle(self.deployment, app_name=self.app_name)
            return self._handle

    def ingress(self) -> Any:
        """The application's ingress deployment (phase hints go there)."""
        from ray import serve

        self.handle()  # joins the cluster if needed
        return serve.get_deployment_handle(INGRESS_DEPLOYMENT, app_name=self.app_name)

    def check(self, results: Any, n: int) -> list[ScoreResult]:
        if not isinstance(results, list) or len(results) != n:
            got = len(results) if isinstance(results, list) else type(results).__name__
            raise _Fatal(f"app {self.app_name!r} returned {got} results for {n} samples")
        return results

    def translate(self, exc: BaseException) -> RewardClientError:
        if isinstance(exc, RewardClientError):
            return exc
        where = f"app {self.app_name!r} ({self.deployment})"
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):  # GetTimeoutError is a TimeoutError
            return RewardTimeoutError(f"{where}: no answer within {self.timeout_s}s")
        failure = classify_ray_error(exc)
        if failure is None and isinstance(exc, ValueError) and "application" in str(exc).lower():
            # get_deployment_handle on an app that is not deployed (yet)
            failure = RayFailure("unavailable", str(exc))
        if failure is None or failure.kind == "bug":
            return _Fatal(f"{where} failed: {type(exc).__name__}: {exc}")
        return RewardServerError(
            f"{where}: {failure.message}", code=failure.kind, retry_after_s=failure.retry_after_s
        )

    def score(self, chunk: Sequence[Any]) -> list[ScoreResult]:
        response = self.handle().score.remote(list(chunk))
        try:
            return self.check(response.result(timeout_s=self.timeout_s), len(chunk))
        except TimeoutError:
            response.cancel()
            raise

    async def ascore(self, chunk: Sequence[Any]) -> list[ScoreResult]:
        response = self.handle().score.remote(list(chunk))

        async def wait() -> Any:
            return await response

        try:
            results = await asyncio.wait_for(wait(), self.timeout_s)
        except asyncio.TimeoutError:
            response.cancel()
            raise
        return self.check(results, len(chunk))

    def close(self) -> None:
        with self._lock:
            self._handle = None


async def _await_response(response: Any) -> Any:
    return await response


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
        self._transport: _HttpTransport | _HandleTransport
        record = getattr(self, "record_trace", None)
        self._trace = TraceRecorder.for_path(record) if record else None
        if self.url is not None:
            self._transport = _HttpTransport(
                self.url,
                self.api_key,
                self.timeout_s,
                self.connect_timeout_s,
                getattr(self, "_custom_transport", None),
            )
        else:
            self._transport = _HandleTransport(
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

    def _hint_answer(self, response: Any) -> dict[str, Any]:
        if response.status_code != 200:
            self._transport.results(response, 0)  # type: ignore[union-attr]  # raises the translated error
        return response.json()

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
    _LIVE = (
        "_transport",
        "_executor",
        "_submitter",
        "_pool_lock",
        "_http",
        "_http_loop",
        "_custom_transport",
        "_trace",
    )

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

    def _retry_delay(self, exc: Exception, attempt: int, n_samples: int, started: float) -> float:
        """Seconds to wait before retrying a chunk that failed with ``exc`` on ``attempt`` (0-based),
        whose first attempt began at ``started`` (``time.monotonic()``); raises the translated final
        error when it is not retryable or the next attempt would start after the time budget."""
        err = self._transport.translate(exc)
        elapsed = time.monotonic() - started
        if not err.retryable:
            raise err from exc
        if self.retries is not None and attempt >= self.retries:
            raise self._final(err, attempt + 1, elapsed, f"retries={self.retries} used up") from exc
        delay = self._delay(attempt, err)
        if elapsed + delay > self.retry_budget_s:
            why = f"retry_budget_s={self.retry_budget_s:g} spent"
            if err.retry_after_s and elapsed + err.retry_after_s > self.retry_budget_s:
                why += f"; the server asked to wait {err.retry_after_s:g}s more"
            raise self._final(err, attempt + 1, elapsed, why) from exc
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
            except Exception as exc:
                time.sleep(self._retry_delay(exc, attempt, len(chunk), started))
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
        try:
            if isinstance(self._transport, _HttpTransport):
                r = self._transport.sync_client().get("/v1/models")
                if r.status_code != 200:
                    self._transport.results(r, 0)
                return r.json()["data"][0]
            return self._transport.handle().info.remote().result(timeout_s=self.timeout_s)
        except Exception as exc:
            raise self._transport.translate(exc) from exc

    def _hint(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            if isinstance(self._transport, _HttpTransport):
                r = self._transport.sync_client().post("/v1/hints", json=body, timeout=HINT_TIMEOUT_S)
                return self._hint_answer(r)
            return self._transport.ingress().post_hint.remote(body).result(timeout_s=HINT_TIMEOUT_S)
        except Exception as exc:
            raise self._transport.translate(exc) from exc

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

    def _init_transport(self) -> None:
        super()._init_transport()
        self._http: Any = None
        self._http_loop: Any = None

    def _http_client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._http is None or self._http_loop is not loop:
            self._http = self._transport.new_async_client()  # type: ignore[union-attr]
            self._http_loop = loop
        return self._http

    async def _call(self, chunk: Sequence[Any]) -> list[ScoreResult]:
        if isinstance(self._transport, _HttpTransport):
            return await self._transport.ascore(self._http_client(), chunk)
        if self._transport._handle is None:  # first use: ray.init / handle lookup may block briefly
            await asyncio.to_thread(self._transport.handle)
        return await self._transport.ascore(chunk)

    async def _score_chunk(self, chunk: Sequence[Any], gate: asyncio.Semaphore) -> list[ScoreResult]:
        attempt, started = 0, time.monotonic()
        while True:
            try:
                async with gate:
                    return await self._call(chunk)
            except Exception as exc:
                await asyncio.sleep(self._retry_delay(exc, attempt, len(chunk), started))
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
        """The served model's description."""
        try:
            if isinstance(self._transport, _HttpTransport):
                r = await self._http_client().get("/v1/models")
                if r.status_code != 200:
                    self._transport.results(r, 0)
                return r.json()["data"][0]
            if self._transport._handle is None:
                await asyncio.to_thread(self._transport.handle)
            return await self._transport.handle().info.remote()
        except Exception as exc:
            raise self._transport.translate(exc) from exc

    async def _hint(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            if isinstance(self._transport, _HttpTransport):
                r = await self._http_client().post("/v1/hints", json=body, timeout=HINT_TIMEOUT_S)
                return self._hint_answer(r)
            ingress = await asyncio.to_thread(self._transport.ingress)
            return await asyncio.wait_for(_await_response(ingress.post_hint.remote(body)), HINT_TIMEOUT_S)
        except Exception as exc:
            raise self._transport.translate(exc) from exc

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
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self._transport.close()

    async def __aenter__(self) -> AsyncRewardClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
