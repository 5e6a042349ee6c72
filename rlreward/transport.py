"""How a client reaches a running rlreward server: one :class:`Transport` seam, two implementations.

* :class:`HttpTransport`: the HTTP API through httpx (``url=``), from anywhere.
* :class:`HandleTransport`: Ray Serve ``DeploymentHandle`` calls (``app_name=``), from a job on the
  serving Ray cluster: no HTTP hop, no JSON, images may stay ``bytes``/PIL.

Each carries every operation (:data:`OPERATIONS`: score, models, hint, stats, sleep, wake, and
close) in a sync and an async form with one signature each, and is the one place where foreign
errors (httpx, Ray) become :class:`rlreward.errors.RewardClientError` (the foreign one as
``__cause__``): retryable (:class:`~rlreward.errors.RewardServerError`: unreachable, 429/502/503/504,
a 500 that Ray Serve's proxy wrote for a dead ingress, a replica died or timed out) or final. One
call is one attempt; chunking, retries within a time budget and tracing are the clients'
(:mod:`rlreward.client`).

Nothing here imports torch or transformers; httpx and ray are imported on first use.
"""

from __future__ import annotations

import abc
import asyncio
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
    awaited,
    classify_ray_error,
)
from rlreward.schema import ScoreResult, image_data_uri

__all__ = ["HINT_TIMEOUT_S", "OPERATIONS", "HandleTransport", "HttpTransport", "Transport"]

#: Name of the model deployment inside an rlreward application (rlreward.serving.config uses it).
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


def _not_ours(response: Any) -> bool:
    """Whether the body is not the ingress's ``{"error": {...}}`` (Ray Serve's proxy wrote it)."""
    try:
        body = response.json()
    except ValueError:
        return True
    return not (isinstance(body, dict) and isinstance(body.get("error"), dict))


def _is_proxy_500(response: Any) -> bool:
    """A 500 that the ingress did not write: Ray Serve's HTTP proxy answers a bare "Internal Server
    Error" when the ingress actor died under the request (it sends no body for a ``RayActorError``),
    while every 500 of the ingress itself carries ``{"error": {"code", "message"}}`` (a bug: final)."""
    return response.status_code == 500 and _not_ours(response)


#: The operations every transport carries: name → (HTTP method, HTTP path, handle target, handle method).
#: "replica" is the model deployment, "ingress" the application's HTTP ingress (its Python methods
#: serve handle callers the same way the routes serve HTTP).
OPERATIONS: dict[str, tuple[str, str, str, str]] = {
    "score": ("POST", "/v1/score", "replica", "score"),
    "models": ("GET", "/v1/models", "replica", "info"),
    "hint": ("POST", "/v1/hints", "ingress", "post_hint"),
    "stats": ("GET", "/v1/stats", "ingress", "stats_snapshot"),
    "sleep": ("POST", "/v1/sleep", "ingress", "sleep_replicas"),
    "wake": ("POST", "/v1/wake", "ingress", "wake_replicas"),
}


class Transport(abc.ABC):
    """How a client reaches the server. Every operation in a sync and an async form, one signature
    each; each raises :class:`RewardClientError` only (the foreign error as ``__cause__``)::

        score(chunk) -> list[ScoreResult]     ascore(chunk)
        models() -> dict                      amodels()
        hint(body) -> dict                    ahint(body)       # one attempt, HINT_TIMEOUT_S
        stats() -> dict                       astats()
        sleep(level) -> dict                  asleep(level)
        wake() -> dict                        awake()
        close()                               aclose()

    Subclasses implement :meth:`_call` / :meth:`_acall` (one operation, its answer as the server
    sent it), :meth:`translate` and the two closes.
    """

    where: str = ""

    @abc.abstractmethod
    def _call(self, op: str, payload: Any, timeout_s: float | None) -> Any:
        raise NotImplementedError

    @abc.abstractmethod
    async def _acall(self, op: str, payload: Any, timeout_s: float | None) -> Any:
        raise NotImplementedError

    @abc.abstractmethod
    def translate(self, exc: BaseException) -> RewardClientError:
        raise NotImplementedError

    @abc.abstractmethod
    def close(self) -> None:
        raise NotImplementedError

    @abc.abstractmethod
    async def aclose(self) -> None:
        raise NotImplementedError

    def _run(self, op: str, payload: Any = None, timeout_s: float | None = None) -> Any:
        try:
            return self._call(op, payload, timeout_s)
        except Exception as exc:
            raise self.translate(exc) from exc

    async def _arun(self, op: str, payload: Any = None, timeout_s: float | None = None) -> Any:
        try:
            return await self._acall(op, payload, timeout_s)
        except Exception as exc:
            raise self.translate(exc) from exc

    def _results(self, answer: Any, n: int) -> list[ScoreResult]:
        if not isinstance(answer, list) or len(answer) != n:
            got = len(answer) if isinstance(answer, list) else type(answer).__name__
            raise _Fatal(f"{self.where} returned {got} results for {n} samples")
        try:
            return [r if isinstance(r, ScoreResult) else ScoreResult.model_validate(r) for r in answer]
        except Exception as exc:
            raise _Fatal(f"{self.where} answered with unexpected results: {exc}") from exc

    def _document(self, op: str, answer: Any) -> dict[str, Any]:
        if not isinstance(answer, dict):
            raise _Fatal(f"{self.where}: {op} answered {type(answer).__name__}, expected a JSON object")
        return answer

    def score(self, chunk: Sequence[Any]) -> list[ScoreResult]:
        return self._results(self._run("score", list(chunk)), len(chunk))

    async def ascore(self, chunk: Sequence[Any]) -> list[ScoreResult]:
        return self._results(await self._arun("score", list(chunk)), len(chunk))

    def models(self) -> dict[str, Any]:
        return self._document("models", self._run("models"))

    async def amodels(self) -> dict[str, Any]:
        return self._document("models", await self._arun("models"))

    def hint(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._document("hint", self._run("hint", body, HINT_TIMEOUT_S))

    async def ahint(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._document("hint", await self._arun("hint", body, HINT_TIMEOUT_S))

    def stats(self) -> dict[str, Any]:
        return self._document("stats", self._run("stats"))

    async def astats(self) -> dict[str, Any]:
        return self._document("stats", await self._arun("stats"))

    def sleep(self, level: int) -> dict[str, Any]:
        return self._document("sleep", self._run("sleep", level))

    async def asleep(self, level: int) -> dict[str, Any]:
        return self._document("sleep", await self._arun("sleep", level))

    def wake(self) -> dict[str, Any]:
        return self._document("wake", self._run("wake"))

    async def awake(self) -> dict[str, Any]:
        return self._document("wake", await self._arun("wake"))


class HttpTransport(Transport):
    """The HTTP API through httpx: one sync client (thread-safe) and one async client per event loop."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        timeout_s: float,
        connect_timeout_s: float,
        transport: Any = None,
    ) -> None:
        self.url = self.where = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = (timeout_s, connect_timeout_s)
        self.transport = transport  # an httpx (Async)BaseTransport, or None for httpx's own
        self._sync: Any = None
        self._async: Any = None
        self._async_loop: Any = None
        self._lock = threading.Lock()
        self._answered: set[str] = set()  # paths that have answered 200 through this transport

    def _client_options(self) -> dict[str, Any]:
        import httpx

        timeout = httpx.Timeout(self.timeout[0], connect=self.timeout[1])
        return {
            "base_url": self.url,
            "headers": self.headers,
            "timeout": timeout,
            "transport": self.transport,
        }

    def _sync_client(self) -> Any:
        import httpx

        with self._lock:
            if self._sync is None:
                self._sync = httpx.Client(**self._client_options())
            return self._sync

    def _async_client(self) -> Any:
        import httpx

        loop = asyncio.get_running_loop()
        if self._async is None or self._async_loop is not loop:
            self._async, self._async_loop = httpx.AsyncClient(**self._client_options()), loop
        return self._async

    @staticmethod
    def _request(op: str, payload: Any, timeout_s: float | None) -> dict[str, Any]:
        method, path, _, _ = OPERATIONS[op]
        kwargs: dict[str, Any] = {"method": method, "url": path}
        if op == "score":
            kwargs["json"] = {"samples": _jsonable(payload)}
        elif op == "sleep":
            kwargs["json"] = {"level": payload}
        elif op == "wake":
            kwargs["json"] = {}  # a JSON body like every POST route's, so a body check never trips
        elif payload is not None:
            kwargs["json"] = payload
        if timeout_s is not None:
            kwargs["timeout"] = timeout_s
        return kwargs

    def _answer(self, op: str, response: Any) -> Any:
        """The answer of a 200 (``results`` for score, the model card for models), or the error."""
        path = OPERATIONS[op][1]
        status = response.status_code
        if status != 200:
            raise self._http_error(path, response)
        self._answered.add(path)
        try:
            body = response.json()
            return body["results"] if op == "score" else body["data"][0] if op == "models" else body
        except Exception as exc:
            raise _Fatal(
                f"{self.url}{path} answered 200 with an unexpected body: {exc}", status_code=200
            ) from exc

    def _http_error(self, path: str, response: Any) -> RewardClientError:
        status = response.status_code
        code, message = _error_body(response)
        text = f"{self.url}{path} answered {status}" + (f" {code}" if code else "") + f": {message}"
        if status in (401, 403):
            return AuthenticationError(
                text + " (pass api_key= or set RLREWARD_API_KEY)", status_code=status, code=code
            )
        # A 404 that Ray Serve's proxy wrote (not the ingress) for a route it should know: a restarted
        # proxy that has not received its route table yet. Transient, so retried.
        proxy_lost_route = status == 404 and _not_ours(response) and self._route_may_come_back(path)
        if status in _RETRY_STATUS or _is_proxy_500(response) or proxy_lost_route:
            if proxy_lost_route:
                text += " (Ray Serve's proxy does not know this route yet: restarting)"
            return RewardServerError(
                text, status_code=status, code=code, retry_after_s=_retry_after(response)
            )
        if 400 <= status < 500:
            return RewardRequestError(text, status_code=status, code=code)
        return _Fatal(text, status_code=status, code=code)

    def _route_may_come_back(self, path: str) -> bool:
        """A 404 from Ray Serve's proxy (not the ingress) is transient when the route answered before,
        or when the proxy's route table (``GET /-/routes``) is empty or names this app's prefix: a
        proxy restarted after a crash serves 404s until its table arrives. A table that lacks the
        prefix, or none at all, means a wrong URL: final."""
        if path in self._answered:
            return True
        import httpx

        parts = httpx.URL(self.url)
        try:
            routes = f"{parts.scheme}://{parts.netloc.decode()}/-/routes"
            table = self._sync_client().get(routes, timeout=2.0).json()
        except Exception:
            return False
        if not isinstance(table, dict):
            return False
        if not table:
            return True
        prefix = (parts.path or "/").rstrip("/") or "/"
        return any(str(route).rstrip("/") == prefix.rstrip("/") for route in table) or (
            prefix == "/" and "/" in table
        )

    def _call(self, op: str, payload: Any, timeout_s: float | None) -> Any:
        return self._answer(op, self._sync_client().request(**self._request(op, payload, timeout_s)))

    async def _acall(self, op: str, payload: Any, timeout_s: float | None) -> Any:
        response = await self._async_client().request(**self._request(op, payload, timeout_s))
        return self._answer(op, response)

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

    def close(self) -> None:
        with self._lock:
            if self._sync is not None:
                self._sync.close()
                self._sync = None

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()
            self._async = None
        self.close()


class HandleTransport(Transport):
    """Ray Serve ``DeploymentHandle`` calls: the replica deployment (score, models) and the ingress
    (hints, stats, sleep, wake), looked up on first use (joining the cluster if needed)."""

    def __init__(self, app_name: str, deployment: str, ray_address: str | None, timeout_s: float) -> None:
        self.app_name, self.deployment = app_name, deployment
        self.ray_address, self.timeout_s = ray_address, timeout_s
        self.where = f"app {app_name!r} ({deployment})"
        self._handles: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _handle(self, target: str) -> Any:
        with self._lock:
            if target not in self._handles:
                import ray
                from ray import serve

                if not ray.is_initialized():
                    ray.init(address=self.ray_address or "auto", log_to_driver=False)
                name = self.deployment if target == "replica" else INGRESS_DEPLOYMENT
                self._handles[target] = serve.get_deployment_handle(name, app_name=self.app_name)
            return self._handles[target]

    def _remote(self, handle: Any, op: str, payload: Any) -> Any:
        method = getattr(handle, OPERATIONS[op][3])
        return method.remote() if payload is None else method.remote(payload)

    def _call(self, op: str, payload: Any, timeout_s: float | None) -> Any:
        timeout_s = timeout_s or self.timeout_s
        response = self._remote(self._handle(OPERATIONS[op][2]), op, payload)
        try:
            return response.result(timeout_s=timeout_s)
        except TimeoutError:
            response.cancel()
            raise

    async def _acall(self, op: str, payload: Any, timeout_s: float | None) -> Any:
        target = OPERATIONS[op][2]
        # First use: ray.init / the handle lookup may block briefly, so off the event loop.
        handle = self._handles.get(target)
        if handle is None:
            handle = await asyncio.to_thread(self._handle, target)
        response = self._remote(handle, op, payload)
        try:
            return await asyncio.wait_for(awaited(response), timeout_s or self.timeout_s)
        except asyncio.TimeoutError:
            response.cancel()
            raise

    def translate(self, exc: BaseException) -> RewardClientError:
        if isinstance(exc, RewardClientError):
            return exc
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):  # GetTimeoutError is a TimeoutError
            return RewardTimeoutError(f"{self.where}: no answer within {self.timeout_s}s")
        failure = classify_ray_error(exc)
        if failure is None and isinstance(exc, ValueError) and "application" in str(exc).lower():
            # get_deployment_handle on an app that is not deployed (yet)
            failure = RayFailure("unavailable", str(exc))
        if failure is None or failure.kind == "bug":
            return _Fatal(f"{self.where} failed: {type(exc).__name__}: {exc}")
        return RewardServerError(
            f"{self.where}: {failure.message}", code=failure.kind, retry_after_s=failure.retry_after_s
        )

    def close(self) -> None:
        with self._lock:
            self._handles.clear()

    async def aclose(self) -> None:
        self.close()
