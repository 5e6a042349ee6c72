"""An :class:`~.report.EvalReport` as files: the JSON, a Markdown table (also printed) and a PNG chart.

The table: the headline first, RewardBench's sections, then one row per category (subset) with
items, correct, ties, errors, accuracy and its 95% interval (acc+ and the paper's column where
there are some), the variants, notes, preprocessing settings and an error summary. The chart: bars
per category (sections for RewardBench) and the headline, beside the paper's numbers.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .registry import benchmark
from .report import Accuracy, EvalReport


def _fmt_acc(a: Accuracy | None) -> str:
    if a is None:
        return "–"
    if a.ci_low is None or a.ci_high is None:
        return f"{a.value:.1f}"
    return f"{a.value:.1f} ({a.ci_low:.1f}–{a.ci_high:.1f})"


def _headline_line(report: EvalReport) -> str:
    h = report.headline
    value = "–" if h.value is None else f"{h.value:.1f}%"
    ci = f" (95% CI {h.ci_low:.1f}–{h.ci_high:.1f})" if h.ci_low is not None and h.ci_high is not None else ""
    parts = [f"**Headline — {h.metric}: {value}{ci}**"]
    parts.append(f"paper {h.paper:.1f}" if h.paper is not None else "paper: no number reported")
    if h.macro is not None:
        parts.append(
            f"macro {h.macro:.1f}" + (f" (paper {h.paper_macro:.1f})" if h.paper_macro is not None else "")
        )
    if h.acc_plus is not None:
        parts.append(f"acc+ {h.acc_plus:.1f}")
    return " · ".join(parts)


_PREPROCESSING_KEYS = (
    "reported_by",
    "model",
    "dtype",
    "device",
    "min_pixels",
    "max_pixels",
    "max_batch_tokens",
)


def markdown_table(report: EvalReport) -> str:
    """Headline first, then the RewardBench sections, the per-category table (with the paper's
    column where it has numbers), the variants, notes, preprocessing settings and error summary."""
    lines = [_headline_line(report), "", f"{report.headline.rule}.", ""]
    lines.append(f"**{report.format}** `{report.dataset}` scored by `{report.model}`")
    lines.append("")
    lines += _sections_table(report) + _category_table(report)
    lines.append("")
    lines.append(
        "An item is right only when the chosen (best) answer scores strictly higher; ties and items "
        "with an unscorable answer count as wrong (Multimodal RewardBench: its seeded coin decides ties)."
    )
    lines += _variant_lines(report) + _footer_lines(report)
    return "\n".join(lines) + "\n"


def _sections_table(report: EvalReport) -> list[str]:
    if not report.sections:
        return []
    lines = [
        "| section | subsets | pairs | accuracy % (95% CI) | paper % |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in report.sections:
        p = f"{s.paper:.1f}" if s.paper is not None else "–"
        lines.append(f"| {s.name} | {len(s.subsets)} | {s.pairs} | {_fmt_acc(s.accuracy)} | {p} |")
    h = report.headline
    hv = Accuracy(value=h.value, ci_low=h.ci_low, ci_high=h.ci_high) if h.value is not None else None
    hp = f"{h.paper:.1f}" if h.paper is not None else "–"
    return [*lines, f"| **score** (mean of sections) | | {report.pairs} | {_fmt_acc(hv)} | {hp} |", ""]


def _category_table(report: EvalReport) -> list[str]:
    paper = report.paper or {}
    has_paper = any(c.paper is not None for c in report.categories) or "overall" in paper
    plus = report.acc_plus is not None
    name = benchmark(report.format).category_label
    head = f"| {name} | items | correct | ties | errors | accuracy % (95% CI) |"
    sep = "|---|---:|---:|---:|---:|---:|"
    if plus:
        head, sep = head + " acc+ % |", sep + "---:|"
    if has_paper:
        head, sep = head + " paper % |", sep + "---:|"
    lines = [head, sep]

    def row(label: str, n: Any, c: Any, t: Any, e: Any, a: Accuracy, ap: Any, p: float | None) -> str:
        cells = f"| {label} | {n} | {c} | {t} | {e} | {_fmt_acc(a)} |"
        if plus:
            cells += f" {ap if ap is not None else '–'} |"
        if has_paper:
            cells += f" {p:.1f} |" if p is not None else " – |"
        return cells

    for c in report.categories:
        ap = f"{c.acc_plus:.1f}" if c.acc_plus is not None else None
        lines.append(row(c.name, c.pairs, c.correct, c.ties, c.errors, c.accuracy, ap, c.paper))
    total_plus = _fmt_acc(report.acc_plus) if report.acc_plus is not None else None
    r = report
    lines.append(
        row("**overall**", r.pairs, r.correct, r.ties, r.errors, r.overall, total_plus, paper.get("overall"))
    )
    lines.append(row("**macro**", "", "", "", "", report.macro, None, paper.get("macro")))
    return lines


def _variant_lines(report: EvalReport) -> list[str]:
    lines = []
    for v in report.variants:
        text = f"Variant **{v.name}**: overall {_fmt_acc(v.overall)}"
        if v.macro is not None:
            text += f", macro {_fmt_acc(v.macro)}"
        if v.categories:
            text += (
                " ("
                + ", ".join(f"{k} {'–' if x is None else f'{x:.1f}'}" for k, x in v.categories.items())
                + ")"
            )
        text += f"; {v.counted} counted, {v.excluded} left out — {v.description}."
        lines.append(text)
    return lines


def _footer_lines(report: EvalReport) -> list[str]:
    lines = [f"Note: {n}." for n in report.notes]
    if report.paper_source:
        lines.append(f"Paper: {report.paper_source}.")
    if report.preprocessing:
        shown = {k: report.preprocessing[k] for k in _PREPROCESSING_KEYS if k in report.preprocessing}
        lines.append(
            "Preprocessing: " + ", ".join(f"{k}={v}" for k, v in shown.items()) + " (all of it in the JSON)."
        )
    run = [f"--limit {report.limit} (the first {report.limit} records)"] if report.limit is not None else []
    if report.resumed:
        run.append(f"{report.resumed} item(s) reused from the sidecar (--resume)")
    if run:
        lines.append("Run: " + "; ".join(run) + ".")
    if report.error_list:
        codes: dict[str, int] = {}
        for e in report.error_list:
            codes[e.code] = codes.get(e.code, 0) + 1
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(codes.items()))
        lines.append(f"Errored items: {len(report.error_list)} ({summary}); listed in the JSON report.")
    return lines


def _plot_rows(report: EvalReport) -> list[tuple[str, Accuracy, float]]:
    """(label, ours, paper or nan) for the chart: the sections and score for RewardBench, else the
    categories, the headline and (where it means something) macro / acc+."""
    paper = report.paper or {}
    h = report.headline
    head = Accuracy(value=h.value if h.value is not None else math.nan, ci_low=h.ci_low, ci_high=h.ci_high)
    if report.sections:
        rows = [(s.name, s.accuracy, paper.get(s.name, math.nan)) for s in report.sections if s.accuracy]
        return [*rows, ("score", head, paper.get("score", math.nan))]  # type: ignore[list-item]
    rows = [(c.name, c.accuracy, c.paper if c.paper is not None else math.nan) for c in report.categories]
    rows.append((h.metric, head, paper.get("overall", math.nan)))
    if report.acc_plus is not None:
        rows.append(("acc+", report.acc_plus, math.nan))
    elif benchmark(report.format).item_kind == "pair":
        rows.append(("macro", report.macro, paper.get("macro", math.nan)))
    return rows


def plot_report(report: EvalReport, path: str | Path) -> Path:
    """Bar chart of the rows of :func:`_plot_rows` (95% CI whiskers), beside the paper's numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _plot_rows(report)
    names = [r[0] for r in rows]
    ours = [r[1] for r in rows]
    pv = [r[2] for r in rows]
    has_paper = any(not math.isnan(v) for v in pv)
    x = list(range(len(names)))
    width = 0.38 if has_paper else 0.6
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names) + 1.5), 3.8))
    vals = [a.value for a in ours]
    err = None
    if all(a.ci_low is not None and a.ci_high is not None for a in ours):
        err = [[max(0.0, a.value - a.ci_low) for a in ours], [max(0.0, a.ci_high - a.value) for a in ours]]  # type: ignore[operator]
    shift = -width / 2 if has_paper else 0.0
    bars = ax.bar([i + shift for i in x], vals, width, yerr=err, capsize=3, label="this run", color="#4c72b0")
    ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    if has_paper:
        pb = ax.bar([i + width / 2 for i in x], pv, width, label="paper", color="#dd8452")
        ax.bar_label(pb, fmt="%.1f", fontsize=7, padding=2)
    if benchmark(report.format).item_kind == "pair":
        ax.axhline(50, color="grey", lw=0.8, ls="--", label="chance (50%)")
    ax.set_xticks(x, names, rotation=20 if len(names) > 6 else 0, fontsize=8)
    ax.set_ylim(0, 122)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("accuracy (%)")
    h = report.headline
    value = "–" if h.value is None else f"{h.value:.1f}"
    ax.set_title(
        f"{report.format}: {Path(report.model).name or report.model} ({report.pairs} items), "
        f"{h.metric} {value}",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="upper right", ncol=3, frameon=False)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def write_reports(report: EvalReport, json_path: str | Path) -> tuple[Path, Path, Path]:
    """Write ``report.json``, ``report.md`` and ``report.png`` (same stem); returns the three paths."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    md = json_path.with_suffix(".md")
    md.write_text(markdown_table(report), encoding="utf-8")
    png = plot_report(report, json_path.with_suffix(".png"))
    return json_path, md, png
