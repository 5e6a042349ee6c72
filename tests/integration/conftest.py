"""Integration fixtures: one real Ray cluster and one rlreward app per test session.

Reuse these; do not start another Ray cluster in the same session.

``ray_cluster`` (session) -> :class:`RayCluster`
    A 2-node ``ray.cluster_utils.Cluster`` on this machine (head + one worker node, 1 CPU each; the
    second node lets tests place replicas on two nodes), the driver connected, Serve started with
    HTTP on a free port of 127.0.0.1 and its proxy on the head node. Attributes: ``address`` (for
    ``ray.init(address=...)`` in a subprocess), ``http_port``, ``base_url``, ``cluster``,
    ``node_ids``. Autoscaling metrics are pushed every 0.5 s (env vars set before the cluster starts)
    so autoscaling tests finish in seconds.
``serve_app`` (session) -> :class:`ServedApp`
    The default app: the packaged ``tiny-cpu.yaml`` on ``tiny_model_dir``, one replica, no auth,
    ``batch_wait_timeout_s`` 0.05, deployed as ``rlreward`` at route ``/``. Attributes: ``name``
    (``RewardClient(app_name=app.name)``), ``url`` (``RewardClient(url=app.url)``), ``config``
    (its AppConfig), ``api_key`` (None), ``replica`` (a DeploymentHandle on ``RewardReplica``;
    ``app.stats()`` returns one replica's counters and recent batch compositions).
``deploy_app`` (session) -> ``deploy_app(name, **overrides) -> ServedApp``
    Deploys another app with its own replicas at route ``/<name>``; ``overrides`` are AppConfig
    fields, dotted keys allowed (``**{"replica.num_replicas": 2}``). Deleted at session end (or call
    ``app.delete()``). Each replica start costs ~5-10 s on 2 cores: share apps within a module.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

# Must be in the environment of the processes the cluster starts (the Serve controller, replicas).
# (Ray 2.60 defines RAY_SERVE_*_AUTOSCALING_METRIC_PUSH_INTERVAL_S but its pushers do not read them:
# handles and replicas push every autoscaling_config.metrics_interval_s, 10 s by default.)
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    condition: Callable[[], Any], timeout_s: float, interval_s: float = 0.5, what: str = "condition"
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
            if last:
                return last
        except Exception as exc:  # a transient error while polling is not the answer
            last = exc
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")


def _proxies_healthy() -> bool:
    from ray import serve

    proxies = serve.status().proxies
    return bool(proxies) and all(str(getattr(s, "value", s)) == "HEALTHY" for s in proxies.values())


@dataclass
class RayCluster:
    cluster: Any
    address: str
    http_port: int
    node_ids: list[str]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@dataclass
class ServedApp:
    name: str
    route_prefix: str
    url: str
    config: Any
    api_key: str | None = None
    _deleted: bool = field(default=False, repr=False)

    @property
    def replica(self) -> Any:
        from ray import serve

        from rlreward.serving.config import REPLICA_DEPLOYMENT

        return serve.get_deployment_handle(REPLICA_DEPLOYMENT, app_name=self.name)

    def stats(self) -> dict[str, Any]:
        """One replica's stats (with several replicas, whichever the router picks)."""
        return self.replica.stats.remote().result(timeout_s=30)

    def running_replicas(self) -> int:
        from ray import serve

        from rlreward.serving.config import REPLICA_DEPLOYMENT

        dep = serve.status().applications[self.name].deployments[REPLICA_DEPLOYMENT]
        return dep.replica_states.get("RUNNING", 0)

    def delete(self) -> None:
        from ray import serve

        if not self._deleted:
            serve.delete(self.name)
            self._deleted = True


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    port = _free_port()
    for attempt in range(3):
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
            break
        except ray.exceptions.RayActorError:
            # On a loaded machine the controller may replace a proxy that was slow to start while
            # serve.start waits on the first one; the controller keeps going, so ask again.
            if attempt == 2:
                raise
    wait_for(_proxies_healthy, 120, what="a healthy Serve HTTP proxy")
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    try:
        yield RayCluster(cluster=cluster, address=cluster.address, http_port=port, node_ids=nodes)
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            try:
                cluster.shutdown()
            except ValueError:
                # A Serve background thread (handle metrics) reconnected the driver after
                # ray.shutdown(); remove_node has just disconnected it again, so retry once.
                cluster.shutdown()


def _deploy(ray_cluster: RayCluster, name: str, route_prefix: str, args: dict[str, Any]) -> ServedApp:
    from ray import serve

    from rlreward.serving.app import build_app
    from rlreward.serving.config import load_app_config

    # Small CPU shares: many apps (and other suites' replicas) share the 2 CPUs of the cluster.
    cfg = load_app_config({"replica.ray_actor_options.num_cpus": 0.1, **args})
    cfg = cfg.model_copy(update={"name": name, "route_prefix": route_prefix})
    serve.run(build_app(cfg), name=name, route_prefix=route_prefix)
    url = ray_cluster.base_url + ("" if route_prefix == "/" else route_prefix)
    return ServedApp(name=name, route_prefix=route_prefix, url=url, config=cfg, api_key=cfg.http.api_key)


@pytest.fixture(scope="session")
def serve_app(ray_cluster: RayCluster, tiny_model_dir: str) -> ServedApp:
    return _deploy(
        ray_cluster, "rlreward", "/", {"model": tiny_model_dir, "scorer.batching.batch_wait_timeout_s": 0.05}
    )


@pytest.fixture(scope="session")
def deploy_app(ray_cluster: RayCluster, tiny_model_dir: str) -> Iterator[Callable[..., ServedApp]]:
    apps: list[ServedApp] = []

    def deploy(name: str, **overrides: Any) -> ServedApp:
        app = _deploy(ray_cluster, name, f"/{name}", {"model": tiny_model_dir, **overrides})
        apps.append(app)
        return app

    yield deploy
    for app in apps:
        try:
            app.delete()
        except Exception:
            pass
