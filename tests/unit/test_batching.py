"""Batch planning: token budget, row cap and padding floor hold for every plan; nothing is lost."""

from __future__ import annotations

import random

import pytest

from rlreward.engine.batching import padding_efficiency, plan_batches


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("budget,rows,floor", [(16384, 64, 0.9), (1024, 8, 0.0), (4096, 16, 0.95)])
def test_plan_respects_limits_and_covers_every_sample(seed, budget, rows, floor):
    rng = random.Random(seed)
    lengths = [
        rng.choice([rng.randint(5, 60), rng.randint(200, 900), rng.randint(1000, 5000)]) for _ in range(80)
    ]
    plan = plan_batches(lengths, budget, rows, floor)
    assert sorted(i for b in plan for i in b) == list(range(len(lengths)))
    for b in plan:
        longest = max(lengths[i] for i in b)
        if len(b) > 1:
            assert longest * len(b) <= budget and len(b) <= rows
            assert sum(lengths[i] for i in b) >= floor * longest * len(b) - 1e-9
    if floor:
        assert padding_efficiency(lengths, plan) >= floor


def test_sample_longer_than_budget_runs_alone():
    plan = plan_batches([10, 5000, 12], max_batch_tokens=100, max_batch_size=8)
    assert [1] in plan and sorted(map(sorted, plan)) == [[0, 2], [1]]


def test_without_a_floor_a_mixed_bag_pads_and_with_it_does_not():
    lengths = [1000] + [100] * 31
    loose = plan_batches(lengths, 1_000_000, 64)
    tight = plan_batches(lengths, 1_000_000, 64, min_efficiency=0.9)
    assert len(loose) == 1 and padding_efficiency(lengths, loose) < 0.2
    assert padding_efficiency(lengths, tight) >= 0.9
