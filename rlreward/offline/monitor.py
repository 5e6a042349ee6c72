"""``rlreward monitor``'s runner: read ``GET /v1/stats`` of a served app and show its reward health.

* :func:`fetch_stats` — the stats object over HTTP (bearer token), or a :class:`UsageError` naming
  what went wrong (unreachable, 401, not an rlreward server).
* :func:`render` — the terminal view: throughput, backlog, replicas (canary drift), one line per
  step (samples, errors, mean, std, p05/p50/p95, groups, zero-variance groups, length correlation,
  duplicates; ``!`` marks a value that raised an alert) and the alerts.
* :func:`plot` — a PNG (matplotlib): the reward distribution per step (p05–p95 box, median, mean,
  min–max) with the steps that raised alerts marked, and the alert signals per step.
* :func:`run` — live view (redraw every ``interval_s``), ``once``, or JSON / PNG output.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import httpx

from rlreward.errors import UsageError

STEP_COLUMNS = (
    ("step", "step", 6),
    ("samples", "samples", 8),
    ("errors", "errors", 7),
    ("mean", "mean", 10),
    ("std", "std", 9),
    ("p05", "p05", 10),
    ("p50", "p50", 10),
    ("p95", "p95", 10),
    ("groups", "groups", 7),
    ("zero_variance_groups", "zero-var", 9),
    ("length_corr", "len-corr", 9),
    ("duplicate_answers", "dups", 6),
)
#: alert signal → the step column it marks
_SIGNAL_COLUMN = {
    "zero_variance_groups": "zero_variance_groups",
    "length_corr": "length_corr",
    "duplicate_answers": "duplicate_answers",
    "error_rate": "errors",
}


def fetch_stats(url: str, api_key: str | None = None, timeout_s: float = 30.0) -> dict[str, Any]:
    """``GET {url}/v1/stats``; a :class:`UsageError` with what to do when it fails."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    target = url.rstrip("/") + "/v1/stats"
    try:
        response = httpx.get(target, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise UsageError(f"could not reach {target}: {exc}; is the server running (rlreward serve)?") from exc
    if response.status_code == 401:
        raise UsageError(
            f"{target} answered 401: pass --api-key or set RLREWARD_API_KEY (the server's token)"
        )
    if response.status_code != 200:
        raise UsageError(f"{target} answered {response.status_code}: {response.text[:300]}")
    try:
        stats = response.json()
    except ValueError as exc:
        raise UsageError(f"{target} did not answer JSON: is it an rlreward server?") from exc
    if not isinstance(stats, dict) or "reward" not in stats:
        raise UsageError(f"{target} has no 'reward' section: is it an rlreward server with reward health?")
    return stats


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render(stats: dict[str, Any], url: str = "") -> str:
    """The terminal view of one ``/v1/stats`` object."""
    reward = stats.get("reward") or {}
    steps, alerts = reward.get("steps") or [], reward.get("alerts") or []
    canary = reward.get("canary") or {}
    tp = reward.get("throughput") or {}
    marked = {(a["step"], _SIGNAL_COLUMN.get(a["signal"])) for a in alerts}
    lines = [
        f"rlreward reward health  {url}  {time.strftime('%H:%M:%S')}  mode={reward.get('mode', '-')}",
        f"throughput {_fmt(tp.get('samples_per_s'))} samples/s (last {_fmt(tp.get('window_s'))} s)   "
        f"backlog {_fmt(tp.get('backlog_samples'))} samples   alerts {len(alerts)}",
        "",
        "".join(title.rjust(width) for _, title, width in STEP_COLUMNS),
    ]
    for s in steps:
        cells = []
        for key, _, width in STEP_COLUMNS:
            text = _fmt(s.get(key)) + ("*" if key == "step" and s.get("open") else "")
            text += "!" if (s.get("step"), key) in marked else ""
            cells.append(text.rjust(width))
        lines.append("".join(cells))
    if not steps:
        lines.append("  (no step yet: nothing scored)")
    lines += ["", "alerts:" if alerts else "alerts: none"]
    for a in alerts:
        who = f"  replica {a['replica_id']}" if a.get("replica_id") else ""
        lines.append(f"  step {a['step']}: {a['signal']} = {_fmt(a['value'])} > {_fmt(a['threshold'])}{who}")
    replicas = canary.get("replicas") or []
    lines += [
        "",
        f"replicas (canary every {_fmt(canary.get('interval_s'))} s):" if replicas else "replicas: -",
    ]
    for e in replicas:
        lines.append(
            f"  {e.get('replica_id')}  pid {_fmt(e.get('pid'))}  backlog {_fmt(e.get('backlog_samples'))}  "
            f"runs {_fmt(e.get('runs'))}  max|drift| {_fmt(e.get('max_abs_drift'))}  "
            f"ref drift {_fmt(e.get('reference_drift'))}{'  STALE' if e.get('stale') else ''}"
        )
    lines.append("(* open step, ! raised an alert)")
    return "\n".join(lines)


def plot(stats: dict[str, Any], path: str) -> None:
    """Write a PNG: reward distribution per step and the alerts raised per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    reward = stats.get("reward") or {}
    steps = [s for s in reward.get("steps") or [] if s.get("samples")]
    alerts = reward.get("alerts") or []
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    xs = [s["step"] for s in steps]
    for s in steps:
        x = s["step"]
        ax.vlines(x, s["min"], s["max"], color="#667085", linewidth=1)
        ax.add_patch(
            matplotlib.patches.Rectangle(
                (x - 0.3, s["p05"]), 0.6, s["p95"] - s["p05"], facecolor="#a4c8f0", edgecolor="#2e6fb7"
            )
        )
        ax.hlines(s["p50"], x - 0.3, x + 0.3, color="#1d2330", linewidth=2)
    if steps:
        ax.plot(xs, [s["mean"] for s in steps], "o", color="#b42318", label="mean")
        ax.legend(loc="upper left")
    ax.set_ylabel("reward (box p05–p95, line median, whiskers min–max)")
    ax.set_title("rlreward reward health: reward distribution per step")
    signals = sorted({a["signal"] for a in alerts})
    for i, signal in enumerate(signals):
        hit = [a["step"] for a in alerts if a["signal"] == signal]
        ax2.plot(hit, [i] * len(hit), "s", color="#b42318")
        for step in hit:
            ax.axvspan(step - 0.45, step + 0.45, color="#fde8e8", zorder=0)
    ax2.set_yticks(range(len(signals)), signals or [])
    ax2.set_ylim(-0.7, max(len(signals), 1) - 0.3)
    ax2.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax2.set_xlabel("step")
    ax2.set_title("alerts" if signals else "alerts: none", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(
    url: str,
    api_key: str | None = None,
    *,
    interval_s: float = 2.0,
    once: bool = False,
    json_out: bool = False,
    plot_path: str | None = None,
    out: TextIO | None = None,
    fetch: Callable[[str, str | None], dict[str, Any]] = fetch_stats,
) -> int:
    """The monitor: JSON and/or PNG (one read) or the table (``once``, or redrawn until Ctrl-C)."""
    out = out or sys.stdout
    if interval_s <= 0:
        raise UsageError(f"--interval must be > 0 seconds, got {interval_s}")
    if json_out or plot_path:
        stats = fetch(url, api_key)
        if plot_path:
            plot(stats, plot_path)
            print(f"wrote {plot_path}", file=sys.stderr)
        if json_out:
            out.write(json.dumps(stats, indent=2) + "\n")
        return 0
    live = not once and out.isatty()
    try:
        while True:
            text = render(fetch(url, api_key), url)
            out.write(("\x1b[2J\x1b[H" if live else "") + text + "\n")
            out.flush()
            if once:
                return 0
            time.sleep(interval_s)
    except KeyboardInterrupt:
        return 0
