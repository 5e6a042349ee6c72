"""The scorer reproduces the model-card recipe, and a sample's score does not depend on its batch.

The reference is written here with plain transformers, as the card does it: the processor on one
sample (right padding, batch size 1), a full ``Qwen2_5_VLForConditionalGeneration`` forward with
``output_hidden_states=True`` (lm_head included), and an fp32 ``Linear`` on ``hidden_states[-1]`` at
``attention_mask.sum() - 1``.
"""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from rlreward.engine.config import ScorerConfig
from rlreward.engine.scorer import Scorer
from tests.conftest import noise_png


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    from safetensors.torch import load_file
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    head = load_file(f"{tiny_model_dir}/value_head.safetensors")
    linear = torch.nn.Linear(head["v_head.summary.weight"].shape[1], 1)
    linear.load_state_dict({"weight": head["v_head.summary.weight"], "bias": head["v_head.summary.bias"]})

    def score(messages: list[dict]) -> float:
        from qwen_vl_utils import process_vision_info

        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        assert text.endswith("<|im_end|>\n")
        images, videos = process_vision_info(messages)
        inputs = processor(text=[text], images=images, videos=videos, padding=True, return_tensors="pt")
        with torch.no_grad():
            out = model(**inputs, output_hidden_states=True, use_cache=False, return_dict=True)
            idx = inputs["attention_mask"].sum(-1) - 1
            h = out.hidden_states[-1][0, idx[0]]
            return linear(h.float()).item()

    return score


def _pil(seed: int, size=(84, 56)) -> Image.Image:
    return Image.open(io.BytesIO(noise_png(seed, size))).convert("RGB")


def _cases(image_dir) -> dict[str, tuple[dict, list[dict]]]:
    """name → (sample as rlreward takes it, the same conversation as the card recipe takes it)."""
    p1, p2 = image_dir / "a.png", image_dir / "b.png"
    p1.write_bytes(noise_png(1))
    p2.write_bytes(noise_png(2, (140, 84)))
    frames = []
    for k in range(4):
        f = image_dir / f"frame{k}.png"
        f.write_bytes(noise_png(10 + k, (112, 84)))
        frames.append(str(f))
    long_answer = " ".join(["the red circle is at the top left because the picture shows it there"] * 30)
    return {
        "text_only": (
            {"prompt": "What is two plus two?", "response": "Four."},
            [
                {"role": "user", "content": [{"type": "text", "text": "What is two plus two?"}]},
                {"role": "assistant", "content": "Four."},
            ],
        ),
        "one_image": (
            {"prompt": "What colour is it?", "response": "It is mostly red.", "images": [str(p1)]},
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "image": str(p1)},
                        {"type": "text", "text": "What colour is it?"},
                    ],
                },
                {"role": "assistant", "content": "It is mostly red."},
            ],
        ),
        "two_images": (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "image": str(p1)},
                            {"type": "image", "image": str(p2)},
                            {"type": "text", "text": "Which is larger?"},
                        ],
                    },
                    {"role": "assistant", "content": "The second one."},
                ]
            },
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "image": str(p1)},
                        {"type": "image", "image": str(p2)},
                        {"type": "text", "text": "Which is larger?"},
                    ],
                },
                {"role": "assistant", "content": "The second one."},
            ],
        ),
        "video_frames": (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "video", "video": frames},
                            {"type": "text", "text": "What happens?"},
                        ],
                    },
                    {"role": "assistant", "content": "Nothing much."},
                ]
            },
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "video", "video": frames},
                        {"type": "text", "text": "What happens?"},
                    ],
                },
                {"role": "assistant", "content": "Nothing much."},
            ],
        ),
        "system_prompt": (
            {
                "messages": [
                    {"role": "system", "content": "You judge answers strictly."},
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "image": str(p2)},
                            {"type": "text", "text": "Count the objects."},
                        ],
                    },
                    {"role": "assistant", "content": "three"},
                ]
            },
            [
                {"role": "system", "content": "You judge answers strictly."},
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "image": str(p2)},
                        {"type": "text", "text": "Count the objects."},
                    ],
                },
                {"role": "assistant", "content": "three"},
            ],
        ),
        "long_response": (
            {"prompt": "Where is the circle?", "response": long_answer, "images": [str(p1)]},
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "image": str(p1)},
                        {"type": "text", "text": "Where is the circle?"},
                    ],
                },
                {"role": "assistant", "content": long_answer},
            ],
        ),
        "multi_turn": (
            {
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello."},
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "image": str(p1)},
                            {"type": "text", "text": "And this?"},
                        ],
                    },
                    {"role": "assistant", "content": "A noisy picture."},
                ]
            },
            [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
                {
                    "role": "user",
                    "content": [{"type": "image", "image": str(p1)}, {"type": "text", "text": "And this?"}],
                },
                {"role": "assistant", "content": "A noisy picture."},
            ],
        ),
    }


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return _cases(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def rooted_scorer(tiny_model_dir, cases):
    """fp32 CPU scorer allowed to read the test image folder; one instance per padding side."""
    any_path = cases["one_image"][0]["images"][0]
    root = str(__import__("pathlib").Path(any_path).parent)

    def make(padding_side: str = "right", **batching) -> Scorer:
        cfg = ScorerConfig(
            model=tiny_model_dir,
            dtype="float32",
            device="cpu",
            media={"image_roots": [root]},
            batching={"padding_side": padding_side, **batching},
        )
        return Scorer.from_config(cfg)

    return make


@pytest.fixture(scope="module")
def default_scorer(rooted_scorer):
    return rooted_scorer()


@pytest.mark.parametrize(
    "name",
    ["text_only", "one_image", "two_images", "video_frames", "system_prompt", "long_response", "multi_turn"],
)
def test_score_matches_model_card_recipe(name, cases, reference, default_scorer):
    scorer = default_scorer
    sample, messages = cases[name]
    [result] = scorer.score([sample])
    assert result.error is None, result.error
    expected = reference(messages)
    assert abs(result.score - expected) <= 1e-5, (name, result.score, expected)


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_score_alone_equals_score_inside_a_mixed_batch(padding_side, cases, rooted_scorer):
    scorer = rooted_scorer(padding_side, prefix_sharing=False)
    samples = [c[0] for c in cases.values()]
    alone = [scorer.score([s])[0].score for s in samples]
    together = [r.score for r in scorer.score(samples)]
    reversed_ = [r.score for r in scorer.score(samples[::-1])][::-1]
    assert len(set(alone)) == len(alone), "scores should differ between samples"
    for a, b, c in zip(alone, together, reversed_):
        assert abs(a - b) <= 1e-5 and abs(a - c) <= 1e-5, (a, b, c)


def test_padding_side_does_not_change_scores(cases, rooted_scorer):
    samples = [c[0] for c in cases.values()]
    right = [r.score for r in rooted_scorer("right").score(samples)]
    left = [r.score for r in rooted_scorer("left").score(samples)]
    for a, b in zip(right, left):
        assert abs(a - b) <= 1e-5


def test_small_token_budget_splits_batches_without_changing_scores(cases, rooted_scorer):
    samples = [c[0] for c in cases.values()]
    big = [r.score for r in rooted_scorer(max_batch_tokens=100_000).score(samples)]
    small = [r.score for r in rooted_scorer(max_batch_tokens=64, max_batch_size=2).score(samples)]
    for a, b in zip(big, small):
        assert abs(a - b) <= 1e-5


def test_scorer_never_builds_lm_head(scorer):
    names = [n for n, _ in scorer.backbone.named_parameters()]
    assert not any("lm_head" in n for n in names)
    assert scorer.head.summary.weight.dtype == torch.float32
