"""Honest bench accounting: varied GRPO answer lengths (seeded, uniform, within MIN..MAX), useful
tokens (a group's prefix once + every suffix token when shared), FLOPs executed as counted by the
probe's hooks on a real forward pass, and the GPU peak table."""

from __future__ import annotations

import pytest

from rlreward.errors import UsageError
from rlreward.offline.bench.accounting import common_prefix, useful_work
from rlreward.offline.bench.models import peak_tflops_for, sample_flops, text_flops
from rlreward.offline.bench.systems import Probe
from rlreward.offline.bench.workloads import make_workload, parse_token_range


def test_token_range_parses_and_refuses_nonsense():
    assert parse_token_range("64") == 64
    assert parse_token_range("16..512") == (16, 512)
    for bad in ("512..16", "0..4", "a..b", "16-512"):
        with pytest.raises(UsageError, match="--completion-tokens"):
            parse_token_range(bad)


def _grpo(scorer, completion):
    return make_workload(
        "grpo",
        scorer.preprocessor.tokenizer,
        prompts=3,
        group=6,
        image_tokens=16,
        completion_tokens=completion,
        prompt_tokens=20,
        samples=None,
        seed=5,
    )


def test_varied_answers_are_seeded_and_within_the_range(scorer):
    a, b = _grpo(scorer, (4, 60)), _grpo(scorer, (4, 60))
    assert [s["response"] for s in a.samples] == [s["response"] for s in b.samples]
    lengths = [len(s["response"].split()) for s in a.samples]  # one token per word by construction
    assert min(lengths) >= 4 and max(lengths) <= 60 and len(set(lengths)) > 6


def test_useful_tokens_count_a_groups_prefix_once(scorer):
    w = _grpo(scorer, (4, 60))
    prepared = [scorer.prepare(s) for s in w.samples]
    config = scorer.backbone.config
    full, _ = useful_work(config, prepared, w.groups, shared=False)
    assert full == sum(p.num_tokens for p in prepared)
    shared, _ = useful_work(config, prepared, w.groups, shared=True)
    expected = 0
    for members in w.groups:
        ids = [prepared[i].input_ids.tolist() for i in members]
        # by hand: the longest prefix all members share
        n = 0
        while all(len(x) > n for x in ids) and len({x[n] for x in ids}) == 1:
            n += 1
        assert common_prefix(ids) == n and n > 20  # the image and the prompt at least
        expected += n + sum(len(x) - n for x in ids)
    assert shared == expected < full


def test_the_probe_counts_the_flops_an_unshared_forward_executes(scorer):
    # Equal lengths, one batch, no padding: executed FLOPs must be the per-sample model FLOPs.
    w = _grpo(scorer, 12)
    # Two groups' samples: different images (the scorer runs the vision tower once per image).
    samples = [w.samples[0], {**w.samples[6], "response": w.samples[0]["response"]}]
    prepared = [scorer.prepare(s) for s in samples]
    assert prepared[0].num_tokens == prepared[1].num_tokens
    assert prepared[0].image_digests != prepared[1].image_digests
    config = scorer.backbone.config
    probe = Probe(scorer.backbone, scorer.device, config)
    try:
        scorer.score_prepared(prepared)
    finally:
        probe.remove()
    grids = prepared[0].image_grid_thw.tolist()
    want = sum(sample_flops(config, p.num_tokens, grids) for p in prepared)
    assert probe.work.flops == pytest.approx(want, rel=1e-9)
    assert probe.computed == sum(p.num_tokens for p in prepared)
    assert text_flops(config.text_config, 10) > 0


def test_the_peak_table_reads_each_gpu_name_as_its_variant():
    assert peak_tflops_for("NVIDIA H100 80GB HBM3") == 989.4
    assert peak_tflops_for("NVIDIA H100 NVL") == 835.0
    assert peak_tflops_for("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops_for("NVIDIA H200") == 989.0
    assert peak_tflops_for("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops_for("NVIDIA L40S") == 362.05
    assert peak_tflops_for("NVIDIA L4") == 121.0
    assert peak_tflops_for("NVIDIA GeForce RTX 4090") is None
