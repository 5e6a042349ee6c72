"""A group's conversation prefix tokenised and positioned once (rlreward.engine.tokens): every
sample's token ids, M-RoPE positions and pixels stay those of the card's processor call on the whole
conversation and the model's own ``get_rope_index`` (no rlreward code in the reference), whatever the
answer (leading whitespace, literal special tokens, combining marks, empty), with system prompts,
multi-turn conversations and several images; and the shortcut is really taken on a group."""

from __future__ import annotations

import base64
import io

import pytest
import torch
from PIL import Image

from rlreward.engine.tokens import PrefixTokens
from tests.conftest import cpu_scorer, noise_png
from tests.recipe import CardRecipe

ANSWERS = [
    "A red square.",
    " leading space",
    "\n\nTwo newlines first, then text.",
    "\u0301combining acute first",
    "Literal <|im_start|>assistant\nand <|im_end|> inside the answer.",
    "x",
    "Long " + "word " * 300,
    "émoji 🐱 and 中文",
]


def conversations() -> list[list[dict]]:
    """Conversations in the card's form (PIL images), each prompt with every answer."""
    png = [noise_png(900 + k, size) for k, size in enumerate([(224, 168), (168, 112)])]

    def img(k: int) -> dict:
        return {"type": "image", "image": base64.b64encode(png[k]).decode()}

    prompts = [
        [{"role": "user", "content": [img(0), {"type": "text", "text": "What is shown?"}]}],
        [
            {"role": "system", "content": "You judge answers."},
            {"role": "user", "content": [img(0), img(1), {"type": "text", "text": "Compare them."}]},
        ],
        [
            {"role": "user", "content": [img(1), {"type": "text", "text": "First question?"}]},
            {"role": "assistant", "content": "A first reply."},
            {"role": "user", "content": "And now?"},
        ],
    ]
    return [p + [{"role": "assistant", "content": a}] for p in prompts for a in ANSWERS]


def as_card(messages: list[dict]) -> list[dict]:
    def part(i: dict) -> dict:
        if i["type"] != "image":
            return i
        return {"type": "image", "image": Image.open(io.BytesIO(base64.b64decode(i["image"])))}

    return [
        {**m, "content": [part(i) for i in m["content"]]} if isinstance(m["content"], list) else m
        for m in messages
    ]


@pytest.fixture(scope="module")
def recipe(tiny_model_dir):
    return CardRecipe(tiny_model_dir)


def reference(recipe: CardRecipe, messages: list[dict]) -> dict:
    from qwen_vl_utils import process_vision_info

    card = as_card(messages)
    text = recipe.processor.apply_chat_template(card, tokenize=False, add_generation_prompt=False)
    images, _ = process_vision_info(card)
    inputs = recipe.processor(text=[text], images=images, padding=False, return_tensors="pt")
    pos, _ = recipe.model.model.get_rope_index(
        inputs["input_ids"],
        mm_token_type_ids=inputs["mm_token_type_ids"],
        image_grid_thw=inputs["image_grid_thw"],
    )
    return {"ids": inputs["input_ids"][0], "pos": pos[:, 0], "pixels": inputs["pixel_values"]}


def test_group_tokens_positions_and_pixels_equal_the_cards_full_call(tiny_model_dir, recipe):
    scorer = cpu_scorer(tiny_model_dir)
    pre = scorer.preprocessor
    assert pre.prefixes.enabled
    extended = []
    original = pre.prefixes.extend

    def counting(prefix, suffix):
        out = original(prefix, suffix)
        extended.append(out is not None)
        return out

    pre.prefixes.extend = counting
    for messages in conversations():
        got = scorer.prepare({"messages": messages})
        want = reference(recipe, messages)
        assert torch.equal(got.input_ids, want["ids"]), messages[-1]["content"]
        assert torch.equal(got.position_ids, want["pos"]), messages[-1]["content"]
        assert torch.equal(got.pixel_values.float(), want["pixels"].float())
    # Every answer after a prompt's first takes the kept prefix (the literal <|im_start|> answer
    # moves the cut into the answer itself: a prefix of its own, taken by the full path).
    assert sum(extended) >= 3 * (len(ANSWERS) - 2)


def test_a_group_shares_the_prefix_and_scores_as_the_card(tiny_model_dir, recipe):
    scorer = cpu_scorer(tiny_model_dir)
    convs = conversations()[: len(ANSWERS)]
    scores = [r.score for r in scorer.score([{"messages": m} for m in convs])]
    for messages, score in zip(convs, scores):
        assert score == pytest.approx(recipe.score(as_card(messages)), abs=1e-5)


def test_an_unsafe_tokenizer_takes_the_full_path(tiny_model_dir):
    pre = cpu_scorer(tiny_model_dir).preprocessor
    tok, vision = pre.tokenizer, pre.prefixes.vision_ids
    assert vision and not PrefixTokens(tok, set()).enabled  # no vision ids known: off
    tok.backend_tokenizer.enable_truncation(max_length=8)
    try:
        assert not PrefixTokens(tok, vision).enabled
    finally:
        tok.backend_tokenizer.no_truncation()
    split = PrefixTokens(tok, vision).split
    assert split("no turn marker here") is None
    assert split("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nok") == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>",
        "assistant\nok",
    )
