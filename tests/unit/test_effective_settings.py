"""One resolution path for device defaults, one batching section, and the effective settings reported
where a user reads them (``rlreward score``'s stderr header, eval records); ``make-tiny`` processor
options."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import pytest

from rlreward.engine.config import (
    CPU_MAX_BATCH_TOKENS,
    GPU_MAX_BATCH_TOKENS,
    ScorerConfig,
    resolve_device_defaults,
)
from rlreward.serving.config import AppConfig, load_app_config

ROOT = Path(__file__).resolve().parents[2]


def test_unset_budget_survives_a_dump_round_trip_and_resolves_per_device(tiny_model_dir):
    cfg = load_app_config({"model": tiny_model_dir})
    again = AppConfig.model_validate(cfg.model_dump())  # what `rlreward serve` does with overrides
    assert again.scorer.batching.max_batch_tokens is None
    assert resolve_device_defaults(again.scorer, "cpu").batching.max_batch_tokens == CPU_MAX_BATCH_TOKENS
    assert resolve_device_defaults(again.scorer, "cuda").batching.max_batch_tokens == GPU_MAX_BATCH_TOKENS
    set_ = ScorerConfig(model="m", batching={"max_batch_tokens": 4096})
    assert resolve_device_defaults(set_, "cpu").batching.max_batch_tokens == 4096
    for f in ("configs/tiny-cpu.yaml", "rlreward/configs/tiny-cpu.yaml", "configs/skywork-vl-7b.yaml"):
        c = load_app_config({"config": str(ROOT / f), "model": tiny_model_dir})
        assert c.scorer.batching.max_batch_tokens is None, f  # the device decides
        assert c.scorer.max_pixels is None and c.scorer.min_pixels is None, f  # the card's preprocessing


def test_an_old_top_level_batching_section_is_refused_naming_where_its_keys_live(tiny_model_dir, tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text(
        f"scorer:\n  model: {tiny_model_dir}\n  batching:\n    max_batch_size: 32\n"
        "batching:\n  batch_wait_timeout_s: 0.2\n  max_batch_size: 16\n"
    )
    with pytest.raises(ValueError, match="scorer.batching") as info:
        load_app_config(str(old))
    assert "batch_wait_timeout_s" in str(info.value) and "max_batch_size" in str(info.value)
    # The one section loads, without a warning; the replica's user_config is the same section.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = load_app_config({"model": tiny_model_dir, "scorer.batching.batch_wait_timeout_s": 0.3})
    assert cfg.batching.batch_wait_timeout_s == 0.3 and "batching" not in cfg.model_dump()


def test_make_tiny_processor_options(tmp_path):
    from rlreward.commands import make_tiny as cmd

    p = argparse.ArgumentParser()
    cmd.add_arguments(p)
    args = p.parse_args(
        [str(tmp_path / "t"), "--max-pixels", "31360", "--min-pixels", "6272", "--video-max-pixels", "200704",
         "--patch-size", "16", "--legacy-bounds"]
    )  # fmt: skip
    assert cmd.run(args) == 0
    saved = json.loads((tmp_path / "t" / "processor_config.json").read_text())
    ip, vp = saved["image_processor"], saved["video_processor"]
    assert "size" not in ip and (ip["min_pixels"], ip["max_pixels"], ip["patch_size"]) == (6272, 31360, 16)
    assert vp["size"]["longest_edge"] == 200704
    model_cfg = json.loads((tmp_path / "t" / "config.json").read_text())
    assert model_cfg["vision_config"]["patch_size"] == 16
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tmp_path / "t")
    assert (proc.image_processor.size.shortest_edge, proc.image_processor.size.longest_edge) == (6272, 31360)
    bad = p.parse_args([str(tmp_path / "u"), "--min-pixels", "9000", "--max-pixels", "5000"])
    from rlreward.errors import UsageError

    with pytest.raises(UsageError, match="min pixels above max"):
        cmd.run(bad)


def test_score_header_and_eval_record_carry_the_effective_settings(tiny_model_dir, tmp_path, capsys):
    from rlreward.commands.main import main

    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"prompt": "2+2?", "response": "4"}) + "\n")
    assert (
        main(["score", str(inp), "--model", tiny_model_dir, "--device", "cpu", "--max-pixels", "200704"]) == 0
    )
    err = capsys.readouterr().err
    assert f"max_batch_tokens={CPU_MAX_BATCH_TOKENS} (cpu default)" in err
    assert "image resize 2 (configured deviation): pixels 3136-200704" in err
    assert "deviations from the checkpoint/recipe: max_pixels=200704" in err

    from rlreward.engine.scorer import Scorer
    from rlreward.offline.eval import backend_info

    rec = backend_info(Scorer.from_pretrained(tiny_model_dir, dtype="float32", device="cpu"))
    assert rec["reported_by"] == "scorer" and rec["max_batch_tokens"] == CPU_MAX_BATCH_TOKENS
    assert rec["batching"]["max_batch_tokens_source"] == "cpu default"
    assert rec["preprocessing"]["faithful"] is True
    assert rec["preprocessing"]["image"]["second_resize"]["max_pixels"] == 16384 * 28 * 28
