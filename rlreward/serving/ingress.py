"""HTTP API (FastAPI on Ray Serve) in front of the model replicas.

Routes: ``POST /v1/score`` (``{"samples": [...]}`` → ``{"model", "results"}``, ``results[i]`` for
``samples[i]``, a bad sample failing alone), ``POST /get_reward`` (OpenRLHF's remote-reward
contract, :mod:`rlreward.protocols.openrlhf`), ``GET /health`` (200 when a replica answers, else
503; never needs the token), ``GET /v1/models`` (vLLM's model card plus rlreward's fields), vLLM's
reward-model API (``/classify``, ``/v1/classify``, ``/pooling``, ``/score``, ``/rerank``, ``/v1/rerank``,
``/v2/rerank``, converted by :mod:`rlreward.protocols.vllm`), ``POST /v1/hints`` (the trainer's
RL-phase hints; ``RewardIngress.post_hint`` for handle callers), ``POST /v1/sleep`` ``{"level": 1|2}`` /
``POST /v1/wake`` (every replica, :mod:`rlreward.serving.sleep`; ``sleep_replicas`` / ``wake_replicas``),
``GET /v1/stats`` (sections by owner: ``"replicas"``, each replica's report; ``"reward"``,
:mod:`rlreward.serving.health`; ``stats_snapshot`` for handle callers), ``GET /dashboard``
(:mod:`rlreward.serving.dashboard`; both also take HTTP Basic, the token as password) and the OpenAPI
description (``/openapi.json``, ``/docs``, ``/redoc``), all but ``/health`` behind the token.

Contract: request bodies are pydantic models, validated after the size check on the raw body (a new
route: a model here, ``await self._body(request, Model)`` in the route,
``openapi_extra=_openapi_body(Model)`` on its decorator). Whole-request failures answer
``{"error": {"code", "message"}}``: 422 ``malformed_request``, 401 ``unauthorized``, 404/405, 413
``request_too_large``, 503 ``overloaded`` (429 if configured) or ``unavailable``, 504 ``timeout``,
500 ``internal_error`` only for a server bug; 429/503/504 carry ``Retry-After``, and a dead or
restarting replica is always a 503. No response names an absolute server path
(:func:`redact_paths`); the API key never reaches this process as such
(:func:`rlreward.serving.config.api_key_digest`). The module imports no torch: ingress replicas are
light. The manual: docs/serving.md ("HTTP API").
"""

# No `from __future__ import annotations` here: Serve's class-based FastAPI views read the route
# methods' annotations (`request: Request`) as objects, and string annotations break them (422).

import asyncio
import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from rlreward.errors import awaited, classify_ray_error
from rlreward.protocols import vllm
from rlreward.protocols.openrlhf import GetRewardRequest, get_reward_endpoint
from rlreward.schema import ScoreResult
from rlreward.serving import sleep as sleep_board
from rlreward.serving.autoscaling import HINT_EVENTS, post_hint
from rlreward.serving.dashboard import dashboard_html
from rlreward.serving.health import IngressHealth

log = logging.getLogger("rlreward")

api = FastAPI(
    title="rlreward",
    description="Multimodal value-head reward model: per-sample scores for RL trainers.",
    version="0.1.0",
    # Served by RewardIngress's own routes, behind the token (FastAPI's would answer anyone).
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
)


# -- request bodies ---------------------------------------------------------------------------------
class ScoreSamplesRequest(BaseModel):
    """``POST /v1/score``. Each sample is checked on its own by the replica (a bad one gets its own
    error, its neighbours are scored), so the items are free-form here."""

    model_config = ConfigDict(extra="allow")

    samples: list[Any] = Field(
        description="Samples to score: {prompt, response, images?, videos?} or {messages: [...]}; "
        "results[i] belongs to samples[i]."
    )


def _openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting ``model`` as a route's JSON body (the route reads the body itself,
    after the size check)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _validate(model: type[BaseModel], data: Any) -> Any:
    """``data`` as ``model``, or a 422 naming the first problems (where, what; never the input)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:3])
        raise HttpError(422, "malformed_request", f"not a valid {model.__name__}: {errs}") from exc


# An absolute POSIX path's directories as they appear in messages (not a URL's path: it follows a
# host name; not a relative path: it follows a word character).
_ABS_PATH = re.compile(r"(?<![\w:/.~-])(?:/[^\s'\"/:,;()\[\]]+)+/")


def redact_paths(text: str) -> str:
    """``text`` with the directories of every absolute path replaced by ``…/`` (``/srv/img/a.png`` →
    ``…/a.png``): responses never reveal the server's file layout."""
    return _ABS_PATH.sub("…/", text)


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


@api.exception_handler(vllm.VllmError)
async def _vllm_error(_: Request, exc: vllm.VllmError) -> JSONResponse:
    headers = (
        {"Retry-After": str(max(1, round(exc.retry_after_s)))} if exc.retry_after_s is not None else None
    )
    return JSONResponse(exc.body(redact_paths(exc.message)), status_code=exc.status, headers=headers)


@api.exception_handler(StarletteHTTPException)
async def _starlette_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


@api.exception_handler(RequestValidationError)
async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errs = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:3])
    return error_response(422, "malformed_request", errs)


@api.exception_handler(Exception)
async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    # Starlette's default is a plain-text 500; this keeps the error shape and hides paths.
    log.error("unexpected error in a route", exc_info=exc)
    return error_response(500, "internal_error", redact_paths(f"{type(exc).__name__}: {exc}"))


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


def _basic_password(credentials: str) -> str:
    """The password of an HTTP Basic ``credentials`` string ('' if it does not decode)."""
    import base64
    import binascii

    try:
        return base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")[2]
    except (binascii.Error, UnicodeDecodeError):
        return ""


class StatsQuery(BaseModel):
    """Query of ``GET /v1/stats`` and ``GET /dashboard``."""

    model_config = ConfigDict(extra="forbid")

    steps: int | None = Field(default=None, ge=1, le=100_000, description="Only the last N closed steps.")


class HintRequest(BaseModel):
    """Body of ``POST /v1/hints`` (and of ``RewardIngress.post_hint``): one RL-phase hint."""

    model_config = ConfigDict(extra="forbid")

    event: str = Field(description="expect | rollout_started | step_done")
    n_samples: int | None = Field(
        default=None, ge=1, le=100_000_000, strict=True, description="expect: samples coming."
    )
    within_s: float | None = Field(
        default=None, gt=0, le=86_400, description="expect: score them within this many seconds."
    )
    source: str = Field(
        default="default", min_length=1, max_length=128, description="The caller (one trainer process)."
    )

    @model_validator(mode="after")
    def _check(self) -> "HintRequest":
        if self.event not in HINT_EVENTS:
            raise ValueError(f"event must be one of {', '.join(HINT_EVENTS)}, not {self.event!r}")
        if self.event == "expect" and self.n_samples is None:
            raise ValueError("expect needs n_samples")
        return self


class SleepRequest(BaseModel):
    """Body of ``POST /v1/sleep`` (and of ``RewardIngress.sleep_replicas``)."""

    model_config = ConfigDict(extra="forbid")

    level: int = Field(
        default=1,
        ge=1,
        le=2,
        strict=True,
        description="1: weights to host memory, device memory freed; 2: weights dropped, reloaded on wake.",
    )


class WakeRequest(BaseModel):
    """Body of ``POST /v1/wake``: empty, or ``{}``."""

    model_config = ConfigDict(extra="forbid")


# Helpers the class uses are defined above it: serve.ingress serialises the class when it decorates it.
class RewardIngress:
    """FastAPI ingress; ``replica`` is the ``RewardReplica`` deployment handle.

    A plain class (tests may construct it with a fake replica handle); :data:`RewardIngressASGI` is
    it bound to the FastAPI routes, and :func:`rlreward.serving.app.build_app` makes the deployment.
    """

    def __init__(
        self,
        replica: Any,
        http_options: dict[str, Any],
        model_name: str,
        api_key_digest: str | None = None,
        sleep_timer: bool = False,
        health: dict[str, Any] | None = None,
    ) -> None:
        """``api_key_digest``: :func:`~rlreward.serving.config.api_key_digest` of the token, made where
        the app was built; without it the token is read here from ``http_options``' ``api_key``,
        ``api_key_env`` or ``api_key_file`` (on this replica's node), and only its digest is kept."""
        from rlreward.serving.config import HttpOptions, resolve_api_key
        from rlreward.serving.config import api_key_digest as digest_of

        self._replica = replica
        self._sleep_timer = sleep_timer  # replica.sleep is configured: hints drive the replicas' sleep
        self._http = HttpOptions.model_validate(http_options)
        self._model_name = model_name
        self._key_digest = api_key_digest
        if self._key_digest is None:
            key = resolve_api_key(self._http)
            if (self._http.api_key_env or self._http.api_key_file) and not key:
                raise RuntimeError(
                    "http.api_key_env / http.api_key_file name no token where the ingress runs: set the "
                    "variable or write the file on the cluster nodes, or pass RLREWARD_API_KEY / "
                    "--api-key-file to rlreward serve"
                )
            self._key_digest = digest_of(key) if key else None
        self._http = self._http.model_copy(update={"api_key": None})
        self._info: dict[str, Any] | None = None
        self._health = IngressHealth(health)

    # -- plumbing -----------------------------------------------------------------------------------
    def _authorize(self, request: Request, basic: bool = False) -> None:
        """Check the bearer token; ``basic``: also HTTP Basic with the token as password (a browser
        opening ``/dashboard`` asks for it and sends it on the page's own ``/v1/stats`` calls)."""
        from rlreward.serving.config import api_key_matches

        if not self._key_digest:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if basic and scheme.lower() == "basic" and token:
            token = _basic_password(token)
            scheme = "bearer"
        if scheme.lower() != "bearer" or not token:
            raise HttpError(
                401, "unauthorized", "missing 'Authorization: Bearer <token>' header (api_key is set)"
            )
        if not api_key_matches(token.strip(), self._key_digest):
            raise HttpError(401, "unauthorized", "wrong API token")

    async def _body(self, request: Request, model: type[BaseModel]) -> Any:
        """The request's JSON body as ``model``: size-checked, parsed, validated (413/422 otherwise)."""
        return _validate(model, _parse_json(await self._read_body(request)))

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
        results, _ = await self.score_samples_with_tokens(samples)
        return results

    async def score_samples_with_tokens(
        self, samples: list[dict[str, Any]]
    ) -> tuple[list[ScoreResult], list[int]]:
        """:meth:`score_samples`, plus each sample's token count (0 where it failed before the model)."""
        if not samples:
            return [], []
        if self._health.enabled:
            results, tokens, infos = await self._await_replica(
                self._replica.score_with_health.remote(samples)
            )
        else:
            results, tokens = await self._await_replica(self._replica.score_with_tokens.remote(samples))
            infos = [None] * len(results)
        if len(results) != len(samples) or len(tokens) != len(samples) or len(infos) != len(samples):
            # would be a replica bug; never hand out misaligned scores
            raise HttpError(500, "internal_error", f"{len(results)} results for {len(samples)} samples")
        self._health.record(results, infos)
        return results, tokens

    async def _await_replica(self, response: Any) -> Any:
        """A replica call's answer; Ray/Serve failures and the timeout become :class:`HttpError`."""
        try:
            results = await asyncio.wait_for(awaited(response), self._http.request_timeout_s)
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
                    500, "internal_error", redact_paths(f"scoring failed: {type(exc).__name__}: {exc}")
                ) from exc
            raise err from exc
        return results

    # -- routes ---------------------------------------------------------------------------------------
    def _check_count(self, n: int, what: str) -> None:
        limit = self._http.max_samples_per_request
        if n > limit:
            raise HttpError(
                413,
                "request_too_large",
                f"{n} {what} in one request; the limit is {limit} (max_samples_per_request): "
                "send them in chunks (RewardClient does this with chunk_size)",
            )

    @api.post("/v1/score", openapi_extra=_openapi_body(ScoreSamplesRequest))
    async def score(self, request: Request) -> JSONResponse:
        self._authorize(request)
        body: ScoreSamplesRequest = await self._body(request, ScoreSamplesRequest)
        self._check_count(len(body.samples), "samples")
        results = await self.score_samples(body.samples)
        out = []
        for r in results:
            item = r.model_dump(mode="json")
            if item.get("error") and isinstance(item["error"].get("message"), str):
                item["error"]["message"] = redact_paths(item["error"]["message"])
            out.append(item)
        return JSONResponse({"model": self._model_name, "results": out})

    @api.post("/get_reward", openapi_extra=_openapi_body(GetRewardRequest))
    async def get_reward(self, request: Request) -> JSONResponse:
        self._authorize(request)
        body: GetRewardRequest = await self._body(request, GetRewardRequest)
        self._check_count(1 if isinstance(body.query, str) else len(body.query), "queries")
        # The adapter answers a failed scoring call with fallback rewards (OpenRLHF needs numbers); a
        # replica that is dead, restarting or overloaded must instead reach the caller as 503/504 so
        # that it retries: a fallback reward there would be a lost reward.
        unavailable: list[HttpError] = []

        async def score(samples: list[dict[str, Any]]) -> list[ScoreResult]:
            try:
                return await self.score_samples(samples)
            except HttpError as exc:
                if exc.status in (429, 503, 504):
                    unavailable.append(exc)
                raise

        try:
            answer = await get_reward_endpoint(body.model_dump(exclude_unset=True), score)
        except (ValueError, TypeError) as exc:
            raise HttpError(
                422, "malformed_request", redact_paths(f"not a valid get_reward body: {exc}")
            ) from exc
        if unavailable:
            raise unavailable[0]
        return JSONResponse(answer)

    # -- vLLM's reward-model API (rlreward.protocols.vllm) ------------------------------------------
    async def _vllm(self, request: Request, route: Any) -> JSONResponse:
        """Run a :mod:`~rlreward.protocols.vllm` route; every failure answers in vLLM's error shape."""
        try:
            self._authorize(request)
            vllm.check_content_type(request.headers.get("content-type"))
            payload = _parse_json(await self._read_body(request))
            ctx = vllm.VllmContext(
                self._model_name, self._http.max_samples_per_request, request.headers.get("x-request-id")
            )
            return JSONResponse(await route(payload, ctx, self.score_samples_with_tokens))
        except HttpError as exc:
            raise vllm.from_http_error(exc.status, exc.message, exc.retry_after_s) from exc

    @api.post("/classify", openapi_extra=_openapi_body(vllm.InputRequest))
    @api.post("/v1/classify", include_in_schema=False)
    async def vllm_classify(self, request: Request) -> JSONResponse:
        return await self._vllm(request, vllm.classify)

    @api.post("/pooling", openapi_extra=_openapi_body(vllm.PoolingRequest))
    async def vllm_pooling(self, request: Request) -> JSONResponse:
        return await self._vllm(request, vllm.pooling)

    @api.post("/score", openapi_extra=_openapi_body(vllm.PairScoreRequest))
    async def vllm_score(self, request: Request) -> JSONResponse:
        return await self._vllm(request, vllm.score_pairs)

    @api.post("/rerank", openapi_extra=_openapi_body(vllm.RerankRequest))
    @api.post("/v1/rerank", include_in_schema=False)
    @api.post("/v2/rerank", include_in_schema=False)
    async def vllm_rerank(self, request: Request) -> JSONResponse:
        return await self._vllm(request, vllm.rerank)

    # -- API description, behind the token ------------------------------------------------------------
    @api.get("/openapi.json", include_in_schema=False)
    async def openapi(self, request: Request) -> JSONResponse:
        self._authorize(request)
        return JSONResponse(api.openapi())

    @api.get("/docs", include_in_schema=False)
    async def docs(self, request: Request) -> HTMLResponse:
        self._authorize(request)
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(openapi_url=root + "/openapi.json", title=f"{api.title} - docs")

    @api.get("/redoc", include_in_schema=False)
    async def redoc(self, request: Request) -> HTMLResponse:
        self._authorize(request)
        root = request.scope.get("root_path", "").rstrip("/")
        return get_redoc_html(openapi_url=root + "/openapi.json", title=f"{api.title} - ReDoc")

    async def post_hint(self, event: dict[str, Any]) -> dict[str, Any]:
        """Handle-mode entry of ``POST /v1/hints``: validate ``event`` (ValueError if malformed) and
        hand it to this application's hint board."""
        hint = event if isinstance(event, HintRequest) else HintRequest.model_validate(event)
        if hint.event == "step_done":
            await self._health.step_done(hint.source)  # reward health: a step ends here
        app_name = serve.get_replica_context().app_name
        answer = await post_hint(app_name, hint.model_dump(exclude_none=True))
        if self._sleep_timer:
            await asyncio.wait_for(sleep_board.post_phase_hint(app_name, hint.event), 10.0)
            if not answer.get("accepted"):  # no hint policy, but the replicas' sleep timers take it
                answer = {"accepted": True, "used_by": ["sleep"]}
        return answer

    @api.post("/v1/hints", openapi_extra=_openapi_body(HintRequest))
    async def hints(self, request: Request) -> JSONResponse:
        self._authorize(request)
        hint: HintRequest = await self._body(request, HintRequest)
        try:
            answer = await self.post_hint(hint)
        except Exception as exc:  # the board actor died or is restarting: the hint may be resent
            raise HttpError(
                503, "unavailable", f"hint board unavailable: {type(exc).__name__}; retry", 1.0
            ) from exc
        return JSONResponse(answer)

    # -- sleep, wake, stats (rlreward.serving.sleep) ----------------------------------------------------
    async def _sleep_command(self, action: str, level: int = 1) -> dict[str, Any]:
        timeout = self._http.request_timeout_s
        try:
            return await sleep_board.run_command(
                serve.get_replica_context().app_name, action, level, timeout_s=timeout
            )
        except TimeoutError as exc:
            raise HttpError(504, "timeout", redact_paths(str(exc)), 1.0) from exc
        except RuntimeError as exc:  # a replica failed the command (a failed wake: it is being replaced)
            raise HttpError(503, "unavailable", redact_paths(f"{exc}; retry"), 1.0) from exc
        except Exception as exc:  # the board could not be reached
            raise HttpError(
                503, "unavailable", f"sleep board unavailable: {type(exc).__name__}; retry", 1.0
            ) from exc

    async def sleep_replicas(self, level: int = 1) -> dict[str, Any]:
        """Put every replica of this application to sleep at ``level``; returns ``{"replicas": [...]}``
        once all are asleep. ValueError for a bad level; :class:`HttpError` 503/504 otherwise."""
        body = SleepRequest.model_validate({"level": level})
        return await self._sleep_command("sleep", body.level)

    async def wake_replicas(self) -> dict[str, Any]:
        """Wake every replica; returns ``{"replicas": [...]}`` once all are awake."""
        return await self._sleep_command("wake")

    @api.post("/v1/sleep", openapi_extra=_openapi_body(SleepRequest))
    async def sleep(self, request: Request) -> JSONResponse:
        self._authorize(request)
        raw = await self._read_body(request)
        body: SleepRequest = _validate(SleepRequest, _parse_json(raw) if raw.strip() else {})
        return JSONResponse(await self._sleep_command("sleep", body.level))

    @api.post("/v1/wake", openapi_extra=_openapi_body(WakeRequest))
    async def wake(self, request: Request) -> JSONResponse:
        self._authorize(request)
        raw = await self._read_body(request)
        _validate(WakeRequest, _parse_json(raw) if raw.strip() else {})
        return JSONResponse(await self._sleep_command("wake"))

    # -- reward health, replicas (GET /v1/stats, GET /dashboard) -----------------------------------------
    async def stats_snapshot(self, steps: int | None = None) -> dict[str, Any]:
        """``GET /v1/stats``'s object, one section per owner (handle callers use this method)."""
        out: dict[str, Any] = {}
        out["replicas"] = await asyncio.wait_for(
            sleep_board.replica_reports(serve.get_replica_context().app_name), 10.0
        )
        out["reward"] = await self._health.section(steps)
        return out

    async def _stats(self, request: Request) -> dict[str, Any]:
        query: StatsQuery = _validate(StatsQuery, dict(request.query_params))
        try:
            return await self.stats_snapshot(query.steps)
        except HttpError:
            raise
        except Exception as exc:
            raise HttpError(
                503, "unavailable", f"statistics unavailable: {type(exc).__name__}; retry", 1.0
            ) from exc

    @api.get("/v1/stats")
    async def stats(self, request: Request) -> JSONResponse:
        self._authorize(request, basic=True)
        return JSONResponse(await self._stats(request))

    @api.get("/dashboard", include_in_schema=False)
    async def dashboard(self, request: Request) -> HTMLResponse:
        try:
            self._authorize(request, basic=True)
        except HttpError as exc:  # a browser asks for the token (any user name, the token as password)
            response = error_response(exc.status, exc.code, exc.message)
            response.headers["WWW-Authenticate"] = 'Basic realm="rlreward", charset="UTF-8"'
            return response
        root = request.scope.get("root_path", "").rstrip("/")
        return HTMLResponse(dashboard_html(await self._stats(request), self._model_name, root + "/v1/stats"))

    @api.get("/health")
    async def health(self) -> JSONResponse:
        try:
            await asyncio.wait_for(awaited(self._replica.info.remote()), 10.0)
        except Exception as exc:
            return error_response(503, "unavailable", f"no reward replica answers: {type(exc).__name__}", 1.0)
        return JSONResponse({"status": "ok", "model": self._model_name})

    @api.get("/v1/models")
    async def models(self, request: Request) -> JSONResponse:
        self._authorize(request)
        if self._info is None:
            try:
                self._info = await asyncio.wait_for(awaited(self._replica.info.remote()), 30.0)
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
                        # vLLM's ModelCard fields first, rlreward's after them.
                        **vllm.model_card(self._model_name, (info.get("limits") or {}).get("max_tokens")),
                        # The reward-model family and the recipe it is scored with (docs/models.md).
                        "family": info.get("family"),
                        "head_shape": info.get("head_shape"),
                        "hidden_size": info.get("hidden_size"),
                        "dtype": info.get("dtype"),
                        "device": info.get("device"),
                        "min_pixels": info.get("min_pixels"),
                        "max_pixels": info.get("max_pixels"),
                        # Effective preprocessing (both resizes, video bounds, deviations) and the
                        # batch budget in effect (device default resolved): Scorer.effective_settings.
                        "preprocessing": info.get("preprocessing"),
                        "batching": info.get("batching"),
                        "max_batch_tokens": info.get("max_batch_tokens"),
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
