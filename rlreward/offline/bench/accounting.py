"""Useful and executed work of a bench run, in tokens and FLOPs (the two sides of honest MFU).

* **Useful** (:func:`useful_work`): the least work scoring the workload needs. A system that scores
  every sample in full (``reference``, ``unshared``) needs every sample's tokens and images. A
  system with prefix sharing (``shared``, ``serve``, ``serve-stream``) needs, per group of samples
  on the same images, the group's common prefix once (its images through the vision tower once,
  its tokens once), then each sample's suffix tokens attending to that prefix.
* **Executed** (:class:`ExecutedWork`, fed by the bench probe's hooks): what the model really ran:
  per language-model call, rows x the cost of its (padded) new tokens after the cached ones; per
  vision-tower call, the FLOPs of its patch grids.

FLOPs are :func:`~rlreward.offline.bench.models.text_flops` /
:func:`~rlreward.offline.bench.models.vision_flops`; the cost of ``n`` tokens after ``p`` cached
ones is ``text_flops(p + n) - text_flops(p)`` (causal attention: exact).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rlreward.offline.bench.models import text_flops, vision_flops


def common_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix every sequence starts with."""
    if not sequences:
        return 0
    n = min(len(s) for s in sequences)
    first = sequences[0]
    for i in range(n):
        if any(s[i] != first[i] for s in sequences[1:]):
            return i
    return n


def suffix_flops(text_config: Any, past: int, new: int) -> float:
    """FLOPs of ``new`` tokens of one row after ``past`` cached tokens."""
    return text_flops(text_config, past + new) - (text_flops(text_config, past) if past else 0.0)


def _grids(p: Any) -> list[list[int]]:
    return p.image_grid_thw.tolist() if getattr(p, "image_grid_thw", None) is not None else []


def useful_work(
    config: Any,
    prepared: Sequence[Any],
    groups: Sequence[Sequence[int]],
    *,
    shared: bool,
    min_shared_prefix_tokens: int = 0,
) -> tuple[int, float]:
    """``(useful tokens, useful FLOPs)`` of scoring ``prepared`` (PreparedSamples) sent as ``groups``
    (sample indices); ``shared``: a group's common prefix counts once (when it is longer than
    ``min_shared_prefix_tokens`` and its members have the same images and no video)."""
    tc, vc = config.text_config, config.vision_config
    tokens, flops = 0, 0.0
    for members in groups:
        by_images: dict[tuple[str, ...], list[Any]] = {}
        for i in members:
            p = prepared[i]
            key = tuple(p.image_digests) if shared and not p.has_video else ("alone", str(i))
            by_images.setdefault(key, []).append(p)
        for subgroup in by_images.values():
            ids = [p.input_ids.tolist() for p in subgroup]
            prefix = common_prefix(ids) if len(subgroup) > 1 else 0
            if prefix <= min_shared_prefix_tokens:
                prefix = 0
            if prefix == 0:
                for p in subgroup:
                    tokens += p.num_tokens
                    flops += text_flops(tc, p.num_tokens) + (
                        vision_flops(vc, _grids(p)) if _grids(p) else 0.0
                    )
                continue
            # Never the whole of a sample: its last token must run with its own suffix.
            prefix = min(prefix, min(p.num_tokens for p in subgroup) - 1)
            grids = _grids(subgroup[0])
            tokens += prefix + sum(p.num_tokens - prefix for p in subgroup)
            flops += text_flops(tc, prefix) + (vision_flops(vc, grids) if grids else 0.0)
            flops += sum(suffix_flops(tc, prefix, p.num_tokens - prefix) for p in subgroup)
    return tokens, flops


@dataclass
class ExecutedWork:
    """FLOPs the model ran, added up call by call (see the module docstring)."""

    text_config: Any
    vision_config: Any
    flops: float = 0.0

    def language_call(self, rows: int, new_tokens: int, past_tokens: int) -> None:
        self.flops += rows * suffix_flops(self.text_config, past_tokens, new_tokens)

    def vision_call(self, grids: Sequence[Sequence[int]]) -> None:
        if grids:
            self.flops += vision_flops(self.vision_config, grids)
