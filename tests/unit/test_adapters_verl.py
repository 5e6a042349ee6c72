"""verl adapter: compute_score and RLRewardManager loaded the way verl loads them, scored by the real
scorer through an in-process transport (the Ray-actor path is in tests/integration/test_verl*.py)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from rlreward.adapters import verl as vadapter
from rlreward.adapters._common import ClientHolder
from rlreward.adapters.verl import compute_score
from tests.conftest import noise_png
from tests.unit.test_adapters_common import LocalFactory, dead_factory, pil_noise

URL = "http://rm.test:8000"
BASE_KEYS = {"score", "rm_score", "rm_error", "error"}


@pytest.fixture
def served(tiny_model_dir, monkeypatch):
    """Route the adapter's client for URL to the in-process scorer."""
    holder = ClientHolder(factory=LocalFactory(tiny_model_dir))
    monkeypatch.setattr(vadapter, "_holder", lambda spec: holder)


def _call(**kwargs):
    return asyncio.run(compute_score(**kwargs))


def test_compute_score_places_extra_info_images_at_their_placeholders(served, scorer):
    png = noise_png(4)
    info = {
        "prompt": "Look: <image> What is the area?",
        "images": np.array([{"bytes": png, "path": None}], dtype=object),
        "index": 3,
    }
    out = _call(data_source="geo", solution_str="12", ground_truth="12", extra_info=info, url=URL)
    expected = scorer.score(
        [
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "Look: "},
                            {"type": "image", "image": png},
                            {"type": "text", "text": " What is the area?"},
                        ],
                    },
                    {"role": "assistant", "content": "12"},
                ]
            }
        ]
    )[0].score
    assert out["score"] == pytest.approx(expected, abs=1e-6)
    assert out == {"score": out["score"], "rm_score": out["score"], "rm_error": 0.0, "error": ""}


def test_question_key_and_message_prompts_work_too(served, scorer):
    png = noise_png(5)
    by_question = _call(
        data_source="d",
        solution_str="B",
        ground_truth="B",
        url=URL,
        extra_info={"question": "Which one?", "images": [png]},
    )
    by_messages = _call(
        data_source="d",
        solution_str="B",
        ground_truth="B",
        url=URL,
        extra_info={"prompt": [{"role": "user", "content": "Which one?"}], "images": [png]},
    )
    expected = scorer.score([{"prompt": "Which one?", "response": "B", "images": [png]}])[0].score
    assert by_question["score"] == pytest.approx(expected, abs=1e-6)
    assert by_messages["score"] == pytest.approx(expected, abs=1e-6)


def test_failures_never_raise_and_keep_the_same_keys(served, monkeypatch):
    weights = {"accuracy_weight": 1.0, "format_weight": 0.5, "fallback_score": -1.0}
    ok = _call(
        data_source="d",
        solution_str="\\boxed{3}",
        ground_truth="3",
        url=URL,
        extra_info={"prompt": "1+2?"},
        **weights,
    )
    no_prompt = _call(
        data_source="d", solution_str="\\boxed{3}", ground_truth="3", url=URL, extra_info={}, **weights
    )
    bad_image = _call(
        data_source="d",
        solution_str="x",
        ground_truth="3",
        url=URL,
        extra_info={"prompt": "<image> hi", "images": ["/etc/shadow"]},
        **weights,
    )
    typo = _call(data_source="d", solution_str="x", ground_truth="3", ulr=URL, extra_info={"prompt": "hi"})
    dead = ClientHolder(factory=dead_factory)
    monkeypatch.setattr(vadapter, "_holder", lambda spec: dead)
    down = _call(
        data_source="d",
        solution_str="\\boxed{3}",
        ground_truth="3",
        url=URL,
        extra_info={"prompt": "1+2?"},
        **weights,
    )
    for failed in (no_prompt, bad_image, down):
        assert set(failed) == set(ok) == BASE_KEYS | {"accuracy", "format"}
        assert failed["rm_error"] == 1.0 and failed["rm_score"] == -1.0 and failed["error"]
    assert no_prompt["score"] == pytest.approx(-1.0 + 1.0) and "question" in no_prompt["error"]
    assert bad_image["error"].startswith("path_not_allowed")
    assert down["error"].startswith("unavailable") and down["score"] == pytest.approx(-1.0 + 1.0)
    assert typo["rm_error"] == 1.0 and "ulr" in typo["error"]
    assert ok["rm_error"] == 0.0 and ok["score"] == pytest.approx(ok["rm_score"] + 1.0)


def test_verl_loads_the_function_and_detects_it_as_async(served, tiny_model_dir):
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn

    cfg = OmegaConf.create(
        {
            "reward": {
                "custom_reward_function": {
                    "path": "pkg://rlreward.adapters.verl",
                    "name": "compute_score",
                    "reward_kwargs": {"url": URL},
                }
            }
        }
    )
    fn = get_custom_reward_fn(cfg)
    out = asyncio.run(fn(data_source="d", solution_str="4", ground_truth="4", extra_info={"prompt": "2+2?"}))
    assert out["rm_error"] == 0.0 and isinstance(out["score"], float)


def _verl_config(tiny_model_dir, reward_kwargs):
    from omegaconf import OmegaConf

    return OmegaConf.create(
        {
            "actor_rollout_ref": {"model": {"path": tiny_model_dir, "tokenizer_path": None}},
            "reward": {
                "custom_reward_function": {"path": None, "name": "compute_score"},
                "reward_manager": {
                    "source": "importlib",
                    "name": "RLRewardManager",
                    "module": {"path": "pkg://rlreward.adapters.verl", "name": "custom_reward_manager"},
                },
                "reward_model": {"enable": False},
                "sandbox_fusion": {"url": None},
                "reward_kwargs": reward_kwargs,
            },
        }
    )


def _row(tokenizer, image, response: str, ground_truth: str = "4", data_source: str = "geo"):
    """One streamed trajectory as verl's agent loop hands it to RewardLoopWorker.compute_score."""
    import torch
    from tensordict import TensorDict
    from verl import DataProto

    raw_prompt = [
        {
            "role": "user",
            "content": [{"type": "image", "image": image}, {"type": "text", "text": "How many sides?"}],
        }
    ]
    prompt_ids = torch.tensor(tokenizer("<|im_start|>user\nHow many sides?<|im_end|>\n")["input_ids"])
    response_ids = torch.tensor(tokenizer(response + "<|im_end|>")["input_ids"])
    ids = torch.cat([prompt_ids, response_ids])
    batch = TensorDict(
        {
            "prompts": prompt_ids[None],
            "responses": response_ids[None],
            "input_ids": ids[None],
            "attention_mask": torch.ones_like(ids)[None],
            "position_ids": torch.arange(len(ids))[None],
        },
        batch_size=1,
    )
    row = {
        "raw_prompt": raw_prompt,
        "data_source": data_source,
        "reward_model": {"ground_truth": ground_truth},
        "extra_info": {"index": 0},
    }
    non_tensor = {
        k: np.array([v], dtype=object) if not isinstance(v, list) else np.array([v]) for k, v in row.items()
    }
    non_tensor["__num_turns__"] = np.array([2])
    return DataProto(batch=batch, non_tensor_batch=non_tensor)


def test_manager_reads_prompt_and_images_from_raw_prompt(served, tiny_model_dir, scorer):
    from transformers import AutoTokenizer
    from verl.trainer.ppo.reward import load_reward_manager

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    manager = load_reward_manager(_verl_config(tiny_model_dir, {"url": URL}), tok)
    assert type(manager).__name__ == "RLRewardManager"
    img = pil_noise(7)
    out = asyncio.run(manager.run_single(_row(tok, img, "four")))
    expected = scorer.score(
        [
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "image": img},
                            {"type": "text", "text": "How many sides?"},
                        ],
                    },
                    {"role": "assistant", "content": "four"},
                ]
            }
        ]
    )[0].score
    assert out["reward_score"] == pytest.approx(expected, abs=1e-6)
    assert out["reward_extra_info"]["rm_error"] == 0.0


def test_manager_adds_verls_rule_score_with_its_weight(served, tiny_model_dir):
    from transformers import AutoTokenizer
    from verl.trainer.ppo.reward import load_reward_manager

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    plain = load_reward_manager(_verl_config(tiny_model_dir, {"url": URL}), tok)
    ruled = load_reward_manager(_verl_config(tiny_model_dir, {"url": URL, "rule_weight": 2.0}), tok)
    # verl's default compute_score for this data_source (gsm8k: 1.0 for "#### <right answer>").
    right, wrong = (_row(tok, pil_noise(8), r, data_source="openai/gsm8k") for r in ("#### 4", "#### 5"))
    base = asyncio.run(plain.run_single(right))
    mixed, missed = asyncio.run(ruled.run_single(right)), asyncio.run(ruled.run_single(wrong))
    assert mixed["reward_score"] == pytest.approx(base["reward_score"] + 2.0, abs=1e-6)
    assert mixed["reward_extra_info"]["rule"] == 1.0 and missed["reward_extra_info"]["rule"] == 0.0
    assert "rule" not in base["reward_extra_info"]


def test_manager_config_typo_fails_at_startup(tiny_model_dir):
    from transformers import AutoTokenizer
    from verl.trainer.ppo.reward import load_reward_manager

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    with pytest.raises(ValueError, match="ulr"):
        load_reward_manager(_verl_config(tiny_model_dir, {"ulr": URL}), tok)


def test_manager_pickles_by_reference():
    import pickle

    cls = vadapter.RLRewardManager
    assert pickle.loads(pickle.dumps(cls)) is cls
    assert pickle.loads(pickle.dumps(compute_score)) is compute_score


def _video_expected(scorer, frames, answer: str) -> float:
    return scorer.score(
        [
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "Watch: "},
                            {"type": "video", "video": frames},
                            {"type": "text", "text": " What moves?"},
                        ],
                    },
                    {"role": "assistant", "content": answer},
                ]
            }
        ]
    )[0].score


def test_compute_score_scores_a_video_placeholder_with_its_frames(served, scorer):
    frames = [noise_png(10 + i) for i in range(4)]
    info = {"prompt": "Watch: <video> What moves?", "videos": [frames]}
    out = _call(data_source="d", solution_str="The ball.", ground_truth=None, extra_info=info, url=URL)
    text_only = scorer.score([{"prompt": "Watch: <video> What moves?", "response": "The ball."}])[0].score
    expected = _video_expected(scorer, frames, "The ball.")
    assert out["rm_error"] == 0.0, out["error"]
    assert out["score"] == pytest.approx(expected, abs=1e-6)
    assert abs(out["score"] - text_only) > 1e-4  # not the placeholder scored as text


def test_compute_score_video_placeholder_without_a_video_is_a_per_sample_error(served):
    out = _call(
        data_source="d",
        solution_str="x",
        ground_truth=None,
        extra_info={"prompt": "Watch: <video> What moves?"},
        url=URL,
    )
    assert set(out) == BASE_KEYS
    assert out["rm_error"] == 1.0 and out["error"].startswith("invalid_sample: ")
    assert "<video>" in out["error"]


def test_manager_messages_carry_video_frames_json_safe():
    frames = [pil_noise(1), pil_noise(2)]
    wired = vadapter._messages_for_wire(
        [
            {
                "role": "user",
                "content": [{"type": "video", "video": frames, "fps": 2.0}, {"type": "text", "text": "?"}],
            }
        ],
        {},
    )
    video = wired[0]["content"][0]
    assert video["type"] == "video" and video["fps"] == 2.0
    assert all(isinstance(f, str) and f.startswith("data:image/png;base64,") for f in video["video"])


@pytest.fixture
def no_mathruler(monkeypatch):
    """As if mathruler were not installed: importing it (and verl's geo3k rule) raises ImportError."""
    import sys

    for mod in ("mathruler", "mathruler.grader"):
        monkeypatch.setitem(sys.modules, mod, None)
    import verl.utils.reward_score as rs

    monkeypatch.delitem(sys.modules, "verl.utils.reward_score.geo3k", raising=False)
    monkeypatch.delattr(rs, "geo3k", raising=False)  # `from . import geo3k` would reuse it


GEO3K = "hiyouga/geometry3k"


def test_geo3k_rule_runs_with_the_verl_extra_installed():
    from verl.utils.reward_score import default_compute_score

    vadapter.check_rules(default_compute_score, {GEO3K})  # mathruler is in rlreward[verl]
    right = default_compute_score(GEO3K, "<think>x</think> \\boxed{4}", "4")
    assert right > default_compute_score(GEO3K, "<think>x</think> \\boxed{5}", "4")


def test_manager_with_a_rule_whose_package_is_missing_fails_at_startup(tiny_model_dir, no_mathruler):
    from transformers import AutoTokenizer
    from verl.trainer.ppo.reward import load_reward_manager

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    kwargs = {"url": URL, "rule_weight": 1.0, "rule_data_sources": [GEO3K]}
    with pytest.raises(vadapter.RuleUnavailableError, match="mathruler"):
        load_reward_manager(_verl_config(tiny_model_dir, kwargs), tok)
    with pytest.raises(vadapter.RuleUnavailableError, match="no rule reward"):
        load_reward_manager(_verl_config(tiny_model_dir, {**kwargs, "rule_data_sources": ["my/own"]}), tok)
    load_reward_manager(_verl_config(tiny_model_dir, {"url": URL}), tok)  # no rule: nothing to check


def test_manager_reads_the_data_sources_to_check_from_the_train_files(tiny_model_dir, no_mathruler, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer
    from verl.trainer.ppo.reward import load_reward_manager

    pq.write_table(pa.table({"data_source": [GEO3K, GEO3K], "x": [1, 2]}), tmp_path / "train.parquet")
    cfg = _verl_config(tiny_model_dir, {"url": URL, "rule_weight": 1.0})
    cfg.data = {"train_files": [str(tmp_path / "train.parquet")], "val_files": None}
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    with pytest.raises(vadapter.RuleUnavailableError, match="mathruler"):
        load_reward_manager(cfg, tok)


def test_a_row_whose_rule_cannot_run_raises_instead_of_scoring_0(served, tiny_model_dir, no_mathruler):
    from transformers import AutoTokenizer
    from verl.trainer.ppo.reward import load_reward_manager

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    manager = load_reward_manager(_verl_config(tiny_model_dir, {"url": URL, "rule_weight": 1.0}), tok)
    with pytest.raises(vadapter.RuleUnavailableError, match="mathruler"):
        asyncio.run(manager.run_single(_row(tok, pil_noise(9), "\\boxed{4}", data_source=GEO3K)))
