"""HTTP API (FastAPI on Ray Serve) in front of the model replicas.

Routes:

* ``POST /v1/score`` ``{"samples": [...]}`` → ``{"model": str, "results": [{"score": float|null,
  "error": null|{"code", "message"}}]}``; ``results[i]`` belongs to ``samples[i]``. A sample that is
  not valid gets its own error; the others are scored.
* ``POST /get_reward``: OpenRLHF's remote-reward contract (``{"query": [...], ...}`` →
  ``{"rewards": [...], ...}``), implemented by :func:`rlreward.adapters.openrlhf.get_reward_endpoint`
  over this server's scoring; 501 if that adapter is not installed.
* ``GET /health``: 200 when a replica answers, else 503. Never needs the token.
* ``GET /v1/models``: the served model (id, head shape, dtype, device) and the request limits.

Whole-request failures answer ``{"error": {"code", "message"}}`` with:

====  ======================  ==========================================================
422   ``malformed_request``   body is not JSON, not an object, or ``samples`` is not a list
401   ``unauthorized``        missing or wrong ``Authorization: Bearer <token>``
413   ``request_too_large``   body over ``max_request_bytes`` or more samples than allowed
503   ``overloaded``          replicas' queues full (``max_queued_requests``; 429 if configured)
503   ``unavailable``         no replica could take the request (starting, died); retry
504   ``timeout``             replicas did not answer within ``request_timeout_s``
====  ======================  ==========================================================

Responses of 429/503 carry ``Retry-After``. The module imports no torch: ingress replicas are light.
"""

# No `from __future__ import annotations` here: Serve's class-based FastAPI views read the route
# methods' annotations (`request: Request`) as objects, and string annotations break them (422).

import asyncio
import hmac
import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from rlreward.errors import classify_ray_error
from rlreward.schema import ScoreResult

log = logging.getLogger("rlreward")

api = FastAPI(
    title="rlreward",
    description="Multimodal value-head reward model: per-sample scores for RL trainers.",
    version="0.1.0",
)


class HttpError(Exception):
    """A whole-request failure, answered as ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after_s = status, code, message, retry_after_s


def error_response(status: int, code: str, message: str, retry_after_s: float | None = None) -> JSONResponse:
    headers = {"Retry-After": str(max(1, round(retry_after_s)))} if retry_after_s is not None else None
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


@api.exception_handler(HttpError)
async def _http_error(_: Request, exc: HttpError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, exc.retry_after_s)


@api.exception_handler(StarletteHTTPException)
async def _starlette_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


@api.exception_handler(RequestValidationError)
async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(422, "malformed_request", str(exc.errors()[:3]))


def _translate(exc: BaseException, overload_status: int) -> HttpError | None:
    """Ray/Serve failures of a replica call → the HTTP error a client should see (None: a bug)."""
    failure = classify_ray_error(exc)
    if failure is None or failure.kind == "bug":
        return None
    status = overload_status if failure.kind == "overloaded" else 503
    return HttpError(status, failure.kind, f"{failure.message}; retry later", failure.retry_after_s or 1.0)


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise HttpError(422, "malformed_request", f"body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise HttpError(422, "malformed_request", "body is nested too deeply") from exc


def _parse_samples(body: bytes, max_samples: int) -> list[Any]:
    data = _parse_json(body)
    if not isinstance(data, dict):
        raise HttpError(
            422,
            "malformed_request",
            f'body must be a JSON object {{"samples": [...]}}, not {type(data).__name__}',
        )
    if "samples" not in data:
        raise HttpError(422, "malformed_request", 'body has no "samples" list (expected {"samples": [...]})')
    samples = data["samples"]
    if not isinstance(samples, list):
        raise HttpError(422, "malformed_request", f'"samples" must be a list, not {type(samples).__name__}')
    if len(samples) > max_samples:
        raise HttpError(
            413,
            "request_too_large",
            f"{len(samples)} samples in one request; the limit is {max_samples} (max_samples_per_request): "
            "send them in chunks (RewardClient does this with chunk_size)",
        )
    return samples


async def _await(response: Any) -> Any:
    return await response


# Helpers the class uses are defined above it: serve.ingress serialises the class when it decorates it.
class RewardIngress:
    """FastAPI ingress; ``replica`` is the ``RewardReplica`` deployment handle.

    A plain class (tests may construct it with a fake replica handle); :data:`RewardIngressASGI` is
    it bound to the FastAPI routes, and :func:`rlreward.serving.app.build_app` makes the deployment.
    """

    def __init__(self, replica: Any, http_options: dict[str, Any], model_name: str) -> None:
        from rlreward.serving.config import HttpOptions, resolve_api_key

        self._replica = replica
        self._http = HttpOptions.model_validate(http_options)
        self._model_name = model_name
        self._api_key = resolve_api_key(self._http)
        if self._http.api_key_env and not self._api_key:
            raise RuntimeError(
                f"http.api_key_env names ${self._http.api_key_env}, which is not set where the ingress runs: set it "
                "on the cluster nodes (or in runtime_env.env_vars), or pass http.api_key / --api-key"
            )
        self._info: dict[str, Any] | None = None

    # -- plumbing -----------------------------------------------------------------------------------
    def _authorize(self, request: Request) -> None:
        if not self._api_key:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HttpError(
                401, "unauthorized", "missing 'Authorization: Bearer <token>' header (api_key is set)"
            )
        if not hmac.compare_digest(token.strip().encode(), self._api_key.encode()):
            raise HttpError(401, "unauthorized", "wrong API token")

    async def _read_body(self, request: Request) -> bytes:
        limit = self._http.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HttpError(
                413,
                "request_too_large",
                f"body is {declared} bytes; the limit is {limit} (max_request_bytes)",
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HttpError(413, "request_too_large", f"body is over {limit} bytes (max_request_bytes)")
            chunks.append(chunk)
        return b"".join(chunks)

    async def score_samples(self, samples: list[dict[str, Any]]) -> list[ScoreResult]:
        """Score through the replicas; raises :class:`HttpError` for unavailable/overloaded/timeout."""
        if not samples:
            return []
        response = self._replica.score.remote(samples)
        try:
            results = await asyncio.wait_for(_await(response), self._http.request_timeout_s)
        except asyncio.TimeoutError as exc:
            response.cancel()
            raise HttpError(
                504, "timeout", f"replicas did not answer within {self._http.request_timeout_s}s", 1.0
            ) from exc
        except Exception as exc:
            err = _translate(exc, self._http.overload_status_code)
            if err is None:
                log.exception("replica call failed")
                raise HttpError(
                    500, "internal_error", f"scoring failed: {type(exc).__name__}: {exc}"
                ) from exc
            raise err from exc
        if len(results) != len(samples):  # would be a replica bug; never hand out misaligned scores
            raise HttpError(500, "internal_error", f"{len(results)} results for {len(samples)} samples")
        return results

    # -- routes ---------------------------------------------------------------------------------------
    @api.post("/v1/score")
    async def score(self, request: Request) -> JSONResponse:
        self._authorize(request)
        samples = _parse_samples(await self._read_body(request), self._http.max_samples_per_request)
        results = await self.score_samples(samples)
        return JSONResponse(
            {"model": self._model_name, "results": [r.model_dump(mode="json") for r in results]}
        )

    @api.post("/get_reward")
    async def get_reward(self, request: Request) -> JSONResponse:
        self._authorize(request)
        body = await self._read_body(request)
        payload = _parse_json(body)
        if not isinstance(payload, dict):
            raise HttpError(422, "malformed_request", 'body must be a JSON object {"query": [...], ...}')
        queries = payload.get("query")
        if isinstance(queries, list) and len(queries) > self._http.max_samples_per_request:
            raise HttpError(
                413,
                "request_too_large",
                f"{len(queries)} queries; the limit is "
                f"{self._http.max_samples_per_request} (max_samples_per_request)",
            )
        try:
            from rlreward.adapters.openrlhf import get_reward_endpoint
        except ImportError as exc:
            raise HttpError(501, "not_implemented", f"the OpenRLHF adapter is not available: {exc}") from exc
        return JSONResponse(await get_reward_endpoint(payload, self.score_samples))

    @api.get("/health")
    async def health(self) -> JSONResponse:
        try:
            await asyncio.wait_for(_await(self._replica.info.remote()), 10.0)
        except Exception as exc:
            return error_response(503, "unavailable", f"no reward replica answers: {type(exc).__name__}", 1.0)
        return JSONResponse({"status": "ok", "model": self._model_name})

    @api.get("/v1/models")
    async def models(self, request: Request) -> JSONResponse:
        self._authorize(request)
        if self._info is None:
            try:
                self._info = await asyncio.wait_for(_await(self._replica.info.remote()), 30.0)
            except Exception as exc:
                raise HttpError(
                    503, "unavailable", f"no reward replica answers: {type(exc).__name__}", 1.0
                ) from exc
        info = self._info
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {
                        "id": self._model_name,
                        "object": "model",
                        "owned_by": "rlreward",
                        "head_shape": info.get("head_shape"),
                        "hidden_size": info.get("hidden_size"),
                        "dtype": info.get("dtype"),
                        "device": info.get("device"),
                        "min_pixels": info.get("min_pixels"),
                        "max_pixels": info.get("max_pixels"),
                        "limits": {
                            **(info.get("limits") or {}),
                            "max_request_bytes": self._http.max_request_bytes,
                            "max_samples_per_request": self._http.max_samples_per_request,
                        },
                    }
                ],
            }
        )


# Serve's FastAPI integration rewrites the route methods' signatures (``self`` becomes a dependency)
# in the process that wraps the class, and replicas unpickle the routes by reference: so the wrap must
# run wherever this module is imported. ``serve.deployment`` and its options are applied in
# :func:`rlreward.serving.app.build_app`; ``RewardIngress`` stays a plain class for tests.
RewardIngressASGI = serve.ingress(api)(RewardIngress)
