"""Two replicas on a 2-node cluster: placement on both nodes, and a replica killed in the middle of a
run loses no sample (the clients retry)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from rlreward.client import RewardClient
from tests.conftest import noise_png
from tests.integration.conftest import wait_for


@pytest.fixture(scope="module")
def spread_app(deploy_app):
    # One replica per node: with 2 nodes, each node holds one.
    app = deploy_app("spread", **{"replica.num_replicas": 2, "replica.max_replicas_per_node": 1})
    yield app
    app.delete()  # free its CPU share for later tests


def _replica_stats(app, want: int = 2, timeout_s: float = 60) -> dict[str, dict]:
    """Stats of ``want`` distinct replicas (the router picks one per call; poll until all seen)."""
    seen: dict[str, dict] = {}

    def enough():
        s = app.stats()
        seen[s["replica_id"]] = s
        return len(seen) >= want

    wait_for(enough, timeout_s, interval_s=0.05, what=f"{want} distinct replicas")
    return seen


def _samples(n: int) -> list[dict]:
    imgs = [noise_png(i, (112, 84)) for i in range(4)]
    return [
        {"prompt": f"Describe image {i % 4}.", "response": f"answer number {i}", "images": [imgs[i % 4]]}
        for i in range(n)
    ]


def test_replicas_on_both_nodes_score_every_sample(ray_cluster, spread_app, scorer):
    assert len(ray_cluster.node_ids) == 2
    stats = _replica_stats(spread_app)
    assert {s["node_id"] for s in stats.values()} == set(ray_cluster.node_ids)

    samples = _samples(64)
    expected = scorer.score(samples)
    client = RewardClient(app_name=spread_app.name, chunk_size=4, max_concurrency=8)

    def both_served():
        results = client.score(samples)
        assert [r.score for r in results] == pytest.approx([r.score for r in expected], abs=1e-4)
        now = _replica_stats(spread_app)
        return all(s["samples"] > 0 for s in now.values())

    wait_for(both_served, 120, interval_s=0, what="both replicas to score samples")


def test_replica_killed_mid_run_loses_no_sample(spread_app, scorer, caplog):
    import logging

    import ray

    caplog.set_level(logging.INFO, logger="rlreward.client")

    samples = _samples(600)
    expected = [r.score for r in scorer.score(samples)]
    assert all(s is not None for s in expected)
    # Requests of 50 samples last long enough (~0.2-0.5 s) that the kill lands inside one.
    opts = {"chunk_size": 50, "max_concurrency": 2, "retries": 10, "backoff_s": 0.2, "max_backoff_s": 2.0}
    handle_client = RewardClient(app_name=spread_app.name, **opts)
    http_client = RewardClient(url=spread_app.url, **opts)
    runs = [handle_client.submit(samples), http_client.submit(samples)]
    time.sleep(0.2)
    # Kill a replica that is working on samples right now.
    busy = wait_for(
        lambda: (s := spread_app.stats())["backlog_samples"] > 0 and s,
        60,
        interval_s=0.01,
        what="a replica with samples in flight",
    )
    assert not any(f.done() for f in runs), "the runs ended before the kill: make them longer"
    victim = busy["actor_name"]
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)

    for future in runs:
        results = future.result(timeout=300)
        assert len(results) == 600
        assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
        assert [r.score for r in results] == pytest.approx(expected, abs=1e-4)
    retried = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying")]
    assert retried, "no chunk was retried: the kill did not hit a request in flight"


def _serve_actor(match) -> str:
    """Name of the one live Serve actor (namespace "serve") whose name satisfies ``match``."""
    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == "serve"]
    found = [n for n in names if match(n)]
    assert len(found) == 1, f"expected one matching Serve actor, found {found} among {names}"
    return found[0]


def _lost_and_misplaced(results, expected) -> tuple[int, int]:
    lost = sum(1 for r in results if not r.ok) + max(0, len(expected) - len(results))
    misplaced = sum(
        1 for r, want in zip(results, expected) if r.ok and abs(r.score - want) > 1e-4 * max(1.0, abs(want))
    )
    return lost, misplaced


@pytest.mark.parametrize("victim", ["ingress", "proxy"])
def test_ingress_or_http_proxy_killed_mid_run_loses_and_misplaces_no_sample(
    ray_cluster, spread_app, scorer, caplog, victim
):
    """ray.kill on the app's ingress replica, or on Serve's HTTP proxy, while HTTP requests are in
    flight: the clients (sync and async, default retry budget) get every score back, each to its own
    sample. The proxy comes back on the same port (~30 s here); the ingress replica is replaced."""
    import asyncio
    import logging

    import ray

    from rlreward.client import AsyncRewardClient
    from tests.integration.conftest import _proxies_healthy

    caplog.set_level(logging.INFO, logger="rlreward.client")
    samples = _samples(400)
    expected = [r.score for r in scorer.score(samples)]
    assert all(s is not None for s in expected)
    opts = {"chunk_size": 40, "max_concurrency": 2}  # default retry budget: it must outlast the outage
    sync_run = RewardClient(url=spread_app.url, **opts).submit(samples)

    async def async_run():
        async with AsyncRewardClient(url=spread_app.url, **opts) as client:
            return await client.score(samples)

    with ThreadPoolExecutor(1) as pool:
        async_future = pool.submit(asyncio.run, async_run())
        wait_for(
            lambda: spread_app.stats()["backlog_samples"] > 0,
            60,
            interval_s=0.01,
            what="HTTP requests in flight",
        )
        assert not sync_run.done() and not async_future.done(), "the runs ended before the kill"
        if victim == "ingress":
            name = _serve_actor(lambda n: n.startswith(f"SERVE_REPLICA::{spread_app.name}#RewardIngress"))
        else:
            name = _serve_actor(lambda n: n.startswith("SERVE_PROXY_ACTOR"))
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
        outcomes = {"sync": sync_run.result(timeout=600), "async": async_future.result(timeout=600)}

    counts = {k: _lost_and_misplaced(v, expected) for k, v in outcomes.items()}
    assert counts == {"sync": (0, 0), "async": (0, 0)}, f"(lost, misplaced) per client: {counts}"
    assert all(len(v) == len(samples) for v in outcomes.values())
    retried = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying")]
    assert retried, f"no chunk was retried: the {victim} kill did not hit a request in flight"
    wait_for(_proxies_healthy, 120, what="a healthy Serve HTTP proxy again")  # for later tests
