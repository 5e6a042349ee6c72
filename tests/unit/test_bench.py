"""``rlreward bench``: the harness runs end to end, its systems agree, and its counts are right.

Timed goals are not asserted here (they live in BENCHMARKS.md); these tests pin down that the
numbers the harness reports measure what they say.
"""

from __future__ import annotations

import json

import pytest
import torch

from rlreward.commands.main import main
from rlreward.offline.bench import models
from rlreward.offline.bench.workloads import make_workload


def _bench(tmp_path, model: str, *extra: str) -> dict:
    out = tmp_path / "report.json"
    rc = main(
        ["bench", "--model", model, "--device", "cpu", "--dtype", "float32", "--json", str(out), *extra]
    )
    assert rc == 0
    return json.loads(out.read_text())


def test_grpo_run_reports_every_system_with_agreeing_scores(tmp_path, tiny_model_dir):
    report = _bench(
        tmp_path,
        tiny_model_dir,
        "--workload",
        "grpo",
        "--prompts",
        "2",
        "--group",
        "3",
        "--image-tokens",
        "36",
        "--completion-tokens",
        "8",
    )
    systems = report["systems"]
    assert list(systems) == ["reference", "unshared", "shared"]
    ref = systems["reference"]["scores"]
    assert len(ref) == 6 and all(s is not None for s in ref)
    assert len(set(ref)) > 1  # scores depend on the input, so agreement means something
    for name, r in systems.items():
        assert r["status"] == "ok", (name, r["reason"])
        assert r["samples_per_s"] > 0 and r["tokens_per_s"] > r["samples_per_s"]
        assert max(abs(a - b) for a, b in zip(r["scores"], ref)) <= 1e-4
        assert r["max_abs_diff_vs_reference"] <= 1e-4
    # The harness sees the sharing: each group's prefix (image included) goes through the model once.
    assert (
        systems["shared"]["computed_tokens"]
        < systems["unshared"]["computed_tokens"]
        == report["workload"]["tokens"]
    )
    assert systems["reference"]["padding_efficiency"] == 1.0
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The budget that ran is the CPU default (none configured), resolved where the scorer is built,
    # and the record says so along with the preprocessing (the checkpoint's own, no deviation).
    from rlreward.engine.config import CPU_MAX_BATCH_TOKENS

    eff = report["effective"]
    assert (
        report["workload"]["max_batch_tokens"] == eff["batching"]["max_batch_tokens"] == CPU_MAX_BATCH_TOKENS
    )
    assert eff["batching"]["max_batch_tokens_source"] == "cpu default"
    assert eff["preprocessing"]["faithful"] is True


def test_a_configured_budget_is_the_one_recorded(tmp_path, tiny_model_dir):
    report = _bench(
        tmp_path,
        tiny_model_dir,
        "--workload",
        "text",
        "--samples",
        "2",
        "--systems",
        "unshared",
        "--max-batch-tokens",
        "2048",
        "--max-pixels",
        "100352",
    )
    eff = report["effective"]
    assert report["workload"]["max_batch_tokens"] == eff["batching"]["max_batch_tokens"] == 2048
    assert eff["batching"]["max_batch_tokens_source"] == "configured"
    assert eff["preprocessing"]["deviations"] == {"max_pixels": 100352}


def test_measured_padding_efficiency_is_the_plans(tmp_path, tiny_model_dir):
    # A small token budget cuts the mixed-length workload into several padded batches.
    report = _bench(
        tmp_path,
        tiny_model_dir,
        "--workload",
        "ppo",
        "--samples",
        "6",
        "--image-tokens",
        "24",
        "--completion-tokens",
        "12",
        "--systems",
        "unshared",
        "--max-batch-tokens",
        "300",
    )
    measured = report["systems"]["unshared"]["padding_efficiency"]
    planned = report["workload"]["planned_padding_efficiency"]
    assert planned < 1.0
    assert measured == pytest.approx(planned, abs=1e-9)


def test_workload_lengths_are_exact_and_groups_share_prompt_and_image(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    w = make_workload(
        "grpo", tok, prompts=2, group=4, image_tokens=30, completion_tokens=17, prompt_tokens=11, samples=None
    )
    assert w.groups == [[0, 1, 2, 3], [4, 5, 6, 7]]
    for g in w.groups:
        assert len({(w.samples[i]["prompt"], w.samples[i]["images"][0]) for i in g}) == 1
    assert w.samples[0]["images"] != w.samples[4]["images"]
    for s in w.samples:
        assert len(tok.encode(s["response"], add_special_tokens=False)) == 17
        assert len(tok.encode(s["prompt"], add_special_tokens=False)) == 11


def _matmul_params(module: torch.nn.Module, names: tuple[str, ...]) -> int:
    return sum(
        p.numel() for n, p in module.named_parameters() if n.endswith("weight") and any(k in n for k in names)
    )


def test_flop_count_matches_the_models_own_weights():
    """The linear part of the FLOP formulas is 2 x the matmul weights each token / patch meets."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from rlreward.offline.tiny import build_tokenizer

    config = models.qwen25_vl_config(build_tokenizer(), models.BENCH_SMALL_TEXT, models.BENCH_SMALL_VISION)
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config)
    text = _matmul_params(model.model.language_model.layers, ("proj",))
    s = 10
    attention = 2 * 7 * 7 * 64 * s * (s + 1)  # layers x 2 x dq x S(S+1)
    assert models.text_flops(config.text_config, s) == 2 * s * text + attention
    assert models.text_flops(config.text_config, s, lm_head=True) - models.text_flops(
        config.text_config, s
    ) == (2 * s * model.lm_head.weight.numel())
    vis = model.model.visual
    patches = 16  # one 4x4-patch image: a single window, so windowed and full attention cost the same
    linear = 2 * patches * (_matmul_params(vis.blocks, ("qkv", "proj")) + vis.patch_embed.proj.weight.numel())
    linear += 2 * (patches // 4) * _matmul_params(vis.merger, ("mlp",))
    attention = 4 * 160 * 8 * patches**2
    assert models.vision_flops(config.vision_config, [(1, 4, 4)]) == pytest.approx(
        linear + attention, rel=1e-12
    )


def test_bench_small_keeps_the_7b_proportions():
    """lm_head's share of the text FLOPs is the 7B's; vision vs text per visual token is within the
    13% the docstring states (the merger and patch embedding do not shrink with depth)."""
    from rlreward.offline.tiny import build_tokenizer

    tok = build_tokenizer()
    big = models.qwen25_vl_config(tok, models.QWEN25_VL_7B_TEXT, models.QWEN25_VL_7B_VISION)
    small = models.qwen25_vl_config(tok, models.BENCH_SMALL_TEXT, models.BENCH_SMALL_VISION)

    def shares(cfg):
        per_token = models.text_flops(cfg.text_config, 1)  # matmuls (attention over 1 key is negligible)
        lm_head = models.text_flops(cfg.text_config, 1, lm_head=True) - per_token
        visual = models.vision_flops(cfg.vision_config, [(1, 2, 2)])  # one visual token = 4 patches
        return lm_head / per_token, visual / per_token

    (lm_small, vis_small), (lm_big, vis_big) = shares(small), shares(big)
    assert lm_small == pytest.approx(lm_big, rel=1e-3)
    assert vis_big == pytest.approx(0.394, abs=5e-3)
    assert 1.0 < vis_small / vis_big < 1.15


def test_7b_shape_has_the_reference_parameter_count():
    model = models.build_random_model("7b-shape", torch.device("meta"), torch.bfloat16)
    assert model.num_parameters == models.QWEN25_VL_7B_PARAMS == 8_292_166_656
    assert model.model.config.text_config.hidden_size == 3584
    model.workdir.cleanup()
