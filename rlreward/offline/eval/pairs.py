"""Generic pairs (our format): a prompt, a better and a worse answer, optional images or video.

Records: ``prompt`` (a string, or messages without the answer), ``images`` (list, or one
``image``), optional ``video`` (frame list, frames folder or video file), ``chosen``, ``rejected``,
optional ``category`` (default ``all``) and ``id``. Headline ``overall``: pooled accuracy, a pair
right iff the chosen answer scores higher by more than the tie tolerance (default 1e-5).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .benchmark import Benchmark
from .items import Pair, bad_pair, images_of, video_ref


def pair_generic(i: int, r: Mapping[str, Any], base: Path | None = None) -> Pair:
    """Generic pairs: ``prompt`` (string or messages without the answer), ``images`` (list, or one
    ``image``), optional ``video`` (frame list, frames folder or video file), ``chosen``,
    ``rejected``, optional ``category`` and ``id``."""
    rid = str(r.get("id", f"#{i}"))
    category = str(r.get("category") or "all")
    if not isinstance(r.get("chosen"), str) or not isinstance(r.get("rejected"), str) or "prompt" not in r:
        return bad_pair(rid, category, f"record {rid}: needs 'prompt', and 'chosen' and 'rejected' strings")
    images = r.get("images") if r.get("images") is not None else r.get("image")
    return Pair(
        rid,
        category,
        r["prompt"],
        images_of(images),
        r["chosen"],
        r["rejected"],
        video=video_ref(r.get("video"), base),
    )


class Pairs(Benchmark):
    name = "pairs"
    detect_priority = 100

    def detect(self, keys: set[str]) -> bool:
        return {"chosen", "rejected"} <= keys

    def load(self, i: int, record: Mapping[str, Any], base: Path | None) -> Pair:
        return pair_generic(i, record, base)


BENCHMARK = Pairs()
