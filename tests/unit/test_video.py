"""Video inputs: a video file is sampled and decoded by qwen-vl-utils' decord reader and scored as the
card's recipe scores it; unreadable videos get ``video_error``."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from rlreward.engine.config import ScorerConfig
from rlreward.engine.scorer import Scorer

av = pytest.importorskip("av")


def write_mp4(path, n_frames=12, fps=4, size=(112, 84)):
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for _ in range(n_frames):
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    write_mp4(d / "clip.mp4")
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    return d


@pytest.fixture(scope="module")
def video_scorer(tiny_model_dir, video_dir):
    return Scorer.from_config(
        ScorerConfig(
            model=tiny_model_dir, dtype="float32", device="cpu", media={"image_roots": [str(video_dir)]}
        )
    )


def test_video_file_scores_as_the_card_recipe(video_scorer, video_dir):
    """12 frames at 4 fps = 3 s → qwen-vl-utils samples 6 at 2 fps, read by decord, as the recipe does."""
    from tests.recipe import CardRecipe, video_backend

    conv = [
        {
            "role": "user",
            "content": [
                {"type": "video", "video": str(video_dir / "clip.mp4")},
                {"type": "text", "text": "What happens?"},
            ],
        },
        {"role": "assistant", "content": "Noise flickers."},
    ]
    prepared = video_scorer.prepare({"messages": conv})
    assert prepared.video_readers == ["decord"] and int(prepared.video_grid_thw[0, 0]) == 3  # 6 frames / 2
    got = video_scorer.score([{"messages": conv}])[0]
    want = CardRecipe(video_scorer.config.model).score(conv)
    assert video_backend() == "decord"
    assert got.ok and abs(got.score - want) <= 1e-5, (got, want)


def test_unreadable_video_and_mismatched_frames(video_scorer):
    broken = {
        "messages": [
            {"role": "user", "content": [{"type": "video", "video": "broken.mp4"}]},
            {"role": "assistant", "content": "x"},
        ]
    }
    f1, f2 = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (56, 56)).save(f1, "PNG")
    Image.new("RGB", (84, 56)).save(f2, "PNG")
    mixed = {
        "messages": [
            {"role": "user", "content": [{"type": "video", "video": [f1.getvalue(), f2.getvalue()]}]},
            {"role": "assistant", "content": "x"},
        ]
    }
    r1, r2 = video_scorer.score([broken, mixed])
    assert r1.error.code == "video_error" and r2.error.code == "video_error"
