"""Run one ``rlreward bench``: build the model and the workload, measure every asked-for system on
the same samples (interleaved over the repeats), and return the :class:`BenchReport`.

:func:`run_bench` takes :class:`BenchOptions` (what the command line gave) and the scorer config
the model options describe; it prints progress to stderr and nothing else. Useful work (tokens,
FLOPs) comes from :mod:`rlreward.offline.bench.accounting`, executed work from the probe's hooks,
the device's peak from ``--peak-tflops`` or :data:`~rlreward.offline.bench.models.PEAK_TFLOPS`.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch

from rlreward.engine.config import ScorerConfig
from rlreward.errors import UsageError
from rlreward.offline.bench import SYSTEMS
from rlreward.offline.bench.accounting import useful_work
from rlreward.offline.bench.models import BenchModel, load_bench_model, peak_tflops_for, sample_flops
from rlreward.offline.bench.report import BenchReport, SystemResult, check_agreement, summarize, target_checks
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
from rlreward.offline.bench.workloads import Workload, make_workload

#: Systems that score with prefix sharing (their useful work counts a group's prefix once).
SHARED_SYSTEMS = ("shared", "serve", "serve-stream")


@dataclass
class BenchOptions:
    """What to run (the command's arguments; see ``rlreward bench --help``)."""

    model: str
    systems: list[str]
    workload: str = "grpo"
    prompts: int = 4
    group: int = 8
    image_tokens: int = 256
    completion_tokens: int | tuple[int, int] = 64
    prompt_tokens: int = 32
    samples: int | None = None
    repeats: int = 1
    seed: int = 0
    atol: float | None = None
    peak_tflops: float | None = None
    serve_batch_wait_s: float | None = None
    concurrency: int = 64
    threads: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    attn_implementation: str | None = None
    head_file: str | None = None


def parse_systems(arg: str, no_prefix_sharing: bool) -> list[str]:
    """``--systems`` as a list (the ``shared`` system dropped under ``--no-prefix-sharing``)."""
    names = [s.strip() for s in arg.split(",") if s.strip()]
    bad = [s for s in names if s not in SYSTEMS]
    if bad or not names:
        raise UsageError(f"unknown system(s) {bad or arg!r}; choose from {', '.join(SYSTEMS)}")
    if no_prefix_sharing and "shared" in names:
        print("--no-prefix-sharing: leaving out the 'shared' system", file=sys.stderr)
        names.remove("shared")
    return list(dict.fromkeys(names))


def peak_flops(device: torch.device, dtype: torch.dtype, override: float | None) -> tuple[float | None, str]:
    """Peak FLOP/s for MFU and where it came from (None: unknown, MFU is not reported)."""
    if override:
        return override * 1e12, "--peak-tflops"
    if device.type != "cuda":
        return None, "no peak on CPU (pass --peak-tflops)"
    name = torch.cuda.get_device_name(device)
    if dtype not in (torch.bfloat16, torch.float16):
        return None, f"{name}: the table is for bf16/fp16 (pass --peak-tflops)"
    tflops = peak_tflops_for(name)
    if tflops is None:
        return None, f"{name} is not in the peak table (pass --peak-tflops)"
    return tflops * 1e12, f"table: {name} -> {tflops:g} TFLOP/s dense bf16"


def _loadavg() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


@dataclass
class _Setup:
    bench: BenchModel
    device: torch.device
    dtype: torch.dtype
    base_cfg: ScorerConfig
    unshared: Any
    workload: Workload
    prepared: list[Any]


def _scorer_config(base: ScorerConfig, sharing: bool) -> ScorerConfig:
    return base.model_copy(update={"batching": base.batching.model_copy(update={"prefix_sharing": sharing})})


def _new_scorer(bench: BenchModel, cfg: ScorerConfig, sharing: bool) -> Any:
    from rlreward.engine.head import load_value_head
    from rlreward.engine.scorer import Scorer

    head = load_value_head(bench.head_path, bench.model.config.text_config.hidden_size, cfg.head_key_prefix)
    return Scorer(_scorer_config(cfg, sharing), bench.model.model, bench.new_processor(), head)


def _setup(opts: BenchOptions, scorer_config: ScorerConfig) -> _Setup:
    from rlreward.engine.preprocess import PreparedSample
    from rlreward.engine.scorer import resolve_device, resolve_dtype

    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)
    print(f"building {opts.model} ({dtype}, {device}) ...", file=sys.stderr)
    bench = load_bench_model(
        opts.model,
        device,
        dtype,
        seed=opts.seed,
        attn_implementation=opts.attn_implementation,
        head_file=opts.head_file or "value_head.safetensors",
    )
    base_cfg = scorer_config.model_copy(
        update={
            "model": bench.checkpoint_dir or bench.name,
            "dtype": str(dtype).removeprefix("torch."),
            "device": str(device),
        }
    )
    unshared = _new_scorer(bench, base_cfg, False)
    workload = make_workload(
        opts.workload,
        unshared.preprocessor.tokenizer,
        prompts=opts.prompts,
        group=opts.group,
        image_tokens=opts.image_tokens,
        completion_tokens=opts.completion_tokens,
        prompt_tokens=opts.prompt_tokens,
        samples=opts.samples,
        seed=opts.seed,
    )
    prepared = [unshared.prepare(s) for s in workload.samples]
    failed = [(i, p) for i, p in enumerate(prepared) if not isinstance(p, PreparedSample)]
    if failed:
        i, res = failed[0]
        raise UsageError(f"sample {i} of the workload cannot be scored: {res.error.message}")
    return _Setup(bench, device, dtype, base_cfg, unshared, workload, prepared)


def _systems(setup: _Setup, opts: BenchOptions, results: dict[str, SystemResult]) -> dict[str, Any]:
    """The asked-for systems, built (serve ones that cannot run are recorded as skipped)."""
    systems: dict[str, Any] = {}
    served: ServeSystem | None = None  # one deployment for serve and serve-stream
    for name in opts.systems:
        if name == "reference":
            systems[name] = ReferenceRecipe(setup.bench, setup.device, setup.base_cfg.head_key_prefix)
        elif name == "unshared":
            systems[name] = ScorerSystem(setup.unshared)
        elif name == "shared":
            systems[name] = ScorerSystem(_new_scorer(setup.bench, setup.base_cfg, True))
        elif name in ("serve", "serve-stream"):
            try:
                if served is None:
                    served = ServeSystem(
                        setup.bench,
                        _scorer_config(setup.base_cfg, True),
                        setup.workload,
                        setup.device,
                        opts.serve_batch_wait_s,
                        max_ongoing=opts.concurrency,
                    )
                systems[name] = served if name == "serve" else ServeStreamSystem(served, opts.concurrency)
            except SystemUnavailable as exc:
                print(f"serve: skipped: {exc}", file=sys.stderr)
                results[name] = SystemResult(system=name, status="skipped", reason=str(exc))
    return systems


def _measure(setup: _Setup, systems: dict[str, Any], repeats: int) -> dict[str, list[RunStats]]:
    """Warm every system on the first group, then time them interleaved ``repeats`` times."""
    samples = setup.workload.samples
    probe = Probe(setup.bench.model.model, setup.device, setup.bench.model.config)
    warm = samples[: len(setup.workload.groups[0])]
    runs: dict[str, list[RunStats]] = {n: [] for n in systems}
    try:
        for name, system in systems.items():
            system.run(warm[:1] if name == "reference" else warm, lambda n: None)
        for rep in range(repeats):  # interleaved, so load changes hit every system alike
            for name, system in systems.items():
                remote = getattr(system, "remote", False)
                stats = timed(system, samples, None if remote else probe, setup.device, name)
                runs[name].append(stats)
                print(f"  run {rep + 1}/{repeats} {name:<12} {stats.wall_s:7.2f} s", file=sys.stderr)
    finally:
        probe.remove()
        served = next((s for s in systems.values() if isinstance(s, ServeSystem)), None)
        if served is not None:
            served.close()
    return runs


def _workload_facts(setup: _Setup) -> dict[str, Any]:
    from rlreward.engine.batching import padding_efficiency, plan_batches

    prepared, config, workload = setup.prepared, setup.bench.model.config, setup.workload
    lengths = [p.num_tokens for p in prepared]
    merge = config.vision_config.spatial_merge_size**2
    visual = [
        int(p.image_grid_thw.prod(-1).sum()) // merge if p.image_grid_thw is not None else 0 for p in prepared
    ]
    flops = sum(
        sample_flops(config, p.num_tokens, p.image_grid_thw.tolist() if p.image_grid_thw is not None else ())
        for p in prepared
    )
    bc = setup.unshared.config.batching  # as resolved by the scorer (CPU default budget included)
    return {
        "name": workload.name,
        "params": workload.params,
        "samples": len(prepared),
        "tokens": sum(lengths),
        "tokens_per_sample": sum(lengths) / len(prepared),
        "visual_tokens_per_sample": sum(visual) / len(prepared),
        "min_tokens": min(lengths),
        "max_tokens": max(lengths),
        "model_tflops": flops / 1e12,
        "planned_padding_efficiency": padding_efficiency(
            lengths, plan_batches(lengths, bc.max_batch_tokens, bc.max_batch_size, bc.min_padding_efficiency)
        ),
        "planned_padding_efficiency_by_budget": {
            budget: padding_efficiency(lengths, plan_batches(lengths, budget, bc.max_batch_size))
            for budget in (2048, 4096, 8192, 16384, 32768)
        },
        "max_batch_tokens": bc.max_batch_tokens,
        "max_batch_size": bc.max_batch_size,
        "min_shared_prefix_tokens": bc.min_shared_prefix_tokens,
    }


def _model_facts(setup: _Setup) -> dict[str, Any]:
    bench, device, config = setup.bench, setup.device, setup.bench.model.config
    return {
        "name": bench.name,
        "parameters": bench.num_parameters,
        "dtype": str(setup.dtype).removeprefix("torch."),
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "text": {
            k: getattr(config.text_config, k)
            for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size")
        },
        "vision": {k: getattr(config.vision_config, k) for k in ("hidden_size", "depth")},
        "attn_implementation": config._attn_implementation,
    }


def run_bench(opts: BenchOptions, scorer_config: ScorerConfig, command: list[str]) -> BenchReport:
    """Measure ``opts.systems`` on one workload; the report says which systems mismatched."""
    if opts.repeats < 1:
        raise UsageError("--repeats must be at least 1")
    if opts.threads:
        torch.set_num_threads(opts.threads)
    loadavg_start = _loadavg()
    setup = _setup(opts, scorer_config)
    atol = opts.atol if opts.atol is not None else (1e-3 if setup.dtype == torch.float32 else 0.25)
    peak, peak_source = peak_flops(setup.device, setup.dtype, opts.peak_tflops)
    results: dict[str, SystemResult] = {}
    systems = _systems(setup, opts, results)
    runs = _measure(setup, systems, opts.repeats)
    facts = _workload_facts(setup)
    bc = setup.unshared.config.batching
    config, prepared, groups = setup.bench.model.config, setup.prepared, setup.workload.groups
    useful = {
        shared: useful_work(
            config, prepared, groups, shared=shared, min_shared_prefix_tokens=bc.min_shared_prefix_tokens
        )
        for shared in (False, True)
    }
    mem_kind = PeakMemory(setup.device).kind
    for n, r in runs.items():
        results[n] = summarize(
            n, r, len(prepared), facts["tokens"], useful[n in SHARED_SYSTEMS], peak, mem_kind
        )
        if n in ("serve", "serve-stream"):
            results[n].replica_batches = systems[n].last_batches
    systems.clear()
    results = {n: results[n] for n in opts.systems}
    ref = results.get("reference")
    for r in results.values():
        if ref and ref.samples_per_s and r.samples_per_s:
            r.speedup_vs_reference = r.samples_per_s / ref.samples_per_s
    check_agreement(results, atol)
    report = BenchReport(
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        command=command,
        model=_model_facts(setup),
        workload=facts,
        host={
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "loadavg_start": loadavg_start,
            "loadavg_end": _loadavg(),
            "repeats": opts.repeats,
            "peak_tflops": peak / 1e12 if peak else None,
            "peak_source": peak_source,
        },
        systems=results,
        targets=target_checks(
            setup.workload.name,
            setup.workload.params,
            results,
            setup.device,
            facts["planned_padding_efficiency"],
        ),
        atol=atol,
        effective=setup.unshared.effective_settings(),
    )
    if setup.bench.workdir:
        setup.bench.workdir.cleanup()
    return report
