"""Batch planning and collation.

:func:`plan_batches` sorts samples by length and cuts them into forward passes under a token budget
(padded length × rows), so similar lengths share a batch and padding waste stays small.
:func:`collate` pads a planned batch into tensors; the padding side is free because the scorer reads
each row at its own last real token and every row carries its own position ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rlreward.engine.preprocess import PreparedSample


def plan_batches(
    lengths: Sequence[int], max_batch_tokens: int, max_batch_size: int, min_efficiency: float = 0.0
) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches, longest first.

    Each batch satisfies ``max(len) * rows <= max_batch_tokens``, ``rows <= max_batch_size`` and
    ``sum(len) / (max(len) * rows) >= min_efficiency`` (useful ÷ computed tokens), except that a
    single sample longer than the budget forms a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    cur: list[int] = []
    cur_max = cur_sum = 0
    for i in order:
        n = lengths[i]
        new_max = max(cur_max, n)
        rows = len(cur) + 1
        if cur and (
            new_max * rows > max_batch_tokens
            or len(cur) >= max_batch_size
            or (cur_sum + n) < min_efficiency * new_max * rows
        ):
            batches.append(cur)
            cur, new_max, cur_sum = [], n, 0
        cur.append(i)
        cur_max = new_max
        cur_sum += n
    if cur:
        batches.append(cur)
    return batches


def padding_efficiency(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Useful tokens ÷ computed tokens (padded length × rows) for a plan."""
    useful = sum(lengths)
    computed = sum(max(lengths[i] for i in b) * len(b) for b in batches if b)
    return useful / computed if computed else 1.0


@dataclass
class Batch:
    """Padded tensors for one forward pass. ``last_index[r]`` is row r's last real token."""

    input_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L]
    position_ids: torch.Tensor  # [3, B, L]
    last_index: torch.Tensor  # [B]
    pixel_values: torch.Tensor | None
    image_grid_thw: torch.Tensor | None
    pixel_values_videos: torch.Tensor | None
    video_grid_thw: torch.Tensor | None
    image_digests: list[str] = field(default_factory=list)  # one per image, in row order

    def to(self, device: torch.device | str) -> Batch:
        def mv(t: Any) -> Any:
            return t.to(device, non_blocking=True) if isinstance(t, torch.Tensor) else t

        return Batch(*(mv(getattr(self, f)) for f in self.__dataclass_fields__))


def _cat(parts: list[torch.Tensor | None]) -> torch.Tensor | None:
    kept = [p for p in parts if p is not None]
    return torch.cat(kept, dim=0) if kept else None


def collate(samples: Sequence[PreparedSample], pad_token_id: int, padding_side: str = "right") -> Batch:
    """Pad ``samples`` to one batch. Vision tensors are concatenated in row order (the model's
    placeholder scatter consumes them in that order)."""
    n = len(samples)
    width = max(s.num_tokens for s in samples)
    input_ids = torch.full((n, width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    pos = torch.zeros((3, n, width), dtype=torch.long)
    last = torch.empty(n, dtype=torch.long)
    for r, s in enumerate(samples):
        k = s.num_tokens
        sl = slice(width - k, width) if padding_side == "left" else slice(0, k)
        input_ids[r, sl] = s.input_ids
        mask[r, sl] = 1
        pos[:, r, sl] = s.position_ids
        last[r] = width - 1 if padding_side == "left" else k - 1
    return Batch(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=pos,
        last_index=last,
        pixel_values=_cat([s.pixel_values for s in samples]),
        image_grid_thw=_cat([s.image_grid_thw for s in samples]),
        pixel_values_videos=_cat([s.pixel_values_videos for s in samples]),
        video_grid_thw=_cat([s.video_grid_thw for s in samples]),
        image_digests=[d for s in samples for d in s.image_digests],
    )


def _vision_end(s: PreparedSample, vision_token_ids: Sequence[int]) -> int:
    """Index just past the last vision placeholder token of ``s`` (0 when it has none)."""
    ids = s.input_ids
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for t in vision_token_ids:
        mask |= ids == t
    hits = mask.nonzero()
    return int(hits[-1]) + 1 if hits.numel() else 0


def _common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    n = min(a.shape[0], b.shape[0])
    diff = (a[:n] != b[:n]).nonzero()
    return int(diff[0]) if diff.numel() else n


@dataclass
class PrefixGroup:
    """Samples (indices into the caller's list) whose first ``prefix_len`` tokens — images included —
    are identical, so the prefix can be encoded once and only the suffixes run per sample."""

    members: list[int]
    prefix_len: int


def find_prefix_groups(
    samples: Sequence[PreparedSample], min_prefix: int, vision_token_ids: Sequence[int]
) -> tuple[list[PrefixGroup], list[int]]:
    """Split ``samples`` into shareable groups (2+ members) and the rest (indices).

    A group's members have the same images (by content hash) and identical token ids up to
    ``prefix_len`` >= ``min_prefix``; every vision token lies inside the prefix (suffixes are
    text), and every member keeps at least one suffix token (its scored last token). Videos are
    never shared (no content hash for decoded videos).
    """
    buckets: dict[tuple, list[int]] = {}
    rest: list[int] = []
    for i, s in enumerate(samples):
        if s.has_video or s.num_tokens <= min_prefix:
            rest.append(i)
            continue
        # Bucket by images and by the first min_prefix tokens: only these can share >= min_prefix.
        key = (tuple(s.image_digests), tuple(s.input_ids[:min_prefix].tolist()))
        buckets.setdefault(key, []).append(i)
    groups: list[PrefixGroup] = []
    for members in buckets.values():
        if len(members) < 2:
            rest.extend(members)
            continue
        first = samples[members[0]]
        plen = min(
            min(_common_prefix(first.input_ids, samples[m].input_ids) for m in members[1:]),
            min(samples[m].num_tokens - 1 for m in members),
        )
        need = max(_vision_end(samples[m], vision_token_ids) for m in members)
        if plen < max(min_prefix, need):
            rest.extend(members)
            continue
        groups.append(PrefixGroup(members=members, prefix_len=plen))
    return groups, sorted(rest)


@dataclass
class ForwardPass:
    """One forward pass: ``segments`` of (sample indices, shared prefix length).

    An unshared pass has one segment with prefix length 0; a shared pass has one segment per
    prefix group (prefix length > 0), all run together.
    """

    segments: list[tuple[list[int], int]]

    @property
    def shared(self) -> bool:
        return self.segments[0][1] > 0

    @property
    def indices(self) -> list[int]:
        return [i for members, _ in self.segments for i in members]


def pack_shared(
    chunks: Sequence[tuple[list[int], int]],
    lengths: Sequence[int],
    max_batch_tokens: int,
    max_batch_size: int,
) -> list[ForwardPass]:
    """Pack shared-prefix chunks into passes: prefixes batch together (``groups × longest prefix``)
    and suffixes batch together (``rows × longest suffix``), each under the token budget."""
    passes: list[ForwardPass] = []
    cur: list[tuple[list[int], int]] = []
    rows = pre_w = suf_w = 0
    for members, p in chunks:
        sw = max(lengths[m] - p for m in members)
        n_rows, n_pre, n_sw = rows + len(members), max(pre_w, p), max(suf_w, sw)
        fits = (
            n_rows * n_sw <= max_batch_tokens
            and n_rows <= max_batch_size
            and (len(cur) + 1) * n_pre <= max_batch_tokens
        )
        if cur and not fits:
            passes.append(ForwardPass(cur))
            cur, n_rows, n_pre, n_sw = [], len(members), p, sw
        cur.append((members, p))
        rows, pre_w, suf_w = n_rows, n_pre, n_sw
    if cur:
        passes.append(ForwardPass(cur))
    return passes
