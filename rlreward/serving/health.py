"""Reward health: per-step reward statistics, alerts and canaries, aggregated exactly per application.

* **Where the numbers are kept.** One :class:`HealthBoard` per application: a small named, detached
  Ray actor (namespace ``rlreward``, name from :func:`board_name`; it exits after an hour without a
  call). Every ingress replica sends it one per-sample record per scored sample — (time, conversation
  digest, answer digest, answer tokens, score | error) — and every ``step_done`` hint, so several
  ingress and model replicas aggregate exactly: the statistics are computed from the step's samples
  themselves, never merged from partial summaries.
* **Steps.** A record belongs to the step whose time span holds its timestamp (taken at the ingress
  when the scores came back). A step closes at the ``step_done`` hint that makes as many hinting
  processes (sources) as the last step had (or ``step_done_wait_s`` after its first hint); a hint with
  no sample before it counts toward the closed step. Without hints: ``step_window_s`` of scoring.
* **Answer length** is counted on the model replica (its tokenizer, ``add_special_tokens=False``),
  in the preparation thread pool, and returned beside the scores (:mod:`rlreward.serving.health_replica`).
* **Statistics** (:func:`step_statistics`): population std, percentiles by linear interpolation,
  groups = ≥ 2 scored samples with the same conversation before the answer, zero-variance groups
  (max − min ≤ 1e-6), Spearman(answer tokens, score) with average ranks (None under 3 samples or a
  constant side), duplicate answers (conversation and answer already seen earlier in the step).
* **Alerts** (:func:`step_alerts`, thresholds :class:`rlreward.serving.config.HealthAlerts`): logged,
  exported (``rlreward_reward_alerts``), and listed by ``GET /v1/stats``.
* **Canaries** (:mod:`rlreward.serving.health_replica`): each replica scores the probe set alone every
  ``canary.interval_s``; per replica ``max_abs_drift`` against its own first scores and
  ``reference_drift`` against the application's first canary scores.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlreward.errors import awaited

log = logging.getLogger("rlreward")

HEALTH_NAMESPACE = "rlreward"
#: Alert signals, in the order they are checked.
SIGNALS = ("zero_variance_groups", "length_corr", "duplicate_answers", "error_rate", "canary_drift")
#: A group whose max − min score is at most this has no variance.
ZERO_VARIANCE_EPS = 1e-6
#: A board with no call for this long exits (its application is gone).
BOARD_IDLE_EXIT_S = 3600.0
_THROUGHPUT_WINDOW_S = 60.0
_RECENT_WITH_RECORDS = 2
_MAX_CANARY_REPLICAS = 256


def board_name(app_name: str, fingerprint: str) -> str:
    """Name of the :class:`HealthBoard` of ``app_name`` deployed with configuration ``fingerprint``."""
    return f"health:{app_name}:{fingerprint}"


def config_fingerprint(*parts: Any) -> str:
    """A short digest of JSON-able configuration parts (same config → same board)."""
    return hashlib.blake2b(json.dumps(parts, sort_keys=True, default=str).encode(), digest_size=6).hexdigest()


# -- statistics ---------------------------------------------------------------------------------------
def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks; tied values share the mean of their ranks."""
    x = np.asarray(values, dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # rank of the last of each tied run (1-based)
    return ((last - counts + 1 + last) / 2.0)[inverse]


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None under 3 pairs or a constant side."""
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / math.sqrt((rx * rx).sum() * (ry * ry).sum()))


@dataclass
class Record:
    """One answered sample as the board keeps it."""

    t: float
    conv: str | None
    answer: str | None
    tokens: int | None
    score: float | None
    error: str | None = None


def _histogram(scores: np.ndarray, bins: int = 16) -> dict[str, list]:
    lo, hi = float(scores.min()), float(scores.max())
    if hi - lo <= 0:
        hi = lo + 1e-9
    counts, edges = np.histogram(scores, bins=bins, range=(lo, hi))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def step_statistics(records: Sequence[Record], step: int = 0) -> dict[str, Any]:
    """The step's statistics (see the module docstring); ``records`` in any order."""
    records = sorted(records, key=lambda r: r.t)
    scored = [r for r in records if r.score is not None]
    errors = len(records) - len(scored)
    out: dict[str, Any] = {"step": step, "samples": len(scored), "errors": errors}
    scores = np.asarray([r.score for r in scored], dtype=np.float64)
    if len(scored):
        p05, p50, p95 = (float(v) for v in np.percentile(scores, [5, 50, 95]))
        out.update(
            mean=float(scores.mean()), std=float(scores.std()), p05=p05, p50=p50, p95=p95,
            min=float(scores.min()), max=float(scores.max()),
        )  # fmt: skip
    else:
        out.update(mean=None, std=None, p05=None, p50=None, p95=None, min=None, max=None)
    by_conv: dict[str, list[float]] = {}
    for r in scored:
        if r.conv is not None:
            by_conv.setdefault(r.conv, []).append(float(r.score))  # type: ignore[arg-type]
    groups = [g for g in by_conv.values() if len(g) >= 2]
    out["groups"] = len(groups)
    out["zero_variance_groups"] = sum(1 for g in groups if max(g) - min(g) <= ZERO_VARIANCE_EPS)
    with_len = [r for r in scored if r.tokens is not None]
    out["length_corr"] = spearman([r.tokens for r in with_len], [r.score for r in with_len])  # type: ignore[misc]
    seen: set[tuple[str | None, str]] = set()
    dups = 0
    for r in scored:
        if r.answer is None:
            continue
        key = (r.conv, r.answer)
        dups += key in seen
        seen.add(key)
    out["duplicate_answers"] = dups
    out["error_rate"] = errors / len(records) if records else 0.0
    out["histogram"] = _histogram(scores) if len(scored) else None
    return out


def step_alerts(stats: dict[str, Any], thresholds: dict[str, Any]) -> list[dict[str, Any]]:
    """The alerts a closed step raises: ``{"step", "signal", "value", "threshold"}`` each."""
    alerts = []

    def check(signal: str, value: float | None, threshold: float) -> None:
        if value is not None and value > threshold:
            alerts.append({"step": stats["step"], "signal": signal, "value": value, "threshold": threshold})

    if stats["groups"]:
        check(
            "zero_variance_groups",
            stats["zero_variance_groups"] / stats["groups"],
            thresholds["zero_variance_fraction"],
        )
    if stats["length_corr"] is not None and stats["samples"] >= thresholds["length_corr_min_samples"]:
        check("length_corr", abs(stats["length_corr"]), thresholds["length_corr"])
    if stats["samples"]:
        check(
            "duplicate_answers",
            stats["duplicate_answers"] / stats["samples"],
            thresholds["duplicate_fraction"],
        )
    check("error_rate", stats["error_rate"], thresholds["error_rate"])
    return alerts


# -- the board (one Ray actor per application) -----------------------------------------------------
@dataclass
class _Step:
    index: int
    accept_from: float  # records at or after this time belong here (unless a later step took them)
    start: float  # first record (time windows count from it)
    records: list[Record] = field(default_factory=list)
    end: float | None = None
    dropped: int = 0
    hint_sources: set[str] = field(default_factory=set)
    first_hint: float | None = None
    last_hint: float | None = None


class HealthBoard:
    """The application's reward-health state; a plain class (tests use it directly, ``clock``
    injectable), run as a named Ray actor by :func:`get_board`."""

    def __init__(self, options: dict[str, Any], clock: Callable[[], float] = time.time, metrics: bool = True):
        from rlreward.serving.config import HealthOptions

        self.options = HealthOptions.model_validate({k: v for k, v in options.items() if k != "board"})
        self._clock = clock
        self._next_index = 0
        self._open: _Step | None = None
        self._closed: deque[dict[str, Any]] = deque(maxlen=self.options.ring_steps)
        self._recent: deque[_Step] = deque(maxlen=_RECENT_WITH_RECORDS)
        self._alerts: deque[dict[str, Any]] = deque(maxlen=self.options.ring_alerts)
        self._hinted = False
        self._expected_sources = 1  # step_done senders per step (learned from the last step)
        self._last_closed: _Step | None = None
        self._late_dropped = 0
        self._totals = {"samples": 0, "errors": 0}
        self._rate: deque[tuple[float, int]] = deque()
        self._canary: dict[str, dict[str, Any]] = {}
        self._reference: list[float | None] | None = None
        self._last_call = time.monotonic()
        self._metrics = _BoardMetrics() if metrics else None

    # -- calls ----------------------------------------------------------------------------------------
    def ping(self) -> bool:
        self._last_call = time.monotonic()
        return True

    def idle_s(self) -> float:
        return time.monotonic() - self._last_call

    def record(self, records: Sequence[Sequence[Any]]) -> None:
        """``records``: ``[t, conv, answer, tokens, score, error]`` lists (:meth:`IngressHealth.record`)."""
        self.ping()
        self._roll()
        late: dict[int, _Step] = {}
        for raw in records:
            rec = Record(*raw)
            self._totals["errors" if rec.score is None else "samples"] += 1
            step = self._place(rec)
            if step is not None:
                late[step.index] = step
        for step in late.values():  # closed steps that got late records: recomputed once
            self._finish(step)
        now = self._clock()
        self._rate.append((now, len(records)))  # one entry per call, trimmed to the window
        while self._rate and self._rate[0][0] < now - _THROUGHPUT_WINDOW_S:
            self._rate.popleft()

    def step_done(self, t: float | None = None, source: str = "default") -> dict[str, Any]:
        """A ``step_done`` hint at time ``t``; ``{"closed": step index | None}``."""
        self.ping()
        t = self._clock() if t is None else t
        self._hinted = True
        self._roll()
        step = self._open
        if step is None or not any(r.t < t for r in step.records):
            # Another process's hint of the step already closed: learn how many processes hint.
            last = self._last_closed
            if last is not None:
                last.hint_sources.add(source)
                self._expected_sources = max(self._expected_sources, len(last.hint_sources))
            return {"closed": None}
        step.hint_sources.add(source)
        step.first_hint = t if step.first_hint is None else step.first_hint
        step.last_hint = t
        if len(step.hint_sources) < self._expected_sources:
            return {"closed": None, "waiting_for": self._expected_sources - len(step.hint_sources)}
        self._close(step, t)
        return {"closed": step.index}

    def canary(self, report: dict[str, Any]) -> None:
        """A replica's canary run: ``{"replica_id", "scores": [float | None], "t", ...replica stats}``."""
        self.ping()
        rid = str(report.get("replica_id"))
        scores = list(report.get("scores") or [])
        if self._reference is None and scores and all(s is not None for s in scores):
            self._reference = scores
        entry = self._canary.setdefault(
            rid, {"replica_id": rid, "first_scores": scores, "runs": 0, "failures": 0, "max_abs_drift": 0.0}
        )
        entry["runs"] += 1
        entry["failures"] += sum(1 for s in scores if s is None)
        entry["last_t"] = float(report.get("t") or self._clock())
        entry["last_scores"] = scores
        entry.update({k: v for k, v in report.items() if k not in ("scores", "t", "replica_id")})
        entry["max_abs_drift"] = max(entry["max_abs_drift"], _drift(entry["first_scores"], scores))
        ref = _drift(self._reference or [], scores)
        entry["reference_drift"] = max(entry.get("reference_drift", 0.0), ref)
        value = max(entry["max_abs_drift"], entry["reference_drift"])
        threshold = self.options.alerts.canary_drift
        if self._metrics:
            self._metrics.drift(rid, value)
        if value > threshold and not entry.get("alerted"):
            entry["alerted"] = True
            step = self._open.index if self._open else max(self._next_index - 1, 0)
            self._raise([{"step": step, "signal": "canary_drift", "value": value, "threshold": threshold,
                          "replica_id": rid}])  # fmt: skip
        if len(self._canary) > _MAX_CANARY_REPLICAS:
            oldest = min(self._canary.values(), key=lambda e: e.get("last_t", 0.0))
            del self._canary[oldest["replica_id"]]

    def snapshot(self, steps: int | None = None) -> dict[str, Any]:
        """The ``"reward"`` section of ``GET /v1/stats`` (the last ``steps`` closed steps, or all)."""
        self.ping()
        self._roll()
        now = self._clock()
        closed = list(self._closed)[-steps:] if steps else list(self._closed)
        out_steps = [dict(s) for s in closed]
        if self._open is not None and self._open.records:
            current = step_statistics(self._open.records, self._open.index)
            current.update(start=self._open.start, end=None, open=True, dropped=self._open.dropped)
            out_steps.append(current)
        while self._rate and self._rate[0][0] < now - _THROUGHPUT_WINDOW_S:
            self._rate.popleft()
        interval = self.options.canary.interval_s
        replicas = []
        for entry in self._canary.values():
            e = {k: v for k, v in entry.items() if k not in ("alerted",)}
            e["stale"] = bool(interval) and now - e.get("last_t", now) > 3 * interval + 30
            replicas.append(e)
        return {
            "steps": out_steps,
            "alerts": sorted(self._alerts, key=lambda a: (a["step"], SIGNALS.index(a["signal"]))),
            "canary": {
                "interval_s": interval,
                "reference": self._reference,
                "max_abs_drift": max(
                    (max(e["max_abs_drift"], e.get("reference_drift", 0.0)) for e in replicas), default=None
                ),
                "replicas": replicas,
            },  # fmt: skip
            "throughput": {
                "window_s": _THROUGHPUT_WINDOW_S,
                "samples_per_s": sum(n for _, n in self._rate) / _THROUGHPUT_WINDOW_S,
                "backlog_samples": sum(
                    int(e.get("backlog_samples") or 0) for e in replicas if not e["stale"]
                ),
            },
            "totals": {**self._totals, "late_dropped": self._late_dropped},
            "mode": "hints" if self._hinted else "window",
            "thresholds": self.options.alerts.model_dump(),
            "time": now,
        }

    # -- steps ------------------------------------------------------------------------------------------
    def _new_step(self, t: float) -> _Step:
        accept = self._recent[-1].end if self._recent and self._recent[-1].end is not None else t
        step = _Step(self._next_index, accept_from=min(accept, t), start=t)
        self._next_index += 1
        return step

    def _place(self, rec: Record) -> _Step | None:
        """Put ``rec`` in its step; returns the closed step it joined (to recompute), if any."""
        if self._open is not None and rec.t >= self._open.accept_from:
            self._add(self._open, rec)
            return None
        for step in reversed(self._recent):
            if step.end is not None and step.accept_from <= rec.t < step.end:
                self._add(step, rec)
                return step
        if self._open is None and (not self._recent or rec.t >= (self._recent[-1].end or 0.0)):
            self._open = self._new_step(rec.t)
            self._add(self._open, rec)
            return None
        self._late_dropped += 1
        return None

    def _add(self, step: _Step, rec: Record) -> None:
        if len(step.records) >= self.options.max_samples_per_step:
            step.dropped += 1
        else:
            step.records.append(rec)

    def _roll(self) -> None:
        """Without hints, close the open step ``step_window_s`` after its first sample; with hints from
        fewer processes than the last step's, ``step_done_wait_s`` after the first one."""
        step = self._open
        if step is None:
            return
        now = self._clock()
        if not self._hinted and now >= step.start + self.options.step_window_s:
            self._close(step, step.start + self.options.step_window_s)
        elif step.first_hint is not None and now >= step.first_hint + self.options.step_done_wait_s:
            self._expected_sources = len(step.hint_sources)
            self._close(step, step.last_hint)  # type: ignore[arg-type]

    def _close(self, step: _Step, end: float) -> None:
        later = [r for r in step.records if r.t >= end]
        step.records = [r for r in step.records if r.t < end]
        step.end = end
        self._open = None
        self._last_closed = step
        self._recent.append(step)
        self._closed.append({"step": step.index})
        self._finish(step)
        for rec in later:
            self._place(rec)

    def _finish(self, step: _Step) -> None:
        """(Re)compute a closed step's statistics and alerts (late records re-run it)."""
        stats = step_statistics(step.records, step.index)
        stats.update(start=step.start, end=step.end, open=False, dropped=step.dropped)
        for i, s in enumerate(self._closed):
            if s["step"] == step.index:
                self._closed[i] = stats
        old = {a["signal"] for a in self._alerts if a["step"] == step.index and a["signal"] != "canary_drift"}
        kept = [a for a in self._alerts if a["step"] != step.index or a["signal"] == "canary_drift"]
        self._alerts.clear()
        self._alerts.extend(kept)
        alerts = step_alerts(stats, self.options.alerts.model_dump())
        self._raise([a for a in alerts if a["signal"] not in old], log_only=False)
        self._alerts.extend(a for a in alerts if a["signal"] in old)
        if self._metrics and self._closed and self._closed[-1]["step"] == step.index:
            self._metrics.step(stats, {a["signal"] for a in alerts})

    def _raise(self, alerts: list[dict[str, Any]], log_only: bool = False) -> None:
        for a in alerts:
            log.warning(
                "reward health alert: step %s %s = %.4g (threshold %.4g)%s",
                a["step"], a["signal"], a["value"], a["threshold"],
                f" replica {a['replica_id']}" if "replica_id" in a else "",
            )  # fmt: skip
            if not log_only:
                self._alerts.append(a)
            if self._metrics:
                self._metrics.alert(a["signal"])


def _drift(first: Sequence[float | None], scores: Sequence[float | None]) -> float:
    pairs = [(a, b) for a, b in zip(first, scores) if a is not None and b is not None]
    return max((abs(a - b) for a, b in pairs), default=0.0)


class _BoardMetrics:
    """Prometheus metrics of the board (``ray.util.metrics``; Ray exports them as ``ray_<name>``)."""

    def __init__(self) -> None:
        from ray.util import metrics

        self.alerts = metrics.Counter(
            "rlreward_reward_alerts",
            description="Reward-health alerts raised, by signal.",
            tag_keys=("signal",),
        )
        self.active = metrics.Gauge(
            "rlreward_reward_alert_active",
            description="1 if the last closed step raised this signal, else 0.",
            tag_keys=("signal",),
        )
        self.stat = metrics.Gauge(
            "rlreward_reward_step_stat",
            description="A statistic of the last closed step (mean, std, p05, p50, p95, samples, errors, "
            "error_rate, groups, zero_variance_groups, length_corr, duplicate_answers).",
            tag_keys=("stat",),
        )
        self.step_index = metrics.Gauge("rlreward_reward_step", description="Index of the last closed step.")
        self.canary = metrics.Gauge(
            "rlreward_canary_max_abs_drift",
            description="A replica's largest canary drift (own first scores or the app's reference).",
            tag_keys=("replica",),
        )

    def alert(self, signal: str) -> None:
        self.alerts.inc(1, tags={"signal": signal})

    def step(self, stats: dict[str, Any], raised: set[str]) -> None:
        self.step_index.set(stats["step"])
        for signal in SIGNALS[:-1]:
            self.active.set(1.0 if signal in raised else 0.0, tags={"signal": signal})
        for key in STEP_STATS:
            value = stats.get(key)
            if value is not None:
                self.stat.set(float(value), tags={"stat": key})

    def drift(self, replica: str, value: float) -> None:
        self.canary.set(value, tags={"replica": replica})


#: The statistics exported as ``rlreward_reward_step_stat{stat=...}``.
STEP_STATS = (
    "mean", "std", "p05", "p50", "p95", "samples", "errors", "error_rate", "groups",
    "zero_variance_groups", "length_corr", "duplicate_answers",
)  # fmt: skip


def get_board(options: dict[str, Any]) -> Any:
    """The application's board actor (created on first use, detached, exits when idle an hour)."""
    import ray

    actor = ray.remote(_BoardActor).options(
        name=options["board"],
        namespace=HEALTH_NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,
        max_restarts=0,
    )
    return actor.remote(options)


class _BoardActor(HealthBoard):
    """:class:`HealthBoard` as a Ray actor: exits by itself after :data:`BOARD_IDLE_EXIT_S` idle."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        threading.Thread(target=self._exit_when_idle, daemon=True, name="health-idle").start()

    def _exit_when_idle(self) -> None:
        import os

        while True:
            time.sleep(60)
            if self.idle_s() > BOARD_IDLE_EXIT_S:
                log.info("reward health board idle for %.0fs: exiting", self.idle_s())
                os._exit(0)


# -- ingress side -----------------------------------------------------------------------------------
class IngressHealth:
    """What an ingress replica does for reward health: forward records and hints, read the section."""

    def __init__(self, options: dict[str, Any] | None) -> None:
        self.options = options if options and options.get("enabled", True) and options.get("board") else None
        self._board: Any = None
        self._pending: set[Any] = set()

    @property
    def enabled(self) -> bool:
        return self.options is not None

    def board(self) -> Any:
        if self._board is None:
            self._board = get_board(self.options)  # type: ignore[arg-type]
        return self._board

    def record(self, results: Sequence[Any], infos: Sequence[Sequence[Any] | None]) -> None:
        """Send one record per answered sample (fire and forget; a failure is logged, never raised)."""
        if not self.enabled or not results:
            return
        now = time.time()
        records = []
        for r, info in zip(results, infos):
            conv, answer, tokens = info if info else (None, None, None)
            error = r.error.code if r.error is not None else None
            code = getattr(error, "value", error)
            records.append([now, conv, answer, tokens, r.score if r.error is None else None, code])
        try:
            ref = self.board().record.remote(records)
        except Exception as exc:
            self._board = None
            log.warning("reward health: could not send %d records: %s", len(records), exc)
            return
        fut = asyncio.wrap_future(ref.future()) if _has_loop() else None
        if fut is not None:
            self._pending.add(fut)
            fut.add_done_callback(self._sent)

    def _sent(self, fut: Any) -> None:
        self._pending.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            self._board = None
            log.warning("reward health: records lost: %s", fut.exception())

    async def step_done(self, source: str) -> None:
        if not self.enabled:
            return
        try:
            await asyncio.wait_for(awaited(self.board().step_done.remote(time.time(), source)), 10.0)
        except Exception as exc:  # the hint still reaches the autoscaler; health just misses a boundary
            self._board = None
            log.warning("reward health: step_done not recorded: %s", exc)

    async def section(self, steps: int | None = None) -> dict[str, Any]:
        """The ``"reward"`` section; raises when the board does not answer."""
        if not self.enabled:
            return {"enabled": False, "steps": [], "alerts": [], "canary": {}}
        try:
            return await asyncio.wait_for(awaited(self.board().snapshot.remote(steps)), 10.0)
        except Exception:
            self._board = None
            raise


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
