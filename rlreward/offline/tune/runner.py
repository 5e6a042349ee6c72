"""One ``rlreward tune`` run: the replica's numbers (given, measured or read), then a sweep with its
recommendation (:func:`run_sweep_job`) or one config's prediction (:func:`run_evaluate_job`), written
to JSON (and YAML, PNG). The command only parses arguments into the objects below.

Configs are read as ``rlreward serve --config`` reads them (:func:`~.sweep.base_app_config`): a
partial YAML without a model is accepted. A recommendation keeps its base's device settings; without
``--base-config`` it is the packaged default minus its device-dependent values, which stay unset
(resolved per device at serve time) and the YAML's comment says so. Bad input raises ValueError or
FileNotFoundError naming what is wrong.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .policy import HintPolicy, ReplicaModel, ServeTiming
from .simulator import simulate
from .sweep import (
    DEVICE_DEPENDENT_KEYS,
    Grid,
    base_app_config,
    format_table,
    grid_specs,
    pareto_front,
    plot_front,
    point_from_result,
    recommend,
    recommendation_yaml,
    run_sweep,
    serving_from_app_config,
    spec_config,
    spec_label,
    validate_app_config,
)
from .workload import Traffic

Say = Callable[[str], None]


@dataclass(frozen=True)
class ReplicaSource:
    """Where the replica's throughput and cold start come from: given numbers win; else measured on
    a throwaway deployment of ``measure_config`` (Ray: ``ray_address`` or a fresh local cluster), or
    samples/s read from an ``rlreward bench`` JSON (``bench_json``)."""

    samples_per_s: float | None = None
    cold_start_s: float | None = None
    #: seconds a sleeping replica takes to wake (``/v1/stats``' ``last_wake_s``); 0 = not modelled
    wake_s: float = 0.0
    measure_config: str | None = None
    ray_address: str | None = None
    measure_http: str | None = None
    measure_bursts: int = 3
    measure_prompts: int = 8
    measure_group: int = 8
    bench_json: str | None = None
    bench_system: str | None = None


@dataclass(frozen=True)
class SweepJob:
    """A sweep: the grid within ``[min_replicas, max_replicas]``; the recommendation within
    ``slack`` of the best reward-stage time, written into ``base_config`` (None: packaged default)."""

    traffic: Traffic
    replica: ReplicaSource
    timing: ServeTiming
    grid: Grid
    json_path: str
    min_replicas: int = 1
    max_replicas: int = 4
    slack: float = 0.1
    max_ongoing_requests: int | None = None
    base_config: str | None = None
    out_yaml: str | None = None
    plot: str | None = None


@dataclass(frozen=True)
class EvaluateJob:
    """One AppConfig YAML simulated on the traffic; ``hint``: the trainer's hints as simulated (None:
    the config's own ``hints.default_within_s`` if it has hints)."""

    traffic: Traffic
    replica: ReplicaSource
    timing: ServeTiming
    config: str
    json_path: str
    hint: HintPolicy | None = None
    hint_latency_s: float = 0.5


def replica_model(src: ReplicaSource, say: Say = print) -> tuple[ReplicaModel, dict[str, Any] | None]:
    """The simulated replica and, when measured or read, the calibration record."""
    rate, cold, cal = src.samples_per_s, src.cold_start_s, None
    if src.measure_config and (rate is None or cold is None):
        from .measure import measure_deployment

        found = measure_deployment(
            src.measure_config,
            ray_address=src.ray_address,
            http_base=src.measure_http,
            prompts=src.measure_prompts,
            group=src.measure_group,
            bursts=src.measure_bursts,
            cold_start=cold is None,
        )
        cal = found.to_json()
        rate = rate if rate is not None else found.samples_per_s
        cold = cold if cold is not None else found.cold_start_s
    elif src.bench_json and rate is None:
        from .measure import from_bench_json

        found = from_bench_json(src.bench_json, src.bench_system)
        cal, rate = found.to_json(), found.samples_per_s
    if rate is None or cold is None:
        raise ValueError(
            "the replica model needs --replica-samples-per-s and --cold-start-s "
            "(or --measure CONFIG.yaml; --bench-json gives samples/s only)"
        )
    if cal is not None:
        say(f"rlreward tune: replica {rate:.3g} samples/s, cold start {cold:.3g} s ({cal['source']})")
    return ReplicaModel(samples_per_s=rate, cold_start_s=cold, wake_s=src.wake_s), cal


def _common(traffic: Traffic, replica: ReplicaModel, timing: ServeTiming, cal: Any) -> dict[str, Any]:
    return {
        "workload": traffic.summary(),
        "replica": asdict(replica),
        "timing": asdict(timing),
        "calibration": cal,
    }


def _write_json(path: str, data: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def yaml_header(job: SweepJob, base: dict[str, Any], replica: ReplicaModel, rec: Any) -> list[str]:
    """The recommendation's comment: what it is, what it predicts, and what it leaves to serve time."""
    lines = [
        "rlreward AppConfig recommended by `rlreward tune` (simulated, not measured).",
        job.traffic.description,
        f"replica: {replica.samples_per_s:g} samples/s, cold start {replica.cold_start_s:g} s, "
        f"wake {replica.wake_s:g} s",
        f"predicted: {rec.reward_stage_s:.2f} s reward stage per step, {rec.replica_seconds:.0f} replica-seconds "
        f"({rec.awake_replica_seconds:.0f} awake)",
    ]
    if job.base_config is None:
        lines += [
            "No --base-config: the packaged (CPU) default's device-dependent values are left unset:",
            f"{', '.join(DEVICE_DEPENDENT_KEYS)}. scorer.device and scorer.dtype",
            "then resolve per device where the model loads (auto); replica.ray_actor_options is Ray's",
            "default (1 CPU, no GPU): add `ray_actor_options: {num_gpus: 1}` under replica for one GPU",
            "per replica, or rerun with --base-config configs/skywork-vl-7b.yaml.",
        ]
    if not (base.get("scorer") or {}).get("model"):
        lines.append("No scorer.model: serve it with `rlreward serve --config THIS.yaml --model MODEL`.")
    return lines


def run_sweep_job(job: SweepJob, say: Say = print) -> dict[str, Any]:
    """Sweep, print the Pareto front, write the JSON (and ``out_yaml``, ``plot``); returns the JSON."""
    replica, cal = replica_model(job.replica, say)
    base = base_app_config(job.base_config)
    cfg = validate_app_config(base, job.base_config or "the packaged default config")
    specs = grid_specs(
        job.grid,
        min_bound=job.min_replicas,
        max_bound=job.max_replicas,
        replica=replica,
        step_samples=job.traffic.mean_step_samples,
        max_ongoing_requests=job.max_ongoing_requests or cfg.replica.max_ongoing_requests,
    )
    say(f"rlreward tune: {job.traffic.description}")
    say(
        f"  replica: {replica.samples_per_s:g} samples/s, cold start {replica.cold_start_s:g} s; "
        f"replicas {job.min_replicas}..{job.max_replicas}; {len(specs)} configurations"
    )
    from rlreward.offline.progress import progress

    t0 = time.perf_counter()
    with progress(len(specs), "simulating", "configuration") as bar:
        points = run_sweep(job.traffic, specs, replica, job.timing, progress=bar.update)
    front = pareto_front(points)
    rec = recommend(points, job.slack)
    plain = [p for p in points if p.spec.hint is None]
    rec_plain = recommend(plain, job.slack) if plain else None
    say(
        f"  simulated in {time.perf_counter() - t0:.1f} s. Pareto front (* = recommended, within "
        f"{job.slack:.0%} of the best):"
    )
    say("  " + format_table(front, rec).replace("\n", "\n  "))
    if rec.spec.sleep is not None:
        say(
            f"  sleep wins: {rec.awake_replica_seconds:.0f} awake of {rec.replica_seconds:.0f} replica-s "
            f"at {rec.reward_stage_s:.2f} s/step"
        )
    if rec_plain is not None and rec_plain is not rec:
        say(
            f"  without hints: {spec_label(rec_plain.spec)}: {rec_plain.reward_stage_s:.2f} s/step, "
            f"{rec_plain.replica_seconds:.0f} replica-s"
        )
    out: dict[str, Any] = {
        **_common(job.traffic, replica, job.timing, cal),
        "bounds": {"min_replicas": job.min_replicas, "max_replicas": job.max_replicas},
        "slack": job.slack,
        "simulated": len(points),
        "pareto": [p.to_json() for p in front],
        "recommended": {**rec.to_json(), "label": spec_label(rec.spec)},
        "recommended_without_hints": (
            {**rec_plain.to_json(), "label": spec_label(rec_plain.spec)} if rec_plain is not None else None
        ),
        "points": [p.to_json() for p in points],
    }
    if job.out_yaml:
        header = yaml_header(job, base, replica, rec)
        text = recommendation_yaml(rec.spec, base, header, replica.samples_per_s)
        Path(job.out_yaml).write_text(text, encoding="utf-8")
        out["out_yaml"] = job.out_yaml
        say(f"  wrote {job.out_yaml}")
    if job.plot:
        plot_front(points, front, rec, job.plot, title=job.traffic.description)
        out["plot"] = job.plot
        say(f"  wrote {job.plot}")
    _write_json(job.json_path, out)
    say(f"  wrote {job.json_path}")
    return out


def run_evaluate_job(job: EvaluateJob, say: Say = print) -> dict[str, Any]:
    """Simulate one config, print its prediction, write the JSON; returns the JSON."""
    replica, cal = replica_model(job.replica, say)
    data = base_app_config(job.config)
    spec = serving_from_app_config(data, job.hint, hint_latency_s=job.hint_latency_s, where=job.config)
    result = simulate(job.traffic, spec, replica, job.timing)
    point = point_from_result(spec, result)
    out = {
        **_common(job.traffic, replica, job.timing, cal),
        "config_file": job.config,
        "config": spec_config(spec),
        "predicted": {
            "reward_stage_s": point.reward_stage_s,
            "replica_seconds": point.replica_seconds,
            "awake_replica_seconds": point.awake_replica_seconds,
            "horizon_s": result.horizon_s,
            "max_target_replicas": result.max_target,
            "steps": [
                {"step": s.index, "samples": s.samples, "first_sent_s": s.first_sent_s, "stage_s": s.stage_s}
                for s in result.steps
            ],
        },
    }
    _write_json(job.json_path, out)
    say(f"rlreward tune: {job.traffic.description}")
    say(
        f"  {job.config} ({spec_label(spec)}): {point.reward_stage_s:.2f} s reward stage per step, "
        f"{point.replica_seconds:.0f} replica-seconds over {result.horizon_s:.0f} s"
    )
    say(f"  wrote {job.json_path}")
    return out
