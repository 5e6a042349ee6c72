"""Does ``rlreward tune``'s simulator predict real runs? (issue 15, deliverable 3)

For each configuration: deploy it on a local Ray cluster (CPU, the tiny model), drive a closed-loop
GRPO workload over HTTP (each step: ``prompts`` requests of ``group`` samples sent at once; the next
step ``update_s`` after the last score; with ``hints``, ``client.expect(prompts × group)`` at the step's
start and ``client.step_done()`` after its last score, as the TRL adapter does), and measure

* the mean reward-stage time per step (first request sent → last score back), and
* replica-seconds: ∫ replicas alive dt over [t = 0, last score], replicas alive = STARTING + RUNNING +
  STOPPING in ``serve.status()`` polled every ``--poll-s`` (1 s; polling every 0.2 s slowed the
  replicas by ~1.5x on the 2-core box) — what the simulator counts (starting, running, draining).
  t = 0 is a warm-up request, ``LEAD_S`` before the first step (it starts the ingress router's
  metric recording: the simulation's ``handle_start_s = 0``).

Then simulate the same workload and config with the replica's samples/s and cold start measured
first by ``rlreward tune --measure``'s calibration (:func:`rlreward.offline.tune.measure.calibrate`)
and print both. ``rlreward loadtest`` is not used: it has no hint option and counts only replicas
that answer its stats poll (running ones), not starting or draining replicas.

Usage::

    RLREWARD_TINY=.cache/tiny .venv/bin/python benchmarks/validate_tune.py \\
        --steps 4 --prompts 8 --group 8 --update-s 10 --json benchmarks/results/validate_tune.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import threading
import time
from typing import Any

MAX = 2
#: seconds from the warm-up request (simulated t=0) to the first step
LEAD_S = 2.0


def configs(rate: float, step_samples: int) -> dict[str, dict[str, Any]]:
    """The validated configurations (AppConfig ``replica`` sections)."""
    within = step_samples / (rate * MAX)
    return {
        "fixed-1": {"num_replicas": 1},
        "fixed-2": {"num_replicas": MAX},
        "requests-1..2": {
            "autoscaling": {
                "min_replicas": 1,
                "max_replicas": MAX,
                "target_ongoing_requests": 2,
                "upscale_delay_s": 0,
                "downscale_delay_s": 30,
                "look_back_period_s": 10,
            }
        },
        "hints-1..2": {
            "autoscaling": {
                "min_replicas": 1,
                "max_replicas": MAX,
                "target_ongoing_requests": 100,  # load alone never scales it: the hints do
                "upscale_delay_s": 0,
                "downscale_delay_s": 30,
                "hints": {
                    "replica_samples_per_s": round(rate, 3),
                    "default_within_s": round(within, 3),
                    "release_to": "base",
                },
            }
        },
    }


class Alive:
    """Polls serve.status() for the replica deployment's alive replicas (STARTING+RUNNING+STOPPING)."""

    def __init__(self, app: str, interval_s: float = 1.0) -> None:
        self.app, self.interval_s = app, interval_s
        self.points: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def count(self) -> int:
        from ray import serve

        from rlreward.serving.config import REPLICA_DEPLOYMENT

        st = serve.status().applications[self.app].deployments[REPLICA_DEPLOYMENT].replica_states
        return sum(st.get(k, 0) for k in ("STARTING", "RUNNING", "STOPPING", "UPDATING", "RECOVERING"))

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.points.append((time.perf_counter(), self.count()))
            except Exception:
                pass
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._t.start()

    def stop(self) -> None:
        self._stop.set()
        self._t.join(5)

    def integral(self, t0: float, t1: float) -> float:
        pts = [(t, n) for t, n in self.points if t0 <= t <= t1]
        before = [n for t, n in self.points if t < t0]
        if before:
            pts.insert(0, (t0, before[-1]))
        total = 0.0
        for (ta, na), (tb, _) in zip(pts, pts[1:] + [(t1, 0)]):
            total += na * (tb - ta)
        return total

    def timeline(self, t0: float) -> list[tuple[float, int]]:
        out: list[tuple[float, int]] = []
        for t, n in self.points:
            if not out or out[-1][1] != n:
                out.append((round(t - t0, 2), n))
        return out


async def drive(
    url: str, steps: int, prompts: int, group: int, update_s: float, hints: bool, maker: Any
) -> dict:
    from rlreward.client import AsyncRewardClient

    client = AsyncRewardClient(url=url, chunk_size=group, max_concurrency=prompts)
    out = []
    try:
        # t0 = the warm-up request: it creates the ingress's router to the replicas, whose metric
        # records/pushes start then (the simulation's handle_start_s = 0); the first step follows LEAD_S later
        t0 = time.perf_counter()
        await client.score([maker.sample("warm", 0)])
        await asyncio.sleep(max(0.0, t0 + LEAD_S - time.perf_counter()))
        for k in range(steps):
            if k:
                await asyncio.sleep(update_s)
            reqs = [[maker.sample(f"s{k}p{p}", m) for m in range(group)] for p in range(prompts)]
            start = time.perf_counter()
            if hints:
                await client.expect(prompts * group)
            results = await asyncio.gather(*(client.score(r) for r in reqs))
            end = time.perf_counter()
            if hints:
                await client.step_done()
            errors = sum(1 for part in results for r in part if r.error is not None)
            out.append({"step": k, "start": start - t0, "stage_s": end - start, "errors": errors})
        return {"t0": t0, "t1": end, "steps": out}
    finally:
        await client.aclose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=os.environ.get("RLREWARD_TINY", ".cache/tiny"))
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--update-s", type=float, default=10.0)
    p.add_argument("--only", default=None, help="comma-separated config names")
    p.add_argument("--samples-per-s", type=float, default=None, help="skip the calibration's throughput")
    p.add_argument("--cold-start-s", type=float, default=None, help="skip the calibration's cold start")
    p.add_argument("--hint-latency-s", type=float, default=0.5)
    p.add_argument(
        "--poll-s",
        type=float,
        default=1.0,
        help="serve.status() poll period for replica-seconds (0.2 s slowed the replicas here)",
    )
    p.add_argument("--image-size", default="112x112", help="WxH of each prompt's image")
    p.add_argument("--prompt-chars", type=int, default=200)
    p.add_argument("--response-chars", type=int, default=400)
    p.add_argument("--json", required=True)
    args = p.parse_args()

    import ray
    import yaml
    from ray import serve

    from rlreward.offline.tune.measure import calibrate
    from rlreward.offline.tune.policy import ReplicaModel
    from rlreward.offline.tune.simulator import simulate
    from rlreward.offline.tune.sweep import serving_from_app_config
    from rlreward.offline.tune.workload import grpo_workload
    from rlreward.serving.app import build_app
    from rlreward.serving.config import default_config_text, load_app_config

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    from rlreward.offline.loadtest.plan import SampleMaker

    w, h = (int(x) for x in args.image_size.split("x"))

    def maker(seed: int) -> SampleMaker:
        rc = (args.response_chars, args.response_chars)
        return SampleMaker((args.prompt_chars, args.prompt_chars), rc, (w, h), 1, seed)

    load0 = os.getloadavg()
    base = {"model": args.model}
    rate, cold = args.samples_per_s, args.cold_start_s
    calibration = None
    if rate is None or cold is None:
        cal = calibrate(
            load_app_config(base),
            prompts=args.prompts,
            group=args.group,
            bursts=3,
            http_base=f"http://127.0.0.1:{port}",
            sample_maker=maker(7),
        )
        calibration = cal.to_json()
        rate = rate or cal.samples_per_s
        cold = cold or cal.cold_start_s
    print(f"replica: {rate:.2f} samples/s, cold start {cold:.1f} s", flush=True)
    step_samples = args.prompts * args.group
    from dataclasses import replace

    from rlreward.offline.tune.workload import Traffic

    described = grpo_workload(
        steps=args.steps, prompts=args.prompts, group=args.group, update_s=args.update_s, rollout_s=0.0
    )
    # as driven: step 0 LEAD_S after the warm-up (t=0), hints sent as each step starts (no lead)
    workload = Traffic(
        steps=(replace(described.steps[0], gap_s=LEAD_S),) + described.steps[1:],
        closed_loop=True,
        description=described.description + f", first step {LEAD_S:g} s after t=0",
    )
    rows = []
    chosen = configs(rate, step_samples)
    names = args.only.split(",") if args.only else list(chosen)
    for name in names:
        replica_section = chosen[name]
        app = f"val-{name.replace('.', '')}"
        data = yaml.safe_load(default_config_text())
        data["scorer"]["model"] = args.model
        data["replica"] = {**data["replica"], **replica_section}
        if "autoscaling" in replica_section:
            data["replica"].pop("num_replicas", None)
        cfg = load_app_config({**data, "name": app, "route_prefix": f"/{app}"})
        serve.run(build_app(cfg), name=app, route_prefix=f"/{app}")
        alive = Alive(app, args.poll_s)
        alive.start()
        time.sleep(2.0)
        hints = "hints" in replica_section.get("autoscaling", {})
        real = asyncio.run(
            drive(
                f"http://127.0.0.1:{port}/{app}",
                args.steps,
                args.prompts,
                args.group,
                args.update_s,
                hints,
                maker(11),
            )
        )
        time.sleep(0.5)
        alive.stop()
        real_rs = alive.integral(real["t0"], real["t1"])
        real_stage = sum(s["stage_s"] for s in real["steps"]) / len(real["steps"])
        spec = serving_from_app_config(data, hint_latency_s=args.hint_latency_s)
        sim = simulate(workload, spec, ReplicaModel(samples_per_s=rate, cold_start_s=cold))
        row = {
            "config": name,
            "replica": replica_section,
            "real": {
                "reward_stage_s": real_stage,
                "replica_seconds": real_rs,
                "steps": real["steps"],
                "wall_s": real["t1"] - real["t0"],
                "timeline": alive.timeline(real["t0"]),
            },
            "predicted": {
                "reward_stage_s": sim.mean_stage_s,
                "replica_seconds": sim.replica_seconds,
                "steps": [s.stage_s for s in sim.steps],
                "horizon_s": sim.horizon_s,
                "timeline": list(sim.target_timeline),
            },
        }
        row["error"] = {
            k: (row["predicted"][k] - row["real"][k]) / row["real"][k]
            for k in ("reward_stage_s", "replica_seconds")
        }
        rows.append(row)
        print(
            f"{name:<14} stage real {real_stage:6.2f} s  predicted {sim.mean_stage_s:6.2f} s "
            f"({row['error']['reward_stage_s']:+.0%})   replica-s real {real_rs:7.1f}  predicted "
            f"{sim.replica_seconds:7.1f} ({row['error']['replica_seconds']:+.0%})",
            flush=True,
        )
        serve.delete(app)
    out = {
        "command": "benchmarks/validate_tune.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "json"
        ),
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg(),
        "replica_model": {"samples_per_s": rate, "cold_start_s": cold},
        "calibration": calibration,
        "workload": workload.summary(),
        "rows": rows,
    }
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
