"""RewardClient / AsyncRewardClient against a real local HTTP server that speaks the /v1/score
contract with the real tiny scorer, and fails on cue (503, 429, 401, slow answers, closed port)."""

from __future__ import annotations

import asyncio
import json
import pickle
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rlreward.client import (
    AsyncRewardClient,
    AuthenticationError,
    RewardClient,
    RewardClientError,
    RewardRequestError,
    RewardServerError,
    RewardTimeoutError,
)
from rlreward.schema import ScoreResult
from tests.conftest import noise_png

SAMPLES = [{"prompt": f"question {i}", "response": f"answer {i}"} for i in range(10)]


class _Server:
    """A scripted /v1/score server: each request takes the next action from ``script`` (an int is
    an error status, ``"slow"`` sleeps 2 s, ``"short"`` answers one result too few); once the script
    is empty it scores for real."""

    def __init__(self, scorer):
        self.scorer = scorer
        self.script: list = []
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, status, body, headers=None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(200, {"data": [{"id": "tiny", "head_shape": [1, 64]}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.requests.append({"auth": self.headers.get("Authorization"), "body": body})
                    action = outer.script.pop(0) if outer.script else None
                if isinstance(action, int):
                    headers = {"Retry-After": "0"} if action in (429, 503) else None
                    return self._send(
                        action, {"error": {"code": f"e{action}", "message": f"scripted {action}"}}, headers
                    )
                if action == "slow":
                    time.sleep(2)
                results = outer.scorer.score(body["samples"])
                if action == "short":
                    results = results[:-1]
                self._send(200, {"model": "tiny", "results": [r.model_dump() for r in results]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def server(scorer):
    s = _Server(scorer)
    yield s
    s.httpd.shutdown()


@pytest.fixture
def srv(server):
    server.script.clear()
    server.requests.clear()
    return server


def _client(srv, **kw) -> RewardClient:
    return RewardClient(url=srv.url, **{"backoff_s": 0.01, "max_backoff_s": 0.05, **kw})


def test_chunks_keep_order_and_match_in_process_scores(srv, scorer):
    results = _client(srv, chunk_size=3, max_concurrency=4).score(SAMPLES)
    assert [r.score for r in results] == pytest.approx([r.score for r in scorer.score(SAMPLES)], abs=1e-6)
    assert sorted(len(r["body"]["samples"]) for r in srv.requests) == [1, 3, 3, 3]
    assert _client(srv).score([]) == []


def test_bytes_and_pil_images_travel_as_base64(srv, scorer):
    from PIL import Image

    png = noise_png(3)
    pil = Image.new("RGB", (56, 56), (0, 120, 200))
    samples = [
        {"prompt": "Describe.", "response": "Noise.", "images": [png]},
        {"prompt": "Colour?", "response": "Blue.", "images": [pil]},
    ]
    results = _client(srv).score(samples)
    sent = srv.requests[0]["body"]["samples"]
    assert all(isinstance(s["images"][0], str) for s in sent)
    expected = scorer.score(samples)
    assert all(r.ok for r in results)
    assert [r.score for r in results] == pytest.approx([r.score for r in expected], abs=1e-6)


@pytest.mark.parametrize("status", [503, 429, 502])
def test_overload_and_gateway_errors_are_retried(srv, status):
    srv.script[:] = [status, status]
    results = _client(srv, retries=3).score(SAMPLES[:2])
    assert all(isinstance(r, ScoreResult) and r.ok for r in results)
    assert len(srv.requests) == 3


def test_after_all_retries_a_clear_error_not_nones(srv):
    srv.script[:] = [503] * 10
    with pytest.raises(RewardServerError) as info:
        _client(srv, retries=2).score(SAMPLES[:2])
    assert info.value.status_code == 503 and info.value.code == "e503"
    assert "gave up after 3 attempts" in str(info.value)
    assert len(srv.requests) == 3


@pytest.mark.parametrize(
    ("status", "kind"), [(401, AuthenticationError), (422, RewardRequestError), (413, RewardRequestError)]
)
def test_request_errors_are_not_retried(srv, status, kind):
    srv.script[:] = [status]
    with pytest.raises(kind) as info:
        _client(srv, retries=5).score(SAMPLES[:1])
    assert info.value.status_code == status and f"scripted {status}" in str(info.value)
    assert len(srv.requests) == 1


def test_api_key_header_and_env_default(srv, monkeypatch):
    _client(srv, api_key="abc").score(SAMPLES[:1])
    monkeypatch.setenv("RLREWARD_API_KEY", "from-env")
    _client(srv).score(SAMPLES[:1])
    assert [r["auth"] for r in srv.requests] == ["Bearer abc", "Bearer from-env"]


def test_timeouts_and_unreachable_servers(srv):
    srv.script[:] = ["slow"]
    with pytest.raises(RewardTimeoutError):
        _client(srv, timeout_s=0.3, retries=0).score(SAMPLES[:1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(RewardServerError, match="cannot reach") as info:
        RewardClient(url=dead, retries=1, backoff_s=0.01).score(SAMPLES[:1])
    assert info.value.__cause__ is not None  # the httpx error, kept as the cause


def test_a_server_breaking_the_protocol_is_an_error_without_retry(srv):
    srv.script[:] = ["short"]
    with pytest.raises(RewardServerError, match="1 results for 2 samples"):
        _client(srv, retries=3).score(SAMPLES[:2])
    assert len(srv.requests) == 1


def test_submit_returns_a_future(srv, scorer):
    future = _client(srv, chunk_size=4).submit(SAMPLES)
    assert [r.score for r in future.result(timeout=60)] == pytest.approx(
        [r.score for r in scorer.score(SAMPLES)]
    )
    srv.script[:] = [401]
    with pytest.raises(AuthenticationError):
        _client(srv).submit(SAMPLES[:1]).result(timeout=60)


def test_async_client_retries_and_chunks(srv, scorer):
    srv.script[:] = [503]

    async def go():
        async with AsyncRewardClient(url=srv.url, chunk_size=4, backoff_s=0.01) as client:
            return await client.score(SAMPLES), await client.models()

    results, model = asyncio.run(go())
    assert [r.score for r in results] == pytest.approx([r.score for r in scorer.score(SAMPLES)], abs=1e-6)
    assert model["id"] == "tiny" and len(srv.requests) == 4


def test_clients_survive_pickling(srv):
    client = _client(srv, chunk_size=2)
    client.score(SAMPLES[:3])  # live connection and thread pool
    clone = pickle.loads(pickle.dumps(client))
    assert clone.url == client.url and clone.chunk_size == 2
    assert len(clone.score(SAMPLES[:3])) == 3
    aclone = pickle.loads(pickle.dumps(AsyncRewardClient(url=srv.url)))
    assert len(asyncio.run(aclone.score(SAMPLES[:1]))) == 1


def test_constructor_checks():
    with pytest.raises(ValueError, match="exactly one"):
        RewardClient(url="http://x", app_name="rlreward")
    with pytest.raises(ValueError, match="exactly one"):
        RewardClient()
    with pytest.raises(ValueError, match="http://"):
        RewardClient(url="localhost:8000")
    with pytest.raises(ValueError, match="chunk_size"):
        RewardClient(url="http://x", chunk_size=0)
    with pytest.raises(TypeError):
        RewardClient(url="http://x").score({"prompt": "a", "response": "b"})  # one sample, not a list


def test_handle_mode_translates_ray_errors_at_one_boundary():
    from ray.exceptions import ActorDiedError, RayTaskError
    from ray.serve.exceptions import BackPressureError, ReplicaUnavailableError

    transport = RewardClient(app_name="rlreward")._transport  # no Ray call until the first score
    overloaded = transport.translate(BackPressureError(num_queued_requests=4, max_queued_requests=4))
    assert (
        isinstance(overloaded, RewardServerError) and overloaded.retryable and overloaded.code == "overloaded"
    )
    died = transport.translate(ActorDiedError())
    assert isinstance(died, RewardServerError) and died.retryable
    bug = transport.translate(RayTaskError("score", "Traceback ...", ValueError("boom")))
    assert isinstance(bug, RewardClientError) and not bug.retryable
    wrapped_death = transport.translate(RayTaskError("score", "Traceback ...", ActorDiedError()))
    assert isinstance(wrapped_death, RewardServerError) and wrapped_death.retryable
    gone = transport.translate(ReplicaUnavailableError("replica x is no longer available"))
    assert gone.retryable and gone.code == "unavailable"
    assert isinstance(transport.translate(TimeoutError()), RewardTimeoutError)


# -- retry policy against an injected httpx transport (no server: the handler is the server) --------
def _echo_results(request) -> list[dict]:
    """One result per sample whose score is the number in its prompt: a misplaced score shows."""
    samples = json.loads(request.content)["samples"]
    return [{"score": float(s["prompt"].split()[-1]), "error": None} for s in samples]


class _Script:
    """An httpx handler: per request, the next scripted failure (a status, a (status, headers, body)
    tuple or an exception), then real answers."""

    def __init__(self, *steps):
        self.steps = list(steps)
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, request):
        import httpx

        with self.lock:
            self.calls += 1
            step = self.steps.pop(0) if self.steps else None
        if isinstance(step, Exception):
            raise step
        if isinstance(step, int):
            step = (step, {}, {"error": {"code": f"e{step}", "message": f"scripted {step}"}})
        if step is not None:
            status, headers, body = step
            if isinstance(body, str):
                return httpx.Response(status, headers=headers, text=body)
            return httpx.Response(status, headers=headers, json=body)
        return httpx.Response(200, json={"model": "m", "results": _echo_results(request)})


def _mock_client(handler, cls=RewardClient, **kw):
    import httpx

    opts = {"backoff_s": 0.001, "max_backoff_s": 0.01, "transport": httpx.MockTransport(handler), **kw}
    return cls(url="http://reward.test", **opts)


def test_connection_errors_and_gateway_statuses_are_retried_until_answered():
    import httpx

    script = _Script(
        httpx.ConnectError("refused"),
        502,
        504,
        (429, {"Retry-After": "0"}, {}),
        httpx.RemoteProtocolError("x"),
    )
    results = _mock_client(script).score(SAMPLES[:3])
    assert [r.score for r in results] == [0.0, 1.0, 2.0]
    assert script.calls == 6


def test_a_500_the_ingress_did_not_write_is_retried_but_the_ingress_own_500_is_not():
    # What Ray Serve's proxy (uvicorn) answers when the ingress actor dies under a request.
    script = _Script((500, {"content-type": "text/plain"}, "Internal Server Error"))
    assert [r.score for r in _mock_client(script).score(SAMPLES[:2])] == [0.0, 1.0]
    assert script.calls == 2

    script = _Script((500, {}, {"error": {"code": "internal_error", "message": "bug"}}))
    with pytest.raises(RewardServerError, match="internal_error") as info:
        _mock_client(script).score(SAMPLES[:2])
    assert not info.value.retryable and script.calls == 1


@pytest.mark.parametrize("status", [400, 404, 408, 409, 413, 422])
def test_other_4xx_are_final_at_once(status):
    script = _Script(status)
    with pytest.raises(RewardRequestError) as info:
        _mock_client(script).score(SAMPLES[:1])
    assert info.value.status_code == status and script.calls == 1


def test_the_retry_budget_is_time_and_the_error_says_it_was_spent():
    script = _Script(*[503] * 10_000)
    with pytest.raises(RewardServerError) as info:
        _mock_client(script, retry_budget_s=0.2).score(SAMPLES[:1])
    message = str(info.value)
    assert "retry_budget_s=0.2 spent" in message and "gave up after" in message
    assert script.calls > 1  # it did retry inside the budget
    assert RewardClient(url="http://x").retry_budget_s >= 60  # outlasts a ~30 s proxy restart


def test_retry_after_is_waited_in_full_and_refused_when_it_outlasts_the_budget(monkeypatch):
    import rlreward.client as client_module

    waits: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", waits.append)
    script = _Script((503, {"Retry-After": "7"}, {}), (429, {"Retry-After": "3"}, {}))
    assert _mock_client(script, retry_budget_s=60).score(SAMPLES[:1])[0].score == 0.0
    assert waits[0] >= 7 and waits[1] >= 3  # more than max_backoff_s: the server's word wins

    script = _Script((503, {"Retry-After": "120"}, {}))
    with pytest.raises(RewardServerError, match="asked to wait 120s"):
        _mock_client(script, retry_budget_s=60).score(SAMPLES[:1])
    assert script.calls == 1


def test_backoff_is_jittered_and_grows():
    client = RewardClient(url="http://x", backoff_s=1.0, max_backoff_s=100.0)
    err = RewardServerError("x")
    first = {client._delay(0, err) for _ in range(50)}
    fourth = [client._delay(3, err) for _ in range(50)]
    assert len(first) > 1 and all(0.5 <= d <= 1.0 for d in first)
    assert all(4.0 <= d <= 8.0 for d in fourth)
    assert client._delay(40, err) <= 100.0


@pytest.mark.parametrize("cls", [RewardClient, AsyncRewardClient])
def test_every_score_returns_to_its_sample_across_retries_and_partial_failures(cls):
    import httpx

    samples = [{"prompt": f"question {i}", "response": "r"} for i in range(200)]
    seen: dict[int, int] = {}
    lock = threading.Lock()

    def flaky(request):
        first = int(json.loads(request.content)["samples"][0]["prompt"].split()[-1])
        with lock:
            seen[first] = seen.get(first, 0) + 1
            tries = seen[first]
        if first % 3 == 0 and tries <= 2:  # a third of the chunks fail twice, differently
            if tries == 1:
                raise httpx.ReadError("connection reset")
            return httpx.Response(503, json={"error": {"code": "unavailable", "message": "restarting"}})
        return httpx.Response(200, json={"model": "m", "results": _echo_results(request)})

    client = _mock_client(flaky, cls=cls, chunk_size=7, max_concurrency=5)
    results = client.score(samples) if cls is RewardClient else asyncio.run(client.score(samples))
    assert [r.score for r in results] == [float(i) for i in range(200)]
    assert max(seen.values()) == 3 and len(seen) == 29


def test_transport_injection_is_http_only_and_not_pickled():
    import httpx

    with pytest.raises(ValueError, match="transport"):
        RewardClient(app_name="rlreward", transport=httpx.MockTransport(lambda r: None))
    client = _mock_client(_Script())
    assert client.score(SAMPLES[:1])[0].score == 0.0
    clone = pickle.loads(pickle.dumps(client))
    assert clone._transport.transport is None


# -- every operation through both transports, sync and async ---------------------------------------
class _Recorder:
    """An httpx handler standing in for the server's non-score routes: it records each request and
    answers what the route answers (``answers[path]``: a body, or ``(status, body)``)."""

    def __init__(self, answers):
        self.answers, self.seen = answers, []

    def __call__(self, request):
        import httpx

        body = json.loads(request.content) if request.content else None
        self.seen.append((request.method, request.url.path, body, request.headers.get("authorization")))
        answer = self.answers[request.url.path]
        status, answer = answer if isinstance(answer, tuple) else (200, answer)
        return httpx.Response(status, json=answer)


_ROUTES = {
    "/v1/models": {"object": "list", "data": [{"id": "tiny"}]},
    "/v1/stats": {"replicas": [{"replica_id": "r1", "state": "awake"}]},
    "/v1/sleep": {"replicas": [{"replica_id": "r1", "state": "asleep"}]},
    "/v1/wake": {"replicas": [{"replica_id": "r1", "state": "awake"}]},
    "/v1/hints": {"accepted": True},
}


@pytest.mark.parametrize("cls", [RewardClient, AsyncRewardClient])
def test_every_operation_over_http_has_its_route_body_and_token(cls):
    server = _Recorder(_ROUTES)
    client = _mock_client(server, cls, api_key="k")

    async def calls():
        ops = (
            client.models(),
            client.stats(),
            client.sleep(),
            client.sleep(2),
            client.wake(),
            client.expect(8),
        )
        out = [await op if asyncio.iscoroutine(op) else op for op in ops]
        if cls is AsyncRewardClient:
            await client.aclose()
        return out

    models, stats, sleep1, sleep2, wake, hint = asyncio.run(calls())
    assert models == {"id": "tiny"} and stats == _ROUTES["/v1/stats"] and hint == {"accepted": True}
    assert sleep1 == sleep2 == _ROUTES["/v1/sleep"] and wake == _ROUTES["/v1/wake"]
    assert [(m, p, b) for m, p, b, _ in server.seen[:5]] == [
        ("GET", "/v1/models", None),
        ("GET", "/v1/stats", None),
        ("POST", "/v1/sleep", {"level": 1}),
        ("POST", "/v1/sleep", {"level": 2}),
        ("POST", "/v1/wake", {}),
    ]
    assert server.seen[5][1] == "/v1/hints" and server.seen[5][2]["n_samples"] == 8
    assert {auth for *_, auth in server.seen} == {"Bearer k"}


@pytest.mark.parametrize("cls", [RewardClient, AsyncRewardClient])
def test_operation_errors_are_the_clients_errors_and_a_bad_level_is_refused_before_sending(cls):
    server = _Recorder(
        {
            "/v1/stats": (401, {"error": {"code": "unauthorized", "message": "wrong API token"}}),
            "/v1/wake": (503, {"error": {"code": "unavailable", "message": "no replica"}}),
            "/v1/sleep": (422, {"error": {"code": "malformed_request", "message": "level"}}),
            "/v1/models": [1, 2],  # not an object: the server broke the protocol
        }
    )
    client = _mock_client(server, cls)

    def run(op):
        out = op()
        return asyncio.run(out) if asyncio.iscoroutine(out) else out

    with pytest.raises(AuthenticationError, match="/v1/stats answered 401"):
        run(client.stats)
    with pytest.raises(RewardServerError, match="/v1/wake answered 503") as info:
        run(client.wake)
    assert info.value.retryable and len(server.seen) == 2  # one attempt each
    with pytest.raises(RewardRequestError, match="/v1/sleep answered 422"):
        run(client.sleep)
    with pytest.raises(RewardServerError, match="unexpected body") as info:
        run(client.models)
    assert not info.value.retryable
    n = len(server.seen)
    for bad in (0, 3, True, "1"):
        with pytest.raises(ValueError, match="sleep level must be 1 or 2"):
            run(lambda bad=bad: client.sleep(bad))
    assert len(server.seen) == n


class _Response:
    """A Ray ``DeploymentResponse`` stand-in: ``result(timeout_s=)``, ``await``, ``cancel()``."""

    def __init__(self, value, slow=False):
        self.value, self.slow, self.cancelled = value, slow, False

    def result(self, timeout_s=None):
        if self.slow:
            raise TimeoutError("GetTimeoutError")
        return self.value

    def __await__(self):
        if self.slow:
            yield from asyncio.sleep(10).__await__()
        return self.value

    def cancel(self):
        self.cancelled = True


class _Deployment:
    """A ``DeploymentHandle`` stand-in recording ``handle.method.remote(*args)`` calls."""

    def __init__(self, name, answers, calls):
        self.name, self.answers, self.calls = name, answers, calls

    def __getattr__(self, method):
        outer = self

        class _Method:
            def remote(self, *args):
                outer.calls.append((outer.name, method, args))
                value = outer.answers[method]
                return value if isinstance(value, _Response) else _Response(value(*args))

        return _Method()


@pytest.mark.parametrize("cls", [RewardClient, AsyncRewardClient])
def test_every_operation_over_a_ray_handle_calls_its_deployment_method(cls, monkeypatch):
    from rlreward.transport import HandleTransport

    calls = []
    replica = {"score": lambda s: [ScoreResult(score=float(len(s)))] * len(s), "info": lambda: {"id": "tiny"}}
    ingress = {
        "post_hint": lambda body: {"accepted": body["event"] == "expect"},
        "stats_snapshot": lambda: {"replicas": []},
        "sleep_replicas": lambda level: {"replicas": [{"state": "asleep", "level": level}]},
        "wake_replicas": lambda: {"replicas": [{"state": "awake"}]},
    }
    handles = {
        "replica": _Deployment("replica", replica, calls),
        "ingress": _Deployment("ingress", ingress, calls),
    }
    monkeypatch.setattr(HandleTransport, "_handle", lambda self, target: handles[target])
    client = cls(app_name="rlreward")

    async def go():
        ops = (
            client.score(SAMPLES[:2]),
            client.models(),
            client.stats(),
            client.sleep(2),
            client.wake(),
            client.expect(4),
        )
        return [await op if asyncio.iscoroutine(op) else op for op in ops]

    scored, models, stats, slept, woke, hint = asyncio.run(go())
    assert [r.score for r in scored] == [2.0, 2.0] and models == {"id": "tiny"} and stats == {"replicas": []}
    assert slept["replicas"][0]["level"] == 2 and woke["replicas"][0]["state"] == "awake" and hint["accepted"]
    assert [(t, m) for t, m, _ in calls] == [
        ("replica", "score"),
        ("replica", "info"),
        ("ingress", "stats_snapshot"),
        ("ingress", "sleep_replicas"),
        ("ingress", "wake_replicas"),
        ("ingress", "post_hint"),
    ]
    assert calls[0][2] == (SAMPLES[:2],) and calls[3][2] == (2,) and calls[2][2] == ()


@pytest.mark.parametrize("cls", [RewardClient, AsyncRewardClient])
def test_a_handle_call_past_its_timeout_is_cancelled_and_a_timeout_error(cls, monkeypatch):
    from rlreward.transport import HandleTransport

    slow = _Response(None, slow=True)
    handle = _Deployment("ingress", {"stats_snapshot": slow}, [])
    monkeypatch.setattr(HandleTransport, "_handle", lambda self, target: handle)
    client = cls(app_name="rlreward", timeout_s=0.05)
    with pytest.raises(RewardTimeoutError, match="no answer within 0.05s"):
        out = client.stats()
        asyncio.run(out) if asyncio.iscoroutine(out) else out
    assert slow.cancelled


def test_the_clients_hold_no_transport_type_checks_and_no_reach_into_a_transport():
    import ast

    import rlreward.client as client_module

    tree = ast.parse(Path(client_module.__file__).read_text(encoding="utf-8"))
    wrong = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
            if "Transport" in ast.unparse(node.args[1]) or "_transport" in ast.unparse(node.args[0]):
                wrong.append(ast.unparse(node))
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and "_transport" in ast.unparse(node.value)
        ):
            wrong.append(ast.unparse(node))
    assert wrong == []


def _ray_proxy(table: dict, lost_for: int):
    """Ray Serve's HTTP proxy as the client sees it: ``/-/routes`` answers its route table; the app's
    route answers the proxy's plain-text 404 for the first ``lost_for`` calls (a restarted proxy)."""
    import httpx

    state = {"score_calls": 0}

    def handler(request):
        if request.url.path == "/-/routes":
            return httpx.Response(200, json=table)
        state["score_calls"] += 1
        if state["score_calls"] <= lost_for:
            text = f"Path '{request.url.path}' not found. Ping http://.../-/routes for available routes."
            return httpx.Response(404, text=text)
        return httpx.Response(200, json={"model": "m", "results": _echo_results(request)})

    return handler, state


def test_a_restarted_proxy_that_does_not_know_the_route_yet_is_retried():
    import httpx

    handler, state = _ray_proxy({}, lost_for=3)  # an empty table: the proxy is still starting
    client = RewardClient(
        url="http://reward.test/app", transport=httpx.MockTransport(handler), backoff_s=0.001
    )
    assert [r.score for r in client.score(SAMPLES[:2])] == [0.0, 1.0]
    assert state["score_calls"] == 4


def test_a_route_the_proxy_does_not_serve_is_a_wrong_url_and_final():
    import httpx

    handler, state = _ray_proxy({"/other": "other"}, lost_for=100)
    client = RewardClient(
        url="http://reward.test/app", transport=httpx.MockTransport(handler), backoff_s=0.001
    )
    with pytest.raises(RewardRequestError, match="404"):
        client.score(SAMPLES[:2])
    assert state["score_calls"] == 1
