"""``rlreward bench``: parse the arguments, run :func:`rlreward.offline.bench.runner.run_bench`,
print the table and write the JSON/plot. See :mod:`rlreward.offline.bench` for the systems,
workloads and metrics."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from rlreward.commands._options import add_model_arguments, scorer_config_from_args
from rlreward.errors import UsageError
from rlreward.offline.bench import DEFAULT_SYSTEMS, SYSTEMS
from rlreward.offline.bench.report import plot, render_table
from rlreward.offline.bench.runner import BenchOptions, parse_systems, run_bench
from rlreward.offline.bench.workloads import parse_token_range


# -- CLI ---------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        help="bench-small (random, CPU-sized, 7B proportions), 7b-shape (random Qwen2.5-VL-7B, for a "
        "GPU) or a checkpoint directory",
    )
    p.add_argument("--workload", default="grpo", choices=["grpo", "ppo", "text"])
    p.add_argument(
        "--prompts", type=int, default=4, metavar="P", help="grpo: prompts (each with its own image)"
    )
    p.add_argument(
        "--group",
        type=int,
        default=8,
        metavar="G",
        help="grpo: completions per prompt; also the samples per request for serve",
    )
    p.add_argument(
        "--image-tokens", type=int, default=256, metavar="N", help="visual tokens per image (ppo: max)"
    )
    p.add_argument(
        "--completion-tokens",
        type=parse_token_range,
        default=64,
        metavar="C|MIN..MAX",
        help="answer length in tokens: C (grpo: every answer; ppo/text: C/4..2C) or MIN..MAX, drawn "
        "uniformly per answer with --seed (real GRPO answers vary: e.g. 16..512)",
    )
    p.add_argument(
        "--prompt-tokens", type=int, default=32, help="prompt text length (ppo/text: mixed around it)"
    )
    p.add_argument("--samples", type=int, default=None, help="ppo/text: number of samples (default P*G)")
    p.add_argument(
        "--systems",
        default=DEFAULT_SYSTEMS,
        help=f"comma-separated, from {', '.join(SYSTEMS)} (default {DEFAULT_SYSTEMS})",
    )
    p.add_argument("--repeats", type=int, default=1, help="timed runs per system (median reported)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the report here")
    p.add_argument(
        "--plot", default=None, metavar="PATH", help="PNG plot (default: the --json path with .png)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--atol",
        type=float,
        default=None,
        help="largest |score - reference| accepted (default 1e-3 in float32, 0.25 in bf16/fp16)",
    )
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="device peak (dense bf16 TFLOP/s) for MFU; default: the table of known GPUs "
        "(H100 SXM/PCIe/NVL, H200, A100, L40S, L4)",
    )
    p.add_argument(
        "--serve-batch-wait-s",
        type=float,
        default=None,
        help="serve: how long a replica batch waits for more samples (default: the app's, 0.01)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=64,
        metavar="C",
        help="serve-stream: one-sample requests in flight (as OpenRLHF/verl send); default 64",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice); 1 is steadier on a machine shared with others",
    )
    add_model_arguments(p)


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    return BenchOptions(
        model=args.model,
        systems=parse_systems(args.systems, args.no_prefix_sharing),
        workload=args.workload,
        prompts=args.prompts,
        group=args.group,
        image_tokens=args.image_tokens,
        completion_tokens=args.completion_tokens,
        prompt_tokens=args.prompt_tokens,
        samples=args.samples,
        repeats=args.repeats,
        seed=args.seed,
        atol=args.atol,
        peak_tflops=args.peak_tflops,
        serve_batch_wait_s=args.serve_batch_wait_s,
        concurrency=args.concurrency,
        threads=args.threads,
        device=args.device,
        dtype=args.dtype,
        attn_implementation=args.attn_implementation,
        head_file=args.head_file,
    )


def run(args: argparse.Namespace) -> int:
    family = _other_family(args)
    if family is not None:
        return _run_family(args, parse_systems(args.systems, args.no_prefix_sharing), family)
    command = ["rlreward", "bench", *sys.argv[2:]] if sys.argv[1:2] == ["bench"] else list(sys.argv)
    report = run_bench(options_from_args(args), scorer_config_from_args(args), command)
    print(render_table(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(report.model_dump_json(indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    plot_path = args.plot or (str(Path(args.json).with_suffix(".png")) if args.json else None)
    if plot_path:
        try:
            plot(report, plot_path)
            print(f"wrote {plot_path}", file=sys.stderr)
        except ImportError as exc:  # a bare GPU machine may lack matplotlib; the JSON has everything
            print(f"no plot ({exc}); the table and the JSON hold the figures", file=sys.stderr)
    mismatched = [r.system for r in report.systems.values() if r.status == "mismatch"]
    if mismatched:
        print(
            f"rlreward bench: scores disagree for {', '.join(mismatched)} (see max|Δ| ref)", file=sys.stderr
        )
        return 1
    return 0


def _workload_args(args: argparse.Namespace) -> dict[str, Any]:
    """``make_workload``'s keyword arguments from the command line."""
    keys = ("prompts", "group", "image_tokens", "completion_tokens", "prompt_tokens", "samples", "seed")
    return {k: getattr(args, k) for k in keys}


def _other_family(args: argparse.Namespace) -> Any:
    """The family of a ``--model`` directory that is not Qwen2.5-VL + value head (else None)."""
    if not Path(args.model).is_dir():
        return None
    from rlreward.engine.models import detect_family

    cfg = scorer_config_from_args(args).model_copy(update={"model": args.model})
    family = detect_family(cfg)
    return None if family.name == "qwen2.5-vl+value-head" else family


def _run_family(args: argparse.Namespace, names: list[str], family: Any) -> int:
    """``rlreward bench`` on another family: its scorer's systems (:mod:`rlreward.offline.bench.family`)."""
    import torch

    from rlreward.engine.scorer import resolve_device, resolve_dtype
    from rlreward.offline.bench.family import bench_family, render

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    atol = args.atol if args.atol is not None else (1e-3 if dtype == torch.float32 else 0.25)
    config = scorer_config_from_args(args).model_copy(
        update={"model": args.model, "dtype": str(dtype).removeprefix("torch."), "device": str(device)}
    )
    workload = {"kind": args.workload, **_workload_args(args)}
    try:
        results, effective = bench_family(config, family, names, workload, repeats=args.repeats, atol=atol)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(render(results, effective))
    print(f"load avg {'/'.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)
    if args.json:
        out = {"systems": {n: r.model_dump() for n, r in results.items()}, "effective": effective}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 1 if any(r.status == "mismatch" for r in results.values()) else 0
