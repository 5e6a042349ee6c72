"""Print the Markdown tables of BENCHMARKS.md from ``rlreward bench --json`` reports.

.venv/bin/python benchmarks/tables.py benchmarks/results/cpu-*.json
"""

from __future__ import annotations

import sys
from pathlib import Path

from rlreward.offline.bench.report import BenchReport


def _f(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def table(report: BenchReport, source: str) -> str:
    w, m, h = report.workload, report.model, report.host
    out = [
        f"**{w['name']}** `{w['params']}`: {w['samples']} samples, {w['tokens']:,} tokens "
        f"({w['tokens_per_sample']:.0f}/sample, {w['visual_tokens_per_sample']:.0f} visual); "
        f"{m['name']} {m['dtype']} on {m['device']}, {h['torch_threads']} thread(s), median of {h['repeats']}, "
        f"load avg {h['loadavg_start']} → {h['loadavg_end']} ([{Path(source).name}]({source}))",
        "",
        "| system | samples/s | tokens/s | vs reference | padding eff. | computed tokens | wall s | CPU s "
        "| prep / vision / LM / other s | peak RSS MiB | max abs diff vs ref |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in report.systems.values():
        if r.status == "skipped":
            out.append(f"| {r.system} | skipped: {r.reason} |||||||||")
            continue
        split = " / ".join(_f(x, ".1f") for x in (r.preprocess_s, r.vision_s, r.language_s, r.other_s))
        out.append(
            f"| {r.system} | {_f(r.samples_per_s, '.2f')} | {_f(r.tokens_per_s, ',.0f')} "
            f"| {_f(r.speedup_vs_reference, '.2f')}{'x' if r.speedup_vs_reference else ''} | {_f(r.padding_efficiency, '.3f')} "
            f"| {_f(r.computed_tokens, ',')} | {_f(r.wall_s, '.2f')} | {_f(r.cpu_s, '.2f')} | {split} "
            f"| {_f(r.peak_memory_mib, ',.0f')} | {_f(r.max_abs_diff_vs_reference, '.1e')} |"
        )
    return "\n".join(out)


def main(paths: list[str]) -> None:
    for p in paths:
        print(table(BenchReport.model_validate_json(Path(p).read_text()), p))
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
