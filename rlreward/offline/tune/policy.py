"""Ray Serve 2.60's autoscaling math, pure: the configuration the simulator models and the
controller's arithmetic around a policy, as in ``ray/serve/...`` of Ray 2.60.

* **Configuration**: :class:`AutoscalingSpec` (``rlreward``'s ``AutoscalingOptions`` field names and
  defaults), :class:`HintPolicy` (the trainer's phase hints), :class:`ServingSpec` (autoscaling or a
  fixed pool), :class:`ReplicaModel` (throughput, cold start), :class:`ServeTiming` (Serve internals).
* **Metric cadence**: handles and replicas *record* every ``min(0.2 × look_back_period_s,
  metrics_interval_s)`` s (:func:`metric_record_interval_s`) into a :class:`MetricStore` and *push*
  the points of the last ``look_back_period_s`` every ``metrics_interval_s`` (10 s).
* **Window aggregation** (``_private/autoscaling_metrics_merge.py``): :class:`WindowAggregate` merges
  gauge series as right-continuous step functions (change points rounded to 10 ms, summed), opens the
  window once every series has a point, and reduces it: the mean is time-weighted with the last value
  held until *now*; ``max``/``min`` over the points.
* **Decision** (``autoscaling_policy.py``, ``_apply_autoscaling_config``): :func:`autoscaling_decision`
  — the cold-start fast path (0 running and requests seen), the scaling factors
  (:func:`apply_scaling_factors`), the immediate path with 0 running, the wall-clock
  upscale/downscale/downscale-to-zero delay timers that reset whenever the desire falls back
  (:func:`apply_delay_logic`, Serve's 1e-6 s tolerance), then the min/max bounds.

The policies' own desires (request count, sample backlog, hint) are
:mod:`rlreward.serving.autoscaling`'s, the very functions the served policies run; the event loop
that drives all this is :mod:`.simulator`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

__all__ = [
    "AutoscalingSpec",
    "DelayState",
    "HintPolicy",
    "MetricStore",
    "ReplicaModel",
    "ServeTiming",
    "ServingSpec",
    "Series",
    "SleepSpec",
    "WindowAggregate",
    "apply_delay_logic",
    "apply_scaling_factors",
    "autoscaling_decision",
    "merge_instantaneous_total",
    "metric_record_interval_s",
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
class SleepSpec:
    """``replica.sleep`` (:mod:`rlreward.serving.sleep`): a replica sleeps ``after_step_done_s`` after
    the trainer's step_done (and as long after its last request), or after that many idle seconds
    before any hint; it wakes on the next step's ``expect`` (seen ``hint_latency_s`` after the
    trainer's call, ``hint_lead_s`` before the step) or on a request. ``level`` 1 or 2 (its wake time is
    the :class:`ReplicaModel`'s ``wake_s``)."""

    after_step_done_s: float
    level: int = 1
    hint_latency_s: float = 0.3

    def __post_init__(self) -> None:
        if self.after_step_done_s <= 0 or self.hint_latency_s < 0 or self.level not in (1, 2):
            raise ValueError("sleep after_step_done_s must be > 0, hint_latency_s ≥ 0, level 1 or 2")


@dataclass(frozen=True)
class ServingSpec:
    """The deployment: an autoscaling config (or a fixed pool of ``num_replicas``), the replica's
    ``max_ongoing_requests``, optionally the hint policy (autoscaling only) and the replicas' sleep."""

    autoscaling: AutoscalingSpec | None = None
    num_replicas: int = 1
    max_ongoing_requests: int = 32
    hint: HintPolicy | None = None
    sleep: SleepSpec | None = None

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
    for a new replica until it serves (placement + model load); ``wake_s`` for a sleeping one to
    serve again (``/v1/stats``' ``last_wake_s``)."""

    samples_per_s: float
    cold_start_s: float
    wake_s: float = 0.0

    def __post_init__(self) -> None:
        if self.samples_per_s <= 0 or self.cold_start_s < 0 or self.wake_s < 0:
            raise ValueError("samples_per_s must be > 0, cold_start_s and wake_s ≥ 0")


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
