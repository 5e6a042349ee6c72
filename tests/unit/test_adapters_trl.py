"""TRL adapter against the real scorer (in-process transport): what TRL passes in, what it gets back."""

from __future__ import annotations

import asyncio
import inspect
import pickle

import pytest

from rlreward.adapters.trl import (
    AsyncRewardModelReward,
    RewardModelReward,
    answer_accuracy_reward,
    build_samples,
    think_format_reward,
)
from rlreward.rewards import RewardComposition
from tests.unit.test_adapters_common import LocalFactory, dead_factory, pil_noise


def _vlm_batch():
    """What TRL 1.16 hands a reward function for a VLM dataset: 2 prompts x 2 completions."""
    img_a, img_b = pil_noise(10), pil_noise(11)
    prompts, completions, images = [], [], []
    for img, q in ((img_a, "What is shown?"), (img_b, "Count the objects.")):
        for answer in ("A red circle.", "<think>look</think> three objects"):
            prompts.append(
                [{"role": "user", "content": [{"type": "image", "image": img}, {"type": "text", "text": q}]}]
            )
            completions.append([{"role": "assistant", "content": answer}])
            images.append([img])
    return prompts, completions, images


def _reference(scorer, prompts, completions):
    """The same samples scored in-process, PIL images handed over directly (no wire encoding)."""
    samples = [
        {"messages": [*p, {"role": "assistant", "content": c[0]["content"]}]}
        for p, c in zip(prompts, completions, strict=True)
    ]
    return [r.score for r in scorer.score(samples)]


def test_sync_reward_returns_the_scorers_scores_for_image_prompts(tiny_model_dir, scorer):
    prompts, completions, images = _vlm_batch()
    factory = LocalFactory(tiny_model_dir)
    reward = RewardModelReward(client_factory=factory)
    got = reward(
        prompts=prompts, completions=completions, completion_ids=[[1]] * 4, images=images, trainer_state=None
    )
    assert got == pytest.approx(_reference(scorer, prompts, completions), abs=1e-6)
    assert len(factory.calls()) == 1 and len(factory.calls()[0]) == 4  # the whole list in one call
    assert got[0] != pytest.approx(got[2])  # different images, different scores


def test_async_form_is_detected_by_trl_and_agrees_with_sync(tiny_model_dir):
    from trl.trainer.utils import get_callable_name, is_async_callable

    prompts, completions, images = _vlm_batch()
    sync = RewardModelReward(client_factory=LocalFactory(tiny_model_dir))
    areward = AsyncRewardModelReward(
        client_factory=LocalFactory(tiny_model_dir, asynchronous=True), name="rm"
    )
    assert is_async_callable(areward) and not is_async_callable(sync)
    assert inspect.iscoroutinefunction(areward.__call__)
    assert get_callable_name(areward) == "rm" and get_callable_name(sync) == "skywork_vl_reward"
    got = asyncio.run(areward(prompts=prompts, completions=completions, images=images))
    assert got == pytest.approx(sync(prompts=prompts, completions=completions, images=images), abs=1e-6)


def test_images_from_the_column_when_prompt_has_no_image_blocks(tiny_model_dir, scorer):
    img = pil_noise(3)
    reward = RewardModelReward(client_factory=LocalFactory(tiny_model_dir))
    # Plain-text prompt + image column; and a {"type": "image"} placeholder block without the image.
    plain = reward(prompts=["Describe it."], completions=["A cat."], image=[img])
    placeholder = reward(
        prompts=[
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe it."}]}]
        ],
        completions=[[{"role": "assistant", "content": "A cat."}]],
        images=[[img]],
    )
    expected = scorer.score([{"prompt": "Describe it.", "response": "A cat.", "images": [img]}])[0].score
    assert plain == pytest.approx([expected], abs=1e-6)
    assert placeholder == pytest.approx([expected], abs=1e-6)


def test_rejected_sample_is_none_and_neighbours_keep_their_scores(tiny_model_dir, scorer):
    prompts, completions, images = _vlm_batch()
    # an image URL under no allow-listed prefix: the server rejects the sample
    prompts[1] = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": "https://example.invalid/a.png"},
                {"type": "text", "text": "?"},
            ],
        }
    ]
    prompts[2] = [
        {
            "role": "user",
            "content": [{"type": "image", "image": "/etc/passwd"}, {"type": "text", "text": "hi"}],
        }
    ]
    logged: dict = {}
    got = RewardModelReward(client_factory=LocalFactory(tiny_model_dir))(
        prompts=prompts, completions=completions, images=images, log_metric=logged.__setitem__
    )
    assert got[1] is None and got[2] is None
    ref = _reference(scorer, [prompts[0], prompts[3]], [completions[0], completions[3]])
    assert [got[0], got[3]] == pytest.approx(ref, abs=1e-6)
    assert logged == {"skywork_vl_reward/rejected_frac": 0.5}


def test_unreachable_server_raises_by_default_or_gives_nones():
    prompts, completions, images = _vlm_batch()
    with pytest.raises(ConnectionError, match="unreachable"):
        RewardModelReward(client_factory=dead_factory)(prompts=prompts, completions=completions)
    soft = AsyncRewardModelReward(client_factory=dead_factory, on_unavailable="none")
    assert asyncio.run(soft(prompts=prompts, completions=completions)) == [None] * 4


def test_composition_adds_rule_rewards_to_the_model_score(tiny_model_dir):
    prompts = ["2+2?", "2+2?"]
    completions = ["<think>add</think> \\boxed{4}", "\\boxed{5}"]
    plain = RewardModelReward(client_factory=LocalFactory(tiny_model_dir))
    mixed = RewardModelReward(
        client_factory=LocalFactory(tiny_model_dir),
        composition=RewardComposition(model=1.0, accuracy=1.0, format=0.5),
    )
    base = plain(prompts=prompts, completions=completions, solution=["4", "4"])
    got = mixed(prompts=prompts, completions=completions, solution=["4", "4"])
    assert got == pytest.approx([base[0] + 1.0 + 0.5, base[1]], abs=1e-6)


def test_reward_survives_pickle_after_use(tiny_model_dir):
    prompts, completions, images = _vlm_batch()
    for cls, asynchronous in ((RewardModelReward, False), (AsyncRewardModelReward, True)):
        reward = cls(client_factory=LocalFactory(tiny_model_dir, asynchronous), name="vl_rm")
        call = reward(prompts=prompts, completions=completions)
        first = asyncio.run(call) if asynchronous else call
        clone = pickle.loads(pickle.dumps(reward))
        assert clone.__name__ == "vl_rm"
        again = clone(prompts=prompts, completions=completions)
        assert (asyncio.run(again) if asynchronous else again) == pytest.approx(first, abs=1e-6)


def test_url_form_pickles_to_a_recipe_only():
    reward = AsyncRewardModelReward("http://rm:8000", api_key="secret", timeout_s=30)
    clone = pickle.loads(pickle.dumps(reward))
    assert clone._clients.spec.url == "http://rm:8000" and clone._clients._sync is None
    assert "rm:8000" in repr(clone)


def test_build_samples_encodes_a_shared_image_once():
    img = pil_noise(5)
    prompt = [{"role": "user", "content": [{"type": "image", "image": img}, {"type": "text", "text": "q"}]}]
    samples = build_samples([prompt] * 3, ["a", "b", "c"])
    refs = [s["messages"][0]["content"][0]["image"] for s in samples]
    assert refs[0].startswith("data:image/png;base64,") and refs[0] is refs[1] is refs[2]
    assert samples[2]["messages"][-1] == {"role": "assistant", "content": "c"}


def test_rule_rewards_in_trl_shape():
    assert answer_accuracy_reward(
        [[{"role": "assistant", "content": "<answer>(B)</answer>"}], "\\boxed{3}"], solution=["B", None]
    ) == [1.0, None]
    assert think_format_reward(["<think>x</think> y", "y"]) == [1.0, 0.0]
