"""Sleep and wake on real Ray Serve: /v1/sleep, /v1/wake, /v1/stats over real HTTP, the handle's
ingress methods, the phase timer driven by hints, and a failed wake replaced by Serve.

Two apps of this module's own: ``sleepy`` (2 replicas on a ~60 MB widened checkpoint, so the memory a
level-2 sleep releases shows in the replicas' RSS, measured here with psutil from outside; API key on)
and ``phasey`` (1 replica on a copy of the tiny checkpoint, ``replica.sleep`` set, health checks every
second; its last test breaks the copy to make a wake fail).
"""

from __future__ import annotations

import asyncio
import shutil

import httpx
import psutil
import pytest

from tests.conftest import data_uri
from tests.integration.conftest import wait_for

KEY = "sleep-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SAMPLES = [
    {"prompt": "What colour is the square?", "response": "Red.", "images": [data_uri("red")]},
    {"prompt": "2+2?", "response": "4"},
    {"prompt": "Name a prime.", "response": "Seven, and eleven too."},
]


@pytest.fixture(scope="module")
def wide_dir(tiny_model_dir, tmp_path_factory) -> str:
    from rlreward.offline.wide import make_wide

    return str(make_wide(tiny_model_dir, tmp_path_factory.mktemp("wide") / "m", intermediate_size=40_000))


@pytest.fixture(scope="module")
def sleepy(deploy_app, wide_dir):
    app = deploy_app("sleepy", model=wide_dir, **{"http.api_key": KEY, "replica.num_replicas": 2})
    yield app
    app.delete()


@pytest.fixture(scope="module")
def phasey_dir(tiny_model_dir, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("phasey") / "m"
    shutil.copytree(tiny_model_dir, out)
    return str(out)


@pytest.fixture(scope="module")
def phasey(deploy_app, phasey_dir):
    app = deploy_app(
        "phasey",
        model=phasey_dir,
        **{
            "replica.sleep": {"after_step_done_s": 1.0, "level": 2},
            "replica.health_check_period_s": 1.0,
            "replica.health_check_timeout_s": 5.0,
        },
    )
    yield app
    app.delete()


def _stats(app, headers=None) -> list[dict]:
    r = httpx.get(f"{app.url}/v1/stats", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["replicas"]


def _all_reporting(app, n, headers=None) -> list[dict]:
    return wait_for(
        lambda: (rows := _stats(app, headers)) and len(rows) == n and rows, 60, what=f"{n} reports"
    )


def _score(app, samples, headers=None) -> list[float]:
    r = httpx.post(f"{app.url}/v1/score", json={"samples": samples}, headers=headers, timeout=120)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert all(x["error"] is None for x in results), results
    return [x["score"] for x in results]


def _hint(app, event, **kw) -> dict:
    r = httpx.post(f"{app.url}/v1/hints", json={"event": event, **kw}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_sleep_wake_stats_need_the_key(sleepy):
    for method, path in (("POST", "/v1/sleep"), ("POST", "/v1/wake"), ("GET", "/v1/stats")):
        for headers in (None, {"Authorization": "Bearer wrong"}):
            r = httpx.request(method, f"{sleepy.url}{path}", headers=headers, json={}, timeout=30)
            assert r.status_code == 401, (path, r.text)
            assert r.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/sleep", b'{"level": 3}'),
        ("/v1/sleep", b'{"level": "1"}'),
        ("/v1/sleep", b'{"level": true}'),
        ("/v1/sleep", b'{"lvl": 1}'),
        ("/v1/sleep", b"not json"),
        ("/v1/sleep", b"[1]"),
        ("/v1/wake", b'{"level": 1}'),
        ("/v1/wake", b"{"),
    ],
)
def test_malformed_bodies_are_422(sleepy, path, body):
    r = httpx.post(f"{sleepy.url}{path}", content=body, headers=AUTH, timeout=30)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "malformed_request"


def test_level_2_releases_the_weights_from_rss_measured_outside(sleepy):
    rows = _all_reporting(sleepy, 2, AUTH)
    assert {r["state"] for r in rows} == {"awake"}
    weights = {r["replica_id"]: r["weight_bytes"] for r in rows}
    assert all(w > 50e6 for w in weights.values()), weights
    pids = {r["replica_id"]: r["pid"] for r in rows}
    awake_rss = {rid: psutil.Process(pid).memory_info().rss for rid, pid in pids.items()}

    r = httpx.post(f"{sleepy.url}/v1/sleep", json={"level": 2}, headers=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    answered = r.json()["replicas"]
    assert sorted(x["replica_id"] for x in answered) == sorted(pids)
    assert {x["state"] for x in answered} == {"asleep"}
    for rid, pid in pids.items():
        asleep_rss = psutil.Process(pid).memory_info().rss
        assert awake_rss[rid] - asleep_rss >= 0.8 * weights[rid], (rid, awake_rss[rid], asleep_rss)

    r = httpx.post(f"{sleepy.url}/v1/wake", headers=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    assert {x["state"] for x in r.json()["replicas"]} == {"awake"}
    rows = {x["replica_id"]: x for x in _stats(sleepy, AUTH)}
    for rid in pids:
        assert rows[rid]["weight_bytes"] == weights[rid]
        assert rows[rid]["last_wake_s"] is not None and rows[rid]["wakes"] >= 1


def test_concurrent_requests_during_a_wake_are_all_answered_in_order(sleepy):
    singles = [[s] for s in SAMPLES] + [[SAMPLES[2], SAMPLES[0]]]
    reference = [_score(sleepy, s, AUTH) for s in singles]
    r = httpx.post(f"{sleepy.url}/v1/sleep", json={"level": 2}, headers=AUTH, timeout=120)
    assert r.status_code == 200

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120, headers=AUTH) as client:
            calls = [client.post(f"{sleepy.url}/v1/score", json={"samples": s}) for s in singles * 3]
            return await asyncio.gather(*calls)

    answers = asyncio.run(burst())
    for samples, ref, resp in zip(singles * 3, reference * 3, answers):
        assert resp.status_code == 200, resp.text
        got = [x["score"] for x in resp.json()["results"]]
        assert got == pytest.approx(ref, abs=1e-5), samples  # rows of other batches/processes: tolerance
    assert {x["state"] for x in _stats(sleepy, AUTH)} <= {"awake", "asleep"}


def test_handle_methods_sleep_wake_and_stats(sleepy):
    from ray import serve

    handle = serve.get_app_handle(sleepy.name)
    slept = handle.sleep_replicas.remote(1).result(timeout_s=120)
    assert len(slept["replicas"]) == 2 and {x["state"] for x in slept["replicas"]} == {"asleep"}
    assert {x["sleep_level"] for x in slept["replicas"]} == {1}
    woke = handle.wake_replicas.remote().result(timeout_s=120)
    assert {x["state"] for x in woke["replicas"]} == {"awake"}
    snap = handle.stats_snapshot.remote().result(timeout_s=60)
    row = snap["replicas"][0]
    for key in ("replica_id", "state", "pid", "rss_bytes", "device_bytes", "cold_start_split", "last_wake_s"):
        assert key in row, key
    with pytest.raises(Exception, match="level"):
        handle.sleep_replicas.remote(5).result(timeout_s=60)


def test_score_while_asleep_is_bitwise_equal_on_the_same_replica(phasey):
    before = _score(phasey, SAMPLES)
    r = httpx.post(f"{phasey.url}/v1/sleep", json={"level": 2}, timeout=120)
    assert r.status_code == 200 and r.json()["replicas"][0]["state"] == "asleep"
    # One replica, the same batch, the same process: bitwise equality holds by construction.
    assert _score(phasey, SAMPLES) == before
    (row,) = _stats(phasey)
    assert row["cold_start_s"] is not None and row["cold_start_s"] > 0
    assert set(row["cold_start_split"]) >= {"imports_s", "weight_load_s", "warm_up_s", "first_scoring_s"}


def test_phase_hints_drive_sleep_and_wake(phasey):
    assert _hint(phasey, "expect", n_samples=8, within_s=30)["accepted"] is True
    wait_for(lambda: _stats(phasey)[0]["state"] == "awake", 30, 0.2, what="awake after expect")
    wakes = _stats(phasey)[0]["wakes"]
    # The burst is announced: no sleep while it is awaited, however idle the replica is.
    import time

    time.sleep(2.5)
    assert _stats(phasey)[0]["state"] == "awake"
    _score(phasey, SAMPLES[:1])
    _hint(phasey, "step_done")
    wait_for(lambda: _stats(phasey)[0]["state"] == "asleep", 30, 0.2, what="asleep after step_done")
    _hint(phasey, "rollout_started")
    row = wait_for(lambda: (x := _stats(phasey)[0])["state"] == "awake" and x, 30, 0.2, what="woken by hint")
    assert row["wakes"] > wakes and row["sleep_level"] == 0


def test_loadtest_over_http_reads_the_timeline_from_stats_and_its_hints_drive_sleep(phasey, tmp_path):
    """A GRPO run with hints (expect 1 s ahead, step_done after each step) and a 5 s update: the
    replica sleeps in the update (after_step_done_s 1) and every sample is still answered."""
    import argparse
    import json

    from rlreward.commands import loadtest

    p = argparse.ArgumentParser()
    loadtest.add_arguments(p)
    out = tmp_path / "grpo.json"
    args = p.parse_args(
        ["--url", phasey.url, "--shape", "grpo", "--steps", "3", "--prompts", "2", "--group", "2",
         "--update-s", "5", "--hints", "1", "--json", str(out), "--no-progress", "--poll-s", "0.2"]
    )  # fmt: skip
    assert loadtest.run(args) == 0
    report = json.loads(out.read_text())
    assert report["failed_requests"] == 0 and report["answered"] == report["sent"] == 12
    timeline = report["timeline"]
    assert timeline and all("awake" in row for row in timeline)
    assert min(row["awake"] for row in timeline) == 0  # asleep during an update
    assert max(row["awake"] for row in timeline) == 1
    assert report["awake_replica_seconds"] < report["replica_seconds"]


def test_a_failed_wake_makes_serve_replace_the_replica(phasey, phasey_dir, tmp_path):
    (old,) = _stats(phasey)
    r = httpx.post(f"{phasey.url}/v1/sleep", json={"level": 2}, timeout=120)
    assert r.status_code == 200
    weights = f"{phasey_dir}/model.safetensors"
    shutil.move(weights, tmp_path / "hidden.safetensors")
    try:
        r = httpx.post(f"{phasey.url}/v1/score", json={"samples": SAMPLES[:1]}, timeout=120)
        assert r.status_code == 503, r.text  # the caller is told to retry, not given a wrong score
        assert r.json()["error"]["code"] == "unavailable"
        assert "Retry-After" in r.headers
    finally:
        shutil.move(tmp_path / "hidden.safetensors", weights)
    new = wait_for(
        lambda: [x for x in _stats(phasey) if x["replica_id"] != old["replica_id"]],
        120,
        what="a replacement replica",
    )[0]
    assert new["unhealthy"] is None
    _score(phasey, SAMPLES[:1])
