"""Shared fixtures: one tiny checkpoint per test session, one scorer on it.

Tests are auto-marked by folder (unit / integration / gpu).
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = Path(str(item.fspath)).parts
        for mark in ("unit", "integration", "gpu"):
            if mark in parts:
                item.add_marker(getattr(pytest.mark, mark))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A tiny random checkpoint (seed 0), built once per session. RLREWARD_TINY reuses a built one."""
    prebuilt = os.environ.get("RLREWARD_TINY")
    if prebuilt and Path(prebuilt, "value_head.safetensors").is_file():
        return prebuilt
    from rlreward.offline.tiny import make_tiny

    return str(make_tiny(tmp_path_factory.mktemp("tiny") / "model", seed=0))


@pytest.fixture(scope="session")
def scorer(tiny_model_dir):
    """A float32 CPU scorer on the tiny checkpoint, prefix sharing off unless a test turns it on."""
    from rlreward.engine.scorer import Scorer

    return Scorer.from_pretrained(tiny_model_dir, dtype="float32", device="cpu")


def cpu_scorer(model_dir: str, **batching):
    """A float32 CPU scorer on ``model_dir`` with these ``batching`` settings (one per call)."""
    from rlreward.engine.config import ScorerConfig
    from rlreward.engine.scorer import Scorer

    return Scorer.from_config(ScorerConfig(model=model_dir, dtype="float32", device="cpu", batching=batching))


def png_bytes(color="red", size=(64, 48), mode="RGB") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, "PNG")
    return buf.getvalue()


def data_uri(color="red", size=(64, 48)) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(color, size)).decode()


def noise_png(seed: int, size=(84, 56)) -> bytes:
    """An image with content (not flat), so that scores depend on its pixels."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()
