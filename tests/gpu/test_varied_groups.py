"""On an accelerator: GRPO groups with varied answer lengths, bf16 — prefix once per group, scores as
unshared (bf16 tolerance), both padding sides; a real CUDA out-of-memory error is survived.

Skipped where no CUDA device is present. Run with ``pytest tests/gpu`` on a GPU machine.
"""

from __future__ import annotations

import pytest
import torch

from tests.unit.test_prefix_varied import burst, count_lm_calls

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _scorer(model: str, **batching):
    from rlreward.engine.config import ScorerConfig
    from rlreward.engine.scorer import Scorer

    cfg = ScorerConfig(
        model=model, dtype="bfloat16", device="cuda", attn_implementation="sdpa", batching=batching
    )
    return Scorer.from_config(cfg)


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_bf16_varied_groups_share_one_prefix_and_match_unshared(tiny_model_dir, padding_side):
    samples = burst(groups=4, answers=8)
    shared = _scorer(
        tiny_model_dir, min_shared_prefix_tokens=16, padding_side=padding_side, max_batch_tokens=2048
    )
    unshared = _scorer(tiny_model_dir, prefix_sharing=False, padding_side=padding_side)
    calls = count_lm_calls(shared)
    a, b = shared.score(samples), unshared.score(samples)
    assert all(r.ok for r in a + b)
    assert sum(rows for cached, rows, _ in calls if not cached) == 4 + 2  # 4 prefixes, 2 singles
    for x, y in zip(a, b):
        assert abs(x.score - y.score) <= 2e-2 * max(1.0, abs(y.score)), (x.score, y.score)


def test_a_real_out_of_memory_error_halves_the_pass(tiny_model_dir):
    scorer = _scorer(
        tiny_model_dir, prefix_sharing=False, max_batch_tokens=1 << 20, min_padding_efficiency=0.0
    )
    free, _ = torch.cuda.mem_get_info()
    hog = []
    try:
        # Leave ~64 MiB free, then score a batch whose activations need more: the first pass fails
        # with torch.OutOfMemoryError, halves run.
        while torch.cuda.mem_get_info()[0] > 64 << 20:
            hog.append(
                torch.empty(
                    max(torch.cuda.mem_get_info()[0] - (64 << 20), 1 << 20) // 2,
                    dtype=torch.uint8,
                    device="cuda",
                )
            )
        text = [{"prompt": "word " * 2000, "response": f"answer {k}"} for k in range(64)]
        results = scorer.score(text)
    finally:
        hog.clear()
        torch.cuda.empty_cache()
    stats = scorer.engine_stats()
    assert stats["out_of_memory"] >= 1 and stats["budget_tokens"] < 1 << 20
    assert sum(r.ok for r in results) >= 1  # the halves that fit were scored
