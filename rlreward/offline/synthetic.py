"""Synthetic data for the offline tools: words and noise images, one definition each.

* :data:`WORDS` — the vocabulary of generated text: the tiny checkpoint's tokenizer is trained on it
  (:mod:`rlreward.offline.tiny`), bench picks its one-token words from it, loadtest writes answers
  of exact lengths with it (:func:`text_of_length`).
* :func:`noise_image` — blocky random colours (14 px squares: one per Qwen2.5-VL patch), the same
  pixels for the same size and seed (an int, or any string: hashed stably, so every process makes
  the same picture); :func:`noise_png` its PNG bytes (cached), :func:`token_noise_image` one of
  about N visual tokens (28 px a token side, a size Qwen2.5-VL's resize keeps), :func:`png_bytes`
  any PIL image as PNG.

numpy and PIL are imported when an image is made, not with the module.
"""

from __future__ import annotations

import hashlib
import io
import math
import random
from typing import Any

WORDS: tuple[str, ...] = tuple(
    (
        "the a an is are was be of to in on for with what which who how many colour color shape picture "
        "image video frame answer question choose option yes no red green blue yellow black white purple "
        "orange circle square triangle star left right top bottom highest lowest value number one two three "
        "four five six seven eight nine ten because therefore so the correct final hint please provide "
        "letter end choices system user assistant you helpful describe there this that it has have not "
        "and or but if then count object objects cat dog car tree sky sun water house person people"
    ).split()
)

#: Side of one noise block, pixels: one Qwen2.5-VL patch.
BLOCK_PX = 14


def text_of_length(n: int, rng: random.Random) -> str:
    """Words of :data:`WORDS`, exactly ``n`` characters long (n ≥ 1)."""
    out: list[str] = []
    size = -1  # length of " ".join(out)
    while size < n:
        w = rng.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    text = " ".join(out)[:n]
    return text if not text.endswith(" ") else text[:-1] + "."


def _seed(seed: int | str) -> int:
    if isinstance(seed, int):
        return seed
    return int.from_bytes(hashlib.sha256(seed.encode("utf-8")).digest()[:8], "little")


def noise_image(width: int, height: int, seed: int | str = 0) -> Any:
    """A ``width`` × ``height`` RGB PIL image of random :data:`BLOCK_PX`-pixel blocks."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(_seed(seed))
    shape = (math.ceil(height / BLOCK_PX), math.ceil(width / BLOCK_PX), 3)
    blocks = rng.integers(0, 256, size=shape, dtype=np.uint8)
    arr = blocks.repeat(BLOCK_PX, axis=0).repeat(BLOCK_PX, axis=1)[:height, :width]
    return Image.fromarray(arr)


def token_noise_image(visual_tokens: int, seed: int | str = 0) -> Any:
    """A noise image of about ``visual_tokens`` visual tokens: a near-square grid of 28 px cells."""
    rows = max(1, round(math.sqrt(visual_tokens)))
    cols = max(1, math.ceil(visual_tokens / rows))
    return noise_image(cols * 2 * BLOCK_PX, rows * 2 * BLOCK_PX, seed)


def png_bytes(img: Any) -> bytes:
    """A PIL image as PNG bytes."""
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


_PNG_CACHE: dict[tuple[int, int, int | str], bytes] = {}


def noise_png(width: int, height: int, seed: int | str = 0) -> bytes:
    """:func:`noise_image` as PNG bytes, the same bytes for the same size and seed (cached)."""
    key = (width, height, seed)
    if key not in _PNG_CACHE:
        if len(_PNG_CACHE) > 4096:
            _PNG_CACHE.clear()
        _PNG_CACHE[key] = png_bytes(noise_image(width, height, seed))
    return _PNG_CACHE[key]
