"""How much the model card's optional 256-1280-token bound moves scores of large images.

Scores 12 structured images (1.2-6 Mpx: a colour gradient plus noise) with the checkpoint's own
preprocessing (the card's recipe) and with ``min_pixels=200704, max_pixels=1003520`` (the card's
commented option, ``configs/skywork-vl-7b.yaml``'s commented lines), fp32 on CPU, and prints the
absolute score differences. Usage: ``python benchmarks/pixel_bound_effect.py [MODEL_DIR]``
(default ``.cache/tiny``). The README quotes its output for the tiny model.
"""

from __future__ import annotations

import io
import statistics
import sys

import numpy as np
from PIL import Image

from rlreward.engine.config import ScorerConfig
from rlreward.engine.scorer import Scorer

SIZES = [(1280, 960), (1600, 1200), (2000, 1500), (3000, 2000)]


def image(seed: int, size: tuple[int, int]) -> bytes:
    """A colour gradient with noise (less pathological than pure noise), PNG-encoded."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], -1)
    base += rng.normal(0, 25, base.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def main(model: str) -> None:
    samples = [
        {"prompt": "Describe the picture.", "response": "A colourful gradient.", "images": [image(seed, s)]}
        for s in SIZES
        for seed in range(3)
    ]
    cfg = dict(model=model, dtype="float32", device="cpu")
    plain = Scorer.from_config(ScorerConfig(**cfg))
    bounded = Scorer.from_config(ScorerConfig(**cfg, min_pixels=200704, max_pixels=1003520))
    a = [r.score for r in plain.score(samples)]
    b = [r.score for r in bounded.score(samples)]
    d = [abs(x - y) for x, y in zip(a, b)]
    print(f"sizes {SIZES} x 3 seeds")
    print(f"faithful scores: mean {statistics.mean(a):.3f} sd {statistics.pstdev(a):.3f}")
    print(f"|bounded - faithful|: mean {statistics.mean(d):.3f} max {max(d):.3f}")
    for i, s in enumerate(SIZES):
        print(s, [f"{d[3 * i + k]:.3f}" for k in range(3)])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".cache/tiny")
