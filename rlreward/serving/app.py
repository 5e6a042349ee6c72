"""Building the Ray Serve application from an :class:`~rlreward.serving.config.AppConfig`.

The replica and ingress are plain classes (:mod:`rlreward.serving.replica`,
:mod:`rlreward.serving.ingress`); Serve's deployment decorator is applied here, where the options
that decide placement and scaling are known::

    from ray import serve
    from rlreward.serving.app import build_app
    serve.run(build_app({"config": "configs/skywork-vl-7b.yaml", "model": "/models/skywork"}), name="rlreward")

    # serve run / serve deploy: import_path rlreward.serving.app:build_app
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rlreward.serving.config import (
    INGRESS_DEPLOYMENT,
    REPLICA_DEPLOYMENT,
    AppConfig,
    api_key_digest,
    load_app_config,
    resolve_api_key,
)

if TYPE_CHECKING:
    from ray.serve import Application

log = logging.getLogger("rlreward")


def build_app(args: dict[str, Any]) -> Application:
    """Ray Serve application builder (``serve run``/``serve deploy`` call it with the ``args`` dict).

    ``args`` is anything :func:`load_app_config` takes (an :class:`AppConfig` works too, from Python).
    Returns the bound ``RewardIngress`` → ``RewardReplica`` graph; deploy it with
    ``serve.run(app, name=cfg.name, route_prefix=cfg.route_prefix)``.
    """
    from ray import serve

    from rlreward.serving.health import board_name, config_fingerprint
    from rlreward.serving.ingress import RewardIngressASGI
    from rlreward.serving.replica import RewardReplica

    cfg = load_app_config(args)
    health = None
    if cfg.health.enabled:
        # One board per application and configuration: a redeploy of the same config keeps its steps.
        fingerprint = config_fingerprint(
            cfg.scorer.model_dump(mode="json"), cfg.health.model_dump(mode="json")
        )
        health = {**cfg.health.model_dump(mode="json"), "board": board_name(cfg.name, fingerprint)}
    replica = (
        serve.deployment(RewardReplica)
        .options(
            name=REPLICA_DEPLOYMENT,
            user_config=cfg.batching.model_dump(),
            **cfg.replica.to_serve(),
        )
        .bind(
            scorer_config=cfg.scorer.model_dump(mode="json"),
            preprocess_threads=cfg.replica.preprocess_threads,
            stuck_forward_s=cfg.replica.stuck_forward_s,
            max_queued_bytes=cfg.replica.max_queued_bytes,
            sleep=cfg.replica.sleep.model_dump() if cfg.replica.sleep else None,
            health=health,
        )
    )
    # The key itself never goes into the deployment's arguments (Ray's dashboard shows them): the
    # ingress gets a salted digest, or, when the key is not readable here, the env-var name / file
    # path to read it from on its own node.
    http = cfg.http
    key = resolve_api_key(http)
    http = http.model_copy(update={"api_key": None})
    ingress = (
        serve.deployment(RewardIngressASGI)
        .options(
            name=INGRESS_DEPLOYMENT,
            num_replicas=http.ingress.num_replicas,
            ray_actor_options={"num_cpus": http.ingress.num_cpus},
            max_ongoing_requests=http.ingress.max_ongoing_requests,
        )
        .bind(
            replica,
            http_options=http.model_dump(),
            model_name=cfg.served_model_name,
            api_key_digest=api_key_digest(key) if key else None,
            sleep_timer=cfg.replica.sleep is not None,
            health=health,
        )
    )
    log.info(
        "rlreward app %r: model=%s replicas=%s batching=%s auth=%s",
        cfg.name,
        cfg.scorer.model,
        cfg.replica.autoscaling.model_dump() if cfg.replica.autoscaling else cfg.replica.num_replicas,
        cfg.batching.model_dump(),
        "on" if key or http.api_key_env or http.api_key_file else "off",
    )
    return ingress


def deploy(cfg: AppConfig, *, blocking: bool = False) -> Any:
    """``serve.run`` the app described by ``cfg`` (Ray and Serve must be started); returns its handle."""
    from ray import serve

    return serve.run(build_app(cfg), name=cfg.name, route_prefix=cfg.route_prefix, blocking=blocking)
