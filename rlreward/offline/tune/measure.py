"""``rlreward tune --measure``: the two numbers the simulator needs, measured on a real deployment.

* **samples/s of one replica** (``samples_per_s``): GRPO-shaped bursts (``prompts`` requests of
  ``group`` samples sharing a prompt and an image, all sent at once) at a one-replica deployment; each
  burst's samples / seconds from its first request sent to its last score back; the median burst.
* **cold start** (``cold_start_s``): from asking Serve for one more replica (redeploying the fixed
  pool 1 → 2, a light update that keeps the first replica) until ``serve.status()`` shows it RUNNING —
  placement, process start, model load and warm-up, as the simulator's ``cold_start_s`` means it.

:func:`calibrate` deploys the given :class:`~rlreward.serving.config.AppConfig` as a throwaway
application (fixed pool, no HTTP route, handle calls), measures, and deletes it; it needs Ray and
Serve started (the command starts a local cluster, or joins ``--ray-address``).
:func:`from_bench_json` reads samples/s from an ``rlreward bench`` JSON record instead.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Application name of the throwaway calibration deployment.
CALIBRATION_APP = "rlreward-tune-calibration"


@dataclass(frozen=True)
class Calibration:
    """What was measured: ``samples_per_s`` (one replica), ``cold_start_s`` (None if not measured),
    each burst's ``(samples, seconds)`` and where the numbers came from."""

    samples_per_s: float
    cold_start_s: float | None
    bursts: list[tuple[int, float]] = field(default_factory=list)
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def from_bench_json(path: str | Path, system: str | None = None) -> Calibration:
    """samples/s from an ``rlreward bench`` record: ``system`` (default: ``serve`` if present, else
    the fastest system with a number). Raises ValueError naming the systems found."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    systems = {k: v for k, v in (data.get("systems") or {}).items() if isinstance(v, dict)}
    usable = {k: v["samples_per_s"] for k, v in systems.items() if v.get("samples_per_s")}
    if not usable:
        raise ValueError(f"{path} has no system with samples_per_s (systems: {sorted(systems) or 'none'})")
    if system is None:
        system = "serve" if "serve" in usable else max(usable, key=usable.__getitem__)
    if system not in usable:
        raise ValueError(f"{path} has no samples_per_s for system {system!r} (found: {sorted(usable)})")
    return Calibration(samples_per_s=float(usable[system]), cold_start_s=None, source=f"{path}:{system}")


def _replicas(app: str) -> tuple[int, int]:
    from ray import serve

    from rlreward.serving.config import REPLICA_DEPLOYMENT

    try:
        states = serve.status().applications[app].deployments[REPLICA_DEPLOYMENT].replica_states
    except KeyError:
        return 0, 0
    return states.get("RUNNING", 0), states.get("STARTING", 0)


async def _burst(client: Any, requests: list[list[dict[str, Any]]]) -> tuple[int, float]:
    t0 = time.perf_counter()
    results = await asyncio.gather(*(client.score(r) for r in requests))
    seconds = time.perf_counter() - t0
    n = sum(len(r) for r in results)
    errors = sum(1 for part in results for r in part if r.error is not None)
    if errors:
        raise RuntimeError(f"{errors} of {n} calibration samples failed: fix the deployment first")
    return n, seconds


def calibrate(
    cfg: Any,
    *,
    prompts: int = 8,
    group: int = 8,
    bursts: int = 3,
    cold_start: bool = True,
    app_name: str = CALIBRATION_APP,
    http_base: str | None = None,
    sample_maker: Any = None,
    timeout_s: float = 600.0,
    log: Any = print,
) -> Calibration:
    """Deploy ``cfg`` (an AppConfig) as ``app_name`` with one replica, time ``bursts`` GRPO bursts of
    ``prompts`` × ``group`` generated samples (after one warm-up burst), then (``cold_start``) ask for
    a second replica and time it to RUNNING; delete the app. Raises RuntimeError on failed samples
    or a replica that never runs within ``timeout_s``.

    ``http_base`` (Serve's HTTP address, e.g. ``http://127.0.0.1:8000``): send the bursts over HTTP
    through the ingress (route ``/<app_name>``), as a trainer outside the cluster does — the
    samples/s then include JSON/base64 and the ingress; None: through a handle. ``sample_maker``: a
    :class:`rlreward.offline.loadtest.plan.SampleMaker` with your samples' sizes (default: its own)."""
    from ray import serve

    from rlreward.client import AsyncRewardClient
    from rlreward.offline.loadtest.plan import SampleMaker
    from rlreward.serving.app import build_app

    if prompts < 1 or group < 1 or bursts < 1:
        raise ValueError("prompts, group and bursts must be at least 1")
    replica = cfg.replica.model_copy(update={"autoscaling": None, "num_replicas": 1})
    route = f"/{app_name}" if http_base else None
    one = cfg.model_copy(update={"name": app_name, "route_prefix": route, "replica": replica})
    maker = sample_maker or SampleMaker(seed=7)

    def burst_requests(k: int) -> list[list[dict[str, Any]]]:
        return [[maker.sample(f"cal{k}p{p}", m) for m in range(group)] for p in range(prompts)]

    log(f"calibration: deploying {app_name} (1 replica of {cfg.scorer.model})")
    serve.run(build_app(one), name=app_name, route_prefix=route)
    try:

        async def run_bursts() -> list[tuple[int, float]]:
            where: dict[str, Any] = (
                {"url": http_base.rstrip("/") + route, "api_key": cfg.http.api_key}
                if http_base and route
                else {"app_name": app_name}
            )
            client = AsyncRewardClient(
                **where, chunk_size=group, max_concurrency=prompts, timeout_s=timeout_s
            )
            try:
                await _burst(client, burst_requests(-1))  # warm-up
                out = []
                for k in range(bursts):
                    out.append(await _burst(client, burst_requests(k)))
                    log(f"  burst {k + 1}/{bursts}: {out[-1][0]} samples in {out[-1][1]:.2f} s")
                return out
            finally:
                await client.aclose()

        measured = asyncio.run(run_bursts())
        rate = statistics.median(n / s for n, s in measured)
        cold: float | None = None
        if cold_start:
            two = one.model_copy(update={"replica": replica.model_copy(update={"num_replicas": 2})})
            t0 = time.perf_counter()
            serve.run(build_app(two), name=app_name, route_prefix=route)  # returns once both run
            while _replicas(app_name)[0] < 2:
                if time.perf_counter() - t0 > timeout_s:
                    raise RuntimeError(f"the second calibration replica did not run within {timeout_s:g} s")
                time.sleep(0.1)
            cold = time.perf_counter() - t0
            log(f"  cold start of a second replica: {cold:.1f} s")
    finally:
        serve.delete(app_name)
    return Calibration(
        samples_per_s=rate, cold_start_s=cold, bursts=measured, source=f"measured on {app_name}"
    )


def measure_deployment(
    config_path: str,
    *,
    ray_address: str | None = None,
    http_base: str | None = None,
    prompts: int = 8,
    group: int = 8,
    bursts: int = 3,
    cold_start: bool = True,
) -> Calibration:
    """:func:`calibrate` the AppConfig YAML at ``config_path`` (``rlreward tune --measure``): on the
    cluster at ``ray_address``, or on a fresh local one (never whichever one this machine runs
    already) whose Serve HTTP listens on a free 127.0.0.1 port; shut down afterwards."""
    import socket

    import ray
    from ray import serve

    from rlreward.serving.config import load_app_config

    cfg = load_app_config(config_path)
    ray.init(address=ray_address or "local", log_to_driver=False)
    try:
        if ray_address is None:
            with socket.socket() as sock:  # a free port: 8000 may be another server's
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            http_base = http_base or f"http://127.0.0.1:{port}"
        return calibrate(
            cfg, prompts=prompts, group=group, bursts=bursts, cold_start=cold_start, http_base=http_base
        )
    finally:
        if ray_address is None:
            serve.shutdown()
        ray.shutdown()
