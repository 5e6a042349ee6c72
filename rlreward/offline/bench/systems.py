"""The measured systems (reference recipe, scorer, served app) and how they are timed. See :mod:`rlreward.offline.bench`."""

from __future__ import annotations

import logging
import re
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rlreward.engine.config import ScorerConfig
from rlreward.offline.bench.accounting import ExecutedWork
from rlreward.offline.bench.models import BenchModel
from rlreward.offline.bench.workloads import Workload


# -- measurement -------------------------------------------------------------------------------------
class Probe:
    """Hooks on the (shared) backbone: tokens through the language model, time in it and in the
    vision tower (the device synchronised at each edge, so the times are device times), and the
    FLOPs each call executed (:class:`~rlreward.offline.bench.accounting.ExecutedWork`). One
    instance serves every in-process system; :meth:`reset` between runs."""

    def __init__(self, backbone: torch.nn.Module, device: torch.device, config: Any) -> None:
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.config = config
        self.reset()
        self._start: dict[str, float] = {}
        lm, vis = backbone.language_model, backbone.visual
        self.handles = [
            lm.register_forward_pre_hook(self._count, with_kwargs=True),
            lm.register_forward_pre_hook(lambda m, a: self._tic("language")),
            lm.register_forward_hook(lambda m, a, o: self._toc("language")),
            vis.register_forward_pre_hook(self._count_vision, with_kwargs=True),
            vis.register_forward_pre_hook(lambda m, a: self._tic("vision")),
            vis.register_forward_hook(lambda m, a, o: self._toc("vision")),
        ]

    def reset(self) -> None:
        self.computed = 0
        self.real = 0
        self.seconds = {"language": 0.0, "vision": 0.0}
        self.work = ExecutedWork(self.config.text_config, self.config.vision_config)

    def _count_vision(self, module: Any, args: tuple, kwargs: dict) -> None:
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        if isinstance(grid, torch.Tensor):
            self.work.vision_call(grid.tolist())

    def _count(self, module: Any, args: tuple, kwargs: dict) -> None:
        x = kwargs.get("inputs_embeds")
        if x is None:
            x = kwargs.get("input_ids", args[0] if args else None)
        if x is None:
            return
        b, length = int(x.shape[0]), int(x.shape[1])
        self.computed += b * length
        cache = kwargs.get("past_key_values")
        past = int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0
        self.work.language_call(b, length, past)
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.dim() == 2:
            self.real += int(mask[:, -length:].sum())
        else:
            self.real += b * length

    def _tic(self, what: str) -> None:
        self.sync()
        self._start[what] = time.perf_counter()

    def _toc(self, what: str) -> None:
        self.sync()
        self.seconds[what] += time.perf_counter() - self._start.pop(what)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


class PeakMemory:
    """Peak memory of one run: ``torch.cuda.max_memory_allocated`` on a GPU; on CPU the RSS
    high-water mark (``getrusage``), reset first through ``/proc/self/clear_refs`` where allowed."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda max_memory_allocated" if device.type == "cuda" else "cpu rss high-water"
        self.start_mib = 0.0

    @staticmethod
    def _rss_mib() -> float:
        try:
            import psutil

            return psutil.Process().memory_info().rss / 2**20
        except ImportError:
            text = Path("/proc/self/status").read_text()
            m = re.search(r"VmRSS:\s+(\d+)", text)
            return int(m.group(1)) / 1024 if m else 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_mib = torch.cuda.memory_allocated(self.device) / 2**20
            return self
        self.start_mib = self._rss_mib()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets the RSS high-water mark (Linux >= 4.0)
        except OSError:
            self.kind = "cpu rss high-water (process lifetime: reset refused)"
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@dataclass
class RunStats:
    """One timed run of one system."""

    scores: list[float | None]
    wall_s: float
    preprocess_s: float
    cpu_s: float | None = None
    vision_s: float | None = None
    language_s: float | None = None
    computed_tokens: int | None = None
    real_tokens: int | None = None
    executed_flops: float | None = None
    peak_memory_mib: float | None = None
    start_memory_mib: float | None = None


class ReferenceRecipe:
    """The model-card recipe at batch size 1 (see the module docstring); shares nothing with the
    scorer but the weights."""

    def __init__(self, bench: BenchModel, device: torch.device, key_prefix: str = "v_head.summary") -> None:
        from safetensors import safe_open

        self.model = bench.model
        self.processor = bench.new_processor()
        self.device = device
        with safe_open(bench.head_path, framework="pt", device="cpu") as f:
            params = {k: f.get_tensor(k) for k in f.keys()}
        w, b = params[f"{key_prefix}.weight"], params[f"{key_prefix}.bias"]
        self.v_head = torch.nn.Linear(w.shape[1], 1, dtype=torch.float32)  # trl's ValueHead.summary: fp32
        with torch.no_grad():
            self.v_head.weight.copy_(w.float())
            self.v_head.bias.copy_(b.float())
        self.v_head.to(device)

    @staticmethod
    def messages(sample: dict) -> list[dict]:
        """The bench sample as the card's ``messages``: images, then the question; then the answer."""
        content = [{"type": "image", "image": ref} for ref in sample.get("images") or []]
        content.append({"type": "text", "text": sample["prompt"]})
        return [{"role": "user", "content": content}, {"role": "assistant", "content": sample["response"]}]

    def preprocess(self, sample: dict) -> Any:
        from qwen_vl_utils import process_vision_info

        messages = self.messages(sample)
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        image_inputs, video_inputs = process_vision_info(messages)
        inputs = self.processor(
            text=[text], images=image_inputs, videos=video_inputs, padding=True, return_tensors="pt"
        )
        return inputs.to(self.device)

    @torch.inference_mode()
    def forward(self, inputs: Any) -> float:
        out = self.model(**inputs, return_dict=True, use_cache=False, output_hidden_states=True)
        out.logits.float()  # trl's value-head wrapper upcasts the LM logits to fp32
        values = self.v_head(out.hidden_states[-1].float()).squeeze(-1)
        score = values.gather(dim=-1, index=inputs["attention_mask"].sum(dim=-1, keepdim=True) - 1)
        return score[0].item()

    def run(self, samples: list[dict], progress: Callable[[int], None]) -> tuple[list[float | None], float]:
        scores: list[float | None] = []
        prep = 0.0
        for s in samples:
            t0 = time.perf_counter()
            inputs = self.preprocess(s)
            prep += time.perf_counter() - t0
            scores.append(self.forward(inputs))
            progress(1)
        return scores, prep


class ScorerSystem:
    """``unshared`` / ``shared``: the scorer, preprocessing then device work, as a replica does it."""

    def __init__(self, scorer: Any) -> None:
        self.scorer = scorer

    def run(self, samples: list[dict], progress: Callable[[int], None]) -> tuple[list[float | None], float]:
        t0 = time.perf_counter()
        items = [self.scorer.prepare(s) for s in samples]
        prep = time.perf_counter() - t0
        results = self.scorer.score_prepared(items, progress=progress)
        return [r.score for r in results], prep


def timed(
    system: Any, samples: list[dict], probe: Probe | None, device: torch.device, label: str
) -> RunStats:
    from tqdm import tqdm

    if probe:
        probe.reset()
    with tqdm(
        total=len(samples), desc=f"{label:>9}", unit="sample", file=sys.stderr, disable=None, leave=False
    ) as bar:
        with PeakMemory(device) as mem:
            c0, t0 = cpu_seconds(), time.perf_counter()
            scores, prep = system.run(samples, bar.update)
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    stats = RunStats(scores=scores, wall_s=wall, preprocess_s=prep)
    if probe:
        stats.vision_s, stats.language_s = probe.seconds["vision"], probe.seconds["language"]
        stats.computed_tokens, stats.real_tokens = probe.computed, probe.real
        stats.executed_flops = probe.work.flops
    if not getattr(system, "remote", False):  # the replica's process is not ours to measure
        stats.peak_memory_mib, stats.start_memory_mib = mem.peak_mib, mem.start_mib
        stats.cpu_s = cpu
    else:  # the replica's own CPU seconds for this run (its stats), not this process'
        stats.cpu_s = getattr(system, "last_cpu_s", None)
    return stats


def cpu_seconds() -> float:
    """CPU time of this process so far (user + system, all threads), in seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class ServeSystem:
    """``serve``: the Ray Serve app on this machine (one replica, the ``shared`` scorer config),
    called through ``RewardClient`` in handle mode: one request per group, all in flight at once.

    The replica gets as many CPUs (and ``OMP_NUM_THREADS``) as the in-process systems' torch
    threads, or the GPU, so that ``serve/shared`` compares like with like.
    """

    app_name = "rlreward-bench"
    remote = True  # runs in the replica's process: no probe, no local memory/CPU figures

    def __init__(
        self,
        bench: BenchModel,
        scorer_config: ScorerConfig,
        workload: Workload,
        device: torch.device,
        batch_wait_s: float | None = None,
        max_ongoing: int = 32,
    ) -> None:
        try:
            import ray

            from rlreward.client import RewardClient
            from rlreward.serving.app import deploy
            from rlreward.serving.config import AppConfig, RayActorOptions, ReplicaOptions
        except ImportError as exc:
            raise SystemUnavailable(f"the Ray Serve app or its client is not importable ({exc})") from exc
        if bench.checkpoint_dir is None:
            if bench.name != "bench-small":
                raise SystemUnavailable(
                    f"{bench.name} is built in memory and too big to write out here; serve needs a "
                    "checkpoint directory (pass one with --model DIR)"
                )
            bench.save(str(Path(bench.workdir.name) / "checkpoint"))
        gpu = device.type == "cuda"
        threads = 1 if gpu else torch.get_num_threads()
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        if not ray.is_initialized():
            ray.init(
                address="local",  # our own cluster, even where another one runs here
                logging_level=logging.WARNING,
                num_cpus=threads + 1,
                num_gpus=1 if gpu else 0,
                include_dashboard=False,
                log_to_driver=False,
            )
            self._owns_ray = True
        else:
            self._owns_ray = False
        groups = len(workload.groups)
        actor = RayActorOptions(
            num_cpus=threads,
            num_gpus=1 if gpu else 0,
            runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads)}},
        )
        scorer = scorer_config.model_copy(update={"model": bench.checkpoint_dir})
        if batch_wait_s is not None:
            batching = scorer.batching.model_copy(update={"batch_wait_timeout_s": batch_wait_s})
            scorer = scorer.model_copy(update={"batching": batching})
        config = AppConfig(
            name=self.app_name,
            route_prefix=None,
            scorer=scorer,
            replica=ReplicaOptions(
                num_replicas=1, ray_actor_options=actor, max_ongoing_requests=max(32, groups, max_ongoing)
            ),
        )
        print(f"serve: deploying {self.app_name} (1 replica, {threads} CPU threads) ...", file=sys.stderr)
        deploy(config)
        from ray import serve

        from rlreward.serving.config import REPLICA_DEPLOYMENT

        self._replica = serve.get_deployment_handle(REPLICA_DEPLOYMENT, app_name=self.app_name)
        self.last_batches: list[int] = []
        size = max(len(g) for g in workload.groups)
        self.client = RewardClient(
            app_name=self.app_name, chunk_size=size, max_concurrency=groups, timeout_s=3600
        )

    def _replica_stats(self) -> dict[str, Any]:
        return self._replica.stats.remote().result(timeout_s=60)

    def run(self, samples: list[dict], progress: Callable[[int], None]) -> tuple[list[float | None], float]:
        first = self._replica_stats()
        before = first["batches"]
        results = self.client.score(samples)
        progress(len(samples))
        after = self._replica_stats()
        self.last_cpu_s = after.get("cpu_s", 0.0) - first.get("cpu_s", 0.0) if "cpu_s" in first else None
        new = after["batches"] - before
        self.last_batches = [b["samples"] for b in after["recent_batches"][-new:]] if new else []
        return [r.score for r in results], 0.0

    def close(self) -> None:
        import ray
        from ray import serve

        try:
            serve.delete(self.app_name)
        finally:
            if self._owns_ray:
                serve.shutdown()
                ray.shutdown()


class ServeStreamSystem:
    """``serve-stream``: the app a :class:`ServeSystem` deployed, called as OpenRLHF and verl call it:
    one sample per request, up to ``concurrency`` requests in flight (an ``AsyncRewardClient`` in
    handle mode on one event loop). Batches form on the replica across requests."""

    remote = True

    def __init__(self, serve: ServeSystem, concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.serve, self.concurrency = serve, concurrency
        self.last_batches: list[int] = []

    def run(self, samples: list[dict], progress: Callable[[int], None]) -> tuple[list[float | None], float]:
        import asyncio

        from rlreward.client import AsyncRewardClient

        async def go() -> list[Any]:
            client = AsyncRewardClient(
                app_name=self.serve.app_name, chunk_size=1, max_concurrency=self.concurrency, timeout_s=3600
            )
            try:
                return await client.score(samples)
            finally:
                await client.aclose()

        first = self.serve._replica_stats()
        before = first["batches"]
        results = asyncio.run(go())
        progress(len(samples))
        after = self.serve._replica_stats()
        self.last_cpu_s = after.get("cpu_s", 0.0) - first.get("cpu_s", 0.0) if "cpu_s" in first else None
        new = after["batches"] - before
        self.last_batches = [b["samples"] for b in after["recent_batches"][-new:]] if new else []
        return [r.score for r in results], 0.0


class SystemUnavailable(Exception):
    """A system cannot run here; the message says why (the run goes on without it)."""
