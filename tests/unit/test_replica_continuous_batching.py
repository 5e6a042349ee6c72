"""The replica's continuous batching, in-process (no Ray): many concurrent requests of mixed sizes
against one RewardReplica give the scores one-at-a-time scoring gives, each result back to its own
sample; batches form across requests, and a GRPO group sent one request per sample is queued (and
batched) together; :func:`cut_batch` on hand-made queues."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace

import pytest

from rlreward.engine.config import ScorerConfig
from tests.conftest import noise_png


@pytest.fixture(scope="module")
def replica(tiny_model_dir):
    from rlreward.serving.replica import RewardReplica

    rep = RewardReplica(ScorerConfig(model=tiny_model_dir, dtype="float32", device="cpu").model_dump())
    rep.reconfigure({"max_batch_size": 16, "max_batch_tokens": 4096, "batch_wait_timeout_s": 0.0})
    return rep


def _mixed_requests(seed: int) -> list[list[dict]]:
    """Requests of 1..6 samples: text only, one image, and GRPO groups (same prompt + image, different
    answers) whose members are spread over several requests."""
    rng = random.Random(seed)
    imgs = [noise_png(i, (84 + 28 * (i % 3), 56)) for i in range(3)]
    long_prompt = "Look carefully at the picture and describe every object you can see in it. " * 3
    samples: list[dict] = []
    for g in range(3):  # groups: 5 completions of one prompt+image each
        for k in range(5):
            samples.append(
                {
                    "prompt": f"{long_prompt} (prompt {g})",
                    "response": f"answer {k} " * (k + 1),
                    "images": [imgs[g]],
                }
            )
    for i in range(10):
        samples.append({"prompt": f"question {i}?", "response": "word " * rng.randint(1, 40)})
    for i in range(5):
        samples.append(
            {"prompt": f"what is in image {i}?", "response": f"thing {i}", "images": [imgs[i % 3]]}
        )
    rng.shuffle(samples)
    requests, i = [], 0
    while i < len(samples):
        n = rng.randint(1, 6)
        requests.append(samples[i : i + n])
        i += n
    return requests


def test_interleaved_requests_of_mixed_sizes_score_as_one_at_a_time(replica, scorer):
    requests = _mixed_requests(seed=3)
    expected = [[scorer.score([s])[0].score for s in req] for req in requests]  # one sample a call
    before = replica.stats()["batches"]
    rng = random.Random(7)
    delays = [rng.uniform(0, 0.05) for _ in requests]

    async def one(req, delay):
        await asyncio.sleep(delay)
        return await replica.score(req)

    async def run():
        return await asyncio.gather(*(one(r, d) for r, d in zip(requests, delays)))

    got = asyncio.run(run())
    for req, res, exp in zip(requests, got, expected):
        assert len(res) == len(req)
        assert [r.error for r in res] == [None] * len(req)
        assert [r.score for r in res] == pytest.approx(exp, abs=1e-4)
    stats = replica.stats()
    new = stats["recent_batches"][-(stats["batches"] - before) :]
    assert sum(b["samples"] for b in new) == sum(len(r) for r in requests)
    assert max(b["requests"] for b in new) > 1, f"no batch held two requests: {new}"
    assert stats["backlog_samples"] == 0 and stats["queued_samples"] == 0


def test_group_sent_one_sample_per_request_is_batched_together_while_the_device_is_busy(replica, scorer):
    img = noise_png(11, (112, 84))
    prompt = "Describe the picture in as much detail as you can manage, please. " * 3
    group = [{"prompt": prompt, "response": f"it shows {k} " * (k + 1), "images": [img]} for k in range(6)]
    blocker = [{"prompt": f"keep the device busy {i}", "response": "ok"} for i in range(2)]
    expected = [scorer.score([s])[0].score for s in group]
    before = replica.stats()["batches"]

    async def until(cond):
        for _ in range(2000):
            if cond():
                return
            await asyncio.sleep(0.005)
        raise AssertionError("condition not reached")

    async def run():
        # Hold the device: the blocker's batch is cut and waits for it, so the group's one-sample
        # requests arrive while a forward pass "runs".
        replica._device_lock.acquire()
        try:
            busy = asyncio.ensure_future(replica.score(blocker))
            await until(lambda: replica.stats()["backlog_samples"] == 2 and not replica._queue)
            singles = [asyncio.ensure_future(replica.score([s])) for s in group]
            await until(lambda: len(replica._queue) == 6)
        finally:
            replica._device_lock.release()
        await busy
        return await asyncio.gather(*singles)

    got = asyncio.run(run())
    assert [r[0].score for r in got] == pytest.approx(expected, abs=1e-4)
    stats = replica.stats()
    new = stats["recent_batches"][-(stats["batches"] - before) :]
    # The blocker ran alone; the six one-sample requests then formed one batch of one prefix group.
    assert [(b["samples"], b["requests"], b["groups"]) for b in new] == [(2, 1, 2), (6, 6, 1)], new


def test_bad_samples_keep_their_place_and_a_cancelled_request_does_not_stall_others(replica, scorer):
    good = [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(3)]
    mixed = [
        good[0],
        {"nope": 1},
        good[1],
        {"prompt": "x", "response": "y", "images": ["not base64!"]},
        good[2],
    ]
    expected = [scorer.score([s])[0].score for s in good]

    async def run():
        doomed = asyncio.ensure_future(replica.score([{"prompt": "slow " * 100, "response": "z"}] * 8))
        await asyncio.sleep(0.01)
        doomed.cancel()
        return await replica.score(mixed)

    res = asyncio.run(run())
    assert [r.score for r in (res[0], res[2], res[4])] == pytest.approx(expected, abs=1e-4)
    assert res[1].error is not None and res[3].error is not None
    assert replica.stats()["backlog_samples"] == 0


# -- cut_batch on hand-made queues -------------------------------------------------------------------
def _pending(tokens: int, group: str, request: int, done: bool = False):
    from rlreward.serving.replica import _Pending

    loop = asyncio.new_event_loop()
    fut = loop.create_future()
    if done:
        fut.cancel()
    return _Pending(SimpleNamespace(num_tokens=tokens), fut, request, group, 0.0)


def test_cut_batch_keeps_groups_together_oldest_first_under_the_budget():
    from rlreward.serving.replica import cut_batch

    q = [
        _pending(100, "a", 0),
        _pending(100, "b", 1),
        _pending(100, "a", 2),
        _pending(100, "c", 3),
        _pending(100, "b", 4),
    ]
    batch, rest = cut_batch(q, budget_tokens=300, max_samples=8)
    # group a (2) then group b (2, over the 300 budget only to finish the started group)
    assert [(p.group, p.request) for p in batch] == [("a", 0), ("a", 2), ("b", 1), ("b", 4)]
    assert [p.request for p in rest] == [3]
    batch, rest = cut_batch(q, budget_tokens=10_000, max_samples=3)
    assert [p.request for p in batch] == [0, 2, 1] and [p.request for p in rest] == [3, 4]


def test_cut_batch_runs_an_over_long_sample_alone_and_drops_cancelled_ones():
    from rlreward.serving.replica import cut_batch

    q = [_pending(50, "x", 0, done=True), _pending(5000, "y", 1), _pending(10, "z", 2)]
    batch, rest = cut_batch(q, budget_tokens=1000, max_samples=8)
    assert [p.request for p in batch] == [1] and [p.request for p in rest] == [2]
    assert cut_batch([_pending(5, "x", 0, done=True)], 1000, 8) == ([], [])


def test_cut_batch_cost_is_padded_tokens_with_a_sample_cap_and_a_long_sample_runs_alone():
    from rlreward.serving.replica import cut_batch

    def cut(*lengths, budget=1000, cap=3):
        q = [_pending(n, f"g{i}", i) for i, n in enumerate(lengths)]
        return [p.prepared.num_tokens for p in cut_batch(q, budget, cap)[0]]

    assert cut(100, 300) == [100, 300]  # padded: 300 x 2 = 600 <= 1000
    assert cut(300, 400, 100) == [300, 400]  # a third row would pad to 400 x 3 = 1200
    assert cut(10, 10, 10, 10) == [10, 10, 10]  # the sample cap
    assert cut(5000) == [5000]  # alone, an over-long sample still runs
    assert cut(5000, 1) == [5000]  # but never with company
