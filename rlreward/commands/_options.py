"""Command-line options shared by the commands that load a model in-process, and the one-line error."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_model_arguments", "scorer_config_from_args"]


def add_model_arguments(p: argparse.ArgumentParser, image_root_help: str | None = None) -> None:
    """Options shared by every command that loads a model in-process (``image_root_help``: the
    ``--image-root`` help of a command whose default is not the input file's directory)."""
    p.add_argument(
        "--image-root",
        action="append",
        default=[],
        metavar="DIR",
        help=image_root_help
        or "directory local image paths may be read from (repeatable); default: the input file's directory",
    )
    p.add_argument(
        "--allow-url-prefix",
        action="append",
        default=[],
        metavar="PREFIX",
        help="allow http(s) images under this prefix (repeatable)",
    )
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--attn-implementation", default=None, help="sdpa, flash_attention_2, eager")
    p.add_argument(
        "--min-pixels",
        type=int,
        default=None,
        help="DEVIATION from the checkpoint: min image area of the processor's (second) resize; "
        "default: the checkpoint's saved bound, as the model card's recipe",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="DEVIATION from the checkpoint: max image area of the processor's (second) resize, e.g. "
        "1003520 (the card's optional 1280-token bound); default: the checkpoint's saved bound",
    )
    p.add_argument("--head-file", default=None, help="value-head file name (default value_head.safetensors)")
    p.add_argument("--head-key-prefix", default=None, help="value-head key prefix (default v_head.summary)")
    p.add_argument(
        "--max-batch-tokens",
        type=int,
        default=None,
        help="token budget of one forward pass (default: 1024 on CPU, 16384 on GPU)",
    )
    p.add_argument("--max-batch-size", type=int, default=None, help="most samples in one forward pass")
    p.add_argument("--no-prefix-sharing", action="store_true", help="score every sample in full")


def scorer_config_from_args(args: argparse.Namespace, default_roots: list[str] | None = None):
    """Build a :class:`ScorerConfig` from the shared model options."""
    from rlreward.engine.config import ScorerConfig

    top: dict[str, Any] = {"model": args.model, "dtype": args.dtype, "device": args.device}
    for name in ("attn_implementation", "min_pixels", "max_pixels", "head_file", "head_key_prefix"):
        if getattr(args, name, None) is not None:
            top[name] = getattr(args, name)
    batching: dict[str, Any] = {}
    if args.max_batch_tokens is not None:
        batching["max_batch_tokens"] = args.max_batch_tokens
    if args.max_batch_size is not None:
        batching["max_batch_size"] = args.max_batch_size
    if args.no_prefix_sharing:
        batching["prefix_sharing"] = False
    roots = list(args.image_root) or list(default_roots or [])
    return ScorerConfig(
        **top,
        batching=batching,
        media={"image_roots": roots, "allowed_url_prefixes": list(args.allow_url_prefix)},
    )
