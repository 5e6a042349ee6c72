"""RewardReplica in-process (no Ray): warm-up, check_health on a healthy, a broken and a stuck
device, user_config retuning, the autoscaling stat."""

from __future__ import annotations

import asyncio
import time

import pytest

from rlreward.engine.config import ScorerConfig


@pytest.fixture(scope="module")
def replica(tiny_model_dir):
    from rlreward.serving.replica import RewardReplica

    cls = RewardReplica  # a plain class; build_app wraps it in serve.deployment
    return cls(
        ScorerConfig(model=tiny_model_dir, dtype="float32", device="cpu").model_dump(), stuck_forward_s=60
    )


def test_health_check_probes_the_device_and_fails_when_it_cannot_score(replica, monkeypatch):
    asyncio.run(replica.check_health())  # warmed up and healthy

    def broken(batch):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(replica.scorer, "forward", broken)
    with pytest.raises(RuntimeError, match="probe sample did not score.*illegal memory access"):
        asyncio.run(replica.check_health())
    monkeypatch.undo()
    asyncio.run(replica.check_health())


def test_health_check_fails_on_a_stuck_forward_pass_but_not_on_a_busy_one(replica, monkeypatch):
    monkeypatch.setattr(replica, "_forward_started", time.monotonic() - 5)
    asyncio.run(replica.check_health())  # busy, making progress: no probe queued behind it
    monkeypatch.setattr(replica, "_forward_started", time.monotonic() - 3600)
    with pytest.raises(RuntimeError, match="stuck_forward_s"):
        asyncio.run(replica.check_health())


def test_user_config_retunes_batching_and_stats_report_it(replica):
    replica.reconfigure({"max_batch_size": 8, "max_batch_tokens": 2048, "batch_wait_timeout_s": 0.2})
    stats = replica.stats()
    assert (stats["max_batch_size"], stats["max_batch_tokens"], stats["batch_wait_timeout_s"]) == (
        8,
        2048,
        0.2,
    )
    replica.reconfigure({"max_batch_size": None, "max_batch_tokens": None, "batch_wait_timeout_s": 0.01})
    assert replica.stats()["max_batch_size"] == replica.scorer.config.batching.max_batch_size
    assert replica.record_autoscaling_stats() == {"backlog_samples": 0.0}
    assert replica.info()["head_shape"] == [1, 64]


class _FakePrepared:
    """What the replica's batch planning reads from a prepared sample."""

    def __init__(self, value: float, n: int) -> None:
        import numpy as np

        self.value, self.num_tokens = value, n
        self.input_ids = np.full(n, int(value) % 97)
        self.image_digests: list[str] = []
        self.has_video = False


class _FakeEngine:
    """A ScoringEngine that scores a sample as its own ``v`` (the replica's plumbing is the point)."""

    def __init__(self) -> None:
        from rlreward.engine.config import BatchingConfig

        self.config = ScorerConfig(
            model="fake", batching=BatchingConfig(max_batch_tokens=64, max_batch_size=8, prefix_sharing=False)
        )
        self.device = "cpu"
        self.batches: list[int] = []

    def prepare(self, sample):
        from rlreward.schema import ErrorCode, ScoreResult

        if sample.get("bad"):
            return ScoreResult.failed(ErrorCode.INVALID_SAMPLE, "a bad sample")
        v = sample.get("v", 0)  # the replica's warm-up probe has none
        return _FakePrepared(float(v), 4 + int(v) % 7)

    def score_prepared(self, items):
        from rlreward.schema import ScoreResult

        time.sleep(0.02)  # a forward pass takes time: requests arriving meanwhile queue up
        self.batches.append(sum(not isinstance(it, ScoreResult) for it in items))
        return [it if isinstance(it, ScoreResult) else ScoreResult(score=it.value) for it in items]

    def info(self):
        return {"model": "fake", "head_shape": [1, 1]}


def test_replica_serves_an_injected_engine_and_returns_each_request_its_own_results():
    from rlreward.engine.protocol import ScoringEngine
    from rlreward.serving.replica import RewardReplica

    engine = _FakeEngine()
    assert isinstance(engine, ScoringEngine)
    replica = RewardReplica({"model": "fake"}, engine=engine)
    requests = [
        [{"v": 100 * r + i} if (r + i) % 5 else {"bad": True} for i in range(1 + r % 6)] for r in range(40)
    ]

    async def main():
        return await asyncio.gather(*(replica.score(req) for req in requests))

    answers = asyncio.run(main())
    for req, res in zip(requests, answers, strict=True):
        assert len(res) == len(req)
        for sample, r in zip(req, res, strict=True):
            if "v" in sample:
                assert r.score == sample["v"] and r.error is None
            else:
                assert r.score is None and r.error.code == "invalid_sample"
    assert sum(engine.batches) >= sum("v" in s for req in requests for s in req)
    assert max(engine.batches) > 1  # samples of different requests shared forward passes
    assert max(engine.batches) <= 8  # the engine's max_batch_size held
