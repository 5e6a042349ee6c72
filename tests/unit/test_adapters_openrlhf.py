"""OpenRLHF adapter on real inputs: queries built as OpenRLHF builds them (the policy's processor
expands the image pads, then ``decode(skip_special_tokens=False)``), scored by the real scorer."""

from __future__ import annotations

import asyncio
import json
import math

import pytest

from rlreward.adapters import openrlhf as orl
from rlreward.adapters._common import ClientHolder, ClientSpec
from rlreward.adapters.openrlhf import OpenRLHFOptions
from rlreward.protocols.openrlhf import (
    CONNECTION_KEYS,
    GetRewardOptions,
    get_reward_endpoint,
    parse_label,
    parse_query,
)
from rlreward.rewards import RewardComposition
from tests.conftest import data_uri
from tests.unit.test_adapters_common import LocalFactory, LocalScorerClient, dead_factory, pil_noise

QUESTION = "What colour is the shape?"


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


def openrlhf_query(processor, image, response: str, question: str = QUESTION) -> tuple[str, str]:
    """(query, prompt) exactly as SingleTurnAgentExecutor makes them for a VLM policy."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt_ids = processor(text=[prompt], images=[image], add_special_tokens=False)["input_ids"][0]
    action_ids = processor.tokenizer(response + "<|im_end|>", add_special_tokens=False)["input_ids"]
    query = processor.tokenizer.decode(list(prompt_ids) + action_ids, skip_special_tokens=False)
    return query, prompt


def _score_fn(model_dir):
    client = LocalScorerClient(model_dir)

    async def score(samples):
        return await asyncio.to_thread(client.score, samples)

    return score


def _expected(scorer, image_ref, response, question=QUESTION):
    sample = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image", "image": image_ref}, {"type": "text", "text": question}],
            },
            {"role": "assistant", "content": response},
        ]
    }
    return scorer.score([sample])[0].score


def test_endpoint_scores_the_image_query_like_the_scorer(processor, tiny_model_dir, scorer):
    uri = data_uri("blue", (84, 56))
    query, prompt = openrlhf_query(processor, pil_noise(0).resize((84, 56)), "It is blue.")
    assert query.count("<|image_pad|>") > 1  # the processor really expanded the image
    out = asyncio.run(
        get_reward_endpoint(
            {"query": [query], "prompts": [prompt], "labels": [{"images": [uri]}]}, _score_fn(tiny_model_dir)
        )
    )
    expected = _expected(scorer, uri, "It is blue.")
    assert out["rewards"] == pytest.approx([expected], abs=1e-6) and out["scores"] == out["rewards"]
    assert out["extra_logs"] == {"rm_score": out["rewards"], "rm_error": [0.0]}


def test_the_image_from_the_label_changes_the_score(processor, tiny_model_dir):
    query, prompt = openrlhf_query(processor, pil_noise(0), "It is blue.")
    payload = {
        "query": [query] * 2,
        "prompts": [prompt] * 2,
        "labels": [{"images": [data_uri("blue")]}, json.dumps({"images": [data_uri("red")]})],
    }
    out = asyncio.run(get_reward_endpoint(payload, _score_fn(tiny_model_dir)))
    assert out["extra_logs"]["rm_error"] == [0.0, 0.0]
    assert out["rewards"][0] != pytest.approx(out["rewards"][1])


def test_empty_query_list_gives_empty_numeric_lists(tiny_model_dir):
    out = asyncio.run(
        get_reward_endpoint({"query": [], "prompts": [], "labels": []}, _score_fn(tiny_model_dir))
    )
    assert out == {"rewards": [], "scores": [], "extra_logs": {"rm_score": [], "rm_error": []}}


def test_failed_samples_get_the_fallback_and_an_error_flag(processor, tiny_model_dir, scorer):
    good, prompt = openrlhf_query(processor, pil_noise(1), "It is red.")
    options = OpenRLHFOptions(fallback_reward=-2.5)
    payload = {
        "query": [good, good, good, "no template at all"],
        "prompts": [prompt, prompt, prompt, None],
        "labels": [{"images": [data_uri("red")]}, {}, {"images": ["/etc/passwd"]}, ""],
    }
    out = asyncio.run(get_reward_endpoint(payload, _score_fn(tiny_model_dir), options))
    assert out["rewards"][0] == pytest.approx(_expected(scorer, data_uri("red"), "It is red."), abs=1e-6)
    assert out["rewards"][1:] == [-2.5, -2.5, -2.5]  # no image in label, path refused, no response found
    assert out["extra_logs"]["rm_error"] == [0.0, 1.0, 1.0, 1.0]
    assert all(isinstance(v, float) for col in out["extra_logs"].values() for v in col)


def test_failing_score_fn_gives_the_fallback_for_all():
    async def broken(samples):
        raise RuntimeError("503 overloaded")

    out = asyncio.run(
        get_reward_endpoint(
            {"query": ["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>"]},
            broken,
            OpenRLHFOptions(fallback_reward=-1.0),
        )
    )
    assert out == {"rewards": [-1.0], "scores": [-1.0], "extra_logs": {"rm_score": [-1.0], "rm_error": [1.0]}}


def test_malformed_payload_is_a_value_error():
    with pytest.raises(ValueError, match="query"):
        asyncio.run(get_reward_endpoint(["not", "an", "object"], _score_fn("unused")))


def test_composition_and_accuracy_scores_for_dynamic_filtering(tiny_model_dir):
    q = "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>add</think> \\boxed{4}<|im_end|>"
    options = OpenRLHFOptions(composition=RewardComposition(model=1.0, accuracy=1.0), scores="accuracy")
    plain = asyncio.run(get_reward_endpoint({"query": [q]}, _score_fn(tiny_model_dir)))
    out = asyncio.run(
        get_reward_endpoint(
            {"query": [q, q], "labels": ["4", {"answer": "5"}]}, _score_fn(tiny_model_dir), options
        )
    )
    assert out["rewards"] == pytest.approx([plain["rewards"][0] + 1.0, plain["rewards"][0]], abs=1e-6)
    assert out["scores"] == [1.0, 0.0] and out["extra_logs"]["accuracy"] == [1.0, 0.0]


def test_sigmoid_scores_stay_in_unit_interval(tiny_model_dir):
    q = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>"
    out = asyncio.run(
        get_reward_endpoint({"query": [q]}, _score_fn(tiny_model_dir), OpenRLHFOptions(scores="sigmoid"))
    )
    assert out["scores"][0] == pytest.approx(1 / (1 + math.exp(-out["rewards"][0])))


def test_parse_query_collapses_pads_and_strips_policy_tokens():
    q = (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n<|vision_start|>"
        + "<|image_pad|>" * 64
        + "<|vision_end|><|vision_start|>"
        + "<|image_pad|>" * 9
        + "<|vision_end|>Compare.<|im_end|>\n"
        "<|im_start|>assistant\nThe left one.<|im_end|><|endoftext|>"
    )
    messages, response = parse_query(q, None)
    assert response == "The left one."
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "image", "image": None},
                {"type": "image", "image": None},
                {"type": "text", "text": "Compare."},
            ],
        },
    ]
    # Not a chat template: one user turn, the response after the given prompt.
    assert parse_query("Q: 2+2? A: 4</s>", "Q: 2+2? A:") == (
        [{"role": "user", "content": [{"type": "text", "text": "Q: 2+2? A:"}]}],
        "4",
    )


def test_parse_label_forms():
    assert parse_label({"images": ["a.png"], "answer": "3"}) == (["a.png"], "3")
    assert parse_label('{"images": ["a.png"], "ground_truth": 3}') == (["a.png"], 3)
    assert (
        parse_label("42") == ([], "42") and parse_label(None) == ([], None) and parse_label("") == ([], None)
    )


def test_reward_func_file_form_with_a_sync_client(processor, tiny_model_dir, scorer, monkeypatch):
    monkeypatch.setenv(
        "RLREWARD_OPENRLHF", json.dumps({"url": "http://rm.test:8000", "fallback_reward": -3.0})
    )
    local, asked = ClientHolder(factory=LocalFactory(tiny_model_dir)), []
    monkeypatch.setattr(orl, "_holder", lambda opts: asked.append(opts) or local)
    query, prompt = openrlhf_query(processor, pil_noise(2), "A square.")
    out = orl.reward_func([query], [prompt], [{"images": [data_uri("green")]}])
    assert out["rewards"] == pytest.approx([_expected(scorer, data_uri("green"), "A square.")], abs=1e-6)
    assert asked == [OpenRLHFOptions.from_env()] and asked[0].url == "http://rm.test:8000"
    dead = ClientHolder(factory=dead_factory)
    monkeypatch.setattr(orl, "_holder", lambda opts: dead)
    down = orl.reward_func([query], [prompt], [{"images": [data_uri("green")]}])
    assert down["rewards"] == [-3.0] and down["extra_logs"]["rm_error"] == [1.0]


def test_bad_options_json_says_what_is_wrong(monkeypatch):
    monkeypatch.setenv("RLREWARD_OPENRLHF", '{"fallback": 1}')
    with pytest.raises(ValueError, match="RLREWARD_OPENRLHF"):
        OpenRLHFOptions.from_env()


def test_the_servers_options_skip_exactly_the_trainers_connection_keys(monkeypatch):
    """``/get_reward`` reads the same ``$RLREWARD_OPENRLHF`` as the trainer side: it drops the connection
    keys (every ClientSpec field and alias) and still refuses any other unknown key."""
    spec = set(ClientSpec.model_fields) | {"options"}  # client_options' alias
    assert set(CONNECTION_KEYS) == spec
    monkeypatch.setenv("RLREWARD_OPENRLHF", json.dumps({"url": "http://rm:8000", "fallback_reward": -2.0}))
    assert GetRewardOptions.from_env().fallback_reward == -2.0
    assert OpenRLHFOptions.from_env().url == "http://rm:8000"
    monkeypatch.setenv("RLREWARD_OPENRLHF", '{"fallback": 1}')
    with pytest.raises(ValueError, match="RLREWARD_OPENRLHF"):
        GetRewardOptions.from_env()
