"""``rlreward loadtest``: send RL-shaped traffic to a served app and report the reward stage.

Shapes: ``grpo`` (``--steps`` bursts of ``--prompts`` x ``--group`` samples, one request per group,
``--update-s`` between), ``stream`` (single-sample requests, ``--samples`` per step over ``--steps``,
``--concurrency`` in flight) and ``trace`` (replay of a ``record_trace`` JSONL). Targets: ``--url``
(HTTP) or ``--app-name`` (a handle inside the Ray cluster). The replicas' timeline comes through
``--ray-address``, or with ``--url`` alone from ``GET /v1/stats`` (awake replica-seconds too);
``--hints LEAD_S`` acts as a hinting trainer (``expect`` LEAD_S s before each step, ``step_done`` after).

Contract: writes the report to ``--json OUT`` (per-step ``reward_stage_s``, samples/s, latency
percentiles, retries, errors, the timeline when the replicas' stats are reachable, the machine load), a
plot (``--plot``, default OUT with ``.png``) and the run's own trace (``--record``, default OUT with
``.trace.jsonl``). Bad input prints one line and returns 2; a run with failed requests returns 1.
This module only parses arguments; :mod:`rlreward.offline.loadtest` runs. The manual and the
report's fields: docs/tuning.md ("Measuring your reward stage").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rlreward.errors import UsageError


def add_arguments(p: argparse.ArgumentParser) -> None:
    tgt = p.add_argument_group("target (one of)")
    one = tgt.add_mutually_exclusive_group(required=True)
    one.add_argument("--url", help="HTTP base URL of the app, e.g. http://127.0.0.1:8000")
    one.add_argument("--app-name", help="Serve application name: call it through a handle (in-cluster)")
    tgt.add_argument("--api-key", default=None, help="bearer token (HTTP; default $RLREWARD_API_KEY)")
    tgt.add_argument(
        "--ray-address", default=None, help="Ray cluster to join (handle mode and the Serve timeline)"
    )
    tgt.add_argument(
        "--serve-app",
        default=None,
        help="with --url and --ray-address: the app whose replicas the timeline reads (default rlreward)",
    )
    p.add_argument("--shape", required=True, choices=["grpo", "stream", "trace"])
    p.add_argument("--steps", type=int, default=3, help="grpo/stream: trainer steps")
    p.add_argument("--prompts", type=int, default=8, metavar="B", help="grpo: prompts per step")
    p.add_argument(
        "--group",
        type=int,
        default=None,
        metavar="G",
        help="grpo: completions per prompt (default 8); stream: consecutive samples sharing a prompt (default 1)",
    )
    p.add_argument("--update-s", type=float, default=2.0, help="trainer update between steps, seconds")
    p.add_argument(
        "--samples-per-request", type=int, default=None, help="grpo: samples per request (default G)"
    )
    p.add_argument("--samples", type=int, default=64, metavar="N", help="stream: requests (samples) per step")
    p.add_argument(
        "--concurrency", type=int, default=None, metavar="C", help="requests in flight (stream default 64)"
    )
    p.add_argument(
        "--rate", type=float, default=0.0, help="stream: Poisson arrivals per second (0: closed loop)"
    )
    p.add_argument("--trace", default=None, metavar="FILE", help="trace: the recorded JSONL to replay")
    p.add_argument(
        "--dataset", default=None, metavar="FILE", help="samples from this JSONL instead of generated"
    )
    gen = p.add_argument_group("generated samples")
    gen.add_argument("--prompt-chars", default="200", help="prompt length in characters (N or LO:HI)")
    gen.add_argument("--response-chars", default="20:200", help="answer length in characters (N or LO:HI)")
    gen.add_argument("--image-size", default="224x224", help="WxH of each prompt's image, or none")
    gen.add_argument("--images-per-prompt", type=int, default=1)
    gen.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", required=True, metavar="OUT", help="write the report here")
    p.add_argument("--plot", default=None, metavar="PNG", help="timeline plot (default: OUT with .png)")
    p.add_argument(
        "--record", default=None, metavar="FILE", help="trace of this run (default OUT.trace.jsonl)"
    )
    p.add_argument("--poll-s", type=float, default=0.5, help="Serve timeline interval, seconds")
    p.add_argument(
        "--hints",
        type=float,
        default=None,
        metavar="LEAD_S",
        help="act as a hinting trainer: expect(step samples) LEAD_S seconds before each step, step_done "
        "after it (drives hinted autoscaling and replica.sleep); default: no hints",
    )
    p.add_argument(
        "--hint-within-s", type=float, default=30.0, help="with --hints: the expect hints' within_s"
    )
    p.add_argument("--timeout-s", type=float, default=600.0, help="client timeout of one request attempt")
    p.add_argument("--retry-budget-s", type=float, default=120.0, help="client retry budget per request")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def build_plan(args: argparse.Namespace) -> Any:
    from rlreward.offline.loadtest.plan import (
        SampleMaker,
        grpo_plan,
        parse_image_size,
        parse_range,
        read_dataset,
        stream_plan,
        trace_plan,
    )

    maker = SampleMaker(
        prompt_chars=parse_range(args.prompt_chars),
        response_chars=parse_range(args.response_chars),
        image_size=parse_image_size(args.image_size),
        images_per_prompt=args.images_per_prompt,
        seed=args.seed,
    )
    dataset = read_dataset(args.dataset) if args.dataset else None
    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if getattr(args, "hints", None) is not None and args.hints < 0:
        raise UsageError(f"--hints takes the lead in seconds (>= 0), not {args.hints}")
    if getattr(args, "hint_within_s", 30.0) <= 0:
        raise UsageError(f"--hint-within-s must be > 0, not {args.hint_within_s}")
    if args.shape == "grpo":
        return grpo_plan(
            steps=args.steps,
            prompts=args.prompts,
            group=args.group or 8,
            update_s=args.update_s,
            maker=maker,
            samples_per_request=args.samples_per_request,
            concurrency=args.concurrency,
            dataset=dataset,
        )
    if args.shape == "stream":
        return stream_plan(
            samples=args.samples,
            concurrency=args.concurrency or 64,
            maker=maker,
            steps=args.steps,
            update_s=args.update_s,
            rate=args.rate,
            group=args.group or 1,
            seed=args.seed,
            dataset=dataset,
        )
    if not args.trace:
        raise UsageError("--shape trace needs --trace FILE (record one with RewardClient(record_trace=...))")
    return trace_plan(args.trace, maker=maker, concurrency=args.concurrency, dataset=dataset)


def run(args: argparse.Namespace) -> int:
    from rlreward.client import AsyncRewardClient
    from rlreward.offline.loadtest.report import plot_timeline
    from rlreward.offline.loadtest.runner import ServeMonitor, replica_seconds, run_plan, summarize

    plan = build_plan(args)
    out = Path(args.json)
    record = Path(args.record) if args.record else out.with_suffix(".trace.jsonl")
    biggest = max(len(r.samples) for s in plan.steps for r in s.requests)
    kwargs: dict[str, Any] = {
        "chunk_size": biggest,  # one planned request = one request on the wire
        "max_concurrency": 1,
        "timeout_s": args.timeout_s,
        "retry_budget_s": args.retry_budget_s,
    }
    if args.url:
        kwargs.update(url=args.url, api_key=args.api_key)
        if getattr(args, "transport", None) is not None:  # tests: an httpx MockTransport
            kwargs["transport"] = args.transport
    else:
        kwargs.update(app_name=args.app_name, ray_address=args.ray_address)
    monitor = None
    stats_app = args.app_name or (args.serve_app or "rlreward" if args.ray_address else None)
    if stats_app:
        import ray

        if not ray.is_initialized():
            ray.init(address=args.ray_address or "auto", log_to_driver=False)
        monitor = ServeMonitor(stats_app, interval_s=args.poll_s)
    elif args.url:
        extra = {"transport": args.transport} if getattr(args, "transport", None) is not None else {}
        try:
            monitor = ServeMonitor.over_http(args.url, args.api_key, interval_s=args.poll_s, **extra)
        except Exception as exc:
            print(f"loadtest: no Serve timeline ({exc})", file=sys.stderr)
    load_start = _loadavg()
    print(f"loadtest: {plan.description} → {args.url or args.app_name}", file=sys.stderr)
    before = monitor.counters() if monitor else None

    async def go() -> Any:
        client = AsyncRewardClient(**kwargs)
        try:
            return await run_plan(
                plan,
                client,
                record_path=record,
                monitor=monitor,
                progress=not args.no_progress,
                hint_lead_s=args.hints,
                hint_within_s=args.hint_within_s,
            )
        finally:
            await client.aclose()

    steps, wall = asyncio.run(go())
    report: dict[str, Any] = {"shape": plan.shape, "target": args.url or f"app:{args.app_name}"}
    report.update(summarize(steps, wall))
    server = None
    if monitor is not None:
        after = monitor.counters()
        server = {k: after[k] - before[k] for k in after}  # type: ignore[index]
    report.update(
        {
            "timeline": monitor.timeline if monitor else [],
            "replica_seconds": replica_seconds(monitor.timeline, wall) if monitor else None,
            "awake_replica_seconds": replica_seconds(monitor.timeline, wall, "awake") if monitor else None,
            "replica_cpu_s": round(monitor.cpu_seconds(), 3) if monitor else None,
            "server": server,
            "plan": {"description": plan.description, **plan.params, "requests": plan.requests},
            "trace": str(record),
            "command": ["rlreward", "loadtest", *sys.argv[2:]] if sys.argv[1:2] == ["loadtest"] else sys.argv,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "loadavg_start": load_start,
            "loadavg_end": _loadavg(),
            "cpu_count": os.cpu_count(),
        }
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    requests = [
        {"t_sent": r.t_sent, "t_done": r.t_done, "samples": r.samples} for s in steps for r in s.requests
    ]
    plot_path = args.plot or str(out.with_suffix(".png"))
    plot_timeline(report, requests, plot_path)
    print(
        f"sent {report['sent']}, answered {report['answered']}, errors {report['errors']}, retries "
        f"{report['retries']}; {report['samples_per_s']} samples/s; reward stage per step "
        f"{[s['reward_stage_s'] for s in report['steps']]} s; p50 {report['latency_p50_s']} s, "
        f"p99 {report['latency_p99_s']} s",
        file=sys.stderr,
    )
    print(f"wrote {out}, {plot_path}, {record}", file=sys.stderr)
    return 1 if report["failed_requests"] else 0
