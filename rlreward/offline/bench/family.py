"""``rlreward bench --model DIR`` for a reward model of any family other than Qwen2.5-VL + value head.

The full bench (reference recipe, FLOPs/MFU, vision-tower probe, serve systems) measures the
Qwen2.5-VL value-head path. For the other families (:mod:`rlreward.engine.models`) this measures
the scorer itself: the checkpoint loaded once through its family, the ``unshared`` and ``shared``
systems (length-sorted batches; prefix sharing where the family allows KV reuse, else the same
batches and said so), the same workloads, timings and agreement check (``max|Δ|`` between the two,
``atol``). Systems that need the Qwen2.5-VL model are reported as skipped with the reason.
"""

from __future__ import annotations

from typing import Any

from rlreward.engine.config import ScorerConfig
from rlreward.engine.models import RewardFamily
from rlreward.offline.bench.report import SystemResult, check_agreement, summarize
from rlreward.offline.bench.systems import PeakMemory, ScorerSystem, timed
from rlreward.offline.bench.workloads import make_workload

SCORER_SYSTEMS = ("unshared", "shared")


def bench_family(
    config: ScorerConfig,
    family: RewardFamily,
    systems: list[str],
    workload: dict[str, Any],
    *,
    repeats: int,
    atol: float,
) -> tuple[dict[str, SystemResult], dict[str, Any]]:
    """Time ``systems`` on ``workload`` (``make_workload``'s arguments, ``kind`` included) with the
    checkpoint of ``config.model``; returns the results and the scorer's effective settings."""
    import torch

    from rlreward.engine.preprocess import PreparedSample
    from rlreward.engine.scorer import Scorer, resolve_device, resolve_dtype

    device = resolve_device(config.device)
    backbone, processor, head = family.load(config, device, resolve_dtype(config.dtype, device))

    def scorer(sharing: bool) -> Scorer:
        batching = config.batching.model_copy(update={"prefix_sharing": sharing})
        return Scorer(
            config.model_copy(update={"batching": batching}), backbone, processor, head, family=family
        )

    unshared = scorer(False)
    wl = make_workload(workload.pop("kind"), unshared.preprocessor.tokenizer, **workload)
    prepared = [unshared.prepare(s) for s in wl.samples]
    bad = next((p for p in prepared if not isinstance(p, PreparedSample)), None)
    if bad is not None:
        hint = (
            ""
            if family.vision
            else " (a text reward model: use --workload text, or grpo with --image-tokens 0)"
        )
        raise ValueError(f"the workload cannot be scored by {family.name}: {bad.error.message}{hint}")
    tokens = sum(p.num_tokens for p in prepared)
    results: dict[str, SystemResult] = {}
    run = {
        n: ScorerSystem(unshared if n == "unshared" else scorer(True)) for n in systems if n in SCORER_SYSTEMS
    }
    for name in systems:
        if name not in run:
            why = f"needs the Qwen2.5-VL value-head model; {family.name} is benched through its scorer only"
            results[name] = SystemResult(system=name, status="skipped", reason=why)
    runs: dict[str, list] = {n: [] for n in run}
    warm = wl.samples[: len(wl.groups[0])]
    for system in run.values():
        system.run(warm, lambda n: None)
    for _ in range(repeats):
        for name, system in run.items():
            runs[name].append(timed(system, wl.samples, None, device, name))
    kind = PeakMemory(device).kind
    for name, r in runs.items():
        results[name] = summarize(name, r, len(wl.samples), tokens, (tokens, 0.0), None, kind)
    check_agreement(results, atol)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    eff = unshared.effective_settings()
    eff["workload"] = {"name": wl.name, "params": wl.params, "samples": len(wl.samples), "tokens": tokens}
    return {n: results[n] for n in systems if n in results}, eff


def render(results: dict[str, SystemResult], effective: dict[str, Any]) -> str:
    """A plain table: one line per system."""
    w, m = effective["workload"], effective["model"]
    lines = [
        f"rlreward bench: {m['family']} ({m['recipe']})",
        f"workload {w['name']} {w['params']} -> {w['samples']} samples, {w['tokens']:,} tokens; "
        f"prefix sharing {'on' if m['kv_prefix_reuse'] else 'off: ' + m.get('kv_prefix_reuse_off_because', '')}",
        f"{'system':<10} {'status':<9} {'samples/s':>10} {'tokens/s':>10} {'wall s':>8} {'max|Δ|':>9}",
    ]
    for r in results.values():
        if r.status == "skipped":
            lines.append(f"{r.system:<10} skipped   {r.reason}")
            continue
        diff = "" if r.max_abs_diff_vs_reference is None else f"{r.max_abs_diff_vs_reference:.2e}"
        lines.append(
            f"{r.system:<10} {r.status:<9} {r.samples_per_s:>10.1f} {r.tokens_per_s:>10.0f} {r.wall_s:>8.2f} {diff:>9}"
        )
    return "\n".join(lines)
