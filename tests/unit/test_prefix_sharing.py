"""Group prefix sharing and vision reuse change the cost, never the scores."""

from __future__ import annotations

import pytest

from rlreward.engine.config import ScorerConfig
from rlreward.engine.scorer import Scorer
from tests.conftest import noise_png

ANSWERS = [
    "The picture shows a red circle.",
    "Blue.",
    "I think it is a square at the top left of the image, and it is green.",
    "There are three objects: a cat, a dog and a tree.",
    "No.",
    "The answer is: B",
    "It is a picture of noise, with no clear shape in it at all.",
    "seven",
]


def grpo_batch(prompts: int = 3, group: int = 8) -> list[dict]:
    """P prompts x G answers; every prompt has its own image; interleaved so groups are not adjacent."""
    samples = []
    for g in range(group):
        for p in range(prompts):
            # Prompts and images differ in size between groups, so the batched prefixes are padded.
            samples.append(
                {
                    "prompt": f"Question {p}: " + "what is in the picture? " * (p + 1) + "Answer briefly.",
                    "response": ANSWERS[(g + p) % len(ANSWERS)] + f" ({g})",
                    "images": [noise_png(100 + p, [(224, 168), (168, 112), (280, 196)][p % 3])],
                }
            )
    return samples


def make(tiny_model_dir: str, **batching) -> Scorer:
    return Scorer.from_config(
        ScorerConfig(model=tiny_model_dir, dtype="float32", device="cpu", batching=batching)
    )


@pytest.fixture(scope="module")
def shared(tiny_model_dir):
    return make(tiny_model_dir, prefix_sharing=True, min_shared_prefix_tokens=16)


@pytest.fixture(scope="module")
def unshared(tiny_model_dir):
    return make(tiny_model_dir, prefix_sharing=False)


def test_grpo_groups_are_shared_and_scores_equal_unshared(shared, unshared):
    samples = grpo_batch()
    prepared = [shared.prepare(s) for s in samples]
    plan = shared.plan(prepared)
    segments = [seg for fp in plan if fp.shared for seg in fp.segments]
    # Every sample of the three groups goes through a shared pass whose prefix covers the image,
    # and prefixes of different groups run together.
    assert all(fp.shared for fp in plan) and any(len(fp.segments) > 1 for fp in plan)
    assert sorted(i for idx, _ in segments for i in idx) == list(range(len(samples)))
    assert all(p > 48 for _, p in segments)
    a = [r.score for r in shared.score(samples)]
    b = [r.score for r in unshared.score(samples)]
    assert all(x is not None for x in a)
    assert len(set(b)) == len(b)
    assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-5


def test_shared_group_split_by_token_budget_still_equal(tiny_model_dir, unshared):
    small = make(
        tiny_model_dir,
        prefix_sharing=True,
        min_shared_prefix_tokens=16,
        max_batch_tokens=40,
        max_batch_size=3,
    )
    samples = grpo_batch(prompts=1, group=8)
    prepared = [small.prepare(s) for s in samples]
    plan = small.plan(prepared)
    # One prefix pass for the group, its suffixes in several chunks against that prefix's KV.
    assert len(plan) == 1 and plan[0].shared and len(plan[0].chunks) >= 3
    a = [r.score for r in small.score(samples)]
    b = [r.score for r in unshared.score(samples)]
    assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-5


def test_different_images_with_identical_text_are_not_shared(shared, unshared):
    samples = [
        {"prompt": "What is it?", "response": f"Answer {k}.", "images": [noise_png(200 + k, (224, 168))]}
        for k in range(4)
    ]
    prepared = [shared.prepare(s) for s in samples]
    assert not any(fp.shared for fp in shared.plan(prepared))
    a = [r.score for r in shared.score(samples)]
    b = [r.score for r in unshared.score(samples)]
    assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-5


def test_bad_sample_inside_a_group_does_not_disturb_it(shared, unshared):
    samples = grpo_batch(prompts=1, group=4)
    bad = dict(samples[1])
    bad["images"] = ["data:image/png;base64,AAAA"]
    mixed = samples[:1] + [bad] + samples[1:]
    a = shared.score(mixed)
    b = unshared.score(samples)
    assert a[1].error is not None and a[1].error.code == "image_decode_error"
    assert max(abs(x.score - y.score) for x, y in zip([a[0]] + a[2:], b)) <= 1e-5


def _count_images(scorer: Scorer) -> list[int]:
    seen: list[int] = []

    def hook(module, args, kwargs):
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        seen.append(int(grid.shape[0]))

    scorer.backbone.visual.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def test_identical_images_go_through_the_vision_tower_once(tiny_model_dir):
    scorer = make(tiny_model_dir, prefix_sharing=False)
    seen = _count_images(scorer)
    img = noise_png(300, (224, 168))
    samples = [
        {"prompt": f"Different question number {k}?", "response": "Yes.", "images": [img]} for k in range(5)
    ]
    samples.append({"prompt": "Two of them?", "response": "Yes.", "images": [img, noise_png(301)]})
    results = scorer.score(samples)
    assert all(r.ok for r in results)
    assert sum(seen) == 2  # two distinct images, whatever the number of samples


def test_vision_cache_reuses_features_across_batches(tiny_model_dir):
    scorer = make(tiny_model_dir, prefix_sharing=False, vision_cache_size=4)
    seen = _count_images(scorer)
    sample = {"prompt": "q", "response": "a", "images": [noise_png(400, (224, 168))]}
    first = scorer.score([sample])[0].score
    again = scorer.score([sample])[0].score
    assert sum(seen) == 1 and again == pytest.approx(first, abs=1e-5)
    for k in range(5):  # evict it (LRU of 4)
        scorer.score([{"prompt": "q", "response": "a", "images": [noise_png(401 + k)]}])
    assert scorer.score([sample])[0].score == pytest.approx(first, abs=1e-6)
    assert sum(seen) == 7
