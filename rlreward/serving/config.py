"""Configuration of a served application: pydantic models that map 1:1 to ``configs/*.yaml``.

An application is two deployments:

* ``RewardReplica`` (:mod:`rlreward.serving.replica`): holds the model; one per GPU; autoscaled.
  Trainers inside the Ray cluster call it directly through a ``DeploymentHandle``
  (``RewardClient(app_name=...)``), with no HTTP hop.
* ``RewardIngress`` (:mod:`rlreward.serving.ingress`): FastAPI on Serve: auth, request limits,
  JSON errors; forwards to the replicas.

:class:`AppConfig` is the whole configuration, field for field the YAML files in ``configs/``
(``configs/tiny-cpu.yaml`` is also packaged as the default, ``rlreward/configs/tiny-cpu.yaml``).
:func:`load_app_config` resolves builder arguments (a YAML path, a dict, dotted keys) to one;
:mod:`rlreward.serving.app` builds the application from it, :mod:`rlreward.commands.serve` is the
``rlreward serve`` command.

Paths in the config (the model directory, image roots) are read on the machines that run the
replicas; relative ones are made absolute where the app is built.
"""

from __future__ import annotations

import copy
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rlreward.engine.config import ScorerConfig

# Deployment names inside an application: defined once, where handle callers (the client) read them.
from rlreward.transport import INGRESS_DEPLOYMENT as INGRESS_DEPLOYMENT
from rlreward.transport import REPLICA_DEPLOYMENT as REPLICA_DEPLOYMENT

log = logging.getLogger("rlreward")

DEFAULT_APP_NAME = "rlreward"
#: The embedded default configuration (tiny checkpoint, CPU, fractional CPUs).
DEFAULT_CONFIG = "tiny-cpu.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class HintOptions(_Model):
    """The RL-phase hint policy (:class:`rlreward.serving.autoscaling.HintedPolicy`): the trainer says
    what is coming (``client.expect(n_samples, within_s=...)``, ``rollout_started()``, ``step_done()``)
    and the deployment scales ahead of the burst and down during the trainer update. Without hints
    it is the base policy (request count, or ``target_backlog_samples``)."""

    replica_samples_per_s: float = Field(
        gt=0,
        description="Samples one replica scores per second (measure it: `rlreward tune --measure` or "
        "`rlreward bench`). A hint of n samples within s seconds asks for ceil(n / (this x s)) replicas.",
    )
    default_within_s: float | None = Field(
        default=None,
        gt=0,
        description="within_s for an expect() that gives none; None = the trainer must give it.",
    )
    release_to: Literal["min", "base"] = Field(
        default="min",
        description="After step_done: 'min' = want min_replicas until the next hint (the trainer is "
        "updating); 'base' = hand back to the base policy (its look-back window still remembers the burst).",
    )
    hold_s: float = Field(default=0.0, ge=0, description="Keep the hint this long after step_done.")
    ttl_s: float = Field(
        default=600.0,
        gt=0,
        description="An expect() without step_done expires after this long (a dead trainer does not "
        "hold replicas).",
    )


class AutoscalingOptions(_Model):
    """Replica autoscaling (Ray Serve ``autoscaling_config``), plus rlreward's optional policies:
    ``target_backlog_samples`` (scale on samples) and ``hints`` (scale on the trainer's phase hints)."""

    min_replicas: int = Field(
        default=1, ge=0, description="Fewest replicas; 0 allows scale-to-zero (cold starts)."
    )
    max_replicas: int = Field(
        default=1, ge=1, description="Most replicas (each needs its ray_actor_options)."
    )
    initial_replicas: int | None = Field(
        default=None, ge=0, description="Replicas at deploy; None = min_replicas."
    )
    target_ongoing_requests: float = Field(
        default=2.0,
        gt=0,
        description="Default policy set point: requests running or queued per replica. Desired replicas = "
        "total requests / this.",
    )
    target_backlog_samples: int | None = Field(
        default=None,
        gt=0,
        description="If set, scale on samples instead of requests (rlreward.serving.autoscaling.SampleBacklogPolicy): "
        "desired replicas = samples queued or being scored (reported by each replica) / this. Use it when "
        "request sizes vary (one sample from OpenRLHF/verl, hundreds from a GRPO batch).",
    )
    upscale_delay_s: float = Field(
        default=30.0, ge=0, description="Load must stay high this long before scaling up."
    )
    downscale_delay_s: float = Field(
        default=600.0, ge=0, description="Load must stay low this long before scaling down."
    )
    downscale_to_zero_delay_s: float | None = Field(
        default=None, ge=0, description="Delay for the last 1 -> 0 step; None = downscale_delay_s."
    )
    look_back_period_s: float = Field(default=30.0, gt=0, description="Window over which load is averaged.")
    upscaling_factor: float | None = Field(
        default=None, gt=0, description="Gain on upscaling decisions (1.0)."
    )
    downscaling_factor: float | None = Field(
        default=None, gt=0, description="Gain on downscaling decisions (1.0)."
    )
    hints: HintOptions | None = Field(
        default=None,
        description="Scale on the trainer's phase hints too (POST /v1/hints, client.expect/step_done); "
        "None = ignore hints. Keep upscale_delay_s short with hints: Serve applies it to every decision.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingOptions:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})"
            )
        if (
            self.initial_replicas is not None
            and not self.min_replicas <= self.initial_replicas <= self.max_replicas
        ):
            raise ValueError("initial_replicas must lie between min_replicas and max_replicas")
        return self

    def to_serve(self) -> dict[str, Any]:
        """The ``autoscaling_config`` dict Ray Serve takes."""
        out = self.model_dump(exclude_none=True, exclude={"target_backlog_samples", "hints"})
        # The key must be `policy_function` (a `name` key is silently ignored by Ray 2.60).
        if self.hints is not None:
            out["policy"] = {
                "policy_function": "rlreward.serving.autoscaling:HintedPolicy",
                "policy_kwargs": {
                    **self.hints.model_dump(),
                    "target_backlog_samples": self.target_backlog_samples,
                },
            }
        elif self.target_backlog_samples is not None:
            out["policy"] = {
                "policy_function": "rlreward.serving.autoscaling:SampleBacklogPolicy",
                "policy_kwargs": {"target_backlog_samples": self.target_backlog_samples},
            }
        return out


class RayActorOptions(_Model):
    """Resources of one replica (Ray ``ray_actor_options``)."""

    num_cpus: float = Field(default=1.0, ge=0, description="CPUs reserved per replica (fractions allowed).")
    num_gpus: float = Field(default=0.0, ge=0, description="GPUs per replica: 1 for a 7B model in bf16.")
    memory: int | None = Field(default=None, gt=0, description="Bytes of memory reserved per replica.")
    accelerator_type: str | None = Field(default=None, description="Ray accelerator type, e.g. 'H100'.")
    resources: dict[str, float] = Field(default_factory=dict, description="Custom Ray resources per replica.")
    runtime_env: dict[str, Any] = Field(
        default_factory=dict, description="Ray runtime_env of the replica (env_vars, pip, ...)."
    )

    def to_serve(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v not in (None, {}, [])}


class SleepOptions(_Model):
    """``replica.sleep``: replicas release their memory between reward bursts (:mod:`rlreward.serving.sleep`).

    A replica sleeps at ``level`` ``after_step_done_s`` seconds after the trainer's ``step_done`` hint
    (and as long after its last request), or after ``after_step_done_s`` idle seconds when no hint is
    in force; it wakes on ``expect`` / ``rollout_started``, or when a request reaches it."""

    after_step_done_s: float = Field(
        gt=0,
        le=86_400,
        description="Seconds after step_done (or idle without hints) before a replica sleeps.",
    )
    level: Literal[1, 2] = Field(
        default=1,
        description="1: weights to (pinned) host memory, device memory freed; 2: weights dropped, "
        "reloaded from the checkpoint's files on wake.",
    )


class ReplicaOptions(_Model):
    """How the model replicas are deployed."""

    num_replicas: int = Field(
        default=1, ge=0, description="Fixed replica count; ignored when autoscaling is set."
    )
    autoscaling: AutoscalingOptions | None = Field(
        default=None, description="Autoscaling; None = fixed count."
    )
    ray_actor_options: RayActorOptions = Field(
        default_factory=RayActorOptions, description="Per-replica resources."
    )
    max_ongoing_requests: int = Field(
        default=32,
        gt=0,
        description="Requests a replica works on at once. Batches form across these requests' samples, so "
        "keep it at least the number of callers that should share a forward pass.",
    )
    max_queued_requests: int = Field(
        default=-1,
        description="Requests each caller (handle, ingress) may queue before BackPressureError / 503; -1 = no "
        "limit. A rollout burst counts in full at once: keep it large or -1.",
    )
    max_queued_bytes: int = Field(
        default=512 << 20,
        gt=0,
        description="Bytes of prepared samples (pixel tensors + token ids, a tensor shared by a group counted "
        "once) one replica holds, queued or being scored; a request arriving beyond it is refused with 503 + "
        "Retry-After and RewardClient retries it. Bounds the replica's host memory under any burst; a "
        "replica holding nothing still takes one request larger than this.",
    )
    max_replicas_per_node: int | None = Field(
        default=None, gt=0, description="Spread replicas: at most this many on one node."
    )
    health_check_period_s: float = Field(
        default=10.0, gt=0, description="Seconds between replica health checks."
    )
    health_check_timeout_s: float = Field(
        default=30.0, gt=0, description="A health check slower than this fails."
    )
    graceful_shutdown_timeout_s: float = Field(
        default=20.0, ge=0, description="Time a stopping replica gets to finish its requests."
    )
    preprocess_threads: int = Field(
        default=4,
        gt=0,
        description="Threads per replica that decode images and tokenise (off the event loop).",
    )
    stuck_forward_s: float = Field(
        default=600.0,
        gt=0,
        description="A forward pass running longer than this fails the health check, so Serve replaces the replica.",
    )
    sleep: SleepOptions | None = Field(
        default=None,
        description="Sleep between reward bursts, driven by the trainer's hints; None = replicas stay awake "
        "(POST /v1/sleep still works).",
    )

    def to_serve(self) -> dict[str, Any]:
        """Keyword arguments of ``Deployment.options`` for the replica deployment."""
        opts: dict[str, Any] = {
            "ray_actor_options": self.ray_actor_options.to_serve(),
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "health_check_period_s": self.health_check_period_s,
            "health_check_timeout_s": self.health_check_timeout_s,
            "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
        }
        if self.max_replicas_per_node is not None:
            opts["max_replicas_per_node"] = self.max_replicas_per_node
        if self.autoscaling is not None:
            opts["autoscaling_config"] = self.autoscaling.to_serve()
        else:
            opts["num_replicas"] = self.num_replicas
        return opts


class ReplicaBatching(_Model):
    """The replica's share of ``scorer.batching`` (:attr:`AppConfig.batching`), sent as Serve's
    ``user_config``: changing ``scorer.batching`` and redeploying retunes running replicas without
    reloading the model. Not a YAML section of its own (one ``batching`` section: the scorer's); a
    top-level ``batching:`` is refused with a message naming ``scorer.batching``.
    """

    max_batch_size: int | None = Field(
        default=None,
        gt=0,
        description="Most samples per replica batch; None = scorer.batching.max_batch_size.",
    )
    max_batch_tokens: int | None = Field(
        default=None,
        gt=0,
        description="Padded-token budget (longest sample x samples) per replica batch; None = the "
        "scorer's resolved budget (its device default when unset). A single longer sample still runs, alone.",
    )
    batch_wait_timeout_s: float = Field(
        default=0.01,
        ge=0,
        description="How long the first sample of a batch waits for others (latency you trade for batch size).",
    )


class IngressOptions(_Model):
    """The light FastAPI deployment in front of the replicas."""

    num_replicas: int = Field(
        default=1, gt=0, description="Ingress replicas (CPU only; 1-2 handle thousands rps)."
    )
    num_cpus: float = Field(default=0.1, ge=0, description="CPUs reserved per ingress replica.")
    max_ongoing_requests: int = Field(
        default=1000, gt=0, description="HTTP requests one ingress replica holds."
    )


class HttpOptions(_Model):
    """The HTTP API: auth and whole-request limits."""

    api_key: str | None = Field(
        default=None,
        repr=False,
        description="Bearer token required on every route but /health (docs and /openapi.json included); "
        "None = no auth. Prefer api_key_env / api_key_file: a key written here sits in the YAML.",
    )
    api_key_env: str | None = Field(
        default=None,
        description="Name of an environment variable holding the token (read where the app is built, else by "
        "the ingress replica at start). Keeps the secret out of the YAML.",
    )
    api_key_file: str | None = Field(
        default=None,
        description="Path of a file holding the token (first line; read where the app is built, else by the "
        "ingress replica at start). Keeps the secret out of the YAML, the command line and the environment.",
    )
    max_request_bytes: int = Field(
        default=256 * 1024 * 1024, gt=0, description="Largest request body; bigger answers 413."
    )
    max_samples_per_request: int = Field(
        default=4096, gt=0, description="Most samples in one request; more answers 413 (the client chunks)."
    )
    request_timeout_s: float = Field(
        default=600.0, gt=0, description="How long the ingress waits for the replicas before answering 504."
    )
    overload_status_code: Literal[429, 503] = Field(
        default=503, description="Status for 'replicas overloaded' (max_queued_requests reached)."
    )
    ingress: IngressOptions = Field(default_factory=IngressOptions, description="The ingress deployment.")


class HealthAlerts(_Model):
    """Alert thresholds of the reward-health statistics (:mod:`rlreward.serving.health`); a step
    raises a signal when its value is strictly above the threshold."""

    zero_variance_fraction: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Zero-variance groups / groups (GRPO: no advantage, no gradient).",
    )
    length_corr: float = Field(
        default=0.7, ge=0, le=1, description="|Spearman(answer tokens, score)|: the reward tracks length."
    )
    length_corr_min_samples: int = Field(
        default=16,
        ge=3,
        description="length_corr alerts only on steps with at least this many scored samples.",
    )
    duplicate_fraction: float = Field(
        default=0.5, ge=0, le=1, description="Duplicate answers / scored samples (the policy repeats itself)."
    )
    error_rate: float = Field(
        default=0.05, ge=0, le=1, description="Samples answered with an error / samples answered."
    )
    canary_drift: float = Field(
        default=1e-3, ge=0, description="A replica's canary max_abs_drift (scores differ from the first)."
    )


class CanaryOptions(_Model):
    """A small probe set every replica scores every ``interval_s``; drift against the first scores."""

    interval_s: float = Field(default=30.0, ge=0, description="Seconds between canary runs; 0 = no canaries.")
    samples: list[dict[str, Any]] | None = Field(
        default=None,
        description="Probe samples (either sample form, JSON); None = a small generated set (text and "
        "one image).",
    )


class HealthOptions(_Model):
    """Reward health (:mod:`rlreward.serving.health`): per-step statistics, alerts, canaries."""

    enabled: bool = Field(default=True, description="Record per-step statistics and run canaries.")
    step_window_s: float = Field(
        default=60.0,
        gt=0,
        description="Without step_done hints, a step is this many seconds of scoring (from its first "
        "sample). Once a step_done hint arrives, steps end only at hints.",
    )
    step_done_wait_s: float = Field(
        default=30.0,
        gt=0,
        description="With several trainer processes sending step_done, a step closes when as many have "
        "sent it as in the last step, or this long after the first one.",
    )
    ring_steps: int = Field(default=64, ge=1, le=100_000, description="Closed steps kept (oldest dropped).")
    ring_alerts: int = Field(default=256, ge=1, le=100_000, description="Alerts kept (oldest dropped).")
    max_samples_per_step: int = Field(
        default=200_000,
        ge=1,
        description="Per-sample records kept per step; samples beyond it are counted in 'dropped' only.",
    )
    alerts: HealthAlerts = Field(default_factory=HealthAlerts, description="Alert thresholds.")
    canary: CanaryOptions = Field(default_factory=CanaryOptions, description="Canary probes.")


class AppConfig(_Model):
    """One rlreward application: the scorer plus how it is served. Maps 1:1 to ``configs/*.yaml``."""

    name: str = Field(default=DEFAULT_APP_NAME, description="Serve application name (handles address it).")
    route_prefix: str | None = Field(default="/", description="HTTP route prefix; None = handle access only.")
    model_name: str | None = Field(
        default=None,
        description="Model id reported to clients; None = scorer.model if it is an HF id, else the model "
        "directory's base name (responses never name server paths).",
    )
    scorer: ScorerConfig = Field(
        description="Model, dtype, device, media policy, limits, and the one batching section "
        "(scorer.batching: forward passes and replica batches alike)."
    )
    replica: ReplicaOptions = Field(default_factory=ReplicaOptions, description="Replica deployment options.")
    http: HttpOptions = Field(default_factory=HttpOptions, description="HTTP auth and request limits.")
    health: HealthOptions = Field(
        default_factory=HealthOptions, description="Reward health: per-step statistics, alerts, canaries."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_top_level_batching(cls, data: Any) -> Any:
        """A top-level ``batching:`` section (older configs) is refused, naming where its keys live."""
        if isinstance(data, dict) and "batching" in data:
            old = data["batching"]
            keys = sorted(old) if isinstance(old, dict) else []
            raise ValueError(
                "there is no top-level 'batching' section: batching lives under scorer.batching (one section "
                f"for forward passes and replica batches); move {keys or 'its keys'} there"
            )
        return data

    @property
    def batching(self) -> ReplicaBatching:
        """The replica-batching view of ``scorer.batching`` (sent to replicas as ``user_config``)."""
        b = self.scorer.batching
        return ReplicaBatching(
            max_batch_size=b.max_batch_size,
            max_batch_tokens=b.max_batch_tokens,
            batch_wait_timeout_s=b.batch_wait_timeout_s,
        )

    @property
    def served_model_name(self) -> str:
        """``model_name``, else the model's HF id, or a local model directory's base name (a server
        never reports its absolute paths)."""
        if self.model_name:
            return self.model_name
        model = self.scorer.model
        if os.path.isabs(model) or model.startswith(("~", ".")) or Path(model).expanduser().is_dir():
            return Path(model.rstrip("/\\")).name or model
        return model


# -- reading a configuration --------------------------------------------------------------------------
def default_config_text() -> str:
    """The packaged default (``rlreward/configs/tiny-cpu.yaml``)."""
    return resources.files("rlreward").joinpath("configs", DEFAULT_CONFIG).read_text(encoding="utf-8")


def _read_yaml(text: str, where: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{where} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{where} must hold a mapping of AppConfig fields, not {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ValueError(f"cannot set {key}: {p} is not a mapping")
    node[parts[-1]] = value


#: Short builder arguments → AppConfig fields.
_SHORTCUTS = {
    "model": "scorer.model",
    "api_key": "http.api_key",
    "num_replicas": "replica.num_replicas",
    "device": "scorer.device",
    "dtype": "scorer.dtype",
}


def read_config_mapping(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The mapping in an AppConfig YAML file (``None``: the packaged default), not yet validated.
    Raises FileNotFoundError / ValueError naming the file."""
    if not path:
        return _read_yaml(default_config_text(), f"packaged {DEFAULT_CONFIG}")
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"config file {path} does not exist (see configs/ for examples)")
    return _read_yaml(p.read_text(encoding="utf-8"), str(path))


def load_app_config(args: AppConfig | dict[str, Any] | str | os.PathLike | None = None) -> AppConfig:
    """Resolve builder arguments to an :class:`AppConfig`.

    ``args`` is an AppConfig, a YAML path, or a dict holding any of: ``config`` (a YAML path; default
    the packaged ``tiny-cpu.yaml``), AppConfig fields (nested dicts merge into the file's), dotted keys
    (``scorer.dtype: float32``), and the shortcuts ``model``, ``api_key``, ``num_replicas``, ``device``,
    ``dtype``, ``image_root`` (a path or list). String values from ``serve run k=v`` are parsed as YAML
    scalars/lists (``2`` → 2, ``[a, b]`` → list).
    """
    if isinstance(args, AppConfig):
        return absolutize(args)
    if isinstance(args, (str, os.PathLike)):
        args = {"config": os.fspath(args)}
    args = dict(args or {})
    data = read_config_mapping(args.pop("config", None))
    import yaml

    roots = args.pop("image_root", None)
    for key, value in args.items():
        if isinstance(value, str) and key not in ("model", "api_key", "name", "model_name"):
            value = yaml.safe_load(value) if value.strip() else value
        if key in _SHORTCUTS:
            _set_dotted(data, _SHORTCUTS[key], value)
        elif "." in key:
            _set_dotted(data, key, value)
        elif isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = _merge(data[key], value)
        else:
            data[key] = value
    if roots:
        _set_dotted(data, "scorer.media.image_roots", [roots] if isinstance(roots, str) else list(roots))
    return absolutize(AppConfig.model_validate(data))


def absolutize(cfg: AppConfig) -> AppConfig:
    """Make local relative paths absolute: replicas do not run in the builder's working directory."""
    model = cfg.scorer.model
    if not os.path.isabs(model) and Path(model).expanduser().is_dir():
        model = str(Path(model).expanduser().resolve())
    roots = [str(Path(r).expanduser().resolve()) for r in cfg.scorer.media.image_roots]
    media = cfg.scorer.media.model_copy(update={"image_roots": roots})
    scorer = cfg.scorer.model_copy(update={"model": model, "media": media})
    return cfg.model_copy(update={"scorer": scorer})


def api_key_digest(key: str) -> str:
    """``sha256$<salt>$<hex>`` of ``key`` with a fresh random salt: what the app hands the ingress
    instead of the key, since deployment arguments are shown in Ray's dashboard and state API."""
    import hashlib
    import secrets

    salt = secrets.token_hex(16)
    return f"sha256${salt}${hashlib.sha256((salt + key).encode()).hexdigest()}"


def api_key_matches(token: str, digest: str) -> bool:
    """Whether ``token`` is the key ``digest`` (from :func:`api_key_digest`) was made of; constant time."""
    import hashlib
    import hmac

    _, salt, want = digest.split("$", 2)
    return hmac.compare_digest(hashlib.sha256((salt + token).encode()).hexdigest(), want)


def resolve_api_key(http: HttpOptions) -> str | None:
    """The token from ``api_key``, else the ``api_key_env`` variable here, else the first line of
    ``api_key_file`` here (None if none is set or found; ``ValueError`` for an empty key file)."""
    if http.api_key:
        return http.api_key
    if http.api_key_env and os.environ.get(http.api_key_env):
        return os.environ[http.api_key_env]
    if http.api_key_file:
        path = Path(http.api_key_file).expanduser()
        if not path.is_file():
            return None
        key = path.read_text(encoding="utf-8").strip().splitlines()
        if not key or not key[0].strip():
            raise ValueError(f"http.api_key_file {path.name} is empty: write the token on its first line")
        return key[0].strip()
    return None
