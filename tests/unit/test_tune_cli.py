"""``rlreward tune``: the JSON, the recommended AppConfig YAML, the plot, ``--evaluate``, bad input."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml

from rlreward.commands import tune

GRPO = [
    "--workload",
    "grpo",
    "--steps",
    "3",
    "--prompts",
    "8",
    "--group",
    "4",
    "--update-s",
    "10",
    "--rollout-s",
    "15",
    "--replica-samples-per-s",
    "8",
    "--cold-start-s",
    "5",
]
SMALL_GRID = [
    "--max-replicas",
    "2",
    "--policies",
    "requests",
    "--targets",
    "2",
    "--upscale-delays",
    "0,30",
    "--downscale-delays",
    "15",
    "--look-backs",
    "30",
]


def _run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="rlreward tune")
    tune.add_arguments(p)
    return tune.run(p.parse_args(argv))


def _app_config():
    from rlreward.serving.config import AppConfig

    return AppConfig


def test_sweep_writes_pareto_json_a_valid_app_config_and_a_plot(tmp_path, capsys):
    out, rec, png = tmp_path / "tune.json", tmp_path / "rec.yaml", tmp_path / "front.png"
    rc = _run(GRPO + SMALL_GRID + ["--json", str(out), "--out-yaml", str(rec), "--plot", str(png)])
    assert rc == 0
    data = json.loads(out.read_text())
    # fixed 1, fixed 2, then (2 delays × min 1/2) without hints, with hints released to min, to base
    assert data["simulated"] == 2 + 4 + 4 + 4
    assert data["pareto"], "an empty Pareto front"
    for p in data["pareto"]:
        assert set(p) == {"config", "reward_stage_s", "replica_seconds", "awake_replica_seconds"}
        assert p["reward_stage_s"] > 0 and p["replica_seconds"] > 0
    stages = [p["reward_stage_s"] for p in data["pareto"]]
    costs = [p["replica_seconds"] for p in data["pareto"]]
    assert costs == sorted(costs) and stages == sorted(stages, reverse=True)
    best = min(p["reward_stage_s"] for p in data["points"])
    assert data["recommended"]["reward_stage_s"] <= best * 1.1 + 1e-9

    from rlreward.serving.config import load_app_config

    # as `rlreward serve --config rec.yaml --model M` reads it (no base config: the model is M's)
    cfg = load_app_config({"config": str(rec), "model": "/models/m"})
    chosen = data["recommended"]["config"]
    if chosen["autoscaling"] is None:
        assert cfg.replica.autoscaling is None and cfg.replica.num_replicas == chosen["num_replicas"]
    else:
        assert cfg.replica.autoscaling.max_replicas == 2
        assert cfg.replica.autoscaling.upscale_delay_s == chosen["autoscaling"]["upscale_delay_s"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Pareto front" in capsys.readouterr().out


def test_the_recommended_yaml_evaluates_to_the_recommended_point(tmp_path):
    # round trip: the YAML alone (replica.autoscaling.hints included) encodes the whole simulated config
    out, rec, pred = tmp_path / "tune.json", tmp_path / "rec.yaml", tmp_path / "pred.json"
    assert _run(GRPO + SMALL_GRID + ["--json", str(out), "--out-yaml", str(rec)]) == 0
    chosen = json.loads(out.read_text())["recommended"]
    hint = chosen["config"]["hint"]
    assert hint is not None  # this workload's recommendation is hinted: the YAML must carry it
    hints = yaml.safe_load(rec.read_text())["replica"]["autoscaling"]["hints"]
    assert hints == {
        "replica_samples_per_s": 8.0,
        "default_within_s": hint["within_s"],
        "release_to": hint["release_to"],
        "hold_s": hint["hold_s"],
    }
    from rlreward.serving.config import load_app_config

    served = load_app_config({"config": str(rec), "model": "/m"}).replica.autoscaling.to_serve()["policy"]
    assert served["policy_function"] == "rlreward.serving.autoscaling:HintedPolicy"
    assert _run(GRPO + ["--evaluate", str(rec), "--json", str(pred)]) == 0
    got = json.loads(pred.read_text())
    assert got["config"] == {**chosen["config"], "hint": {**hint, "replica_samples_per_s": 8.0}}
    assert got["predicted"]["reward_stage_s"] == pytest.approx(chosen["reward_stage_s"])
    assert got["predicted"]["replica_seconds"] == pytest.approx(chosen["replica_seconds"])


def test_evaluate_predicts_one_config(tmp_path):
    conf = tmp_path / "fixed2.yaml"
    conf.write_text(
        yaml.safe_dump(
            {"scorer": {"model": ".cache/tiny"}, "replica": {"num_replicas": 2, "max_ongoing_requests": 8}}
        )
    )
    out = tmp_path / "pred.json"
    assert _run(GRPO + ["--evaluate", str(conf), "--json", str(out)]) == 0
    pred = json.loads(out.read_text())["predicted"]
    # 32 samples per step in 8 requests of 4; R = 8 → 0.5 s a request; 2 replicas → 4 × 0.5 = 2 s per step.
    # Step 0 at 15 (rollout) → 17; step 1 at 17 + 10 + 15 = 42 → 44; step 2 at 69 → 71. 2 replicas × 71 s.
    assert pred["reward_stage_s"] == pytest.approx(2.0)
    assert pred["replica_seconds"] == pytest.approx(2 * 71.0)


def test_evaluate_with_hints_needs_autoscaling(tmp_path, capsys):
    conf = tmp_path / "fixed.yaml"
    conf.write_text(yaml.safe_dump({"scorer": {"model": ".cache/tiny"}, "replica": {"num_replicas": 2}}))
    rc = _run(GRPO + ["--evaluate", str(conf), "--hint-within-s", "2", "--json", str(tmp_path / "x.json")])
    assert rc == 2
    assert "hints need autoscaling" in capsys.readouterr().err


def test_grpo_without_its_sizes_is_a_usage_error(tmp_path, capsys):
    argv = [
        "--workload",
        "grpo",
        "--steps",
        "3",
        "--replica-samples-per-s",
        "8",
        "--cold-start-s",
        "5",
        "--json",
        str(tmp_path / "x.json"),
    ]
    assert _run(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlreward tune: error:") and "--prompts" in err and "--update-s" in err
    assert not (tmp_path / "x.json").exists()


def test_sweep_on_a_trace(tmp_path):
    trace = tmp_path / "t.jsonl"
    rows = [{"kind": "header"}] + [
        {"t": 20.0 * k + 0.01 * i, "samples": 4, "step": k, "latency_s": 1.0}
        for k in range(3)
        for i in range(6)
    ]
    trace.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "tune.json"
    rc = _run(
        [
            "--trace",
            str(trace),
            "--replica-samples-per-s",
            "8",
            "--cold-start-s",
            "5",
            "--no-hints",
            "--json",
            str(out),
        ]
        + SMALL_GRID
    )
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["workload"]["closed_loop"] is True and data["workload"]["steps"] == 3
    assert data["recommended_without_hints"] is not None
    assert all(p["config"]["hint"] is None for p in data["points"])


def test_bench_json_gives_the_replica_throughput(tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(
        json.dumps({"systems": {"shared": {"samples_per_s": 6.0}, "serve": {"samples_per_s": 8.0}}})
    )
    out = tmp_path / "pred.json"
    conf = tmp_path / "fixed2.yaml"
    conf.write_text(
        yaml.safe_dump(
            {"scorer": {"model": ".cache/tiny"}, "replica": {"num_replicas": 2, "max_ongoing_requests": 8}}
        )
    )
    i = GRPO.index("--replica-samples-per-s")  # from the bench record instead
    args = GRPO[:i] + GRPO[i + 2 :] + ["--evaluate", str(conf), "--json", str(out)]
    assert _run(args + ["--bench-json", str(bench)]) == 0
    got = json.loads(out.read_text())
    assert got["replica"]["samples_per_s"] == 8.0  # the serve system's number
    assert got["calibration"]["source"].endswith(":serve")
    assert got["predicted"]["reward_stage_s"] == pytest.approx(2.0)  # as test_evaluate_predicts_one_config
    assert _run(args + ["--bench-json", str(bench), "--bench-system", "nope"]) == 2
    assert _run(args) == 2  # no throughput at all


# -- one config path: what `rlreward serve --config FILE --model M` takes, tune takes -------------------
PARTIAL_GPU = {  # no scorer section: the model comes from serve's --model
    "replica": {
        "ray_actor_options": {"num_cpus": 4, "num_gpus": 1},
        "num_replicas": 2,
        "max_ongoing_requests": 8,
    }
}


def _served(path, model="/models/skywork"):
    """The AppConfig `rlreward serve --config path --model model` runs (its own reading code)."""
    from rlreward.commands import serve

    p = argparse.ArgumentParser()
    serve.add_arguments(p)
    return serve.config_from_args(p.parse_args(["--config", str(path), "--model", model]))


def test_evaluate_takes_the_partial_yaml_serve_takes(tmp_path):
    conf = tmp_path / "partial.yaml"
    conf.write_text(yaml.safe_dump(PARTIAL_GPU))
    assert _served(conf).replica.num_replicas == 2  # serve accepts it
    out = tmp_path / "pred.json"
    assert _run(GRPO + ["--evaluate", str(conf), "--json", str(out)]) == 0
    # the same 2-replica fixed pool as test_evaluate_predicts_one_config, computed there by hand
    assert json.loads(out.read_text())["predicted"]["reward_stage_s"] == pytest.approx(2.0)


def test_a_partial_base_config_keeps_its_device_settings_and_serves_with_a_model(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({**PARTIAL_GPU, "scorer": {"device": "cuda:0", "dtype": "bfloat16"}}))
    rec = tmp_path / "rec.yaml"
    argv = GRPO + SMALL_GRID + ["--base-config", str(base), "--json", str(tmp_path / "t.json")]
    assert _run(argv + ["--out-yaml", str(rec)]) == 0
    text = rec.read_text()
    assert "serve it with `rlreward serve --config THIS.yaml --model MODEL`" in text
    assert "No --base-config" not in text
    data = yaml.safe_load(text)
    assert "model" not in data["scorer"]
    cfg = _served(rec)
    assert (cfg.scorer.device, cfg.scorer.dtype) == ("cuda:0", "bfloat16")
    assert (cfg.replica.ray_actor_options.num_gpus, cfg.replica.ray_actor_options.num_cpus) == (1, 4)
    assert cfg.scorer.model == "/models/skywork"


def test_a_recommendation_without_base_config_leaves_device_values_unset(tmp_path):
    from rlreward.serving.config import read_config_mapping

    packaged = read_config_mapping(None)
    assert packaged["scorer"]["device"] == "cpu"  # what must not leak into a GPU recommendation
    assert packaged["replica"]["ray_actor_options"]["num_gpus"] == 0
    rec = tmp_path / "rec.yaml"
    assert _run(GRPO + SMALL_GRID + ["--json", str(tmp_path / "t.json"), "--out-yaml", str(rec)]) == 0
    text = rec.read_text()
    data = yaml.safe_load(text)
    assert not {"model", "device", "dtype"} & set(data["scorer"])
    assert "ray_actor_options" not in data["replica"]
    assert "device-dependent values are left unset" in text and "num_gpus: 1" in text
    cfg = _served(rec)  # resolved per device at serve time
    assert (cfg.scorer.device, cfg.scorer.dtype) == ("auto", "auto")
    assert data["scorer"]["batching"] == packaged["scorer"]["batching"]  # the rest is the default's


def test_a_base_config_that_serve_refuses_is_named(tmp_path, capsys):
    base = tmp_path / "bad.yaml"
    base.write_text(yaml.safe_dump({"replica": {"max_ongoing_requests": 0}}))
    argv = GRPO + SMALL_GRID + ["--base-config", str(base), "--json", str(tmp_path / "t.json")]
    assert _run(argv) == 2
    err = capsys.readouterr().err
    assert str(base) in err and "replica.max_ongoing_requests" in err
