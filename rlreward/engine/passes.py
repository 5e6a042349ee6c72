"""Running planned forward passes safely: out-of-memory back-off, failure isolation, token counters.

:class:`PassRunner` runs a :class:`~rlreward.engine.batching.ForwardPass` on a model that offers
``forward(batch)``, ``prefix_kv(heads)`` and ``suffix_scores(prefix, rows)`` (the
:class:`~rlreward.engine.scorer.Scorer`). Contract:

* Results come back per sample index; a sample that cannot be scored gets ``internal_error``, its
  neighbours are unaffected. A failed pass is split **in halves** (recursively) until the failing
  sample is alone: never one by one.
* Out of memory (``torch.OutOfMemoryError``, or a ``RuntimeError`` saying "out of memory"): the
  ``except`` block is left first, every reference to the failed pass's tensors dropped (the frames of
  its traceback collected), the device cache released, then the token budget of later plans lowered to
  half the failed pass's cost (:attr:`PassRunner.budget_tokens`, reported in the scorer's
  ``info()``/``engine_stats()``), and the pass split in halves.
* A shared pass (prefix once, suffixes against its KV) that fails for another reason, or whose single
  group/row still runs out of memory, falls back to unshared passes for its samples; each such fallback
  is counted (``shared_path_failures``) and logged as a warning, never silent.
* ``computed_tokens`` (tokens run through the language model, padding included; a shared pass's
  prefix once) and ``useful_tokens`` (each group's prefix once + every real suffix token; unshared:
  every sample's tokens) are counted for every pass that ran.
"""

from __future__ import annotations

import gc
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rlreward.engine.batching import ForwardPass, collate, plan_batches
from rlreward.engine.preprocess import PreparedSample
from rlreward.schema import ErrorCode, ScoreResult

log = logging.getLogger("rlreward")

#: The token budget never drops below this after out-of-memory back-offs.
MIN_BUDGET_TOKENS = 64


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a device (or host allocator) out-of-memory error."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


@dataclass
class _Failure:
    """What is kept of a failed pass: its kind and message, never the exception (which would pin its
    traceback's frames, and with them the pass's tensors)."""

    oom: bool
    message: str


@dataclass
class EngineCounters:
    """Cumulative pass counters of one scorer (see the module docstring)."""

    forward_passes: int = 0
    prefix_passes: int = 0
    computed_tokens: int = 0
    useful_tokens: int = 0
    shared_path_failures: int = 0
    out_of_memory: int = 0
    recent: deque = field(default_factory=lambda: deque(maxlen=256))

    def add(self, kind: str, rows: int, computed: int, useful: int) -> None:
        self.forward_passes += 1
        self.prefix_passes += kind == "prefix"
        self.computed_tokens += computed
        self.useful_tokens += useful
        self.recent.append({"kind": kind, "rows": rows, "computed_tokens": computed, "useful_tokens": useful})


@dataclass
class PrefixKV:
    """The keys/values of a batch of prefixes (one row per group), kept for its suffix passes.

    ``layers[l] = (keys, values)`` of shape [groups, kv_heads, width, head_dim]; ``mask`` [groups,
    width] marks each row's real prefix tokens (the rest is padding)."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    mask: torch.Tensor
    width: int


class PassRunner:
    """Runs planned passes for ``model`` (see the module docstring); ``budget_tokens`` starts at the
    configured ``max_batch_tokens`` and only goes down (after an out-of-memory error)."""

    def __init__(self, model: Any, budget_tokens: int) -> None:
        self.model = model
        self.budget_tokens = budget_tokens
        self.counters = EngineCounters()

    # -- helpers ----------------------------------------------------------------------------------
    def _attempt(self, fn: Callable[[], Any]) -> tuple[Any, _Failure | None]:
        try:
            return fn(), None
        except Exception as exc:
            return None, _Failure(is_out_of_memory(exc), f"{type(exc).__name__}: {exc}")

    def _after_oom(self, cost_tokens: float) -> None:
        """Free what the failed pass held (outside its ``except`` block) and lower the budget."""
        gc.collect()  # traceback frames sit in reference cycles: collect them with their tensors
        device = getattr(self.model, "device", None)
        if isinstance(device, torch.device) and device.type == "cuda":
            torch.cuda.empty_cache()
        self.counters.out_of_memory += 1
        lowered = max(MIN_BUDGET_TOKENS, min(self.budget_tokens, int(cost_tokens) // 2))
        if lowered < self.budget_tokens:
            log.warning(
                "out of memory on a pass of %d token-equivalents: token budget lowered %d -> %d",
                int(cost_tokens),
                self.budget_tokens,
                lowered,
            )
            self.budget_tokens = lowered

    def _results(self, idx: Sequence[int], scores: list[float]) -> dict[int, ScoreResult]:
        return {
            i: ScoreResult(score=s)
            if math.isfinite(s)
            else ScoreResult.failed(ErrorCode.INTERNAL, f"the model produced a non-finite score ({s})")
            for i, s in zip(idx, scores)
        }

    # -- passes -----------------------------------------------------------------------------------
    def run(self, fp: ForwardPass, items: Sequence[PreparedSample]) -> dict[int, ScoreResult]:
        """Results of every sample of ``fp`` (indices into ``items``)."""
        if fp.shared:
            return self._shared(fp, items)
        return self._unshared(fp.indices, items)

    def _unshared(self, idx: Sequence[int], items: Sequence[PreparedSample]) -> dict[int, ScoreResult]:
        m = self.model
        rows = [items[i] for i in idx]
        width = max(s.num_tokens for s in rows)
        scores, failure = self._attempt(
            lambda: m.forward(
                collate(rows, m.preprocessor.pad_token_id, m.config.batching.padding_side)
            ).tolist()
        )
        if failure is None:
            self.counters.add("unshared", len(idx), width * len(idx), sum(items[i].num_tokens for i in idx))
            return self._results(idx, scores)
        return self._split(idx, failure, width * len(idx), lambda part: self._unshared(part, items))

    def _split(
        self,
        idx: Sequence[int],
        failure: _Failure,
        cost: float,
        again: Callable[[Sequence[int]], dict[int, ScoreResult]],
    ) -> dict[int, ScoreResult]:
        """After a failed pass of ``idx``: one sample gets the error; more are split in halves."""
        if failure.oom:
            self._after_oom(cost)
        if len(idx) == 1:
            log.error("forward pass failed for one sample: %s", failure.message)
            return {idx[0]: ScoreResult.failed(ErrorCode.INTERNAL, f"forward pass failed: {failure.message}")}
        log.warning(
            "forward pass of %d samples failed (%s); splitting it in halves", len(idx), failure.message
        )
        half = len(idx) // 2
        return {**again(idx[:half]), **again(idx[half:])}

    def _fallback(
        self, idx: Sequence[int], items: Sequence[PreparedSample], why: str
    ) -> dict[int, ScoreResult]:
        """Score ``idx`` without prefix sharing after a shared-path failure (counted, logged)."""
        self.counters.shared_path_failures += 1
        log.warning("shared-prefix pass failed (%s); scoring its %d samples unshared", why, len(idx))
        bc = self.model.config.batching
        lengths = [items[i].num_tokens for i in idx]
        out: dict[int, ScoreResult] = {}
        for chunk in plan_batches(lengths, self.budget_tokens, bc.max_batch_size, bc.min_padding_efficiency):
            out.update(self._unshared([idx[c] for c in chunk], items))
        return out

    def _shared(self, fp: ForwardPass, items: Sequence[PreparedSample]) -> dict[int, ScoreResult]:
        m = self.model
        heads = [(items[members[0]], p) for members, p in fp.segments]
        width = max(p for _, p in fp.segments)
        prefix, failure = self._attempt(lambda: m.prefix_kv(heads))
        if failure is not None:
            cost = len(fp.segments) * width * (1 + m.kv_tokens_per_token)
            if failure.oom:
                self._after_oom(cost)
                if len(fp.segments) > 1:
                    half = len(fp.segments) // 2
                    out: dict[int, ScoreResult] = {}
                    for segs in (fp.segments[:half], fp.segments[half:]):
                        keep = {i for members, _ in segs for i in members}
                        chunks = [[i for i in c if i in keep] for c in fp.chunks]
                        out.update(self._shared(ForwardPass(segs, [c for c in chunks if c]), items))
                    return out
            return self._fallback(fp.indices, items, failure.message)
        self.counters.add(
            "prefix", len(fp.segments), len(fp.segments) * width, sum(p for _, p in fp.segments)
        )
        group_of = {i: g for g, (members, p) in enumerate(fp.segments) for i in members}
        prefix_of = {i: p for members, p in fp.segments for i in members}
        out = {}
        try:
            for chunk in fp.chunks:
                out.update(self._chunk(prefix, chunk, group_of, prefix_of, items))
        finally:
            del prefix
        return out

    def _chunk(
        self,
        prefix: Any,
        idx: Sequence[int],
        group_of: dict[int, int],
        prefix_of: dict[int, int],
        items: Sequence[PreparedSample],
    ) -> dict[int, ScoreResult]:
        m = self.model
        rows = [(group_of[i], items[i], prefix_of[i]) for i in idx]
        suffix = [s.num_tokens - p for _, s, p in rows]
        scores, failure = self._attempt(lambda: m.suffix_scores(prefix, rows).tolist())
        if failure is None:
            self.counters.add("suffix", len(idx), max(suffix) * len(idx), sum(suffix))
            return self._results(idx, scores)
        cost = len(idx) * (max(suffix) + prefix.width * m.kv_tokens_per_token)
        if len(idx) == 1:
            if failure.oom:
                self._after_oom(cost)
            return self._fallback(idx, items, failure.message)
        return self._split(
            idx, failure, cost, lambda part: self._chunk(prefix, part, group_of, prefix_of, items)
        )
