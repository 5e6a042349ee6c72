"""Start what fits: compare an app's resource needs with the Ray cluster's nodes, then deploy and
watch it become RUNNING.

* :func:`fit_app` (pure): given each node's free resources, place the ingress replicas, then as many
  of the initial model replicas as fit (first fit, ``max_replicas_per_node`` respected). Returns a
  :class:`Fit`: how many replicas fit, and, for what did not, the resource that was short.
* :func:`check_cluster` asks the connected Ray cluster (free resources per alive node) and applies
  the fit to an :class:`~rlreward.serving.config.AppConfig`: the same config when everything fits,
  one with fewer initial (and, if needed, minimum) replicas when some fit, or :class:`Unplaceable`
  (naming the missing resource) when the ingress or not even one replica fits.
* :func:`start_and_wait` deploys without blocking and polls ``serve.status()`` until the app is
  RUNNING, reporting progress and Serve's own messages (unschedulable replicas, failed
  constructors) through a callback; it raises :class:`StartFailed` when the app fails to deploy or
  is not RUNNING within ``timeout_s``.

A cluster with an autoscaler may add nodes later: then a short fit is reported but not applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rlreward.serving.config import AppConfig

#: Ray's resource keys for the RayActorOptions fields.
_CPU, _GPU, _MEMORY = "CPU", "GPU", "memory"


class Unplaceable(RuntimeError):
    """Not even one model replica (or the ingress) fits on any node of the cluster."""


class StartFailed(RuntimeError):
    """The app failed to deploy, or was not RUNNING within the time allowed."""


@dataclass
class Fit:
    """Where the app's initial replicas fit: ``replicas`` of ``wanted``; ``short`` says why the rest
    did not (one line per resource that no node had enough of)."""

    wanted: int
    replicas: int
    ingress_fits: bool
    short: list[str] = field(default_factory=list)


def replica_demand(cfg: AppConfig) -> dict[str, float]:
    """Ray resources one model replica reserves (``replica.ray_actor_options``)."""
    opts = cfg.replica.ray_actor_options
    need = {_CPU: opts.num_cpus, _GPU: opts.num_gpus, **opts.resources}
    if opts.memory:
        need[_MEMORY] = float(opts.memory)
    if opts.accelerator_type:
        need[f"accelerator_type:{opts.accelerator_type}"] = 0.001
    return {k: v for k, v in need.items() if v > 0}


def ingress_demand(cfg: AppConfig) -> dict[str, float]:
    cpus = cfg.http.ingress.num_cpus
    return {_CPU: cpus} if cpus > 0 else {}


def initial_replicas(cfg: AppConfig) -> int:
    """Model replicas Serve starts at deploy (fixed count, or autoscaling's initial/min)."""
    auto = cfg.replica.autoscaling
    if auto is None:
        return cfg.replica.num_replicas
    return auto.initial_replicas if auto.initial_replicas is not None else auto.min_replicas


def _take(node: dict[str, float], need: dict[str, float]) -> bool:
    if all(node.get(k, 0.0) + 1e-9 >= v for k, v in need.items()):
        for k, v in need.items():
            node[k] = node.get(k, 0.0) - v
        return True
    return False


def _shortage(nodes: list[dict[str, float]], need: dict[str, float], what: str) -> list[str]:
    """For each resource no node has enough of: what one needs and the most any node has free."""
    out = []
    for k, v in need.items():
        most = max((n.get(k, 0.0) for n in nodes), default=0.0)
        if most + 1e-9 < v:
            out.append(f"{what} needs {k}={_fmt(k, v)}, the most any node has free is {_fmt(k, most)}")
    return out


def _fmt(key: str, value: float) -> str:
    if key == _MEMORY:
        return f"{value / 2**30:.1f} GiB"
    return f"{value:g}"


def fit_app(
    nodes: list[dict[str, float]],
    replica: dict[str, float],
    ingress: dict[str, float],
    n_ingress: int,
    wanted: int,
    max_per_node: int | None = None,
) -> Fit:
    """Place ``n_ingress`` ingress replicas, then up to ``wanted`` model replicas, first fit over
    ``nodes`` (free resources, one dict per node; not modified)."""
    free = [dict(n) for n in nodes]
    fit = Fit(wanted=wanted, replicas=0, ingress_fits=True)
    for _ in range(n_ingress):
        if not any(_take(n, ingress) for n in free):
            fit.ingress_fits = False
            fit.short += _shortage(free, ingress, "an ingress replica")
            return fit
    per_node = [0] * len(free)
    for _ in range(wanted):
        placed = False
        for i, n in enumerate(free):
            if (max_per_node is None or per_node[i] < max_per_node) and _take(n, replica):
                per_node[i] += 1
                placed = True
                break
        if not placed:
            fit.short += _shortage(free, replica, "a model replica") or [
                f"max_replicas_per_node={max_per_node} on {len(free)} node(s)"
            ]
            break
        fit.replicas += 1
    return fit


def free_resources_per_node() -> list[dict[str, float]]:
    """Free resources of each alive node of the connected cluster (totals if Ray cannot say)."""
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]
    try:
        from ray._private.state import state

        per_node = state.available_resources_per_node()
        return [dict(per_node.get(n["NodeID"], {})) for n in alive]
    except Exception:  # private API moved: fall back to what each node has in all
        return [dict(n.get("Resources", {})) for n in alive]


def _has_autoscaler() -> bool:
    try:
        from ray._private.state import state

        return bool(state.get_max_resources_from_cluster_config())
    except Exception:
        return False


def fit_config(cfg: AppConfig, nodes: list[dict[str, float]]) -> Fit:
    """:func:`fit_app` for the ingress and initial replicas of ``cfg`` on ``nodes`` (free resources)."""
    return fit_app(
        nodes,
        replica_demand(cfg),
        ingress_demand(cfg),
        cfg.http.ingress.num_replicas,
        initial_replicas(cfg),
        cfg.replica.max_replicas_per_node,
    )


def check_cluster(cfg: AppConfig, report: Callable[[str], None] = print) -> AppConfig:
    """The config to deploy on the connected cluster: ``cfg`` when its initial replicas fit, else
    one with as many as fit (reported), or :class:`Unplaceable` naming the missing resource."""
    fit = fit_config(cfg, free_resources_per_node())
    if fit.ingress_fits and fit.replicas == fit.wanted:
        return cfg
    why = "; ".join(fit.short)
    if _has_autoscaler():
        report(f"rlreward: the cluster cannot place all of the app now ({why}); its autoscaler may add nodes")
        return cfg
    if not fit.ingress_fits:
        raise Unplaceable(
            f"the ingress does not fit on this Ray cluster: {why} (lower http.ingress.num_cpus)"
        )
    if fit.replicas == 0:
        raise Unplaceable(
            f"no model replica fits on this Ray cluster: {why}. Lower replica.ray_actor_options "
            "or add a node with that resource"
        )
    report(
        f"rlreward: starting {fit.replicas} of {fit.wanted} initial replicas: "
        f"{fit.wanted - fit.replicas} did not fit ({why})"
    )
    return with_initial_replicas(cfg, fit.replicas)


def with_initial_replicas(cfg: AppConfig, n: int) -> AppConfig:
    """``cfg`` starting ``n`` model replicas (autoscaling: initial and, if above, min lowered to n)."""
    replica = cfg.replica.model_dump()
    if cfg.replica.autoscaling is None:
        replica["num_replicas"] = n
    else:
        auto = replica["autoscaling"]
        auto["initial_replicas"] = n
        auto["min_replicas"] = min(auto["min_replicas"], n)
    return cfg.model_copy(update={"replica": type(cfg.replica).model_validate(replica)})


def _describe(app: Any) -> tuple[str, list[str]]:
    """One progress line (replicas running per deployment) and Serve's messages about the app."""
    parts, messages = [], []
    if app.message:
        messages.append(app.message)
    for name, dep in app.deployments.items():
        states = {str(getattr(k, "value", k)): v for k, v in dep.replica_states.items()}
        running = states.get("RUNNING", 0)
        others = ", ".join(f"{v} {k.lower()}" for k, v in states.items() if k != "RUNNING" and v)
        parts.append(f"{name} {running} running" + (f" ({others})" if others else ""))
        if dep.message:
            messages.append(f"{name}: {dep.message}")
    return "; ".join(parts), messages


def start_and_wait(
    app: Any,
    cfg: AppConfig,
    timeout_s: float,
    report: Callable[[str], None] = print,
    every_s: float = 5.0,
    cancelled: Callable[[], bool] = lambda: False,
) -> bool:
    """Deploy ``app`` (built from ``cfg``) without blocking, then wait for it to be RUNNING,
    reporting progress every ``every_s`` and each new Serve message; :class:`StartFailed` on
    DEPLOY_FAILED or after ``timeout_s``. Returns False if ``cancelled()`` turned true first."""
    from ray import serve

    serve._run(app, _blocking=False, name=cfg.name, route_prefix=cfg.route_prefix)
    t0 = time.monotonic()
    seen: set[str] = set()
    next_report = t0 + every_s
    while not cancelled():
        status = serve.status().applications.get(cfg.name)
        if status is not None:
            state = str(getattr(status.status, "value", status.status))
            line, messages = _describe(status)
            for m in messages:
                if m not in seen:
                    seen.add(m)
                    report(f"rlreward: serve says: {m}")
            if state == "RUNNING":
                return True
            if state in ("DEPLOY_FAILED", "UNHEALTHY"):
                raise StartFailed(f"the app failed to start ({state}): {' | '.join(messages) or line}")
            if time.monotonic() >= next_report:
                report(f"rlreward: starting ({time.monotonic() - t0:.0f}s): {line}")
                next_report += every_s
        if time.monotonic() - t0 > timeout_s:
            raise StartFailed(
                f"the app was not running after {timeout_s:g}s (--start-timeout-s); last: "
                + (" | ".join(sorted(seen)) or "no message from Serve")
            )
        time.sleep(0.5)
    return False
