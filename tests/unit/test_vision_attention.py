"""The vision tower runs equal-size windows as one attention call per layer, scores unchanged.

Calls are counted by wrapping ``torch.nn.functional.scaled_dot_product_attention`` (calling
through); the reference is transformers' own, unpatched Qwen2.5-VL forward in the same process."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from rlreward.engine.config import ScorerConfig
from rlreward.engine.scorer import Scorer
from rlreward.engine.vision_attention import batch_vision_windows
from tests.conftest import noise_png
from tests.recipe import CardRecipe

# 448x336 at the tiny checkpoint's bounds: 32x24 patches, 16x12 merged, windows of 4x4 merged
# patches (window_size 112) -> 12 windows; with a 224x140 second image, 16 windows of 2 lengths.
SIZE = (448, 336)


@pytest.fixture
def sdpa_calls(monkeypatch):
    calls: list[tuple[int, ...]] = []
    real = torch.nn.functional.scaled_dot_product_attention

    def counting(q, *a, **k):
        calls.append(tuple(q.shape))
        return real(q, *a, **k)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
    return calls


@pytest.fixture(scope="module")
def models(tiny_model_dir):
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    def load():
        return Qwen2_5_VLForConditionalGeneration.from_pretrained(
            tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa"
        ).eval()

    plain, patched = load(), load()
    assert batch_vision_windows(patched.model) == patched.config.vision_config.depth
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    image = Image.open(io.BytesIO(noise_png(1100, SIZE))).convert("RGB")
    inputs = processor.image_processor(images=[image, image.resize((224, 140))], return_tensors="pt")
    return plain, patched, inputs


def test_one_attention_call_per_window_length_per_layer(models, sdpa_calls):
    plain, patched, inputs = models
    cfg = plain.config.vision_config
    window_layers = cfg.depth - len(cfg.fullatt_block_indexes)
    with torch.no_grad():
        want = plain.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"]).pooler_output
        per_window = len(sdpa_calls)
        sdpa_calls.clear()
        got = patched.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"]).pooler_output
    batched = len(sdpa_calls)
    # The windows, from the geometry alone: side window_size / patch / merge merged patches.
    side = cfg.window_size // cfg.patch_size // cfg.spatial_merge_size
    windows = []
    for _, gh, gw in inputs["image_grid_thw"].tolist():
        h, w = gh // cfg.spatial_merge_size, gw // cfg.spatial_merge_size
        for i in range(0, h, side):
            for j in range(0, w, side):
                windows.append(min(side, h - i) * min(side, w - j) * cfg.spatial_merge_size**2)
    full = len(cfg.fullatt_block_indexes) * 2  # one call per image per full-attention layer
    assert per_window - full == window_layers * len(windows) == window_layers * 16
    assert batched - full == window_layers * len(set(windows)) == window_layers * 2
    for a, b in zip(want, got):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)


def test_scorer_with_batched_windows_matches_the_card_recipe(tiny_model_dir):
    scorer = Scorer.from_config(
        ScorerConfig(model=tiny_model_dir, dtype="float32", device="cpu", attn_implementation="sdpa")
    )
    assert scorer.batched_vision_windows > 0
    recipe = CardRecipe(tiny_model_dir)
    png = noise_png(1101, SIZE)
    sample = {"prompt": "Describe it.", "response": "Noise, mostly.", "images": [png]}
    image = Image.open(io.BytesIO(png))
    messages = [
        {
            "role": "user",
            "content": [{"type": "image", "image": image}, {"type": "text", "text": "Describe it."}],
        },
        {"role": "assistant", "content": "Noise, mostly."},
    ]
    assert abs(scorer.score([sample])[0].score - recipe.score(messages)) <= 1e-5


def test_gradients_flow_through_the_batched_windows(models):
    _, patched, inputs = models
    pixels = inputs["pixel_values"].clone().requires_grad_(True)
    out = patched.model.get_image_features(pixels, inputs["image_grid_thw"]).pooler_output
    torch.cat(out).sum().backward()
    assert pixels.grad is not None and torch.isfinite(pixels.grad).all()
