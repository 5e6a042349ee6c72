"""What reward health adds per sample: the replica's identity + answer-token count (beside what the
replica's own preparation of the same sample costs), the board's record/close/snapshot, and the
memory a kept record takes. CPU only, no Ray (the board's methods run in-process, as the actor does).

    python benchmarks/health_overhead.py .cache/tiny [--samples 100000] [--json out.json]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import time
import tracemalloc

from PIL import Image
from transformers import AutoTokenizer

from rlreward.serving.config import HealthOptions
from rlreward.serving.health import HealthBoard
from rlreward.serving.health_replica import ReplicaHealth

WORDS = "the policy answers with a long chain of reasoning about colours shapes and numbers".split()


def _image_uri(side: int) -> str:
    buf = io.BytesIO()
    Image.effect_noise((side, side), 64).convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _per_sample_us(fn, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps * 1e6


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    rng = random.Random(0)
    tok = AutoTokenizer.from_pretrained(args.model)
    health = ReplicaHealth({**HealthOptions().model_dump(), "board": "bench"})
    answer = " ".join(rng.choice(WORDS) for _ in range(200))
    text = {"prompt": "Explain the picture step by step.", "response": answer}
    image = {**text, "images": [_image_uri(512)]}
    out: dict = {"answer_tokens": len(tok(answer, add_special_tokens=False)["input_ids"])}
    out["replica_text_us"] = _per_sample_us(lambda: health.sample_infos(tok, [text]), 300)
    out["replica_image_512px_us"] = _per_sample_us(lambda: health.sample_infos(tok, [image]), 100)
    out["image_uri_bytes"] = len(image["images"][0])
    # The same samples' preparation on the replica (decode, resize, tokenise), for scale.
    from rlreward.engine.scorer import Scorer

    scorer = Scorer.from_pretrained(args.model, device="cpu", dtype="float32")
    out["replica_prepare_text_us"] = _per_sample_us(lambda: scorer.prepare(text), 100)
    out["replica_prepare_image_512px_us"] = _per_sample_us(lambda: scorer.prepare(image), 30)

    n = args.samples
    records = [
        [1000.0 + i * 1e-3, f"c{i // 8:032x}", f"a{i:032x}", rng.randint(10, 500), rng.gauss(0, 1), None]
        for i in range(n)
    ]
    board = HealthBoard(HealthOptions().model_dump(), clock=lambda: 1000.0, metrics=False)
    t0 = time.perf_counter()
    for i in range(0, n, 8):  # one call per GRPO group of 8
        board.record(records[i : i + 8])
    out["board_record_us_per_sample"] = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    board.step_done(t=1000.0 + n * 1e-3 + 1)
    out["board_close_step_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    board.snapshot()
    out["board_snapshot_ms"] = (time.perf_counter() - t0) * 1000
    tracemalloc.start()
    kept = HealthBoard(HealthOptions().model_dump(), clock=lambda: 1000.0, metrics=False)
    for i in range(0, 20_000, 8):
        kept.record(records[i : i + 8])
    out["bytes_per_kept_record"] = tracemalloc.get_traced_memory()[0] / 20_000
    tracemalloc.stop()
    out["samples"] = n
    out["loadavg"] = os.getloadavg()
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
