"""The value head loads strictly: a wrong key, shape or file is an actionable error, never silent."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import save_file

from rlreward.engine.head import HeadLoadError, load_value_head
from rlreward.engine.scorer import Scorer

H = 64


def _write(path, tensors):
    save_file(tensors, str(path))
    return path


def test_good_head_loads_in_fp32(tmp_path):
    w = torch.randn(1, H, dtype=torch.bfloat16)
    head = load_value_head(
        _write(
            tmp_path / "h.safetensors", {"v_head.summary.weight": w, "v_head.summary.bias": torch.ones(1)}
        ),
        H,
    )
    assert head.summary.weight.dtype == torch.float32
    h = torch.randn(3, H, dtype=torch.bfloat16)
    expected = h.float() @ w.float().T + 1.0
    assert torch.allclose(head(h), expected.squeeze(-1))


def test_wrong_key_names_found_keys_and_suggests_prefix(tmp_path):
    p = _write(tmp_path / "h.safetensors", {"score.weight": torch.zeros(1, H), "score.bias": torch.zeros(1)})
    with pytest.raises(HeadLoadError) as e:
        load_value_head(p, H)
    msg = str(e.value)
    assert "v_head.summary.weight" in msg and "score.weight" in msg and "--head-key-prefix score" in msg
    # ... and the suggested prefix works.
    assert load_value_head(p, H, key_prefix="score").hidden_size == H


def test_wrong_shape_is_refused(tmp_path):
    p = _write(
        tmp_path / "h.safetensors",
        {"v_head.summary.weight": torch.zeros(1, H + 1), "v_head.summary.bias": torch.zeros(1)},
    )
    with pytest.raises(HeadLoadError, match=r"expected \[1, 64\]"):
        load_value_head(p, H)
    p2 = _write(
        tmp_path / "h2.safetensors",
        {"v_head.summary.weight": torch.zeros(2, H), "v_head.summary.bias": torch.zeros(2)},
    )
    with pytest.raises(HeadLoadError, match="shape"):
        load_value_head(p2, H)


def test_extra_keys_are_refused(tmp_path):
    p = _write(
        tmp_path / "h.safetensors",
        {
            "v_head.summary.weight": torch.zeros(1, H),
            "v_head.summary.bias": torch.zeros(1),
            "v_head.other.weight": torch.zeros(1, H),
        },
    )
    with pytest.raises(HeadLoadError, match="unexpected keys"):
        load_value_head(p, H)


def test_missing_or_unreadable_file(tmp_path):
    with pytest.raises(HeadLoadError, match="does not exist"):
        load_value_head(tmp_path / "none.safetensors", H)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(HeadLoadError, match="not a readable safetensors"):
        load_value_head(bad, H)


def test_model_dir_without_head_fails_at_load(tiny_model_dir, tmp_path):
    d = tmp_path / "nohead"
    shutil.copytree(tiny_model_dir, d)
    (d / "value_head.safetensors").unlink()
    with pytest.raises(HeadLoadError, match="--head-file"):
        Scorer.from_pretrained(str(d), device="cpu")
