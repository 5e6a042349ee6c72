"""The one walk over a conversation's media (rlreward.schema.media_items), as its users see it: the
trace's sizes, OpenRLHF's image slots, the scorer's "is there vision / a video file" checks."""

from __future__ import annotations

from rlreward.schema import media_items, media_refs
from rlreward.trace import sample_sizes
from tests.conftest import data_uri

IMG = data_uri("blue", (28, 56))
FRAMES = [data_uri("red", (56, 28)), data_uri("green", (56, 28))]
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {
        "role": "user",
        "content": [
            {"type": "image", "image": IMG},
            "a bare string part",
            {"type": "text", "text": "What changes?"},
            {"type": "video", "video": FRAMES},
            {"image": IMG},  # the card allows an item without "type"
            {"type": "image_url", "image_url": {"url": IMG}},
            {"type": "video", "video": "/data/clip.mp4"},
        ],
    },
    {"role": "assistant", "content": [{"type": "text", "text": "Red turns green."}]},
]


def test_media_items_yields_every_image_and_video_item_in_order_and_nothing_else():
    items = list(media_items(CONVERSATION))
    user = CONVERSATION[1]["content"]
    assert [id(i) for i in items] == [id(user[k]) for k in (0, 3, 4, 5, 6)]  # the dicts themselves
    assert [media_refs(i) for i in items] == [[IMG], FRAMES, [IMG], [{"url": IMG}], ["/data/clip.mp4"]]
    assert list(media_items("not a conversation")) == [] and list(media_items([{"content": "text"}])) == []


def test_items_filled_in_place_fill_the_conversation():
    convo = [{"role": "user", "content": [{"type": "image", "image": None}, {"type": "text", "text": "q"}]}]
    for item in media_items(convo):
        item["image"] = IMG
    assert convo[0]["content"][0] == {"type": "image", "image": IMG}


def test_trace_sizes_count_each_image_and_frame_of_both_sample_forms():
    _, sizes = sample_sizes({"messages": CONVERSATION})
    # 1 image + 2 frames + 1 type-less image + 1 image_url + 1 video file, all in the prompt.
    assert len(sizes["images"]) == 6
    assert sizes["images"][:3] == [[28, 56], [56, 28], [56, 28]]
    assert sizes["prompt_chars"] == len("Be brief.") + len("a bare string part") + len("What changes?")
    assert sizes["response_chars"] == len("Red turns green.")
    _, pair = sample_sizes({"prompt": "q?", "response": "a", "images": [IMG, IMG]})
    assert pair["images"] == [[28, 56], [28, 56]]
