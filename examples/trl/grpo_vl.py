"""GRPO on a vision-language policy, rewarded by a served Skywork-VL-style reward model (TRL 1.16).

Runs on a CPU in minutes with the tiny checkpoint, which doubles as the policy (loaded as
``Qwen2_5_VLForConditionalGeneration``) and as the reward model (served by rlreward)::

    pip install 'rlreward[serve,trl]'   # trl for the trainer; serve for the local server (not with --url)
    rlreward make-tiny .cache/tiny
    python examples/trl/grpo_vl.py --model .cache/tiny --max-steps 2            # starts a local server
    python examples/trl/grpo_vl.py --url http://127.0.0.1:8000 --policy .cache/tiny --max-steps 2

With ``--url`` the reward server is one you started (``rlreward serve --model ...``); without it,
the script starts Ray and deploys the app on this machine for the run. For the real thing swap in
``--policy Qwen/Qwen2.5-VL-7B-Instruct`` and a server running Skywork-VL-Reward-7B on GPUs.

The reward is ``AsyncRewardModelReward``: TRL runs it on its own event loop; each generation batch
(prompt images included) goes to the server in one request. ``--accuracy-weight`` and
``--format-weight`` mix in rule rewards (the R1V2 recipe ``r = r_rule + r_θ + r_format``).
"""

from __future__ import annotations

import argparse
import io
import random
import socket
import time


def synthetic_dataset(n: int, seed: int = 0):
    """Images of coloured shapes with a question and the answer (the ``solution`` column)."""
    from datasets import Dataset
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    colours = ["red", "green", "blue", "yellow"]
    rows = []
    for _ in range(n):
        colour = rng.choice(colours)
        img = Image.new("RGB", (112, 84), "white")
        x, y = rng.randint(5, 60), rng.randint(5, 35)
        ImageDraw.Draw(img).ellipse([x, y, x + 40, y + 40], fill=colour)
        buf = io.BytesIO()
        img.save(buf, "PNG")  # round-trip so the dataset holds ordinary decoded PNGs
        rows.append(
            {
                "prompt": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image"},
                            {
                                "type": "text",
                                "text": "What colour is the circle? Think in <think></think>, "
                                "then give the answer in \\boxed{}.",
                            },
                        ],
                    }
                ],
                "images": [Image.open(io.BytesIO(buf.getvalue())).convert("RGB")],
                "solution": colour,
            }
        )
    return Dataset.from_list(rows)


def start_local_server(model: str):
    """Ray + Serve on this machine with the default (tiny CPU) app; returns (url, shutdown)."""
    import ray
    from ray import serve

    from rlreward.serving.app import build_app

    with socket.socket() as s:  # a free port: 8000 may be taken by a server you run yourself
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # address="local": always a fresh Ray on this machine, even with RAY_ADDRESS set in the shell
    # (plain ray.init() would join that cluster and deploy the demo app into it).
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"model": model}), name="rlreward", route_prefix="/")

    def shutdown() -> None:
        # The cluster is this process's own (address="local"): ray.shutdown() stops Serve with it,
        # without serve.shutdown()'s "(raylet) ... killed by ray.kill" lines.
        ray.shutdown()

    return f"http://127.0.0.1:{port}", shutdown


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=".cache/tiny", help="reward model dir for the local server (no --url)")
    p.add_argument("--url", default=None, help="use this running rlreward server instead of starting one")
    p.add_argument("--policy", default=None, help="policy checkpoint (default: --model)")
    p.add_argument("--max-steps", type=int, default=2)
    p.add_argument("--num-generations", type=int, default=4)
    p.add_argument("--prompts-per-step", type=int, default=2)
    p.add_argument("--max-completion-length", type=int, default=16)
    p.add_argument("--accuracy-weight", type=float, default=0.0, help="R1V2: weight of the answer reward")
    p.add_argument(
        "--format-weight", type=float, default=0.0, help="R1V2: weight of the <think> format reward"
    )
    p.add_argument("--output-dir", default="out/grpo_vl")
    args = p.parse_args(argv)

    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
    from trl import GRPOConfig, GRPOTrainer

    from rlreward.adapters.trl import AsyncRewardModelReward
    from rlreward.rewards import RewardComposition

    shutdown = None
    url = args.url
    if url is None:
        print(f"starting a local rlreward server on {args.model} ...")
        url, shutdown = start_local_server(args.model)
    try:
        policy_dir = args.policy or args.model
        torch.manual_seed(0)
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(policy_dir, dtype=torch.float32)
        processor = AutoProcessor.from_pretrained(policy_dir, padding_side="left")
        reward = AsyncRewardModelReward(
            url,
            name="skywork_vl_reward",
            composition=RewardComposition(
                model=1.0, accuracy=args.accuracy_weight, format=args.format_weight
            ),
        )
        config = GRPOConfig(
            output_dir=args.output_dir,
            per_device_train_batch_size=args.prompts_per_step * args.num_generations,
            num_generations=args.num_generations,
            max_completion_length=args.max_completion_length,
            max_steps=args.max_steps,
            learning_rate=1e-5,
            use_cpu=not torch.cuda.is_available(),
            bf16=False,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            dataloader_num_workers=0,
        )
        dataset = synthetic_dataset(args.prompts_per_step * max(args.max_steps, 1) * 2)
        trainer = GRPOTrainer(
            model=model, reward_funcs=[reward], args=config, train_dataset=dataset, processing_class=processor
        )
        t0 = time.perf_counter()
        trainer.train()
        elapsed = time.perf_counter() - t0
        for entry in trainer.state.log_history:
            if "rewards/skywork_vl_reward/mean" in entry:
                print(
                    f"step {entry['step']}: reward mean {entry['rewards/skywork_vl_reward/mean']:+.4f} "
                    f"std {entry['rewards/skywork_vl_reward/std']:.4f}"
                )
        print(f"{args.max_steps} GRPO steps in {elapsed:.1f} s against {url}")
    finally:
        if shutdown is not None:
            shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
