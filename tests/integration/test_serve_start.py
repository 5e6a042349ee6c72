"""Start what fits, against the session's real Ray cluster (two nodes of 1 CPU each): an app whose
replica needs more CPUs than any node has is refused with the missing resource named (also by
`rlreward serve`, exit 2, in seconds); an app asking for more replicas than fit starts fewer and
says why; an app that cannot be placed is not waited on silently."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml

from rlreward.serving.app import build_app
from rlreward.serving.config import load_app_config
from rlreward.serving.placement import (
    StartFailed,
    Unplaceable,
    check_cluster,
    free_resources_per_node,
    start_and_wait,
)


def _cfg(tiny_model_dir: str, **over):
    return load_app_config({"model": tiny_model_dir, **over})


def test_a_replica_larger_than_any_node_is_refused_naming_cpu(ray_cluster, tiny_model_dir):
    cfg = _cfg(tiny_model_dir, **{"replica.ray_actor_options.num_cpus": 1.5})
    with pytest.raises(Unplaceable, match=r"CPU=1\.5, the most any node has free is"):
        check_cluster(cfg, report=lambda line: None)


def test_more_replicas_than_fit_start_fewer_and_say_why(ray_cluster, tiny_model_dir):
    free_cpus = sum(n.get("CPU", 0.0) for n in free_resources_per_node())
    cfg = _cfg(
        tiny_model_dir,
        **{
            "replica.ray_actor_options.num_cpus": 0.1,
            "http.ingress.num_cpus": 0.0,
            "replica.num_replicas": 100,
        },
    )
    lines: list[str] = []
    fitted = check_cluster(cfg, report=lines.append)
    assert 0 < fitted.replica.num_replicas <= int(free_cpus / 0.1 + 1e-6) < 100
    assert len(lines) == 1 and f"starting {fitted.replica.num_replicas} of 100 initial replicas" in lines[0]
    assert "CPU=0.1" in lines[0]


def test_autoscaling_initial_and_min_are_lowered_to_what_fits(ray_cluster, tiny_model_dir):
    # Other tests' apps hold CPUs of the shared cluster: size the replica from what is free now, so
    # that one fits on the freest node and no node holds two (4 initial replicas cannot all fit).
    most_free = max(n.get("CPU", 0.0) for n in free_resources_per_node())
    if most_free < 0.05:
        pytest.skip(f"the shared cluster has {most_free} CPU free on its freest node")
    need = round(most_free * 0.99, 4)
    cfg = _cfg(
        tiny_model_dir,
        **{
            "replica.ray_actor_options.num_cpus": need,
            "http.ingress.num_cpus": 0.0,
            "replica.autoscaling": {"min_replicas": 3, "max_replicas": 4, "initial_replicas": 4},
        },
    )
    fitted = check_cluster(cfg, report=lambda line: None)
    auto = fitted.replica.autoscaling
    assert auto.initial_replicas < 4 and auto.min_replicas == min(3, auto.initial_replicas)
    assert auto.max_replicas == 4


def test_serve_command_exits_naming_the_missing_resource(ray_cluster, tiny_model_dir, tmp_path):
    config = tmp_path / "big.yaml"
    config.write_text(yaml.safe_dump({"replica": {"ray_actor_options": {"num_cpus": 1.5}}}))
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "rlreward", "serve", "--address", ray_cluster.address, "--config", str(config)]
        + ["--model", tiny_model_dir, "--name", "too-big", "--route-prefix", "/too-big"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert time.monotonic() - t0 < 60
    assert "no model replica fits" in proc.stderr and "CPU=1.5" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_app_that_cannot_be_placed_is_reported_while_waiting_then_given_up(ray_cluster, tiny_model_dir):
    # Bypass the check (as a cluster whose resources vanish after it would): the wait must not be silent.
    cfg = _cfg(tiny_model_dir, **{"replica.ray_actor_options.num_cpus": 1.5})
    cfg = cfg.model_copy(update={"name": "unplaceable", "route_prefix": "/unplaceable"})
    lines: list[str] = []
    try:
        with pytest.raises(StartFailed, match="not running after 12s"):
            start_and_wait(build_app(cfg), cfg, timeout_s=12, report=lines.append, every_s=4)
    finally:
        from ray import serve

        serve.delete(cfg.name)
    progress = [line for line in lines if line.startswith("rlreward: starting (")]
    assert len(progress) >= 2 and "RewardReplica 0 running" in progress[-1], lines
