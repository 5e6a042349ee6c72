"""The sleep side of ``RewardReplica`` (mixed into it): state, transitions, cold start, the board loop.

Contract:

* ``state`` is ``"awake"``, ``"asleep"`` or ``"waking"``. ``await sleep(level)`` takes the device
  (a forward pass in flight finishes first) and calls ``Scorer.sleep``; ``await wake()`` brings the
  weights back. A forward pass on a sleeping replica wakes it first (``_wake_locked``, under the device
  lock), so a request that reaches it is scored, and requests that arrive during the wake queue behind
  it and are answered in order.
* A wake that fails marks the replica unhealthy: ``check_health`` raises (Serve replaces it) and its
  requests raise :class:`~rlreward.errors.ReplicaUnhealthy` (503 ``unavailable`` at the ingress, the
  clients retry on another replica).
* Inside Serve, a control task reports ``stats()`` to the application's
  :class:`~rlreward.serving.sleep.SleepBoard` every ``REPORT_INTERVAL_S``, applies the
  ``/v1/sleep`` / ``/v1/wake`` commands it finds there, and runs the phase timer
  (:func:`~rlreward.serving.sleep.timer_decision`) when ``replica.sleep`` is configured.
* ``_sleep_stats`` adds to ``stats()``: ``state``, ``sleep_level``, ``rss_bytes``, ``device_bytes``,
  ``weight_bytes``, ``cold_start_s`` (process start → first real scoring, idle time excluded; None
  before it) split in ``cold_start_split`` (``process_s`` — the worker process's start to the
  replica's ``__init__``, Ray may have started the process earlier — ``imports_s``, ``weight_load_s``,
  ``device_copy_s``, ``warm_up_s``, ``first_scoring_s``), ``last_wake_s``, ``last_sleep_s``,
  ``sleeps``, ``wakes``, ``unhealthy``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from rlreward.errors import ReplicaUnhealthy

log = logging.getLogger("rlreward")


class SleepMixin:
    """State and methods of a replica's sleep; ``RewardReplica`` provides ``scorer``, ``_device_lock``,
    ``_backlog``, ``_queue`` and ``stats``."""

    scorer: Any
    _device_lock: Any
    _backlog: int
    _queue: list

    def _init_sleep(self, sleep: dict[str, Any] | None) -> None:
        import psutil

        created = psutil.Process(os.getpid()).create_time()
        self._sleep_cfg = dict(sleep) if sleep else None
        self._state = "awake"
        self._unhealthy: str | None = None
        self._transition: asyncio.Lock | None = None
        self._control_task: asyncio.Task | None = None
        self._last_active = time.monotonic()
        self._counts = {"sleeps": 0, "wakes": 0}
        self._last_wake_s: float | None = None
        self._last_sleep_s: float | None = None
        self._cold: dict[str, float] = {
            "process_s": max(0.0, time.time() - created),
            "imports_s": 0.0,
            "weight_load_s": 0.0,
            "device_copy_s": 0.0,
            "warm_up_s": 0.0,
        }
        self._first_scoring_s: float | None = None

    # -- transitions ------------------------------------------------------------------------------
    def _touch(self) -> None:
        self._last_active = time.monotonic()

    def _note_first_scoring(self, seconds: float) -> None:
        if self._first_scoring_s is None:
            self._first_scoring_s = seconds

    def _lock(self) -> asyncio.Lock:
        if self._transition is None:
            self._transition = asyncio.Lock()
        return self._transition

    async def sleep(self, level: int = 1) -> dict[str, Any]:
        """Release the model's memory (see :mod:`rlreward.engine.sleep`); returns this replica's state.
        ValueError for a level other than 1 or 2."""
        from rlreward.engine.sleep import check_level

        level = check_level(level)
        if self._unhealthy is not None:
            raise ReplicaUnhealthy(self._unhealthy)
        async with self._lock():
            await asyncio.to_thread(self._sleep_sync, level)
        return self._state_row()

    def _sleep_sync(self, level: int) -> None:
        with self._device_lock:
            t0 = time.perf_counter()
            self.scorer.sleep(level)
            self._last_sleep_s = time.perf_counter() - t0
            self._state = "asleep"
            self._counts["sleeps"] += 1

    async def wake(self) -> dict[str, Any]:
        """Bring the weights back; returns this replica's state. Raises ReplicaUnhealthy if it fails."""
        async with self._lock():
            await asyncio.to_thread(self._wake_sync)
        self._touch()
        return self._state_row()

    def _wake_sync(self) -> None:
        with self._device_lock:
            self._wake_locked()

    def _wake_locked(self) -> None:
        """Wake (the caller holds the device lock); raises ReplicaUnhealthy if the replica cannot."""
        if self._unhealthy is not None:
            raise ReplicaUnhealthy(self._unhealthy)
        if not getattr(self.scorer, "sleep_level", 0):
            self._state = "awake"
            return
        self._state = "waking"
        t0 = time.perf_counter()
        try:
            self.scorer.wake()
            # Warm the woken weights with the warm-up probe, so the burst's first batch does not pay it.
            probe = getattr(self, "_probe", None)
            if probe is not None:
                self.scorer.score_prepared([probe])
        except Exception as exc:
            log.exception("rlreward replica could not wake; marking it unhealthy so Serve replaces it")
            self._unhealthy = (
                f"the wake from sleep failed ({type(exc).__name__}); Serve replaces this replica"
            )
            self._state = "asleep"
            raise ReplicaUnhealthy(self._unhealthy) from exc
        self._last_wake_s = time.perf_counter() - t0
        self._counts["wakes"] += 1
        self._state = "awake"
        self._touch()

    # -- introspection ------------------------------------------------------------------------------
    def _state_row(self) -> dict[str, Any]:
        stats = self.stats()  # type: ignore[attr-defined]
        keys = ("replica_id", "pid", "state", "sleep_level", "rss_bytes", "last_wake_s", "last_sleep_s")
        return {k: stats.get(k) for k in keys}

    def _sleep_stats(self) -> dict[str, Any]:
        import psutil

        device = getattr(self.scorer, "device", None)
        device_bytes = 0
        if device is not None and getattr(device, "type", "cpu") == "cuda":
            from rlreward.engine.sleep import device_bytes as allocated

            device_bytes = allocated(device)
        weight_bytes = self.scorer.weight_bytes() if hasattr(self.scorer, "weight_bytes") else None
        split = {k: round(v, 4) for k, v in self._cold.items()}
        cold = None
        if self._first_scoring_s is not None:
            split["first_scoring_s"] = round(self._first_scoring_s, 4)
            cold = round(sum(split.values()), 4)
        return {
            "state": self._state,
            "sleep_level": getattr(self.scorer, "sleep_level", 0),
            "rss_bytes": psutil.Process(os.getpid()).memory_info().rss,
            "device_bytes": device_bytes,
            "weight_bytes": weight_bytes,
            "cold_start_s": cold,
            "cold_start_split": split,
            "last_wake_s": self._last_wake_s,
            "last_sleep_s": self._last_sleep_s,
            **self._counts,
            "sleep_config": self._sleep_cfg,
            "unhealthy": self._unhealthy,
        }

    # -- the board loop (inside Serve only) ---------------------------------------------------------
    def _start_control(self) -> None:
        """Start the board loop once, on the replica's event loop (no-op outside Serve)."""
        if self._control_task is not None and not self._control_task.done():
            return
        try:
            loop = asyncio.get_running_loop()
            from ray import serve

            ctx = serve.get_replica_context()
        except Exception:  # no running loop yet, or not inside a Serve replica (in-process tests)
            return
        self._control_task = loop.create_task(
            self._control(ctx.app_name, ctx.replica_id.unique_id), name="rlreward-sleep"
        )

    async def _control(self, app_name: str, replica_id: str) -> None:
        from rlreward.serving import sleep as sb

        board: Any = None
        epoch: str | None = None
        acked: int | None = None
        error: str | None = None
        handled = 0
        task: asyncio.Task | None = None
        warned = False
        while True:
            await asyncio.sleep(sb.REPORT_INTERVAL_S)
            try:
                if task is not None and task.done():
                    gen, error = task.result()
                    if gen is not None:
                        acked = gen
                    task = None
                if board is None:
                    board = sb.board_handle(app_name)
                stats = {k: v for k, v in self.stats().items() if k != "recent_batches"}
                answer = await asyncio.wait_for(
                    board.report.remote(replica_id, stats, epoch, acked, error), 10
                )
                warned = False
            except Exception as exc:  # the board died (its creator left): re-create it next time
                if not warned:
                    log.warning("rlreward sleep board of %s unavailable: %r; retrying", app_name, exc)
                    warned = True
                board = None
                continue
            epoch, acked = answer["epoch"], answer["acked"]
            if task is not None:
                continue
            command, hint = answer["command"], answer["hint"]
            if hint and hint["event"] in sb.WAKE_EVENTS and self._state == "awake":
                handled = max(handled, hint["seq"])
            if command is not None and command["gen"] > acked:
                task = asyncio.get_running_loop().create_task(self._apply(command))
                continue
            if self._sleep_cfg is None or self._backlog or self._queue:
                continue
            decision = sb.timer_decision(
                state=self._state,
                after_s=float(self._sleep_cfg["after_step_done_s"]),
                idle_s=time.monotonic() - self._last_active,
                hint=hint,
                handled_seq=handled,
            )
            if decision == "wake":
                handled = hint["seq"]
            if decision is not None:
                level = int(self._sleep_cfg.get("level", 1))
                task = asyncio.get_running_loop().create_task(
                    self._apply({"gen": None, "action": decision, "level": level})
                )

    async def _apply(self, command: dict[str, Any]) -> tuple[int | None, str | None]:
        """Run one command; returns (its number, the error message or None)."""
        try:
            if command["action"] == "sleep":
                await self.sleep(command["level"])
            else:
                await self.wake()
        except Exception as exc:
            log.warning("rlreward replica could not %s: %r", command["action"], exc)
            return command["gen"], f"{type(exc).__name__}: {exc}"
        return command["gen"], None
