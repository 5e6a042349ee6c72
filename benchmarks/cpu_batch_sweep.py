"""How the forward-pass token budget changes the scorer's cost per token on a CPU.

Scores one workload (bench-small, unshared, one torch thread) under several ``max_batch_tokens``
budgets and at batch size 1, and prints process CPU seconds per real token: CPU time, not wall
time, so that other work on the machine does not blur the comparison.

    .venv/bin/python benchmarks/cpu_batch_sweep.py [--workload text|ppo] [--repeats 2]
"""

from __future__ import annotations

import argparse

import torch

from rlreward.engine.config import ScorerConfig
from rlreward.engine.head import load_value_head
from rlreward.engine.scorer import Scorer
from rlreward.offline.bench.models import build_random_model
from rlreward.offline.bench.systems import cpu_seconds
from rlreward.offline.bench.workloads import make_workload


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", default="text", choices=["text", "ppo"])
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)
    model = build_random_model("bench-small", torch.device("cpu"), torch.float32)
    hidden = model.model.config.text_config.hidden_size

    def scorer(budget: int, size: int) -> Scorer:
        batching = {"prefix_sharing": False, "max_batch_tokens": budget, "max_batch_size": size}
        cfg = ScorerConfig(model="bench-small", dtype="float32", device="cpu", batching=batching)
        return Scorer(cfg, model.model.model, model.new_processor(), load_value_head(model.head_path, hidden))

    first = scorer(16384, 64)
    work = make_workload(
        args.workload, first.preprocessor.tokenizer, prompts=4, group=8, image_tokens=256,
        completion_tokens=64, prompt_tokens=32, samples=args.samples,
    )  # fmt: skip
    items = [first.prepare(s) for s in work.samples]
    real = sum(it.num_tokens for it in items)
    print(
        f"{args.workload}: {len(items)} samples, {real} tokens; CPU ms per real token (min of {args.repeats})"
    )
    for budget, size in ((16384, 64), (8192, 64), (4096, 64), (2048, 64), (1024, 64), (512, 64), (16384, 1)):
        s = scorer(budget, size)
        s.score_prepared(items[:2])  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            t0 = cpu_seconds()
            s.score_prepared(items)
            best = min(best, cpu_seconds() - t0)
        label = f"max_batch_tokens {budget:>5}" if size > 1 else "batch size 1          "
        print(f"  {label}: {best:6.2f} CPU s, {best / real * 1e3:.3f} ms/token")


if __name__ == "__main__":
    main()
