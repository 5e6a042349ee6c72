"""GRPO bursts with varied answers, in-process: shared vs unshared scoring, and image preparation.

Workload: ``--groups`` prompts x ``--answers`` answers whose lengths are drawn uniformly from
``--completion-tokens MIN..MAX`` (tokens), one ``--image-size`` noise image per prompt, interleaved.
Model: ``bench-small`` (random weights, Qwen2.5-VL-7B proportions; see ``rlreward bench``).

1. Scoring (samples prepared once beforehand): median wall and CPU seconds (process time: steadier
   than wall time on a shared machine; one torch thread) of ``score_prepared`` over the burst,
   prefix sharing on vs off; tokens the language model computed (rows x width of every call, counted
   by a forward hook on it, not by rlreward's counters) and useful tokens (each group's prefix once +
   every real suffix token); prefix forwards per group.
2. Preparation: seconds and pixel bytes (tensor storage, de-duplicated) to prepare one answer vs a
   group of ``--answers`` answers on one image, with the prepared-image cache (fresh per repeat) and
   without it (``image_cache_bytes=0``).

The script also runs against an older checkout (``PYTHONPATH=/path/to/old``): what the old code lacks
(``engine_stats``, ``image_cache_bytes``) is reported as absent. Prints and writes one JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any

import torch


def words_of(tokenizer: Any, n: int, rng: random.Random) -> str:
    """A text of exactly ``n`` tokens (or the closest below) made of random common words."""
    vocab = "the a of to in is it that on for as with was at by an be this which or from".split()
    words: list[str] = []
    while len(tokenizer(" ".join(words))["input_ids"]) < n:
        words.append(rng.choice(vocab))
    while len(tokenizer(" ".join(words))["input_ids"]) > n:
        words.pop()
    return " ".join(words)


def workload(
    tokenizer: Any, groups: int, answers: int, lo: int, hi: int, size: tuple[int, int], seed: int
) -> list[dict]:
    import base64
    import io

    import numpy as np
    from PIL import Image

    rng = random.Random(seed)
    images = []
    for g in range(groups):
        arr = np.random.default_rng(seed + g).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "PNG")
        images.append(base64.b64encode(buf.getvalue()).decode())
    out = []
    for _a in range(answers):
        for g in range(groups):
            out.append(
                {
                    "prompt": f"Question {g}: look at the picture and describe what you see, step by step.",
                    "response": words_of(tokenizer, rng.randint(lo, hi), rng),
                    "images": [images[g]],
                }
            )
    return out


def make_scorer(bench: Any, sharing: bool, budget: int | None, cache_bytes: int | None) -> Any:
    from rlreward.engine.config import BatchingConfig, ScorerConfig
    from rlreward.engine.head import load_value_head
    from rlreward.engine.scorer import Scorer

    batching: dict[str, Any] = {"prefix_sharing": sharing, "max_batch_tokens": budget}
    if cache_bytes is not None and "image_cache_bytes" in BatchingConfig.model_fields:
        batching["image_cache_bytes"] = cache_bytes
    cfg = ScorerConfig(model="bench-small", dtype="float32", device="cpu", batching=batching)
    head = load_value_head(bench.head_path, bench.model.config.text_config.hidden_size, cfg.head_key_prefix)
    return Scorer(cfg, bench.model.model, bench.new_processor(), head)


def useful_tokens(prepared: list[Any], groups: int) -> int:
    """Each group's prefix once (the longest prefix its members share) + every real suffix token."""
    total = 0
    for g in range(groups):
        members = [p.input_ids for p in prepared[g::groups]]
        n = min(len(m) for m in members)
        first = members[0]
        common = n
        for m in members[1:]:
            diff = (m[:n] != first[:n]).nonzero()
            common = min(common, int(diff[0]) if diff.numel() else n)
        common = min(common, n - 1)
        total += common + sum(len(m) - common for m in members)
    return total


def score_run(scorer: Any, prepared: list[Any], repeats: int) -> dict[str, Any]:
    calls: list[tuple[bool, int, int]] = []

    def hook(module, args, kwargs):
        x = kwargs["inputs_embeds"]
        calls.append((kwargs.get("past_key_values") is not None, int(x.shape[0]), int(x.shape[1])))

    handle = scorer.backbone.language_model.register_forward_pre_hook(hook, with_kwargs=True)
    times, cpu = [], []
    try:
        for _r in range(repeats):
            calls.clear()
            t0, c0 = time.perf_counter(), time.process_time()
            results = scorer.score_prepared(prepared)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    finally:
        handle.remove()
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:1]
    return {
        "seconds": statistics.median(times),
        "all_seconds": [round(t, 3) for t in times],
        "cpu_seconds": statistics.median(cpu),
        "all_cpu_seconds": [round(t, 3) for t in cpu],
        "samples_per_s": len(prepared) / statistics.median(times),
        "computed_tokens": sum(rows * width for _, rows, width in calls),
        "lm_calls": len(calls),
        "prefix_rows": sum(rows for cached, rows, _ in calls if not cached),
        "scores": [r.score for r in results],
        "engine_stats": scorer.engine_stats() if hasattr(scorer, "engine_stats") else None,
    }


def storage_bytes(prepared: list[Any]) -> int:
    seen: dict[int, int] = {}
    for p in prepared:
        for t in (p.pixel_values, p.image_grid_thw):
            if t is not None:
                seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


def prepare_run(scorer: Any, group: list[dict], repeats: int) -> dict[str, Any]:
    def timed(samples: list[dict]) -> tuple[float, float, int]:
        times, cpu, kept = [], [], 0
        for _ in range(repeats):
            if hasattr(scorer.preprocessor, "images"):  # a fresh (empty) cache each repeat
                from rlreward.engine.image_cache import ImageCache

                scorer.preprocessor.images = ImageCache(scorer.config.batching.image_cache_bytes)
            t0, c0 = time.perf_counter(), time.process_time()
            prepared = [scorer.prepare(s) for s in samples]
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            kept = storage_bytes(prepared)
        return statistics.median(times), statistics.median(cpu), kept

    t1, c1, b1 = timed(group[:1])
    tn, cn, bn = timed(group)
    return {
        "one_cpu_s": c1,
        "group_cpu_s": cn,
        "cpu_ratio": cn / c1,
        "one_s": t1,
        "group_s": tn,
        "time_ratio": tn / t1,
        "one_bytes": b1,
        "group_bytes": bn,
        "bytes_ratio": bn / b1,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--groups", type=int, default=4)
    ap.add_argument("--answers", type=int, default=8)
    ap.add_argument("--completion-tokens", default="16..512")
    ap.add_argument("--image-size", default="448x448", help="WIDTHxHEIGHT")
    ap.add_argument("--max-batch-tokens", type=int, default=None, help="default: the scorer's CPU default")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prepare-only", action="store_true", help="only part 2 (preparation)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lo, hi = (int(x) for x in args.completion_tokens.split(".."))
    size = tuple(int(x) for x in args.image_size.split("x"))

    from rlreward.offline.bench.models import build_random_model

    bench = build_random_model("bench-small", torch.device("cpu"), torch.float32, seed=args.seed)
    unshared = make_scorer(bench, False, args.max_batch_tokens, None)
    shared = make_scorer(bench, True, args.max_batch_tokens, None)
    samples = workload(unshared.preprocessor.tokenizer, args.groups, args.answers, lo, hi, size, args.seed)
    prepared = [unshared.prepare(s) for s in samples]
    out: dict[str, Any] = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "code": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=os.path.dirname(__import__("rlreward").__file__),
        ).stdout.strip(),
        "workload": {
            "groups": args.groups,
            "answers": args.answers,
            "completion_tokens": [lo, hi],
            "image": args.image_size,
            "tokens_per_sample": [p.num_tokens for p in prepared],
            "image_tokens": int(prepared[0].image_grid_thw.prod()) // 4,
        },
        "settings": {
            "threads": args.threads,
            "repeats": args.repeats,
            "batching": shared.config.batching.model_dump(),
        },
        "loadavg_start": os.getloadavg(),
    }
    useful = useful_tokens(prepared, args.groups)
    for name, scorer in () if args.prepare_only else (("unshared", unshared), ("shared", shared)):
        run = score_run(scorer, prepared, args.repeats)
        run["useful_tokens"] = useful
        run["computed_over_useful"] = run["computed_tokens"] / useful
        out[name] = run
    if not args.prepare_only:
        out["shared_over_unshared"] = out["unshared"]["seconds"] / out["shared"]["seconds"]
        out["shared_over_unshared_cpu"] = out["unshared"]["cpu_seconds"] / out["shared"]["cpu_seconds"]
        pairs = zip(out["shared"].pop("scores"), out["unshared"].pop("scores"))
        out["max_score_diff"] = max(abs(a - b) for a, b in pairs)
    group = samples[:: args.groups][: args.answers]  # one prompt's answers
    out["prepare_cached"] = prepare_run(
        make_scorer(bench, True, args.max_batch_tokens, None), group, args.repeats
    )
    out["prepare_uncached"] = prepare_run(
        make_scorer(bench, True, args.max_batch_tokens, 0), group, args.repeats
    )
    out["loadavg_end"] = os.getloadavg()
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
