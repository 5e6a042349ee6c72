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


def _qwen7b_text_config():
    from types import SimpleNamespace

    from rlreward.offline.bench.models import QWEN25_VL_7B_TEXT

    return SimpleNamespace(**QWEN25_VL_7B_TEXT)


def test_kv_of_a_shared_pass_counts_in_the_token_budget():
    from rlreward.engine.batching import PlanCosts, PrefixGroup, kv_tokens_per_token, plan_shared

    cfg = _qwen7b_text_config()
    kv = kv_tokens_per_token(cfg)
    # bytes of KV per token (bf16) over bytes of activations per token of an ordinary pass
    assert kv == pytest.approx((28 * 2 * 4 * 128) / (3 * 3584 + 3 * 18944))
    prefix, budget = 10_000, 16_384
    rng = random.Random(0)
    lengths = [prefix + rng.randint(16, 512) for _ in range(64)]
    costs = PlanCosts(budget=budget, max_rows=64, kv=kv, pass_cost=128)
    (fp,) = plan_shared([PrefixGroup(members=list(range(64)), prefix_len=prefix)], lengths, costs)
    assert sorted(i for c in fp.chunks for i in c) == list(range(64))
    for chunk in fp.chunks:
        longest = max(lengths[i] - prefix for i in chunk)
        held = prefix * kv  # the group's prefix KV, kept while its chunks run
        assert len(chunk) == 1 or held + len(chunk) * (prefix * kv + longest) <= budget
    # Without the KV the whole group would have fit one pass (64 x 512 suffix tokens > budget/2 only).
    assert len(fp.chunks) >= 64 * prefix * kv // budget


def test_varied_suffixes_cut_by_cost_not_by_a_padding_floor():
    from rlreward.engine.batching import PlanCosts, PrefixGroup, pass_tokens, plan_shared

    rng = random.Random(1)
    groups, lengths = [], []
    for _ in range(4):
        members = list(range(len(lengths), len(lengths) + 8))
        lengths += [300 + rng.randint(16, 512) for _ in members]
        groups.append(PrefixGroup(members=members, prefix_len=300))
    costs = PlanCosts(budget=1 << 20, max_rows=64, kv=0.4, pass_cost=128)
    passes = plan_shared(groups, lengths, costs)
    computed = useful = 0
    for fp in passes:
        c, u = pass_tokens(fp, lengths)
        computed, useful = computed + c, useful + u
    assert useful == 4 * 300 + sum(n - 300 for n in lengths)
    assert computed <= 1.15 * useful
    assert sum(len(fp.segments) for fp in passes) == 4  # every prefix once
