"""A locked-down app on real Ray Serve: bearer-token auth, hostile bodies, and backpressure that
clients ride out by retrying."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from rlreward.client import AuthenticationError, RewardClient, RewardRequestError
from tests.conftest import data_uri

TOKEN = "s3cret-token"
GOOD = {"prompt": "What is 2+2?", "response": "4"}


@pytest.fixture(scope="module")
def strict_app(deploy_app):
    app = deploy_app(
        "strict",
        **{
            "http.api_key": TOKEN,
            "http.max_request_bytes": 2 * 1024 * 1024,
            "http.max_samples_per_request": 256,
            "http.overload_status_code": 429,
            # One request at a time on the replica, one more queued per caller: bursts are refused.
            "replica.max_ongoing_requests": 1,
            "replica.max_queued_requests": 1,
        },
    )
    yield app
    app.delete()  # free its CPU share for later tests


@pytest.fixture(scope="module")
def http(strict_app):
    with httpx.Client(base_url=strict_app.url, timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


def _error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"], err
    return err["message"]


def test_token_required_everywhere_but_health(strict_app):
    url = strict_app.url
    body = {"samples": [GOOD]}
    _error(httpx.post(url + "/v1/score", json=body), 401, "unauthorized")
    _error(
        httpx.post(url + "/v1/score", json=body, headers={"Authorization": "Bearer wrong"}),
        401,
        "unauthorized",
    )
    _error(
        httpx.post(url + "/v1/score", json=body, headers={"Authorization": f"Basic {TOKEN}"}),
        401,
        "unauthorized",
    )
    _error(httpx.get(url + "/v1/models"), 401, "unauthorized")
    _error(httpx.post(url + "/get_reward", json={"query": []}), 401, "unauthorized")
    for route in ("/docs", "/redoc", "/openapi.json"):  # the API description too
        _error(httpx.get(url + route), 401, "unauthorized")
    assert httpx.get(url + "/health").status_code == 200
    auth = {"Authorization": f"Bearer {TOKEN}"}
    schema = httpx.get(url + "/openapi.json", headers=auth).json()
    body_schema = schema["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema["required"] == ["samples"]
    assert (
        "query"
        in schema["paths"]["/get_reward"]["post"]["requestBody"]["content"]["application/json"]["schema"][
            "properties"
        ]
    )
    assert "/openapi.json" in httpx.get(url + "/docs", headers=auth).text
    r = httpx.post(url + "/v1/score", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.json()["results"][0]["score"] is not None

    with pytest.raises(AuthenticationError) as info:
        RewardClient(url=url, api_key="wrong", retries=0).score([GOOD])
    assert info.value.status_code == 401
    assert RewardClient(url=url, api_key=TOKEN).score([GOOD])[0].ok


def test_hostile_bodies_get_4xx_with_a_message_and_the_server_keeps_serving(strict_app, http):
    assert "not valid JSON" in _error(
        http.post("/v1/score", content=b'{"samples": [}'), 422, "malformed_request"
    )
    _error(http.post("/v1/score", content=b"\xff\xfe\x00garbage"), 422, "malformed_request")
    _error(http.post("/v1/score", content=b"[" * 100_000 + b"]" * 100_000), 422, "malformed_request")  # deep
    _error(http.post("/v1/score", json=[GOOD]), 422, "malformed_request")
    _error(http.post("/v1/score", json={"sample": [GOOD]}), 422, "malformed_request")
    assert "samples: Input should be a valid list" in _error(
        http.post("/v1/score", json={"samples": "x"}), 422, "malformed_request"
    )
    # OpenRLHF's route: every malformed body is a 422 naming the field, never a 500.
    for body in ({"query": 5}, {"query": [1, 2]}, {"query": ["q"], "prompts": 5}, {"prompts": ["p"]}, [1]):
        assert _error(http.post("/get_reward", json=body), 422, "malformed_request")
    _error(http.post("/get_reward", content=b"{"), 422, "malformed_request")

    # 10 MB of text: refused before it is parsed or tokenised.
    huge = {"samples": [{"prompt": "a" * (10 * 1024 * 1024), "response": "b"}]}
    assert "max_request_bytes" in _error(http.post("/v1/score", json=huge), 413, "request_too_large")

    # 1,000 images as 1,000 samples: over max_samples_per_request.
    img = data_uri("red", (8, 8))
    many = {"samples": [{"prompt": "p", "response": "r", "images": [img]} for _ in range(1000)]}
    assert "max_samples_per_request" in _error(http.post("/v1/score", json=many), 413, "request_too_large")

    # Wrong types inside samples, and 1,000 images in one sample: per-sample errors, neighbours scored.
    r = http.post(
        "/v1/score",
        json={
            "samples": [
                1,
                "text",
                {"prompt": 3, "response": []},
                {"prompt": "p", "response": "r", "images": [img] * 1000},
                GOOD,
            ]
        },
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    codes = [x["error"]["code"] if x["error"] else None for x in results]
    assert codes[:3] == ["invalid_sample"] * 3 and codes[3] == "too_many_images" and codes[4] is None
    assert all(x["error"]["message"] for x in results[:4])
    assert isinstance(results[4]["score"], float)

    # The client surfaces a whole-request refusal as RewardRequestError, without retrying.
    with pytest.raises(RewardRequestError) as info:
        RewardClient(url=strict_app.url, api_key=TOKEN).score(huge["samples"])
    assert info.value.status_code == 413

    assert http.get("/health").status_code == 200
    r = http.post("/v1/score", json={"samples": [GOOD]})
    assert r.status_code == 200 and r.json()["results"][0]["score"] is not None


def test_no_response_names_an_absolute_server_path(strict_app, http, tiny_model_dir):
    import os

    texts = [http.get("/health").text, http.get("/v1/models").text]
    r = http.post(
        "/v1/score",
        json={
            "samples": [
                {"prompt": "p", "response": "r", "images": [os.path.join(tiny_model_dir, "config.json")]},
                {"prompt": "p", "response": "r", "images": ["/etc/passwd"]},
                {"prompt": "p", "response": "r", "images": ["relative/missing.png"]},
            ]
        },
    )
    assert r.status_code == 200 and all(x["error"] for x in r.json()["results"])
    texts.append(r.text)
    for text in texts:
        assert tiny_model_dir not in text and os.path.dirname(tiny_model_dir) not in text, text
        assert "/etc/" not in text and os.getcwd() not in text, text
    assert http.get("/v1/models").json()["data"][0]["id"] == os.path.basename(tiny_model_dir)


def test_backpressure_is_real_and_clients_complete_by_retrying(strict_app, http):
    from ray import serve
    from ray.serve.exceptions import BackPressureError

    samples = [{"prompt": f"question {i}", "response": f"answer {i}"} for i in range(24)]
    # Raw bursts with no retry see refusals: 429 over HTTP (configured), BackPressureError on a handle.
    with ThreadPoolExecutor(24) as pool:
        statuses = list(pool.map(lambda s: http.post("/v1/score", json={"samples": [s]}), samples))
    refused = [r for r in statuses if r.status_code == 429]
    assert refused, [r.status_code for r in statuses]
    assert refused[0].json()["error"]["code"] == "overloaded" and "retry-after" in refused[0].headers

    handle = serve.get_deployment_handle("RewardReplica", app_name=strict_app.name)
    responses = [handle.score.remote([s]) for s in samples]
    outcomes = []
    for resp in responses:
        try:
            outcomes.append(resp.result(timeout_s=60))
        except BackPressureError:
            outcomes.append("refused")
    assert "refused" in outcomes

    # The clients send the same burst (24 one-sample requests at once) and retry until all are scored.
    expected = RewardClient(url=strict_app.url, api_key=TOKEN, chunk_size=24).score(samples)
    for client in (
        RewardClient(
            url=strict_app.url, api_key=TOKEN, chunk_size=1, max_concurrency=24, retries=10, backoff_s=0.2
        ),
        RewardClient(app_name=strict_app.name, chunk_size=1, max_concurrency=24, retries=10, backoff_s=0.2),
    ):
        results = client.score(samples)
        assert [r.score for r in results] == pytest.approx([r.score for r in expected], abs=1e-4)
        assert all(r.ok for r in results)
