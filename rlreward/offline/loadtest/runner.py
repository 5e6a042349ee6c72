"""Running a :class:`~rlreward.offline.loadtest.plan.Plan` against a served app, and watching Serve.

:func:`run_plan` sends each step's requests through an :class:`~rlreward.client.AsyncRewardClient`
(HTTP or handle; one planned request = one client request), records every request with a
:class:`~rlreward.trace.TraceRecorder` (so the run is itself a replayable trace, and retries are
counted where the client makes them), and shows a progress bar. :class:`ServeMonitor` polls the
replicas' own stats (``stats()`` on every replica, through ``DeploymentHandle.broadcast``) from a
thread: replica count, samples queued or being scored, CPU seconds, and the counters of samples and
errors the replicas answered, and how many are awake (not asleep, :mod:`rlreward.serving.sleep`). With
a connection to the Ray cluster (in-cluster, or ``ray_address``) it asks the replicas; over plain HTTP
(:meth:`ServeMonitor.over_http`) it reads the server's ``GET /v1/stats`` (the replicas' reports).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlreward.offline.loadtest.plan import Plan, PlannedRequest, PlannedStep
from rlreward.trace import TraceRecorder

log = logging.getLogger("rlreward.loadtest")


@dataclass
class RequestOutcome:
    """One request as the load test saw it (times in seconds since the run began)."""

    step: int
    t_sent: float
    t_done: float
    samples: int
    answered: int  # samples with a result from the server (score or per-sample error)
    errors: int  # samples without a score: per-sample errors + samples of a failed request
    retries: int
    failed: str | None = None  # the client's exception class when it gave up

    @property
    def latency_s(self) -> float:
        return self.t_done - self.t_sent


@dataclass
class StepOutcome:
    step: int
    t_start: float
    t_end: float
    requests: list[RequestOutcome] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by linear interpolation; None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


# -- Serve timeline ------------------------------------------------------------------------------------
class ServeMonitor:
    """Polls every replica's ``stats()`` each ``interval_s`` seconds from a thread (see module docstring).

    ``timeline`` is ``[{"t", "replicas", "awake", "queue", "cpu_s"}]`` (t in seconds since ``t0``);
    ``counters()`` the replicas' summed ``samples``/``errors``/``requests`` counters now (replicas
    that left keep their last value, so a removed node's answers still count).
    """

    def __init__(
        self,
        app_name: str,
        interval_s: float = 0.5,
        timeout_s: float = 5.0,
        fetch: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        """``fetch`` (see :meth:`over_http`) replaces the Ray handle's broadcast of ``stats()``."""
        self.app_name, self.interval_s, self.timeout_s = app_name, interval_s, timeout_s
        if fetch is None:
            from ray import serve

            from rlreward.serving.config import REPLICA_DEPLOYMENT

            handle = serve.get_deployment_handle(REPLICA_DEPLOYMENT, app_name=app_name)

            def fetch() -> list[dict[str, Any]]:
                stats = handle.broadcast("stats").results(timeout_s=self.timeout_s, return_exceptions=True)
                return [s for s in stats if isinstance(s, dict)]

        self._fetch = fetch
        self._last: dict[str, dict[str, Any]] = {}
        self._cpu0: dict[str, float] = {}
        self.timeline: list[dict[str, Any]] = []
        self.t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def poll(self) -> list[dict[str, Any]]:
        """Every replica's stats now (raises when none answers within ``timeout_s``)."""
        good = self._fetch()
        with self._lock:
            for s in good:
                rid = str(s.get("replica_id") or s.get("pid"))
                self._last[rid] = s
                self._cpu0.setdefault(rid, float(s.get("cpu_s") or 0.0))
        return good

    def counters(self) -> dict[str, int]:
        self.poll()
        with self._lock:
            return {
                k: sum(int(s.get(k, 0)) for s in self._last.values())
                for k in ("samples", "errors", "requests")
            }

    def last_stats(self) -> list[dict[str, Any]]:
        """The last stats seen of every replica seen during the run (those that left included)."""
        with self._lock:
            return list(self._last.values())

    def cpu_seconds(self) -> float:
        """CPU seconds the replicas used since each was first seen."""
        with self._lock:
            return sum(float(s.get("cpu_s") or 0.0) - self._cpu0[rid] for rid, s in self._last.items())

    def _loop(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter() - self.t0
            try:
                stats = self.poll()
                self.timeline.append(
                    {
                        "t": round(t, 3),
                        "replicas": len(stats),
                        "awake": sum(1 for s in stats if s.get("state", "awake") != "asleep"),
                        "queue": sum(int(s.get("backlog_samples", 0)) for s in stats),
                        "cpu_s": round(self.cpu_seconds(), 3),
                    }
                )
            except Exception as exc:  # a replica going away mid-poll is part of what we watch
                log.debug("monitor poll failed: %s", exc)
            self._stop.wait(self.interval_s)

    @classmethod
    def over_http(
        cls,
        url: str,
        api_key: str | None = None,
        interval_s: float = 0.5,
        timeout_s: float = 5.0,
        **client: Any,
    ) -> ServeMonitor:
        """A monitor that reads ``GET {url}/v1/stats`` (``client``: httpx.Client options, e.g. a
        ``transport``). Raises RuntimeError naming the answer when the route does not answer 200."""
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s, **client)

        def fetch() -> list[dict[str, Any]]:
            r = http.get("/v1/stats")
            if r.status_code != 200:
                raise RuntimeError(f"GET /v1/stats answered {r.status_code}: {r.text[:200]}")
            replicas = r.json().get("replicas")
            if not isinstance(replicas, list):
                raise RuntimeError("GET /v1/stats has no 'replicas' list")
            return [s for s in replicas if isinstance(s, dict)]

        monitor = cls(url, interval_s, timeout_s, fetch=fetch)
        monitor.poll()  # fail now, not silently in the thread
        return monitor

    def start(self, t0: float) -> None:
        self.t0 = t0
        self._thread = threading.Thread(target=self._loop, name="rlreward-loadtest-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 1)


# -- the run -------------------------------------------------------------------------------------------
async def _send(
    client: Any,
    recorder: TraceRecorder,
    req: PlannedRequest,
    step: int,
    t0: float,
) -> RequestOutcome:
    from rlreward.client import RewardClientError

    t_sent = time.perf_counter() - t0
    n = len(req.samples)
    with recorder.request(req.samples) as entry:
        try:
            results = await client.score(req.samples)
        except RewardClientError as exc:
            entry.record["error"] = type(exc).__name__
            return RequestOutcome(
                step, t_sent, time.perf_counter() - t0, n, 0, n, entry.retries, type(exc).__name__
            )
        entry.results(results)
    errors = sum(1 for r in results if r.error is not None)
    return RequestOutcome(step, t_sent, time.perf_counter() - t0, n, len(results), errors, entry.retries)


async def _run_step(
    client: Any, recorder: TraceRecorder, step: PlannedStep, k: int, t0: float, bar: Any
) -> list[RequestOutcome]:
    gate = asyncio.Semaphore(step.concurrency) if step.concurrency else None
    start = time.perf_counter()

    async def one(req: PlannedRequest) -> RequestOutcome:
        if step.open_loop and req.offset_s > 0:
            await asyncio.sleep(max(0.0, start + req.offset_s - time.perf_counter()))
        if gate is None:
            out = await _send(client, recorder, req, k, t0)
        else:
            async with gate:
                out = await _send(client, recorder, req, k, t0)
        bar.update(out.samples)
        return out

    return list(await asyncio.gather(*(one(r) for r in step.requests)))


async def run_plan(
    plan: Plan,
    client: Any,
    *,
    record_path: str | Path,
    monitor: ServeMonitor | None = None,
    progress: bool = True,
    hint_lead_s: float | None = None,
    hint_within_s: float = 30.0,
) -> tuple[list[StepOutcome], float]:
    """Send ``plan`` through ``client`` (an AsyncRewardClient); returns the steps and the run's wall
    seconds. Every request is appended to ``record_path`` (a trace; an existing file is replaced).

    ``hint_lead_s``: act as a hinting trainer — ``client.expect(step samples, within_s=hint_within_s)``
    that many seconds before each step (the rollout's start; within the gap before it) and
    ``client.step_done()`` after its last score; None sends no hints."""
    from tqdm import tqdm

    rp = Path(record_path)
    if rp.exists():
        rp.unlink()
    recorder = TraceRecorder(rp)
    t0 = time.perf_counter()
    if monitor is not None:
        monitor.start(t0)
    out: list[StepOutcome] = []
    try:
        with tqdm(
            total=plan.samples,
            desc=f"loadtest {plan.shape}",
            unit="sample",
            file=sys.stderr,
            disable=not progress,
        ) as bar:
            for k, step in enumerate(plan.steps):
                if step.start_s is not None:
                    await asyncio.sleep(max(0.0, t0 + step.start_s - time.perf_counter()))
                elif step.gap_s > 0:
                    lead = min(step.gap_s, hint_lead_s or 0.0)
                    await asyncio.sleep(step.gap_s - lead)
                    if hint_lead_s is not None:
                        await _hint(client.expect(sum(len(r.samples) for r in step.requests), hint_within_s))
                    await asyncio.sleep(lead)
                if hint_lead_s is not None and (k == 0 or step.gap_s <= 0):
                    await _hint(client.expect(sum(len(r.samples) for r in step.requests), hint_within_s))
                if k:
                    recorder.step_done()
                bar.set_postfix_str(f"step {k + 1}/{len(plan.steps)}")
                t_start = time.perf_counter() - t0
                reqs = await _run_step(client, recorder, step, k, t0, bar)
                out.append(StepOutcome(k, t_start, time.perf_counter() - t0, reqs))
                if hint_lead_s is not None:
                    await _hint(client.step_done())
    finally:
        if monitor is not None:
            monitor.stop()
    return out, time.perf_counter() - t0


async def _hint(call: Any) -> None:
    """Send one hint; a refused or failed hint is logged, never fails the run."""
    try:
        answer = await call
        if not answer.get("accepted"):
            log.warning("hint not accepted: %s", answer.get("reason"))
    except Exception as exc:
        log.warning("hint failed: %r", exc)


def summarize(steps: list[StepOutcome], wall_s: float) -> dict[str, Any]:
    """The interface's numbers (see :mod:`rlreward.commands.loadtest`) from the outcomes."""
    reqs = [r for s in steps for r in s.requests]
    lat = [r.latency_s for r in reqs]
    answered = sum(r.answered for r in reqs)
    out_steps = []
    for s in steps:
        if s.requests:
            first = min(r.t_sent for r in s.requests)
            last = max(r.t_done for r in s.requests)
        else:
            first = last = s.t_start
        stage = last - first
        sl = [r.latency_s for r in s.requests]
        n = sum(r.samples for r in s.requests)
        out_steps.append(
            {
                "step": s.step,
                "t_start": round(first, 4),
                "t_end": round(last, 4),
                "reward_stage_s": round(stage, 4),
                "samples": n,
                "requests": len(s.requests),
                "answered": sum(r.answered for r in s.requests),
                "samples_per_s": round(n / stage, 3) if stage > 0 else None,
                "latency_p50_s": _r(percentile(sl, 0.5)),
                "latency_p99_s": _r(percentile(sl, 0.99)),
                "retries": sum(r.retries for r in s.requests),
                "errors": sum(r.errors for r in s.requests),
                "failed_requests": sum(1 for r in s.requests if r.failed),
            }
        )
    stage_total = sum(s["reward_stage_s"] for s in out_steps)
    return {
        "sent": sum(r.samples for r in reqs),
        "answered": answered,
        "errors": sum(r.errors for r in reqs),
        "retries": sum(r.retries for r in reqs),
        "requests": len(reqs),
        "failed_requests": sum(1 for r in reqs if r.failed),
        "samples_per_s": round(answered / stage_total, 3) if stage_total > 0 else None,
        "latency_p50_s": _r(percentile(lat, 0.5)),
        "latency_p99_s": _r(percentile(lat, 0.99)),
        "reward_stage_s_mean": round(stage_total / len(out_steps), 4) if out_steps else None,
        "wall_s": round(wall_s, 3),
        "steps": out_steps,
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 5)


def replica_seconds(timeline: list[dict[str, Any]], wall_s: float, key: str = "replicas") -> float | None:
    """∫ replicas dt over the run, from the polled timeline (step-wise constant); None without one.
    ``key="awake"``: awake replica-seconds (asleep replicas left out)."""
    if not timeline:
        return None
    total = 0.0
    for a, b in zip(timeline, timeline[1:] + [{"t": wall_s}]):
        total += a.get(key, a["replicas"]) * max(0.0, b["t"] - a["t"])
    return round(total, 3)
