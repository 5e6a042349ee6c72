"""vLLM's /classify, /pooling, /score over rlreward's scoring (rlreward.protocols.vllm), no Ray.

The scoring call is a fake that records the samples it was given and returns chosen rewards; values
are checked against a sigmoid written out here, shapes against vLLM's protocol."""

from __future__ import annotations

import asyncio
import base64
import math
import struct
from typing import Any

import pytest

from rlreward.protocols import vllm as vllm_api
from rlreward.protocols.vllm import VllmContext, VllmError
from rlreward.schema import ErrorCode, ScoreResult

CTX = VllmContext(model_name="skywork-rm", max_samples=8, request_id="req-1")


class FakeScore:
    """Returns ``rewards[i]`` (a float, or an ErrorCode for an error) and ``10 + i`` tokens per sample."""

    def __init__(self, rewards: list[Any]) -> None:
        self.rewards = rewards
        self.samples: list[dict[str, Any]] = []

    async def __call__(self, samples: list[dict[str, Any]]) -> tuple[list[ScoreResult], list[int]]:
        self.samples = samples
        out = [
            ScoreResult.failed(r, f"sample {i} is bad") if isinstance(r, ErrorCode) else ScoreResult(score=r)
            for i, r in zip(range(len(samples)), self.rewards)
        ]
        return out, [10 + i for i in range(len(samples))]


def run(route, payload: Any, rewards: list[Any], ctx: VllmContext = CTX) -> tuple[dict[str, Any], FakeScore]:
    fake = FakeScore(rewards)
    return asyncio.run(route(payload, ctx, fake)), fake


def fails(route, payload: Any, rewards: list[Any] | None = None, ctx: VllmContext = CTX) -> VllmError:
    with pytest.raises(VllmError) as info:
        run(route, payload, rewards or [0.0] * 8, ctx)
    return info.value


def logistic(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# -- /classify ------------------------------------------------------------------------------------------
def test_classify_input_string_is_scored_as_rendered_text_and_verl_reads_the_raw_reward():
    answer, fake = run(
        vllm_api.classify, {"model": "skywork-rm", "input": "<|im_start|>…", "use_activation": False}, [2.5]
    )
    assert fake.samples == [{"rendered_text": "<|im_start|>…", "add_special_tokens": True}]
    assert answer["data"][-1]["probs"][-1] == 2.5  # what verl's compute_score_disrm reads
    assert answer["object"] == "list" and answer["model"] == "skywork-rm"
    assert answer["id"] == "classify-req-1" and isinstance(answer["created"], int)
    assert answer["data"] == [{"index": 0, "label": None, "probs": [2.5], "num_classes": 1}]
    assert answer["usage"] == {
        "prompt_tokens": 10,
        "total_tokens": 10,
        "completion_tokens": 0,
        "prompt_tokens_details": None,
    }


@pytest.mark.parametrize("use_activation", [True, None])
def test_classify_activation_true_or_unset_is_the_sigmoid_of_the_reward(use_activation):
    body = {"input": ["a", "b", "c"], **({} if use_activation is None else {"use_activation": True})}
    answer, _ = run(vllm_api.classify, body, [2.0, -3.0, 0.0])
    assert [d["probs"][0] for d in answer["data"]] == pytest.approx([logistic(2.0), logistic(-3.0), 0.5])
    assert [d["index"] for d in answer["data"]] == [0, 1, 2]
    assert answer["usage"]["prompt_tokens"] == 10 + 11 + 12


def test_classify_messages_are_one_conversation_with_its_content_parts_untouched():
    messages = [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}],
        },
        {"role": "assistant", "content": "red"},
    ]
    answer, fake = run(vllm_api.classify, {"messages": messages, "use_activation": False}, [-1.25])
    assert fake.samples == [{"messages": messages}]
    assert answer["data"] == [{"index": 0, "label": None, "probs": [-1.25], "num_classes": 1}]


def test_classify_add_special_tokens_reaches_the_rendered_text_sample():
    _, fake = run(vllm_api.classify, {"input": "x", "add_special_tokens": False}, [0.0])
    assert fake.samples == [{"rendered_text": "x", "add_special_tokens": False}]


def test_a_bad_input_fails_the_request_with_400_naming_its_index_and_reason():
    err = fails(vllm_api.classify, {"input": ["a", "b", "c"]}, [1.0, ErrorCode.IMAGE_DECODE, 2.0])
    assert err.status == 400
    assert err.body() == {
        "error": {
            "message": "input[1]: image_decode_error: sample 1 is bad",
            "type": "BadRequestError",
            "param": "input",
            "code": 400,
        }
    }


def test_only_model_failures_answer_500_and_messages_are_named_without_an_index():
    err = fails(vllm_api.classify, {"messages": [{"role": "user", "content": "x"}]}, [ErrorCode.INTERNAL])
    assert err.status == 500 and err.type == "InternalServerError"
    assert err.message == "messages: internal_error: sample 0 is bad"


def test_unknown_model_is_404_and_no_model_means_the_served_one():
    err = fails(vllm_api.classify, {"model": "other", "input": "x"})
    assert err.body() == {
        "error": {
            "message": "The model `other` does not exist.",
            "type": "NotFoundError",
            "param": "model",
            "code": 404,
        }
    }
    answer, _ = run(vllm_api.classify, {"input": "x"}, [0.0])
    assert answer["model"] == "skywork-rm"


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"input": 5}, "body.input", "validation error"),
        ({}, "input", "exactly one of"),
        ({"input": "x", "messages": []}, "input", "exactly one of"),
        ({"input": []}, "input", "at least one prompt"),
        ({"input": [1, 2, 3]}, "input", "token-id inputs"),
        ({"input": "x", "normalize": True}, "normalize", "use `use_activation`"),
        ({"input": "x", "priority": 3}, "priority", "priority"),
        ({"input": "x", "truncate_prompt_tokens": 16}, "truncate_prompt_tokens", "truncated"),
        ({"input": "x", "padding": "max_length"}, "padding", "max_length"),
        ({"input": "x", "mm_processor_kwargs": {"max_pixels": 100}}, "mm_processor_kwargs", "per request"),
        ({"messages": [], "add_generation_prompt": True}, "add_generation_prompt", "must be false"),
        ({"messages": [], "chat_template": "{{x}}"}, "chat_template", "own chat template"),
    ],
)
def test_malformed_or_unsupported_bodies_are_400_naming_the_parameter(body, param, words):
    err = fails(vllm_api.classify, body)
    assert err.status == 400 and err.body()["error"]["code"] == 400
    assert err.param == param
    assert words.lower() in err.message.lower()


def test_accepted_vllm_fields_that_change_nothing():
    body = {"input": "x", "truncate_prompt_tokens": -1, "user": "u", "cache_salt": "s", "softmax": True}
    answer, _ = run(vllm_api.classify, body, [1.0])
    assert answer["data"][0]["probs"] == [pytest.approx(logistic(1.0))]


def test_more_inputs_than_the_request_limit_is_413():
    err = fails(vllm_api.classify, {"input": ["x"] * 9})
    assert err.status == 413 and err.param == "input" and "max_samples_per_request" in err.message


# -- /pooling ---------------------------------------------------------------------------------------------
def test_pooling_returns_the_reward_as_the_pooled_value():
    answer, fake = run(vllm_api.pooling, {"input": ["a", "b"], "use_activation": False}, [0.75, -4.0])
    assert answer["id"] == "pooling-req-1"
    assert answer["data"] == [
        {"index": 0, "object": "pooling", "data": [0.75]},
        {"index": 1, "object": "pooling", "data": [-4.0]},
    ]
    assert fake.samples[1] == {"rendered_text": "b", "add_special_tokens": True}
    answer, _ = run(vllm_api.pooling, {"input": "a"}, [0.75])  # vLLM's classify default: sigmoid
    assert answer["data"][0]["data"] == [pytest.approx(logistic(0.75))]


@pytest.mark.parametrize(("dtype", "fmt"), [("float32", "<f"), ("float16", "<e")])
def test_pooling_base64_packs_the_value_as_embed_dtype(dtype, fmt):
    body = {
        "input": "a",
        "use_activation": False,
        "encoding_format": "base64",
        "embed_dtype": dtype,
        "endianness": "little",
    }
    answer, _ = run(vllm_api.pooling, body, [1.5])
    (value,) = struct.unpack(fmt, base64.b64decode(answer["data"][0]["data"]))
    assert value == 1.5


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"task": "embed"}, "task"),
        ({"task": "token_classify"}, "task"),
        ({"dimensions": 8}, "dimensions"),
        ({"encoding_format": "bytes"}, "encoding_format"),
        ({"encoding_format": "base64", "embed_dtype": "bfloat16"}, "embed_dtype"),
    ],
)
def test_pooling_options_this_model_cannot_honour_are_400(extra, param):
    err = fails(vllm_api.pooling, {"input": "a", **extra})
    assert err.status == 400 and err.param == param


def test_pooling_task_classify_is_accepted():
    answer, _ = run(vllm_api.pooling, {"input": "a", "task": "classify", "use_activation": False}, [3.0])
    assert answer["data"][0]["data"] == [3.0]


# -- /score -----------------------------------------------------------------------------------------------
def test_score_one_query_many_documents_is_one_conversation_per_document():
    body = {"queries": "2+2?", "documents": ["4", "5"], "use_activation": False}
    answer, fake = run(vllm_api.score_pairs, body, [3.0, -2.0])
    assert fake.samples == [
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}]},
    ]
    assert answer["id"] == "score-req-1"
    assert answer["data"] == [
        {"index": 0, "object": "score", "score": 3.0},
        {"index": 1, "object": "score", "score": -2.0},
    ]
    assert answer["usage"]["prompt_tokens"] == 21


def test_score_pairs_n_to_n_with_image_content_and_the_other_field_spellings():
    parts = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
        {"type": "text", "text": "?"},
    ]
    for a, b in (("data_1", "data_2"), ("text_1", "text_2"), ("queries", "items")):
        body = {a: [{"content": parts}, "q2"], b: ["x", {"content": [{"type": "text", "text": "y"}]}]}
        answer, fake = run(vllm_api.score_pairs, body, [0.0, 1.0])
        assert [s["messages"][0]["content"] for s in fake.samples] == [parts, "q2"]
        assert [s["messages"][1]["content"] for s in fake.samples] == ["x", [{"type": "text", "text": "y"}]]
        assert [d["score"] for d in answer["data"]] == pytest.approx([0.5, logistic(1.0)])


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"queries": ["a", "b"], "documents": ["x", "y", "z"]}, "1:1, 1:N or N:N"),
        ({"queries": [], "documents": ["x"]}, "at least one text element"),
        ({"queries": "a", "documents": []}, "at least one text_pair"),
        ({"queries": "a"}, "send queries + documents"),
        ({"queries": "a", "documents": [{"parts": []}]}, "{'content': [parts]}"),
        ({"queries": "a", "documents": "x", "max_tokens_per_doc": 4}, "truncated"),
        ({"queries": "a", "documents": "x", "instruction": "be strict"}, "system turn"),
    ],
)
def test_score_bad_bodies_are_400(body, words):
    err = fails(vllm_api.score_pairs, body)
    assert err.status == 400 and words.lower() in err.message.lower()


def test_score_a_bad_document_is_named_by_its_index():
    err = fails(vllm_api.score_pairs, {"queries": "q", "documents": ["a", "b"]}, [0.0, ErrorCode.BAD_CONTENT])
    assert err.status == 400 and err.param == "documents"
    assert err.message == "documents[1]: bad_content: sample 1 is bad"


# -- plumbing -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("header", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_only_json_bodies_are_accepted(header):
    with pytest.raises(VllmError) as info:
        vllm_api.check_content_type(header)
    assert info.value.status == 400 and "application/json" in info.value.message


def test_json_with_a_charset_is_json():
    vllm_api.check_content_type("application/json; charset=utf-8")


def test_rlreward_request_failures_keep_their_status_in_vllms_shape():
    assert vllm_api.from_http_error(422, "body is not valid JSON").body()["error"] == {
        "message": "body is not valid JSON",
        "type": "Bad Request",
        "param": None,
        "code": 400,
    }
    busy = vllm_api.from_http_error(503, "replicas overloaded", 2.0)
    assert busy.status == 503 and busy.retry_after_s == 2.0
    assert busy.body()["error"]["type"] == "Service Unavailable"
    assert vllm_api.from_http_error(401, "wrong API token").body()["error"]["code"] == 401


def test_model_card_has_vllms_fields():
    card = vllm_api.model_card("skywork-rm", 16384)
    assert list(card)[:8] == [
        "id",
        "object",
        "created",
        "owned_by",
        "root",
        "parent",
        "max_model_len",
        "permission",
    ]
    assert card["object"] == "model" and card["max_model_len"] == 16384 and card["root"] == "skywork-rm"
    assert card["permission"][0]["object"] == "model_permission"


def test_sigmoid_is_the_logistic_function_without_overflow():
    assert vllm_api.sigmoid(0.0) == 0.5
    assert vllm_api.sigmoid(3.0) == pytest.approx(logistic(3.0), abs=1e-15)
    assert vllm_api.sigmoid(-3.0) == pytest.approx(logistic(-3.0), abs=1e-15)
    assert vllm_api.sigmoid(1000.0) == 1.0 and vllm_api.sigmoid(-1000.0) == 0.0


@pytest.mark.parametrize(
    ("requested", "served", "same"),
    [
        ("skywork-rm", "skywork-rm", True),
        ("/ckpt/Skywork-VL-Reward-7B", "Skywork-VL-Reward-7B", True),  # verl sends its model_path
        ("/ckpt/Skywork-VL-Reward-7B/", "Skywork/Skywork-VL-Reward-7B", True),
        ("Skywork/Skywork-VL-Reward-7B", "Skywork/Skywork-VL-Reward-7B", True),
        ("/ckpt/other-rm", "Skywork-VL-Reward-7B", False),
        ("Skywork-VL-Reward", "Skywork-VL-Reward-7B", False),
        ("/", "x", False),
    ],
)
def test_a_model_named_by_path_matches_by_its_last_component(requested, served, same):
    assert vllm_api.model_matches(requested, served) is same


# -- /rerank ----------------------------------------------------------------------------------------------------
def test_rerank_ranks_the_candidates_by_reward_best_first():
    image_query = {"content": [{"type": "image_url", "image_url": "data:image/png;base64,AA"}, "Describe."]}
    docs = ["noise", {"content": [{"type": "text", "text": "a cat"}]}, "static"]
    answer, fake = run(vllm_api.rerank, {"query": image_query, "documents": docs}, [0.5, 2.0, -1.0])
    assert [s["messages"][0]["content"] for s in fake.samples] == [image_query["content"]] * 3
    assert [s["messages"][1]["content"] for s in fake.samples] == [
        "noise",
        [{"type": "text", "text": "a cat"}],
        "static",
    ]
    assert answer["id"] == "rerank-req-1" and answer["model"] == "skywork-rm"
    assert answer["usage"] == {"prompt_tokens": 33, "total_tokens": 33}
    assert [r["index"] for r in answer["results"]] == [1, 0, 2]
    assert [r["relevance_score"] for r in answer["results"]] == pytest.approx(
        [logistic(2.0), logistic(0.5), logistic(-1.0)]
    )
    assert answer["results"][0]["document"] == {
        "text": None,
        "multi_modal": [{"type": "text", "text": "a cat"}],
    }
    assert answer["results"][1]["document"] == {"text": "noise", "multi_modal": None}


def test_rerank_top_n_keeps_the_best_and_raw_values_on_request():
    body = {"query": "2+2?", "documents": ["3", "4", "5"], "top_n": 1, "use_activation": False}
    answer, _ = run(vllm_api.rerank, body, [-1.0, 3.0, 0.0])
    assert answer["results"] == [
        {"index": 1, "document": {"text": "4", "multi_modal": None}, "relevance_score": 3.0}
    ]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"query": "q", "documents": []}, 400),
        ({"documents": ["a"]}, 400),
        ({"query": "q", "documents": ["a"], "top_n": -1}, 400),
        ({"query": "q", "documents": ["a"], "model": "other"}, 404),
    ],
)
def test_rerank_bad_bodies(body, status):
    assert fails(vllm_api.rerank, body).status == status
