"""Sleep between reward bursts, measured on a real local Ray Serve app (CPU) — issue 21's goals.

Part ``memory``: one replica on a widened tiny checkpoint (``--mlp`` wide MLPs: a few hundred MB of
fp32 weights, :func:`rlreward.offline.wide.make_wide`). After one scoring request it reads
``GET /v1/stats`` (cold start and its split), then for level 1 and level 2: ``POST /v1/sleep``, the
replica's RSS measured from outside (psutil on the pid ``/v1/stats`` reports), ``POST /v1/wake``
(round trip and the replica's own ``last_wake_s``), and the same batch re-scored (bitwise equal:
one replica, same process, same batch). Then a request sent to a level-2 sleeping replica (its
latency includes the wake).

Part ``grpo``: ``rlreward loadtest --url ... --shape grpo --hints LEAD`` against the same checkpoint,
once always awake and once with ``replica.sleep: {after_step_done_s, level: 2}``: reward-stage time
per step and awake vs placed replica-seconds (the timeline read from ``/v1/stats``).

Usage::

    python benchmarks/sleep_bench.py --model $RLREWARD_TINY --mlp 200000 --json benchmarks/results/sleep_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

SAMPLES = [
    {"prompt": "What is 2+2?", "response": "It is 4."},
    {"prompt": "Name a prime number.", "response": "Seven is prime."},
    {"prompt": "Describe the sky.", "response": "Blue, with a few white clouds."},
    {"prompt": "Capital of France?", "response": "Paris."},
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _deploy(model: str, name: str, sleep: dict | None, port: int) -> str:
    from ray import serve

    from rlreward.serving.app import build_app
    from rlreward.serving.config import load_app_config

    args: dict[str, Any] = {"model": model, "replica.ray_actor_options.num_cpus": 1}
    if sleep:
        args["replica.sleep"] = sleep
    cfg = load_app_config(args).model_copy(update={"name": name, "route_prefix": f"/{name}"})
    serve.run(build_app(cfg), name=name, route_prefix=f"/{name}")
    return f"http://127.0.0.1:{port}/{name}"


def _stats(url: str) -> list[dict[str, Any]]:
    for _ in range(200):
        rows = httpx.get(f"{url}/v1/stats", timeout=30).json()["replicas"]
        if rows:
            return rows
        time.sleep(0.25)
    raise RuntimeError("no replica reported to /v1/stats")


def _score(url: str) -> tuple[list[float], float]:
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/v1/score", json={"samples": SAMPLES}, timeout=300)
    r.raise_for_status()
    return [x["score"] for x in r.json()["results"]], time.perf_counter() - t0


def memory_part(url: str) -> dict[str, Any]:
    reference, first_latency = _score(url)
    (row,) = _stats(url)
    pid = row["pid"]
    out: dict[str, Any] = {
        "weight_bytes": row["weight_bytes"],
        "cold_start_s": row["cold_start_s"],
        "cold_start_split": row["cold_start_split"],
        "first_request_s": round(first_latency, 3),
        "levels": {},
    }
    warm = [_score(url)[1] for _ in range(3)]
    out["awake_request_s"] = round(statistics.median(warm), 3)
    for level in (1, 2):
        awake = psutil.Process(pid).memory_info().rss
        t0 = time.perf_counter()
        httpx.post(f"{url}/v1/sleep", json={"level": level}, timeout=300).raise_for_status()
        sleep_rt = time.perf_counter() - t0
        asleep = psutil.Process(pid).memory_info().rss
        t0 = time.perf_counter()
        httpx.post(f"{url}/v1/wake", timeout=300).raise_for_status()
        wake_rt = time.perf_counter() - t0
        (row,) = _stats(url)
        scores, _ = _score(url)
        out["levels"][level] = {
            "rss_awake_bytes": awake,
            "rss_asleep_bytes": asleep,
            "rss_drop_bytes": awake - asleep,
            "rss_drop_of_weights": round((awake - asleep) / out["weight_bytes"], 3),
            "sleep_round_trip_s": round(sleep_rt, 3),
            "wake_round_trip_s": round(wake_rt, 3),
            "replica_last_wake_s": row["last_wake_s"],
            "bitwise_equal_after_wake": scores == reference,
        }
    httpx.post(f"{url}/v1/sleep", json={"level": 2}, timeout=300).raise_for_status()
    scores, latency = _score(url)
    out["request_to_level2_sleeper_s"] = round(latency, 3)
    out["request_to_level2_sleeper_bitwise_equal"] = scores == reference
    cold = out["cold_start_s"] or 0.0
    out["wake_over_cold_start_level2"] = (
        round(out["levels"][2]["replica_last_wake_s"] / cold, 4) if cold else None
    )
    return out


def grpo_part(url: str, args: argparse.Namespace, label: str, tmp: Path) -> dict[str, Any]:
    from rlreward.commands import loadtest

    p = argparse.ArgumentParser()
    loadtest.add_arguments(p)
    out = tmp / f"grpo-{label}.json"
    ns = p.parse_args(
        ["--url", url, "--shape", "grpo", "--steps", str(args.steps), "--prompts", str(args.prompts),
         "--group", str(args.group), "--update-s", str(args.update_s), "--hints", str(args.lead_s),
         "--json", str(out), "--no-progress", "--poll-s", "0.2", "--seed", "0"]
    )  # fmt: skip
    loadtest.run(ns)
    report = json.loads(out.read_text())
    stages = [s["reward_stage_s"] for s in report["steps"]]
    (row,) = _stats(url)
    return {
        "last_wake_s": row["last_wake_s"],
        "wakes": row["wakes"],
        "sleeps": row["sleeps"],
        "cold_start_s": row["cold_start_s"],
        "reward_stage_s": stages,
        "reward_stage_total_s": round(sum(stages), 3),
        "replica_seconds": report["replica_seconds"],
        "awake_replica_seconds": report["awake_replica_seconds"],
        "failed_requests": report["failed_requests"],
        "answered": report["answered"],
        "sent": report["sent"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.environ.get("RLREWARD_TINY"), help="a tiny checkpoint to widen")
    ap.add_argument("--mlp", type=int, default=200_000, help="MLP width of the widened checkpoint")
    ap.add_argument("--part", choices=("memory", "grpo", "all"), default="all")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--update-s", type=float, default=8.0)
    ap.add_argument("--lead-s", type=float, default=2.0, help="expect hint this long before each step")
    ap.add_argument("--after-step-done-s", type=float, default=1.0)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()

    import ray
    from ray import serve

    from rlreward.offline.wide import make_wide

    tmp = Path(tempfile.mkdtemp(prefix="sleep-bench-"))
    model = str(make_wide(args.model, tmp / "wide", intermediate_size=args.mlp))
    port = _port()
    result: dict[str, Any] = {"command": ["python", "benchmarks/sleep_bench.py", *sys.argv[1:]]}
    result["loadavg_start"] = os.getloadavg()
    result["checkpoint_bytes"] = os.path.getsize(Path(model) / "model.safetensors")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        if args.part in ("memory", "all"):
            url = _deploy(model, "mem", None, port)
            result["memory"] = memory_part(url)
            serve.delete("mem")
        if args.part in ("grpo", "all"):
            sleep = {"after_step_done_s": args.after_step_done_s, "level": 2}
            result["grpo_settings"] = {
                k: getattr(args, k) for k in ("steps", "prompts", "group", "update_s", "lead_s")
            }
            result["grpo_settings"]["sleep"] = sleep
            for label, cfg in (("awake", None), ("sleep", sleep)):
                url = _deploy(model, f"grpo{label}", cfg, port)
                _score(url)  # the cold start is not part of the run
                result[f"grpo_{label}"] = grpo_part(url, args, label, tmp)
                serve.delete(f"grpo{label}")
    finally:
        serve.shutdown()
        ray.shutdown()
    result["loadavg_end"] = os.getloadavg()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
