"""OpenAI content parts (rlreward.engine.content) and rendered text: same scores as the card's form.

Equality is checked against the same conversation written in the model card's own item form, scored
by the real tiny scorer; the rendered-text form against the chat template's rendering of it."""

from __future__ import annotations

import pytest
import torch

from rlreward.engine.content import from_openai_part
from rlreward.engine.preprocess import normalize_messages
from rlreward.schema import SampleError
from tests.conftest import data_uri

URI = data_uri("blue")


@pytest.mark.parametrize(
    ("part", "item"),
    [
        ({"type": "image_url", "image_url": {"url": URI}}, {"type": "image", "image": URI}),
        ({"type": "image_url", "image_url": {"url": URI, "detail": "high"}}, {"type": "image", "image": URI}),
        ({"type": "image_url", "image_url": URI}, {"type": "image", "image": URI}),
        ({"image_url": {"url": URI}}, {"type": "image", "image": URI}),
        ({"type": "input_image", "image_url": URI}, {"type": "image", "image": URI}),
        (
            {"type": "image_url", "image_url": {"url": URI}, "max_pixels": 3136},
            {"type": "image", "image": URI, "max_pixels": 3136},
        ),
        ({"type": "input_text", "text": "hi"}, {"type": "text", "text": "hi"}),
        ({"type": "output_text", "text": "hi"}, {"type": "text", "text": "hi"}),
        ({"type": "text", "text": "hi"}, {"type": "text", "text": "hi"}),
        ({"type": "video_url", "video_url": {"url": "clip.mp4"}}, {"type": "video", "video": "clip.mp4"}),
        (
            {"type": "video_url", "video_url": "file:///d/clip.mp4"},
            {"type": "video", "video": "file:///d/clip.mp4"},
        ),
        (
            {"type": "video_url", "video_url": {"url": [URI, {"url": URI}]}, "fps": 1.0},
            {"type": "video", "video": [URI, URI], "fps": 1.0},
        ),
        (
            {"type": "video", "video": [{"type": "image_url", "image_url": {"url": URI}}, URI]},
            {"type": "video", "video": [URI, URI]},
        ),
        ({"type": "image", "image": URI}, {"type": "image", "image": URI}),
    ],
)
def test_openai_parts_become_the_cards_items(part, item):
    assert from_openai_part(part, "m") == item


@pytest.mark.parametrize(
    ("part", "words"),
    [
        ({"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}, "not audio"),
        ({"type": "audio_url", "audio_url": {"url": "x.wav"}}, "not audio"),
        ({"type": "image_embeds", "image_embeds": "AA"}, "embeddings"),
        ({"type": "prompt_embeds", "data": "AA"}, "embeddings"),
        ({"type": "file", "file": {"file_id": "f"}}, "files"),
        ({"type": "image_url"}, 'no "image_url"'),
        ({"type": "image_url", "image_url": {"detail": "low"}}, 'needs a "url"'),
        ({"type": "image_url", "image_url": ""}, "has no url"),
        ({"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}}, "list of frames"),
        ({"type": "video_url", "video_url": {"url": "https://x.org/v.mp4"}}, "list of frames"),
        ({"type": "video_url", "video_url": {"url": []}}, "at least one frame"),
    ],
)
def test_unsupported_or_malformed_parts_are_bad_content_naming_the_part(part, words):
    with pytest.raises(SampleError) as info:
        from_openai_part(part, "messages[0].content[1]")
    assert info.value.code.value == "bad_content"
    assert info.value.message.startswith("messages[0].content[1]")
    assert words in info.value.message


def test_normalize_messages_reads_openai_parts_in_every_turn():
    openai_form = {
        "messages": [
            {"role": "system", "content": [{"type": "input_text", "text": "Be strict."}]},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": URI}},
                    {"type": "text", "text": "Colour?"},
                ],
            },
            {"role": "assistant", "content": [{"type": "output_text", "text": "Blue."}]},
        ]
    }
    card_form = {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Be strict."}]},
            {
                "role": "user",
                "content": [{"type": "image", "image": URI}, {"type": "text", "text": "Colour?"}],
            },
            {"role": "assistant", "content": "Blue."},
        ]
    }
    assert normalize_messages(openai_form) == normalize_messages(card_form)


def test_openai_parts_score_as_the_cards_items(scorer):
    frames = [data_uri("red"), data_uri("green")]
    openai_samples = [
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": URI}},
                        {"type": "input_text", "text": "Colour?"},
                    ],
                },
                {"role": "assistant", "content": "Blue."},
            ]
        },
        {
            "prompt": [{"role": "user", "content": [{"type": "image_url", "image_url": URI}, "Colour?"]}],
            "response": "Blue.",
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "video_url", "video_url": {"url": frames}},
                        {"type": "text", "text": "What changes?"},
                    ],
                },
                {"role": "assistant", "content": "Red turns green."},
            ]
        },
    ]
    card_samples = [
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image", "image": URI}, {"type": "text", "text": "Colour?"}],
                },
                {"role": "assistant", "content": "Blue."},
            ]
        },
        {"prompt": "Colour?", "response": "Blue.", "images": [URI]},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "video", "video": frames},
                        {"type": "text", "text": "What changes?"},
                    ],
                },
                {"role": "assistant", "content": "Red turns green."},
            ]
        },
    ]
    # The same model inputs (token ids, pixels), so the same score within fp32 noise: two passes may
    # differ in the last bits on some CPUs.
    for o, c in zip(openai_samples, card_samples):
        po, pc = scorer.prepare(o), scorer.prepare(c)
        assert torch.equal(po.input_ids, pc.input_ids)
        for name in ("pixel_values", "pixel_values_videos"):
            a, b = getattr(po, name), getattr(pc, name)
            assert (a is None and b is None) or torch.equal(a, b), name
    got, want = scorer.score(openai_samples), scorer.score(card_samples)
    for g, w in zip(got, want):
        assert g.error is None and w.error is None, (g.error, w.error)
        assert abs(g.score - w.score) <= 1e-5, (g.score, w.score)


def test_rendered_text_scores_as_the_conversation_it_renders(scorer):
    messages = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]
    text = scorer.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert text.endswith("<|im_end|>\n")
    by_text, by_messages, other = scorer.score(
        [{"rendered_text": text}, {"messages": messages}, {"rendered_text": text.replace("4", "5")}]
    )
    # Same tokens, so the same score; rows of one batch may differ in the last bits on some CPUs.
    template_ids = scorer.processor.apply_chat_template(messages, tokenize=True, add_generation_prompt=False)
    if isinstance(template_ids, dict) or hasattr(template_ids, "keys"):
        template_ids = template_ids["input_ids"]
    template_ids = (
        list(template_ids[0]) if template_ids and isinstance(template_ids[0], list) else list(template_ids)
    )
    assert scorer.processor.tokenizer(text, add_special_tokens=False)["input_ids"] == template_ids
    assert by_text.error is None and by_text.score == pytest.approx(by_messages.score, abs=1e-5)
    assert abs(other.score - by_text.score) > 1e-4  # the text is what is scored


def test_rendered_text_with_a_vision_placeholder_is_refused_not_scored_as_text(scorer):
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]},
        {"role": "assistant", "content": "Blue."},
    ]
    text = scorer.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    (result,) = scorer.score([{"rendered_text": text}])
    assert result.error is not None and result.error.code == "bad_content"
    assert "<|image_pad|>" in result.error.message and "image_url" in result.error.message


@pytest.mark.parametrize(
    ("sample", "code"),
    [
        ({"rendered_text": ""}, "invalid_sample"),
        ({"rendered_text": 3}, "invalid_sample"),
        ({"rendered_text": "x", "add_special_tokens": "yes"}, "invalid_sample"),
        ({"rendered_text": "x", "images": [URI]}, "invalid_sample"),
    ],
)
def test_malformed_rendered_text_samples_get_their_own_error(scorer, sample, code):
    bad, good = scorer.score([sample, {"rendered_text": "fine"}])
    assert bad.error is not None and bad.error.code == code
    assert good.error is None


def test_http_image_url_parts_follow_the_url_allow_list(tiny_model_dir):
    """An allow-listed http(s) image_url scores as the same image sent inline; any other URL is refused."""
    import http.server
    import threading

    from rlreward.engine.scorer import Scorer
    from tests.conftest import png_bytes

    png = png_bytes("blue")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        scorer = Scorer.from_pretrained(
            tiny_model_dir, dtype="float32", device="cpu", media={"allowed_url_prefixes": [base + "/ok/"]}
        )

        def sample(ref: str) -> dict:
            return {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": ref}}, "Colour?"],
                    },
                    {"role": "assistant", "content": "Blue."},
                ]
            }

        # One at a time, the same image bytes: equal within fp32 noise.
        (by_url,), (inline,) = scorer.score([sample(base + "/ok/a.png")]), scorer.score([sample(URI)])
        (refused,) = scorer.score([sample(base + "/no/a.png")])
    finally:
        server.shutdown()
    assert by_url.error is None and abs(by_url.score - inline.score) <= 1e-5, (by_url.score, inline.score)
    assert refused.error is not None and refused.error.code == "url_not_allowed"
