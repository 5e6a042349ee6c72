"""``rlreward bench``: see :mod:`rlreward.offline.bench` for the systems, workloads and metrics."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from rlreward.commands._options import add_model_arguments, scorer_config_from_args
from rlreward.engine.config import ScorerConfig
from rlreward.errors import UsageError
from rlreward.offline.bench import DEFAULT_SYSTEMS, SYSTEMS
from rlreward.offline.bench.models import PEAK_TFLOPS, load_bench_model, sample_flops
from rlreward.offline.bench.report import (
    BenchReport,
    SystemResult,
    check_agreement,
    plot,
    render_table,
    summarize,
    target_checks,
)
from rlreward.offline.bench.systems import (
    PeakMemory,
    Probe,
    ReferenceRecipe,
    RunStats,
    ScorerSystem,
    ServeStreamSystem,
    ServeSystem,
    SystemUnavailable,
    timed,
)
from rlreward.offline.bench.workloads import make_workload


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
        "--completion-tokens", type=int, default=64, metavar="C", help="completion length (ppo/text: C/4..2C)"
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
        "--peak-tflops", type=float, default=None, help="device peak for MFU (default: known GPUs)"
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


def _systems(arg: str, no_prefix_sharing: bool) -> list[str]:
    names = [s.strip() for s in arg.split(",") if s.strip()]
    bad = [s for s in names if s not in SYSTEMS]
    if bad or not names:
        raise UsageError(f"unknown system(s) {bad or arg!r}; choose from {', '.join(SYSTEMS)}")
    if no_prefix_sharing and "shared" in names:
        print("--no-prefix-sharing: leaving out the 'shared' system", file=sys.stderr)
        names.remove("shared")
    return list(dict.fromkeys(names))


def _peak_flops(device: torch.device, dtype: torch.dtype, override: float | None) -> float | None:
    if override:
        return override * 1e12
    if device.type != "cuda" or dtype not in (torch.bfloat16, torch.float16):
        return None
    name = torch.cuda.get_device_name(device)
    return next((v * 1e12 for k, v in PEAK_TFLOPS.items() if k in name), None)


def _loadavg() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def run(args: argparse.Namespace) -> int:
    from rlreward.engine.batching import padding_efficiency, plan_batches
    from rlreward.engine.head import load_value_head
    from rlreward.engine.preprocess import PreparedSample
    from rlreward.engine.scorer import Scorer, resolve_device, resolve_dtype

    names = _systems(args.systems, args.no_prefix_sharing)
    if args.repeats < 1:
        raise UsageError("--repeats must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    atol = args.atol if args.atol is not None else (1e-3 if dtype == torch.float32 else 0.25)
    loadavg_start = _loadavg()
    family = _other_family(args, device, dtype)
    if family is not None:
        return _run_family(args, names, family, device, dtype, atol)
    print(f"building {args.model} ({dtype}, {device}) ...", file=sys.stderr)
    bench = load_bench_model(
        args.model,
        device,
        dtype,
        seed=args.seed,
        attn_implementation=args.attn_implementation,
        head_file=args.head_file or "value_head.safetensors",
    )
    base_cfg = scorer_config_from_args(args).model_copy(
        update={
            "model": bench.checkpoint_dir or bench.name,
            "dtype": str(dtype).removeprefix("torch."),
            "device": str(device),
        }
    )

    def cfg(sharing: bool) -> ScorerConfig:
        return base_cfg.model_copy(
            update={"batching": base_cfg.batching.model_copy(update={"prefix_sharing": sharing})}
        )

    hidden = bench.model.config.text_config.hidden_size

    def scorer(sharing: bool) -> Scorer:
        head = load_value_head(bench.head_path, hidden, base_cfg.head_key_prefix)
        return Scorer(cfg(sharing), bench.model.model, bench.new_processor(), head)

    unshared = scorer(False)
    workload = make_workload(args.workload, unshared.preprocessor.tokenizer, **_workload_args(args))
    samples = workload.samples
    prepared = [unshared.prepare(s) for s in samples]
    failed = [(i, p) for i, p in enumerate(prepared) if not isinstance(p, PreparedSample)]
    if failed:
        i, res = failed[0]
        raise UsageError(f"sample {i} of the workload cannot be scored: {res.error.message}")
    lengths = [p.num_tokens for p in prepared]
    config = bench.model.config
    merge = config.vision_config.spatial_merge_size**2
    visual = [
        int(p.image_grid_thw.prod(-1).sum()) // merge if p.image_grid_thw is not None else 0 for p in prepared
    ]
    flops = sum(
        sample_flops(config, p.num_tokens, p.image_grid_thw.tolist() if p.image_grid_thw is not None else ())
        for p in prepared
    )
    bc = unshared.config.batching  # as resolved by the scorer (CPU default budget included)
    planned = padding_efficiency(
        lengths, plan_batches(lengths, bc.max_batch_tokens, bc.max_batch_size, bc.min_padding_efficiency)
    )
    peak_flops = _peak_flops(device, dtype, args.peak_tflops)

    systems: dict[str, Any] = {}
    results: dict[str, SystemResult] = {}
    served: ServeSystem | None = None  # one deployment for serve and serve-stream
    for name in names:
        if name == "reference":
            systems[name] = ReferenceRecipe(bench, device, base_cfg.head_key_prefix)
        elif name == "unshared":
            systems[name] = ScorerSystem(unshared)
        elif name == "shared":
            systems[name] = ScorerSystem(scorer(True))
        elif name in ("serve", "serve-stream"):
            try:
                if served is None:
                    served = ServeSystem(
                        bench,
                        cfg(True),
                        workload,
                        device,
                        args.serve_batch_wait_s,
                        max_ongoing=args.concurrency,
                    )
                systems[name] = served if name == "serve" else ServeStreamSystem(served, args.concurrency)
            except SystemUnavailable as exc:
                print(f"serve: skipped: {exc}", file=sys.stderr)
                results[name] = SystemResult(system=name, status="skipped", reason=str(exc))
    probe = Probe(bench.model.model, device)
    warm = samples[: len(workload.groups[0])]
    runs: dict[str, list[RunStats]] = {n: [] for n in systems}
    try:
        for name, system in systems.items():
            system.run(warm[:1] if name == "reference" else warm, lambda n: None)
        for rep in range(args.repeats):  # interleaved, so load changes hit every system alike
            for name, system in systems.items():
                remote = getattr(system, "remote", False)
                stats = timed(system, samples, None if remote else probe, device, name)
                runs[name].append(stats)
                print(f"  run {rep + 1}/{args.repeats} {name:<12} {stats.wall_s:7.2f} s", file=sys.stderr)
    finally:
        probe.remove()
        if served is not None:
            served.close()
    mem_kind = PeakMemory(device).kind
    for n, r in runs.items():
        results[n] = summarize(n, r, len(samples), sum(lengths), flops, peak_flops, mem_kind)
    for name in ("serve", "serve-stream"):
        if name in systems and name in results:
            results[name].replica_batches = systems[name].last_batches
    systems.clear()
    results = {n: results[n] for n in names}
    ref = results.get("reference")
    for r in results.values():
        if ref and ref.samples_per_s and r.samples_per_s:
            r.speedup_vs_reference = r.samples_per_s / ref.samples_per_s
    check_agreement(results, atol)

    report = BenchReport(
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        command=["rlreward", "bench", *sys.argv[2:]] if sys.argv[1:2] == ["bench"] else list(sys.argv),
        model={
            "name": bench.name,
            "parameters": bench.num_parameters,
            "dtype": str(dtype).removeprefix("torch."),
            "device": str(device)
            + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
            "text": {
                k: getattr(config.text_config, k)
                for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size")
            },
            "vision": {k: getattr(config.vision_config, k) for k in ("hidden_size", "depth")},
            "attn_implementation": config._attn_implementation,
        },
        workload={
            "name": workload.name,
            "params": workload.params,
            "samples": len(samples),
            "tokens": sum(lengths),
            "tokens_per_sample": sum(lengths) / len(samples),
            "visual_tokens_per_sample": sum(visual) / len(samples),
            "min_tokens": min(lengths),
            "max_tokens": max(lengths),
            "model_tflops": flops / 1e12,
            "planned_padding_efficiency": planned,
            "planned_padding_efficiency_by_budget": {
                budget: padding_efficiency(lengths, plan_batches(lengths, budget, bc.max_batch_size))
                for budget in (2048, 4096, 8192, 16384, 32768)
            },
            "max_batch_tokens": bc.max_batch_tokens,
            "max_batch_size": bc.max_batch_size,
            "min_shared_prefix_tokens": bc.min_shared_prefix_tokens,
        },
        host={
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "loadavg_start": loadavg_start,
            "loadavg_end": _loadavg(),
            "repeats": args.repeats,
            "peak_tflops": peak_flops / 1e12 if peak_flops else None,
        },
        systems=results,
        targets=target_checks(workload.name, workload.params, results, device, planned),
        atol=atol,
        effective=unshared.effective_settings(),
    )
    print(render_table(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(report.model_dump_json(indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    plot_path = args.plot or (str(Path(args.json).with_suffix(".png")) if args.json else None)
    if plot_path:
        plot(report, plot_path)
        print(f"wrote {plot_path}", file=sys.stderr)
    if bench.workdir:
        bench.workdir.cleanup()
    mismatched = [r.system for r in results.values() if r.status == "mismatch"]
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


def _other_family(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> Any:
    """The family of a ``--model`` directory that is not Qwen2.5-VL + value head (else None)."""
    if not Path(args.model).is_dir():
        return None
    from rlreward.engine.models import detect_family

    cfg = scorer_config_from_args(args).model_copy(update={"model": args.model})
    family = detect_family(cfg)
    return None if family.name == "qwen2.5-vl+value-head" else family


def _run_family(
    args: argparse.Namespace,
    names: list[str],
    family: Any,
    device: torch.device,
    dtype: torch.dtype,
    atol: float,
) -> int:
    """``rlreward bench`` on another family: its scorer's systems (:mod:`rlreward.offline.bench.family`)."""
    from rlreward.offline.bench.family import bench_family, render

    config = scorer_config_from_args(args).model_copy(
        update={"model": args.model, "dtype": str(dtype).removeprefix("torch."), "device": str(device)}
    )
    workload = {"kind": args.workload, **_workload_args(args)}
    try:
        results, effective = bench_family(config, family, names, workload, repeats=args.repeats, atol=atol)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(render(results, effective))
    print(f"load avg {_loadavg()}", file=sys.stderr)
    if args.json:
        out = {"systems": {n: r.model_dump() for n, r in results.items()}, "effective": effective}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 1 if any(r.status == "mismatch" for r in results.values()) else 0
