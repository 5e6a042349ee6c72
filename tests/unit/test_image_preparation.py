"""One preparation per distinct image: decoded, resized and patchified once per content digest and
per-item resize keys, across the requests prepared on a replica; a group's samples share one pixel
tensor. Decodes are counted by wrapping PIL's and qwen-vl-utils' own entry points (calling through)."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from PIL import ImageFile
from qwen_vl_utils import vision_process

from rlreward.engine.image_cache import PreparedImage
from rlreward.engine.preprocess import Preprocessor
from tests.conftest import cpu_scorer, noise_png


def group_samples(prompts: int = 3, answers: int = 4, size=(224, 168)) -> list[dict]:
    """Each prompt's image sent with every answer, base64-encoded separately (as a client sends it)."""
    return [
        {
            "prompt": f"Prompt {p}: what is shown?",
            "response": f"Answer {a} " + "word " * (3 * a),
            "images": [base64.b64encode(noise_png(800 + p, size)).decode()],
        }
        for a in range(answers)
        for p in range(prompts)
    ]


@pytest.fixture
def counts(monkeypatch):
    seen = {"decode": 0, "fetch_image": 0}
    load, fetch = ImageFile.ImageFile.load, vision_process.fetch_image

    def counting_load(self, *a, **k):
        if getattr(self, "tile", None):  # pixels not decoded yet: this call decodes them
            seen["decode"] += 1
        return load(self, *a, **k)

    def counting_fetch(*a, **k):
        seen["fetch_image"] += 1
        return fetch(*a, **k)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    monkeypatch.setattr(vision_process, "fetch_image", counting_fetch)
    return seen


make = cpu_scorer


@pytest.fixture(scope="module")
def cached(tiny_model_dir):
    return make(tiny_model_dir)


@pytest.fixture(scope="module")
def uncached(tiny_model_dir):
    return make(tiny_model_dir, image_cache_bytes=0)


def test_one_decode_per_distinct_image_across_concurrent_requests(tiny_model_dir, counts, uncached):
    scorer = make(tiny_model_dir)
    samples = group_samples()
    # Requests of 1 sample each, prepared by a thread pool as the replica does.
    with ThreadPoolExecutor(4) as pool:
        prepared = list(pool.map(scorer.prepare, samples))
    assert counts == {"decode": 3, "fetch_image": 3}
    stats = scorer.engine_stats()["image_cache"]
    assert stats["misses"] == 3 and stats["hits"] == 9 and stats["entries"] == 3
    # Later requests showing the same images prepare nothing.
    scorer.prepare(samples[0])
    assert counts["decode"] == 3
    got = scorer.score_prepared(prepared)
    counts["decode"] = 0
    want = uncached.score(samples)
    assert counts["decode"] == 12  # without reuse every sample decodes its copy
    assert all(r.ok for r in got)
    assert max(abs(a.score - b.score) for a, b in zip(got, want)) <= 1e-5


def test_resize_keys_are_part_of_the_image_identity(cached, counts):
    img = base64.b64encode(noise_png(900, (280, 196))).decode()

    def sample(**keys):
        content = [{"type": "image", "image": img, **keys}, {"type": "text", "text": "What?"}]
        return {
            "messages": [{"role": "user", "content": content}, {"role": "assistant", "content": "Noise."}]
        }

    a = cached.prepare(sample())
    b = cached.prepare(sample(max_pixels=56 * 56))
    c = cached.prepare(sample(max_pixels=56 * 56))
    assert counts["decode"] == 2
    assert a.image_grid_thw.prod() > b.image_grid_thw.prod()
    assert b.pixel_values is c.pixel_values


def _storage_bytes(prepared) -> int:
    seen: dict[int, int] = {}
    for p in prepared:
        for t in (p.pixel_values, p.image_grid_thw):
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


def test_eight_answers_on_one_image_hold_one_images_pixel_bytes(cached):
    samples = group_samples(prompts=1, answers=8, size=(448, 448))
    one = _storage_bytes([cached.prepare(samples[0])])
    eight = _storage_bytes([cached.prepare(s) for s in samples])
    assert eight <= 1.5 * one


def test_pixels_are_kept_in_the_compute_dtype(cached):
    pre = Preprocessor(
        cached.processor, cached.config, rope_index=cached.backbone.get_rope_index, pixel_dtype=torch.bfloat16
    )
    sample = group_samples(prompts=1, answers=1)[0]
    half = pre.prepare(sample).pixel_values
    full = cached.prepare(sample).pixel_values
    assert half.dtype == torch.bfloat16 and full.dtype == torch.float32
    assert torch.equal(half, full.to(torch.bfloat16))  # the cast the vision tower would make


def test_cache_is_bounded_in_bytes_and_evicts_least_recently_used(tiny_model_dir, cached, counts):
    samples = group_samples(prompts=4, answers=1)
    p = cached.prepare(samples[0])
    one = PreparedImage(p.pixel_values, p.image_grid_thw).nbytes  # every image here has this size
    scorer = make(tiny_model_dir, image_cache_bytes=int(2.5 * one))
    counts["decode"] = 0
    for s in samples:
        scorer.prepare(s)
    stats = scorer.engine_stats()["image_cache"]
    assert counts["decode"] == 4 and stats["entries"] == 2 and stats["bytes"] <= stats["max_bytes"]
    counts["decode"] = 0
    scorer.prepare(samples[-1])  # recent: kept
    assert counts["decode"] == 0
    scorer.prepare(samples[0])  # oldest: evicted, prepared again
    assert counts["decode"] == 1
