"""Served scores equal the model card's recipe run literally (:mod:`tests.recipe`), over HTTP and through
each trainer adapter, on a checkpoint whose processor is not the default one; ``/v1/models`` reports
the effective preprocessing and the batch budget a CPU replica really runs with.

The checkpoint (``make-tiny --max-pixels 31360``) shrinks the test image in its processor (second
resize) after qwen-vl-utils' first resize; one sample also carries its own ``max_pixels`` and one a
video file with its own ``nframes``/``max_pixels``. Each adapter builds its samples from what its
trainer hands it (TRL prompts/completions/images; an OpenRLHF query + label; a verl ``extra_info``);
the reference is the card's recipe on the same conversation, written out by hand here.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json

import httpx
import pytest
from PIL import Image

from rlreward.client import RewardClient
from rlreward.engine.config import CPU_MAX_BATCH_TOKENS
from rlreward.offline.tiny import ProcessorOptions, make_tiny
from tests.conftest import noise_png
from tests.recipe import CardRecipe

pytest.importorskip("decord")
av = pytest.importorskip("av")

TOL = 1e-5
SMALL_MAX = 40 * 28 * 28


@pytest.fixture(scope="module")
def setup(deploy_app, tmp_path_factory):
    d = tmp_path_factory.mktemp("serve-fidelity")
    ckpt = str(make_tiny(d / "ckpt", seed=5, processor=ProcessorOptions(max_pixels=SMALL_MAX)))
    media = d / "media"
    media.mkdir()
    png = noise_png(21, (400, 300))
    (media / "big.png").write_bytes(png)
    from tests.unit.test_preprocess_fidelity import write_video

    write_video(media / "clip.mp4", n_frames=24, fps=8)
    app = deploy_app("fidelity", model=ckpt, image_root=str(media))
    return {"ckpt": ckpt, "media": media, "png": png, "app": app, "recipe": CardRecipe(ckpt)}


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _card(image_path: str, question: str, answer: str, **keys) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [{"type": "image", "image": image_path, **keys}, {"type": "text", "text": question}],
        },
        {"role": "assistant", "content": answer},
    ]


def test_http_scores_equal_the_recipe_and_models_reports_effective_settings(setup):
    app, media = setup["app"], setup["media"]
    big = str(media / "big.png")
    video = [
        {
            "role": "user",
            "content": [
                {"type": "video", "video": str(media / "clip.mp4"), "nframes": 4, "max_pixels": 120000},
                {"type": "text", "text": "What moves?"},
            ],
        },
        {"role": "assistant", "content": ""},  # an empty answer is scored as the template renders it
    ]
    convs = [
        _card(big, "What is shown?", "Noise."),
        _card(big, "Bounded?", "Yes.", max_pixels=20000),
        [{"role": "system", "content": "Be strict."}, *_card(big, "Again?", "No.")],
        video,
    ]
    r = httpx.post(f"{app.url}/v1/score", json={"samples": [{"messages": c} for c in convs]}, timeout=300)
    assert r.status_code == 200, r.text
    got = [x["score"] for x in r.json()["results"]]
    want = [setup["recipe"].score(c) for c in convs]
    assert max(abs(a - b) for a, b in zip(got, want)) <= TOL, (got, want)

    card = httpx.get(f"{app.url}/v1/models", timeout=60).json()["data"][0]
    assert card["batching"]["max_batch_tokens"] == CPU_MAX_BATCH_TOKENS  # unset in tiny-cpu.yaml
    assert card["batching"]["max_batch_tokens_source"] == "cpu default"
    assert card["max_batch_tokens"] == CPU_MAX_BATCH_TOKENS
    pre = card["preprocessing"]
    assert pre["image"]["second_resize"] == {
        "by": "checkpoint processor",
        "min_pixels": 4 * 28 * 28,
        "max_pixels": SMALL_MAX,
        "patch_size": 14,
        "merge_size": 2,
    }
    assert pre["faithful"] is True and pre["deviations"] == {}
    assert card["max_pixels"] == SMALL_MAX


def test_each_trainer_adapter_scores_as_the_recipe(setup, monkeypatch):
    app, png = setup["app"], setup["png"]
    question, answer = "What colour dominates?", "Mostly grey noise."
    # The reference conversation, by hand; the image is the same bytes as a data URI.
    want = setup["recipe"].score(_card(_data_uri(png), question, answer))

    # TRL: a conversational prompt with an image block, the image from the dataset's column (PIL).
    from rlreward.adapters.trl import build_samples

    pil = Image.open(io.BytesIO(png))
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    trl_samples = build_samples([prompt], [[{"role": "assistant", "content": answer}]], images=[[pil]])
    with RewardClient(url=app.url) as client:
        trl_score = client.score(trl_samples)[0]
    assert trl_score.ok, trl_score

    # OpenRLHF: the policy-rendered query (image pads expanded) and the label carrying the image.
    from rlreward.adapters import openrlhf

    monkeypatch.setenv("RLREWARD_URL", app.url)
    monkeypatch.setenv("RLREWARD_OPENRLHF", json.dumps({}))
    prefix = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        f"<|vision_start|>{'<|image_pad|>' * 12}<|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n"
    )
    out = openrlhf.reward_func(
        [prefix + answer + "<|im_end|>"], [prefix], [json.dumps({"images": [_data_uri(png)]})]
    )
    assert out["extra_logs"]["rm_error"] == [0.0], out
    orl_score = float(out["extra_logs"]["rm_score"][0])

    # verl: compute_score with the prompt and image in extra_info.
    from rlreward.adapters.verl import compute_score

    res = asyncio.run(
        compute_score(
            "test", answer, None, extra_info={"prompt": question, "images": [_data_uri(png)]}, url=app.url
        )
    )
    assert res["rm_error"] == 0.0, res
    got = {"trl": trl_score.score, "openrlhf": orl_score, "verl": res["rm_score"]}
    assert all(abs(v - want) <= TOL for v in got.values()), (got, want)
