"""The load test's PNG timeline: arrivals, latency, queue and replicas over the run, step boundaries."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_timeline(report: dict[str, Any], requests: list[dict[str, Any]], path: str | Path) -> None:
    """Write the timeline of ``report`` (the JSON the command writes) to ``path`` (PNG).

    Panels: samples sent per time bin (arrivals) with each request's latency; queue (samples queued
    or being scored, summed over replicas); replica count. Shaded spans are the steps' reward stages
    (first sample sent → last score back). Without a Serve timeline the lower panels say so.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wall = float(report.get("wall_s") or 1.0)
    fig, axes = plt.subplots(3, 1, figsize=(10, 7.5), sharex=True, height_ratios=[2, 1, 1])
    ax = axes[0]
    bins = max(10, min(200, int(wall / 0.25) or 10))
    if requests:
        ax.hist(
            [r["t_sent"] for r in requests],
            bins=bins,
            range=(0, wall),
            weights=[r["samples"] for r in requests],
            color="#4c72b0",
            alpha=0.7,
            label="samples sent",
        )
        ax.set_ylabel("samples sent / bin")
        ax2 = ax.twinx()
        ax2.scatter(
            [r["t_sent"] for r in requests],
            [r["t_done"] - r["t_sent"] for r in requests],
            s=6,
            color="#dd8452",
            label="request latency",
        )
        ax2.set_ylabel("latency (s)")
        ax2.legend(loc="upper right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    tl = report.get("timeline") or []
    for a, key, label in ((axes[1], "queue", "queued + running samples"), (axes[2], "replicas", "replicas")):
        if tl:
            a.step([p["t"] for p in tl], [p[key] for p in tl], where="post", color="#55a868")
        else:
            a.text(
                0.5,
                0.5,
                "no Serve timeline (needs GET /v1/stats, --app-name or --ray-address)",
                ha="center",
                va="center",
                transform=a.transAxes,
                fontsize=9,
                color="gray",
            )
        a.set_ylabel(label)
        a.set_ylim(bottom=0)
        a.yaxis.get_major_locator().set_params(integer=True)
    for s in report.get("steps") or []:
        for a in axes:
            a.axvspan(s["t_start"], s["t_end"], color="gray", alpha=0.12, lw=0)
    axes[-1].set_xlabel("seconds since the load test began (shaded: reward stage of each step)")
    p50, p99 = report.get("latency_p50_s"), report.get("latency_p99_s")
    fig.suptitle(
        f"rlreward loadtest {report.get('shape')}: {report.get('answered')}/{report.get('sent')} answered, "
        f"{report.get('samples_per_s')} samples/s, p50 {p50} s, p99 {p99} s",
        fontsize=10,
    )
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
