"""Which Ray Serve path brings a replica soonest after an RL-phase hint? (issue 15, deliverable 1)

Measured on a real local Ray cluster (CPU). t=0 is just before the hint is sent; we poll
``serve.status()`` every 50 ms and report when Serve has asked for a second replica (STARTING or
RUNNING ≥ 2) and when it serves (RUNNING ≥ 2). Each trial redeploys a fresh app at 1 replica.

Paths:

* ``board``: rlreward's hint policy (``HintedPolicy`` + ``HintBoard``), ``upscale_delay_s=0``, on a
  light deployment; the hint is posted to the board from the driver.
* ``board-http``: the same through the real rlreward app on the tiny model: ``RewardClient.expect``
  over HTTP → ingress → board → policy; RUNNING includes the tiny model's cold start.
* ``metric-10s`` / ``metric-1s``: the hint stored on a replica and reported by
  ``record_autoscaling_stats`` (Serve's custom metrics), a policy wanting the latest reported value;
  ``metrics_interval_s`` 10 (default) and 1 (deprecated field, still the push period in 2.60).
* ``external``: the external scaler (``external_scaler_enabled``; the dashboard's
  ``POST .../scale`` calls ``controller.update_deployment_replicas``, which we call directly — the
  HTTP hop is left out). Serve's autoscaling is off in this mode.

Usage: ``.venv/bin/python benchmarks/hint_paths.py --trials 3 --json benchmarks/results/hint_paths.json``
(``RLREWARD_TINY`` or ``--model`` for ``board-http``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

from ray import serve

PORT = 8000


@serve.deployment
class Light:
    """A deployment that holds a hint for ``record_autoscaling_stats`` (the metric path)."""

    def __init__(self) -> None:
        self.want = 1.0

    def hint(self, n: float) -> None:
        self.want = float(n)

    def record_autoscaling_stats(self) -> dict[str, float]:
        return {"hint_want": self.want}

    def __call__(self) -> str:
        return "ok"


def latest_metric_policy(ctx: Any) -> tuple[float, dict]:
    """Want the newest ``hint_want`` any replica reported (not the window mean)."""
    latest = 1.0
    for series in (ctx.raw_metrics or {}).get("hint_want", {}).values():
        if series:
            latest = max(latest, series[-1].value)
    return latest, {}


def _counts(app: str, dep: str) -> tuple[int, int]:
    try:
        st = serve.status().applications[app].deployments[dep].replica_states
    except KeyError:
        return 0, 0
    return st.get("RUNNING", 0), st.get("STARTING", 0) + st.get("RUNNING", 0)


def _wait(app: str, dep: str, timeout_s: float = 120.0) -> tuple[float | None, float | None]:
    t0 = time.perf_counter()
    asked = None
    while time.perf_counter() - t0 < timeout_s:
        running, alive = _counts(app, dep)
        now = time.perf_counter() - t0
        if asked is None and alive >= 2:
            asked = now
        if running >= 2:
            return asked if asked is not None else now, now
        time.sleep(0.05)
    return asked, None


def trial(path: str, model: str | None) -> dict[str, Any]:
    import ray

    from rlreward.serving.autoscaling import HINT_NAMESPACE, hint_board_name

    app = f"hp-{path}"
    dep = "Light"
    base = {"min_replicas": 1, "max_replicas": 2, "upscale_delay_s": 0, "downscale_delay_s": 0}
    if path == "board":
        cfg = {
            **base,
            "target_ongoing_requests": 100,
            "policy": {
                "policy_function": "rlreward.serving.autoscaling:HintedPolicy",
                "policy_kwargs": {"replica_samples_per_s": 10.0},
            },
        }
        serve.run(Light.options(autoscaling_config=cfg).bind(), name=app, route_prefix=f"/{app}")
        board = None
        while board is None:  # the policy creates the board on its first tick
            try:
                board = ray.get_actor(hint_board_name(app), namespace=HINT_NAMESPACE)
            except ValueError:
                time.sleep(0.05)
        ray.get(board.snapshot.remote())
        start = time.perf_counter()
        board.post.remote("expect", "bench", n_samples=1000, within_s=10.0)
        asked, running = _wait(app, dep)
    elif path.startswith("metric"):
        interval = 10.0 if path == "metric-10s" else 1.0
        cfg = {
            **base,
            "metrics_interval_s": interval,
            "look_back_period_s": 2 * interval,
            "policy": {"policy_function": latest_metric_policy},
        }
        h = serve.run(Light.options(autoscaling_config=cfg).bind(), name=app, route_prefix=f"/{app}")
        time.sleep(2 * interval)  # let the first reports arrive
        start = time.perf_counter()
        h.hint.remote(2).result()
        asked, running = _wait(app, dep)
    elif path == "external":
        serve.run(
            Light.options(num_replicas=1).bind(),
            name=app,
            route_prefix=f"/{app}",
            external_scaler_enabled=True,
        )
        from ray.serve._private.api import _get_global_client
        from ray.serve._private.common import DeploymentID

        controller = _get_global_client()._controller
        start = time.perf_counter()
        ray.get(controller.update_deployment_replicas.remote(DeploymentID(name=dep, app_name=app), 2))
        asked, running = _wait(app, dep)
    elif path == "board-http":
        from rlreward.client import RewardClient
        from rlreward.serving.app import build_app
        from rlreward.serving.config import REPLICA_DEPLOYMENT, load_app_config

        dep = REPLICA_DEPLOYMENT
        cfg = load_app_config(
            {
                "model": model,
                "replica.ray_actor_options.num_cpus": 0.1,
                "replica.autoscaling": {
                    **base,
                    "target_ongoing_requests": 100,
                    "hints": {"replica_samples_per_s": 10.0},
                },
            }
        )
        serve.run(build_app(cfg), name=app, route_prefix=f"/{app}")
        client = RewardClient(url=f"http://127.0.0.1:{PORT}/{app}")
        while not client.rollout_started().get("accepted"):
            time.sleep(0.05)
        start = time.perf_counter()
        client.expect(1000, within_s=10.0)
        asked, running = _wait(app, dep, timeout_s=180)
    else:
        raise ValueError(path)
    sent_s = time.perf_counter() - start
    serve.delete(app)
    return {"path": path, "asked_s": asked, "running_s": running, "send_s": sent_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--paths", default="board,board-http,metric-1s,metric-10s,external")
    p.add_argument("--model", default=os.environ.get("RLREWARD_TINY", ".cache/tiny"))
    p.add_argument("--json", default=None)
    args = p.parse_args()
    import socket

    import ray

    global PORT
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        PORT = sock.getsockname()[1]
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    rows = []
    for path in args.paths.split(","):
        for _ in range(args.trials):
            r = trial(path, args.model)
            print(json.dumps(r), flush=True)
            rows.append(r)
    summary = {}
    for path in args.paths.split(","):
        rs = [r for r in rows if r["path"] == path]
        asked = [r["asked_s"] for r in rs if r["asked_s"] is not None]
        running = [r["running_s"] for r in rs if r["running_s"] is not None]
        summary[path] = {
            "asked_median_s": statistics.median(asked) if asked else None,
            "asked_max_s": max(asked) if asked else None,
            "running_median_s": statistics.median(running) if running else None,
            "trials": len(rs),
        }
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"uptime": os.getloadavg(), "rows": rows, "summary": summary}, f, indent=1)
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
