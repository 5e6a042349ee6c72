"""Batch planning and collation.

:func:`plan_batches` sorts samples by length and cuts them into forward passes under a token budget
(padded length × rows), so similar lengths share a batch and padding waste stays small.
:func:`find_prefix_groups` finds samples sharing a prefix (a GRPO group: prompt + images);
:func:`plan_shared` computes each group's prefix once per batch and cuts its suffixes, whatever their
lengths, into chunks of least cost (padded suffix tokens + a per-pass cost), counting the prefix KV a
pass holds (:func:`kv_tokens_per_token`) in the same token budget.
:func:`collate` pads a planned batch into tensors; the padding side is free because the scorer reads
each row at its own last real token and every row carries its own position ids.
"""

from __future__ import annotations

import math
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


def prefix_sample(s: PreparedSample, prefix_len: int) -> PreparedSample:
    """The first ``prefix_len`` tokens of ``s`` with all its images (they lie inside the prefix)."""
    return PreparedSample(
        input_ids=s.input_ids[:prefix_len],
        position_ids=s.position_ids[:, :prefix_len],
        pixel_values=s.pixel_values,
        image_grid_thw=s.image_grid_thw,
        image_digests=list(s.image_digests),
    )


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
    """One planned unit of work: ``segments`` of (sample indices, shared prefix length).

    An unshared pass has one segment with prefix length 0 and runs as one forward pass. A shared
    pass has one segment per prefix group (prefix length > 0): their prefixes run **once**, together,
    keeping their keys/values, then ``chunks`` (sample indices, each a forward pass of suffixes
    only, rows of any of the pass's groups) run against that cached prefix KV.
    """

    segments: list[tuple[list[int], int]]
    chunks: list[list[int]] = field(default_factory=list)

    @property
    def shared(self) -> bool:
        return self.segments[0][1] > 0

    @property
    def indices(self) -> list[int]:
        return [i for members, _ in self.segments for i in members]


def kv_tokens_per_token(text_config: Any) -> float:
    """The device memory a token's cached keys/values hold, in **token-equivalents** of the budget.

    A token of an ordinary forward pass holds about ``3 x hidden_size + 3 x intermediate_size``
    activations at its peak (one decoder layer's residual, norm, attention output and MLP tensors:
    what ``max_batch_tokens`` bounds); a cached token holds ``layers x 2 x kv_heads x head_dim``
    (keys and values of every layer, same dtype). 0.42 for Qwen2.5-VL-7B: a 64-row shared pass on a
    10k-token prefix (~37 GB of KV in bf16) costs ~270k token-equivalents, not 0.
    """
    hidden = int(text_config.hidden_size)
    heads = int(text_config.num_attention_heads)
    kv_heads = int(getattr(text_config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text_config, "head_dim", None) or hidden // heads)
    layers = int(text_config.num_hidden_layers)
    inter = int(getattr(text_config, "intermediate_size", None) or 4 * hidden)
    return layers * 2 * kv_heads * head_dim / (3 * hidden + 3 * inter)


@dataclass(frozen=True)
class PlanCosts:
    """What planning weighs, in tokens: ``budget`` (one pass's token-equivalents, KV included),
    ``max_rows``, ``kv`` (:func:`kv_tokens_per_token`) and ``pass_cost`` (what one extra forward pass
    is worth: the planner splits suffixes into more passes only when that saves more padded tokens)."""

    budget: int
    max_rows: int
    kv: float
    pass_cost: int


def chunk_suffixes(
    suffix: Sequence[tuple[int, int]], held_kv: float, row_kv: float, costs: PlanCosts
) -> list[list[int]]:
    """Cut ``(index, suffix length)`` rows into suffix passes of least total cost.

    Cost of a plan: its padded suffix tokens (rows x longest suffix per pass) plus ``pass_cost`` per
    pass; each pass keeps ``held_kv + rows x (row_kv + longest suffix) <= budget`` (the prefix KV the
    pass's group(s) hold, each row's expanded copy of it, its suffix activations) and
    ``rows <= max_rows``; one row always runs. Exact (dynamic programming over the rows sorted by
    length, longest first), O(rows x max_rows).
    """
    order = sorted(suffix, key=lambda t: (-t[1], t[0]))
    n = len(order)
    best = [0.0] + [math.inf] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j - 1, max(-1, j - 1 - costs.max_rows), -1):
            rows, width = j - i, order[i][1]
            if rows > 1 and held_kv + rows * (row_kv + width) > costs.budget:
                break  # fewer rows only fit better; more rows (smaller i) never fit
            c = best[i] + rows * width + costs.pass_cost
            if c < best[j]:
                best[j], cut[j] = c, i
    chunks: list[list[int]] = []
    j = n
    while j > 0:
        i = cut[j]
        chunks.append([order[k][0] for k in range(i, j)])
        j = i
    return chunks[::-1]


def plan_shared(groups: Sequence[PrefixGroup], lengths: Sequence[int], costs: PlanCosts) -> list[ForwardPass]:
    """Shared passes for prefix groups: every group's prefix computed once, suffixes in chunks.

    Groups (longest prefix first) share one prefix pass while its cost ``groups x longest prefix x
    (1 + kv)`` (activations plus the KV it keeps) fits the budget, the KV it keeps stays within half
    the budget (room for the suffix passes), and padding the shorter prefixes wastes less than
    ``pass_cost``. The pass's rows, of all its groups, are then cut by :func:`chunk_suffixes`.
    """
    order = sorted(groups, key=lambda g: (-g.prefix_len, g.members[0]))
    bundles: list[list[PrefixGroup]] = []
    for g in order:
        cur = bundles[-1] if bundles else None
        if cur is not None:
            width = cur[0].prefix_len
            n = len(cur) + 1
            if (
                n * width * (1 + costs.kv) <= costs.budget
                and n * width * costs.kv <= costs.budget / 2
                and width - g.prefix_len <= costs.pass_cost
                and n <= costs.max_rows
            ):
                cur.append(g)
                continue
        bundles.append([g])
    passes = []
    for bundle in bundles:
        width = bundle[0].prefix_len
        rows = [(m, lengths[m] - g.prefix_len) for g in bundle for m in g.members]
        held = len(bundle) * width * costs.kv
        chunks = chunk_suffixes(rows, held, width * costs.kv, costs)
        passes.append(ForwardPass([(list(g.members), g.prefix_len) for g in bundle], chunks))
    return passes


def pass_tokens(fp: ForwardPass, lengths: Sequence[int]) -> tuple[int, int]:
    """``(computed, useful)`` language-model tokens of a planned pass.

    computed: what runs (shared: groups x longest prefix once, plus rows x longest suffix per chunk;
    unshared: rows x longest sample); useful: each group's prefix once plus every real suffix token
    (unshared: every sample's tokens).
    """
    if not fp.shared:
        idx = fp.indices
        return max(lengths[i] for i in idx) * len(idx), sum(lengths[i] for i in idx)
    prefix_of = {m: p for members, p in fp.segments for m in members}
    width = max(p for _, p in fp.segments)
    computed = len(fp.segments) * width
    useful = sum(p for _, p in fp.segments)
    for chunk in fp.chunks:
        suf = [lengths[m] - prefix_of[m] for m in chunk]
        computed += max(suf) * len(suf)
        useful += sum(suf)
    return computed, useful
