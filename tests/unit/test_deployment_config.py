"""AppConfig ⇄ YAML, the app builder as Serve calls it, the replica's batch cost, the backlog policy.

No Ray cluster: Serve's own builder-argument path and policy objects run in-process.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from rlreward.commands.serve import add_arguments, config_from_args
from rlreward.serving.app import build_app
from rlreward.serving.config import (
    INGRESS_DEPLOYMENT,
    REPLICA_DEPLOYMENT,
    AppConfig,
    AutoscalingOptions,
    api_key_digest,
    api_key_matches,
    load_app_config,
    resolve_api_key,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def _models(model: type[BaseModel], seen: set | None = None):
    seen = set() if seen is None else seen
    if model in seen:
        return
    seen.add(model)
    yield model
    for f in model.model_fields.values():
        for t in (f.annotation, *getattr(f.annotation, "__args__", ())):
            if isinstance(t, type) and issubclass(t, BaseModel):
                yield from _models(t, seen)


def test_every_config_field_has_a_description():
    missing = [
        f"{m.__name__}.{n}"
        for m in _models(AppConfig)
        for n, f in m.model_fields.items()
        if not f.description
    ]
    assert not missing


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_yaml_files_are_app_configs_and_round_trip(path):
    cfg = load_app_config({"config": str(path)})
    dumped = yaml.safe_dump(cfg.model_dump(mode="json"))
    assert AppConfig.model_validate(yaml.safe_load(dumped)) == cfg


def test_packaged_default_is_configs_tiny_cpu():
    packaged = ROOT / "rlreward" / "configs" / "tiny-cpu.yaml"
    assert packaged.read_text() == (ROOT / "configs" / "tiny-cpu.yaml").read_text()
    cfg = load_app_config(None)
    assert cfg.scorer.device == "cpu" and cfg.replica.ray_actor_options.num_gpus == 0
    assert 0 < cfg.replica.ray_actor_options.num_cpus < 1


def test_gpu_config_uses_one_gpu_per_replica_and_autoscales():
    cfg = load_app_config({"config": str(ROOT / "configs" / "skywork-vl-7b.yaml")})
    opts = cfg.replica.to_serve()
    assert opts["ray_actor_options"]["num_gpus"] == 1
    auto = opts["autoscaling_config"]
    assert auto["min_replicas"] < auto["max_replicas"]
    assert auto["policy"]["policy_function"] == "rlreward.serving.autoscaling:SampleBacklogPolicy"
    assert cfg.replica.max_ongoing_requests >= (
        cfg.batching.max_batch_size or cfg.scorer.batching.max_batch_size
    )


def test_builder_arguments_shortcuts_dotted_keys_and_strings(tiny_model_dir, tmp_path, monkeypatch):
    cfg = load_app_config(
        {
            "model": tiny_model_dir,
            "replica.num_replicas": "3",  # serve run passes strings
            "scorer.batching.batch_wait_timeout_s": "0.5",
            "image_root": str(tmp_path),
            "http": {"max_samples_per_request": 7},
        }
    )
    assert cfg.scorer.model == str(Path(tiny_model_dir).resolve())
    assert cfg.replica.num_replicas == 3 and cfg.batching.batch_wait_timeout_s == 0.5
    assert cfg.scorer.media.image_roots == [str(tmp_path.resolve())]
    assert cfg.http.max_samples_per_request == 7 and cfg.http.max_request_bytes > 0  # merged, not replaced
    with pytest.raises(ValidationError, match="max_ongoing_request"):
        load_app_config({"replica.max_ongoing_request": 3})  # typo: extra keys are refused
    with pytest.raises(FileNotFoundError, match="configs/"):
        load_app_config({"config": str(tmp_path / "nope.yaml")})
    monkeypatch.chdir(Path(tiny_model_dir).parent)
    assert load_app_config({"model": Path(tiny_model_dir).name}).scorer.model == str(
        Path(tiny_model_dir).resolve()
    )


def test_serve_calls_build_app_with_its_args_and_gets_both_deployments(tiny_model_dir):
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    args = {
        "config": str(ROOT / "configs" / "tiny-cpu.yaml"),
        "model": tiny_model_dir,
        "replica.max_ongoing_requests": "48",
        "scorer.batching.max_batch_size": "16",
        "api_key": "k",
    }
    app = call_user_app_builder_with_args_if_necessary(build_app, args)
    ingress = app._bound_deployment
    replica = ingress.init_args[0]._bound_deployment
    assert (ingress.name, replica.name) == (INGRESS_DEPLOYMENT, REPLICA_DEPLOYMENT)
    assert replica.max_ongoing_requests == 48
    assert replica.user_config["max_batch_size"] == 16
    assert replica.ray_actor_options["num_gpus"] == 0
    assert replica.init_kwargs["scorer_config"]["model"] == str(Path(tiny_model_dir).resolve())
    # The key is not among the deployment's arguments (Ray's dashboard shows them): only a digest.
    secret_free = repr((ingress.init_args[1:], ingress.init_kwargs))
    assert "'k'" not in secret_free and ingress.init_kwargs["http_options"]["api_key"] is None
    assert api_key_matches("k", ingress.init_kwargs["api_key_digest"])
    assert not api_key_matches("K", ingress.init_kwargs["api_key_digest"])
    assert ingress.init_kwargs["model_name"] == Path(tiny_model_dir).name  # no absolute path


def test_api_key_digest_is_salted_and_checks_only_the_key():
    a, b = api_key_digest("s3cret"), api_key_digest("s3cret")
    assert a != b and "s3cret" not in a
    assert api_key_matches("s3cret", a) and api_key_matches("s3cret", b)
    assert not api_key_matches("s3cre", a) and not api_key_matches("s3cret ", a)


def test_api_key_from_a_file(tmp_path):
    from rlreward.serving.config import HttpOptions

    path = tmp_path / "token"
    path.write_text("from-file\nignored second line\n")
    assert resolve_api_key(HttpOptions(api_key_file=str(path))) == "from-file"
    assert resolve_api_key(HttpOptions(api_key_file=str(tmp_path / "absent"))) is None
    path.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        resolve_api_key(HttpOptions(api_key_file=str(path)))
    assert "from-file" not in repr(HttpOptions(api_key="from-file"))


def test_api_key_from_env_var(monkeypatch):
    from rlreward.serving.config import HttpOptions

    monkeypatch.setenv("MY_RM_TOKEN", "from-env")
    assert resolve_api_key(HttpOptions(api_key_env="MY_RM_TOKEN")) == "from-env"
    assert resolve_api_key(HttpOptions(api_key="direct", api_key_env="MY_RM_TOKEN")) == "direct"
    monkeypatch.delenv("MY_RM_TOKEN")
    assert resolve_api_key(HttpOptions(api_key_env="MY_RM_TOKEN")) is None


def test_rlreward_serve_arguments_override_the_config(tiny_model_dir, monkeypatch):
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(
        [
            "--config",
            str(ROOT / "configs" / "skywork-vl-7b.yaml"),
            "--model",
            tiny_model_dir,
            "--dtype",
            "float32",
            "--device",
            "cpu",
            "--num-replicas",
            "2",
            "--name",
            "rm",
            "--image-root",
            "/data/imgs",
        ]
    )
    monkeypatch.setenv("RLREWARD_API_KEY", "env-key")
    cfg = config_from_args(args)
    assert cfg.name == "rm" and cfg.scorer.dtype == "float32" and cfg.scorer.device == "cpu"
    assert cfg.replica.autoscaling is None and cfg.replica.num_replicas == 2
    assert cfg.scorer.media.image_roots == ["/data/imgs"] and cfg.http.api_key == "env-key"
    # Options not given keep the file's values.
    assert cfg.scorer.batching.batch_wait_timeout_s == 0.02 and cfg.replica.ray_actor_options.num_gpus == 1
    assert cfg.scorer.max_pixels is None  # the 7B config scores as the card does: no bound by default


def test_autoscaling_options_are_what_serve_accepts():
    from ray.serve.config import AutoscalingConfig

    from rlreward.serving.autoscaling import SampleBacklogPolicy

    opts = AutoscalingOptions(min_replicas=1, max_replicas=4, target_backlog_samples=32).to_serve()
    serve_cfg = AutoscalingConfig(**opts)
    assert serve_cfg.max_replicas == 4
    assert serve_cfg.policy.get_policy().__name__ == SampleBacklogPolicy.__name__
    assert serve_cfg.policy.policy_kwargs == {"target_backlog_samples": 32}
    with pytest.raises(ValidationError, match="above max_replicas"):
        AutoscalingOptions(min_replicas=3, max_replicas=2)


def _ctx(
    backlogs: dict[str, float], queued: float = 0, running: int | None = None, in_flight: float | None = None
):
    from ray.serve._private.common import DeploymentID
    from ray.serve.config import AutoscalingContext

    n = running if running is not None else len(backlogs)
    return AutoscalingContext(
        deployment_id=DeploymentID(name=REPLICA_DEPLOYMENT, app_name="rlreward"),
        deployment_name=REPLICA_DEPLOYMENT,
        app_name="rlreward",
        current_num_replicas=n,
        target_num_replicas=n,
        running_replicas=list(backlogs),
        total_num_requests=queued + (in_flight if in_flight is not None else len(backlogs)),
        total_queued_requests=queued,
        aggregated_metrics={"backlog_samples": backlogs} if backlogs else {},
        raw_metrics={},
        capacity_adjusted_min_replicas=1,
        capacity_adjusted_max_replicas=8,
        policy_state={},
        last_scale_up_time=None,
        last_scale_down_time=None,
        current_time=None,
        config=None,
    )


def test_sample_backlog_policy_scales_on_samples_not_requests():
    from rlreward.serving.autoscaling import SampleBacklogPolicy

    policy = SampleBacklogPolicy(target_backlog_samples=64)
    # Two requests of 200 samples each: 400 samples -> 7 replicas (the request count would say 1).
    assert policy(_ctx({"r1": 200.0, "r2": 200.0}))[0] == 7
    assert policy(_ctx({"r1": 0.0, "r2": 0.0}))[0] == 0  # idle: Serve clamps to min_replicas
    # Requests waiting at callers count too, in samples: the one request running holds 10 samples,
    # so 60 queued requests weigh ~600: (10 + 600) / 64 -> 10 replicas (not (10 + 60) / 64 -> 2).
    assert policy(_ctx({"r1": 10.0}, queued=60))[0] == 10
    # One sample per request (OpenRLHF/verl): 10 running requests hold 10 samples, 60 queued ~ 60.
    assert policy(_ctx({"r1": 10.0}, queued=60, in_flight=10))[0] == 2
    with pytest.raises(ValueError):
        SampleBacklogPolicy(0)


def test_rlreward_serve_reads_the_key_from_a_file_and_never_from_a_missing_one(tmp_path, monkeypatch):
    p = argparse.ArgumentParser()
    add_arguments(p)
    monkeypatch.delenv("RLREWARD_API_KEY", raising=False)
    key_file = tmp_path / "rm.token"
    key_file.write_text("file-key\n")
    cfg = config_from_args(p.parse_args(["--model", "m", "--api-key-file", str(key_file)]))
    assert cfg.http.api_key is None and resolve_api_key(cfg.http) == "file-key"
    with pytest.raises(ValueError, match="no such file"):
        config_from_args(p.parse_args(["--model", "m", "--api-key-file", str(tmp_path / "absent")]))
