"""``rlreward serve``: start (or join) a Ray cluster, deploy the app, serve until Ctrl-C / SIGTERM.

Before deploying it checks that the app fits the cluster (:mod:`rlreward.serving.placement`): it
starts as many initial replicas as fit and says what did not, or exits 2 naming the missing
resource; while the app starts it prints progress and Serve's messages, and gives up after
``--start-timeout-s``. The first Ctrl-C shuts down; a second one exits at once (status 130).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from rlreward.commands._options import add_model_arguments
from rlreward.errors import UsageError
from rlreward.serving.app import build_app
from rlreward.serving.config import DEFAULT_CONFIG, AppConfig, absolutize, load_app_config
from rlreward.serving.placement import StartFailed, Unplaceable, check_cluster, start_and_wait


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
    p.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="127.0.0.1",
        help="HTTP bind address (default 127.0.0.1: this machine only; 0.0.0.0 serves other machines)",
    )
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
    p.add_argument(
        "--dashboard-port",
        default=None,
        metavar="PORT|off",
        help="port of the Ray dashboard of a cluster this command starts (default: Ray's, 8265); "
        "'off' starts none",
    )
    p.add_argument(
        "--start-timeout-s",
        type=float,
        default=600.0,
        help="give up (exit 1) when the app is not running after this long (default 600)",
    )
    add_model_arguments(
        p, image_root_help="directory local image paths may be read from (repeatable); default: none"
    )
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


def _ray_init_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``ray.init`` arguments: join ``--address`` or start a cluster (with ``--dashboard-port``)."""
    if args.address is not None:
        if args.dashboard_port is not None:
            raise UsageError("--dashboard-port applies to a cluster this command starts, not with --address")
        return {"address": args.address, "log_to_driver": False}
    # "local" starts a fresh cluster; None would join whichever local cluster started last.
    kwargs: dict[str, Any] = {"address": "local", "log_to_driver": False}
    port = args.dashboard_port
    if port is not None:
        if port.lower() == "off":
            kwargs["include_dashboard"] = False
        elif port.isdigit() and 0 < int(port) < 65536:
            kwargs["dashboard_port"] = int(port)
        else:
            raise UsageError(f"--dashboard-port {port!r}: give a port number (1-65535) or 'off'")
    return kwargs


def _config(args: argparse.Namespace) -> AppConfig:
    if not args.model and not args.config:
        raise UsageError("pass --model DIR (or --config YAML naming scorer.model)")
    try:
        cfg = config_from_args(args)
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from exc
    if args.api_key:
        _say(
            "rlreward: warning: --api-key is visible to every user of this machine (ps); "
            "prefer RLREWARD_API_KEY=... or --api-key-file PATH",
            err=True,
        )
    if not Path(cfg.scorer.model).is_dir() and cfg.scorer.model.startswith((".", "/", "~")):
        raise UsageError(
            f"model directory {cfg.scorer.model} does not exist (build one: rlreward make-tiny DIR)"
        )
    return cfg


def _say(line: str, err: bool = False) -> None:
    print(line, file=sys.stderr if err else sys.stdout, flush=True)


def _banner(cfg: AppConfig, args: argparse.Namespace) -> None:
    host, port = _serving_address(args.host, args.port)
    url = f"http://{host}:{port}" + (cfg.route_prefix or "").rstrip("/")
    _say(f"rlreward: serving {cfg.served_model_name}")
    _say(
        f"  HTTP:   {url}/v1/score  (health: {url}/health)"
        + ("  [bearer token required]" if cfg.http.api_key or cfg.http.api_key_file else "")
        if cfg.route_prefix is not None
        else "  HTTP:   off (route_prefix: null)"
    )
    _say(f"  handle: RewardClient(app_name={cfg.name!r})  (from a job on this Ray cluster)")
    _say("  Ctrl-C to stop (twice: at once).")


def run(args: argparse.Namespace) -> int:
    import signal
    import threading

    cfg = _config(args)
    init_kwargs = _ray_init_kwargs(args)

    import ray
    from ray import serve

    started = args.address is None
    ray.init(**init_kwargs)
    stop = threading.Event()

    def on_signal(*_: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: stop now, without Ray's shutdown (its processes follow)
            _say("rlreward: stopped", err=True)
            os._exit(130)
        _say("rlreward: shutting down (Ctrl-C again to exit at once)", err=True)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    deployed = False
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        try:
            cfg = check_cluster(cfg, report=_say)
            deployed = True
            running = start_and_wait(
                build_app(cfg), cfg, args.start_timeout_s, report=_say, cancelled=stop.is_set
            )
        except Unplaceable as exc:
            raise UsageError(str(exc)) from exc
        except StartFailed as exc:
            _say(f"rlreward: error: {exc}", err=True)
            return 1
        if running:
            _banner(cfg, args)
            while not stop.wait(1.0):
                pass
    finally:
        try:
            # A cluster this command started goes down with ray.shutdown(), replicas included:
            # serve.shutdown() would first wait for every replica's graceful drain and the controller
            # (~40 s, "Controller failed to shut down within 30s"). On a shared cluster only this app
            # is deleted. Our handler stays installed: a second Ctrl-C here exits at once.
            if not started and deployed:
                serve.delete(cfg.name)
        finally:
            ray.shutdown()
            for s, h in previous.items():
                signal.signal(s, h)
    return 0
