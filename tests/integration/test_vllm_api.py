"""Clients written for vLLM's reward-model API work unchanged against the real served app.

* verl 0.9.1's own ``RewardLoopWorker`` (built by its real ``__init__`` from verl's Hydra config with
  ``reward.reward_model.enable=True``; only the router address is this server's) runs
  ``compute_score`` → ``compute_score_disrm`` → ``_post_request("classify")`` and reads
  ``data[-1].probs[-1]``;
* ``httpx`` and the ``openai`` package post vLLM-shaped bodies to ``/classify``, ``/v1/classify``,
  ``/pooling`` and ``/score``.

Every value is compared with ``POST /v1/score`` for the same conversation (text and images), and the
``use_activation`` values with a sigmoid written out here. Batches form across requests, so fp32
values are compared to 1e-5 (the README's bound), not bit for bit.
"""

from __future__ import annotations

import asyncio
import math
import os

import httpx
import numpy as np
import pytest

from rlreward.client import RewardClient
from tests.conftest import data_uri, noise_png

TOL = 1e-5


def _uri(seed: int) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(noise_png(seed)).decode()


def _v1_score(url: str, samples: list[dict]) -> list[float]:
    r = httpx.post(url + "/v1/score", json={"samples": samples}, timeout=120)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert all(res["error"] is None for res in results), results
    return [res["score"] for res in results]


def _post(url: str, path: str, body: dict, **kw) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=120, **kw)


def _logistic(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _render(tokenizer, messages: list[dict]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)


# -- verl's own reward-loop client ----------------------------------------------------------------------------
def _verl_worker(tiny_model_dir: str, address: str):
    """verl's RewardLoopWorker from verl's own config: the RM is enabled and served by vLLM, as verl
    launches it, from the checkpoint directory (verl sends that path as ``model``); the router address
    (host:port) is the only thing that is ours."""
    import verl
    from hydra import compose, initialize_config_dir
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    with initialize_config_dir(
        config_dir=os.path.join(os.path.dirname(verl.__file__), "trainer/config"), version_base=None
    ):
        cfg = compose(
            config_name="ppo_trainer",
            overrides=[
                f"actor_rollout_ref.model.path={tiny_model_dir}",
                "reward.reward_model.enable=True",
                f"reward.reward_model.model_path={tiny_model_dir}",
                "reward.reward_model.rollout.name=vllm",
            ],
        )
    return RewardLoopWorker(cfg, address)


def _verl_item(tokenizer, raw_prompt: list[dict], response: str):
    """One trajectory as verl's agent loop hands it to the reward loop (raw_prompt, responses, mask)."""
    import torch
    from tensordict import TensorDict
    from verl import DataProto

    prompt_ids = torch.tensor(tokenizer(_render(tokenizer, raw_prompt[:1]))["input_ids"])
    response_ids = torch.tensor(tokenizer(response + tokenizer.eos_token)["input_ids"])
    raw = np.empty(1, dtype=object)
    raw[0] = raw_prompt
    mask = torch.ones(1, len(prompt_ids) + len(response_ids), dtype=torch.long)
    tensors = TensorDict(
        {"prompts": prompt_ids[None], "responses": response_ids[None], "attention_mask": mask}, batch_size=1
    )
    return DataProto(batch=tensors, non_tensor_batch={"raw_prompt": raw})


def test_verl_reward_loop_worker_scores_through_classify_unchanged(serve_app, tiny_model_dir, tokenizer):
    address = serve_app.url.removeprefix("http://")
    worker = _verl_worker(tiny_model_dir, address)
    prompt = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is 2+2?"}]
    responses = ["The answer is 4.", "It is 5, I think."]

    async def run() -> list[dict]:
        items = [_verl_item(tokenizer, prompt, r) for r in responses]
        return await asyncio.gather(*(worker.compute_score(item) for item in items))

    got = [out["reward_score"] for out in asyncio.run(run())]
    want = _v1_score(
        serve_app.url, [{"messages": [*prompt, {"role": "assistant", "content": r}]} for r in responses]
    )
    assert got == pytest.approx(want, abs=TOL)
    assert abs(want[0] - want[1]) > 10 * TOL  # the two answers are told apart


def test_verl_with_an_image_prompt_gets_a_400_not_a_text_only_reward(serve_app, tiny_model_dir, tokenizer):
    import aiohttp

    worker = _verl_worker(tiny_model_dir, serve_app.url.removeprefix("http://"))
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]}]
    with pytest.raises(aiohttp.ClientResponseError) as info:  # verl does not retry a 4xx
        asyncio.run(worker.compute_score(_verl_item(tokenizer, prompt, "Blue.")))
    assert info.value.status == 400
    # The same body by hand: the message says how to send the image.
    text = _render(tokenizer, [*prompt, {"role": "assistant", "content": "Blue."}])
    r = _post(serve_app.url, "/classify", {"model": serve_app.config.served_model_name, "input": text})
    err = r.json()["error"]
    assert r.status_code == 400 and err["code"] == 400 and err["param"] == "input"
    assert "<|image_pad|>" in err["message"] and "image_url" in err["message"]


# -- httpx with vLLM-shaped bodies --------------------------------------------------------------------------------
CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
    [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Teal, obviously."}],
]


def test_classify_input_strings_equal_v1_score_raw_and_sigmoid(serve_app, tokenizer):
    want = _v1_score(serve_app.url, [{"messages": m} for m in CONVERSATIONS])
    texts = [_render(tokenizer, m) for m in CONVERSATIONS]
    for path in ("/classify", "/v1/classify"):
        r = _post(
            serve_app.url, path, {"input": texts, "use_activation": False}, headers={"X-Request-Id": "abc"}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["id"] == "classify-abc" and body["object"] == "list"
        assert body["model"] == serve_app.config.served_model_name
        assert [d["index"] for d in body["data"]] == [0, 1]
        assert [d["num_classes"] for d in body["data"]] == [1, 1]
        assert [d["probs"][0] for d in body["data"]] == pytest.approx(want, abs=TOL)
        n_tokens = sum(len(tokenizer(t)["input_ids"]) for t in texts)
        assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] == n_tokens
    for activation in ({"use_activation": True}, {}):  # unset: vLLM's one-label default, the sigmoid
        r = _post(serve_app.url, "/classify", {"input": texts[0], **activation})
        assert r.json()["data"][0]["probs"] == [pytest.approx(_logistic(want[0]), abs=TOL)]


def _image_conversation(seed: int, answer: str, openai: bool = True) -> list[dict]:
    image = (
        {"type": "image_url", "image_url": {"url": _uri(seed)}}
        if openai
        else {"type": "image", "image": _uri(seed)}
    )
    text = {"type": "input_text" if openai else "text", "text": "Describe the picture."}
    return [{"role": "user", "content": [image, text]}, {"role": "assistant", "content": answer}]


def test_classify_and_pooling_messages_with_images_equal_v1_score(serve_app):
    answers = [(1, "Coloured noise."), (2, "A cat on a mat.")]
    want = _v1_score(
        serve_app.url, [{"messages": _image_conversation(s, a, openai=False)} for s, a in answers]
    )
    for (seed, answer), value in zip(answers, want):
        body = {"messages": _image_conversation(seed, answer), "use_activation": False}
        r = _post(serve_app.url, "/classify", body)
        assert r.status_code == 200, r.text
        assert r.json()["data"] == [
            {"index": 0, "label": None, "probs": [pytest.approx(value, abs=TOL)], "num_classes": 1}
        ]
        assert r.json()["usage"]["prompt_tokens"] > 20  # visual tokens counted
        r = _post(serve_app.url, "/pooling", body)
        assert r.status_code == 200, r.text
        assert r.json()["data"] == [
            {"index": 0, "object": "pooling", "data": [pytest.approx(value, abs=TOL)]}
        ]
    assert abs(want[0] - want[1]) > 10 * TOL


def test_score_and_rerank_query_with_an_image_and_candidate_answers_equal_v1_score(serve_app):
    query = {
        "content": [
            {"type": "image_url", "image_url": {"url": _uri(3)}},
            {"type": "text", "text": "Describe."},
        ]
    }
    docs = ["Noise.", "A dog.", "Static on a screen."]
    want = _v1_score(
        serve_app.url,
        [
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "image": _uri(3)},
                            {"type": "text", "text": "Describe."},
                        ],
                    },
                    {"role": "assistant", "content": d},
                ]
            }
            for d in docs
        ],
    )
    r = _post(serve_app.url, "/score", {"queries": query, "documents": docs, "use_activation": False})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(d["index"], d["object"]) for d in body["data"]] == [(0, "score"), (1, "score"), (2, "score")]
    assert [d["score"] for d in body["data"]] == pytest.approx(want, abs=TOL)
    r = _post(serve_app.url, "/score", {"data_1": query, "data_2": docs})  # default: sigmoid
    assert [d["score"] for d in r.json()["data"]] == pytest.approx([_logistic(x) for x in want], abs=TOL)
    for path in ("/rerank", "/v1/rerank", "/v2/rerank"):  # the same values, best first
        r = _post(
            serve_app.url, path, {"query": query, "documents": docs, "use_activation": False, "top_n": 2}
        )
        assert r.status_code == 200, r.text
        best = sorted(range(len(docs)), key=lambda i: want[i], reverse=True)[:2]
        assert [x["index"] for x in r.json()["results"]] == best
        assert [x["relevance_score"] for x in r.json()["results"]] == pytest.approx(
            [want[i] for i in best], abs=TOL
        )
        assert r.json()["results"][0]["document"] == {"text": docs[best[0]], "multi_modal": None}


# -- the openai package ----------------------------------------------------------------------------------------
def test_openai_client_post_reaches_classify_pooling_and_errors(serve_app, tokenizer):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=serve_app.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    name = serve_app.config.served_model_name
    want = _v1_score(serve_app.url, [{"messages": _image_conversation(4, "Noise.", openai=False)}])[0]
    body = {"model": name, "messages": _image_conversation(4, "Noise."), "use_activation": False}
    answer = client.post("/classify", body=body, cast_to=object)  # base_url + /classify = /v1/classify
    assert answer["data"][0]["probs"][0] == pytest.approx(want, abs=TOL)
    answer = client.post(serve_app.url + "/pooling", body=body, cast_to=object)
    assert answer["data"][0]["data"][0] == pytest.approx(want, abs=TOL)
    with pytest.raises(openai.NotFoundError) as info:
        client.post("/classify", body={**body, "model": "no-such-model"}, cast_to=object)
    assert info.value.status_code == 404
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/classify", body={"model": name, "input": ["fine", "<|image_pad|>"]}, cast_to=object)
    assert "input[1]: bad_content" in str(info.value)


# -- bad inputs ---------------------------------------------------------------------------------------------------
def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == status
    return err


def test_bad_inputs_get_vllms_error_body_with_the_index_and_reason(serve_app):
    url, name = serve_app.url, serve_app.config.served_model_name
    err = _error(_post(url, "/classify", {"model": "other", "input": "x"}), 404)
    assert err["type"] == "NotFoundError" and err["param"] == "model"
    err = _error(
        httpx.post(url + "/classify", content=b'{"input": "x"}', headers={"content-type": "text/plain"}), 400
    )
    assert "application/json" in err["message"]
    err = _error(
        httpx.post(url + "/classify", content=b"{not json", headers={"content-type": "application/json"}), 400
    )
    assert "JSON" in err["message"]
    err = _error(_post(url, "/classify", {"model": name, "input": 42}), 400)
    assert err["param"] == "body.input"
    broken = "data:image/png;base64," + "iVBORw0KGgo" * 4
    bad_image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": broken}}]}]
    err = _error(
        _post(url, "/classify", {"messages": [*bad_image, {"role": "assistant", "content": "x"}]}), 400
    )
    assert err["message"].startswith("messages: image_decode_error")
    remote = [
        {"type": "image_url", "image_url": {"url": "http://example.com/cat.png"}},
        {"type": "text", "text": "?"},
    ]
    err = _error(_post(url, "/score", {"queries": [{"content": remote}, "ok"], "documents": ["a", "b"]}), 400)
    assert err["message"].startswith("documents[0]: url_not_allowed") and "documents[1]" not in err["message"]
    audio = [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]
    err = _error(
        _post(
            url,
            "/pooling",
            {"messages": [{"role": "user", "content": audio}, {"role": "assistant", "content": "x"}]},
        ),
        400,
    )
    assert "'input_audio' is not supported" in err["message"]
    err = _error(_post(url, "/pooling", {"input": "x", "task": "embed"}), 400)
    assert err["param"] == "task"


def test_v1_models_is_vllms_model_list_with_rlreward_fields_kept(serve_app):
    body = httpx.get(serve_app.url + "/v1/models", timeout=30).json()
    assert body["object"] == "list"
    card = body["data"][0]
    for key in ("id", "object", "created", "owned_by", "root", "parent", "max_model_len", "permission"):
        assert key in card
    assert card["id"] == serve_app.config.served_model_name and card["object"] == "model"
    assert card["max_model_len"] == serve_app.config.scorer.limits.max_tokens
    assert card["permission"][0]["object"] == "model_permission"
    assert card["head_shape"] == [1, 64] and "limits" in card  # rlreward's own fields


def test_python_client_and_v1_score_accept_openai_content_parts(serve_app):
    frames = [data_uri("red"), data_uri("green")]
    openai_form = [
        {"messages": _image_conversation(5, "Noise.")},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "video_url", "video_url": {"url": frames}},
                        {"type": "text", "text": "Change?"},
                    ],
                },
                {"role": "assistant", "content": "Red to green."},
            ]
        },
    ]
    card_form = [
        {"messages": _image_conversation(5, "Noise.", openai=False)},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "video", "video": frames}, {"type": "text", "text": "Change?"}],
                },
                {"role": "assistant", "content": "Red to green."},
            ]
        },
    ]
    want = _v1_score(serve_app.url, card_form)
    assert _v1_score(serve_app.url, openai_form) == pytest.approx(want, abs=TOL)
    with RewardClient(url=serve_app.url) as client:
        got = client.score(openai_form)
    assert [r.score for r in got] == pytest.approx(want, abs=TOL)


def test_with_an_api_key_vllm_clients_send_it_as_openai_does_and_get_vllm_shaped_401_413(deploy_app):
    openai = pytest.importorskip("openai")
    app = deploy_app("vllmauth", **{"http.api_key": "s3cret-token", "http.max_samples_per_request": 2})
    body = {"input": "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n"}
    client = openai.OpenAI(base_url=app.url + "/v1", api_key="s3cret-token", max_retries=0, timeout=120)
    answer = client.post("/classify", body={**body, "use_activation": False}, cast_to=object)
    r = httpx.post(
        app.url + "/v1/score",
        json={"samples": [{"rendered_text": body["input"]}]},
        headers={"Authorization": "Bearer s3cret-token"},
        timeout=120,
    )
    assert answer["data"][0]["probs"][0] == pytest.approx(r.json()["results"][0]["score"], abs=TOL)
    with pytest.raises(openai.AuthenticationError) as info:
        openai.OpenAI(base_url=app.url + "/v1", api_key="wrong", max_retries=0).post(
            "/classify", body=body, cast_to=object
        )
    assert info.value.status_code == 401
    err = _error(_post(app.url, "/classify", body), 401)  # no token at all
    assert "Authorization" in err["message"]
    err = _error(
        _post(
            app.url, "/pooling", {"input": ["a", "b", "c"]}, headers={"Authorization": "Bearer s3cret-token"}
        ),
        413,
    )
    assert "max_samples_per_request" in err["message"]
