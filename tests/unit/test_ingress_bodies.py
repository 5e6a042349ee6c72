"""The ingress's pure parts: request models, the 422 message, path redaction (no Ray needed)."""

from __future__ import annotations

import pytest

from rlreward.protocols.openrlhf import GetRewardRequest
from rlreward.serving.ingress import HttpError, ScoreSamplesRequest, _validate, redact_paths


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (
            "image file /srv/data/imgs/cat.png is not under an image root",
            "image file …/cat.png is not under an image root",
        ),
        ("cannot open '/home/u/.cache/tiny/config.json'", "cannot open '…/config.json'"),
        ("[Errno 2] No such file: /etc/passwd", "[Errno 2] No such file: …/passwd"),
        ("http://host:8000/a/b/c.png is not allow-listed", "http://host:8000/a/b/c.png is not allow-listed"),
        ("relative/path/x.png and 1/2 stay", "relative/path/x.png and 1/2 stay"),
    ],
)
def test_absolute_paths_are_cut_to_their_last_component(text, want):
    assert redact_paths(text) == want


def test_request_models_name_the_field_and_never_echo_the_input():
    assert ScoreSamplesRequest.model_validate({"samples": [1, {}], "extra": 1}).samples == [1, {}]
    with pytest.raises(HttpError) as info:
        _validate(ScoreSamplesRequest, {"samples": "s3cret-looking-input"})
    assert info.value.status == 422 and info.value.code == "malformed_request"
    assert "samples" in info.value.message and "s3cret-looking-input" not in info.value.message
    for bad in ({"query": 5}, {"query": [1]}, {"query": ["q"], "prompts": 7}, {"prompts": ["p"]}, [1]):
        with pytest.raises(HttpError):
            _validate(GetRewardRequest, bad)
    ok = _validate(GetRewardRequest, {"query": "q", "labels": [{"images": []}]})
    assert ok.query == "q" and ok.prompts is None
