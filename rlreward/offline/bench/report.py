"""Bench report: per-system results, targets, table and plot. See :mod:`rlreward.offline.bench`."""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field

from rlreward.offline.bench.systems import RunStats


# -- report ------------------------------------------------------------------------------------------
class SystemResult(BaseModel):
    """One system's measurements (medians over repeats)."""

    system: str
    status: Literal["ok", "skipped", "mismatch"] = "ok"
    reason: str | None = Field(default=None, description="Why the system was skipped or mismatched.")
    samples_per_s: float | None = None
    tokens_per_s: float | None = None
    speedup_vs_reference: float | None = None
    wall_s: float | None = Field(default=None, description="Median wall time of a run (s).")
    wall_s_runs: list[float] = Field(default_factory=list)
    cpu_s: float | None = Field(
        default=None, description="Median process CPU time of a run (s), all threads."
    )
    preprocess_s: float | None = None
    vision_s: float | None = None
    language_s: float | None = None
    other_s: float | None = None
    computed_tokens: int | None = Field(
        default=None, description="Tokens the language model ran (rows x padded length, every call)."
    )
    useful_tokens: int | None = Field(
        default=None,
        description="Tokens scoring needs at least: shared systems count each group's prefix once plus "
        "every real suffix token; the others every sample's tokens.",
    )
    padding_efficiency: float | None = Field(
        default=None, description="Real / computed language-model tokens."
    )
    peak_memory_mib: float | None = None
    peak_memory_over_start_mib: float | None = None
    memory_measure: str | None = None
    useful_tflop: float | None = Field(
        default=None, description="FLOPs of the useful work (accounting.useful_work), in TFLOP."
    )
    executed_tflop: float | None = Field(
        default=None, description="FLOPs the model ran (counted per call by the probe; in-process only)."
    )
    model_tflops_per_s: float | None = Field(
        default=None, description="Useful FLOPs / wall time, in TFLOP/s."
    )
    mfu: float | None = Field(
        default=None, description="MFU over wall time: useful FLOPs / (wall x peak), preprocessing included."
    )
    device_s: float | None = Field(
        default=None, description="Median device time of a run: vision tower + language model (synchronised)."
    )
    mfu_device: float | None = Field(
        default=None, description="MFU over device time: executed FLOPs / ((vision_s + language_s) x peak)."
    )
    max_abs_diff_vs_reference: float | None = None
    errors: int = 0
    replica_batches: list[int] | None = Field(
        default=None, description="serve: samples in each replica forward batch (last run)."
    )
    scores: list[float | None] = Field(default_factory=list)


class TargetCheck(BaseModel):
    name: str
    value: float | None
    target: float
    met: bool | None = Field(description="None where it could not be measured or does not apply.")
    note: str = ""


class BenchReport(BaseModel):
    """What ``--json`` writes."""

    created: str
    command: list[str]
    model: dict[str, Any]
    workload: dict[str, Any]
    host: dict[str, Any]
    systems: dict[str, SystemResult]
    targets: list[TargetCheck]
    atol: float
    effective: dict[str, Any] = Field(
        default_factory=dict,
        description="What ran: the scorer's effective_settings() (both resizes' bounds, video bounds, "
        "deviations, the resolved batch budget and where it came from).",
    )


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def summarize(
    name: str,
    runs: list[RunStats],
    n_samples: int,
    n_tokens: int,
    useful: tuple[int, float],
    peak_flops: float | None,
    memory_measure: str | None,
) -> SystemResult:
    """One system's result from its runs; ``useful``: (tokens, FLOPs) of its useful work."""
    wall = _median([r.wall_s for r in runs])
    useful_tokens, flops = useful
    last = runs[-1]
    res = SystemResult(
        system=name,
        samples_per_s=n_samples / wall,
        tokens_per_s=n_tokens / wall,
        wall_s=wall,
        wall_s_runs=[r.wall_s for r in runs],
        preprocess_s=_median([r.preprocess_s for r in runs]),
        errors=sum(s is None for s in last.scores),
        scores=last.scores,
        useful_tokens=useful_tokens,
        useful_tflop=flops / 1e12,
        model_tflops_per_s=flops / wall / 1e12,
        mfu=flops / wall / peak_flops if peak_flops else None,
    )
    if last.executed_flops is not None:
        res.executed_tflop = last.executed_flops / 1e12
        device = _median([(r.vision_s or 0.0) + (r.language_s or 0.0) for r in runs])
        res.device_s = device
        if peak_flops and device > 0:
            res.mfu_device = last.executed_flops / device / peak_flops
    if last.cpu_s is not None:
        res.cpu_s = _median([r.cpu_s for r in runs])
    if last.language_s is not None:
        res.vision_s = _median([r.vision_s for r in runs])
        res.language_s = _median([r.language_s for r in runs])
        res.other_s = max(0.0, wall - res.preprocess_s - res.vision_s - res.language_s)
        res.computed_tokens = last.computed_tokens
        res.padding_efficiency = last.real_tokens / last.computed_tokens if last.computed_tokens else None
    if last.peak_memory_mib is not None:
        res.peak_memory_mib = max(r.peak_memory_mib for r in runs)
        res.peak_memory_over_start_mib = max(r.peak_memory_mib - r.start_memory_mib for r in runs)
        res.memory_measure = memory_measure
    return res


def check_agreement(systems: dict[str, SystemResult], atol: float) -> None:
    """Fill ``max_abs_diff_vs_reference`` (vs ``reference``, else vs the first system measured) and
    flag the systems whose scores differ by more than ``atol`` (or that failed samples)."""
    measured = [n for n, r in systems.items() if r.status == "ok"]
    if not measured:
        return
    base_name = "reference" if "reference" in measured else measured[0]
    base = systems[base_name]
    for r in systems.values():
        if r.status != "ok":
            continue
        pairs = [(a, b) for a, b in zip(r.scores, base.scores) if a is not None and b is not None]
        r.max_abs_diff_vs_reference = max((abs(a - b) for a, b in pairs), default=None)
        if r.errors or (r.max_abs_diff_vs_reference or 0.0) > atol:
            r.status = "mismatch"
            r.reason = (
                f"{r.errors} samples failed"
                if r.errors
                else f"max |score - {base_name}| = {r.max_abs_diff_vs_reference:.3g} > atol {atol:g}"
            )


def _ratio(systems: dict[str, SystemResult], a: str, b: str) -> float | None:
    ra, rb = systems.get(a), systems.get(b)
    if not ra or not rb or ra.samples_per_s is None or rb.samples_per_s is None:
        return None
    return ra.samples_per_s / rb.samples_per_s


def target_checks(
    workload: str,
    params: dict[str, Any],
    systems: dict[str, SystemResult],
    device: torch.device,
    planned_efficiency: float,
) -> list[TargetCheck]:
    """The issue's targets that apply to this workload, with the measured value."""

    def check(
        name: str, value: float | None, target: float, applies: bool = True, note: str = ""
    ) -> TargetCheck:
        met = None if value is None or not applies else value >= target
        return TargetCheck(name=name, value=value, target=target, met=met, note=note)

    out: list[TargetCheck] = []
    if workload == "grpo":
        c = params["completion_tokens"]  # C, or "MIN..MAX" (varied answers: the issue's own target case)
        applies = params["group"] >= 8 and (isinstance(c, str) or params["image_tokens"] >= 4 * c)
        note = (
            "" if applies else "target set for G>=8 and image >= 4x completion (or varied); informative here"
        )
        out.append(
            check("shared/unshared samples/s", _ratio(systems, "shared", "unshared"), 3.0, applies, note)
        )
        out.append(
            check("shared/reference samples/s", _ratio(systems, "shared", "reference"), 4.0, applies, note)
        )
        shared = systems.get("shared")
        if shared and shared.computed_tokens and shared.useful_tokens:
            out.append(
                check(
                    "shared useful/computed tokens",
                    shared.useful_tokens / shared.computed_tokens,
                    round(1 / 1.15, 3),
                    note="i.e. computed_tokens <= 1.15 x useful_tokens (padding, prefix re-runs)",
                )
            )
    if workload == "ppo":
        on_cpu = device.type == "cpu"
        out.append(
            check(
                "unshared/reference samples/s",
                _ratio(systems, "unshared", "reference"),
                1.5,
                on_cpu,
                "" if on_cpu else "target set for CPU",
            )
        )
        out.append(check("padding efficiency (planned, unshared)", planned_efficiency, 0.9))
    if "serve" in systems:
        out.append(
            check(
                "serve/shared samples/s",
                _ratio(systems, "serve", "shared"),
                0.9,
                note="all groups in flight at once",
            )
        )
    if "serve-stream" in systems:
        out.append(
            check(
                "serve-stream/shared samples/s",
                _ratio(systems, "serve-stream", "shared"),
                0.8,
                note="one sample per request, --concurrency in flight",
            )
        )
    return out


def _fmt(v: float | None, spec: str) -> str:
    """``format(v, spec)``, or a dash as wide as the spec's width when there is no value."""
    width = re.match(r"\d*", spec).group()
    return "-".rjust(int(width) if width else 1) if v is None else format(v, spec)


def _effective_lines(eff: dict[str, Any]) -> list[str]:
    """One line of the effective batch budget and preprocessing (empty for old records)."""
    if not eff:
        return []
    b, pre = eff.get("batching") or {}, eff.get("preprocessing") or {}
    second = (pre.get("image") or {}).get("second_resize") or {}
    dev = pre.get("deviations") or {}
    return [
        f"effective: max_batch_tokens={b.get('max_batch_tokens')} ({b.get('max_batch_tokens_source')}), "
        f"max_batch_size={b.get('max_batch_size')}; image resize 2 ({second.get('by')}) "
        f"{second.get('min_pixels')}-{second.get('max_pixels')} px; deviations: "
        + (", ".join(f"{k}={v}" for k, v in dev.items()) if dev else "none")
    ]


def render_table(report: BenchReport) -> str:
    w, m, h = report.workload, report.model, report.host
    lines = [
        f"rlreward bench: {w['name']} {w['params']} -> {w['samples']} samples, {w['tokens']:,} tokens "
        f"({w['tokens_per_sample']:.0f}/sample, {w['visual_tokens_per_sample']:.0f} visual)",
        f"model {m['name']} ({m['parameters'] / 1e6:,.1f} M params, {m['dtype']}, {m['device']}); "
        f"{h['torch_threads']} torch threads, load avg {h['loadavg_start']} -> {h['loadavg_end']}",
        *_effective_lines(report.effective),
        "",
        f"{'system':<12} {'samples/s':>9} {'tokens/s':>9} {'vs ref':>7} {'pad eff':>7} {'computed':>9} {'useful':>9} "
        f"{'wall s':>7} {'cpu s':>7} {'prep/vis/lm/other s':>21} {'peak MiB':>9} {'max|Δ| ref':>10} {'MFU':>6} {'MFU dev':>7}  status",
    ]
    for r in report.systems.values():
        if r.status == "skipped":
            lines.append(f"{r.system:<12} skipped: {r.reason}")
            continue
        split = "/".join(_fmt(x, ".1f") for x in (r.preprocess_s, r.vision_s, r.language_s, r.other_s))
        lines.append(
            f"{r.system:<12} {_fmt(r.samples_per_s, '9.2f')} {_fmt(r.tokens_per_s, '9.0f')} "
            f"{_fmt(r.speedup_vs_reference, '6.2f') + 'x' if r.speedup_vs_reference else '      -'} {_fmt(r.padding_efficiency, '7.3f')} "
            f"{_fmt(r.computed_tokens, '9,d')} {_fmt(r.useful_tokens, '9,d')} {_fmt(r.wall_s, '7.2f')} {_fmt(r.cpu_s, '7.2f')} {split:>21} "
            f"{_fmt(r.peak_memory_mib, '9.0f')} "
            f"{_fmt(r.max_abs_diff_vs_reference, '10.2e')} {_fmt(r.mfu, '6.1%')} {_fmt(r.mfu_device, '7.1%')}  "
            f"{r.status}{': ' + r.reason if r.reason else ''}"
        )
    for r in report.systems.values():
        if r.replica_batches is not None:
            lines.append(f"{r.system}: samples per replica forward batch (last run): {r.replica_batches}")
    lines.append(
        f"planned padding efficiency (plan_batches, unshared): {w['planned_padding_efficiency']:.3f}"
    )
    for t in report.targets:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[t.met]
        lines.append(
            f"target {t.name} >= {t.target:g}: {_fmt(t.value, '.2f')} {verdict}"
            f"{' (' + t.note + ')' if t.note else ''}"
        )
    return "\n".join(lines)


def plot(report: BenchReport, path: str | Path) -> None:
    """Bar chart of samples/s per system (with the speed-up over the reference) and the time split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.systems.values() if r.samples_per_s is not None]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = [r.system for r in rows]
    bars = ax1.bar(names, [r.samples_per_s for r in rows], color="#4C72B0")
    for bar, r in zip(bars, rows):
        label = f"{r.samples_per_s:.2f}" + (
            f"\n{r.speedup_vs_reference:.2f}x" if r.speedup_vs_reference else ""
        )
        ax1.annotate(
            label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8
        )
    ax1.set_ylabel("samples / s")
    ax1.set_title("throughput (x = vs reference)")
    ax1.margins(y=0.25)
    bottom = [0.0] * len(rows)
    for part, colour in (
        ("preprocess_s", "#DD8452"),
        ("vision_s", "#55A868"),
        ("language_s", "#4C72B0"),
        ("other_s", "#8172B3"),
        ("remote_s", "#999999"),
    ):
        # A remote system (serve) is one grey bar: its split happens in the replica's process.
        vals = [
            (r.wall_s if r.language_s is None else 0.0) if part == "remote_s" else getattr(r, part) or 0.0
            for r in rows
        ]
        ax2.bar(names, vals, bottom=bottom, color=colour, label=part.removesuffix("_s"))
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax2.margins(y=0.08)
    ax2.set_ylabel("seconds per run")
    ax2.set_title("where the time goes")
    ax2.legend(fontsize=8)
    w, m = report.workload, report.model
    fig.suptitle(f"{w['name']} {w['params']}  |  {m['name']} {m['dtype']} on {m['device']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
