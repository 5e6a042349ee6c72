"""Sleep and wake of every replica of an application: the board they share and the phase timer.

* :class:`SleepBoard` — one small named Ray actor per application (:func:`sleep_board_name`,
  namespace ``rlreward``), created by whoever needs it first (``get_if_exists``; it fate-shares with
  its creator and is re-created, empty, by the next caller: the replicas re-register on their next
  report). Every replica reports its ``stats()`` to it every :data:`REPORT_INTERVAL_S` and gets back
  the newest command and the newest trainer hint. ``/v1/sleep`` and ``/v1/wake`` post a command
  (numbered) and wait until every replica that reports has acknowledged it (:func:`run_command`);
  ``/v1/stats`` reads the reports (:func:`replica_reports`). A replica that registers acknowledges the
  command in force without applying it (new replicas start awake), unless that command is fresher than
  :data:`STALE_AFTER_S` (posted while the replica was starting).
* :func:`timer_decision` — ``replica.sleep: {after_step_done_s: S, level: L}``: a replica sleeps at
  level L once the trainer's last hint is ``step_done`` and both that hint and the replica's last
  activity (request, wake) are S seconds old — or, when no hint is in force, after S idle seconds —
  and wakes on a new ``expect`` / ``rollout_started`` (ahead of the burst). A request that reaches a
  sleeping replica wakes it (:mod:`rlreward.serving.replica`).

Imports only the standard library (``ray`` lazily): the ingress loads it without torch.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

#: Seconds between two reports of a replica.
REPORT_INTERVAL_S = 0.25
#: A replica whose last report is older than this is not waited for (it died or is being replaced).
STALE_AFTER_S = 5.0
#: An ``expect`` / ``rollout_started`` older than this no longer keeps a replica awake (the hint
#: board's default ``ttl_s``: a trainer that died does not hold replicas awake forever).
HINT_TTL_S = 600.0
#: Hint events that announce a burst (wake) and the one that ends it (sleep timer).
WAKE_EVENTS = ("expect", "rollout_started")
STEP_DONE = "step_done"


def sleep_board_name(app_name: str) -> str:
    """Name of the :class:`SleepBoard` actor of application ``app_name``."""
    return f"sleep:{app_name}"


class SleepBoard:
    """Commands, hints and replica reports of one application (see the module docstring). A plain
    class: :func:`board_handle` makes it a named actor; tests use it directly (``clock`` injectable)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.epoch = uuid.uuid4().hex
        self._command: dict[str, Any] | None = None
        self._command_at = -float("inf")
        self._gen = 0
        self._hint: dict[str, Any] | None = None
        self._hint_seq = 0
        #: replica_id → {"stats", "acked", "error", "seen"}
        self._replicas: dict[str, dict[str, Any]] = {}

    def command(self, action: str, level: int = 1) -> int:
        """Post ``sleep`` (at ``level``) or ``wake`` for every replica; returns its number."""
        if action not in ("sleep", "wake"):
            raise ValueError(f"action must be 'sleep' or 'wake', not {action!r}")
        self._gen += 1
        self._command = {"gen": self._gen, "action": action, "level": level}
        self._command_at = self.clock()
        return self._gen

    def hint(self, event: str) -> None:
        """Record the trainer's newest phase hint (the replicas' sleep timers read it)."""
        self._hint_seq += 1
        self._hint = {"seq": self._hint_seq, "event": event, "at": self.clock()}

    def report(
        self,
        replica_id: str,
        stats: dict[str, Any],
        epoch: str | None,
        acked: int | None,
        error: str | None = None,
    ) -> dict[str, Any]:
        """A replica's report (``epoch``, ``acked``: what this board last answered it, None at first);
        returns the board's epoch, the replica's acknowledged command number, the command in force and
        the newest hint (``age_s`` instead of a clock reading: the replica's clock may differ)."""
        now = self.clock()
        if epoch != self.epoch or acked is None or replica_id not in self._replicas:
            # Registering: a command older than STALE_AFTER_S is not for it (new replicas start awake);
            # a fresher one is (it was posted while this replica was starting).
            fresh = now - self._command_at <= STALE_AFTER_S
            acked = self._gen - 1 if fresh and self._gen else self._gen
        self._replicas[replica_id] = {"stats": stats, "acked": acked, "error": error, "seen": now}
        hint = None
        if self._hint is not None:
            hint = {"seq": self._hint["seq"], "event": self._hint["event"], "age_s": now - self._hint["at"]}
        return {"epoch": self.epoch, "acked": acked, "command": self._command, "hint": hint}

    def progress(self, gen: int, stale_after_s: float = STALE_AFTER_S) -> dict[str, Any]:
        """Of the replicas that reported within ``stale_after_s``: which acknowledged command ``gen``."""
        now = self.clock()
        live = {rid: e for rid, e in self._replicas.items() if now - e["seen"] <= stale_after_s}
        for rid in [rid for rid, e in self._replicas.items() if now - e["seen"] > 10 * stale_after_s]:
            del self._replicas[rid]  # long gone: forget it
        return {
            "done": all(e["acked"] >= gen for e in live.values()),
            "errors": {rid: e["error"] for rid, e in live.items() if e["acked"] >= gen and e["error"]},
            "replicas": [self._row(rid, e, now) for rid, e in sorted(live.items())],
        }

    def reports(self, stale_after_s: float = STALE_AFTER_S) -> list[dict[str, Any]]:
        """The live replicas' latest stats, ``reported_age_s`` added."""
        return self.progress(0, stale_after_s)["replicas"]

    @staticmethod
    def _row(rid: str, entry: dict[str, Any], now: float) -> dict[str, Any]:
        return {**entry["stats"], "replica_id": rid, "reported_age_s": round(now - entry["seen"], 3)}


def board_handle(app_name: str) -> Any:
    """The application's board actor (created if missing)."""
    from rlreward.serving.autoscaling import named_board

    return named_board(SleepBoard, sleep_board_name(app_name))


async def run_command(
    app_name: str, action: str, level: int = 1, timeout_s: float = 300.0, poll_s: float = 0.1
) -> dict[str, Any]:
    """Post ``action`` to every replica of ``app_name`` and wait until all that report acknowledged
    it. Returns ``{"replicas": [stats...]}``; TimeoutError after ``timeout_s``; RuntimeError naming
    the replicas whose command failed (a failed wake leaves that replica unhealthy: Serve replaces it)."""
    board = board_handle(app_name)
    gen = await board.command.remote(action, level)
    start = time.monotonic()
    deadline = start + timeout_s
    while True:
        # Give every replica one report after the command before reading their answers.
        await asyncio.sleep(poll_s)
        state = await board.progress.remote(gen)
        # No replica reported yet (the app just started): wait for one, unless there is none at all.
        if state["done"] and (state["replicas"] or time.monotonic() - start > STALE_AFTER_S):
            break
        if time.monotonic() > deadline:
            waiting = [r["replica_id"] for r in state["replicas"]]
            raise TimeoutError(f"replicas {waiting} did not {action} within {timeout_s:.0f}s")
    if state["errors"]:
        failed = "; ".join(f"{rid}: {msg}" for rid, msg in state["errors"].items())
        raise RuntimeError(f"{action} failed on {len(state['errors'])} replica(s): {failed}")
    return {"replicas": state["replicas"]}


async def replica_reports(app_name: str) -> list[dict[str, Any]]:
    """Every live replica's latest ``stats()`` (as reported within :data:`STALE_AFTER_S`)."""
    return await board_handle(app_name).reports.remote()


async def post_phase_hint(app_name: str, event: str) -> None:
    """Hand a trainer hint to the replicas' sleep timers."""
    await board_handle(app_name).hint.remote(event)


def timer_decision(
    *,
    state: str,
    after_s: float,
    idle_s: float,
    hint: dict[str, Any] | None,
    handled_seq: int,
) -> str | None:
    """What a replica's sleep timer does now: ``"sleep"``, ``"wake"`` or None (pure).

    ``state`` the replica's, ``after_s`` the configured ``after_step_done_s``, ``idle_s`` seconds since
    its last request or wake, ``hint`` the board's newest (``{"seq", "event", "age_s"}``) and
    ``handled_seq`` the newest hint seq the replica already woke for.

    >>> timer_decision(state="awake", after_s=5, idle_s=9, hint={"seq": 3, "event": "step_done", "age_s": 6}, handled_seq=2)
    'sleep'
    >>> timer_decision(state="asleep", after_s=5, idle_s=9, hint={"seq": 4, "event": "expect", "age_s": 0.1}, handled_seq=3)
    'wake'
    >>> timer_decision(state="awake", after_s=5, idle_s=60, hint={"seq": 4, "event": "expect", "age_s": 60}, handled_seq=4)
    """
    event = hint["event"] if hint else None
    if state == "asleep":
        if event in WAKE_EVENTS and hint["seq"] > handled_seq and hint["age_s"] < HINT_TTL_S:  # type: ignore[index]
            return "wake"
        return None
    if state != "awake" or idle_s < after_s:
        return None
    if event is None:
        return "sleep"  # no hints: the idle timer
    if event == STEP_DONE:
        return "sleep" if hint["age_s"] >= after_s else None  # type: ignore[index]
    # A burst is announced: stay awake for it, unless the announcement is stale.
    return "sleep" if hint["age_s"] >= HINT_TTL_S else None  # type: ignore[index]
