"""Colocated reward replica, in miniature on CPU: asleep outside the reward stage, woken by the hints.

    python examples/colocated/run_cpu.py --model "$RLREWARD_TINY" --steps 3

What it does, as a colocated RL trainer would (``colocated-7b.yaml`` is the GPU configuration):

1. starts a local Ray cluster and deploys one reward replica placed on the trainer's own node (the
   ``node:<ip>`` resource; on GPUs also a fraction of each GPU, ``num_gpus: 0.25``) with
   ``replica.sleep: {after_step_done_s: 1, level: 2}``;
2. per step: announces the burst (``client.expect``) at the start of the rollout — the replica wakes
   while the "generation" runs — scores the group (``client.score``), says ``client.step_done()``,
   then runs the "update": the replica falls asleep one second later and gives its memory back;
3. prints the replica's state and RSS (from ``GET /v1/stats``) at each phase, and shuts down.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time


def replica_row(url: str) -> dict:
    import httpx

    for _ in range(100):
        rows = httpx.get(f"{url}/v1/stats", timeout=30).json()["replicas"]
        if rows:
            return rows[0]
        time.sleep(0.2)
    raise RuntimeError("the replica never reported to /v1/stats")


def show(url: str, phase: str) -> str:
    row = replica_row(url)
    line = f"{phase:<28} replica {row['state']:<6} RSS {row['rss_bytes'] / 2**20:7.1f} MiB"
    print(line, flush=True)
    return row["state"]


def main() -> int:
    ap = argparse.ArgumentParser(description="colocated reward replica in miniature (CPU)")
    ap.add_argument("--model", default=os.environ.get("RLREWARD_TINY"), help="checkpoint directory")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--generation-s", type=float, default=2.0, help="simulated rollout generation")
    ap.add_argument("--update-s", type=float, default=3.0, help="simulated trainer update")
    args = ap.parse_args()
    if not args.model:
        ap.error("--model DIR (or RLREWARD_TINY) is required: build one with `rlreward make-tiny DIR`")

    import ray
    from ray import serve

    from rlreward.client import RewardClient
    from rlreward.serving.app import build_app
    from rlreward.serving.config import load_app_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        node = f"node:{ray.util.get_node_ip_address()}"
        cfg = load_app_config(
            {
                "model": args.model,
                "replica.num_replicas": 1,
                # On the trainer's node, a share of its CPUs (on GPUs: num_gpus 0.25, see colocated-7b.yaml).
                "replica.ray_actor_options": {"num_cpus": 0.5, "resources": {node: 0.01}},
                "replica.sleep": {"after_step_done_s": 1.0, "level": 2},
            }
        )
        serve.run(build_app(cfg), name=cfg.name, route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        client = RewardClient(url=url)
        group = [{"prompt": "What is 6 x 7?", "response": f"It is {n}."} for n in (42, 41, 48, 36)]
        states = []
        for step in range(args.steps):
            client.expect(len(group), within_s=30)  # the rollout starts: wake the replica now
            time.sleep(args.generation_s)
            states.append(show(url, f"step {step}: end of generation"))
            scores = [r.score for r in client.score(group)]
            print(f"step {step}: scores {[round(x, 4) for x in scores]}", flush=True)
            client.step_done()
            time.sleep(args.update_s)
            states.append(show(url, f"step {step}: during the update"))
        client.close()
    finally:
        serve.shutdown()
        ray.shutdown()
    awake_in_bursts = all(s == "awake" for s in states[0::2])
    asleep_in_updates = all(s == "asleep" for s in states[1::2])
    print(f"awake for every burst: {awake_in_bursts}; asleep in every update: {asleep_in_updates}")
    return 0 if awake_in_bursts and asleep_in_updates else 1


if __name__ == "__main__":
    sys.exit(main())
