"""A bad sample gets its own error code; the samples beside it score exactly as they do alone."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from rlreward.engine.config import ScorerConfig
from rlreward.engine.scorer import Scorer
from rlreward.schema import ErrorCode
from tests.conftest import noise_png, png_bytes


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    root = tmp_path_factory.mktemp("allowed")
    outside = tmp_path_factory.mktemp("outside")
    (root / "ok.png").write_bytes(noise_png(3))
    (root / "notes.txt").write_text("this is not an image")
    (outside / "secret.png").write_bytes(noise_png(4))
    return root, outside


@pytest.fixture(scope="module")
def strict_scorer(tiny_model_dir, roots):
    root, _ = roots
    cfg = ScorerConfig(
        model=tiny_model_dir,
        dtype="float32",
        device="cpu",
        media={"image_roots": [str(root)], "allowed_url_prefixes": ["https://images.example.org/"]},
        limits={"max_image_pixels": 4_000_000, "max_images": 3, "max_tokens": 400, "max_aspect_ratio": 50},
    )
    return Scorer.from_config(cfg)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _bomb_png() -> bytes:
    # 20000 x 20000 = 400 Mpx of one colour: a few hundred KB compressed.
    buf = io.BytesIO()
    Image.new("1", (20000, 20000), 0).save(buf, "PNG")
    return buf.getvalue()


def _bad_cases(roots) -> dict[str, tuple[dict, ErrorCode]]:
    root, outside = roots
    q = "What is shown?"
    corrupt = bytearray(png_bytes("red", (64, 64)))
    corrupt[40:80] = b"\x00" * 40
    return {
        "corrupt_image_bytes": (
            {"prompt": q, "response": "x", "images": [_b64(bytes(corrupt[:120]))]},
            ErrorCode.IMAGE_DECODE,
        ),
        "non_image_file": (
            {"prompt": q, "response": "x", "images": [str(root / "notes.txt")]},
            ErrorCode.IMAGE_DECODE,
        ),
        "path_outside_roots": (
            {"prompt": q, "response": "x", "images": [str(outside / "secret.png")]},
            ErrorCode.PATH_NOT_ALLOWED,
        ),
        "path_escaping_root": (
            {"prompt": q, "response": "x", "images": [str(root / ".." / outside.name / "secret.png")]},
            ErrorCode.PATH_NOT_ALLOWED,
        ),
        "missing_file": (
            {"prompt": q, "response": "x", "images": [str(root / "nope.png")]},
            ErrorCode.IMAGE_NOT_FOUND,
        ),
        "url_not_allowed": (
            {"prompt": q, "response": "x", "images": ["http://127.0.0.1:9/x.png"]},
            ErrorCode.URL_NOT_ALLOWED,
        ),
        "extreme_aspect_ratio": (
            {
                "prompt": q,
                "response": "x",
                "images": ["data:image/png;base64," + _b64(png_bytes("red", (2000, 10)))],
            },
            ErrorCode.ASPECT_RATIO,
        ),
        "decompression_bomb": (
            {"prompt": q, "response": "x", "images": [_bomb_png()]},
            ErrorCode.IMAGE_TOO_LARGE,
        ),
        "too_many_images": (
            {"prompt": q, "response": "x", "images": [png_bytes()] * 4},
            ErrorCode.TOO_MANY_IMAGES,
        ),
        "missing_assistant_turn": (
            {"messages": [{"role": "user", "content": q}]},
            ErrorCode.MISSING_ASSISTANT_TURN,
        ),
        # (An empty answer is no error: it is scored as the card's template renders it; see
        # test_preprocess_fidelity.py, multi_turn_empty_answer.)
        "answer_not_last": (
            {
                "messages": [
                    {"role": "user", "content": q},
                    {"role": "assistant", "content": "a"},
                    {"role": "user", "content": q},
                ]
            },
            ErrorCode.MISSING_ASSISTANT_TURN,
        ),
        "wrong_content_type": (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "audio", "audio": "x"}]},
                    {"role": "assistant", "content": "x"},
                ]
            },
            ErrorCode.BAD_CONTENT,
        ),
        "text_not_a_string": (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": 5}]},
                    {"role": "assistant", "content": "x"},
                ]
            },
            ErrorCode.BAD_CONTENT,
        ),
        "bad_role": (
            {"messages": [{"role": "robot", "content": q}, {"role": "assistant", "content": "x"}]},
            ErrorCode.INVALID_SAMPLE,
        ),
        "not_a_dict": ("just a string", ErrorCode.INVALID_SAMPLE),
        "unknown_form": ({"question": q, "answer": "x"}, ErrorCode.INVALID_SAMPLE),
        "response_not_string": ({"prompt": q, "response": ["x"]}, ErrorCode.INVALID_SAMPLE),
        "image_ref_wrong_type": ({"prompt": q, "response": "x", "images": [12345]}, ErrorCode.BAD_CONTENT),
        "over_long": ({"prompt": q, "response": "word " * 2000}, ErrorCode.TOO_MANY_TOKENS),
        "megabytes_of_text": ({"prompt": "a" * 3_000_000, "response": "x"}, ErrorCode.TOO_MANY_TOKENS),
    }


GOOD = [
    {"prompt": "What colour is it?", "response": "Red.", "images": [png_bytes("red")]},
    {"prompt": "2+2?", "response": "4"},
    {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image", "image": noise_png(7)}, {"type": "text", "text": "Describe."}],
            },
            {"role": "assistant", "content": "Noise."},
        ]
    },
]


def test_each_bad_input_gets_its_code_and_neighbours_are_unchanged(strict_scorer, roots):
    bad = _bad_cases(roots)
    alone = [strict_scorer.score([g])[0] for g in GOOD]
    assert all(r.ok for r in alone)
    # Interleave: good, bad, good, bad, ...
    mixed, expect = [], []
    for i, (name, (sample, code)) in enumerate(bad.items()):
        g = GOOD[i % len(GOOD)]
        mixed += [g, sample]
        expect += [("good", i % len(GOOD)), (name, code)]
    results = strict_scorer.score(mixed)
    assert len(results) == len(mixed)
    for (tag, what), r in zip(expect, results):
        if tag == "good":
            assert r.ok and abs(r.score - alone[what].score) <= 1e-5
        else:
            assert r.score is None and r.error is not None, tag
            assert r.error.code == what.value, (tag, r.error)
            assert r.error.message


def test_path_inside_root_is_read(strict_scorer, roots):
    root, _ = roots
    [r] = strict_scorer.score([{"prompt": "q", "response": "a", "images": [str(root / "ok.png")]}])
    assert r.ok


def test_image_forms_give_the_same_score(strict_scorer, roots):
    root, _ = roots
    raw = (root / "ok.png").read_bytes()
    forms = [
        str(root / "ok.png"),
        "file://" + str(root / "ok.png"),
        raw,
        _b64(raw),
        "data:image/png;base64," + _b64(raw),
        Image.open(io.BytesIO(raw)),
    ]
    scores = [
        r.score for r in strict_scorer.score([{"prompt": "q", "response": "a", "images": [f]} for f in forms])
    ]
    assert all(s is not None for s in scores)
    assert max(scores) - min(scores) <= 1e-6


def test_local_paths_refused_when_no_roots_configured(scorer, roots):
    root, _ = roots
    [r] = scorer.score([{"prompt": "q", "response": "a", "images": [str(root / "ok.png")]}])
    assert r.error.code == ErrorCode.PATH_NOT_ALLOWED.value
    assert "--image-root" in r.error.message


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "CMYK"])
def test_non_rgb_images_convert_like_the_reference_recipe(strict_scorer, mode):
    """qwen-vl-utils' fetch_image converts the image itself; our decoding must not convert differently."""
    from qwen_vl_utils import fetch_image

    img = Image.open(io.BytesIO(noise_png(9, (84, 56)))).convert(mode)
    if mode in ("P", "LA"):
        img.info["transparency"] = 0
    ours = strict_scorer.preprocessor
    from rlreward.engine.media import load_image

    loaded = load_image(img, ours.config.media, ours.config.limits).image
    expected = fetch_image(
        {"image": img, "min_pixels": ours.config.min_pixels, "max_pixels": ours.config.max_pixels}
    )
    got = fetch_image(
        {"image": loaded, "min_pixels": ours.config.min_pixels, "max_pixels": ours.config.max_pixels}
    )
    assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("data", [b"hello world" * 3, b"GIF89a" + b"\x00" * 5])
def test_an_undecodable_image_is_described_not_named_by_its_file_object(scorer, data):
    sample = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image", "image": _b64(data)}, {"type": "text", "text": "x"}],
            },
            {"role": "assistant", "content": "y"},
        ]
    }
    (result,) = scorer.score([sample])
    assert result.error is not None and result.error.code == ErrorCode.IMAGE_DECODE
    assert "BytesIO" not in result.error.message and " at 0x" not in result.error.message
    assert "cannot decode image:" in result.error.message


@pytest.mark.parametrize("where", ["answer", "prompt"])
def test_a_vision_placeholder_typed_into_text_beside_an_image_is_bad_content(scorer, where):
    """The processor would expand it as an image it was not given (the card's recipe fails too)."""
    prompt, answer = "What is it?", "A square."
    if where == "answer":
        answer = "look <|image_pad|> here"
    else:
        prompt = "<|image_pad|> what is it?"
    sample = {"prompt": prompt, "response": answer, "images": [_b64(noise_png(2))]}
    bad, good = scorer.score(
        [sample, {"prompt": "What is it?", "response": "A square.", "images": [_b64(noise_png(2))]}]
    )
    assert bad.error is not None and bad.error.code == ErrorCode.BAD_CONTENT
    assert "<|image_pad|>" in bad.error.message
    assert good.error is None
