"""A deterministic discrete-event model of Ray Serve 2.60 autoscaling under RL reward traffic.

``simulate(workload, serving, replica)`` replays a :class:`~.workload.Workload` against one reward
deployment and returns when every step's last score came back: the reward-stage time of each step
(first request of the step sent → last score of the step back) and the replica-seconds paid (the
integral over time of replicas alive: starting, running or draining, from t=0 to the last score).

Modelled from Ray 2.60's own code (``ray/serve/...``): the caller handle's metric records and pushes
(``_private/router.py``), the controller's window aggregation (``_private/autoscaling_state.py``),
the policies — Serve's request count, rlreward's sample backlog and the hint policy — through
Serve's ``_apply_autoscaling_config`` exactly (:func:`autoscaling_decision`: cold-start path,
factors, delay timers, bounds; a 0.1 s control loop), replica start/stop/drain order
(``_private/deployment_state.py``), FIFO serving at ``samples_per_s`` up to
``max_ongoing_requests``, and the router's least-loaded choice.

Simplified away: Ray scheduling and node autoscaling, more than one caller handle, network latency,
size-dependent throughput, rejections, failures and restarts, and the ingress's own scaling.

Contract: deterministic for given inputs. The policies' math is imported from
:mod:`rlreward.serving.autoscaling`, where the served policies run the very same functions. Each
rule, with its source, and every simplification: docs/tuning.md ("What the simulator models").
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from rlreward.serving.autoscaling import (
    backlog_policy_desired,
    hint_desired_replicas,
    hinted_policy_desired,
    request_policy_desired,
)

from .workload import Workload

__all__ = [
    "AutoscalingSpec",
    "HintPolicy",
    "ReplicaModel",
    "ServeTiming",
    "ServingSpec",
    "SimResult",
    "autoscaling_decision",
    "backlog_policy_desired",
    "hint_desired_replicas",
    "hinted_policy_desired",
    "request_policy_desired",
    "simulate",
]

#: Serve's controller loop period (``RAY_SERVE_CONTROL_LOOP_INTERVAL_S``).
CONTROL_LOOP_INTERVAL_S = 0.1
#: ``AutoscalingConfig.metrics_interval_s`` default (deprecated, still the push period in 2.60).
METRICS_INTERVAL_S = 10.0
#: ``RAY_SERVE_AUTOSCALING_METRIC_RECORD_INTERVAL_FACTOR``.
RECORD_INTERVAL_FACTOR = 0.2
#: ``autoscaling_policy._DELAY_ELAPSED_EPS_S``.
DELAY_EPS_S = 1e-6


# -- configuration ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AutoscalingSpec:
    """Autoscaling as ``rlreward``'s ``AutoscalingOptions`` has it (same field names and defaults).

    ``target_backlog_samples`` set → rlreward's sample-backlog policy, else Serve's default
    request-count policy. ``upscaling_factor``/``downscaling_factor`` None = 1.0. Seconds throughout.
    """

    min_replicas: int = 1
    max_replicas: int = 1
    initial_replicas: int | None = None
    target_ongoing_requests: float = 2.0
    target_backlog_samples: int | None = None
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    downscale_to_zero_delay_s: float | None = None
    look_back_period_s: float = 30.0
    upscaling_factor: float | None = None
    downscaling_factor: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ValueError(
                f"need 0 ≤ min_replicas ≤ max_replicas and max_replicas ≥ 1 "
                f"(got {self.min_replicas}, {self.max_replicas})"
            )
        if self.initial_replicas is not None and not (
            self.min_replicas <= self.initial_replicas <= self.max_replicas
        ):
            raise ValueError("initial_replicas must lie between min_replicas and max_replicas")
        if self.target_ongoing_requests <= 0 or self.look_back_period_s <= 0:
            raise ValueError("target_ongoing_requests and look_back_period_s must be > 0")
        if self.target_backlog_samples is not None and self.target_backlog_samples <= 0:
            raise ValueError("target_backlog_samples must be > 0")
        if min(self.upscale_delay_s, self.downscale_delay_s) < 0:
            raise ValueError("upscale_delay_s and downscale_delay_s must be ≥ 0")

    @property
    def up_factor(self) -> float:
        return self.upscaling_factor or 1.0

    @property
    def down_factor(self) -> float:
        return self.downscaling_factor or 1.0

    def to_options(self) -> dict[str, Any]:
        """The ``replica.autoscaling`` mapping of an ``AppConfig`` (None fields left out)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> AutoscalingSpec:
        """From an ``AutoscalingOptions`` mapping; keys the simulator does not model are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in known and v is not None})


@dataclass(frozen=True)
class HintPolicy:
    """The trainer's phase hints, as the simulated policy uses them.

    ``within_s``: the trainer's ``expect(n, within_s=...)`` — score the step's n samples in this many
    seconds (the policy asks for ``ceil(n / (samples_per_s × within_s))`` replicas).
    ``latency_s``: seconds from the trainer's call until the policy sees it (client → deployment →
    controller). ``hold_s``: the hint is released this long after "step done" is seen.
    ``release_to``: what the policy wants once released — ``"min"`` (``min_replicas``: the trainer is
    updating, nothing comes) or ``"base"`` (the base policy's windowed desire).
    ``replica_samples_per_s``: the throughput the served policy is configured with
    (``hints.replica_samples_per_s``); None = the simulated replica's.
    """

    within_s: float
    latency_s: float = 0.5
    hold_s: float = 0.0
    release_to: Literal["min", "base"] = "min"
    replica_samples_per_s: float | None = None

    def __post_init__(self) -> None:
        if self.within_s <= 0 or self.latency_s < 0 or self.hold_s < 0:
            raise ValueError("hint within_s must be > 0, latency_s and hold_s ≥ 0")
        if self.replica_samples_per_s is not None and self.replica_samples_per_s <= 0:
            raise ValueError("hint replica_samples_per_s must be > 0")
        if self.release_to not in ("min", "base"):
            raise ValueError(f"release_to must be 'min' or 'base' (got {self.release_to!r})")


@dataclass(frozen=True)
class ServingSpec:
    """The deployment: an autoscaling config (or a fixed pool of ``num_replicas``), the replica's
    ``max_ongoing_requests``, and optionally the hint policy (autoscaling only)."""

    autoscaling: AutoscalingSpec | None = None
    num_replicas: int = 1
    max_ongoing_requests: int = 32
    hint: HintPolicy | None = None

    def __post_init__(self) -> None:
        if self.max_ongoing_requests < 1:
            raise ValueError("max_ongoing_requests must be ≥ 1")
        if self.autoscaling is None and self.num_replicas < 1:
            raise ValueError("a fixed pool needs num_replicas ≥ 1")
        if self.hint is not None and self.autoscaling is None:
            raise ValueError("the hint policy needs autoscaling (a fixed pool ignores hints)")


@dataclass(frozen=True)
class ReplicaModel:
    """One replica: ``samples_per_s`` scored per second when busy; ``cold_start_s`` from the request
    for a new replica until it serves (placement + model load)."""

    samples_per_s: float
    cold_start_s: float

    def __post_init__(self) -> None:
        if self.samples_per_s <= 0 or self.cold_start_s < 0:
            raise ValueError("samples_per_s must be > 0 and cold_start_s ≥ 0")


@dataclass(frozen=True)
class ServeTiming:
    """Serve internals that ``AppConfig`` does not set (defaults = Ray 2.60's)."""

    metrics_interval_s: float = METRICS_INTERVAL_S
    control_interval_s: float = CONTROL_LOOP_INTERVAL_S
    record_interval_factor: float = RECORD_INTERVAL_FACTOR
    aggregation: Literal["mean", "max", "min"] = "mean"
    #: when the caller's handle starts its metric tasks (its first record and push).
    handle_start_s: float = 0.0
    router: Literal["least_loaded", "power_of_two"] = "least_loaded"
    seed: int = 0


# -- Serve's policy math (pure; mirrors ray/serve/autoscaling_policy.py of Ray 2.60) ---------------
def metric_record_interval_s(
    look_back_period_s: float,
    metrics_interval_s: float = METRICS_INTERVAL_S,
    factor: float = RECORD_INTERVAL_FACTOR,
) -> float:
    """Seconds between metric records at a handle or replica: ``min(0.2 × look_back, metrics_interval)``."""
    return min(look_back_period_s * factor, metrics_interval_s)


def apply_scaling_factors(
    desired: float, current: int, upscaling_factor: float = 1.0, downscaling_factor: float = 1.0
) -> int:
    """``_apply_scaling_factors``: ``ceil(current + factor × (desired − current))``; at least one step
    down when a downscale would otherwise stall; plain ``ceil(desired)`` from 0 running replicas."""
    if current == 0:
        return math.ceil(desired)
    delta = desired - current
    factor = upscaling_factor if delta > 0 else downscaling_factor
    scaled = math.ceil(current + factor * delta)
    if math.ceil(float(desired)) < current and scaled == current:
        scaled -= 1
    return scaled


@dataclass
class DelayState:
    """Serve's delay bookkeeping (``__decision_counters`` / ``__decision_timestamp``)."""

    counter: int = 0
    since_s: float | None = None


def apply_delay_logic(
    desired: int,
    current_target: int,
    *,
    upscale_delay_s: float,
    downscale_delay_s: float,
    downscale_to_zero_delay_s: float | None,
    state: DelayState,
    now_s: float,
) -> int:
    """``_apply_delay_logic``: the desire must persist for the whole delay (wall clock) before it is
    applied; any tick in the other direction (or equal) resets the timer. Mutates ``state``."""
    decision = current_target
    if desired > current_target:
        if state.counter < 0:
            state.counter, state.since_s = 0, None
        state.counter += 1
        if state.since_s is None:
            state.since_s = now_s
        if now_s - state.since_s + DELAY_EPS_S >= upscale_delay_s:
            state.counter, state.since_s = 0, None
            decision = desired
    elif desired < current_target:
        if state.counter > 0:
            state.counter, state.since_s = 0, None
        state.counter -= 1
        if current_target == 1:  # scaling to zero
            delay = downscale_to_zero_delay_s if downscale_to_zero_delay_s is not None else downscale_delay_s
        else:
            delay = downscale_delay_s
            desired = max(1, desired)
        if state.since_s is None:
            state.since_s = now_s
        if now_s - state.since_s + DELAY_EPS_S >= delay:
            state.counter, state.since_s = 0, None
            decision = desired
    else:
        state.counter, state.since_s = 0, None
    return decision


def autoscaling_decision(
    policy_desired: float,
    *,
    running: int,
    current_target: int,
    total_num_requests: float,
    config: AutoscalingSpec,
    state: DelayState,
    now_s: float,
) -> int:
    """The target replica count Serve sets for one control tick: ``_apply_autoscaling_config`` around
    the policy's desire, then ``apply_bounds`` (min/max)."""
    lo, hi = config.min_replicas, config.max_replicas
    if running == 0 and total_num_requests > 0:  # cold-start fast path, before the policy
        return max(lo, min(hi, max(math.ceil(1 * config.up_factor), current_target)))
    desired = apply_scaling_factors(policy_desired, running, config.up_factor, config.down_factor)
    if running == 0 and desired > 0:
        return max(lo, min(hi, desired))
    decision = apply_delay_logic(
        max(0, desired),
        current_target,
        upscale_delay_s=config.upscale_delay_s,
        downscale_delay_s=config.downscale_delay_s,
        downscale_to_zero_delay_s=config.downscale_to_zero_delay_s,
        state=state,
        now_s=now_s,
    )
    return max(lo, min(hi, decision))


# -- window aggregation (mirrors _private/autoscaling_metrics_merge.py) ---------------------------
Series = list[tuple[float, float]]


def _round_10ms(t: float) -> float:
    return math.floor(t * 100.0 + 0.5) / 100.0


def merge_instantaneous_total(series_list: Sequence[Series]) -> Series:
    """Sum gauge series into one step function: one non-empty series is returned as is; otherwise the
    change points of each (baseline 0), rounded to 10 ms, summed and accumulated."""
    active = [s for s in series_list if s]
    if not active:
        return []
    if len(active) == 1:
        return list(active[0])
    deltas: dict[float, float] = {}
    for s in active:
        prev = 0.0
        for t, v in s:
            if v != prev:
                rt = _round_10ms(t)
                deltas[rt] = deltas.get(rt, 0.0) + (v - prev)
            prev = v
    out: Series = []
    total = 0.0
    for rt in sorted(deltas):
        total += deltas[rt]
        out.append((rt, total))
    return out


class WindowAggregate:
    """``_merge_and_aggregate_timeseries`` of a fixed set of pushed series, evaluated at any ``now``."""

    __slots__ = ("how", "merged", "window_start", "_fixed", "_t_last", "_v_last", "_ws")

    def __init__(self, series_list: Sequence[Series], how: str = "mean") -> None:
        self.how = how
        self.merged = merge_instantaneous_total(series_list)
        self.window_start: float | None = None
        non_empty = [s for s in series_list if s]
        if len(non_empty) > 1 and self.merged:
            aligned = max(s[0][0] for s in non_empty)
            if aligned <= self.merged[-1][0]:
                self.window_start = max(aligned, self.merged[0][0])
        self._fixed = 0.0
        if self.merged:
            m = self.merged
            ws = m[0][0] if self.window_start is None else self.window_start
            self._ws = ws
            self._t_last, self._v_last = m[-1]
            active = 0.0
            for t, v in m:
                if t <= ws:
                    active = v
            seg_start = ws
            for t, v in m:
                if t > ws:
                    self._fixed += active * (t - seg_start)
                    seg_start, active = t, v

    def value(self, now_s: float) -> float:
        """The aggregate at ``now_s`` (0.0 without data)."""
        m = self.merged
        if not m:
            return 0.0
        if self.how == "mean":
            last_window = now_s - self._t_last
            if last_window <= 0:
                last_window = 1e-3
            end = self._t_last + last_window
            if end <= self._ws:
                return 0.0
            return (self._fixed + self._v_last * last_window) / (end - self._ws)
        ws = self.window_start
        vals = [v for t, v in m if ws is None or t >= ws]
        if not vals:
            return 0.0
        return max(vals) if self.how == "max" else min(vals)


class MetricStore:
    """Serve's ``InMemoryMetricsStore`` (at a handle or a replica): per key, (t, value) points.

    ``prune(start)`` drops keys whose newest point is older than ``start`` and, of the others, every
    point at or before ``start`` (Serve bisects on the timestamp alone, so a point at exactly ``start``
    goes).
    """

    def __init__(self) -> None:
        self.data: dict[Any, Series] = {}

    def add(self, points: dict[Any, float], t: float) -> None:
        for k, v in points.items():
            self.data.setdefault(k, []).append((t, float(v)))

    def prune(self, start: float) -> None:
        for k, pts in list(self.data.items()):
            if not pts or pts[-1][0] < start:
                del self.data[k]
            else:
                i = 0
                while i < len(pts) and pts[i][0] <= start:
                    i += 1
                if i:
                    self.data[k] = pts[i:]


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


# event priorities at equal times (lower first); the control tick runs after all of them
_DONE, _READY, _SEND, _HINT, _RECORD, _PUSH = range(6)
_QUEUED = "queued"


class _Sim:
    def __init__(self, workload: Workload, serving: ServingSpec, replica: ReplicaModel, timing: ServeTiming):
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
        self.last_change = 0.0
        self.replica_seconds = 0.0
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
        self.last_change = t

    def _new_replica(self, t: float) -> _Replica:
        self._account(t)
        rep = _Replica(id=len(self.replicas), created_s=t)
        self.replicas.append(rep)
        self.alive += 1
        return rep

    def _make_ready(self, rep: _Replica, t: float) -> None:
        rep.state, rep.ready_s, rep.free_at = "running", t, t
        self.running_version += 1
        if self.auto is not None and self.auto.target_backlog_samples is not None:
            # replicas report backlog_samples (record_autoscaling_stats) on their own cadence
            self.push(t, _RECORD, "replica_record", rep)
            self.push(t, _PUSH, "replica_push", rep)

    def _kill(self, rep: _Replica, t: float) -> None:
        self._account(t)
        rep.state, rep.dead_s = "dead", t
        self.alive -= 1

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

    def _step_finished(self, k: int, t: float) -> None:
        hint = self.s.hint
        if hint is not None:
            self.push(t + hint.latency_s + hint.hold_s, _HINT, "hint_off", k)
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
        )


def simulate(
    workload: Workload,
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
