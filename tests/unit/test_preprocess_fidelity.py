"""Scores equal the model card's recipe, run literally (:mod:`tests.recipe`), on checkpoints whose
processor is not the default one and on conversations that carry their own resize keys.

Checkpoints (``make-tiny`` processor options): the default one; processor ``max_pixels`` below the
test images' area (the second resize shrinks what the first let through); ``min_pixels`` above a
small image's area (the second resize enlarges it); patch 16 (the first resize snaps to 28, the
second to 32). Conversations: several images, a system prompt, multi-turn with an empty answer,
per-item ``min_pixels``/``max_pixels``/``resized_height``/``resized_width``, a frame-list video and a
video file with per-item ``fps``/``nframes``/``max_pixels``/``video_start``/``video_end``. Tolerance
1e-5 in fp32.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from rlreward.engine.config import ScorerConfig
from rlreward.engine.scorer import Scorer
from rlreward.offline.tiny import ProcessorOptions, make_tiny
from tests.conftest import noise_png
from tests.recipe import CardRecipe, video_backend

av = pytest.importorskip("av")
pytest.importorskip("decord")

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-5
SMALL_MAX = 40 * 28 * 28  # 31,360 px: below the 400x300 and 333x211 test images
BIG_MIN = 200 * 28 * 28  # 156,800 px: above the 60x50 and 400x300 test images


def write_video(path: Path, n_frames: int, fps: int, size=(160, 120), noise: bool = True) -> None:
    rng = np.random.default_rng(len(str(path)))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(n_frames):
            if noise:
                arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            else:  # cheap to encode: a bar moving across a grey frame
                arr = np.full((size[1], size[0], 3), 90, dtype=np.uint8)
                x = (i * 7) % size[0]
                arr[:, x : x + 16] = 230
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fidelity-media")
    (d / "big.png").write_bytes(noise_png(1, (400, 300)))
    (d / "odd.png").write_bytes(noise_png(2, (333, 211)))
    (d / "small.png").write_bytes(noise_png(3, (60, 50)))
    for k in range(3):  # an odd frame count: qwen-vl-utils pads it to 4
        (d / f"f{k}.png").write_bytes(noise_png(10 + k, (112, 84)))
    write_video(d / "clip.mp4", n_frames=40, fps=10)
    return d


@pytest.fixture(scope="module")
def checkpoints(tiny_model_dir, tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("fidelity-ckpts")
    return {
        "default": tiny_model_dir,
        "small_max": str(
            make_tiny(d / "small_max", seed=1, processor=ProcessorOptions(max_pixels=SMALL_MAX))
        ),
        "big_min": str(
            make_tiny(
                d / "big_min",
                seed=2,
                processor=ProcessorOptions(min_pixels=BIG_MIN, max_pixels=400 * 28 * 28, legacy_bounds=True),
            )
        ),
        "patch16": str(make_tiny(d / "patch16", seed=3, processor=ProcessorOptions(patch_size=16))),
    }


def _user(*items) -> dict:
    return {"role": "user", "content": list(items)}


def _img(path: Path, **keys) -> dict:
    return {"type": "image", "image": str(path), **keys}


def _text(t: str) -> dict:
    return {"type": "text", "text": t}


def cases(m: Path) -> dict[str, list[dict]]:
    """name → a conversation in the card's format (rlreward gets it as {"messages": ...})."""
    frames = [str(m / f"f{k}.png") for k in range(3)]
    clip = str(m / "clip.mp4")
    answer = {"role": "assistant", "content": "A red square in the corner."}
    return {
        "one_big_image": [_user(_img(m / "big.png"), _text("What is shown?")), answer],
        "images_and_system": [
            {"role": "system", "content": "You judge answers strictly."},
            _user(_img(m / "big.png"), _img(m / "odd.png"), _text("Compare them.")),
            answer,
        ],
        "small_image": [_user(_img(m / "small.png"), _text("Tiny?")), answer],
        "item_min_max": [
            _user(_img(m / "big.png", min_pixels=4000, max_pixels=20000), _text("Bounded.")),
            answer,
        ],
        "item_min_above": [_user(_img(m / "small.png", min_pixels=50000), _text("Enlarged.")), answer],
        "item_resized": [
            _user(_img(m / "odd.png", resized_height=100, resized_width=150), _text("Fixed.")),
            answer,
        ],
        "frame_list_video": [
            _user({"type": "video", "video": frames, "max_pixels": 150000}, _text("What moves?")),
            answer,
        ],
        "video_file_fps": [_user({"type": "video", "video": clip, "fps": 3.0}, _text("What moves?")), answer],
        "video_file_nframes_max_pixels": [
            _user({"type": "video", "video": clip, "nframes": 6, "max_pixels": 150000}, _text("What moves?")),
            answer,
        ],
        "video_file_range": [
            _user({"type": "video", "video": clip, "video_start": 0.5, "video_end": 3.0}, _text("Part.")),
            answer,
        ],
        "multi_turn_empty_answer": [
            _user(_img(m / "odd.png"), _text("Describe it.")),
            {"role": "assistant", "content": "Noise."},
            _user(_text("And now?")),
            {"role": "assistant", "content": ""},
        ],
    }


_SCORERS: dict[tuple[str, str], Scorer] = {}
_RECIPES: dict[tuple, CardRecipe] = {}


def scorer_for(ckpt: str, media_dir: Path, **over) -> Scorer:
    key = (ckpt, json.dumps(over, sort_keys=True))
    if key not in _SCORERS:
        _SCORERS[key] = Scorer.from_config(
            ScorerConfig(
                model=ckpt, dtype="float32", device="cpu", media={"image_roots": [str(media_dir)]}, **over
            )
        )
    return _SCORERS[key]


def recipe_for(ckpt: str, **processor_kwargs) -> CardRecipe:
    key = (ckpt, tuple(sorted(processor_kwargs.items())))
    if key not in _RECIPES:
        _RECIPES[key] = CardRecipe(ckpt, **processor_kwargs)
    return _RECIPES[key]


@pytest.mark.parametrize("ckpt", ["default", "small_max", "big_min", "patch16"])
def test_scores_equal_the_card_recipe(ckpt, checkpoints, media):
    model = checkpoints[ckpt]
    scorer = scorer_for(model, media)
    recipe = recipe_for(model)
    convs = cases(media)
    got = scorer.score([{"messages": c} for c in convs.values()])
    diffs = {}
    for (name, conv), r in zip(convs.items(), got):
        assert r.ok, (name, r.error)
        diffs[name] = abs(r.score - recipe.score(conv))
    assert max(diffs.values()) <= TOL, diffs
    # The reader that decoded the video files is the one we pin (and the recipe's here).
    prepared = scorer.prepare({"messages": convs["video_file_fps"]})
    assert prepared.video_readers == ["decord"] and video_backend() == "decord"


def test_the_second_resize_is_the_checkpoints(checkpoints, media):
    """The checkpoint's saved bounds really apply: visual area after both resizes, from the grid."""
    conv = {"messages": cases(media)["one_big_image"]}
    area = {}
    for name in ("default", "small_max", "big_min"):
        grid = scorer_for(checkpoints[name], media).prepare(conv).image_grid_thw
        area[name] = int(grid[0, 1] * grid[0, 2]) * 14 * 14
    assert area["small_max"] <= SMALL_MAX < area["default"]  # 400x300 shrunk by the processor
    assert area["big_min"] >= BIG_MIN > area["default"]  # and enlarged by the other one
    info = scorer_for(checkpoints["small_max"], media).info()
    assert info["max_pixels"] == SMALL_MAX and info["preprocessing"]["faithful"] is True
    second = info["preprocessing"]["image"]["second_resize"]
    assert second["by"] == "checkpoint processor" and second["max_pixels"] == SMALL_MAX


def test_configured_bounds_are_the_cards_commented_option(checkpoints, media):
    """``max_pixels``/``min_pixels`` in the config = AutoProcessor.from_pretrained(..., those bounds),
    reported as a deviation."""
    model = checkpoints["default"]
    convs = cases(media)
    conv = convs["images_and_system"]
    for bounds in ({"max_pixels": 50 * 28 * 28}, {"min_pixels": 300 * 28 * 28, "max_pixels": 600 * 28 * 28}):
        scorer = scorer_for(model, media, **bounds)
        want = recipe_for(model, **bounds).score(conv)
        got = scorer.score([{"messages": conv}])[0]
        assert got.ok and abs(got.score - want) <= TOL, (bounds, got, want)
        pre = scorer.info()["preprocessing"]
        assert pre["deviations"] == bounds and pre["faithful"] is False
        assert pre["image"]["second_resize"]["by"] == "configured deviation"
    # ... and the deviation is one: the unbounded score differs.
    plain = scorer_for(model, media).score([{"messages": conv}])[0].score
    assert abs(plain - want) > 1e-4


def test_bad_item_keys_and_video_limits_are_clear_errors(checkpoints, media):
    scorer = scorer_for(checkpoints["default"], media)
    clip = str(media / "clip.mp4")

    def conv(item):
        return {"messages": [_user(item, _text("?")), {"role": "assistant", "content": "x"}]}

    samples = [
        conv(_img(media / "big.png", min_pixels=9000, max_pixels=5000)),
        conv(_img(media / "big.png", max_pixels="big")),
        conv(_img(media / "big.png", resized_height=100)),
        conv({"type": "video", "video": clip, "fps": 2, "nframes": 4}),
        conv({"type": "video", "video": clip, "nframes": 30}),  # within the file's 40 frames
        conv({"type": "video", "video": clip, "fps": 10, "max_frames": 40}),  # 40 sampled frames
        {"messages": [_user(_text("no answer"))]},
    ]
    small = scorer_for(
        checkpoints["default"], media, limits={"max_video_frames": 16, "max_video_seconds": 10}
    )
    r = small.score(samples[4:]) + scorer.score(samples[:4])
    codes = [x.error.code if x.error else "ok" for x in r]
    assert codes[:3] == ["too_many_images", "too_many_images", "missing_assistant_turn"], r
    assert codes[3:] == ["bad_content"] * 4, r
    assert "max_video_frames" in r[0].error.message
    short = scorer_for(
        checkpoints["default"], media, limits={"max_video_frames": 64, "max_video_seconds": 2}
    ).score([conv({"type": "video", "video": clip, "nframes": 4})])[0]
    assert short.error.code == "video_error" and "max_video_seconds" in short.error.message  # 4 s file


def test_two_checkpoints_with_different_processors_in_one_process(checkpoints, media, tmp_path):
    """A checkpoint saved in Qwen2.5-VL's own layout (top-level min/max_pixels) must not change the
    bounds of one loaded later that saves none (transformers writes them into the class default).
    Run in a fresh interpreter: the reference for the bound-less checkpoint is taken before
    anything else is built there."""
    bare = tmp_path / "bare"
    make_tiny(bare, seed=4)
    cfg = json.loads((bare / "processor_config.json").read_text())
    cfg["image_processor"].pop("size")  # no bounds saved: transformers' class default applies
    (bare / "processor_config.json").write_text(json.dumps(cfg))
    conv = cases(media)["images_and_system"]
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(ROOT)!r})
        from tests.recipe import CardRecipe
        from rlreward.engine.config import ScorerConfig
        from rlreward.engine.scorer import Scorer
        conv = json.loads({json.dumps(json.dumps(conv))})
        ref_bare = CardRecipe({str(bare)!r}).score(conv)      # fresh process: class defaults
        def scorer(m):
            return Scorer.from_config(ScorerConfig(model=m, dtype="float32", device="cpu",
                                                   media={{"image_roots": [{str(media)!r}]}}))
        legacy = scorer({checkpoints["big_min"]!r})
        ref_legacy = CardRecipe({checkpoints["big_min"]!r}).score(conv)  # the literal load contaminates
        bare_scorer = scorer({str(bare)!r})
        s_legacy, s_bare = (r.score for r in [legacy.score([{{"messages": conv}}])[0],
                                              bare_scorer.score([{{"messages": conv}}])[0]])
        print(json.dumps(dict(ref_bare=ref_bare, ref_legacy=ref_legacy, s_legacy=s_legacy, s_bare=s_bare,
                              bare_bounds=bare_scorer.info()["preprocessing"]["image"]["second_resize"])))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=str(ROOT)
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert abs(got["s_legacy"] - got["ref_legacy"]) <= TOL, got
    assert abs(got["s_bare"] - got["ref_bare"]) <= TOL, got
    assert got["bare_bounds"]["min_pixels"] != BIG_MIN, got  # not inherited from the legacy one


def test_long_video_decodes_only_sampled_frames(tiny_model_dir, tmp_path):
    """A 1,200-frame 640x480 video (1.1 GB of RGB frames if all were decoded) scored with nframes=8:
    the peak RSS of the scoring process grows by less than 300 MB (decord reads only sampled frames)."""
    long = tmp_path / "long.mp4"
    write_video(long, n_frames=1200, fps=30, size=(640, 480), noise=False)
    warm = tmp_path / "warm.mp4"
    write_video(warm, n_frames=8, fps=4, size=(160, 120))
    script = textwrap.dedent(
        f"""
        import json, resource, sys
        sys.path.insert(0, {str(ROOT)!r})
        from rlreward.engine.config import ScorerConfig
        from rlreward.engine.scorer import Scorer
        s = Scorer.from_config(ScorerConfig(model={tiny_model_dir!r}, dtype="float32", device="cpu",
                                            media={{"image_roots": [{str(tmp_path)!r}]}}))
        def conv(v):
            return {{"messages": [{{"role": "user", "content": [{{"type": "video", "video": v, "nframes": 8}},
                     {{"type": "text", "text": "?"}}]}}, {{"role": "assistant", "content": "x"}}]}}
        assert s.score([conv("warm.mp4")])[0].ok
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        r = s.score([conv("long.mp4")])[0]
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps(dict(ok=r.ok, error=str(r.error), grow_kb=after - before)))
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=str(ROOT), env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["ok"], got
    assert got["grow_kb"] < 300 * 1024, got


def test_per_item_keys_cannot_enlarge_an_image_past_the_pixel_limit(checkpoints, media):
    """Per-item keys are honoured, but an enlargement past ``limits.max_image_pixels`` (a memory bomb
    such as ``min_pixels: 1e15``) is refused before qwen-vl-utils allocates it."""
    scorer = scorer_for(checkpoints["default"], media)
    frames = [str(media / f"f{k}.png") for k in range(3)]

    def conv(item):
        return {"messages": [_user(item, _text("?")), {"role": "assistant", "content": "x"}]}

    r = scorer.score(
        [
            conv(_img(media / "small.png", min_pixels=10**15, max_pixels=10**18)),
            # qwen-vl-utils snaps resized_* within its default max (12.8 Mpx): bounded, then too many tokens
            conv(_img(media / "small.png", resized_height=100_000, resized_width=100_000)),
            conv({"type": "video", "video": frames, "min_pixels": 10**12, "max_pixels": 10**13}),
            conv({"type": "video", "video": str(media / "clip.mp4"), "nframes": 4, "min_pixels": 10**12}),
            conv(_img(media / "small.png", min_pixels=10**15)),  # above qwen-vl-utils' default max
            conv(_img(media / "small.png", min_pixels=1_000_000, max_pixels=2_000_000)),  # allowed, bounded
        ]
    )
    codes = [x.error.code if x.error else "ok" for x in r]
    assert codes == ["image_too_large", "too_many_tokens", "image_too_large", "image_too_large"] + [
        "bad_content",
        "ok",
    ], r
    assert "limits.max_image_pixels" in r[0].error.message
