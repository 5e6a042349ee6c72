"""The sleep board's bookkeeping (commands acknowledged, registration, stale replicas), the phase
timer's decisions, and the ``replica.sleep`` config block."""

from __future__ import annotations

import pytest

from rlreward.serving.sleep import HINT_TTL_S, SleepBoard, timer_decision


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_command_is_done_once_every_live_replica_acknowledged_it():
    clock = Clock()
    board = SleepBoard(clock)
    a = board.report("a", {"state": "awake"}, None, None)
    b = board.report("b", {"state": "awake"}, None, None)
    gen = board.command("sleep", 2)
    assert board.progress(gen)["done"] is False
    # a applies it and says so; b has not yet
    board.report("a", {"state": "asleep"}, a["epoch"], gen)
    board.report("b", {"state": "awake"}, b["epoch"], b["acked"])
    assert board.progress(gen)["done"] is False
    board.report("b", {"state": "asleep"}, b["epoch"], gen, "ValueError: boom")
    state = board.progress(gen)
    assert state["done"] is True
    assert state["errors"] == {"b": "ValueError: boom"}
    assert [r["state"] for r in state["replicas"]] == ["asleep", "asleep"]


def test_a_registering_replica_applies_only_a_fresh_command():
    clock = Clock()
    board = SleepBoard(clock)
    gen = board.command("sleep", 1)
    # Posted while the replica was starting: it is for this replica too.
    assert board.report("starting", {}, None, None)["acked"] == gen - 1
    clock.t += 60
    # An old command (the replica was added later, e.g. by the autoscaler): new replicas start awake.
    answer = board.report("new", {}, None, None)
    assert answer["acked"] == gen and answer["command"]["gen"] == gen
    # A board re-created (new epoch) re-registers the replica whatever it had acknowledged before.
    other_clock = Clock()
    other = SleepBoard(other_clock)
    other.command("wake")
    other_clock.t += 60
    assert other.report("new", {}, answer["epoch"], 7)["acked"] == 1


def test_a_replica_that_stopped_reporting_is_not_waited_for():
    clock = Clock()
    board = SleepBoard(clock)
    board.report("dead", {}, None, None)
    clock.t += 60
    live = board.report("live", {}, None, None)
    gen = board.command("wake")
    board.report("live", {}, live["epoch"], gen)
    state = board.progress(gen)
    assert state["done"] is True and [r["replica_id"] for r in state["replicas"]] == ["live"]


def test_hints_reach_the_replicas_with_their_age():
    clock = Clock()
    board = SleepBoard(clock)
    board.hint("step_done")
    clock.t += 3
    hint = board.report("a", {}, None, None)["hint"]
    assert hint == {"seq": 1, "event": "step_done", "age_s": 3.0}


def test_bad_action_is_refused():
    with pytest.raises(ValueError, match="'sleep' or 'wake'"):
        SleepBoard().command("nap")


def _decide(state="awake", idle_s=10.0, hint=None, handled=0, after_s=5.0):
    return timer_decision(state=state, after_s=after_s, idle_s=idle_s, hint=hint, handled_seq=handled)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, "sleep"),  # no hints: the idle timer
        ({"idle_s": 4.0}, None),  # not idle long enough
        ({"hint": {"seq": 1, "event": "step_done", "age_s": 6}}, "sleep"),
        ({"hint": {"seq": 1, "event": "step_done", "age_s": 2}}, None),  # step_done too recent
        ({"hint": {"seq": 1, "event": "step_done", "age_s": 60}, "idle_s": 1}, None),  # a request since
        ({"hint": {"seq": 1, "event": "expect", "age_s": 60}}, None),  # burst announced: stay awake
        ({"hint": {"seq": 1, "event": "expect", "age_s": HINT_TTL_S + 1}}, "sleep"),  # stale announcement
        ({"state": "asleep", "hint": {"seq": 2, "event": "expect", "age_s": 0.1}, "handled": 1}, "wake"),
        (
            {"state": "asleep", "hint": {"seq": 2, "event": "rollout_started", "age_s": 0}, "handled": 1},
            "wake",
        ),
        ({"state": "asleep", "hint": {"seq": 2, "event": "expect", "age_s": 0.1}, "handled": 2}, None),
        ({"state": "asleep", "hint": {"seq": 2, "event": "step_done", "age_s": 0.1}}, None),
        ({"state": "waking"}, None),
    ],
)
def test_timer_decisions(kwargs, expected):
    assert _decide(**kwargs) == expected


def test_sleep_config_block():
    from pydantic import ValidationError

    from rlreward.serving.config import load_app_config

    cfg = load_app_config({"model": "/m", "replica.sleep": {"after_step_done_s": 5, "level": 2}})
    assert cfg.replica.sleep.after_step_done_s == 5 and cfg.replica.sleep.level == 2
    assert load_app_config({"model": "/m"}).replica.sleep is None
    for bad in ({"after_step_done_s": 0}, {"after_step_done_s": 5, "level": 3}, {"level": 1}):
        with pytest.raises((ValidationError, ValueError)):
            load_app_config({"model": "/m", "replica.sleep": bad})
