"""A text ``*ForSequenceClassification`` reward model (TRL's ``RewardTrainer`` layout) serves like
Skywork-VL-Reward: real Ray Serve, real HTTP, a real trainer adapter, the vLLM routes.

Every score is compared with the model's own Hugging Face forward at batch size 1, written here:
``AutoModelForSequenceClassification(**tokenizer.apply_chat_template(..., tokenize=True)).logits[0][0]``.
"""

from __future__ import annotations

import httpx
import pytest
import torch

from rlreward.offline.tiny_families import make_family

TOL = 1e-5
CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
    [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Teal, obviously."},
    ],
]


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory) -> str:
    return str(make_family(tmp_path_factory.mktemp("qwen3rm") / "ckpt", "qwen3-seqcls", seed=5))


@pytest.fixture(scope="module")
def reference(rm_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(rm_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(rm_dir)

    def score(messages: list[dict]) -> float:
        inputs = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")
        with torch.no_grad():
            return model(**inputs).logits[0][0].item()

    score.tokenizer = tokenizer  # type: ignore[attr-defined]
    return score


@pytest.fixture(scope="module")
def app(deploy_app, rm_dir):
    served = deploy_app("textrm", model=rm_dir, **{"scorer.batching.batch_wait_timeout_s": 0.05})
    yield served
    served.delete()


def test_v1_score_and_models_over_http(app, reference):
    r = httpx.post(
        app.url + "/v1/score", json={"samples": [{"messages": m} for m in CONVERSATIONS]}, timeout=120
    )
    assert r.status_code == 200, r.text
    got = [res["score"] for res in r.json()["results"]]
    assert got == pytest.approx([reference(m) for m in CONVERSATIONS], abs=TOL)
    models = httpx.get(app.url + "/v1/models", timeout=60).json()
    assert "qwen3-seqcls" in str(models) and "apply_chat_template" in str(models)


def test_classify_with_rendered_text_equals_the_reference(app, reference):
    texts = [reference.tokenizer.apply_chat_template(m, tokenize=False) for m in CONVERSATIONS]
    r = httpx.post(app.url + "/classify", json={"input": texts, "use_activation": False}, timeout=120)
    assert r.status_code == 200, r.text
    got = [d["probs"][0] for d in r.json()["data"]]
    assert got == pytest.approx([reference(m) for m in CONVERSATIONS], abs=TOL)


def test_trl_reward_function_gets_the_reference_scores(app, reference):
    from rlreward.adapters.trl import RewardModelReward

    reward = RewardModelReward(app.url, phase_hints=False)
    prompts = [m[:-1] for m in CONVERSATIONS]
    completions = [[m[-1]] for m in CONVERSATIONS]
    got = reward(prompts=prompts, completions=completions)
    assert got == pytest.approx([reference(m) for m in CONVERSATIONS], abs=TOL)


def test_an_image_sent_to_a_text_model_is_a_per_sample_error(app, reference):
    from tests.conftest import data_uri

    image = [
        {"role": "user", "content": [{"type": "image", "image": data_uri()}, {"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": "a red square"},
    ]
    r = httpx.post(
        app.url + "/v1/score",
        json={"samples": [{"messages": image}, {"messages": CONVERSATIONS[0]}]},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    bad, good = r.json()["results"]
    assert bad["error"]["code"] == "bad_content" and "text only" in bad["error"]["message"]
    assert good["score"] == pytest.approx(reference(CONVERSATIONS[0]), abs=TOL)
