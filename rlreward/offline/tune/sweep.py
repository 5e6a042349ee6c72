"""The sweep behind ``rlreward tune``: a grid of serving configurations, each simulated on the same
workload; the Pareto front of **replica-seconds** (cost) vs **mean reward-stage time per step**
(what the trainer waits); the recommendation; the plot; the recommended ``AppConfig`` YAML.

Recommendation rule: among all simulated points without sleep, the least replica-seconds whose mean
reward-stage time is within ``slack`` (default 10%) of the best reward-stage time any point reached.
Ties go to the shorter reward stage, then to the earlier point of the grid (fixed pools and no-hint
configs first). Then sleep, where it wins: the same configuration with ``replica.sleep`` (swept over
``Grid.sleep_after_s``) replaces it when its reward stage stays within ``slack`` of it and it needs at
least ``sleep_gain`` (30%) fewer **awake** replica-seconds (the memory the trainer gets back).

Configurations, as they appear in JSON (``SweepPoint.config``)::

    {"policy": "fixed" | "requests" | "backlog",   # Serve's default policy, or rlreward's sample backlog
     "num_replicas": 4 | null,                      # fixed pool only
     "autoscaling": {AutoscalingOptions fields} | null,
     "max_ongoing_requests": 32,
     "hint": {"within_s": ..., "latency_s": ..., "hold_s": ..., "release_to": "min" | "base"} | null,
     "sleep": {"after_step_done_s": ..., "level": 1 | 2, "hint_latency_s": ...} | null}
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .policy import AutoscalingSpec, HintPolicy, ReplicaModel, ServeTiming, ServingSpec, SleepSpec
from .simulator import SimResult, simulate
from .workload import Traffic


# -- the grid --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grid:
    """Values swept (seconds for delays/windows). Empty ``target_backlog_samples`` = derive from the
    replica throughput (1, 3 and 10 seconds of one replica's work); ``min_replicas`` None = the lower
    bound and one more. ``max_replicas`` is the upper bound given: the pool the run may use."""

    target_ongoing_requests: tuple[float, ...] = (1.0, 2.0, 4.0)
    target_backlog_samples: tuple[int, ...] = ()
    upscale_delay_s: tuple[float, ...] = (0.0, 10.0, 30.0)
    downscale_delay_s: tuple[float, ...] = (0.0, 15.0, 60.0, 600.0)
    look_back_period_s: tuple[float, ...] = (15.0, 30.0)
    min_replicas: tuple[int, ...] | None = None
    policies: tuple[str, ...] = ("requests", "backlog")
    hints: bool = True
    hint_latency_s: float = 0.5
    hint_hold_s: tuple[float, ...] = (0.0,)
    hint_release: tuple[str, ...] = ("min", "base")
    fixed_pools: bool = True
    #: ``replica.sleep.after_step_done_s`` values swept (on fixed pools and hinted configs; needs the
    #: replica's ``wake_s``); empty = no sleep in the sweep.
    sleep_after_s: tuple[float, ...] = ()
    sleep_level: int = 1


def grid_specs(
    grid: Grid,
    *,
    min_bound: int,
    max_bound: int,
    replica: ReplicaModel,
    step_samples: float,
    max_ongoing_requests: int,
) -> list[ServingSpec]:
    """Every configuration of ``grid`` within ``[min_bound, max_bound]`` replicas, fixed pools first.

    Hinted configurations ask for the whole pool: ``within_s = step_samples / (samples_per_s ×
    max_bound)`` (the hint says "this step's samples, as fast as max_replicas can score them").
    """
    if not 0 <= min_bound <= max_bound or max_bound < 1:
        raise ValueError(f"need 0 ≤ --min-replicas ≤ --max-replicas and ≥ 1 (got {min_bound}, {max_bound})")
    specs: list[ServingSpec] = []
    if grid.fixed_pools:
        specs += [
            ServingSpec(num_replicas=k, max_ongoing_requests=max_ongoing_requests)
            for k in range(max(1, min_bound), max_bound + 1)
        ]
    mins = grid.min_replicas or tuple(sorted({min_bound, min(min_bound + 1, max_bound)}))
    mins = tuple(m for m in mins if min_bound <= m <= max_bound)
    if not mins:
        raise ValueError(f"no swept min_replicas lies within [{min_bound}, {max_bound}]")
    backlog = grid.target_backlog_samples or tuple(
        sorted({max(1, round(replica.samples_per_s * s)) for s in (1.0, 3.0, 10.0)})
    )
    hint_opts: list[HintPolicy | None] = [None]
    if grid.hints:
        within = step_samples / (replica.samples_per_s * max_bound)
        hint_opts += [
            HintPolicy(within_s=within, latency_s=grid.hint_latency_s, hold_s=h, release_to=rel)  # type: ignore[arg-type]
            for rel in grid.hint_release
            for h in grid.hint_hold_s
        ]
    for hint in hint_opts:
        for policy in grid.policies:
            if policy == "requests":
                targets: Iterable[tuple[float, int | None]] = (
                    (t, None) for t in grid.target_ongoing_requests
                )
            elif policy == "backlog":
                targets = ((2.0, b) for b in backlog)
            else:
                raise ValueError(f"unknown policy {policy!r} (requests or backlog)")
            for (tor, tbs), up, down, lb, lo in itertools.product(
                list(targets), grid.upscale_delay_s, grid.downscale_delay_s, grid.look_back_period_s, mins
            ):
                auto = AutoscalingSpec(
                    min_replicas=lo,
                    max_replicas=max_bound,
                    target_ongoing_requests=tor,
                    target_backlog_samples=tbs,
                    upscale_delay_s=up,
                    downscale_delay_s=down,
                    look_back_period_s=lb,
                )
                specs.append(
                    ServingSpec(autoscaling=auto, max_ongoing_requests=max_ongoing_requests, hint=hint)
                )
    sleepers = [s for s in specs if s.autoscaling is None or s.hint is not None]
    specs += [
        replace(
            s,
            sleep=SleepSpec(after_step_done_s=a, level=grid.sleep_level, hint_latency_s=grid.hint_latency_s),
        )
        for a in grid.sleep_after_s
        for s in sleepers
    ]
    return specs


# -- points ----------------------------------------------------------------------------------------
def spec_config(spec: ServingSpec) -> dict[str, Any]:
    """The JSON form of a configuration (see the module docstring)."""
    auto = spec.autoscaling
    if auto is None:
        policy = "fixed"
    else:
        policy = "backlog" if auto.target_backlog_samples is not None else "requests"
    return {
        "policy": policy,
        "num_replicas": spec.num_replicas if auto is None else None,
        "autoscaling": auto.to_options() if auto is not None else None,
        "max_ongoing_requests": spec.max_ongoing_requests,
        "hint": asdict(spec.hint) if spec.hint is not None else None,
        "sleep": asdict(spec.sleep) if spec.sleep is not None else None,
    }


def spec_label(spec: ServingSpec) -> str:
    """A short one-line description for tables and logs."""
    sleep = f" +sleep {spec.sleep.after_step_done_s:g}s L{spec.sleep.level}" if spec.sleep is not None else ""
    a = spec.autoscaling
    if a is None:
        return f"fixed {spec.num_replicas}{sleep}"
    target = (
        f"backlog {a.target_backlog_samples}"
        if a.target_backlog_samples
        else f"ongoing {a.target_ongoing_requests:g}"
    )
    s = (
        f"{target} up {a.upscale_delay_s:g} down {a.downscale_delay_s:g} "
        f"lb {a.look_back_period_s:g} [{a.min_replicas},{a.max_replicas}]"
    )
    return s + (f" +hint→{spec.hint.release_to}" if spec.hint is not None else "") + sleep


@dataclass(frozen=True)
class SweepPoint:
    """One simulated configuration: mean reward-stage time per step (s) and replica-seconds."""

    spec: ServingSpec
    reward_stage_s: float
    replica_seconds: float
    horizon_s: float
    #: replica-seconds not asleep (= replica_seconds without sleep)
    awake_replica_seconds: float = math.nan

    @property
    def config(self) -> dict[str, Any]:
        return spec_config(self.spec)

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "reward_stage_s": self.reward_stage_s,
            "replica_seconds": self.replica_seconds,
            "awake_replica_seconds": self.awake_replica_seconds,
        }


def point_from_result(spec: ServingSpec, result: SimResult) -> SweepPoint:
    return SweepPoint(
        spec=spec,
        reward_stage_s=result.mean_stage_s,
        replica_seconds=result.replica_seconds,
        horizon_s=result.horizon_s,
        awake_replica_seconds=result.awake_replica_seconds,
    )


def run_sweep(
    workload: Traffic,
    specs: Sequence[ServingSpec],
    replica: ReplicaModel,
    timing: ServeTiming | None = None,
    *,
    progress: Callable[[int], None] | None = None,
) -> list[SweepPoint]:
    """Simulate every spec on ``workload`` (in order); ``progress(1)`` after each."""
    points = []
    for spec in specs:
        points.append(point_from_result(spec, simulate(workload, spec, replica, timing)))
        if progress is not None:
            progress(1)
    return points


def pareto_front(points: Sequence[SweepPoint]) -> list[SweepPoint]:
    """Points no other point beats on both axes (lower is better on both), by replica-seconds.

    Of points equal on both axes, the first is kept.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i].replica_seconds, points[i].reward_stage_s, i))
    front: list[SweepPoint] = []
    best_stage = math.inf
    for i in order:
        p = points[i]
        if p.reward_stage_s < best_stage - 1e-9:
            front.append(p)
            best_stage = p.reward_stage_s
    return front


def recommend(points: Sequence[SweepPoint], slack: float = 0.1, sleep_gain: float = 0.3) -> SweepPoint:
    """The least replica-seconds within ``slack`` (fraction) of the best mean reward-stage time, then
    its sleeping variant where that wins (see the module docstring)."""
    if not points:
        raise ValueError("nothing was simulated")
    if slack < 0:
        raise ValueError(f"slack must be ≥ 0 (got {slack})")
    awake = [p for p in points if p.spec.sleep is None] or list(points)
    best = min(p.reward_stage_s for p in awake)
    ok = [
        (p.replica_seconds, p.reward_stage_s, i)
        for i, p in enumerate(awake)
        if p.reward_stage_s <= best * (1 + slack) + 1e-9
    ]
    rec = awake[min(ok)[2]]
    return sleep_variant(points, rec, slack, sleep_gain) or rec


def sleep_variant(
    points: Sequence[SweepPoint], base: SweepPoint, slack: float = 0.1, gain: float = 0.3
) -> SweepPoint | None:
    """The sleeping variant of ``base`` with the fewest awake replica-seconds among those whose reward
    stage is within ``slack`` of ``base``'s and whose awake replica-seconds are at most ``1 - gain``
    of ``base``'s; None when sleep does not win."""
    if base.spec.sleep is not None:
        return None
    wins = [
        (p.awake_replica_seconds, p.reward_stage_s, i)
        for i, p in enumerate(points)
        if p.spec.sleep is not None
        and replace(p.spec, sleep=None) == base.spec
        and p.reward_stage_s <= base.reward_stage_s * (1 + slack) + 1e-9
        and p.awake_replica_seconds <= (1 - gain) * base.awake_replica_seconds + 1e-9
    ]
    return points[min(wins)[2]] if wins else None


# -- AppConfig YAML --------------------------------------------------------------------------------
#: What the packaged default config (a tiny CPU checkpoint) says that depends on the machine or the
#: model: left out of a recommendation written without ``--base-config``, so ``rlreward serve``
#: resolves them where it runs (``scorer.device``/``dtype`` "auto"; the model from ``--model``).
DEVICE_DEPENDENT_KEYS = ("scorer.model", "scorer.device", "scorer.dtype", "replica.ray_actor_options")

#: ``scorer.model`` while validating a partial config (no model: ``serve --config FILE --model M``).
_MODEL_AT_SERVE_TIME = "<the --model given to rlreward serve>"


def base_app_config(path: str | Path | None) -> dict[str, Any]:
    """The AppConfig mapping the recommendation is written into: ``path`` (a YAML file, partial as
    ``rlreward serve --config`` takes it: without a model, say) as it is, or the packaged default
    without its :data:`DEVICE_DEPENDENT_KEYS`. Raises FileNotFoundError / ValueError naming the file."""
    from rlreward.serving.config import read_config_mapping

    data = read_config_mapping(path)
    if not path:
        for key in DEVICE_DEPENDENT_KEYS:
            section, name = key.split(".")
            if isinstance(data.get(section), dict):
                data[section].pop(name, None)
    return data


def validate_app_config(data: dict[str, Any], where: str = "config") -> Any:
    """``AppConfig.model_validate(data)``, with a placeholder ``scorer.model`` where ``data`` names
    none (``rlreward serve --config FILE --model M`` takes the model from its command line); a
    ValueError names the first problem."""
    from pydantic import ValidationError

    from rlreward.serving.config import AppConfig

    scorer = data.get("scorer")
    if scorer is None or (isinstance(scorer, dict) and not scorer.get("model")):
        data = {**data, "scorer": {**(scorer or {}), "model": _MODEL_AT_SERVE_TIME}}
    try:
        return AppConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise ValueError(f"{where} is not a valid AppConfig: {loc}: {err['msg']}") from exc


def serving_from_app_config(
    data: dict[str, Any],
    hint: HintPolicy | None = None,
    *,
    hint_latency_s: float = 0.5,
    where: str = "config",
) -> ServingSpec:
    """The simulated deployment of an AppConfig mapping (validated first).

    ``hint`` (the trainer's ``expect(..., within_s)`` as simulated) overrides the config's
    ``replica.autoscaling.hints``; without it, a config with hints is simulated with the trainer
    sending ``within_s = hints.default_within_s``, seen ``hint_latency_s`` after sending. The policy's
    ``hints.replica_samples_per_s`` is what the simulated policy sizes the pool with.
    """
    cfg = validate_app_config(data, where)
    rep = cfg.replica
    auto = AutoscalingSpec.from_options(rep.autoscaling.model_dump()) if rep.autoscaling is not None else None
    if auto is None and hint is not None:
        raise ValueError(
            "hints need autoscaling: the config has a fixed replica count (replica.autoscaling unset)"
        )
    hints = rep.autoscaling.hints if rep.autoscaling is not None else None
    if hints is not None:
        if hint is None:
            if hints.default_within_s is None:
                raise ValueError(
                    "the config's replica.autoscaling.hints has no default_within_s: pass --hint-within-s "
                    "(what the trainer sends with expect())"
                )
            hint = HintPolicy(
                within_s=hints.default_within_s,
                latency_s=hint_latency_s,
                hold_s=hints.hold_s,
                release_to=hints.release_to,
                replica_samples_per_s=hints.replica_samples_per_s,
            )
        elif hint.replica_samples_per_s is None:
            hint = replace(hint, replica_samples_per_s=hints.replica_samples_per_s)
    sleep = None
    if rep.sleep is not None:
        sleep = SleepSpec(after_step_done_s=rep.sleep.after_step_done_s, level=rep.sleep.level)
    return ServingSpec(
        autoscaling=auto,
        num_replicas=rep.num_replicas,
        max_ongoing_requests=rep.max_ongoing_requests,
        hint=hint,
        sleep=sleep,
    )


def recommendation_config(
    spec: ServingSpec, base: dict[str, Any], replica_samples_per_s: float | None = None
) -> dict[str, Any]:
    """``base`` (an AppConfig mapping) with its ``replica`` section set to ``spec``; validated.

    A hinted ``spec`` sets ``replica.autoscaling.hints`` (the served hint policy): its
    ``replica_samples_per_s`` (else ``replica_samples_per_s`` here, the measured throughput),
    ``default_within_s`` = the simulated ``within_s``, ``release_to`` and ``hold_s``.
    """
    data = copy.deepcopy(base)
    rep = data.setdefault("replica", {})
    if not isinstance(rep, dict):
        raise ValueError("the base config's replica section must be a mapping")
    rep["max_ongoing_requests"] = spec.max_ongoing_requests
    if spec.autoscaling is None:
        rep["num_replicas"] = spec.num_replicas
        rep.pop("autoscaling", None)
    else:
        rep.pop("num_replicas", None)
        rep["autoscaling"] = spec.autoscaling.to_options()
        if spec.hint is not None:
            rate = spec.hint.replica_samples_per_s or replica_samples_per_s
            if rate is None:
                raise ValueError("a hinted recommendation needs the replica throughput (samples/s)")
            rep["autoscaling"]["hints"] = {
                "replica_samples_per_s": float(rate),
                "default_within_s": spec.hint.within_s,
                "release_to": spec.hint.release_to,
                "hold_s": spec.hint.hold_s,
            }
    if spec.sleep is not None:
        rep["sleep"] = {"after_step_done_s": spec.sleep.after_step_done_s, "level": spec.sleep.level}
    else:
        rep.pop("sleep", None)
    validate_app_config(data, "the recommended config")
    return data


def recommendation_yaml(
    spec: ServingSpec,
    base: dict[str, Any],
    header: Sequence[str] = (),
    replica_samples_per_s: float | None = None,
) -> str:
    """The recommended config as YAML (``rlreward serve --config`` reads it), ``header`` as comments."""
    import yaml

    data = recommendation_config(spec, base, replica_samples_per_s)
    lines = [f"# {h}" for h in header]
    if spec.hint is not None:
        h = spec.hint
        lines += [
            "# This recommendation assumes the trainer sends phase hints: client.expect(n_samples) at",
            "# rollout start (within_s defaults to replica.autoscaling.hints.default_within_s) and",
            "# client.step_done() after the last score (the TRL adapter does both around each batch);",
            f"# simulated as seen {h.latency_s:g} s after sending.",
        ]
    if spec.sleep is not None:
        lines += [
            "# replica.sleep: the replicas sleep between reward bursts and are woken by the trainer's",
            "# client.expect() at rollout start (ahead of the burst) or by the first request; recommended",
            "# because it keeps the reward stage within the slack with far fewer awake replica-seconds.",
        ]
    return "\n".join(lines) + ("\n" if lines else "") + yaml.safe_dump(data, sort_keys=False)


# -- plot ------------------------------------------------------------------------------------------
def plot_front(
    points: Sequence[SweepPoint],
    front: Sequence[SweepPoint],
    recommended: SweepPoint,
    path: str | Path,
    *,
    title: str = "rlreward tune",
) -> None:
    """PNG: every point faint, the Pareto front highlighted, the recommendation marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    for hinted, color, name in ((False, "tab:blue", "no hints"), (True, "tab:orange", "with hints")):
        sel = [p for p in points if (p.spec.hint is not None) == hinted and p.spec.autoscaling is not None]
        if sel:
            ax.scatter(
                [p.replica_seconds for p in sel],
                [p.reward_stage_s for p in sel],
                s=12,
                alpha=0.25,
                color=color,
                label=f"autoscaling, {name}",
            )
    fixed = [p for p in points if p.spec.autoscaling is None]
    if fixed:
        ax.scatter(
            [p.replica_seconds for p in fixed],
            [p.reward_stage_s for p in fixed],
            s=30,
            marker="s",
            alpha=0.5,
            color="tab:gray",
            label="fixed pools",
        )
    ax.plot(
        [p.replica_seconds for p in front],
        [p.reward_stage_s for p in front],
        "-o",
        color="black",
        ms=4,
        lw=1.2,
        label="Pareto front",
    )
    ax.scatter(
        [recommended.replica_seconds],
        [recommended.reward_stage_s],
        marker="*",
        s=260,
        color="tab:red",
        zorder=5,
        label=f"recommended: {spec_label(recommended.spec)}",
    )
    ax.set_xlabel("replica-seconds (whole run)")
    ax.set_ylabel("mean reward-stage time per step (s)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_table(points: Sequence[SweepPoint], recommended: SweepPoint | None = None) -> str:
    """A small fixed-width table of ``points`` (the recommendation starred)."""
    rows = [("", "configuration", "stage s/step", "replica-s")]
    for p in points:
        rows.append(
            (
                "*" if p is recommended else "",
                spec_label(p.spec),
                f"{p.reward_stage_s:.2f}",
                f"{p.replica_seconds:.0f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        f"{r[0]:<{widths[0]}} {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}" for r in rows
    )
