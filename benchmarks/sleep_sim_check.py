"""The simulator's prediction of a measured sleep run (``benchmarks/sleep_bench.py``'s JSON).

The replica model comes from the measurements themselves: samples/s from the always-awake run
(step samples ÷ its mean reward-stage time: one replica, one burst per step), ``wake_s`` from the
sleep run's replicas (level 2: the sleep run's ``/v1/stats`` ``last_wake_s``, else the memory part's). The workload is the
loadtest's: ``--update-s`` between steps with the ``expect`` hint ``--lead-s`` before each step, i.e.
``grpo_workload(update_s = update - lead, rollout_s = lead)``. Prints and writes predicted vs measured
reward-stage time and awake replica-seconds for both runs.

Usage: ``python benchmarks/sleep_sim_check.py benchmarks/results/sleep_cpu.json``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rlreward.offline.tune.policy import ReplicaModel, ServingSpec, SleepSpec
from rlreward.offline.tune.simulator import simulate
from rlreward.offline.tune.workload import grpo_workload


def main() -> None:
    path = Path(sys.argv[1])
    data = json.loads(path.read_text())
    st = data["grpo_settings"]
    samples = st["prompts"] * st["group"]
    awake, slept = data["grpo_awake"], data["grpo_sleep"]
    rate = samples / (awake["reward_stage_total_s"] / len(awake["reward_stage_s"]))
    wake_s = slept.get("last_wake_s") or data["memory"]["levels"]["2"]["replica_last_wake_s"]
    cold = slept.get("cold_start_s") or data["memory"]["cold_start_s"]
    replica = ReplicaModel(samples_per_s=rate, cold_start_s=cold, wake_s=wake_s)
    traffic = grpo_workload(
        steps=st["steps"],
        prompts=st["prompts"],
        group=st["group"],
        update_s=st["update_s"] - st["lead_s"],
        rollout_s=st["lead_s"],
    )
    sleep = SleepSpec(after_step_done_s=st["sleep"]["after_step_done_s"], level=st["sleep"]["level"])
    out = {"replica_model": {"samples_per_s": rate, "wake_s": wake_s}}
    for label, spec, measured in (
        ("awake", ServingSpec(num_replicas=1), awake),
        ("sleep", ServingSpec(num_replicas=1, sleep=sleep), slept),
    ):
        r = simulate(traffic, spec, replica)
        out[label] = {
            "predicted_stage_total_s": round(sum(s.stage_s for s in r.steps), 3),
            "measured_stage_total_s": measured["reward_stage_total_s"],
            "predicted_awake_replica_s": round(r.awake_replica_seconds, 3),
            "measured_awake_replica_s": measured["awake_replica_seconds"],
            "predicted_replica_s": round(r.replica_seconds, 3),
            "measured_replica_s": measured["replica_seconds"],
        }
    data["simulator_check"] = out
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
