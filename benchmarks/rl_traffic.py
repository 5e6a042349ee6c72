"""RL-shaped traffic on CPU, each ratio measured side by side in one run (BENCHMARKS.md, "Serving under
RL traffic").

1. ``rlreward bench --systems shared,serve,serve-stream --concurrency C``: served ÷ in-process on
   saturated traffic (``serve``: one request per GRPO group, all in flight) and single-sample streams
   ÷ in-process (``serve-stream``: one sample per request, C in flight), interleaved over repeats.
2. GRPO reward-stage time with and without prefix sharing: two apps on the same ``bench-small``
   checkpoint (``batching.prefix_sharing`` on / off, one replica each, one CPU thread), the same
   ``rlreward loadtest --shape grpo`` steps sent to each in turn (A B A B ...), mean reward-stage time.

Writes ``benchmarks/results/rl-traffic.json`` (and the bench and loadtest JSON/PNG beside it) and prints
the rows for BENCHMARKS.md with ``uptime`` before and after. Short by design (a few minutes on 2 cores)::

    .venv/bin/python benchmarks/rl_traffic.py [--prompts 4] [--group 8] [--rounds 2] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def bench_part(args: argparse.Namespace) -> dict:
    out = RESULTS / "rl-traffic-bench.json"
    cmd = [
        str(ROOT / ".venv" / "bin" / "rlreward"),
        "bench",
        "--model",
        "bench-small",
        "--workload",
        "grpo",
        "--prompts",
        str(args.prompts),
        "--group",
        str(args.group),
        "--systems",
        "shared,serve,serve-stream",
        "--concurrency",
        str(args.concurrency),
        "--threads",
        "1",
        "--repeats",
        str(args.repeats),
        "--json",
        str(out),
    ]
    print("$", " ".join(cmd[0:1] + cmd[1:]), file=sys.stderr)
    subprocess.run(cmd, check=True)
    rep = json.loads(out.read_text())
    sps = {k: v.get("samples_per_s") for k, v in rep["systems"].items()}
    # CPU seconds of the scoring process (in-process: this one; served: the replica's), median run
    cpu = {k: v.get("cpu_s") for k, v in rep["systems"].items()}

    def per_cpu(name: str) -> float | None:
        return cpu["shared"] / cpu[name] if cpu.get(name) and cpu.get("shared") else None

    return {
        "cpu_s": cpu,
        "serve/shared samples per CPU-second": per_cpu("serve"),
        "serve-stream/shared samples per CPU-second": per_cpu("serve-stream"),
        "command": "rlreward " + " ".join(cmd[1:]),
        "samples_per_s": sps,
        "serve/shared": sps["serve"] / sps["shared"] if sps.get("serve") and sps.get("shared") else None,
        "serve-stream/shared": sps["serve-stream"] / sps["shared"]
        if sps.get("serve-stream") and sps.get("shared")
        else None,
        "replica_batches": {k: v.get("replica_batches") for k, v in rep["systems"].items()},
        "loadavg": [rep["host"]["loadavg_start"], rep["host"]["loadavg_end"]],
    }


def prefix_part(args: argparse.Namespace) -> dict:
    import ray
    import torch

    from rlreward.commands import loadtest
    from rlreward.engine.config import BatchingConfig, ScorerConfig
    from rlreward.offline.bench.models import load_bench_model
    from rlreward.serving.app import deploy
    from rlreward.serving.config import AppConfig, RayActorOptions, ReplicaOptions

    work = Path(tempfile.mkdtemp(prefix="rl-traffic-"))
    bench = load_bench_model("bench-small", torch.device("cpu"), torch.float32, seed=0)
    ckpt = str(work / "checkpoint")
    bench.save(ckpt)
    ray.init(
        address="local",
        num_cpus=3,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    apps = {}
    for sharing in (True, False):
        name = "rl-shared" if sharing else "rl-unshared"
        cfg = AppConfig(
            name=name,
            route_prefix=None,
            scorer=ScorerConfig(
                model=ckpt, dtype="float32", device="cpu", batching=BatchingConfig(prefix_sharing=sharing)
            ),
            replica=ReplicaOptions(
                num_replicas=1,
                max_ongoing_requests=64,
                ray_actor_options=RayActorOptions(
                    num_cpus=1, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}}
                ),
            ),
        )
        deploy(cfg)
        apps[sharing] = name
    parser = argparse.ArgumentParser()
    loadtest.add_arguments(parser)
    stages: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}  # the replica's CPU seconds per run
    runs = []
    for r in range(args.rounds):
        for sharing in (True, False):
            out = RESULTS / f"rl-traffic-grpo-{'shared' if sharing else 'unshared'}-{r}.json"
            argv = [
                "--app-name", apps[sharing], "--shape", "grpo", "--steps", str(args.steps),
                "--prompts", str(args.prompts), "--group", str(args.group), "--update-s", "0.5",
                "--prompt-chars", "120", "--response-chars", "200:400", "--image-size", "448x448",
                "--json", str(out), "--no-progress", "--seed", str(r),
            ]  # fmt: skip
            code = loadtest.run(parser.parse_args(argv))
            rep = json.loads(out.read_text())
            stages[sharing] += [s["reward_stage_s"] for s in rep["steps"]]
            cpu[sharing].append(rep["replica_cpu_s"])
            runs.append(
                {"app": apps[sharing], "round": r, "rc": code, "steps": rep["steps"], "json": str(out)}
            )
    mean = {k: sum(v) / len(v) for k, v in stages.items()}
    # A recorded run replayed on the same app: does the replay reproduce its reward-stage times?
    original = RESULTS / "rl-traffic-grpo-shared-0.json"
    replay = RESULTS / "rl-traffic-replay.json"
    argv = ["--app-name", apps[True], "--shape", "trace", "--trace", str(original.with_suffix(".trace.jsonl")),
            "--json", str(replay), "--no-progress"]  # fmt: skip
    loadtest.run(parser.parse_args(argv))
    orig_rep, replay_rep = json.loads(original.read_text()), json.loads(replay.read_text())
    orig_stages = [s["reward_stage_s"] for s in orig_rep["steps"]]
    replay_stages = [s["reward_stage_s"] for s in replay_rep["steps"]]
    return {
        "replay": {
            "recorded_reward_stage_s": orig_stages,
            "replayed_reward_stage_s": replay_stages,
            "replayed/recorded mean": (sum(replay_stages) / len(replay_stages))
            / (sum(orig_stages) / len(orig_stages)),
            "replica_cpu_s": {"recorded": orig_rep["replica_cpu_s"], "replayed": replay_rep["replica_cpu_s"]},
            "loadavg": {"recorded": orig_rep["loadavg_start"], "replayed": replay_rep["loadavg_start"]},
        },
        "replica_cpu_s": {"prefix_sharing": cpu[True], "no_prefix_sharing": cpu[False]},
        "unshared/shared replica CPU seconds": sum(cpu[False]) / sum(cpu[True]),
        "command": "rlreward loadtest --app-name {rl-shared,rl-unshared} --shape grpo --steps "
        f"{args.steps} --prompts {args.prompts} --group {args.group} --update-s 0.5 --prompt-chars 120 "
        "--response-chars 200:400 --image-size 448x448 (A B alternated, "
        f"{args.rounds} rounds)",
        "reward_stage_s_mean": {"prefix_sharing": mean[True], "no_prefix_sharing": mean[False]},
        "unshared/shared reward-stage time": mean[False] / mean[True],
        "runs": runs,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--skip-bench", action="store_true")
    p.add_argument("--skip-prefix", action="store_true", help="only the rlreward bench part")
    args = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "uptime_start": uptime(),
        "cpu_count": os.cpu_count(),
        "created": time.strftime("%FT%T%z"),
    }
    print(report["uptime_start"], file=sys.stderr)
    if not args.skip_bench:
        report["bench"] = bench_part(args)
        report["uptime_after_bench"] = uptime()
    if not args.skip_prefix:
        report["prefix_sharing"] = prefix_part(args)
    report["uptime_end"] = uptime()
    out = RESULTS / ("rl-traffic.json" if not args.skip_prefix else "rl-traffic-bench-only.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    b, ps = report.get("bench") or {}, report.get("prefix_sharing")
    print(f"\n{report['uptime_start']}\n{report['uptime_end']}")
    if b:
        print(f"serve/shared samples/s:        {b['serve/shared']:.2f}  ({b['samples_per_s']})")
        print(f"serve-stream/shared samples/s: {b['serve-stream/shared']:.2f}")
        print(
            f"samples per CPU-second, serve/shared: {b['serve/shared samples per CPU-second']}, "
            f"serve-stream/shared: {b['serve-stream/shared samples per CPU-second']} ({b['cpu_s']})"
        )
    if not ps:
        print(f"wrote {out}")
        return 0
    print(
        f"GRPO reward stage, no sharing / sharing: {ps['unshared/shared reward-stage time']:.2f} "
        f"({ps['reward_stage_s_mean']})"
    )
    rp = ps["replay"]
    print(f"trace replay / recording, mean reward stage: {rp['replayed/recorded mean']:.2f} ({rp})")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
