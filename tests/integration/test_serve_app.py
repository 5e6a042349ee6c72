"""The default app on real Ray Serve: same scores through handle and HTTP as in-process, batching
across callers, the HTTP routes, and `rlreward serve` joining a cluster."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time

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


def test_concurrent_callers_samples_share_one_forward_pass(serve_app):
    """Two callers, one sample each, sent at the same moment: the replica's batch log must show a
    batch holding both requests (batch_wait_timeout_s is 0.05 in this app)."""
    clients = [RewardClient(app_name=serve_app.name) for _ in range(2)]
    for c in clients:  # connect first, so the two calls start together
        c.score([{"prompt": "warm", "response": "up"}])

    def attempt() -> list[dict]:
        before = serve_app.stats()["batches"]
        barrier = threading.Barrier(2)

        def call(i):
            barrier.wait()
            clients[i].score([{"prompt": f"question {i}", "response": f"answer {i}"}])

        threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        stats = serve_app.stats()
        return stats["recent_batches"][-(stats["batches"] - before) :]

    # A loaded 2-core box can delay one thread past the batch window; batching must show within 3 tries.
    seen = []
    for _ in range(3):
        batches = attempt()
        seen.append(batches)
        if any(b["requests"] == 2 and b["samples"] == 2 for b in batches):
            return
    pytest.fail(f"the two callers' samples never shared a batch: {seen}")


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


def test_get_reward_route_for_openrlhf(serve_app):
    payload = {
        "query": ["<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>"],
        "prompts": ["<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"],
        "labels": [""],
    }
    r = httpx.post(serve_app.url + "/get_reward", json=payload, timeout=60)
    try:
        import rlreward.adapters.openrlhf  # noqa: F401
    except ImportError:
        assert r.status_code == 501 and r.json()["error"]["code"] == "not_implemented"
        return
    assert r.status_code == 200, r.text
    rewards = r.json()["rewards"]
    assert len(rewards) == 1 and isinstance(rewards[0], (int, float))


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
