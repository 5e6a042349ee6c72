"""The replica's byte-bounded queue, in-process (no Ray): a queued GRPO group counts a shared pixel
tensor once and every sample's ids; a replica over ``max_queued_bytes`` refuses requests with
``QueueBytesFull`` (Serve's ``BackPressureError``), which the caller's retries ride out with every
sample scored as one-at-a-time scoring scores it."""

from __future__ import annotations

import asyncio

import pytest
import torch

from rlreward.engine.preprocess import PreparedSample
from rlreward.errors import classify_ray_error
from rlreward.serving.replica import QueueBytes, QueueBytesFull, RewardReplica
from tests.conftest import noise_png


def _sample(pixels: torch.Tensor, n_tokens: int) -> PreparedSample:
    return PreparedSample(
        input_ids=torch.arange(n_tokens, dtype=torch.long),
        position_ids=torch.zeros(3, n_tokens, dtype=torch.long),
        pixel_values=pixels,
        image_grid_thw=torch.tensor([[1, 4, 4]]),
        image_digests=["d"],
    )


def _own_bytes(p: PreparedSample) -> int:
    """Bytes of a sample's own tensors (everything but the pixels), from numel x element size."""
    return sum(t.numel() * t.element_size() for t in (p.input_ids, p.position_ids, p.image_grid_thw))


def test_a_group_sharing_one_pixel_tensor_counts_it_once():
    pixels = torch.zeros(16, 1176, dtype=torch.float32)
    pixel_bytes = 16 * 1176 * 4
    group = [_sample(pixels, 40 + 7 * k) for k in range(8)]
    ledger = QueueBytes()
    keys = ledger.add(group)
    assert ledger.bytes == pixel_bytes + sum(_own_bytes(p) for p in group)
    # A second request of the same group (same tensor) adds only its ids.
    more = [_sample(pixels, 30)]
    keys2 = ledger.add(more)
    assert ledger.bytes == pixel_bytes + sum(_own_bytes(p) for p in group + more)
    ledger.release(keys)
    assert ledger.bytes == pixel_bytes + _own_bytes(more[0])  # still held by the second request
    ledger.release(keys2)
    assert ledger.bytes == 0
    assert ledger.peak == pixel_bytes + sum(_own_bytes(p) for p in group + more)


def test_unshared_pixel_tensors_count_once_each():
    group = [_sample(torch.zeros(16, 1176), 40) for _ in range(8)]
    ledger = QueueBytes()
    ledger.add(group)
    assert ledger.bytes == 8 * (16 * 1176 * 4 + _own_bytes(group[0]))


def test_views_of_one_storage_count_the_storage_once():
    base = torch.zeros(32, 1176)
    a, b = _sample(base[:16], 10), _sample(base[16:], 10)
    ledger = QueueBytes()
    ledger.add([a, b])
    assert ledger.bytes == 32 * 1176 * 4 + _own_bytes(a) + _own_bytes(b)


def test_the_refusal_is_an_overload_with_retry_after():
    failure = classify_ray_error(QueueBytesFull(5000, 4096))
    assert failure is not None and failure.kind == "overloaded" and failure.retry_after_s == 1.0
    assert "max_queued_bytes=4096" in failure.message


def test_a_replica_over_its_bound_refuses_and_retries_score_everything(tiny_model_dir, scorer):
    bound = 300_000  # a few requests' worth of prepared samples
    replica = RewardReplica({}, engine=scorer, max_queued_bytes=bound)
    replica.reconfigure({"max_batch_size": 8, "max_batch_tokens": 4096, "batch_wait_timeout_s": 0.0})
    images = [noise_png(i, (112, 84)) for i in range(6)]
    requests = [
        [{"prompt": f"prompt {g}", "response": "word " * (k + 1), "images": [images[g]]} for k in range(4)]
        for g in range(6)
    ]
    expected = [[scorer.score([s])[0].score for s in req] for req in requests]
    refusals: list[QueueBytesFull] = []
    request_bytes: list[int] = []

    async def send(req):
        while True:
            try:
                return await replica.score(req)
            except QueueBytesFull as exc:
                refusals.append(exc)
                await asyncio.sleep(0.02)

    async def run():
        return await asyncio.gather(*(send(r) for r in requests))

    for req in requests:  # what one request holds, prepared
        prepared = [scorer.prepare(s) for s in req]
        ledger = QueueBytes()
        ledger.add(prepared)
        request_bytes.append(ledger.bytes)
    got = asyncio.run(run())
    for res, exp in zip(got, expected):
        assert [r.error for r in res] == [None] * len(res)
        assert [r.score for r in res] == pytest.approx(exp, abs=1e-5)
    stats = replica.stats()
    assert refusals and stats["refused_requests"] == len(refusals)
    assert "max_queued_bytes" in str(refusals[0])
    assert stats["queued_bytes"] == 0
    assert 0 < stats["peak_queued_bytes"] <= bound + max(request_bytes)
