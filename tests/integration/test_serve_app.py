"""The default app on real Ray Serve: same scores through handle and HTTP as in-process, batching
across callers, the HTTP routes, and `rlreward serve` joining a cluster."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from rlreward.client import AsyncRewardClient, RewardClient
from tests.conftest import data_uri, noise_png


def _samples() -> list[dict]:
    img = noise_png(1)
    return [
        {"prompt": "What is 2+2?", "response": "4"},
        {"prompt": "Describe the picture.", "response": "Coloured noise.", "images": [img]},
        {"prompt": "Describe the picture.", "response": "A cat on a mat.", "images": [img]},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "image": data_uri("blue")},
                        {"type": "text", "text": "Colour?"},
                    ],
                },
                {"role": "assistant", "content": "Blue."},
            ]
        },
        {"prompt": "no answer"},  # invalid: gets its own error, the others are scored
    ]


def _assert_same(results, expected):
    assert len(results) == len(expected)
    for got, want in zip(results, expected):
        if want.error is not None:
            assert got.error is not None and got.error.code == want.error.code
        else:
            assert got.error is None, got.error
            assert got.score == pytest.approx(want.score, abs=1e-4)


def test_handle_and_http_scores_equal_in_process_scores(serve_app, scorer):
    samples = _samples()
    expected = scorer.score(samples)
    assert sum(r.ok for r in expected) == 4

    with RewardClient(app_name=serve_app.name) as handle_client:
        _assert_same(handle_client.score(samples), expected)
    with RewardClient(url=serve_app.url) as http_client:  # bytes travel as base64
        _assert_same(http_client.score(samples), expected)
        # chunking keeps the order: 3 requests of 2 samples
        chunked = RewardClient(url=serve_app.url, chunk_size=2)
        _assert_same(chunked.score(samples), expected)
        _assert_same(chunked.submit(samples).result(timeout=60), expected)

    async def both():
        async with (
            AsyncRewardClient(url=serve_app.url, chunk_size=2) as a,
            AsyncRewardClient(app_name=serve_app.name) as b,
        ):
            return await asyncio.gather(a.score(samples), b.score(samples))

    for results in asyncio.run(both()):
        _assert_same(results, expected)


def test_concurrent_callers_samples_share_one_forward_pass(deploy_app):
    """Two callers, one sample each: the replica's batch log shows one forward pass holding both
    requests. The app's batch window is long (60 s) and its batch size 2, so the first sample waits
    for the second however loaded the machine is, and the batch runs as soon as both are there."""
    app = deploy_app(
        "batchpair",
        **{"scorer.batching.batch_wait_timeout_s": 60.0, "scorer.batching.max_batch_size": 2},
    )
    try:
        clients = [RewardClient(app_name=app.name) for _ in range(2)]
        before = app.stats()["batches"]
        with ThreadPoolExecutor(2) as pool:
            futures = [
                pool.submit(c.score, [{"prompt": f"question {i}", "response": f"answer {i}"}])
                for i, c in enumerate(clients)
            ]
            assert all(f.result(timeout=120)[0].ok for f in futures)
        stats = app.stats()
        batches = stats["recent_batches"][-(stats["batches"] - before) :]
        assert batches == [batches[0]] and (batches[0]["requests"], batches[0]["samples"]) == (2, 2), batches
    finally:
        app.delete()


def test_http_routes_health_models_and_errors(serve_app):
    with httpx.Client(base_url=serve_app.url, timeout=30) as http:
        assert http.get("/health").json()["status"] == "ok"
        model = http.get("/v1/models").json()["data"][0]
        assert model["id"] == serve_app.config.served_model_name
        assert model["head_shape"] == [1, 64]
        assert model["limits"]["max_samples_per_request"] == serve_app.config.http.max_samples_per_request
        r = http.post("/v1/score", json={"samples": []})
        assert r.status_code == 200 and r.json() == {"model": model["id"], "results": []}
        r = http.get("/no/such/route")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_get_reward_route_for_openrlhf(serve_app, scorer):
    """OpenRLHF's request (decoded chat-template strings) gets, per query and in order, the score the
    in-process scorer gives the same conversation; an unparsable query gets the fallback reward and
    rm_error 1 without disturbing its neighbours."""
    from rlreward.adapters.openrlhf import OpenRLHFOptions

    def chat(user: str, answer: str) -> tuple[str, str]:
        prompt = f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
        return prompt + f"{answer}<|im_end|>", prompt

    pairs = [("What is 2+2?", "4"), ("Name a colour.", "Blue, like the sky."), ("What is 2+2?", "5")]
    queries, prompts = zip(*(chat(u, a) for u, a in pairs))
    queries = [queries[0], "no chat template here at all", *queries[1:]]
    prompts = [prompts[0], "", *prompts[1:]]
    r = httpx.post(
        serve_app.url + "/get_reward",
        json={"query": queries, "prompts": prompts, "labels": [""] * 4},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    expected = [x.score for x in scorer.score([{"prompt": u, "response": a} for u, a in pairs])]
    rewards = body["rewards"]
    assert len(rewards) == 4 and body["extra_logs"]["rm_error"] == [0.0, 1.0, 0.0, 0.0]
    assert [rewards[0], *rewards[2:]] == pytest.approx(expected, abs=1e-4)
    assert rewards[1] == OpenRLHFOptions().fallback_reward
    assert expected[0] != pytest.approx(expected[2], abs=1e-4)  # the two answers are told apart


def test_rlreward_serve_joins_the_cluster_serves_and_stops_on_sigint(ray_cluster, serve_app, tiny_model_dir):
    from ray import serve

    cmd = [
        sys.executable,
        "-m",
        "rlreward",
        "serve",
        "--model",
        tiny_model_dir,
        "--address",
        ray_cluster.address,
        "--name",
        "cli-app",
        "--route-prefix",
        "/cli",
        "--num-replicas",
        "1",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "handle:" in line:
                break
        out = "".join(lines)
        assert "handle: RewardClient(app_name='cli-app')" in out, out[-3000:]
        url = re.search(r"HTTP:\s+(\S+)/v1/score", out).group(1)
        assert url == f"{ray_cluster.base_url}/cli"
        results = RewardClient(url=url).score([{"prompt": "2+2?", "response": "4"}])
        assert results[0].ok
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, proc.stdout.read()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "cli-app" not in serve.status().applications
    assert serve_app.name in serve.status().applications  # the rest of the cluster is untouched


def test_client_stats_and_models_through_both_transports(serve_app):
    """The clients' stats()/models() against the real app: HTTP and the Ray handle reach the same
    ingress and replica methods (GET /v1/stats = RewardIngress.stats_snapshot)."""
    with RewardClient(url=serve_app.url) as over_http:
        http_stats, card = over_http.stats(), over_http.models()
    with RewardClient(app_name=serve_app.name) as over_handle:
        handle_stats, info = over_handle.stats(), over_handle.models()
    assert "reward" in http_stats and set(http_stats) == set(handle_stats)
    assert card["id"] == serve_app.config.served_model_name
    assert card["head_shape"] == info["head_shape"] == [1, 64]
