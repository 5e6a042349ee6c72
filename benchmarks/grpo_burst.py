"""A realistic GRPO burst at one served replica: lost samples, the replica's RSS rise, samples/s.

Starts its own local Ray cluster and an rlreward app (``--model``, default ``$RLREWARD_TINY``; one
replica; HTTP on 127.0.0.1), then sends ``--prompts`` x ``--group`` samples at once through
``RewardClient.score`` over HTTP: each prompt has one ``--width`` x ``--height`` PNG sent (base64)
with every answer, answers are ``--answer-tokens MIN..MAX`` one-token words drawn uniformly
(seeded). While the burst runs, the replica process' RSS is sampled from outside (psutil on the pid
its ``stats()`` reports). Prints and writes (``--json``) lost samples, RSS before/peak/rise,
samples/s, the replica's ``peak_queued_bytes`` and refused requests (absent on replicas that do
not count bytes).

    RLREWARD_TINY=.cache/tiny python benchmarks/grpo_burst.py --json benchmarks/results/grpo-burst.json
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import os
import random
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def photo_png(seed: int, width: int, height: int) -> str:
    """A photo-sized PNG (data URI): smooth gradients with blocky detail, so it compresses as a photo
    roughly does (tens of KB), not as noise (MBs)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1) * 200
    blocks = rng.integers(0, 56, size=(height // 40 + 1, width // 40 + 1, 3)).repeat(40, 0).repeat(40, 1)
    arr = (base + blocks[:height, :width]).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def burst(
    model: str, prompts: int, group: int, lo: int, hi: int, width: int, height: int, seed: int
) -> list[dict]:
    from transformers import AutoTokenizer

    from rlreward.offline.bench.workloads import one_token_words

    words = one_token_words(AutoTokenizer.from_pretrained(model))
    rng = random.Random(seed)
    out = []
    for p in range(prompts):
        image = photo_png(seed * 1000 + p, width, height)
        prompt = f"Question {p}: " + " ".join(rng.choice(words) for _ in range(24))
        for _ in range(group):
            answer = " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi)))
            out.append({"prompt": prompt, "response": answer, "images": [image]})
    return out


class RssSampler(threading.Thread):
    """Samples a process' RSS every ``every_s`` until stopped; keeps the peak."""

    def __init__(self, pid: int, every_s: float = 0.1) -> None:
        import psutil

        super().__init__(daemon=True)
        self.proc, self.every_s = psutil.Process(pid), every_s
        self.start_rss = self.peak = self.proc.memory_info().rss
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.every_s):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.environ.get("RLREWARD_TINY", ".cache/tiny"))
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--group", type=int, default=16)
    ap.add_argument("--answer-tokens", default="16..512", metavar="MIN..MAX")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--chunk-size", type=int, default=64, help="RewardClient chunk_size (default its own)")
    ap.add_argument("--concurrency", type=int, default=8, help="RewardClient max_concurrency (its default)")
    ap.add_argument("--replica-cpus", type=float, default=2.0, help="torch threads / Ray CPUs of the replica")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="AppConfig override")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    lo, _, hi = args.answer_tokens.partition("..")

    import ray
    import yaml
    from ray import serve

    from rlreward.client import RewardClient
    from rlreward.serving.app import build_app
    from rlreward.serving.config import REPLICA_DEPLOYMENT, load_app_config

    samples = burst(
        args.model, args.prompts, args.group, int(lo), int(hi or lo), args.width, args.height, args.seed
    )
    body_mb = sum(len(json.dumps(s)) for s in samples) / 1e6
    threads = max(1, int(args.replica_cpus))
    overrides = {
        "model": args.model,
        "replica.ray_actor_options.num_cpus": args.replica_cpus,
        "replica.ray_actor_options.runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(threads)}},
        "http.max_request_bytes": 1 << 30,
    }
    for kv in args.set:
        key, _, value = kv.partition("=")
        overrides[key] = yaml.safe_load(value)
    cfg = load_app_config(overrides)
    port = _free_port()
    ray.init(
        address="local",
        num_cpus=threads + 1,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(cfg), name=cfg.name, route_prefix="/")
        replica = serve.get_deployment_handle(REPLICA_DEPLOYMENT, app_name=cfg.name)
        before = replica.stats.remote().result(timeout_s=60)
        sampler = RssSampler(before["pid"])
        sampler.start()
        t0 = time.perf_counter()
        with RewardClient(
            url=f"http://127.0.0.1:{port}",
            chunk_size=args.chunk_size,
            max_concurrency=args.concurrency,
            timeout_s=3600,
            retry_budget_s=3600,
        ) as client:
            results = client.score(samples)
        wall = time.perf_counter() - t0
        peak = sampler.stop()
        after = replica.stats.remote().result(timeout_s=60)
    finally:
        serve.shutdown()
        ray.shutdown()
    lost = sum(1 for r in results if r.score is None)
    record = {
        "samples": len(samples),
        "lost": lost,
        "request_body_mb": round(body_mb, 1),
        "wall_s": round(wall, 2),
        "samples_per_s": round(len(samples) / wall, 2),
        "replica_rss_start_mb": round(sampler.start_rss / 1e6),
        "replica_rss_peak_mb": round(peak / 1e6),
        "replica_rss_rise_mb": round((peak - sampler.start_rss) / 1e6),
        "peak_queued_bytes": after.get("peak_queued_bytes"),
        "max_queued_bytes": after.get("max_queued_bytes"),
        "refused_requests": after.get("refused_requests"),
        "replica_cpu_s": round(after.get("cpu_s", 0.0) - before.get("cpu_s", 0.0), 1),
        "batches": after["batches"] - before["batches"],
        "settings": {
            **vars(args),
            "effective_overrides": {k: v for k, v in overrides.items() if k != "model"},
        },
        "loadavg": "/".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    print(json.dumps(record, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
