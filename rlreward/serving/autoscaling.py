"""Serve autoscaling policies for the reward replicas (run on the Serve controller), and the RL-phase
hints that drive them.

Two policies, both given to Serve as ``autoscaling_config.policy`` by
:meth:`rlreward.serving.config.AutoscalingOptions.to_serve`:

* :class:`SampleBacklogPolicy` (``target_backlog_samples``): scale on samples, not requests.
* :class:`HintedPolicy` (``hints``): the base policy (Serve's request count, or the sample backlog),
  raised while the trainer has announced a burst and lowered once it says the step is done.

**Phase hints** (``client.expect``, ``rollout_started``, ``step_done``) reach a :class:`HintBoard` —
one small named Ray actor per application (:func:`hint_board_name`, namespace
:data:`HINT_NAMESPACE`), created by the policy on the controller — through the ingress (``POST
/v1/hints``) or a replica (``RewardReplica.hint``, handle mode). The policy runs on the controller
loop every 0.1 s and must not block: it keeps one ``snapshot`` call in flight and uses the newest
answer. Serve still applies ``upscale_delay_s``, the factors and min/max around any policy's desire.

Contract: Serve cloudpickles a policy's module by value to the controller, so this module imports
only the standard library (and ``ray``, lazily, where a policy talks to its board). The pure policy
math here is also what ``rlreward tune``'s simulator runs. Why a board and not replica metrics, and
the measured hint latency: docs/tuning.md ("How a hint reaches Serve").
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("rlreward")

#: Ray namespace of the hint boards (one named actor per application).
HINT_NAMESPACE = "rlreward"
#: Hint events the board accepts.
HINT_EVENTS = ("expect", "rollout_started", "step_done")


def hint_board_name(app_name: str) -> str:
    """Name of the :class:`HintBoard` actor of application ``app_name``."""
    return f"hints:{app_name}"


# -- pure policy math (the simulator runs these same functions) ------------------------------------
def request_policy_desired(
    total_num_requests: float, running: int, current_target: int, target_ongoing_requests: float
) -> float:
    """Serve's default policy (``_core_replica_queue_length_policy``): total / target per replica;
    the current target while no replica runs."""
    if running == 0:
        return current_target
    return running * (total_num_requests / (target_ongoing_requests * running))


def backlog_policy_desired(
    replica_backlogs: Sequence[float],
    total_queued_requests: float,
    total_num_requests: float,
    target_backlog_samples: int,
) -> int:
    """The sample-backlog policy: ``ceil((Σ replica backlog samples + queued samples) / target)``.

    Requests queued at the callers are counted in samples: each weighs the mean samples per request
    on the replicas, ``Σ backlog samples / requests running there`` (Serve's ``total_num_requests −
    total_queued_requests``, window means both), at least 1 — a queue of GRPO groups is not counted as
    one sample each. With no replica report yet, ``total_num_requests`` stands in for the backlog.

    >>> backlog_policy_desired([40.0], 0.0, 5.0, 16)
    3
    >>> backlog_policy_desired([40.0], 2.0, 7.0, 16)  # 5 requests hold 40 samples: 2 queued ≈ 16 more
    4
    """
    if not replica_backlogs:
        backlog = total_num_requests
    else:
        held = sum(replica_backlogs)
        running = total_num_requests - total_queued_requests
        per_request = max(1.0, held / running) if running > 0 else 1.0
        backlog = held + total_queued_requests * per_request
    return math.ceil(backlog / target_backlog_samples) if backlog > 0 else 0


def hint_desired_replicas(
    expected_samples: float,
    within_s: float,
    replica_samples_per_s: float,
    *,
    min_replicas: int,
    max_replicas: int,
) -> int:
    """Replicas a hint asks for: ``ceil(expected_samples / (replica_samples_per_s × within_s))``,
    bounded to ``[min_replicas, max_replicas]``. Samples, seconds, samples per second.

    >>> hint_desired_replicas(512, within_s=8.0, replica_samples_per_s=20.0, min_replicas=1, max_replicas=4)
    4
    >>> hint_desired_replicas(100, within_s=10.0, replica_samples_per_s=20.0, min_replicas=1, max_replicas=4)
    1
    """
    if within_s <= 0 or replica_samples_per_s <= 0:
        raise ValueError("within_s and replica_samples_per_s must be > 0")
    need = math.ceil(expected_samples / (replica_samples_per_s * within_s)) if expected_samples > 0 else 0
    return max(min_replicas, min(max_replicas, need))


def hinted_policy_desired(
    base_desired: float,
    hint_desired: int | None,
    *,
    released: bool = False,
    release_to: str = "min",
    min_replicas: int = 0,
) -> float:
    """The hint policy's desire.

    ``hint_desired`` (an active hint's :func:`hint_desired_replicas`) raises the base policy's desire;
    with no active hint and ``released`` (the trainer's last step is done) the desire is
    ``min_replicas`` if ``release_to == "min"``, else the base desire; before any hint, the base desire.

    >>> hinted_policy_desired(1.5, 4), hinted_policy_desired(6.0, 4)
    (4, 6.0)
    >>> hinted_policy_desired(3.0, None, released=True, min_replicas=1), hinted_policy_desired(3.0, None)
    (1, 3.0)
    """
    if hint_desired is not None:
        return max(base_desired, hint_desired)
    if released and release_to == "min":
        return min_replicas
    return base_desired


# -- the hint board ---------------------------------------------------------------------------------
class HintBoard:
    """What the trainer has announced, per caller (``source``). A plain class: the policy makes it a
    named Ray actor; tests use it directly (``clock`` injectable, seconds).

    * ``expect`` (``n_samples``, optional ``within_s``, else ``default_within_s``): this source's next
      burst is n samples, to be scored within ``within_s``; active until its ``step_done`` (+ ``hold_s``)
      or ``ttl_s`` after it was posted (a trainer that died does not hold replicas forever).
    * ``rollout_started``: re-announce this source's last expectation (no-op for a source that never
      sent one).
    * ``step_done``: this source's burst is over; released ``hold_s`` later.

    :meth:`snapshot` sums the active expectations: ``rate`` (samples/s the trainer wants:
    Σ n / within_s), ``samples`` (Σ n), ``active`` (sources), ``released`` (nothing active and the
    last change was a release: the trainer is between bursts).
    """

    def __init__(
        self,
        default_within_s: float | None = None,
        hold_s: float = 0.0,
        ttl_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.default_within_s = default_within_s
        self.hold_s, self.ttl_s, self.clock = hold_s, ttl_s, clock
        #: source → [n_samples, within_s, posted_at, done_at | None]
        self._active: dict[str, list[Any]] = {}
        self._last: dict[str, tuple[int, float]] = {}
        self._released = False
        self._posted = 0

    def post(
        self, event: str, source: str, n_samples: int | None = None, within_s: float | None = None
    ) -> dict:
        """Apply one hint; returns ``{"accepted": bool, "reason"?: str}`` (never raises on bad input)."""
        now = self.clock()
        self._posted += 1
        if event == "expect":
            if not isinstance(n_samples, int) or n_samples < 1:
                return {"accepted": False, "reason": "expect needs n_samples ≥ 1"}
            within = within_s if within_s is not None else self.default_within_s
            if within is None or within <= 0:
                return {
                    "accepted": False,
                    "reason": "expect needs within_s > 0 (the deployment sets no hints.default_within_s)",
                }
            self._last[source] = (n_samples, float(within))
            self._active[source] = [n_samples, float(within), now, None]
            self._released = False
        elif event == "rollout_started":
            if source in self._last:
                n, within = self._last[source]
                self._active[source] = [n, within, now, None]
                self._released = False
        elif event == "step_done":
            if source in self._active and self._active[source][3] is None:
                self._active[source][3] = now
        else:
            return {"accepted": False, "reason": f"unknown event {event!r} (one of {', '.join(HINT_EVENTS)})"}
        return {"accepted": True}

    def snapshot(self) -> dict[str, Any]:
        """The active expectations now (see the class docstring)."""
        now = self.clock()
        for source, (_, _, posted, done) in list(self._active.items()):
            if done is not None and now - done >= self.hold_s:
                del self._active[source]
                self._released = True
            elif now - posted >= self.ttl_s:
                del self._active[source]
        rate = sum(n / within for n, within, _, _ in self._active.values())
        samples = sum(n for n, _, _, _ in self._active.values())
        return {
            "rate": rate,
            "samples": samples,
            "active": len(self._active),
            "released": self._released and not self._active,
            "posted": self._posted,
        }


def named_board(cls: type, name: str, **init: Any) -> Any:
    """The named actor ``name`` (namespace :data:`HINT_NAMESPACE`) of ``cls``, created with ``init``
    if missing: no CPU reserved, restarted if it dies. The hint and sleep boards are such actors."""
    import ray

    return (
        ray.remote(cls)
        .options(name=name, namespace=HINT_NAMESPACE, get_if_exists=True, num_cpus=0, max_restarts=-1)
        .remote(**init)
    )


def _hint_board_handle(app_name: str) -> Any:
    """The application's board actor handle; raises ValueError if it does not exist."""
    import ray

    return ray.get_actor(hint_board_name(app_name), namespace=HINT_NAMESPACE)


async def post_hint(app_name: str, event: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
    """Post one validated hint (``{"event", "source", "n_samples"?, "within_s"?}``) to ``app_name``'s
    board; ``{"accepted": False, "reason"}`` when the application has no hint policy."""
    import asyncio

    try:
        board = _hint_board_handle(app_name)
    except ValueError:
        return {
            "accepted": False,
            "reason": f"application {app_name!r} has no hint policy (set replica.autoscaling.hints); "
            "it scales on load alone",
        }
    return await asyncio.wait_for(board.post.remote(**event), timeout_s)


# -- policies ----------------------------------------------------------------------------------------
def _backlog_desired(ctx: Any, target_backlog_samples: int) -> int:
    per_replica = (ctx.aggregated_metrics or {}).get("backlog_samples", {})
    return backlog_policy_desired(
        list(per_replica.values()),
        ctx.total_queued_requests or 0,
        ctx.total_num_requests,
        target_backlog_samples,
    )


class SampleBacklogPolicy:
    """Autoscaling policy on samples, not requests (:func:`backlog_policy_desired` over the replicas'
    ``backlog_samples`` and the callers' queued requests, weighed in samples).

    Use with ``autoscaling.target_backlog_samples`` (:class:`rlreward.serving.config.AutoscalingOptions`);
    Serve still applies min/max, the up/down delays and the scaling factors around it.
    """

    def __init__(self, target_backlog_samples: int = 64) -> None:
        if target_backlog_samples <= 0:
            raise ValueError("target_backlog_samples must be positive")
        self.target = target_backlog_samples

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        return max(_backlog_desired(ctx, self.target), 0), {}


class HintedPolicy:
    """The base policy (``target_backlog_samples`` set: sample backlog; else Serve's request count),
    raised by the trainer's hints (:func:`hint_desired_replicas` at ``replica_samples_per_s``) and,
    after ``step_done``, lowered to ``min_replicas`` (``release_to="min"``) or handed back to the base
    (``"base"``) — :func:`hinted_policy_desired`. Without hints it is the base policy.

    Instantiated once on the controller by Serve (``policy_kwargs``); its :class:`HintBoard` is created
    on the first call and polled without blocking. ``policy_state["hint"]`` shows what it last saw.
    """

    def __init__(
        self,
        replica_samples_per_s: float,
        target_backlog_samples: int | None = None,
        default_within_s: float | None = None,
        release_to: str = "min",
        hold_s: float = 0.0,
        ttl_s: float = 600.0,
    ) -> None:
        if replica_samples_per_s <= 0:
            raise ValueError("replica_samples_per_s must be > 0")
        if release_to not in ("min", "base"):
            raise ValueError(f"release_to must be 'min' or 'base' (got {release_to!r})")
        self.samples_per_s = replica_samples_per_s
        self.target_backlog_samples = target_backlog_samples
        self.board_args = {"default_within_s": default_within_s, "hold_s": hold_s, "ttl_s": ttl_s}
        self.release_to = release_to
        self._board: Any = None
        self._pending: Any = None  # concurrent.futures.Future of the snapshot in flight
        self._snapshot: dict[str, Any] | None = None

    def _poll(self, app_name: str) -> dict[str, Any] | None:
        """Start or collect one snapshot call; never waits. Returns the newest snapshot seen."""
        try:
            if self._board is None:
                self._board = named_board(HintBoard, hint_board_name(app_name), **self.board_args)
            if self._pending is not None and self._pending.done():
                fut, self._pending = self._pending, None
                self._snapshot = fut.result()
            if self._pending is None:
                self._pending = self._board.snapshot.remote().future()
        except Exception:  # the board died or could not start: scale on load, retry next tick
            log.warning(
                "rlreward hint board of %s unavailable; scaling on load alone", app_name, exc_info=True
            )
            self._board = self._pending = self._snapshot = None
        return self._snapshot

    def decide(self, ctx: Any, snapshot: dict[str, Any] | None) -> tuple[float, dict[str, Any]]:
        """The desire for ``ctx`` given a board ``snapshot`` (pure; :meth:`__call__` polls)."""
        if self.target_backlog_samples is not None:
            base: float = _backlog_desired(ctx, self.target_backlog_samples)
        else:
            base = request_policy_desired(
                ctx.total_num_requests,
                ctx.current_num_replicas,
                ctx.target_num_replicas,
                ctx.config.get_target_ongoing_requests(),
            )
        lo, hi = ctx.capacity_adjusted_min_replicas, ctx.capacity_adjusted_max_replicas
        hint_n = None
        released = False
        if snapshot is not None:
            released = bool(snapshot.get("released"))
            if snapshot.get("active"):
                hint_n = hint_desired_replicas(
                    snapshot["rate"], 1.0, self.samples_per_s, min_replicas=lo, max_replicas=hi
                )
        desired = hinted_policy_desired(
            base, hint_n, released=released, release_to=self.release_to, min_replicas=lo
        )
        return desired, {"hint": {"base": base, "hint_replicas": hint_n, "released": released}}

    def __call__(self, ctx: Any) -> tuple[float, dict[str, Any]]:
        return self.decide(ctx, self._poll(ctx.app_name))
