"""``rlreward serve``: start (or join) a Ray cluster, deploy the app, serve until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from rlreward.commands._options import add_model_arguments
from rlreward.errors import UsageError
from rlreward.serving.app import deploy
from rlreward.serving.config import DEFAULT_CONFIG, AppConfig, absolutize, load_app_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default=None, help="model directory or HF id (overrides the config's scorer.model)"
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="YAML",
        help=f"AppConfig YAML (default: the packaged {DEFAULT_CONFIG}); see configs/",
    )
    p.add_argument("--host", default="127.0.0.1", help="HTTP bind address (0.0.0.0 to serve other machines)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument(
        "--api-key-file",
        default=None,
        metavar="PATH",
        help="require the bearer token written on the first line of this file (or set $RLREWARD_API_KEY)",
    )
    p.add_argument(
        "--api-key",
        default=None,
        help="require this bearer token; visible to every user of this machine in `ps`: prefer "
        "$RLREWARD_API_KEY or --api-key-file",
    )
    p.add_argument(
        "--address",
        default=None,
        help="join this Ray cluster ('auto' = the local one) instead of starting a new one",
    )
    p.add_argument("--name", default=None, help="application name (default: the config's, 'rlreward')")
    p.add_argument("--route-prefix", default=None, help="HTTP route prefix (default: the config's, '/')")
    p.add_argument("--num-replicas", type=int, default=None, help="fixed replica count (drops autoscaling)")
    add_model_arguments(p)
    # Model options override the config only where given.
    p.set_defaults(dtype=None, device=None)


def config_from_args(args: argparse.Namespace) -> AppConfig:
    """AppConfig from ``--config`` plus the command-line overrides."""
    over: dict[str, Any] = {}
    if args.config:
        over["config"] = args.config
    if args.model:
        over["model"] = args.model
    cfg = load_app_config(over)
    data = cfg.model_dump()
    if args.name:
        data["name"] = args.name
    if args.route_prefix:
        data["route_prefix"] = args.route_prefix
    key_file = getattr(args, "api_key_file", None)
    key = args.api_key or os.environ.get("RLREWARD_API_KEY")
    if key:
        data["http"]["api_key"] = key
    elif key_file:
        if not Path(key_file).expanduser().is_file():
            raise ValueError(f"--api-key-file {key_file}: no such file")
        data["http"]["api_key_file"] = str(Path(key_file).expanduser().resolve())
    if args.num_replicas is not None:
        data["replica"]["num_replicas"] = args.num_replicas
        data["replica"]["autoscaling"] = None
    sc = data["scorer"]
    for name in (
        "dtype",
        "device",
        "attn_implementation",
        "min_pixels",
        "max_pixels",
        "head_file",
        "head_key_prefix",
    ):
        if getattr(args, name, None) is not None:
            sc[name] = getattr(args, name)
    if args.max_batch_tokens is not None:
        sc["batching"]["max_batch_tokens"] = args.max_batch_tokens
    if args.max_batch_size is not None:
        sc["batching"]["max_batch_size"] = args.max_batch_size
    if args.no_prefix_sharing:
        sc["batching"]["prefix_sharing"] = False
    if args.image_root:
        sc["media"]["image_roots"] = list(args.image_root)
    if args.allow_url_prefix:
        sc["media"]["allowed_url_prefixes"] = list(args.allow_url_prefix)
    return absolutize(AppConfig.model_validate(data))


def _serving_address(host: str, port: int) -> tuple[str, int]:
    """Where Serve's proxy really listens: a running Serve instance keeps its own http_options."""
    try:
        from ray.serve.context import _get_global_client

        http = _get_global_client().http_config
        host, port = http.host, http.port
    except Exception:  # private API moved: report what was asked for
        pass
    return ("127.0.0.1" if host in ("0.0.0.0", "::") else host), port


def run(args: argparse.Namespace) -> int:
    import signal
    import threading

    if not args.model and not args.config:
        raise UsageError("pass --model DIR (or --config YAML naming scorer.model)")
    try:
        cfg = config_from_args(args)
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from exc
    if args.api_key:
        print(
            "rlreward: warning: --api-key is visible to every user of this machine (ps); "
            "prefer RLREWARD_API_KEY=... or --api-key-file PATH",
            file=sys.stderr,
            flush=True,
        )
    if not Path(cfg.scorer.model).is_dir() and cfg.scorer.model.startswith((".", "/", "~")):
        raise UsageError(
            f"model directory {cfg.scorer.model} does not exist (build one: rlreward make-tiny DIR)"
        )

    import ray
    from ray import serve

    started = args.address is None
    # "local" starts a fresh cluster; None would join whichever local cluster started last.
    ray.init(address=args.address or "local", log_to_driver=False)
    stop = threading.Event()

    def on_signal(*_: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: stop now
            os._exit(130)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        deploy(cfg)
        host, port = _serving_address(args.host, args.port)
        url = f"http://{host}:{port}" + (cfg.route_prefix or "").rstrip("/")
        print(f"rlreward: serving {cfg.served_model_name}", flush=True)
        print(
            f"  HTTP:   {url}/v1/score  (health: {url}/health)"
            + ("  [bearer token required]" if cfg.http.api_key or cfg.http.api_key_file else "")
            if cfg.route_prefix is not None
            else "  HTTP:   off (route_prefix: null)",
            flush=True,
        )
        print(f"  handle: RewardClient(app_name={cfg.name!r})  (from a job on this Ray cluster)", flush=True)
        print("  Ctrl-C to stop.", flush=True)
        while not stop.wait(1.0):
            pass
        print("rlreward: shutting down", flush=True)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        try:
            # A cluster this command started goes down with ray.shutdown(), replicas included:
            # serve.shutdown() would first wait for every replica's graceful drain and the controller
            # (~40 s, "Controller failed to shut down within 30s"). On a shared cluster only this app
            # is deleted.
            if not started:
                serve.delete(cfg.name)
        finally:
            ray.shutdown()
    return 0
