"""``RewardReplica``: one model replica on Ray Serve.

Contract (what callers and Serve see):

* ``__init__`` loads the :class:`~rlreward.engine.scorer.Scorer` and runs a warm-up forward pass (text and
  an image) before the replica takes traffic; a model that cannot score fails the deployment.
* ``await score(samples) -> list[ScoreResult]``: ``results[i]`` belongs to ``samples[i]``; it never
  raises for bad samples (they get their error result). Each request's handler awaits its own
  samples' futures, so Serve's accounting (ongoing requests, backpressure) counts requests.
* **Continuous batching**, per sample: a request's samples are prepared in a thread pool (also while
  a forward pass runs) and queued together; one engine task runs forward passes back to back, each
  time cutting the next batch from everything queued (:func:`cut_batch`: oldest first, a prefix
  group kept together, under ``max_batch_tokens`` and ``max_batch_size``). No wait while the device
  is busy; when idle, the first sample waits at most ``batch_wait_timeout_s``. The forward pass runs
  in a worker thread; the event loop never blocks on the model.
* **Bounded bytes**: past ``max_queued_bytes`` of prepared samples held (shared tensors once), a
  request gets :class:`QueueBytesFull` (503 + ``Retry-After``); an empty replica admits any one.
* ``check_health`` fails when the device cannot score a probe, or a forward pass runs past
  ``stuck_forward_s``. Sleep and wake (``sleep(level)``, ``wake()``; a request wakes a sleeper; a
  failed wake: unhealthy), the board loop, the phase timer, the cold-start split: :mod:`.replica_sleep`.
* ``record_autoscaling_stats`` reports ``backlog_samples`` (accepted, not yet answered);
  ``stats()`` returns counters and recent batch compositions; ``info()`` is what ``/v1/models``
  shows; metrics go out through ``ray.serve.metrics`` (``rlreward_*``; the list: docs/serving.md).

Imports neither torch nor the scorer at import time (the controller and the ingress load it).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ray import serve
from ray.serve.exceptions import BackPressureError

from rlreward.engine.protocol import ScoringEngine
from rlreward.errors import ReplicaUnhealthy
from rlreward.schema import ErrorCode, ScoreResult
from rlreward.serving.replica_sleep import SleepMixin

log = logging.getLogger("rlreward")

_RECENT_BATCHES = 256
#: Default bound on the bytes of prepared samples one replica holds (``replica.max_queued_bytes``).
DEFAULT_MAX_QUEUED_BYTES = 512 << 20


class QueueBytesFull(BackPressureError):
    """A replica refused a request: its prepared samples already fill ``max_queued_bytes``."""

    def __init__(
        self, queued_bytes: int, max_queued_bytes: int, status_code: int = 503, retry_after_s: float = 1.0
    ) -> None:
        # The same four positional arguments as BackPressureError: the error is pickled to the caller.
        super().__init__(queued_bytes, max_queued_bytes, status_code, retry_after_s)
        self._message = (
            f"the reward replica holds {queued_bytes} bytes of prepared samples, its bound is "
            f"max_queued_bytes={max_queued_bytes}: retry after {retry_after_s:g}s (RewardClient does) "
            "or add replicas"
        )


def tensor_storages(prepared: Any) -> dict[int, int]:
    """``{storage address: bytes}`` of every tensor a prepared sample holds (pixels, ids, grids);
    tensors sharing one storage (views, a group's shared pixel tensor) appear once."""
    out: dict[int, int] = {}
    for value in vars(prepared).values():
        storage = getattr(value, "untyped_storage", None)
        if storage is None:
            continue
        st = storage()
        if st.nbytes():
            out[st.data_ptr()] = st.nbytes()
    return out


class QueueBytes:
    """The bytes of the prepared samples a replica holds, each tensor storage counted once (a storage
    shared by many queued samples is counted while any of them is held)."""

    def __init__(self) -> None:
        self._refs: dict[int, list[int]] = {}  # storage address -> [bytes, holders]
        self.bytes = 0
        self.peak = 0

    def add(self, prepared: Sequence[Any]) -> list[int]:
        """Count ``prepared`` (PreparedSamples; other items are skipped); returns the keys to release."""
        keys: list[int] = []
        for p in prepared:
            if isinstance(p, ScoreResult):
                continue
            for ptr, nbytes in tensor_storages(p).items():
                entry = self._refs.get(ptr)
                if entry is None:
                    self._refs[ptr] = [nbytes, 1]
                    self.bytes += nbytes
                else:
                    entry[1] += 1
                keys.append(ptr)
        self.peak = max(self.peak, self.bytes)
        return keys

    def release(self, keys: Sequence[int]) -> None:
        for ptr in keys:
            entry = self._refs[ptr]
            entry[1] -= 1
            if entry[1] == 0:
                del self._refs[ptr]
                self.bytes -= entry[0]


@dataclass(frozen=True)
class _Pending:
    """A queued sample: its prepared form, the future its request awaits, and its prefix-group key."""

    prepared: Any  # rlreward.engine.preprocess.PreparedSample
    future: asyncio.Future
    request: int
    group: Hashable
    enqueued: float  # time.monotonic()


def cut_batch(
    queue: Sequence[_Pending], budget_tokens: int, max_samples: int
) -> tuple[list[_Pending], list[_Pending]]:
    """Split ``queue`` (arrival order) into the next batch and what stays queued (order kept).

    Samples whose future is already done (their request was cancelled) are dropped. The batch takes
    samples in the order of their group's first arrival (samples of one group adjacent, oldest group
    first) while the batch's padded tokens (longest sample x samples) stay within ``budget_tokens`` and
    its samples within ``max_samples``; the first sample is always taken, so an over-long sample runs
    alone instead of being refused. Then every other queued member of a group the batch has started joins
    it (up to ``max_samples``), so a group is split only by the sample cap or when the group alone is
    over the budget (the scorer still plans its forward passes under its own token budget).
    """
    live = [p for p in queue if not p.future.done()]
    order: dict[Hashable, list[_Pending]] = {}
    for p in live:
        order.setdefault(p.group, []).append(p)
    ranked = [p for members in order.values() for p in members]
    batch: list[_Pending] = []
    longest = 0
    for p in ranked:
        n = p.prepared.num_tokens
        rows = len(batch) + 1
        if batch and (rows > max_samples or max(longest, n) * rows > budget_tokens):
            break
        batch.append(p)
        longest = max(longest, n)
    taken = {id(p) for p in batch}
    started = {p.group for p in batch}
    for p in ranked:
        if len(batch) >= max_samples:
            break
        if id(p) not in taken and p.group in started:
            batch.append(p)
            taken.add(id(p))
    return batch, [p for p in live if id(p) not in taken]


class RewardReplica(SleepMixin):
    """Serve deployment class (decorated below). See the module docstring for the contract."""

    def __init__(
        self,
        scorer_config: dict[str, Any],
        preprocess_threads: int = 4,
        stuck_forward_s: float = 600.0,
        engine: ScoringEngine | None = None,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
        sleep: dict[str, Any] | None = None,
        health: dict[str, Any] | None = None,
    ):
        """``engine`` (tests): a ready :class:`~rlreward.engine.protocol.ScoringEngine` to serve
        instead of loading :class:`~rlreward.engine.scorer.Scorer` from ``scorer_config``.
        ``sleep``: :class:`rlreward.serving.config.SleepOptions` (the phase timer), None = no timer.
        ``health``: :class:`rlreward.serving.config.HealthOptions` and its board's name (canaries)."""
        from rlreward.serving.health_replica import ReplicaHealth

        t0 = time.perf_counter()
        self._init_sleep(sleep)
        if engine is None:
            t_imports = time.perf_counter()
            from rlreward.engine.config import ScorerConfig
            from rlreward.engine.scorer import Scorer

            t_load = time.perf_counter()
            self._cold["imports_s"] = t_load - t_imports
            engine = Scorer.from_config(ScorerConfig.model_validate(scorer_config))
            split = dict(getattr(engine, "load_split", None) or {})
            self._cold["device_copy_s"] = split.get("device_copy_s", 0.0)
            self._cold["weight_load_s"] = time.perf_counter() - t_load - self._cold["device_copy_s"]
        self.scorer = engine
        config = engine.config
        self._pool = ThreadPoolExecutor(preprocess_threads, thread_name_prefix="rlreward-prepare")
        self._health = ReplicaHealth(health)
        self._device_lock = threading.Lock()  # score_prepared owns the device: one caller at a time
        self._stuck_forward_s = stuck_forward_s
        self._forward_started: float | None = None
        self._requests = itertools.count()
        self._backlog = 0
        # Bounded queue in bytes (module docstring): held bytes, bytes expected from requests in
        # preparation, and the mean bytes per prepared sample seen (None before the first request is
        # prepared: requests arriving meanwhile wait for it rather than guess).
        self._max_queued_bytes = int(max_queued_bytes)
        self._held = QueueBytes()
        self._preparing_bytes = 0
        self._preparing = 0
        self._bytes_per_sample: float | None = None
        self._refused = 0
        self._stats: dict[str, Any] = {"samples": 0, "errors": 0, "requests": 0, "batches": 0, "tokens": 0}
        self._error_codes: dict[str, int] = {}
        self._recent: deque[dict[str, int]] = deque(maxlen=_RECENT_BATCHES)
        self._budget_tokens = config.batching.max_batch_tokens
        self._max_samples = config.batching.max_batch_size
        self._batch_wait_s = 0.01
        # Continuous batching: queued samples and the engine task that drains them (one per event loop).
        self._queue: list[_Pending] = []
        self._wake: asyncio.Event | None = None
        self._engine_task: asyncio.Task | None = None
        self._engine_loop: asyncio.AbstractEventLoop | None = None
        # Warm-up before traffic: compile kernels, allocate, and prove the model scores.
        vision = getattr(getattr(self.scorer, "family", None), "vision", True)  # a text RM: no image
        self._probe = self.scorer.prepare(_probe_sample(vision))
        if isinstance(self._probe, ScoreResult):
            raise RuntimeError(f"the warm-up sample could not be prepared: {self._probe.error}")
        t_warm = time.perf_counter()
        self._check_device()
        self._cold["warm_up_s"] = time.perf_counter() - t_warm
        self._init_metrics()
        self._start_control()
        ctx = _replica_context()
        log.info(
            "rlreward replica %s ready in %.1fs: %s",
            ctx.get("replica_id"),
            time.perf_counter() - t0,
            {k: v for k, v in self.scorer.info().items() if k != "limits"},
        )

    # -- configuration (Serve user_config) ----------------------------------------------------------
    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply :class:`rlreward.serving.config.ReplicaBatching` (``None`` fields = the scorer's)."""
        batching = self.scorer.config.batching
        self._max_samples = int(user_config.get("max_batch_size") or batching.max_batch_size)
        self._budget_tokens = int(user_config.get("max_batch_tokens") or batching.max_batch_tokens)
        self._batch_wait_s = float(user_config.get("batch_wait_timeout_s", 0.01))

    def _init_metrics(self) -> None:
        from ray.serve import metrics

        self._m_samples = metrics.Counter(
            "rlreward_samples", description="Samples answered, by outcome (ok/error).", tag_keys=("outcome",)
        )
        self._m_errors = metrics.Counter(
            "rlreward_sample_errors",
            description="Samples answered with an error, by code.",
            tag_keys=("code",),
        )
        self._m_tokens = metrics.Counter(
            "rlreward_tokens", description="Real tokens scored (visual included)."
        )
        self._m_batch = metrics.Histogram(
            "rlreward_batch_samples",
            description="Samples per replica batch.",
            boundaries=[1, 2, 4, 8, 16, 32, 64, 128, 256],
        )
        self._m_padded = metrics.Histogram(
            "rlreward_batch_padded_tokens",
            description="Padded tokens (longest x samples) per replica batch.",
            boundaries=[256, 1024, 4096, 16384, 65536, 262144],
        )
        self._m_forward = metrics.Histogram(
            "rlreward_forward_latency_ms",
            description="Time to score one replica batch.",
            boundaries=[5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000],
        )
        self._m_request = metrics.Histogram(
            "rlreward_request_latency_ms",
            description="Time to answer one score request.",
            boundaries=[5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 120000],
        )
        self._m_backlog = metrics.Gauge(
            "rlreward_backlog_samples", description="Samples accepted by this replica and not yet answered."
        )
        self._m_engine = {
            key: metrics.Counter(f"rlreward_{key}", description=text)
            for key, text in (
                ("shared_path_failures", "Shared-prefix passes that failed and were scored unshared."),
                ("out_of_memory", "Forward passes that ran out of memory (split in halves, budget lowered)."),
                (
                    "computed_tokens",
                    "Tokens run through the language model (padding included, prefixes once).",
                ),
                ("useful_tokens", "Each group's prefix once plus every real suffix token."),
            )
        }
        self._engine_seen: dict[str, int] = {}

    # -- scoring ----------------------------------------------------------------------------------
    async def score(self, samples: list[Any]) -> list[ScoreResult]:
        """Score ``samples``; ``results[i]`` belongs to ``samples[i]``. Never raises for bad input."""
        results, _ = await self.score_with_tokens(samples)
        return results

    async def score_with_tokens(self, samples: list[Any]) -> tuple[list[ScoreResult], list[int]]:
        """:meth:`score`, plus each sample's token count (0 where preprocessing failed): the
        ``usage`` the vLLM-style routes report."""
        if not isinstance(samples, (list, tuple)):
            return [ScoreResult.failed(ErrorCode.INVALID_SAMPLE, "samples must be a list")], [0]
        self._start_control()
        if self._unhealthy is not None:
            raise ReplicaUnhealthy(self._unhealthy)
        t0 = time.perf_counter()
        self._touch()
        n = len(samples)
        expected = await self._admit(n)
        self._backlog += n
        self._m_backlog.set(self._backlog)
        keys: list[int] = []
        try:
            loop = asyncio.get_running_loop()
            try:
                prepared = await asyncio.gather(
                    *(loop.run_in_executor(self._pool, self.scorer.prepare, s) for s in samples)
                )
            finally:
                self._preparing -= 1
                self._preparing_bytes -= expected
            keys = self._held.add(prepared)
            self._learn_bytes(prepared)
            request = next(self._requests)
            results = await self._submit(request, prepared)
        finally:
            self._held.release(keys)
            self._backlog -= n
            self._m_backlog.set(self._backlog)
        self._account(results)
        self._m_request.observe((time.perf_counter() - t0) * 1000)
        tokens = [p.num_tokens if not isinstance(p, ScoreResult) else 0 for p in prepared]
        return list(results), tokens

    async def _admit(self, n: int) -> int:
        """Admit a request of ``n`` samples under ``max_queued_bytes`` (or raise :class:`QueueBytesFull`);
        returns the bytes it is expected to add while it is prepared."""
        # Until a first request is prepared the size of a sample is unknown: later ones wait for it.
        while self._bytes_per_sample is None and self._preparing > 0:
            await asyncio.sleep(0.005)
        held = self._held.bytes + self._preparing_bytes
        per_sample = self._bytes_per_sample or 0.0
        expected = round(n * per_sample)
        idle = self._held.bytes == 0 and self._preparing == 0
        if held + expected > self._max_queued_bytes and not idle:
            self._refused += 1
            raise QueueBytesFull(held, self._max_queued_bytes)
        self._preparing += 1
        self._preparing_bytes += expected
        return expected

    def _learn_bytes(self, prepared: Sequence[Any]) -> None:
        """Update the mean bytes per prepared sample (an exponential average over requests)."""
        storages: dict[int, int] = {}
        count = 0
        for p in prepared:
            if not isinstance(p, ScoreResult):
                storages.update(tensor_storages(p))
                count += 1
        if count:
            mean = sum(storages.values()) / count
            prev = self._bytes_per_sample
            self._bytes_per_sample = mean if prev is None else 0.8 * prev + 0.2 * mean

    async def score_with_health(
        self, samples: list[Any]
    ) -> tuple[list[ScoreResult], list[int], list[list[Any] | None]]:
        """:meth:`score_with_tokens`, plus each sample's reward-health identity ``[conversation digest,
        answer digest, answer tokens]`` (None if malformed), computed in the preparation pool."""
        self._health.ensure_canary(self._canary_score, self.stats)
        if not isinstance(samples, (list, tuple)):
            results, tokens = await self.score_with_tokens(samples)
            return results, tokens, [None] * len(results)
        tokenizer = getattr(getattr(self.scorer, "processor", None), "tokenizer", None)
        infos = asyncio.get_running_loop().run_in_executor(
            self._pool, self._health.sample_infos, tokenizer, samples
        )
        results, tokens = await self.score_with_tokens(samples)
        return results, tokens, await infos

    async def score_alone(self, samples: list[Any]) -> list[ScoreResult]:
        """Score ``samples`` in a forward pass of their own, never batched with traffic (canaries: the
        same composition every time, so a change in their scores is a change in the replica)."""
        loop = asyncio.get_running_loop()
        prepared = await asyncio.gather(
            *(loop.run_in_executor(self._pool, self.scorer.prepare, s) for s in samples)
        )
        return await asyncio.to_thread(self._forward, list(prepared))

    async def _canary_score(self, samples: list[Any]) -> list[ScoreResult]:
        """:meth:`score_alone` for the canary loop, once the replica is awake: a canary never wakes a
        sleeping replica (the sleep would be lost for a probe)."""
        while self._state != "awake":
            await asyncio.sleep(1.0)
        return await self.score_alone(samples)

    # -- continuous batching engine ---------------------------------------------------------------
    def _group_key(self, p: Any, request: int, i: int) -> Hashable:
        """Samples that may share a prefix (same images, same first tokens) get the same key."""
        bc = self.scorer.config.batching
        if not bc.prefix_sharing or p.has_video or p.num_tokens <= bc.min_shared_prefix_tokens:
            return ("alone", request, i)
        return (tuple(p.image_digests), tuple(p.input_ids[: bc.min_shared_prefix_tokens].tolist()))

    def _ensure_engine(self) -> None:
        loop = asyncio.get_running_loop()
        if self._engine_loop is not loop:
            # A new event loop (in-process use: one asyncio.run per call); futures of another loop
            # cannot be awaited here, and that loop's requests have all returned.
            self._engine_loop, self._queue, self._wake = loop, [], asyncio.Event()
            self._engine_task = None
        if self._engine_task is None or self._engine_task.done():
            self._engine_task = loop.create_task(self._engine(), name="rlreward-engine")

    async def _submit(self, request: int, prepared: list[Any]) -> list[ScoreResult]:
        """Queue a request's prepared samples together and await their results (errors pass through)."""
        self._ensure_engine()
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        waits: list[asyncio.Future | ScoreResult] = []
        for i, p in enumerate(prepared):
            if not isinstance(p, ScoreResult):
                fut = loop.create_future()
                self._queue.append(_Pending(p, fut, request, self._group_key(p, request, i), now))
                waits.append(fut)
            else:
                waits.append(p)
        self._wake.set()  # type: ignore[union-attr]
        futures = [w for w in waits if isinstance(w, asyncio.Future)]
        try:
            if futures:
                await asyncio.gather(*futures)
        except BaseException:
            for f in futures:  # cancelled request: the engine drops its queued samples
                f.cancel()
            raise
        return [w.result() if isinstance(w, asyncio.Future) else w for w in waits]

    async def _engine(self) -> None:
        """Run forward passes back to back while samples are queued (see the module docstring)."""
        wake = self._wake
        assert wake is not None
        while True:
            if not self._queue:
                wake.clear()
                await wake.wait()
                continue
            if self._batch_wait_s > 0:
                # The device is idle: the first queued sample waits at most batch_wait_timeout_s.
                deadline = self._queue[0].enqueued + self._batch_wait_s
                while time.monotonic() < deadline and not self._queue_full():
                    wake.clear()
                    try:
                        await asyncio.wait_for(wake.wait(), max(0.0, deadline - time.monotonic()))
                    except asyncio.TimeoutError:
                        break
            batch, self._queue = cut_batch(self._queue, self._budget_tokens, self._max_samples)
            if not batch:
                continue
            try:
                results = await self._score_batch(batch)
            except ReplicaUnhealthy as exc:  # the wake failed: the callers get 503 and retry elsewhere
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            except Exception as exc:  # _score_batch isolates failures; never let the engine die
                log.exception("replica engine failed on a batch of %d samples", len(batch))
                results = [ScoreResult.failed(ErrorCode.INTERNAL, f"batch failed: {exc}")] * len(batch)
            for p, r in zip(batch, results):
                if not p.future.done():
                    p.future.set_result(r)
            # Let handlers whose futures resolved run, and preparation results queue, before the next cut.
            await asyncio.sleep(0)

    def _queue_full(self) -> bool:
        live = [p for p in self._queue if not p.future.done()]
        if len(live) >= self._max_samples:
            return True
        return max((p.prepared.num_tokens for p in live), default=0) * len(live) >= self._budget_tokens

    async def _score_batch(self, slots: list[_Pending]) -> list[ScoreResult]:
        items = [s.prepared for s in slots]
        t0 = time.perf_counter()
        try:
            results = await asyncio.to_thread(self._forward, items)
        except ReplicaUnhealthy:
            raise
        except Exception as exc:  # score_prepared isolates samples; this is a last line of defence
            log.exception("replica batch of %d samples failed", len(items))
            results = [
                ScoreResult.failed(ErrorCode.INTERNAL, f"batch failed: {type(exc).__name__}: {exc}")
            ] * len(items)
        elapsed_ms = (time.perf_counter() - t0) * 1000
        tokens = sum(p.num_tokens for p in items)
        padded = max(p.num_tokens for p in items) * len(items)
        self._stats["batches"] += 1
        self._stats["tokens"] += tokens
        self._recent.append(
            {
                "samples": len(items),
                "requests": len({s.request for s in slots}),
                "groups": len({s.group for s in slots}),
                "tokens": tokens,
                "padded_tokens": padded,
                "ms": round(elapsed_ms, 2),
            }
        )
        self._m_batch.observe(len(items))
        self._m_padded.observe(padded)
        self._m_tokens.inc(tokens)
        self._m_forward.observe(elapsed_ms)
        self._export_engine_counters()
        return results

    def _export_engine_counters(self) -> None:
        """Add the scorer's counter increments since the last batch to the replica's metrics."""
        now = _engine_stats(self.scorer)
        for key, counter in getattr(self, "_m_engine", {}).items():
            delta = int(now.get(key, 0)) - self._engine_seen.get(key, 0)
            if delta > 0:
                counter.inc(delta)
            self._engine_seen[key] = int(now.get(key, 0))

    def _forward(self, items: list[Any]) -> list[ScoreResult]:
        with self._device_lock:
            self._wake_locked()  # a request that reaches a sleeping replica wakes it
            self._forward_started = started = time.monotonic()
            try:
                results = self.scorer.score_prepared(items)
            finally:
                self._forward_started = None
            self._note_first_scoring(time.monotonic() - started)
            return results

    def _account(self, results: list[ScoreResult]) -> None:
        errors = [r.error.code for r in results if r.error is not None]
        self._stats["requests"] += 1
        self._stats["samples"] += len(results)
        self._stats["errors"] += len(errors)
        if len(results) > len(errors):
            self._m_samples.inc(len(results) - len(errors), tags={"outcome": "ok"})
        if errors:
            self._m_samples.inc(len(errors), tags={"outcome": "error"})
        for code in errors:
            self._error_codes[code] = self._error_codes.get(code, 0) + 1
            self._m_errors.inc(1, tags={"code": code})

    # -- health, autoscaling, introspection ------------------------------------------------------------
    def _check_device(self) -> None:
        with self._device_lock:
            if getattr(self.scorer, "sleep_level", 0):
                return  # fell asleep since the caller looked: nothing on the device to probe
            (result,) = self.scorer.score_prepared([self._probe])
            _sync_device(self.scorer.device)
        if not result.ok:
            raise RuntimeError(f"the probe sample did not score: {result.error.code}: {result.error.message}")

    async def check_health(self) -> None:
        """Raise if the replica cannot score (Serve replaces it after repeated failures): its wake from
        sleep failed, or the device cannot score a probe. A sleeping replica is healthy (not probed)."""
        self._health.ensure_canary(self._canary_score, self.stats)
        self._start_control()
        if self._unhealthy is not None:
            raise RuntimeError(self._unhealthy)
        if self._state != "awake":
            return
        started = self._forward_started
        if started is not None:
            running = time.monotonic() - started
            if running > self._stuck_forward_s:
                raise RuntimeError(f"a forward pass has been running for {running:.0f}s (stuck_forward_s)")
            return  # busy and making progress: the device answers
        if self._device_lock.locked():
            return
        await asyncio.to_thread(self._check_device)

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Custom autoscaling metric: samples accepted and not yet answered."""
        return {"backlog_samples": float(self._backlog)}

    def stats(self) -> dict[str, Any]:
        """Counters since start and the most recent batches (samples, requests, tokens, ms)."""
        return {
            **_replica_context(),
            **self._stats,
            "backlog_samples": self._backlog,
            "error_codes": dict(self._error_codes),
            "recent_batches": list(self._recent),
            "max_batch_tokens": self._budget_tokens,
            "max_batch_size": self._max_samples,
            "batch_wait_timeout_s": self._batch_wait_s,
            "queued_samples": len(self._queue),
            "queued_bytes": self._held.bytes,
            "peak_queued_bytes": self._held.peak,
            "max_queued_bytes": self._max_queued_bytes,
            "refused_requests": self._refused,
            "cpu_s": _process_cpu_s(),
            **_engine_stats(self.scorer),
            **self._sleep_stats(),
        }

    def info(self) -> dict[str, Any]:
        """Model facts for ``/v1/models`` (model, head shape, dtype, device, limits), the effective
        preprocessing, and the batch budget in effect on this replica (after ``user_config``)."""
        info = self.scorer.info()
        live = {"max_batch_tokens": self._budget_tokens, "max_batch_size": self._max_samples}
        wait = getattr(self, "_batch_wait_s", None)
        if wait is not None:
            live["batch_wait_timeout_s"] = wait
        return {**info, **live, "batching": {**(info.get("batching") or {}), **live}}


def _engine_stats(engine: Any) -> dict[str, Any]:
    """The engine's pass counters (``Scorer.engine_stats``: budget in use, computed/useful tokens,
    shared-path failures, out-of-memory splits); empty for an engine without them."""
    fn = getattr(engine, "engine_stats", None)
    return fn() if callable(fn) else {}


def _process_cpu_s() -> float:
    """CPU seconds (user + system, all threads) this replica process has used."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _sync_device(device: Any) -> None:
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        torch.cuda.synchronize(device)


def _probe_sample(vision: bool = True) -> dict[str, Any]:
    """A small text+image sample (a PIL image: in-process, so no media policy applies); text only
    for a text reward model."""
    from PIL import Image

    sample: dict[str, Any] = {"prompt": "What colour is the square?", "response": "It is red."}
    if vision:
        sample["images"] = [Image.new("RGB", (56, 56), (200, 30, 30))]
    return sample


def _replica_context() -> dict[str, Any]:
    import ray

    out: dict[str, Any] = {"pid": os.getpid()}
    if not ray.is_initialized():  # in-process use (tests): do not start Ray by asking
        return out
    try:
        rc = ray.get_runtime_context()
        out["node_id"] = rc.get_node_id()
        out["actor_name"] = rc.get_actor_name()
        out["replica_id"] = serve.get_replica_context().replica_id.unique_id
    except Exception:  # outside a replica (tests calling the class directly)
        pass
    return out
