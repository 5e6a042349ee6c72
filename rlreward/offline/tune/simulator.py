"""A deterministic discrete-event model of Ray Serve 2.60 autoscaling under RL reward traffic.

``simulate(workload, serving, replica)`` replays a :class:`~.workload.Traffic` against one reward
deployment and returns when every step's last score came back (:class:`SimResult`): the reward-stage
time of each step (first request sent → last score back) and the replica-seconds paid (replicas
alive — starting, running or draining — integrated from t=0 to the last score). Serve's math (metric
cadence, window, factors, delays, bounds) is :mod:`.policy`; the policies' desires are
:mod:`rlreward.serving.autoscaling`'s. The loop adds, from ``_private/router.py``,
``deployment_state.py`` and ``deployment_scheduler.py``:

* **Handle metrics**: one caller handle records queued requests and per-replica requests in flight and
  pushes every ``metrics_interval_s`` from ``ServeTiming.handle_start_s`` (a record before a push at
  equal times); a request queued while no replica runs pushes at once (the scaled-to-zero path).
* **Control loop** every 0.1 s (at k × 0.1 s), after the events of that instant. Replicas of the
  backlog policy record/push their ``backlog_samples`` from when they start running.
* **Replicas**: a new target starts replicas at once, serving ``cold_start_s`` later; a lower target
  stops starting replicas first, then running ones newest first; a stopped replica drains (still paid).
  Each accepts ``max_ongoing_requests`` and serves FIFO at ``samples_per_s``.
* **Router**: FIFO at the handle; the running replica with a free slot and fewest in flight (ties:
  oldest), or ``power_of_two`` with a seeded RNG.
* **Hints**: seen ``latency_s`` after rollout start (``hint_lead_s`` before the step's first request),
  active until ``latency_s + hold_s`` after step done; then ``release_to`` ("min" or "base").
* **Sleep** (:class:`~.policy.SleepSpec`): its timer; an announced step or a request wakes a sleeper.

Simplified away: Ray scheduling, proxy, network, batch-size effects, drain timeouts, failures, ingress.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rlreward.serving.autoscaling import (
    backlog_policy_desired,
    hint_desired_replicas,
    hinted_policy_desired,
    request_policy_desired,
)

from .policy import (
    DelayState,
    MetricStore,
    ReplicaModel,
    Series,
    ServeTiming,
    ServingSpec,
    WindowAggregate,
    autoscaling_decision,
    metric_record_interval_s,
)
from .workload import Traffic

__all__ = ["ReplicaRecord", "RequestRecord", "SimResult", "StepResult", "simulate"]


# -- results ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepResult:
    """One step: ``first_sent_s`` (its first request sent) → ``last_done_s`` (its last score back)."""

    index: int
    samples: int
    first_sent_s: float
    last_done_s: float

    @property
    def stage_s(self) -> float:
        """Reward-stage time of the step, seconds."""
        return self.last_done_s - self.first_sent_s


@dataclass(frozen=True)
class RequestRecord:
    """A request's life: sent → assigned to a replica → service starts → done (seconds)."""

    id: int
    step: int
    samples: int
    sent_s: float
    assigned_s: float
    start_s: float
    done_s: float
    replica: int


@dataclass(frozen=True)
class ReplicaRecord:
    """A replica's life (seconds): asked for at ``created_s``; serving from ``ready_s`` (None if stopped
    while starting); told to stop at ``stopped_s``; gone at ``dead_s`` (after draining)."""

    id: int
    created_s: float
    ready_s: float | None
    stopped_s: float | None
    dead_s: float | None


@dataclass(frozen=True)
class SimResult:
    """What one simulated run cost and delivered."""

    steps: tuple[StepResult, ...]
    requests: tuple[RequestRecord, ...]
    replicas: tuple[ReplicaRecord, ...]
    #: (time, target replica count) at t=0 and at every change.
    target_timeline: tuple[tuple[float, int], ...]
    #: ∫ replicas alive (starting + running + draining) dt over [0, horizon_s], replica-seconds.
    replica_seconds: float
    #: time of the last score of the last step, seconds.
    horizon_s: float
    #: ∫ replicas alive and not asleep dt over [0, horizon_s] (= replica_seconds without sleep).
    awake_replica_seconds: float = math.nan

    @property
    def mean_stage_s(self) -> float:
        """Mean reward-stage time per step, seconds."""
        return sum(s.stage_s for s in self.steps) / len(self.steps)

    @property
    def max_target(self) -> int:
        return max(n for _, n in self.target_timeline)


# -- the event loop --------------------------------------------------------------------------------
@dataclass
class _Request:
    id: int
    step: int
    samples: int
    sent_s: float
    assigned_s: float = math.nan
    start_s: float = math.nan
    done_s: float = math.nan
    replica: int = -1


@dataclass
class _Replica:
    id: int
    created_s: float
    ready_s: float | None = None
    stopped_s: float | None = None
    dead_s: float | None = None
    state: str = "starting"  # starting | running | draining | dead
    in_flight: int = 0
    backlog: int = 0
    free_at: float = 0.0
    store: MetricStore = field(default_factory=MetricStore)
    report: WindowAggregate | None = None
    asleep: bool = False
    last_active: float = 0.0


# event priorities at equal times (lower first); the control tick runs after all of them
_DONE, _READY, _SEND, _HINT, _RECORD, _PUSH = range(6)
_QUEUED = "queued"


class _Sim:
    def __init__(self, workload: Traffic, serving: ServingSpec, replica: ReplicaModel, timing: ServeTiming):
        self.w, self.s, self.r, self.tm = workload, serving, replica, timing
        self.auto = serving.autoscaling
        self.heap: list[tuple[float, int, int, str, Any]] = []
        self.seq = 0
        self.now = 0.0
        self.replicas: list[_Replica] = []
        self.requests: list[_Request] = []
        self.queue: deque[_Request] = deque()
        self.sent: dict[int, int] = {}  # handle's num_requests_sent_to_replicas
        self.store = MetricStore()
        self.handle_report: tuple[Series, dict[int, Series]] | None = None
        self.report_version = 0
        self.running_version = 0
        self._total_cache: tuple[tuple[int, int], WindowAggregate] | None = None
        self._queued_cache: tuple[int, WindowAggregate] | None = None
        self.delay = DelayState()
        self.rng = random.Random(timing.seed)
        self.alive = 0
        self.awake = 0
        self.last_change = 0.0
        self.replica_seconds = 0.0
        self.awake_seconds = 0.0
        self.announced: set[int] = set()  # steps whose expect the sleeping replicas saw, not yet done
        self.step_done_seen = -math.inf
        self.step_first: list[float] = [math.nan] * len(workload.steps)
        self.step_last: list[float] = [math.nan] * len(workload.steps)
        self.step_left = [len(s.requests) for s in workload.steps]
        self.steps_done = 0
        self.active_hints: dict[int, float] = {}  # step → expected samples
        self.hint_released = False  # a step_done released the last active hint
        self.last_progress = 0.0  # last send or completion
        biggest = max(r.samples for st in workload.steps for r in st.requests)
        #: simulated seconds without a send or a completion, with work outstanding, that mean a stall
        self.stall_s = 3600.0 + replica.cold_start_s + biggest / replica.samples_per_s
        if self.auto is not None:
            a = self.auto
            n0 = a.initial_replicas if a.initial_replicas is not None else a.min_replicas
            self.target = max(a.min_replicas, min(a.max_replicas, n0))
            self.record_s = metric_record_interval_s(
                a.look_back_period_s, timing.metrics_interval_s, timing.record_interval_factor
            )
        else:
            self.target = serving.num_replicas
            self.record_s = math.inf
        self.timeline: list[tuple[float, int]] = [(0.0, self.target)]
        for _ in range(self.target):
            rep = self._new_replica(0.0)
            self._make_ready(rep, 0.0)

    # -- bookkeeping
    def push(self, t: float, prio: int, kind: str, payload: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, prio, self.seq, kind, payload))

    def _account(self, t: float) -> None:
        self.replica_seconds += self.alive * (t - self.last_change)
        self.awake_seconds += self.awake * (t - self.last_change)
        self.last_change = t

    def _new_replica(self, t: float) -> _Replica:
        self._account(t)
        rep = _Replica(id=len(self.replicas), created_s=t)
        self.replicas.append(rep)
        self.alive += 1
        self.awake += 1
        return rep

    def _make_ready(self, rep: _Replica, t: float) -> None:
        rep.state, rep.ready_s, rep.free_at, rep.last_active = "running", t, t, t
        self.running_version += 1
        self._sleep_check_at(rep, t)
        if self.auto is not None and self.auto.target_backlog_samples is not None:
            # replicas report backlog_samples (record_autoscaling_stats) on their own cadence
            self.push(t, _RECORD, "replica_record", rep)
            self.push(t, _PUSH, "replica_push", rep)

    def _kill(self, rep: _Replica, t: float) -> None:
        self._account(t)
        rep.state, rep.dead_s = "dead", t
        self.alive -= 1
        if not rep.asleep:
            self.awake -= 1

    # -- sleep
    def _sleep_check_at(self, rep: _Replica, t: float) -> None:
        if self.s.sleep is not None:
            self.push(t + self.s.sleep.after_step_done_s, _HINT, "sleep_check", rep)

    def _sleep_check(self, rep: _Replica, t: float) -> None:
        after = self.s.sleep.after_step_done_s  # type: ignore[union-attr]
        idle = t - max(rep.last_active, self.step_done_seen) >= after - 1e-9
        if rep.state == "running" and not rep.asleep and rep.in_flight == 0 and idle and not self.announced:
            self._account(t)
            rep.asleep = True
            self.awake -= 1

    def _wake(self, rep: _Replica, t: float) -> None:
        self._account(t)
        rep.asleep = False
        self.awake += 1
        rep.free_at = max(rep.free_at, t) + self.r.wake_s
        rep.last_active = rep.free_at

    def _running(self) -> list[_Replica]:
        return [r for r in self.replicas if r.state == "running"]

    def _prune_sent(self) -> None:
        running = {r.id for r in self.replicas if r.state == "running"}
        self.sent = {k: v for k, v in self.sent.items() if v or k in running}

    # -- requests
    def _send(self, step: int, samples: int, t: float) -> None:
        self.last_progress = t
        req = _Request(id=len(self.requests), step=step, samples=samples, sent_s=t)
        self.requests.append(req)
        if math.isnan(self.step_first[step]):
            self.step_first[step] = t
        self.queue.append(req)
        self._dispatch(t)
        if self.auto is not None and self.queue and not self._running() and t >= self.tm.handle_start_s:
            self._handle_push(t)  # scaled-to-zero optimisation: push at once

    def _pick(self, free: list[_Replica]) -> _Replica:
        if self.tm.router == "power_of_two" and len(free) > 2:
            a, b = self.rng.sample(free, 2)
            return min((a, b), key=lambda r: (r.in_flight, r.id))
        return min(free, key=lambda r: (r.in_flight, r.id))

    def _dispatch(self, t: float) -> None:
        cap = self.s.max_ongoing_requests
        while self.queue:
            free = [r for r in self.replicas if r.state == "running" and r.in_flight < cap]
            if not free:
                return
            rep = self._pick(free)
            if rep.asleep:
                self._wake(rep, t)
            req = self.queue.popleft()
            req.assigned_s, req.replica = t, rep.id
            req.start_s = max(t, rep.free_at)
            req.done_s = req.start_s + req.samples / self.r.samples_per_s
            rep.free_at = req.done_s
            rep.in_flight += 1
            rep.backlog += req.samples
            self.sent[rep.id] = self.sent.get(rep.id, 0) + 1
            self.push(req.done_s, _DONE, "done", req)

    def _done(self, req: _Request, t: float) -> None:
        self.last_progress = t
        rep = self.replicas[req.replica]
        rep.in_flight -= 1
        rep.backlog -= req.samples
        rep.last_active = t
        if rep.in_flight == 0:
            self._sleep_check_at(rep, t)
        self.sent[rep.id] -= 1
        if rep.state == "draining" and rep.in_flight == 0:
            self._kill(rep, t)
            self._prune_sent()
        k = req.step
        self.step_left[k] -= 1
        if self.step_left[k] == 0:
            self.step_last[k] = t
            self.steps_done += 1
            self._step_finished(k, t)
        self._dispatch(t)

    # -- steps and hints
    def _release(self, k: int, t: float) -> None:
        for r in self.w.steps[k].requests:
            if r.offset_s <= 0:
                self._send(k, r.samples, t)
            else:
                self.push(t + r.offset_s, _SEND, "send", (k, r.samples))

    def _schedule_step(self, k: int, start: float) -> None:
        step = self.w.steps[k]
        self.push(start, _SEND, "release", k)
        hint = self.s.hint
        if hint is not None:
            self.push(max(0.0, start - step.hint_lead_s) + hint.latency_s, _HINT, "hint_on", k)
        if self.s.sleep is not None:
            self.push(max(0.0, start - step.hint_lead_s) + self.s.sleep.hint_latency_s, _HINT, "announce", k)

    def _step_finished(self, k: int, t: float) -> None:
        hint = self.s.hint
        if hint is not None:
            self.push(t + hint.latency_s + hint.hold_s, _HINT, "hint_off", k)
        if self.s.sleep is not None:
            self.push(t + self.s.sleep.hint_latency_s, _HINT, "step_done_seen", k)
        if self.w.closed_loop and k + 1 < len(self.w.steps):
            self._schedule_step(k + 1, t + self.w.steps[k + 1].gap_s)

    # -- metrics
    def _handle_record(self, t: float) -> None:
        pts: dict[Any, float] = {_QUEUED: len(self.queue)}
        pts.update(self.sent)
        self.store.add(pts, t)
        self.store.prune(t - self.auto.look_back_period_s)  # type: ignore[union-attr]

    def _handle_push(self, t: float) -> None:
        self.store.prune(t - self.auto.look_back_period_s)  # type: ignore[union-attr]
        queued = list(self.store.data.get(_QUEUED) or [(t, float(len(self.queue)))])
        running = {rid: list(self.store.data.get(rid) or [(t, float(n))]) for rid, n in self.sent.items()}
        self.handle_report = (queued, running)
        self.report_version += 1

    def _replica_record(self, rep: _Replica, t: float) -> None:
        rep.store.add({"backlog_samples": rep.backlog}, t)
        rep.store.prune(t - self.auto.look_back_period_s)  # type: ignore[union-attr]

    def _replica_push(self, rep: _Replica, t: float) -> None:
        rep.store.prune(t - self.auto.look_back_period_s)  # type: ignore[union-attr]
        series = rep.store.data.get("backlog_samples")
        rep.report = WindowAggregate([list(series)], self.tm.aggregation) if series else None

    def _total_num_requests(self, t: float) -> float:
        if self.handle_report is None:
            return 0.0
        key = (self.report_version, self.running_version)
        if self._total_cache is None or self._total_cache[0] != key:
            queued, running = self.handle_report
            live = {r.id for r in self.replicas if r.state == "running"}
            series = [s for rid, s in running.items() if rid in live] + [queued]
            self._total_cache = (key, WindowAggregate(series, self.tm.aggregation))
        return self._total_cache[1].value(t)

    def _total_queued(self, t: float) -> float:
        if self.handle_report is None:
            return 0.0
        if self._queued_cache is None or self._queued_cache[0] != self.report_version:
            self._queued_cache = (
                self.report_version,
                WindowAggregate([self.handle_report[0]], self.tm.aggregation),
            )
        return self._queued_cache[1].value(t)

    # -- control loop
    def _policy_desired(self, t: float, running: int) -> float:
        a = self.auto
        assert a is not None
        if a.target_backlog_samples is not None:
            backlogs = [
                r.report.value(t) for r in self.replicas if r.state == "running" and r.report is not None
            ]
            base: float = backlog_policy_desired(
                backlogs, self._total_queued(t), self._total_num_requests(t), a.target_backlog_samples
            )
        else:
            base = request_policy_desired(
                self._total_num_requests(t), running, self.target, a.target_ongoing_requests
            )
        hint_n = None
        if self.s.hint is not None and self.active_hints:
            hint_n = hint_desired_replicas(
                sum(self.active_hints.values()),
                self.s.hint.within_s,
                self.s.hint.replica_samples_per_s or self.r.samples_per_s,
                min_replicas=a.min_replicas,
                max_replicas=a.max_replicas,
            )
        hint = self.s.hint
        return hinted_policy_desired(
            base,
            hint_n,
            released=self.hint_released,
            release_to=hint.release_to if hint is not None else "base",
            min_replicas=a.min_replicas,
        )

    def _control(self, t: float) -> None:
        a = self.auto
        assert a is not None
        running = sum(1 for r in self.replicas if r.state == "running")
        total = self._total_num_requests(t) if running == 0 else 0.0
        desired = 0.0 if (running == 0 and total > 0) else self._policy_desired(t, running)
        decision = autoscaling_decision(
            desired,
            running=running,
            current_target=self.target,
            total_num_requests=total,
            config=a,
            state=self.delay,
            now_s=t,
        )
        if decision != self.target:
            self.target = decision
            self.timeline.append((t, decision))
        self._reconcile(t)

    def _reconcile(self, t: float) -> None:
        live = [r for r in self.replicas if r.state in ("starting", "running")]
        if len(live) < self.target:
            for _ in range(self.target - len(live)):
                rep = self._new_replica(t)
                self.push(t + self.r.cold_start_s, _READY, "ready", rep)
        elif len(live) > self.target:
            # Serve stops replicas that are not running first, then running ones newest first.
            starting = sorted((r for r in live if r.state == "starting"), key=lambda r: -r.id)
            running = sorted((r for r in live if r.state == "running"), key=lambda r: -r.id)
            for rep in (starting + running)[: len(live) - self.target]:
                rep.stopped_s = t
                if rep.state == "running":
                    self.running_version += 1
                    rep.state = "draining"
                    if rep.in_flight == 0:
                        self._kill(rep, t)
                else:
                    self._kill(rep, t)
            self._prune_sent()

    # -- main loop
    def run(self, max_time_s: float) -> SimResult:
        w = self.w
        if w.closed_loop:
            self._schedule_step(0, w.steps[0].gap_s)
        else:
            for k, step in enumerate(w.steps):
                self._schedule_step(k, float(step.start_s or 0.0))
        if self.auto is not None:
            self.push(self.tm.handle_start_s, _RECORD, "handle_record")
            self.push(self.tm.handle_start_s, _PUSH, "handle_push")
        dt = self.tm.control_interval_s
        k = 0
        n_steps = len(w.steps)
        while self.steps_done < n_steps:
            tick = round(k * dt, 9) if self.auto is not None else math.inf
            while self.heap and self.heap[0][0] <= tick and self.steps_done < n_steps:
                t, _, _, kind, payload = heapq.heappop(self.heap)
                if t > max_time_s:
                    raise ValueError(
                        f"the simulation did not finish within {max_time_s:g} s (simulated); "
                        "is max_replicas or the replica throughput far too small?"
                    )
                self.now = t
                self._handle(kind, payload, t)
            if self.steps_done >= n_steps:
                break
            if self.auto is None:
                if not self.heap:
                    raise ValueError("the simulation stalled with requests outstanding")
                continue
            if tick > max_time_s:
                raise ValueError(f"the simulation did not finish within {max_time_s:g} s (simulated)")
            if tick - self.last_progress > self.stall_s and len(self.requests) > sum(
                1 for r in self.requests if r.done_s <= tick
            ):
                raise ValueError(
                    f"the simulation stalled: no request sent or finished for {self.stall_s:g} s (simulated) "
                    "with requests outstanding"
                )
            self.now = tick
            self._control(tick)
            k += 1
        horizon = max(self.step_last)
        self._account(horizon)
        return self._result(horizon)

    def _handle(self, kind: str, payload: Any, t: float) -> None:
        if kind == "done":
            self._done(payload, t)
        elif kind == "ready":
            rep = payload
            if rep.state == "starting":
                self._make_ready(rep, t)
                self._prune_sent()
                self._dispatch(t)
        elif kind == "release":
            self._release(payload, t)
        elif kind == "send":
            self._send(payload[0], payload[1], t)
        elif kind == "hint_on":
            self.active_hints[payload] = float(self.w.steps[payload].samples)
            self.hint_released = False
        elif kind == "hint_off":
            self.active_hints.pop(payload, None)
            self.hint_released = not self.active_hints
        elif kind == "announce":
            if math.isnan(self.step_last[payload]):
                self.announced.add(payload)
                for rep in self.replicas:
                    if rep.state == "running" and rep.asleep:
                        self._wake(rep, t)
        elif kind == "step_done_seen":
            self.announced.discard(payload)
            self.step_done_seen = t
            for rep in self.replicas:
                if rep.state == "running":
                    self._sleep_check_at(rep, t)
        elif kind == "sleep_check":
            self._sleep_check(payload, t)
        elif kind == "handle_record":
            self._handle_record(t)
            self.push(t + self.record_s, _RECORD, "handle_record")
        elif kind == "handle_push":
            self._handle_push(t)
            self.push(t + self.tm.metrics_interval_s, _PUSH, "handle_push")
        elif kind == "replica_record":
            if payload.state == "running":
                self._replica_record(payload, t)
                self.push(t + self.record_s, _RECORD, "replica_record", payload)
        elif kind == "replica_push":
            if payload.state == "running":
                self._replica_push(payload, t)
                self.push(t + self.tm.metrics_interval_s, _PUSH, "replica_push", payload)

    def _result(self, horizon: float) -> SimResult:
        steps = tuple(
            StepResult(
                index=k, samples=s.samples, first_sent_s=self.step_first[k], last_done_s=self.step_last[k]
            )
            for k, s in enumerate(self.w.steps)
        )
        reqs = tuple(
            RequestRecord(
                id=r.id,
                step=r.step,
                samples=r.samples,
                sent_s=r.sent_s,
                assigned_s=r.assigned_s,
                start_s=r.start_s,
                done_s=r.done_s,
                replica=r.replica,
            )
            for r in self.requests
        )
        reps = tuple(
            ReplicaRecord(
                id=r.id, created_s=r.created_s, ready_s=r.ready_s, stopped_s=r.stopped_s, dead_s=r.dead_s
            )
            for r in self.replicas
        )
        return SimResult(
            steps=steps,
            requests=reqs,
            replicas=reps,
            target_timeline=tuple(self.timeline),
            replica_seconds=self.replica_seconds,
            horizon_s=horizon,
            awake_replica_seconds=self.awake_seconds,
        )


def simulate(
    workload: Traffic,
    serving: ServingSpec,
    replica: ReplicaModel,
    timing: ServeTiming | None = None,
    *,
    max_time_s: float = 1e7,
) -> SimResult:
    """Replay ``workload`` against ``serving`` (model in the module docstring); deterministic.

    Raises ValueError when the run cannot finish within ``max_time_s`` simulated seconds.
    """
    if not workload.steps or any(not s.requests for s in workload.steps):
        raise ValueError("the workload needs at least one step, and every step at least one request")
    return _Sim(workload, serving, replica, timing or ServeTiming()).run(max_time_s)
