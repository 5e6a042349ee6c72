"""More than one node: the session cluster (head + worker) gets a third raylet on this machine; an app
with one replica per node serves a stream load test across all three; the added node is removed in
the middle of the load: no sample is lost and every score equals the single-process value."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.conftest import noise_png
from tests.integration.conftest import wait_for


def _samples(n: int) -> list[dict]:
    imgs = [noise_png(i, (84, 56)) for i in range(4)]
    return [
        {"prompt": f"What is in picture {i % 4}?", "response": f"reply number {i}", "images": [imgs[i % 4]]}
        for i in range(n)
    ]


class _Capturing:
    """An AsyncRewardClient that keeps every (sample index, score) it got back."""

    def __init__(self, client, index: dict[int, int]) -> None:
        self.client, self.index, self.got = client, index, {}

    async def score(self, samples):
        results = await self.client.score(samples)
        for s, r in zip(samples, results):
            self.got[self.index[id(s)]] = r
        return results


def test_loadtest_across_three_nodes_survives_losing_one(ray_cluster, deploy_app, scorer, tmp_path):
    import ray

    from rlreward.client import AsyncRewardClient
    from rlreward.offline.loadtest.plan import Plan, PlannedRequest, PlannedStep
    from rlreward.offline.loadtest.runner import ServeMonitor, run_plan, summarize

    node = ray_cluster.cluster.add_node(num_cpus=1)
    ray_cluster.cluster.wait_for_nodes()
    extra = node.node_id
    app = None
    try:
        app = deploy_app(
            "multinode",
            **{
                "replica.num_replicas": 3,
                "replica.max_replicas_per_node": 1,
                "replica.max_ongoing_requests": 16,
            },
        )

        def placed():
            stats = app.replica.broadcast("stats").results(timeout_s=30)
            return len(stats) == 3 and {s["node_id"] for s in stats}

        nodes = wait_for(placed, 180, interval_s=1, what="three replicas, one per node")
        assert len(nodes) == 3 and extra in nodes

        samples = _samples(240)
        expected = [r.score for r in scorer.score(samples)]  # one process, no Serve
        assert all(e is not None for e in expected)
        index = {id(s): i for i, s in enumerate(samples)}
        plan = Plan(
            "stream",
            [PlannedStep([PlannedRequest(0.0, [s]) for s in samples], concurrency=16, open_loop=False)],
            "stream across nodes",
        )
        client = _Capturing(
            AsyncRewardClient(app_name=app.name, retry_budget_s=120, backoff_s=0.2, max_backoff_s=2.0), index
        )
        monitor = ServeMonitor(app.name, interval_s=0.5)
        box: dict = {}

        def load():
            try:
                box["steps"], box["wall"] = asyncio.run(
                    run_plan(
                        plan, client, record_path=tmp_path / "trace.jsonl", monitor=monitor, progress=False
                    )
                )
            except BaseException as exc:  # surfaced below
                box["error"] = exc

        runner = threading.Thread(target=load)
        runner.start()
        # Remove the added node while its replica has work: a quarter of the samples answered.
        wait_for(lambda: len(client.got) >= 60 or not runner.is_alive(), 300, interval_s=0.1, what="load")
        assert runner.is_alive(), f"the load finished before the node could be removed: {box}"
        ray_cluster.cluster.remove_node(node, allow_graceful=False)  # a crash, not a drain
        removed_at = len(client.got)
        runner.join(600)
        assert not runner.is_alive(), "the load test did not finish"
        assert "error" not in box, box.get("error")

        report = summarize(box["steps"], box["wall"])
        assert (report["sent"], report["answered"], report["errors"], report["failed_requests"]) == (
            240,
            240,
            0,
            0,
        )
        assert removed_at < 240
        # The removed node's replica had been scoring this load before it went away.
        on_extra = [s for s in monitor.last_stats() if s.get("node_id") == extra]
        assert on_extra and on_extra[0]["samples"] > 0, monitor.last_stats()
        assert sorted(client.got) == list(range(240))  # no sample lost
        got = [client.got[i].score for i in range(240)]
        assert got == pytest.approx(expected, abs=1e-4)  # each score equals its single-node value
        wait_for(
            lambda: extra not in {n["NodeID"] for n in ray.nodes() if n["Alive"]},
            120,
            what="the removed node to be marked dead",
        )
    finally:
        if app is not None:
            app.delete()
        if any(n.node_id == extra for n in ray_cluster.cluster.worker_nodes):
            ray_cluster.cluster.remove_node(node)
