"""What a trainer sends to the reward deployment (:class:`Traffic`), as the simulator replays it.

Two sources:

* a **described GRPO run** (:func:`grpo_workload`): ``steps`` steps; each step, ``prompts`` prompts ×
  ``group`` completions are scored in one burst, ``samples_per_request`` samples per request (``group``
  = one request per GRPO group, as TRL/our client send it; 1 = one request per sample, as OpenRLHF
  and verl send it). The trainer then updates for ``update_s`` seconds and generates the next rollout
  for ``rollout_s`` seconds, so step *k+1*'s burst is sent ``update_s + rollout_s`` after step *k*'s
  last score came back (closed loop: a slow reward stage delays the next step, as in a real run).
* a **trace** (:func:`read_trace`, :func:`trace_workload`): JSON Lines written by the client-side
  recorder, one :class:`TraceRecord` per request line (``{"t": 0.013, "samples": 8, "step": 0,
  "latency_s": 2.41, ...}``; header lines and unknown keys are skipped). When every record has
  ``step`` and ``latency_s`` the replay is closed loop (the trainer's gap between a step's last
  response and the next step's first request is kept; the simulated reward stage decides when the
  next step starts); otherwise open loop, requests at their recorded ``t``. Without ``step``, a
  pause longer than ``step_gap_s`` starts a new step.

All times are seconds; all values are immutable dataclasses (the trace record is pydantic: it comes from
a file).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class TraceRecord(BaseModel):
    """One request of a recorded trace (a JSONL line): ``t`` (seconds since the recording started,
    when sent), ``samples``, and optionally ``group``, ``step``, ``tokens``, ``request_id``,
    ``latency_s`` (``null`` or absent). Lines whose ``kind`` is neither absent nor ``"request"``
    (the ``{"kind": "header", ...}`` line) are skipped; unknown keys are ignored."""

    model_config = ConfigDict(extra="ignore")

    t: float = Field(ge=0, description="Seconds since the recording started, when the request was sent.")
    samples: int = Field(ge=1, description="Samples in the request.")
    group: str | None = Field(default=None, description="GRPO group id (prompt), if known.")
    step: int | None = Field(default=None, ge=0, description="Trainer step, if known.")
    tokens: int | None = Field(default=None, ge=0, description="Tokens in the request, if known.")
    request_id: str | None = Field(default=None, description="The client's request id, if known.")
    latency_s: float | None = Field(
        default=None, ge=0, description="Seconds until the response came back, if recorded."
    )


@dataclass(frozen=True)
class RequestSpec:
    """A request of a step: sent ``offset_s`` seconds after the step's first request."""

    offset_s: float
    samples: int


@dataclass(frozen=True)
class StepSpec:
    """One trainer step's reward traffic.

    ``start_s``: absolute send time of the first request (open loop), or None (closed loop: the step
    starts ``gap_s`` after the previous step's last score; the first step ``gap_s`` after t=0).
    ``hint_lead_s``: the trainer announces the step (``expect(n, within_s)``) this long before its first
    request — the rollout (generation) time.
    """

    requests: tuple[RequestSpec, ...]
    start_s: float | None
    gap_s: float
    hint_lead_s: float

    @property
    def samples(self) -> int:
        """Samples in the step (what a hint announces)."""
        return sum(r.samples for r in self.requests)


@dataclass(frozen=True)
class Traffic:
    """What a trainer sends over a run, as the simulator replays it: a sequence of steps of requests
    over time (named apart from :class:`rlreward.offline.bench.workloads.Workload`, a set of
    samples); ``closed_loop`` says whether step starts follow the simulated scores."""

    steps: tuple[StepSpec, ...]
    closed_loop: bool
    description: str

    @property
    def mean_step_samples(self) -> float:
        return sum(s.samples for s in self.steps) / len(self.steps)

    def summary(self) -> dict[str, object]:
        """A JSON-able description (for reports)."""
        return {
            "description": self.description,
            "steps": len(self.steps),
            "requests": sum(len(s.requests) for s in self.steps),
            "samples": sum(s.samples for s in self.steps),
            "closed_loop": self.closed_loop,
        }


def grpo_workload(
    *,
    steps: int,
    prompts: int,
    group: int,
    update_s: float,
    rollout_s: float = 0.0,
    samples_per_request: int | None = None,
    send_spread_s: float = 0.0,
) -> Traffic:
    """A described GRPO run: ``steps`` bursts of ``prompts × group`` samples.

    ``samples_per_request`` (default ``group``) must divide ``prompts × group`` evenly or leave a
    smaller last request. ``send_spread_s`` spreads a step's requests evenly over that many seconds
    (0 = all at once). The first burst is sent at ``rollout_s``; each later one ``update_s + rollout_s``
    after the previous step's last score. Raises ValueError on non-positive sizes or negative times.
    """
    if steps < 1 or prompts < 1 or group < 1:
        raise ValueError(f"steps, prompts and group must be ≥ 1 (got {steps}, {prompts}, {group})")
    if update_s < 0 or rollout_s < 0 or send_spread_s < 0:
        raise ValueError("update_s, rollout_s and send_spread_s must be ≥ 0 seconds")
    per = group if samples_per_request is None else samples_per_request
    if per < 1:
        raise ValueError(f"samples_per_request must be ≥ 1 (got {per})")
    total = prompts * group
    sizes = [per] * (total // per) + ([total % per] if total % per else [])
    n = len(sizes)
    reqs = tuple(
        RequestSpec(offset_s=(send_spread_s * i / (n - 1) if n > 1 else 0.0), samples=s)
        for i, s in enumerate(sizes)
    )
    step_list = tuple(
        StepSpec(
            requests=reqs,
            start_s=None,
            gap_s=rollout_s if k == 0 else update_s + rollout_s,
            hint_lead_s=rollout_s,
        )
        for k in range(steps)
    )
    desc = (
        f"GRPO: {steps} steps × {prompts} prompts × {group} completions, {per} samples/request, "
        f"update {update_s:g} s, rollout {rollout_s:g} s"
    )
    return Traffic(steps=step_list, closed_loop=True, description=desc)


def read_trace(path: str | Path) -> list[TraceRecord]:
    """Parse a trace JSONL file (format in the module docstring).

    Raises FileNotFoundError, or ValueError naming the line that is not JSON or not a record, or when
    the file holds no request.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"trace file {path} does not exist (record one with the client's recorder)")
    records: list[TraceRecord] = []
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno} is not JSON ({exc.msg})") from exc
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{lineno} must be a JSON object, not {type(obj).__name__}")
            kind = obj.get("kind")
            if kind is not None and kind != "request":
                continue  # header, or a record kind this version does not replay
            try:
                records.append(TraceRecord.model_validate(obj))
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(x) for x in err["loc"]) or "record"
                raise ValueError(f"{path}:{lineno}: {where}: {err['msg']} (got {obj!r:.120})") from exc
    if not records:
        raise ValueError(f"{path} holds no request records")
    return records


def trace_workload(
    records: list[TraceRecord],
    *,
    rollout_s: float = 0.0,
    step_gap_s: float = 5.0,
    closed_loop: bool | None = None,
    description: str = "trace",
) -> Traffic:
    """Group trace records into steps (by ``step``, or by pauses > ``step_gap_s``) and build a workload.

    ``closed_loop=None`` picks closed loop when every record has ``step`` and ``latency_s`` and the
    recorded steps did not overlap; True demands it (ValueError if impossible); False forces open loop.
    ``rollout_s`` is how long before a step's first request the trainer would send its hint (clipped
    to the recorded gap).
    """
    if not records:
        raise ValueError("the trace holds no request records")
    if rollout_s < 0 or step_gap_s <= 0:
        raise ValueError("rollout_s must be ≥ 0 and step_gap_s > 0")
    recs = sorted(records, key=lambda r: r.t)
    groups: list[list[TraceRecord]]
    if all(r.step is not None for r in recs):
        by_step: dict[int, list[TraceRecord]] = {}
        for r in recs:
            by_step.setdefault(int(r.step), []).append(r)  # type: ignore[arg-type]
        groups = [by_step[k] for k in sorted(by_step)]
    else:
        groups = [[recs[0]]]
        for prev, r in zip(recs, recs[1:]):
            if r.t - prev.t > step_gap_s:
                groups.append([])
            groups[-1].append(r)
    starts = [min(r.t for r in g) for g in groups]
    can_close = all(r.step is not None and r.latency_s is not None for r in recs)
    gaps: list[float] = [starts[0]]
    if can_close:
        for k in range(1, len(groups)):
            last_done = max(r.t + float(r.latency_s or 0.0) for r in groups[k - 1])
            gaps.append(starts[k] - last_done)
        can_close = all(g >= 0 for g in gaps)
    if closed_loop is True and not can_close:
        raise ValueError(
            "a closed-loop replay needs step and latency_s on every record, and steps that did not overlap"
        )
    closed = can_close if closed_loop is None else closed_loop
    steps = []
    for k, g in enumerate(groups):
        reqs = tuple(
            RequestSpec(offset_s=r.t - starts[k], samples=r.samples) for r in sorted(g, key=lambda r: r.t)
        )
        if closed:
            steps.append(
                StepSpec(requests=reqs, start_s=None, gap_s=gaps[k], hint_lead_s=min(rollout_s, gaps[k]))
            )
        else:
            prev_start = starts[k - 1] if k else 0.0
            lead = min(rollout_s, starts[k] - prev_start) if k else min(rollout_s, starts[0])
            steps.append(StepSpec(requests=reqs, start_s=starts[k], gap_s=0.0, hint_lead_s=max(0.0, lead)))
    n_req = len(recs)
    desc = (
        f"{description}: {len(steps)} steps, {n_req} requests, {'closed' if closed else 'open'}-loop replay"
    )
    if not math.isfinite(sum(starts)):
        raise ValueError("trace times must be finite")
    return Traffic(steps=tuple(steps), closed_loop=closed, description=desc)
