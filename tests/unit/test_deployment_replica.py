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
