"""``rlreward tune`` knows sleeping: the simulator's awake replica-seconds, wake time apart from cold
start, hints that wake ahead of the burst, the sleep settings swept and recommended where they win.

Expected figures are computed by hand from the workload (closed-loop GRPO, one replica)."""

from __future__ import annotations

import pytest

from rlreward.offline.tune.policy import ReplicaModel, ServingSpec, SleepSpec
from rlreward.offline.tune.simulator import simulate
from rlreward.offline.tune.workload import grpo_workload

# 3 steps of 8 samples at 4 samples/s: 2 s of scoring per step, one request per step.
REPLICA = ReplicaModel(samples_per_s=4.0, cold_start_s=30.0, wake_s=1.5)


def _traffic(rollout_s: float):
    return grpo_workload(steps=3, prompts=1, group=8, update_s=10.0, rollout_s=rollout_s)


def test_without_sleep_awake_equals_placed():
    result = simulate(_traffic(4.0), ServingSpec(num_replicas=1), REPLICA)
    assert result.awake_replica_seconds == pytest.approx(result.replica_seconds)
    assert result.mean_stage_s == pytest.approx(2.0)


def test_hints_ahead_of_the_burst_hide_the_wake():
    # rollout 4 s: the expect is seen 0.3 s after the rollout starts, the wake (1.5 s) ends before the burst.
    spec = ServingSpec(num_replicas=1, sleep=SleepSpec(after_step_done_s=1.0))
    result = simulate(_traffic(4.0), spec, REPLICA)
    assert result.mean_stage_s == pytest.approx(2.0)
    # Horizon: 3 × (2 s scoring) + rollout 4 + 2 × (update 10 + rollout 4) = 38 s, one replica placed.
    assert result.replica_seconds == pytest.approx(38.0)
    # Asleep from step_done + 0.3 + 1 s until the next expect is seen (update 10 + 0.3 s later):
    # 10 + 0.3 - 1.3 = 9 s per gap, 2 gaps. The first rollout's expect (t=0, seen at 0.3 s) comes
    # before the idle timer's second: no sleep before step 0.
    asleep = 2 * 9.0
    assert result.awake_replica_seconds == pytest.approx(38.0 - asleep)


def test_a_request_to_a_sleeping_replica_pays_the_wake():
    # No rollout lead: the burst arrives before the announcement, the request wakes the replica.
    spec = ServingSpec(num_replicas=1, sleep=SleepSpec(after_step_done_s=1.0))
    awake = simulate(_traffic(0.0), ServingSpec(num_replicas=1), REPLICA)
    slept = simulate(_traffic(0.0), spec, REPLICA)
    # Step 0 starts at t=0 (the replica is awake); steps 1 and 2 wait 1.5 s for the wake.
    assert [s.stage_s for s in slept.steps] == pytest.approx([2.0, 3.5, 3.5])
    assert [s.stage_s for s in awake.steps] == pytest.approx([2.0, 2.0, 2.0])
    assert slept.awake_replica_seconds < slept.replica_seconds


def test_sleep_spec_is_checked():
    with pytest.raises(ValueError, match="after_step_done_s"):
        SleepSpec(after_step_done_s=0)
    with pytest.raises(ValueError, match="level 1 or 2"):
        SleepSpec(after_step_done_s=1, level=3)
    with pytest.raises(ValueError, match="wake_s"):
        ReplicaModel(samples_per_s=1, cold_start_s=1, wake_s=-1)


def _points(replica: ReplicaModel, rollout_s: float):
    from rlreward.offline.tune.sweep import run_sweep

    specs = [ServingSpec(num_replicas=1)] + [
        ServingSpec(num_replicas=1, sleep=SleepSpec(after_step_done_s=a)) for a in (1.0, 5.0)
    ]
    return run_sweep(_traffic(rollout_s), specs, replica)


def test_sleep_is_recommended_where_it_wins_and_written_into_the_config():
    from rlreward.offline.tune.sweep import recommend, recommendation_config

    points = _points(REPLICA, rollout_s=4.0)
    rec = recommend(points)
    # after 1 s: 20 of 38 awake replica-seconds (hand count above); after 5 s: asleep 5 s per gap.
    assert rec.spec.sleep == SleepSpec(after_step_done_s=1.0)
    assert rec.awake_replica_seconds == pytest.approx(20.0)
    assert points[2].awake_replica_seconds == pytest.approx(38.0 - 2 * 5.0)
    assert recommendation_config(rec.spec, {})["replica"]["sleep"] == {"after_step_done_s": 1.0, "level": 1}
    assert (
        "sleep"
        not in recommendation_config(points[0].spec, {"replica": {"sleep": {"after_step_done_s": 3}}})[
            "replica"
        ]
    )


def test_sleep_is_not_recommended_when_the_wake_costs_the_reward_stage():
    from rlreward.offline.tune.sweep import recommend

    slow = ReplicaModel(samples_per_s=4.0, cold_start_s=30.0, wake_s=8.0)
    # No rollout lead: every later step waits 8 s for its wake (2 s of scoring): far over the 10% slack.
    rec = recommend(_points(slow, rollout_s=0.0))
    assert rec.spec.sleep is None
