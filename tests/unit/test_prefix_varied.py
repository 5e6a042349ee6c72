"""A GRPO group's prefix runs once per batch whatever its answers' lengths, and scores stay the card's.

The reference is the model card's recipe run literally at batch size 1 (:class:`tests.recipe.CardRecipe`);
prefix computations are counted with a forward hook on the language model, not with rlreward's counters.
"""

from __future__ import annotations

import random

import pytest

from rlreward.engine.scorer import Scorer
from tests.conftest import cpu_scorer, noise_png
from tests.recipe import CardRecipe

WORDS = "the cat sat on a red mat while two dogs ran past the old blue house near green trees".split()


def answer(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)) + "."


def burst(groups: int = 3, answers: int = 4, singles: int = 2, seed: int = 0) -> list[dict]:
    """``groups`` prompts x ``answers`` answers of 8..160 words (one image per prompt), interleaved,
    plus ``singles`` ungrouped samples (their own prompt and image)."""
    rng = random.Random(seed)
    out = []
    for a in range(answers):
        for g in range(groups):
            words = rng.randint(8, 160) if a else (8 if g % 2 else 160)  # both ends in every batch
            out.append(
                {
                    "prompt": f"Prompt {g}: describe the picture. " + "Be precise. " * (g + 2),
                    "response": answer(rng, words),
                    "images": [noise_png(500 + g, [(224, 168), (168, 112), (196, 140)][g % 3])],
                }
            )
    for k in range(singles):
        out.append(
            {"prompt": f"Alone {k}?", "response": answer(rng, 12 + 30 * k), "images": [noise_png(600 + k)]}
        )
    return out


def as_messages(sample: dict) -> list[dict]:
    """The same conversation as the card takes it (image items before the prompt's text)."""
    import io

    from PIL import Image

    images = [{"type": "image", "image": Image.open(io.BytesIO(b))} for b in sample["images"]]
    return [
        {"role": "user", "content": images + [{"type": "text", "text": sample["prompt"]}]},
        {"role": "assistant", "content": sample["response"]},
    ]


@pytest.fixture(scope="module")
def recipe(tiny_model_dir):
    return CardRecipe(tiny_model_dir)


@pytest.fixture(scope="module")
def samples():
    return burst()


@pytest.fixture(scope="module")
def expected(samples, recipe):
    return [recipe.score(as_messages(s)) for s in samples]


def make(tiny_model_dir: str, **batching) -> Scorer:
    return cpu_scorer(tiny_model_dir, **{"prefix_sharing": True, "min_shared_prefix_tokens": 16, **batching})


def count_lm_calls(scorer: Scorer) -> list[tuple[bool, int, int]]:
    """(has a KV cache, rows, width) of every language-model forward, recorded by a hook."""
    calls: list[tuple[bool, int, int]] = []

    def hook(module, args, kwargs):
        x = kwargs["inputs_embeds"]
        calls.append((kwargs.get("past_key_values") is not None, int(x.shape[0]), int(x.shape[1])))

    scorer.backbone.language_model.register_forward_pre_hook(hook, with_kwargs=True)
    return calls


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("budget", [None, 400])
def test_varied_answers_share_one_prefix_per_group_and_match_the_card(
    tiny_model_dir, samples, expected, padding_side, budget
):
    scorer = make(tiny_model_dir, padding_side=padding_side, max_batch_tokens=budget)
    calls = count_lm_calls(scorer)
    prepared = [scorer.prepare(s) for s in samples]
    plan = scorer.plan(prepared)
    results = scorer.score_prepared(prepared)
    got = [r.score for r in results]
    assert all(r.ok for r in results)
    assert max(abs(a - b) for a, b in zip(got, expected)) <= 1e-5
    # 3 groups: exactly 3 prefix rows run without a cache (each group's prefix once), plus the
    # unshared passes of the 2 singles; every other forward runs suffixes against a cached prefix.
    shared_rows = sorted(i for fp in plan if fp.shared for i in fp.indices)
    assert shared_rows == list(range(12))
    prefix_rows = sum(rows for cached, rows, _ in calls if not cached)
    single_rows = sum(len(fp.indices) for fp in plan if not fp.shared)
    assert single_rows == 2 and prefix_rows == 3 + single_rows
    suffix_calls = [c for c in calls if c[0]]
    assert sum(rows for _, rows, _ in suffix_calls) == 12
    if budget is not None:
        assert len(suffix_calls) > 3  # varied lengths cut into several chunks, prefix still once
    # The counters report what the hook saw: rows x width of every pass, prefix once.
    stats = scorer.engine_stats()
    assert stats["computed_tokens"] == sum(rows * width for _, rows, width in calls)
    assert stats["prefix_passes"] == sum(1 for fp in plan if fp.shared)
    prefixes = [p for fp in plan if fp.shared for _, p in fp.segments]
    useful = sum(prefixes) + sum(prepared[i].num_tokens for i in range(12)) - 4 * sum(prefixes)
    useful += sum(prepared[i].num_tokens for i in range(12, 14))
    assert stats["useful_tokens"] == useful
    assert stats["shared_path_failures"] == 0


def test_shared_computes_far_fewer_tokens_than_unshared(tiny_model_dir, samples):
    shared = make(tiny_model_dir, max_batch_tokens=1024)
    unshared = make(tiny_model_dir, prefix_sharing=False, max_batch_tokens=1024)
    a = shared.score(samples[:12])
    b = unshared.score(samples[:12])
    assert max(abs(x.score - y.score) for x, y in zip(a, b)) <= 1e-5
    s, u = shared.engine_stats(), unshared.engine_stats()
    assert s["computed_tokens"] <= 1.15 * s["useful_tokens"]
    assert s["computed_tokens"] < 0.8 * u["computed_tokens"]
