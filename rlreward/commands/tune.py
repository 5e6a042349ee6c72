"""``rlreward tune``: choose the autoscaling config for an RL run by simulating Ray Serve's autoscaler.

::

    # sweep: Pareto front of replica-seconds vs reward-stage time, recommended config as YAML
    rlreward tune --workload grpo --steps 20 --prompts 64 --group 8 --update-s 30 --rollout-s 20 \\
        --replica-samples-per-s 20 --cold-start-s 15 --max-replicas 4 \\
        --json tune.json --out-yaml recommended.yaml --plot tune.png
    rlreward serve --config recommended.yaml --model /models/skywork

    # measure the replica on a real deployment first (a throwaway app; local cluster or --ray-address)
    rlreward tune --workload grpo ... --measure configs/tiny-cpu.yaml --json tune.json

    # predict one config (an AppConfig YAML) on a recorded trace
    rlreward tune --trace run.jsonl --replica-samples-per-s 20 --cold-start-s 15 \\
        --evaluate configs/skywork-vl-7b.yaml --json predicted.json

Without ``--evaluate`` the JSON has ``pareto`` (a list of ``{"config", "reward_stage_s",
"replica_seconds"}``), ``recommended``, ``recommended_without_hints`` and every simulated ``points``;
with it, ``predicted: {"reward_stage_s", "replica_seconds", ...}``. Reward-stage time is the mean per
step of first request sent → last score back (seconds); replica-seconds is the whole run's.
The model and its simplifications: :mod:`rlreward.offline.tune.policy` and
:mod:`rlreward.offline.tune.simulator`.
Bad input prints one line (``rlreward tune: error: ...``) and returns 2. The command parses the
arguments; :mod:`rlreward.offline.tune.runner` does the run.
"""

from __future__ import annotations

import argparse
import sys

from rlreward.offline.tune.policy import HintPolicy, ServeTiming
from rlreward.offline.tune.runner import (
    EvaluateJob,
    ReplicaSource,
    SweepJob,
    run_evaluate_job,
    run_sweep_job,
)
from rlreward.offline.tune.sweep import Grid
from rlreward.offline.tune.workload import Traffic, grpo_workload, read_trace, trace_workload


def _floats(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc
    if not vals:
        raise argparse.ArgumentTypeError("expected at least one number")
    return vals


def _ints(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc
    if not vals:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return vals


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("workload (one of)")
    one = src.add_mutually_exclusive_group(required=True)
    one.add_argument("--trace", metavar="FILE", help="trace JSONL from the client's recorder")
    one.add_argument("--workload", choices=["grpo"], help="a described workload")
    src.add_argument("--steps", type=int, help="GRPO: trainer steps")
    src.add_argument("--prompts", type=int, help="GRPO: prompts per step (B)")
    src.add_argument("--group", type=int, help="GRPO: completions per prompt (G)")
    src.add_argument("--update-s", type=float, help="GRPO: trainer update time between steps, seconds")
    src.add_argument(
        "--rollout-s",
        type=float,
        default=0.0,
        help="generation time before each burst, seconds; hints are sent at its start (default 0)",
    )
    src.add_argument(
        "--samples-per-request",
        type=int,
        default=None,
        help="GRPO: samples per request (default G: one request per group; 1 = OpenRLHF/verl style)",
    )
    src.add_argument("--send-spread-s", type=float, default=0.0, help="GRPO: spread a burst over this long")
    src.add_argument(
        "--step-gap-s",
        type=float,
        default=5.0,
        help="trace without step ids: a pause this long starts a step",
    )
    src.add_argument(
        "--replay",
        choices=["auto", "open", "closed"],
        default="auto",
        help="trace replay: closed loop needs step and latency_s on every record (default auto)",
    )

    rep = p.add_argument_group(
        "replica: give both numbers, or measure them (--measure), or read samples/s from --bench-json"
    )
    rep.add_argument("--replica-samples-per-s", type=float, help="samples one replica scores per s")
    rep.add_argument("--cold-start-s", type=float, help="seconds from scale-up to serving")
    rep.add_argument(
        "--wake-s",
        type=float,
        default=0.0,
        help="seconds a sleeping replica takes to wake (/v1/stats last_wake_s); needed by --sleep-after",
    )
    rep.add_argument(
        "--measure",
        metavar="CONFIG.yaml",
        help="calibrate on a real deployment of this AppConfig (a throwaway app, 1 then 2 replicas): "
        "per-replica samples/s from GRPO bursts and a second replica's cold start; given numbers win",
    )
    rep.add_argument("--ray-address", help="--measure: the Ray cluster to use (default: start a local one)")
    rep.add_argument(
        "--measure-http",
        metavar="URL",
        help="--measure: Serve's HTTP address; the bursts then go over HTTP like a trainer's (default: "
        "HTTP on the local cluster this command starts; a handle with --ray-address)",
    )
    rep.add_argument(
        "--measure-bursts", type=int, default=3, help="--measure: timed bursts after a warm-up (3)"
    )
    rep.add_argument(
        "--measure-prompts",
        type=int,
        default=None,
        help="--measure: requests per burst (default --prompts, else 8)",
    )
    rep.add_argument(
        "--measure-group",
        type=int,
        default=None,
        help="--measure: samples per request (default --group, else 8)",
    )
    rep.add_argument("--bench-json", metavar="FILE", help="samples/s from an `rlreward bench` JSON record")
    rep.add_argument("--bench-system", help="--bench-json: which system (default serve, else the fastest)")

    p.add_argument("--min-replicas", type=int, default=1, help="lower bound of the sweep (default 1)")
    p.add_argument(
        "--max-replicas", type=int, default=4, help="upper bound: the pool the run may use (default 4)"
    )
    p.add_argument("--evaluate", metavar="CONFIG.yaml", help="simulate this AppConfig instead of sweeping")
    p.add_argument("--json", required=True, metavar="OUT", help="write results here")
    p.add_argument("--out-yaml", metavar="REC.yaml", help="write the recommended AppConfig here")
    p.add_argument("--plot", metavar="PNG", help="write the Pareto plot here")
    p.add_argument(
        "--base-config",
        metavar="YAML",
        help="AppConfig the recommendation is written into (default: the packaged default)",
    )
    p.add_argument(
        "--slack", type=float, default=0.1, help="accepted reward-stage slowdown vs the best (0.1)"
    )
    p.add_argument(
        "--max-ongoing-requests", type=int, default=None, help="per replica (default: the base config's)"
    )

    g = p.add_argument_group("sweep grid (comma-separated)")
    g.add_argument(
        "--policies", default="requests,backlog", help="requests (Serve default), backlog (samples)"
    )
    g.add_argument(
        "--targets", type=_floats, default=Grid.target_ongoing_requests, help="target_ongoing_requests"
    )
    g.add_argument(
        "--backlog-targets", type=_ints, default=(), help="target_backlog_samples (default: 1/3/10 s of work)"
    )
    g.add_argument("--upscale-delays", type=_floats, default=Grid.upscale_delay_s, help="upscale_delay_s")
    g.add_argument(
        "--downscale-delays", type=_floats, default=Grid.downscale_delay_s, help="downscale_delay_s"
    )
    g.add_argument("--look-backs", type=_floats, default=Grid.look_back_period_s, help="look_back_period_s")
    g.add_argument(
        "--min-replicas-grid", type=_ints, default=None, help="min_replicas (default: lower bound, +1)"
    )
    g.add_argument("--no-hints", action="store_true", help="leave the hint policy out of the sweep")
    g.add_argument("--no-fixed", action="store_true", help="leave fixed pools out of the sweep")
    g.add_argument(
        "--sleep-after",
        type=_floats,
        default=(),
        help="replica.sleep.after_step_done_s values to sweep (needs --wake-s); default: no sleep",
    )
    g.add_argument("--sleep-level", type=int, choices=(1, 2), default=1, help="replica.sleep.level swept")
    g.add_argument("--hint-holds", type=_floats, default=(0.0,), help="hint hold after step done, seconds")
    g.add_argument(
        "--hint-releases",
        default="min,base",
        help="after step done the hint policy wants: min (min_replicas), base (the base policy's desire)",
    )

    h = p.add_argument_group("hints (sweep and --evaluate)")
    h.add_argument("--hint-latency-s", type=float, default=0.5, help="trainer call → policy sees it (0.5)")
    h.add_argument(
        "--hint-within-s",
        type=float,
        default=None,
        help="--evaluate: simulate the hint policy with expect(n, within_s=this)",
    )
    h.add_argument("--hint-hold-s", type=float, default=0.0, help="--evaluate: hold after step done (0)")
    h.add_argument(
        "--hint-release", choices=["min", "base"], default="min", help="--evaluate: after step done"
    )

    t = p.add_argument_group("Serve internals (Ray 2.60 defaults)")
    t.add_argument("--metrics-interval-s", type=float, default=10.0, help="metric push period (10)")
    t.add_argument("--aggregation", choices=["mean", "max", "min"], default="mean", help="window reduction")
    t.add_argument(
        "--handle-start-s", type=float, default=0.0, help="when the caller's handle starts its metrics"
    )
    t.add_argument("--router", choices=["least_loaded", "power_of_two"], default="least_loaded")
    t.add_argument("--seed", type=int, default=0, help="seed of the power-of-two router")


def _traffic(args: argparse.Namespace) -> Traffic:
    if args.trace:
        closed = {"auto": None, "open": False, "closed": True}[args.replay]
        return trace_workload(
            read_trace(args.trace),
            rollout_s=args.rollout_s,
            step_gap_s=args.step_gap_s,
            closed_loop=closed,
            description=f"trace {args.trace}",
        )
    missing = [f for f in ("steps", "prompts", "group", "update_s") if getattr(args, f) is None]
    if missing:
        flags = ", ".join("--" + m.replace("_", "-") for m in missing)
        raise ValueError(f"--workload grpo needs {flags}")
    return grpo_workload(
        steps=args.steps,
        prompts=args.prompts,
        group=args.group,
        update_s=args.update_s,
        rollout_s=args.rollout_s,
        samples_per_request=args.samples_per_request,
        send_spread_s=args.send_spread_s,
    )


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"rlreward tune: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    traffic = _traffic(args)
    replica = ReplicaSource(
        samples_per_s=args.replica_samples_per_s,
        cold_start_s=args.cold_start_s,
        wake_s=args.wake_s,
        measure_config=args.measure,
        ray_address=args.ray_address,
        measure_http=args.measure_http,
        measure_bursts=args.measure_bursts,
        measure_prompts=args.measure_prompts or args.prompts or 8,
        measure_group=args.measure_group or args.group or 8,
        bench_json=args.bench_json,
        bench_system=args.bench_system,
    )
    timing = ServeTiming(
        metrics_interval_s=args.metrics_interval_s,
        aggregation=args.aggregation,
        handle_start_s=args.handle_start_s,
        router=args.router,
        seed=args.seed,
    )
    if args.evaluate:
        hint = None
        if args.hint_within_s is not None:
            hint = HintPolicy(
                within_s=args.hint_within_s,
                latency_s=args.hint_latency_s,
                hold_s=args.hint_hold_s,
                release_to=args.hint_release,
            )
        run_evaluate_job(
            EvaluateJob(traffic, replica, timing, args.evaluate, args.json, hint, args.hint_latency_s)
        )
        return 0
    run_sweep_job(
        SweepJob(
            traffic,
            replica,
            timing,
            _grid(args),
            args.json,
            min_replicas=args.min_replicas,
            max_replicas=args.max_replicas,
            slack=args.slack,
            max_ongoing_requests=args.max_ongoing_requests,
            base_config=args.base_config,
            out_yaml=args.out_yaml,
            plot=args.plot,
        )
    )
    return 0


def _grid(args: argparse.Namespace) -> Grid:
    policies = tuple(x.strip() for x in args.policies.split(",") if x.strip())
    releases = tuple(x.strip() for x in args.hint_releases.split(",") if x.strip())
    if not releases or not set(releases) <= {"min", "base"}:
        raise ValueError(f"--hint-releases takes min and/or base (got {args.hint_releases!r})")
    if args.sleep_after and args.wake_s <= 0:
        raise ValueError(
            "--sleep-after needs --wake-s (a sleeping replica's wake time, /v1/stats last_wake_s)"
        )
    if args.wake_s < 0:
        raise ValueError(f"--wake-s must be ≥ 0 (got {args.wake_s})")
    return Grid(
        target_ongoing_requests=args.targets,
        target_backlog_samples=args.backlog_targets,
        upscale_delay_s=args.upscale_delays,
        downscale_delay_s=args.downscale_delays,
        look_back_period_s=args.look_backs,
        min_replicas=args.min_replicas_grid,
        policies=policies,
        hints=not args.no_hints,
        hint_latency_s=args.hint_latency_s,
        hint_hold_s=args.hint_holds,
        hint_release=releases,
        fixed_pools=not args.no_fixed,
        sleep_after_s=args.sleep_after,
        sleep_level=args.sleep_level,
    )
