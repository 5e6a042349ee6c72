"""rlreward demo: serve the reward model on a local Ray cluster and score a GRPO-shaped batch.

    rlreward make-tiny .cache/tiny-trained --train   # once: a tiny reward model trained on shapes (~40 s)
    python examples/demo.py --model .cache/tiny-trained [--port 8123]

What it does, as an RL trainer would:

1. starts a local Ray cluster and deploys the packaged default app (``rlreward/configs/tiny-cpu.yaml``:
   CPU, fractional CPUs) on ``--model``;
2. builds a GRPO batch: ``--prompts`` image questions x ``--group`` completions each (the G
   completions of a prompt share its image and text, so the replica shares their prefix);
3. scores it through ``RewardClient(app_name=...)`` (a Ray handle: what a trainer inside the cluster
   uses) and through ``RewardClient(url=...)`` (HTTP: from anywhere), checks both agree, and prints
   the scores, the group-relative advantages GRPO would use, and samples/s;
4. shuts everything down.

The trained tiny model has learned colours and shapes, so the correct answer of each group should
score highest (an untrained ``make-tiny`` model ranks at random). Takes about a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import io
import logging
import socket
import statistics
import sys
import time
from pathlib import Path


def grpo_batch(prompts: int, group: int) -> tuple[list[dict], list[str]]:
    """``prompts`` x ``group`` samples; the first completion of each group is the correct answer.

    The pictures and the question are those of ``rlreward make-tiny --train``'s preference set
    (one coloured shape), so the trained tiny model has learned what a right answer looks like.
    """
    import random

    from rlreward.offline.train import COLOURS, QUESTIONS, SHAPES, draw_shape

    question, template = QUESTIONS["describe"]
    rng = random.Random(0)
    colours = list(COLOURS)
    samples, truths = [], []
    for p in range(prompts):
        colour, shape = colours[p % len(colours)], SHAPES[p % len(SHAPES)]
        buf = io.BytesIO()
        draw_shape(shape, colour, rng).save(buf, "PNG")
        image = buf.getvalue()
        truths.append(f"a {colour} {shape}")
        for g in range(group):
            if g == 0:
                said_colour, said_shape = colour, shape
            else:  # wrong colour, wrong shape, or both
                said_colour = colour if g % 3 == 1 else colours[(p + g) % len(colours)]
                said_shape = shape if g % 3 == 2 else SHAPES[(p + g) % len(SHAPES)]
                if (said_colour, said_shape) == (colour, shape):
                    said_colour = colours[(colours.index(colour) + 1) % len(colours)]
            answer = template.format(colour=said_colour, shape=said_shape)
            samples.append({"prompt": question, "response": answer, "images": [image]})
    return samples, truths


def timed(fn, rounds: int) -> tuple[list, float]:
    t0 = time.perf_counter()
    for _ in range(rounds):
        out = fn()
    return out, (time.perf_counter() - t0) / rounds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model",
        default=".cache/tiny-trained",
        help="model directory (rlreward make-tiny DIR --train builds one)",
    )
    p.add_argument("--prompts", type=int, default=4, help="image prompts in the batch")
    p.add_argument("--group", type=int, default=8, help="completions per prompt (GRPO's G)")
    p.add_argument("--rounds", type=int, default=3, help="timed repetitions per transport")
    p.add_argument("--port", type=int, default=0, help="HTTP port on 127.0.0.1 (0: any free port)")
    args = p.parse_args(argv)
    if not Path(args.model, "value_head.safetensors").is_file():
        print(f"no model at {args.model}: build one with `rlreward make-tiny {args.model}`", file=sys.stderr)
        return 2

    import ray
    from ray import serve

    from rlreward.client import RewardClient
    from rlreward.serving.app import deploy
    from rlreward.serving.config import load_app_config

    t0 = time.perf_counter()
    with socket.socket() as s:  # port 0: a free one, so the demo never collides with another server
        try:
            s.bind(("127.0.0.1", args.port))
        except OSError as exc:
            print(
                f"port {args.port} on 127.0.0.1 is taken ({exc}); pick another with --port", file=sys.stderr
            )
            return 2
        port = s.getsockname()[1]
    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        cfg = load_app_config({"model": args.model})  # the packaged tiny-cpu.yaml, this model
        deploy(cfg)
        url = f"http://127.0.0.1:{port}"
        print(f"deployed {cfg.name!r} ({cfg.scorer.model}) in {time.perf_counter() - t0:.1f}s; HTTP at {url}")

        samples, truths = grpo_batch(args.prompts, args.group)
        n = len(samples)
        handle_client = RewardClient(app_name=cfg.name)
        http_client = RewardClient(url=url)
        handle_client.score(samples[: args.group])  # first call: connects the handle
        results, handle_s = timed(lambda: handle_client.score(samples), args.rounds)
        http_results, http_s = timed(lambda: http_client.score(samples), args.rounds)

        failed = [r.error for r in results if not r.ok]
        if failed:
            print(f"{len(failed)} samples failed: {failed[:3]}", file=sys.stderr)
            return 1
        scores = [r.score for r in results]
        diff = max(abs(a - b.score) for a, b in zip(scores, http_results))
        print(
            f"\nGRPO batch: {args.prompts} prompts x {args.group} completions = {n} samples (one image each)"
        )
        top = beaten = 0
        for i, truth in enumerate(truths):
            group = scores[i * args.group : (i + 1) * args.group]
            mean, std = statistics.fmean(group), statistics.pstdev(group) or 1.0
            adv = " ".join(f"{(s - mean) / std:+.2f}" for s in group)
            rank = 1 + sum(s > group[0] for s in group[1:])
            top += rank == 1
            beaten += sum(s < group[0] for s in group[1:])
            print(
                f"  prompt {i} ({truth}): correct answer {group[0]:+.3f} ranks {rank}/{len(group)}; "
                f"advantages {adv}"
            )
        wrong = len(truths) * (args.group - 1)
        print(
            f"the correct answer scored highest in {top} of {len(truths)} groups and above "
            f"{beaten} of {wrong} wrong answers ({100 * beaten / wrong:.0f}%; chance: 50%)"
        )
        print(f"\nhandle: {n / handle_s:7.1f} samples/s ({handle_s * 1000:.0f} ms per batch)")
        print(
            f"HTTP:   {n / http_s:7.1f} samples/s ({http_s * 1000:.0f} ms per batch); "
            f"max |handle - HTTP| = {diff:.2e}"
        )
        handle_client.close()
        http_client.close()
    finally:
        # This driver started the cluster (address="local"): ray.shutdown() stops all of it, Serve
        # included. serve.shutdown() first would ray.kill the controller under the handle's pending
        # long-poll and print "(raylet) Task ServeController.listen_for_change failed ..." lines.
        ray.shutdown()
    print(f"done in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
