"""Start what fits, on hand-made nodes: the shipped 7B configs against one- and multi-GPU machines,
first-fit placement with the ingress first, ``max_replicas_per_node``, and the shortage messages."""

from __future__ import annotations

from pathlib import Path

from rlreward.serving.config import load_app_config
from rlreward.serving.placement import fit_app, fit_config, with_initial_replicas

ROOT = Path(__file__).resolve().parents[2]
ONE_GPU_BOX = {"CPU": 16.0, "GPU": 1.0, "memory": 100e9}


def test_the_7b_config_starts_whole_on_one_gpu():
    cfg = load_app_config(str(ROOT / "configs" / "skywork-vl-7b.yaml"))
    fit = fit_config(cfg, [ONE_GPU_BOX])
    assert fit.ingress_fits and fit.replicas == fit.wanted == 1 and not fit.short


def test_the_multi_gpu_config_on_one_gpu_starts_one_and_names_the_gpu():
    cfg = load_app_config(str(ROOT / "configs" / "skywork-vl-7b-multi-gpu.yaml"))
    fit = fit_config(cfg, [ONE_GPU_BOX])
    assert (fit.replicas, fit.wanted) == (1, 4)
    assert fit.short == ["a model replica needs GPU=1, the most any node has free is 0"]
    lowered = with_initial_replicas(cfg, fit.replicas).replica.autoscaling
    assert (lowered.initial_replicas, lowered.min_replicas, lowered.max_replicas) == (1, 1, 16)


def test_the_multi_gpu_config_fills_two_eight_gpu_nodes_within_per_node_cap():
    cfg = load_app_config(str(ROOT / "configs" / "skywork-vl-7b-multi-gpu.yaml"))
    node = {"CPU": 96.0, "GPU": 8.0}
    assert fit_config(cfg, [node, dict(node)]).replicas == 4
    fit = fit_app([node, dict(node)], {"GPU": 1.0}, {}, 0, 12, max_per_node=5)
    assert fit.replicas == 10 and "max_replicas_per_node=5" in fit.short[0]


def test_the_ingress_is_placed_first_and_its_shortage_named():
    fit = fit_app([{"CPU": 0.5}], {"CPU": 0.25}, {"CPU": 1.0}, 1, 1)
    assert not fit.ingress_fits and fit.replicas == 0
    assert fit.short == ["an ingress replica needs CPU=1, the most any node has free is 0.5"]


def test_memory_and_custom_resources_count():
    cfg = load_app_config(
        {
            "model": "m",
            "replica.ray_actor_options.memory": 8 * 2**30,
            "replica.ray_actor_options.resources": {"reward_slot": 1},
            "replica.num_replicas": 3,
        }
    )
    nodes = [{"CPU": 8.0, "memory": 20 * 2**30, "reward_slot": 5.0}]
    fit = fit_config(cfg, nodes)
    assert fit.replicas == 2 and fit.short == [
        "a model replica needs memory=8.0 GiB, the most any node has free is 4.0 GiB"
    ]
