"""Bursts on real Ray Serve: a burst beyond a replica's ``max_queued_bytes`` is refused in part with
503 + Retry-After, retried by ``RewardClient`` and fully scored (0 lost, the scores one-at-a-time
scoring gives) while the replica never holds more than its bound plus one request."""

from __future__ import annotations

import base64

import pytest

from rlreward.client import RewardClient
from rlreward.serving.replica import QueueBytes
from tests.conftest import noise_png

BOUND = 400_000  # bytes: a few of the requests below
CHUNK = 4


@pytest.fixture(scope="module")
def bounded_app(deploy_app):
    app = deploy_app(
        "bursts",
        **{
            "replica.max_queued_bytes": BOUND,
            "replica.max_ongoing_requests": 16,
            "scorer.batching.max_batch_size": 8,
        },
    )
    yield app
    app.delete()


def _burst() -> list[dict]:
    samples = []
    for g in range(8):  # 8 GRPO groups of 6 answers of varied length, one image each
        uri = "data:image/png;base64," + base64.b64encode(noise_png(g, (140, 112))).decode()
        for k in range(6):
            samples.append(
                {"prompt": f"Describe picture {g}.", "response": "a " * (1 + 5 * k), "images": [uri]}
            )
    return samples


def test_a_burst_beyond_the_byte_bound_is_fully_scored(bounded_app, scorer):
    samples = _burst()
    with RewardClient(
        url=bounded_app.url, chunk_size=CHUNK, max_concurrency=12, retry_budget_s=300
    ) as client:
        results = client.score(samples)
    assert len(results) == len(samples)
    assert [r.error for r in results] == [None] * len(samples)  # 0 lost
    expected = [scorer.score([s])[0].score for s in samples]
    assert [r.score for r in results] == pytest.approx(expected, abs=1e-5)
    stats = bounded_app.stats()
    assert stats["max_queued_bytes"] == BOUND
    assert stats["refused_requests"] > 0, "the burst never reached the bound: the test proves nothing"
    assert stats["queued_bytes"] == 0
    one_request = max(_held_bytes(scorer, samples[i : i + CHUNK]) for i in range(0, len(samples), CHUNK))
    assert 0 < stats["peak_queued_bytes"] <= BOUND + one_request


def _held_bytes(scorer, samples: list[dict]) -> int:
    ledger = QueueBytes()
    ledger.add([scorer.prepare(s) for s in samples])
    return ledger.bytes
