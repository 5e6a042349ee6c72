"""Kill a Serve process mid-load and count the rewards that are lost or land on the wrong sample.

Starts its own local Ray cluster and an rlreward app (tiny checkpoint, ``--replicas`` model replicas,
HTTP on 127.0.0.1), then for each victim in ``--victims`` (``replica``, ``ingress``, ``proxy``):
``--tasks`` asyncio tasks share ``--samples`` samples and score them over HTTP through one
:class:`~rlreward.client.AsyncRewardClient` (default retry policy unless ``--retry-budget-s``); when
``--kill-at`` of the samples are scored, the victim actor gets ``ray.kill(..., no_restart=True)``
(Serve replaces it). Each phase reports samples lost (no score), misplaced (a score that is not its
own sample's), retries logged by the client, and the wall time.

Expected scores come from scoring ``--distinct`` distinct samples once in-process; sample ``i`` is
distinct sample ``i % distinct`` (text+image, every fourth text only), so a score moved to another
sample of a request, or to another request, shows unless it moved by a multiple of ``--distinct``.

    RLREWARD_TINY=.cache/tiny .venv/bin/python benchmarks/kill_under_load.py \
        --samples 5000 --tasks 64 --json benchmarks/results/kill-under-load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _samples(n_distinct: int) -> list[dict]:
    import base64
    import io

    from PIL import Image

    out = []
    for i in range(n_distinct):
        img = Image.new("RGB", (56 + 8 * (i % 5), 56), ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        sample = {"prompt": f"Describe picture {i}.", "response": f"It shows colour number {i * 7 % 101}."}
        if i % 4:
            sample["images"] = [base64.b64encode(buf.getvalue()).decode()]
        out.append(sample)
    return out


class _RetryCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("retrying"):
            self.count += 1


def _victim_name(victim: str, app: str) -> str:
    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == "serve"]
    prefix = {
        "replica": f"SERVE_REPLICA::{app}#RewardReplica",
        "ingress": f"SERVE_REPLICA::{app}#RewardIngress",
        "proxy": "SERVE_PROXY_ACTOR",
    }[victim]
    found = sorted(n for n in names if n.startswith(prefix))
    if not found:
        raise RuntimeError(f"no {victim} actor among {names}")
    return found[0]


async def _phase(args, url: str, samples: list[dict], expected: list[float], victim: str, app: str) -> dict:
    import ray

    from rlreward.client import AsyncRewardClient

    n = args.samples
    work = [samples[i % len(samples)] for i in range(n)]
    per_task = [list(range(t, n, args.tasks)) for t in range(args.tasks)]
    done = 0
    killed_at: float | None = None
    opts = {"chunk_size": args.chunk_size, "max_concurrency": 2}
    if args.retry_budget_s is not None:
        opts["retry_budget_s"] = args.retry_budget_s
    results: list = [None] * n
    failures: list[str] = []
    t0 = time.monotonic()
    async with AsyncRewardClient(url=url, **opts) as client:

        async def task(indices: list[int]) -> None:
            nonlocal done
            # Each task sends its samples in requests of chunk_size, one after another (a trainer
            # worker scoring its rollouts); 64 tasks at once.
            for k in range(0, len(indices), args.chunk_size):
                part = indices[k : k + args.chunk_size]
                try:
                    got = await client.score([work[i] for i in part])
                except Exception as exc:  # a lost chunk: counted, the task goes on
                    failures.append(f"{type(exc).__name__}: {exc}"[:300])
                    continue
                for i, r in zip(part, got, strict=True):
                    results[i] = r
                done += len(part)

        async def killer() -> None:
            nonlocal killed_at
            while done < args.kill_at * n:
                await asyncio.sleep(0.05)
            name = await asyncio.to_thread(_victim_name, victim, app)
            await asyncio.to_thread(ray.kill, ray.get_actor(name, namespace="serve"), no_restart=True)
            killed_at = time.monotonic() - t0
            print(f"  killed {name} at {killed_at:.1f}s ({done}/{n} scored)", flush=True)

        kill_task = asyncio.ensure_future(killer())
        await asyncio.gather(*(task(ix) for ix in per_task))
        if not kill_task.done():
            kill_task.cancel()
    wall = time.monotonic() - t0
    lost = sum(1 for r in results if r is None or not r.ok)
    misplaced = sum(
        1
        for i, r in enumerate(results)
        if r is not None and r.ok and abs(r.score - expected[i % len(expected)]) > 1e-4
    )
    return {
        "victim": victim,
        "samples": n,
        "tasks": args.tasks,
        "chunk_size": args.chunk_size,
        "killed_at_s": killed_at,
        "lost": lost,
        "misplaced": misplaced,
        "failed_requests": len(failures),
        "first_failure": failures[0] if failures else None,
        "wall_s": round(wall, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=os.environ.get("RLREWARD_TINY", ".cache/tiny"))
    p.add_argument("--samples", type=int, default=5000)
    p.add_argument("--tasks", type=int, default=64)
    p.add_argument("--chunk-size", type=int, default=8)
    p.add_argument("--distinct", type=int, default=200)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--victims", default="replica,ingress,proxy")
    p.add_argument("--kill-at", type=float, default=0.3, help="fraction of samples scored when killing")
    p.add_argument("--retry-budget-s", type=float, default=None, help="default: the client's")
    p.add_argument("--json", default=None)
    args = p.parse_args()

    import ray
    from ray import serve

    from rlreward.engine.scorer import Scorer
    from rlreward.serving.app import build_app
    from rlreward.serving.config import load_app_config

    samples = _samples(args.distinct)
    expected = [
        r.score for r in Scorer.from_pretrained(args.model, dtype="float32", device="cpu").score(samples)
    ]
    assert all(s is not None for s in expected)

    counter = _RetryCounter()
    logging.getLogger("rlreward.client").addHandler(counter)
    logging.getLogger("rlreward.client").setLevel(logging.INFO)
    port = _free_port()
    ray.init(address="local", log_to_driver=False, include_dashboard=False)
    rows = []
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        cfg = load_app_config(
            {
                "model": args.model,
                "replica.num_replicas": args.replicas,
                "replica.ray_actor_options.num_cpus": 0.1,
            }
        )
        serve.run(build_app(cfg), name="bench", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        for victim in args.victims.split(","):
            before = counter.count
            print(f"{victim}: {args.samples} samples, {args.tasks} tasks", flush=True)
            row = asyncio.run(_phase(args, url, samples, expected, victim, "bench"))
            row["retries"] = counter.count - before
            print("  " + json.dumps(row), flush=True)
            rows.append(row)
            # Let Serve bring the victim back before the next phase.
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                status = serve.status()
                app = status.applications["bench"]
                proxies_ok = all(str(getattr(s, "value", s)) == "HEALTHY" for s in status.proxies.values())
                if str(getattr(app.status, "value", app.status)) == "RUNNING" and proxies_ok:
                    break
                time.sleep(1)
    finally:
        ray.shutdown()
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2))
    print("\n| victim | samples | tasks | lost | misplaced | failed requests | retries | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['victim']} | {r['samples']} | {r['tasks']} | {r['lost']} | {r['misplaced']} | "
            f"{r['failed_requests']} | {r['retries']} | {r['wall_s']} |"
        )
    return 0 if all(r["lost"] == 0 and r["misplaced"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
