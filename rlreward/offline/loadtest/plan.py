"""What a load test sends: the shapes (``grpo``, ``stream``, ``trace``) as a :class:`Plan` of steps and
requests, and the samples in them (generated to given sizes, or read from a dataset file).

* ``grpo``: ``steps`` steps; each sends ``prompts`` × ``group`` samples at once, ``samples_per_request``
  per request (default ``group``: one request per GRPO group, as TRL and our client send; 1: one
  request per sample, as OpenRLHF and verl send). The next step starts ``update_s`` after the last
  score of the previous one came back (the trainer's update; closed loop, as in a real run).
* ``stream``: ``samples`` single-sample requests per step, at most ``concurrency`` in flight; with
  ``rate`` > 0 they arrive as a Poisson process of that many requests per second (open loop, still
  capped by ``concurrency``), else each answer releases the next request (closed loop).
* ``trace``: a recorded trace (:mod:`rlreward.trace`): each step's requests at their recorded offsets
  from the step's first request, with the recorded samples per request, text lengths, image sizes
  and groups (members of a group share their prompt and images, so prefix sharing sees what it saw);
  a step starts the recorded gap after the previous step's last answer when the trace has latencies
  (closed loop), else at its recorded time.

Generated samples: a group's prompt is ``prompt_chars`` characters of words plus ``images_per_prompt``
noise images of ``image_size`` (one image per group, the same for its members); each answer is
``response_chars`` characters (a range ``lo:hi`` draws per sample). Everything is deterministic in
``seed``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlreward.errors import UsageError
from rlreward.offline.synthetic import noise_png, text_of_length


@dataclass(frozen=True)
class PlannedRequest:
    """One request: sent ``offset_s`` after its step starts (0 = at once), carrying ``samples``."""

    offset_s: float
    samples: list[dict[str, Any]]
    group: str | None = None


@dataclass(frozen=True)
class PlannedStep:
    """A trainer step: its requests, the pause before it (``gap_s`` after the previous step's last
    answer) and how many requests may be in flight at once (None: no cap)."""

    requests: list[PlannedRequest]
    gap_s: float = 0.0
    concurrency: int | None = None
    open_loop: bool = True  # False: a request is sent when a slot frees (stream without a rate)
    start_s: float | None = None  # open-loop step start (seconds after the run began), else gap_s

    @property
    def samples(self) -> int:
        return sum(len(r.samples) for r in self.requests)


@dataclass
class Plan:
    """What the load test sends, step by step."""

    shape: str
    steps: list[PlannedStep]
    description: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def samples(self) -> int:
        return sum(s.samples for s in self.steps)

    @property
    def requests(self) -> int:
        return sum(len(s.requests) for s in self.steps)


# -- samples -----------------------------------------------------------------------------------------
def parse_range(text: str | int) -> tuple[int, int]:
    """``"40"`` → (40, 40); ``"20:200"`` → (20, 200). Raises UsageError on anything else."""
    try:
        if isinstance(text, int):
            lo = hi = text
        elif ":" in text:
            a, b = text.split(":", 1)
            lo, hi = int(a), int(b)
        else:
            lo = hi = int(text)
    except ValueError as exc:
        raise UsageError(f"expected N or LO:HI (characters), got {text!r}") from exc
    if lo < 1 or hi < lo:
        raise UsageError(f"expected 1 <= LO <= HI, got {text!r}")
    return lo, hi


def parse_image_size(text: str) -> tuple[int, int] | None:
    """``"224x224"`` → (224, 224); ``"none"`` / ``"0"`` → None (text-only samples)."""
    if text.lower() in ("none", "0", ""):
        return None
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError as exc:
        raise UsageError(f"--image-size expects WxH (e.g. 448x448) or none, got {text!r}") from exc
    if w < 28 or h < 28:
        raise UsageError(f"--image-size must be at least 28x28, got {text!r}")
    return w, h


@dataclass
class SampleMaker:
    """Generated samples of given sizes; a group's members share their prompt text and images."""

    prompt_chars: tuple[int, int] = (200, 200)
    response_chars: tuple[int, int] = (20, 200)
    image_size: tuple[int, int] | None = (224, 224)
    images_per_prompt: int = 1
    seed: int = 0

    def _rng(self, *key: Any) -> random.Random:
        return random.Random(json.dumps([self.seed, *key]))

    def sample(
        self,
        group: str,
        member: int,
        *,
        prompt_chars: int | None = None,
        response_chars: int | None = None,
        images: list[list[int] | None] | None = None,
    ) -> dict[str, Any]:
        """Member ``member`` of group ``group``; sizes default to this maker's (drawn per group/sample)."""
        grng = self._rng("prompt", group)
        pc = prompt_chars if prompt_chars is not None else grng.randint(*self.prompt_chars)
        prompt = text_of_length(max(1, pc), grng) if pc > 0 else ""
        srng = self._rng("response", group, member)
        rc = response_chars if response_chars is not None else srng.randint(*self.response_chars)
        response = text_of_length(max(1, rc), srng)
        if images is None:
            dims: list[list[int] | None] = (
                [list(self.image_size)] * self.images_per_prompt if self.image_size else []
            )
        else:
            dims = images
        refs = []
        for i, d in enumerate(dims):
            w, h = d if d else (self.image_size or (224, 224))
            refs.append(noise_png(int(w), int(h), f"{group}/{i}/{self.seed}"))
        return {"prompt": prompt, "response": response, "images": refs}


def read_dataset(path: str | Path) -> list[dict[str, Any]]:
    """Samples from a JSONL file (one sample dict a line, in either schema form; a line ``{"sample":
    {...}}`` is unwrapped). Raises UsageError naming the bad line."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--dataset {path} does not exist")
    out: list[dict[str, Any]] = []
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}:{lineno} is not JSON ({exc.msg})") from exc
            if isinstance(obj, dict) and isinstance(obj.get("sample"), dict):
                obj = obj["sample"]
            if not isinstance(obj, dict):
                raise UsageError(f"{path}:{lineno} must be a JSON object (a sample)")
            out.append(obj)
    if not out:
        raise UsageError(f"--dataset {path} holds no samples")
    return out


class _DatasetCycle:
    def __init__(self, samples: list[dict[str, Any]]) -> None:
        self.samples, self.i = samples, 0

    def take(self, n: int) -> list[dict[str, Any]]:
        out = [self.samples[(self.i + k) % len(self.samples)] for k in range(n)]
        self.i += n
        return out


# -- shapes ------------------------------------------------------------------------------------------
def grpo_plan(
    *,
    steps: int,
    prompts: int,
    group: int,
    update_s: float,
    maker: SampleMaker,
    samples_per_request: int | None = None,
    concurrency: int | None = None,
    dataset: list[dict[str, Any]] | None = None,
) -> Plan:
    """``steps`` bursts of ``prompts`` × ``group`` samples (see the module docstring)."""
    if steps < 1 or prompts < 1 or group < 1:
        raise UsageError("--steps, --prompts and --group must be at least 1")
    if update_s < 0:
        raise UsageError("--update-s must be >= 0")
    per = samples_per_request or group
    cycle = _DatasetCycle(dataset) if dataset else None
    plan_steps = []
    for k in range(steps):
        samples: list[tuple[str, dict[str, Any]]] = []
        for p in range(prompts):
            gid = f"s{k}p{p}"
            members = cycle.take(group) if cycle else [maker.sample(gid, m) for m in range(group)]
            samples += [(gid, s) for s in members]
        reqs = []
        for i in range(0, len(samples), per):
            part = samples[i : i + per]
            gids = {g for g, _ in part}
            reqs.append(PlannedRequest(0.0, [s for _, s in part], gids.pop() if len(gids) == 1 else None))
        plan_steps.append(PlannedStep(reqs, gap_s=0.0 if k == 0 else update_s, concurrency=concurrency))
    desc = (
        f"grpo: {steps} steps × {prompts} prompts × {group} completions, {per} samples/request, "
        f"update {update_s:g} s"
    )
    params = {
        "steps": steps,
        "prompts": prompts,
        "group": group,
        "update_s": update_s,
        "samples_per_request": per,
    }
    return Plan("grpo", plan_steps, desc, params)


def stream_plan(
    *,
    samples: int,
    concurrency: int,
    maker: SampleMaker,
    steps: int = 1,
    update_s: float = 0.0,
    rate: float = 0.0,
    group: int = 1,
    seed: int = 0,
    dataset: list[dict[str, Any]] | None = None,
) -> Plan:
    """Single-sample requests (see the module docstring); ``group`` > 1 makes consecutive samples
    members of one GRPO group (their prompt shared), as a trainer streaming completions would."""
    if samples < 1 or concurrency < 1 or steps < 1 or group < 1:
        raise UsageError("--samples, --concurrency, --steps and --group must be at least 1")
    if rate < 0 or update_s < 0:
        raise UsageError("--rate and --update-s must be >= 0")
    rng = random.Random(seed)
    cycle = _DatasetCycle(dataset) if dataset else None
    plan_steps = []
    for k in range(steps):
        t = 0.0
        reqs = []
        for i in range(samples):
            gid = f"s{k}g{i // group}"
            s = cycle.take(1)[0] if cycle else maker.sample(gid, i % group)
            reqs.append(PlannedRequest(t if rate > 0 else 0.0, [s], gid))
            if rate > 0:
                t += rng.expovariate(rate)
        plan_steps.append(
            PlannedStep(reqs, gap_s=0.0 if k == 0 else update_s, concurrency=concurrency, open_loop=rate > 0)
        )
    arrival = f"Poisson {rate:g}/s" if rate > 0 else "closed loop"
    desc = f"stream: {steps} × {samples} single-sample requests, {concurrency} in flight, {arrival}"
    params = {"steps": steps, "samples": samples, "concurrency": concurrency, "rate": rate, "group": group}
    return Plan("stream", plan_steps, desc, params)


def trace_plan(
    path: str | Path,
    *,
    maker: SampleMaker,
    concurrency: int | None = None,
    dataset: list[dict[str, Any]] | None = None,
) -> Plan:
    """Replay a recorded trace (see the module docstring). Records without ``sizes`` get samples of
    the maker's sizes; with ``dataset``, samples come from it in order (sizes ignored)."""
    from rlreward.offline.tune.workload import read_trace

    try:
        read_trace(path)  # validates every line, with the line number in the error
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    raw = []
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                obj = json.loads(line)
                if obj.get("kind") in (None, "request"):
                    raw.append(obj)
    raw.sort(key=lambda r: r["t"])
    if all(r.get("step") is not None for r in raw):
        by_step: dict[int, list[dict]] = {}
        for r in raw:
            by_step.setdefault(int(r["step"]), []).append(r)
        groups = [by_step[k] for k in sorted(by_step)]
    else:
        groups = [[raw[0]]]
        for prev, r in zip(raw, raw[1:]):
            if r["t"] - prev["t"] > 2.0:
                groups.append([])
            groups[-1].append(r)
    closed = all(r.get("latency_s") is not None for r in raw)
    cycle = _DatasetCycle(dataset) if dataset else None
    plan_steps = []
    prev_end = 0.0
    for k, recs in enumerate(groups):
        start = recs[0]["t"]
        reqs = []
        for j, r in enumerate(recs):
            sizes = r.get("sizes")
            if cycle:
                samples = cycle.take(int(r["samples"]))
            elif isinstance(sizes, list) and len(sizes) == int(r["samples"]):
                samples = [
                    maker.sample(
                        str(sz.get("group") or f"{r.get('request_id') or j}/{m}"),
                        m + 1000 * j,
                        prompt_chars=sz.get("prompt_chars"),
                        response_chars=sz.get("response_chars"),
                        images=sz.get("images"),
                    )
                    for m, sz in enumerate(sizes)
                ]
            else:
                gid = str(r.get("group") or f"k{k}r{j}")
                samples = [maker.sample(gid, m + 1000 * j) for m in range(int(r["samples"]))]
            reqs.append(PlannedRequest(r["t"] - start, samples, r.get("group")))
        if closed:
            gap = start - prev_end if k else 0.0
            prev_end = max(r["t"] + float(r["latency_s"]) for r in recs)
            plan_steps.append(PlannedStep(reqs, gap_s=max(0.0, gap), concurrency=concurrency))
        else:
            plan_steps.append(PlannedStep(reqs, concurrency=concurrency, start_s=start - raw[0]["t"]))
    desc = f"trace {Path(path).name}: {len(plan_steps)} steps, {len(raw)} requests, " + (
        "closed-loop step starts" if closed else "open-loop step starts"
    )
    return Plan("trace", plan_steps, desc, {"trace": str(path), "closed_loop": closed})
